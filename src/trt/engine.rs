//! Building a TensorRT engine (`.plan`) from a [`Network`]: loads libnvinfer at run time and
//! replays the network through the C++ shim (shim/trt_shim.cpp, see docs/tensorrt.md).
//!
//! The binary never links libnvinfer. With `--features tensorrt`, [`build_engine`] dlopens
//! `libnvinfer.so.<major>` (the major version of the headers the shim was compiled with
//! first, then the other of 10/11; `$SPARSEQC_LIBNVINFER` overrides the path), takes its
//! `createInferBuilder_INTERNAL` symbol and hands that function pointer to the shim, which
//! obtains the `IBuilder` through it. Without the feature, or without the library, it
//! returns the single user error [`tensorrt_not_found`].
//!
//! Weight ownership: the shim passes the addresses of the [`Weights`](super::network::Weights)
//! buffers to TensorRT without copying. `build_engine` borrows the network immutably from
//! the first shim call until the plan bytes are copied out and the shim context (builder,
//! network, config) is destroyed, so the buffers stay alive and unchanged for as long as
//! TensorRT may read them.

use super::buildlog::{LogLine, Severity, SparsityReport};
use super::config::BuildConfig;
use super::network::Network;
use crate::error::{Error, Result};

/// The result of a successful engine build.
#[derive(Debug, Clone)]
pub struct EngineBuild {
    /// The serialized engine (`.plan` bytes).
    pub plan: Vec<u8>,
    /// Every message TensorRT logged during the build.
    pub log: Vec<LogLine>,
    /// The sparsity lines of the log, parsed.
    pub sparsity: SparsityReport,
}

/// The one error returned when no engine can be built on this machine.
pub fn tensorrt_not_found() -> Error {
    Error::user(
        "TensorRT (libnvinfer.so.11 or .10) was not found: install TensorRT 10.x/11.x and make sure the \
         library is on LD_LIBRARY_PATH; meanwhile write the model with `-o model.onnx` and build the engine \
         with `trtexec --onnx=model.onnx --sparsity=enable` (add `--int8` for TensorRT <= 10)",
    )
}

/// Whether this build of sparseqc contains the TensorRT shim (`--features tensorrt`).
pub fn shim_available() -> bool {
    cfg!(feature = "tensorrt")
}

/// Whether an engine can be built here: `Ok` when the shim is compiled in and libnvinfer
/// loads, else the same single error [`build_engine`] would return. Lets the CLI refuse a
/// `.plan` output before doing any work.
pub fn check_available() -> Result<()> {
    imp::check_available()
}

/// Builds a serialized TensorRT engine from `net` with `config`. Every TensorRT log message
/// is passed to `on_log` as it arrives (and kept in [`EngineBuild::log`]).
///
/// Errors: an invalid network or configuration; [`tensorrt_not_found`] when the shim was
/// not compiled in or libnvinfer cannot be loaded; TensorRT rejecting a layer or the build
/// (the message includes TensorRT's last error line).
pub fn build_engine(
    net: &Network,
    config: &BuildConfig,
    on_log: &mut dyn FnMut(Severity, &str),
) -> Result<EngineBuild> {
    net.validate()?;
    config.validate(net)?;
    imp::build_engine(net, config, on_log)
}

#[cfg(not(feature = "tensorrt"))]
mod imp {
    use super::*;

    pub(super) fn build_engine(
        _net: &Network,
        _config: &BuildConfig,
        _on_log: &mut dyn FnMut(Severity, &str),
    ) -> Result<EngineBuild> {
        Err(not_compiled_in())
    }

    pub(super) fn check_available() -> Result<()> {
        Err(not_compiled_in())
    }

