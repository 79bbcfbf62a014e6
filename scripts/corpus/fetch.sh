#!/usr/bin/env bash
# Fetches the third-party model corpus of issue 18 into target/corpus/models (never committed):
#  (a) the model-zoo topologies in the onnx wheel's backend test data (onnx/backend/test/data/light/
#      light_*.onnx: their weights are ConstantOfShape fills, not trained values);
#  (b) the PaddleOCR det/rec/cls exports inside the rapidocr-onnxruntime wheel (real weights);
#  (c) a BERT-shaped and a ViT-shaped export made here with torch (random weights).
# Wheels come from PyPI through pip; torch is Debian's python3-torch (or any python with torch:
# TORCH_PYTHON=...).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${CORPUS_DIR:-target/corpus}"
PY=.venv/bin/python
TORCH_PYTHON="${TORCH_PYTHON:-/usr/bin/python3}"
ONNX_VERSION="${ONNX_VERSION:-1.22.0}"
RAPIDOCR_VERSION="${RAPIDOCR_VERSION:-1.4.4}"
mkdir -p "$OUT/models" "$OUT/wheels"

# (a) pip picks the wheel for this interpreter and platform
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "onnx==$ONNX_VERSION" -d "$OUT/wheels"
ONNX_WHEEL=$(ls "$OUT"/wheels/onnx-"$ONNX_VERSION"-*.whl | head -1)
unzip -o -j -q "$ONNX_WHEEL" 'onnx/backend/test/data/light/light_*.onnx' -d "$OUT/models"

# (b)
"$PY" -m pip download --quiet --no-deps "rapidocr-onnxruntime==$RAPIDOCR_VERSION" -d "$OUT/wheels"
unzip -o -j -q "$OUT/wheels/rapidocr_onnxruntime-$RAPIDOCR_VERSION-py3-none-any.whl" 'rapidocr_onnxruntime/models/*.onnx' -d "$OUT/models"

# (c)
"$TORCH_PYTHON" scripts/corpus/make_torch_models.py "$OUT/models" 2>&1 | grep -v -i warning || true
test -f "$OUT/models/bert_tiny.onnx" && test -f "$OUT/models/vit_tiny.onnx"

ls -l "$OUT/models"
