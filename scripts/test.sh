#!/usr/bin/env bash
# The project's test command: prepares the Python venv the numerical tests use
# (onnxruntime as the reference engine), then runs the whole Rust test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
.venv/bin/python scripts/selftest.py
cargo test --locked "$@"
# The C++ TensorRT shim: compile it (-Wall -Wextra -Werror) against TensorRT 11.4's public
# headers, fetched through cargo from crates.io (scripts/trt-headers.sh, docs/tensorrt.md), and
# run the tests that need it: they drive the shim against a recording fake TensorRT (no GPU, no
# libnvinfer needed).
TENSORRT_ROOT="$(scripts/trt-headers.sh)" cargo test --locked --features tensorrt --lib trt::
