#!/usr/bin/env bash
# Issue 19 benchmark: a BERT-base-shaped encoder (scripts/make_bert_base.py: 12 layers, hidden
# 768, FFN 3072, 12 heads, sequence 128, random weights) with 64 calibration samples, through
# onnxruntime's quantize_static and sparseqc --dense, the default pipeline and the default with
# every MatMul forced to 2:4, one after the other in one run. Prints wall seconds and peak RSS
# (/usr/bin/time) per run and keeps the reports (--time-passes) in OUTDIR.
# Usage: scripts/bench/bert_vs_ort.sh [OUTDIR]   (LAYERNORM=op|decomposed, default op)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/bench-out/bert}"; mkdir -p "$out"
sqc="${SQC:-$root/target/release/sparseqc}"
py="$root/.venv/bin/python"
[ -f "$out/bert_base.onnx" ] || "$py" "$root/scripts/make_bert_base.py" "$out" --layernorm "${LAYERNORM:-op}"
model="$out/bert_base.onnx"; calib="$out/bert_base.calib.npz"
echo "model $(stat -c %s "$model") bytes"
# wall and CPU (user + system) seconds: on a shared machine the CPU time is the steadier figure
t() { local name=$1; shift; /usr/bin/time -f "%e %U %S %M" -o "$out/$name.time" "$@" > "$out/$name.log" 2>&1; read -r w u s r < "$out/$name.time"; printf '%-40s wall_s=%-8s cpu_s=%-8s peak_rss_mib=%s\n' "$name" "$w" "$(echo "$u + $s" | bc)" "$((r / 1024))"; }
forced='fold-bn,cleanup,prune-2of4{method=obs,min-channels=4,min-params=0},calibrate,insert-qdq,bias-correct'
for run in ${RUNS:-ort dense default forced}; do
  case $run in
    ort) t ort_quantize_static "$py" "$root/scripts/bench/ort_quantize_npz.py" "$model" "$calib" "$out/bert.ort.onnx";;
    dense) t sparseqc_dense "$sqc" "$model" -o "$out/bert.dense.onnx" --dense --calib "$calib" --time-passes --report "$out/dense.json";;
    default) t sparseqc_default "$sqc" "$model" -o "$out/bert.default.onnx" --calib "$calib" --time-passes --report "$out/default.json";;
    forced) t sparseqc_forced_2of4 "$sqc" "$model" -o "$out/bert.forced.onnx" --passes "$forced" --calib "$calib" --time-passes --report "$out/forced.json";;
  esac
done
