#!/usr/bin/env bash
# Prints an include directory holding TensorRT 11.4's public headers (NvInfer.h, ...), for
#   TENSORRT_ROOT=$(scripts/trt-headers.sh) cargo build --features tensorrt
# on machines without a TensorRT install. The headers come from the crates.io package
# trtx-sys 0.9.1 (which ships them), fetched with cargo into cargo's own registry cache;
# nothing is copied into this repository. A CUDA-free stand-in for <cuda_runtime_api.h>
# sits in the directory above (TensorRT's headers need only two typedefs from it), and
# shim/build_shim.rs finds it there.
set -euo pipefail

CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
find_dir() {
    ls -d "$CARGO_HOME"/registry/src/*/trtx-sys-0.9.1*/TensorRT-Headers/TRT-Enterprise-11.4 2>/dev/null | head -n 1
}

dir="$(find_dir || true)"
if [ -z "$dir" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/src"
    cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "sparseqc-trt-headers"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
trtx-sys = { version = "=0.9.1", default-features = false }
TOML
    : > "$work/src/lib.rs"
    # `cargo fetch` downloads and unpacks the package sources into $CARGO_HOME/registry/src
    # without building anything (trtx-sys's build script would need TensorRT itself).
    cargo fetch --manifest-path "$work/Cargo.toml" --quiet >&2
    dir="$(find_dir || true)"
fi

if [ -z "$dir" ] || [ ! -f "$dir/NvInfer.h" ]; then
    echo "trt-headers.sh: TensorRT headers not found in trtx-sys 0.9.1" >&2
    exit 1
fi
echo "$dir"
