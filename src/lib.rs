//! sparseqc: compile a trained ONNX model into a sparse (2:4) INT8 model for TensorRT.
//! See docs/architecture.md for the code map.

pub mod proto {
    //! Generated ONNX wire types (prost, proto2). See proto/onnx.proto.
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub mod error;
pub mod sparsity;
pub mod exec;
pub use error::{Error, ErrorKind, Result};
pub mod onnx;
pub mod ir;
pub mod text;
pub mod pass;
pub mod qdq;
pub mod measure;
#[path = "../passes/mod.rs"]
pub mod passes;
pub mod backend;
pub mod cli;
pub mod inspect;
pub mod plugin;
pub mod testing;
pub mod util;
pub mod vocab;
pub mod progress;
pub mod engine;
pub mod calib;
pub mod fuzzing;
pub mod outputs;
pub mod preflight;
pub mod conformance;
pub mod trt;
