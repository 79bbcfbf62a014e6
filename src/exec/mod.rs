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
//! the size of rayon's thread pool. (Across machines they may differ in the last bits:
//! the SGEMM and depthwise kernels use FMA where the CPU has AVX2+FMA.)
//!
//! Supported ops (default ONNX domain, opset 7 to 22 semantics where they differ):
//! Conv (1-D/2-D/3-D, groups, dilations, strides, pads, auto_pad), ConvTranspose, Gemm,
//! MatMul, Einsum, BatchNormalization (inference), LayerNormalization, GroupNormalization,
//! InstanceNormalization, LRN, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
//! Softmax, LogSoftmax, QuantizeLinear / DequantizeLinear (per tensor and per axis,
//! int8/uint8), ReduceMean/Sum/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare; Add, Sub, Mul,
//! Div, Mod, Pow, PRelu, Max, Min, Sum, Mean, Equal, Less, Greater, LessOrEqual,
//! GreaterOrEqual, And, Or, Where (numpy broadcasting); Relu, Sigmoid, Tanh, Exp, Log, Sqrt,
//! Neg, Abs, Reciprocal, Floor, Ceil, Round, Sign, Sin, Cos, Tan, LeakyRelu, HardSigmoid,
//! HardSwish, Erf, Gelu, Elu, Selu, Shrink, Softplus, Softsign, Not, Clip, Cast; Resize
//! (nearest/linear/cubic, every coordinate transformation, antialias, axes,
//! keep_aspect_ratio_policy), Upsample; Identity, Dropout (inference), Constant, Shape,
//! Size, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Split, Slice, Gather,
//! GatherElements, GatherND, ScatterND, OneHot, NonZero, TopK, ArgMax, ArgMin, CumSum,
//! Trilu, Tile, DepthToSpace, SpaceToDepth, Pad (constant, reflect, edge),
//! ConstantOfShape, Expand, Range. Anything else is refused by [`Session::new`] with the
//! node's name and op type.
//!
//! Element types: float32, float64, int64, int32, int16, int8, uint64, uint32, uint16,
//! uint8, bool. Data-movement ops take every type; integer arithmetic wraps (two's
//! complement) and integer division and modulo by zero are errors; float kernels that are
//! not on the hot path (normalizations, Resize's linear and cubic modes, Einsum,
//! reductions) compute in f64 and store in the input's precision.
//!
//! Performance notes: Conv runs as an implicit GEMM over the zero-padded input for stride
//! 1 (im2col otherwise) on a packed 6x16 AVX2/FMA microkernel with weights packed once at
//! session build; depthwise convs run register-blocked direct loops; element-wise ops work
//! in place when they hold the only reference to a buffer; large float buffers are
//! recycled through a per-thread pool. Per-node timings: [`Session::run_plan_profiled`].

mod gemm;
mod ops;
mod program;
mod session;
mod tensor;

pub use program::{constant_attr_value, ExecNode, Program, ValueInfo};
pub use session::{NodeTimes, Plan, Session};
pub use tensor::{numel, DType, Data, Elem, Tensor};

/// Whether the interpreter runs `op` of `domain` at default-domain `opset` (the same
/// dispatch as [`Session::new`]).
pub fn is_supported(op: &str, domain: &str, opset: i64) -> bool {
    ops::is_supported(op, domain, opset)
}
