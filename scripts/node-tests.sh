#!/usr/bin/env bash
# Coverage of the interpreter measured with the ONNX backend node tests (onnx 1.22.0):
# every single-node test of the ops of issue 18 (and, in a second table, the other ops the
# transformer and CNN exports use) goes through sparseqc's importer and interpreter and is
# compared with the expected outputs (rtol 1e-3, atol 1e-7 for floats; exact otherwise).
# Prints each failure with its reason and the per-op table; exits non-zero below 95 %.
# Extra arguments go to the runner (e.g. --markdown). Results: docs/coverage.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(scripts/onnx-node-tests.sh)"
cargo build --release --example node_tests >&2
extra="Erf,Softmax,LogSoftmax,MatMul,Where,Expand,ReduceL1,ReduceLogSum,ReduceSumSquare,ReduceMean,ReduceSum,ReduceMax,ReduceMin"
exec target/release/examples/node_tests "$dir" --extra "$extra" "$@"