    fn not_compiled_in() -> Error {
        Error::user(
            "cannot build a TensorRT engine: this sparseqc was built without TensorRT support. Install \
             TensorRT 10.x/11.x (libnvinfer.so.11 or .10 on LD_LIBRARY_PATH, plus its headers) and rebuild \
             with `TENSORRT_ROOT=/path/to/TensorRT cargo build --release --features tensorrt`; meanwhile \
             write the model with `-o model.onnx` and build the engine with \
             `trtexec --onnx=model.onnx --sparsity=enable` (add `--int8` for TensorRT <= 10)",
        )
    }
}

#[cfg(feature = "tensorrt")]
mod imp {
    use super::*;
    use crate::trt::shim_driver::{drive, CreateBuilderFn};
    use std::sync::OnceLock;

    struct NvInfer {
        create: CreateBuilderFn,
        // Kept loaded for the life of the process: unloading CUDA libraries is unsafe.
        _lib: libloading::Library,
    }

    static NVINFER: OnceLock<std::result::Result<NvInfer, String>> = OnceLock::new();

    fn load() -> std::result::Result<NvInfer, String> {
        let header_major = crate::trt::shim_driver::header_version().major;
        let mut names: Vec<String> = Vec::new();
        if let Some(p) = std::env::var_os("SPARSEQC_LIBNVINFER") {
            names.push(p.to_string_lossy().into_owned());
        }
        names.push(format!("libnvinfer.so.{header_major}"));
        for m in [11, 10] {
            if m != header_major {
                names.push(format!("libnvinfer.so.{m}"));
            }
        }
        let mut errors = Vec::new();
        for name in &names {
            // SAFETY: loading libnvinfer runs its initializers, which is what using TensorRT means.
            match unsafe { libloading::Library::new(name) } {
                Ok(lib) => {
                    // SAFETY: the symbol has this C signature in every TensorRT 10/11 release.
                    let create = match unsafe {
                        lib.get::<CreateBuilderFn>(b"createInferBuilder_INTERNAL\0")
                    } {
                        Ok(s) => *s,
                        Err(e) => {
                            errors.push(format!("{name}: {e}"));
                            continue;
                        }
                    };
                    return Ok(NvInfer { create, _lib: lib });
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(errors.join("; "))
    }

    pub(super) fn check_available() -> Result<()> {
        match NVINFER.get_or_init(load) {
            Ok(_) => Ok(()),
            Err(detail) => Err(not_found(detail)),
        }
    }

    /// A library that exists but fails to load (missing CUDA, wrong symbol) is worth the
    /// detail; "not found" is already said.
    fn not_found(detail: &str) -> Error {
        let e = tensorrt_not_found();
        if detail.contains("No such file") || detail.contains("cannot open shared object") {
            e
        } else {
            Error::user(format!("{} ({detail})", e.message))
        }
    }

    pub(super) fn build_engine(
        net: &Network,
        config: &BuildConfig,
        on_log: &mut dyn FnMut(Severity, &str),
    ) -> Result<EngineBuild> {
        match NVINFER.get_or_init(load) {
            Ok(lib) => drive(net, config, lib.create, on_log),
            Err(detail) => Err(not_found(detail)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trt::network::{DataType, LayerKind};

    #[test]
    fn clear_error_without_tensorrt() {
        // On this machine libnvinfer is absent, with or without the feature.
        if std::env::var_os("SPARSEQC_LIBNVINFER").is_some() {
            return;
        }
        let mut n = Network::new("n");
        let x = n.add_input("x", DataType::Float, &[1, 4]).unwrap();
        let y = n.add_layer("id", LayerKind::Identity, &[x]).unwrap();
        n.mark_output(y).unwrap();
        let e = build_engine(&n, &BuildConfig::default(), &mut |_, _| {}).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("libnvinfer.so.11 or .10") && s.contains("--sparsity=enable"),
            "{s}"
        );
        assert_eq!(e.kind, crate::error::ErrorKind::User);
    }

    #[test]
    fn invalid_network_reported_first() {
        let n = Network::new("empty");
        let e = build_engine(&n, &BuildConfig::default(), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("no outputs"), "{e}");
    }
}
