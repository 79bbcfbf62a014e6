#!/usr/bin/env bash
# Run the benchmark anchors and sparseqc side by side; print a Markdown table on stdout.
#
#   scripts/bench/run_all.sh [--big] [--eval] [--models "r20 r50 mnv2"]
#
#   --big     also the >2 GB widened ResNet-50-shaped model (external data; round trip only,
#             plus sparseqc's round trip)
#   --eval    also top-1 of the produced ResNet-20 models on the CIFAR-10 test split
#   --models  which models (default "r20 r50"): r20 = shared ResNet-20, r50 = generated
#             ResNet-50-shaped (~100 MB), mnv2 = shared MobileNetV2
#
# Environment: SPARSEQC (default target/release/sparseqc), SHARED (default ../shared),
# OUT (default bench-out). Needs scripts/setup-venv.sh --bench (run here when missing).
# Every step prints a BENCH line (wall_s, peak_rss_mib, rc); all lines also go to $OUT/bench.txt.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
big=0; do_eval=0; models="r20 r50"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --big) big=1 ;;
    --eval) do_eval=1 ;;
    --models) models="$2"; shift ;;
    *) echo "usage: $0 [--big] [--eval] [--models 'r20 r50 mnv2']" >&2; exit 2 ;;
  esac
  shift
done
SPARSEQC="${SPARSEQC:-target/release/sparseqc}"
SHARED="${SHARED:-$root/../shared}"
OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
log="$OUT/bench.txt"; : > "$log"
"$here/../setup-venv.sh" --bench >&2
py="$root/.venv/bin/python"
measure() { "$py" "$here/measure.py" "$@"; }
have_sqc=0; [[ -x "$SPARSEQC" ]] && have_sqc=1
[[ $have_sqc == 1 ]] || echo "run_all: $SPARSEQC not built (cargo build --release); sparseqc rows skipped" >&2
run() { "$@" 2>>"$OUT/stderr.txt" | tee -a "$log"; }

model_path() {
  case "$1" in
    r20) echo "$SHARED/models/cifar10_resnet20_bn.onnx" ;;
    mnv2) echo "$SHARED/models/mobilenet_v2_tv_bn.onnx" ;;
    r50) [[ -f "$OUT/r50.onnx" ]] || "$py" scripts/gen_resnet50.py "$OUT/r50.onnx" >&2; echo "$OUT/r50.onnx" ;;
    r50big) [[ -f "$OUT/r50_2g.onnx" ]] || "$py" scripts/gen_resnet50.py "$OUT/r50_2g.onnx" --size-gb 2.2 >&2
            echo "$OUT/r50_2g.onnx" ;;
  esac
}
# calibration set per model: "DIR DATASET" (the generated model gets the ImageNet calib images)
calib_of() {
  case "$1" in
    r20) echo "$SHARED/data/cifar10/calib cifar10" ;;
    *) echo "$SHARED/data/imagenet-sample/calib imagenet" ;;
  esac
}

for m in $models; do
  in="$(model_path "$m")"
  read -r cdir cset <<<"$(calib_of "$m")"
  # 1. protobuf round trip
  run "$py" "$here/onnx_roundtrip.py" "$in" "$OUT/$m.rt.onnx"
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_roundtrip --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/$m.sqc-rt.onnx" --passes none -q
  # 2. BN folding + clean-up
  run "$py" "$here/onnxsim_run.py" "$in" "$OUT/$m.sim.onnx"
  run "$py" "$here/onnxoptimizer_run.py" "$in" "$OUT/$m.onnxopt.onnx"
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_fold --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/$m.sqc-fold.onnx" --passes 'fold-bn,cleanup' -q
  # 3. 2:4 pruning
  run "$here/polygraphy_prune.sh" "$in" "$OUT/$m.prune.onnx"
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_prune --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/$m.sqc-prune.onnx" --passes 'prune-2of4{min-channels=4,min-params=0}' -q
  # 4. INT8 QDQ (calibration on the calib split)
  run "$py" "$here/ort_quantize.py" "$in" "$OUT/$m.ortq.onnx" --calib "$cdir" --dataset "$cset" --method minmax
  run "$py" "$here/ort_quantize.py" "$in" --calib-only --calib "$cdir" --dataset "$cset" --method minmax
  norm='mean=0.485:0.456:0.406,std=0.229:0.224:0.225'
  if [[ $cset == imagenet ]]; then pre="resize=256,crop=224,$norm"; else pre="$norm"; fi
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_calibrate --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/$m.sqc-cal.onnx" --passes 'fold-bn,cleanup,calibrate{method=max}' \
      --calib "$cdir" --preprocess "$pre" -q
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_dense_int8 --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/$m.sqc-int8.onnx" --dense --calib "$cdir" --preprocess "$pre" -q
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_default_pipeline --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/$m.sqc-sparse-int8.onnx" --passes 'fold-bn,cleanup,prune-2of4,calibrate,insert-qdq' \
      --calib "$cdir" --preprocess "$pre" -q
done

if [[ $big == 1 ]]; then
  in="$(model_path r50big)"
  run "$py" "$here/onnx_roundtrip.py" "$in" "$OUT/r50big.rt.onnx"
  [[ $have_sqc == 1 ]] && run measure --tool sparseqc_roundtrip --key "model=$(basename "$in")" -- \
      "$SPARSEQC" "$in" -o "$OUT/r50big.sqc-rt.onnx" --passes none -q
fi

if [[ $do_eval == 1 && " $models " == *" r20 "* ]]; then
  echo "## top-1, ResNet-20, CIFAR-10 test (10,000)" >&2
  for f in "$(model_path r20)" "$OUT"/r20.{sim,onnxopt,prune,ortq,sqc-fold,sqc-prune,sqc-int8}.onnx; do
    [[ -f "$f" ]] || continue
    acc="$("$py" scripts/eval_top1.py "$f" --dataset cifar10 --split test 2>/dev/null)"
    # QDQ models also as float fake-quant (onnxruntime's int8 kernels saturate on AVX2 without VNNI)
    fq=""; [[ "$f" == *ortq* || "$f" == *int8* ]] && \
      fq=" fakequant_$("$py" scripts/eval_top1.py "$f" --dataset cifar10 --split test --no-ort-opt 2>/dev/null | cut -d' ' -f1)"
    echo "BENCH tool=eval_top1 model=$(basename "$f") rc=0 ${acc%% *}$fq" | tee -a "$log"
  done
fi

echo
"$py" "$here/table.py" "$log"
