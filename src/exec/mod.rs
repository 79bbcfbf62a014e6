//! A deterministic CPU reference interpreter for float (and Q/DQ) ONNX graphs.
//!
//! The compiler uses it to run models on calibration data (capturing any intermediate
//! tensor by name), to resume execution from cached intermediate tensors (layer-wise
//! reconstruction), and to check that rewrites preserve function.
//!
//! - [`Program`]: values, nodes, constants, inputs, outputs; built by the caller through
//!   [`Program::add_value`], [`Program::add_constant`], [`Program::add_node`], ... or from an
//!   ONNX graph with [`Program::from_graph`] / [`Program::from_model`].
//! - [`Session::new`] validates every op and attribute up front and orders the graph.
//! - [`Session::run`] (by name), [`Session::run_from`] (by id, from any cut),
//!   [`Session::run_batch`] (many samples in parallel) and [`Session::plan`] +
//!   [`Session::run_plan`] (a reusable schedule).
//!
//! Determinism: every kernel splits its work in pieces that depend only on tensor shapes,
//! and no reduction is ever split across threads, so results are bit-identical whatever
//! the size of rayon's thread pool.

mod gemm;
mod ops;
mod program;
mod session;
mod tensor;

pub use program::{constant_attr_value, ExecNode, Program, ValueInfo};
pub use session::{Plan, Session};
pub use tensor::{numel, DType, Data, Elem, Tensor};
