#!/usr/bin/env bash
# The project's test command: prepares the Python venv the numerical tests use
# (onnxruntime as the reference engine), then runs the whole Rust test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
.venv/bin/python scripts/selftest.py
cargo test --locked "$@"
