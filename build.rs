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
    plugin_stamp();
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

/// Facts for the plugin ABI stamp (see src/plugin.rs), exported to the crate as
/// environment variables: the compiler that builds this copy of sparseqc, the target,
/// and a fingerprint of the sources that define the types crossing the plugin boundary.
/// A plugin carries the stamp of the sparseqc it was built against; the host refuses it
/// unless every field equals its own.
fn plugin_stamp() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = std::process::Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown rustc".to_string());
    println!("cargo:rustc-env=SPARSEQC_RUSTC_VERSION={version}");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=SPARSEQC_TARGET={target}");

    // The boundary: the IR, the pass API, the error type, the plugin module, the schema.
    let roots = ["src/ir", "src/pass", "src/error.rs", "src/plugin.rs", "proto"];
    let mut files = Vec::new();
    for r in roots {
        println!("cargo:rerun-if-changed={r}");
        collect_files(std::path::Path::new(r), &mut files);
    }
    files.sort();
    // FNV-1a over (path, length, bytes) of each file, in path order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for f in &files {
        let data = std::fs::read(f).unwrap_or_default();
        feed(f.to_string_lossy().replace('\\', "/").as_bytes());
        feed(&(data.len() as u64).to_le_bytes());
        feed(&data);
    }
    println!("cargo:rustc-env=SPARSEQC_SOURCE_HASH={h:016x}");
}

fn collect_files(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    if p.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                collect_files(&e.path(), out);
            }
        }
    } else if p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("rs" | "proto")) {
        out.push(p.to_path_buf());
    }
}
