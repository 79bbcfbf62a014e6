#!/usr/bin/env bash
# Anchor: `polygraphy surgeon prune` (2:4 magnitude pruning of Conv/Gemm/MatMul weights).
#
#   polygraphy_prune.sh IN.onnx OUT.onnx [extra polygraphy args...]
#
# Uses <repo>/.venv (scripts/setup-venv.sh --bench). Inputs over 2 GB or with external
# data are saved with external data. Prints a BENCH line (wall_s, peak_rss_mib).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[[ $# -ge 2 ]] || { echo "usage: $0 IN.onnx OUT.onnx [polygraphy args...]" >&2; exit 2; }
in="$1"; out="$2"; shift 2
extra=()
uses_ext="$("$py" -c 'import onnx,sys
from onnx.external_data_helper import uses_external_data as u
m=onnx.load(sys.argv[1],load_external_data=False)
print(int(any(u(t) for t in m.graph.initializer)))' "$in")"
if [[ "$uses_ext" == 1 ]] || [[ $(stat -c %s "$in") -gt 2000000000 ]]; then
  rm -f "$out.data"
  extra+=(--save-external-data "$(basename "$out").data")
fi
exec "$py" "$here/measure.py" --tool polygraphy_prune --key "model=$(basename "$in")" -- \
  "$(dirname "$py")/polygraphy" surgeon prune "$in" -o "$out" "${extra[@]}" "$@"
