#!/usr/bin/env bash
# Prints the folder holding the ONNX backend node test models
# (onnx/backend/test/data/node/*/model.onnx, ~1,700 of them).
# onnx 1.23 no longer ships them in its wheel, so this takes them from the onnx 1.22.0
# wheel on PyPI (downloaded once with pip, unpacked under target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/target/onnx-node-tests"
if [ ! -f "$dest/.complete" ]; then
  py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
  tmp="$(mktemp -d)"
  "$py" -m pip download -q --no-deps --only-binary :all: -d "$tmp" onnx==1.22.0 >&2
  rm -rf "$dest"; mkdir -p "$dest"
  "$py" - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/onnx-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if "/backend/test/data/node/" in n and n.endswith("/model.onnx"):
            z.extract(n, sys.argv[2])
PY
  rm -rf "$tmp"
  touch "$dest/.complete"
fi
echo "$dest/onnx/backend/test/data/node"
