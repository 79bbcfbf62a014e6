#!/usr/bin/env bash
# Print the ONNX backend node-test models (onnx/backend/test/data/node/*/model.onnx), one absolute
# path per line, sorted, for the protobuf round-trip test.
#
#   scripts/fetch_onnx_node_tests.sh            # list the model paths
#   scripts/fetch_onnx_node_tests.sh --dir      # print only the node/ folder
#   scripts/fetch_onnx_node_tests.sh --count    # print only how many models there are
#
# They ship inside onnx wheels up to 1.22.x; onnx 1.23 (pinned in requirements.txt) no longer
# carries node/. So: if the onnx installed in <repo>/.venv has them, use those; otherwise fetch
# the onnx==$NODE_TESTS_ONNX wheel from PyPI with pip (no install) once, and unpack only its
# node/ folder (about 1,765 models, 11 MB with their test data) under .venv/onnx-node-tests/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
ver="${NODE_TESTS_ONNX:-1.22.0}"
if [[ ! -x "$py" ]]; then
  "$here/setup-venv.sh" >&2
fi

dir="$("$py" -c 'import os, onnx; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node"))')"
if [[ ! -d "$dir" ]]; then
  cache="$root/.venv/onnx-node-tests/onnx-$ver"
  dir="$cache/onnx/backend/test/data/node"
  if [[ ! -f "$cache/.complete" ]]; then
    echo "fetch_onnx_node_tests: installed onnx has no node tests; unpacking them from the onnx==$ver wheel" >&2
    rm -rf "$cache"
    mkdir -p "$cache/wheel"
    "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: \
      -d "$cache/wheel" "onnx==$ver" >&2
    "$py" - "$cache" <<'PY'
import sys, zipfile, glob, os
cache = sys.argv[1]
whl = glob.glob(os.path.join(cache, "wheel", "onnx-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    members = [m for m in z.namelist() if m.startswith("onnx/backend/test/data/node/")]
    z.extractall(cache, members)
PY
    rm -rf "$cache/wheel"
    touch "$cache/.complete"
  fi
fi
[[ -d "$dir" ]] || { echo "fetch_onnx_node_tests: no node tests found at $dir" >&2; exit 1; }
case "${1:-}" in
  --dir) echo "$dir" ;;
  --count) find "$dir" -mindepth 2 -maxdepth 2 -name model.onnx | wc -l ;;
  "") find "$dir" -mindepth 2 -maxdepth 2 -name model.onnx | LC_ALL=C sort ;;
  *) echo "usage: $0 [--dir|--count]" >&2; exit 2 ;;
esac
