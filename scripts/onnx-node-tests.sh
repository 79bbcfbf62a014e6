#!/usr/bin/env bash
# Prints the folder holding the ONNX backend node tests
# (onnx/backend/test/data/node/*/: model.onnx and test_data_set_*/{input,output}_*.pb,
# ~1,700 tests).
# onnx 1.23 no longer ships them in its wheel, so this takes them from the onnx 1.22.0
# wheel on PyPI (downloaded once with pip, unpacked under target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/target/onnx-node-tests"
# .complete-data: the test data sets are extracted too (an older copy held only models)
if [ ! -f "$dest/.complete-data" ]; then
  py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
  tmp="$(mktemp -d)"
  "$py" -m pip download -q --no-deps --only-binary :all: -d "$tmp" onnx==1.22.0 >&2
  rm -rf "$dest"; mkdir -p "$dest"
  "$py" - "$tmp" "$dest" <<'PY'
import glob, re, sys, zipfile
whl = glob.glob(sys.argv[1] + "/onnx-*.whl")[0]
keep = re.compile(r"/backend/test/data/node/[^/]+/(model\.onnx|test_data_set_\d+/(input|output)_\d+\.pb)$")
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if keep.search(n):
            z.extract(n, sys.argv[2])
PY
  rm -rf "$tmp"
  touch "$dest/.complete" "$dest/.complete-data"
fi
echo "$dest/onnx/backend/test/data/node"
