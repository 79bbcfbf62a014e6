#!/usr/bin/env bash
# Effect of each sparse-INT8 component alone (issue 9), a benchmark, not a test.
# Every variant prunes every eligible layer 2:4 (min-channels=4, min-params=0), then
# calibrates (entropy) and inserts Q/DQ; top-1 with onnxruntime (--no-ort-opt) on the
# eval/test split. Usage: scripts/components.sh [OUTDIR] [resnet20|resnet56 ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bench-out/components}"; shift || true
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(resnet20)
shared="${SHARED:-$root/../shared}"
sqc="${SQC:-$root/target/release/sparseqc}"
py="$root/.venv/bin/python"
mkdir -p "$out"
pre='mean=0.485:0.456:0.406,std=0.229:0.224:0.225'
e='min-channels=4,min-params=0'
declare -A V=(
  [0-dense]="fold-bn,cleanup,calibrate,insert-qdq"
  [1-magnitude]="fold-bn,cleanup,prune-2of4{$e},calibrate,insert-qdq"
  [2-permutation]="fold-bn,cleanup,prune-2of4{$e,permute=true},calibrate,insert-qdq"
  [3-bias-correction]="fold-bn,cleanup,prune-2of4{$e,method=obs,reconstruct=false,correct-target=false},calibrate,insert-qdq"
  [4-obs]="fold-bn,cleanup,prune-2of4{$e,method=obs,correct-target=false,bias-correct=false},calibrate,insert-qdq"
  [5-target-correction]="fold-bn,cleanup,prune-2of4{$e,method=obs,reconstruct=false,bias-correct=false},calibrate,insert-qdq"
  [6-obs+target]="fold-bn,cleanup,prune-2of4{$e,method=obs,bias-correct=false},calibrate,insert-qdq"
  [7-obs+target+bias]="fold-bn,cleanup,prune-2of4{$e,method=obs},calibrate,insert-qdq"
  [8-all+int8-bias]="fold-bn,cleanup,prune-2of4{$e,method=obs},calibrate,insert-qdq,bias-correct"
)
for m in "${models[@]}"; do
  src="$shared/models/cifar10_${m}_bn.onnx"
  for v in $(printf '%s\n' "${!V[@]}" | sort); do
    [ -n "${ONLY:-}" ] && [[ "$v" != ${ONLY} ]] && continue
    o="$out/$m.$v.onnx"
    t0=$(date +%s.%N)
    "$sqc" "$src" -o "$o" --passes "${V[$v]}" --calib "$shared/data/cifar10/calib" --preprocess "$pre" \
      --report "$out/$m.$v.json" -q
    t1=$(date +%s.%N)
    acc=$("$py" "$root/scripts/eval_top1.py" "$o" --dataset cifar10 --split test --data "$shared/data" --no-ort-opt | tail -1)
    printf '%-9s %-22s %s  compile %.1f s  %s\n' "$m" "$v" "$acc" "$(echo "$t1 - $t0" | bc)" "${V[$v]}" | tee -a "$out/results.txt"
  done
done
