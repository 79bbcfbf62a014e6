#!/usr/bin/env bash
# Create (or refresh) the Python venv at <repo>/.venv used by the verification,
# evaluation and benchmark scripts, by .ci/run and by the README.
#
#   scripts/setup-venv.sh            # onnx, onnxruntime, numpy, pillow (scripts/requirements.txt)
#   scripts/setup-venv.sh --bench    # + onnxsim, onnxoptimizer, polygraphy (scripts/requirements-bench.txt)
#
# Idempotent: does nothing when .venv already holds exactly the pinned requirements
# (a stamp file records the hash of the requirement files that were installed).
# PYTHON=/path/to/python3 overrides the interpreter (3.11 or newer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/.venv"

reqs=("$here/requirements.txt")
if [[ "${1:-}" == "--bench" ]]; then
  reqs=("$here/requirements-bench.txt")
elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [--bench]" >&2
  exit 2
fi
# requirements-bench.txt includes requirements.txt; hash both so edits to either refresh.
want="$(cat "$here/requirements.txt" "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.sqc-requirements-${#reqs[@]}-$(basename "${reqs[0]}" .txt).sha256"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
   && "$venv/bin/python" -c 'import onnx, onnxruntime, numpy, PIL' 2>/dev/null; then
  echo "setup-venv: $venv up to date ($(basename "${reqs[0]}"))"
  exit 0
fi

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then py="$(command -v "$cand")"; break; fi
  done
fi
[[ -n "$py" ]] || { echo "setup-venv: no python3 found" >&2; exit 1; }

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-venv: creating $venv with $("$py" --version 2>&1)"
  "$py" -m venv "$venv"
fi
echo "setup-venv: installing $(basename "${reqs[0]}")"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "${reqs[0]}"
echo "$want" > "$stamp"
echo "setup-venv: done"
