#!/usr/bin/env bash
# Issue 19 part 4: the trained CIFAR-10 ViT (testdata/models/vit_cifar10.onnx) as FP32, --dense
# INT8, default INT8 (2:4 OBS where eligible) and forced-sparse INT8 (every MatMul/Gemm with a
# constant weight 2:4), top-1 on the 10,000 test images with onnxruntime, the fraction of
# MatMul MACs that are 2:4, and each compile's wall time and peak RSS. Usage: scripts/vit_accuracy.sh [OUTDIR]
# MODEL=... overrides the model (e.g. the output of scripts/decompose_layernorm.py for an
# interpreter without LayerNormalization). RUNS picks runs (default "fp32 dense default forced").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bench-out/vit}"; mkdir -p "$out"
shared="${SHARED:-$root/../shared}"
sqc="${SQC:-$root/target/release/sparseqc}"
py="$root/.venv/bin/python"
model="${MODEL:-$root/testdata/models/vit_cifar10.onnx}"
calib="$shared/data/cifar10/calib"; test="$shared/data/cifar10/test"
pre='mean=0.485:0.456:0.406,std=0.229:0.224:0.225'
forced='fold-bn,cleanup,prune-2of4{method=obs,min-channels=4,min-params=0},calibrate,insert-qdq,bias-correct'
# compile wall seconds and peak RSS (/usr/bin/time), printed before the run's accuracy
tm() { local name=$1; shift; /usr/bin/time -f "%e %M" -o "$out/$name.time" "$@"; read -r w r < "$out/$name.time"; echo "$name: compile wall_s=$w peak_rss_mib=$((r / 1024))"; }
ev() { echo "$1: $("$py" "$root/scripts/vit/eval_vit.py" "$2" "$test" --threads 2 | tail -1)"; "$py" "$root/scripts/sparse_mac_fraction.py" "$2" | sed "s/^/$1 /"; }
for run in ${RUNS:-fp32 dense default forced}; do
  case $run in
    fp32) ev fp32 "$model";;
    dense) tm dense "$sqc" "$model" -o "$out/vit.dense.onnx" --dense --calib "$calib" --preprocess "$pre" -q --report "$out/dense.json"; ev dense "$out/vit.dense.onnx";;
    default) tm default "$sqc" "$model" -o "$out/vit.default.onnx" --calib "$calib" --preprocess "$pre" -q --report "$out/default.json"; ev default "$out/vit.default.onnx";;
    forced) tm forced "$sqc" "$model" -o "$out/vit.forced.onnx" --passes "$forced" --calib "$calib" --preprocess "$pre" -q --report "$out/forced.json"; ev forced "$out/vit.forced.onnx";;
  esac
done
