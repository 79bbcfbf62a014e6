#!/usr/bin/env bash
# Runs the corpus (scripts/corpus/fetch.sh first) through `sparseqc --dense` and the default
# pipeline, checks every output with onnx.checker and onnxruntime, and prints the table of
# docs/coverage.md (fidelity against the float model on held-out inputs).
#   scripts/corpus/run.sh [--only light_resnet50,bert_tiny] [--timeout 900]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
exec .venv/bin/python scripts/corpus/corpus.py "$@"
