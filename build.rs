//! Compiles the .proto schemas in proto/ with prost, using protox (a pure-Rust protobuf
//! compiler) so that no system `protoc` is needed.
//!
//! With `--features tensorrt` it also compiles the C++ TensorRT shim (shim/, see
//! shim/build_shim.rs and docs/tensorrt.md).
#[cfg(feature = "tensorrt")]
#[path = "shim/build_shim.rs"]
mod build_shim;

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let files = ["proto/onnx.proto", "proto/trt_network.proto"];
    let fds = match protox::compile(files, ["proto"]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("failed to compile proto schemas: {e:?}");
            std::process::exit(1);
        }
    };
    // Keep the descriptor set: the loader walks unknown input against it to name
    // exactly which fields a decode would drop.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    {
        use prost::Message as _;
        if let Err(e) = std::fs::write(out.join("onnx_descriptor.bin"), fds.encode_to_vec()) {
            eprintln!("cannot write descriptor set: {e}");
            std::process::exit(1);
        }
    }
    let mut cfg = prost_build::Config::new();
    // `bytes` fields decode as `bytes::Bytes`, which slices the input buffer instead of
    // copying: with a memory-mapped model, tensor data is never copied on load.
    cfg.bytes(["."]);
    if let Err(e) = cfg.compile_fds(fds) {
        eprintln!("prost-build failed: {e}");
        std::process::exit(1);
    }

    #[cfg(feature = "tensorrt")]
    build_shim::build();
}
