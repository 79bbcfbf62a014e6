#!/usr/bin/env bash
# Issue 6 benchmark: the whole pipeline, calibration included, against onnxruntime's
# quantize_static on the same model, calibration images and thread count (2), one after the
# other in one run. Prints one line per run: tool, model, wall seconds (process, from
# /usr/bin/time), peak RSS. Usage: scripts/bench/pipeline_vs_ort.sh [OUTDIR]
# ORT_METHODS (default "minmax") may add percentile/entropy (minutes each on MobileNetV2).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/bench-out/pipeline}"; mkdir -p "$out"
shared="${SHARED:-$root/../shared}"
sqc="${SQC:-$root/target/release/sparseqc}"
py="$root/.venv/bin/python"
norm='mean=0.485:0.456:0.406,std=0.229:0.224:0.225'
t() { /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" > "$out/log.txt" 2>&1; read -r w r < "$out/time.txt"; echo "$w $((r / 1024))"; }
for m in resnet20 mobilenetv2; do
  case $m in
    resnet20) src="$shared/models/cifar10_resnet20_bn.onnx"; calib="$shared/data/cifar10/calib"; ds=cifar10; pre="$norm";;
    mobilenetv2) src="$shared/models/mobilenet_v2_tv_bn.onnx"; calib="$shared/data/imagenet-sample/calib"; ds=imagenet; pre="resize=256,crop=224,$norm";;
  esac
  for meth in ${ORT_METHODS:-minmax}; do
    read -r w r <<< "$(t "$py" "$root/scripts/bench/ort_quantize.py" "$src" "$out/$m.ort.$meth.onnx" --calib "$calib" --dataset $ds --method $meth)"
    printf '%-34s %-12s wall_s=%-7s peak_rss_mib=%s\n' "onnxruntime quantize_static $meth" $m $w $r
  done
  read -r w r <<< "$(t "$sqc" "$src" -o "$out/$m.dense.onnx" --dense --calib "$calib" --preprocess "$pre" -q --report "$out/$m.dense.json")"
  printf '%-34s %-12s wall_s=%-7s peak_rss_mib=%s\n' "sparseqc --dense" $m $w $r
  # issue 6's pipeline as it was defined (2:4 by magnitude, no reconstruction)
  read -r w r <<< "$(t "$sqc" "$src" -o "$out/$m.magnitude.onnx" --passes 'fold-bn,cleanup,prune-2of4,calibrate,insert-qdq,bias-correct' --calib "$calib" --preprocess "$pre" -q --report "$out/$m.magnitude.json")"
  printf '%-34s %-12s wall_s=%-7s peak_rss_mib=%s\n' "sparseqc 2:4 magnitude + INT8" $m $w $r
  read -r w r <<< "$(t "$sqc" "$src" -o "$out/$m.default.onnx" --calib "$calib" --preprocess "$pre" -q --report "$out/$m.default.json")"
  printf '%-34s %-12s wall_s=%-7s peak_rss_mib=%s\n' "sparseqc (default: 2:4 OBS + INT8)" $m $w $r
done
