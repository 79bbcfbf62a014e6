#!/usr/bin/env bash
# Accuracy evaluation on the shared splits (a benchmark, not a test): compiles each shared
# model with sparseqc (calibrating on the calib split) and scores top-1 with onnxruntime on
# the eval/test split. Usage: scripts/accuracy.sh [OUTDIR] [MODEL...]
#   MODEL: resnet20 resnet56 mobilenetv2 (default: all)
# Extra sparseqc flags may be given in SQC_FLAGS; variants are listed in VARIANTS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bench-out/accuracy}"; shift || true
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(resnet20 resnet56 mobilenetv2)
shared="${SHARED:-$root/../shared}"
sqc="${SQC:-$root/target/release/sparseqc}"
py="$root/.venv/bin/python"
mkdir -p "$out"
norm='mean=0.485:0.456:0.406,std=0.229:0.224:0.225'
variants="${VARIANTS:-fp32 dense-int8 sparse-fp32 sparse-int8}"
for m in "${models[@]}"; do
  case "$m" in
    resnet20|resnet56) src="$shared/models/cifar10_${m}_bn.onnx"; ds=cifar10; split=test; calib="$shared/data/cifar10/calib"; pre="$norm";;
    mobilenetv2) src="$shared/models/mobilenet_v2_tv_bn.onnx"; ds=imagenet; split=eval; calib="$shared/data/imagenet-sample/calib"; pre="resize=256,crop=224,$norm";;
    *) echo "unknown model $m" >&2; exit 2;;
  esac
  for v in $variants; do
    o="$out/$m.$v.onnx"
    case "$v" in
      fp32) cp "$src" "$o";;
      dense-int8) "$sqc" "$src" -o "$o" --dense --calib "$calib" --preprocess "$pre" --report "$out/$m.$v.json" -q ${SQC_FLAGS:-};;
      sparse-fp32) "$sqc" "$src" -o "$o" --passes "fold-bn,cleanup,prune-2of4${PRUNE_OPTS:-}" --report "$out/$m.$v.json" -q;;
      sparse-int8) "$sqc" "$src" -o "$o" --calib "$calib" --preprocess "$pre" --report "$out/$m.$v.json" -q ${SQC_FLAGS:-};;
      *) echo "unknown variant $v" >&2; exit 2;;
    esac
    acc=$("$py" "$root/scripts/eval_top1.py" "$o" --dataset $ds --split $split --data "$shared/data" | tail -1)
    printf '%-12s %-12s %s\n' "$m" "$v" "$acc" | tee -a "$out/results.txt"
  done
done
