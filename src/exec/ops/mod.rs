//! Operator kernels. [`build`] validates a node's attributes and returns a prepared kernel;
//! the kernel's `run` computes the node's outputs from its inputs.

use crate::error::{Error, Result};
use crate::proto::AttributeProto;

use super::program::ExecNode;
use super::tensor::{Elem, Tensor};

/// Runs `$body` with `$T` bound to the Rust type of `$dt`.
macro_rules! with_dtype {
    ($dt:expr, $T:ident, $body:expr) => {
        match $dt {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            DType::I64 => {
                type $T = i64;
                $body
            }
            DType::I32 => {
                type $T = i32;
                $body
            }
            DType::I8 => {
                type $T = i8;
                $body
            }
            DType::U8 => {
                type $T = u8;
                $body
            }
            DType::I16 => {
                type $T = i16;
                $body
            }
            DType::U16 => {
                type $T = u16;
                $body
            }
            DType::U32 => {
                type $T = u32;
                $body
            }
            DType::U64 => {
                type $T = u64;
                $body
            }
            DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$T` bound to the Rust type of a float `$dt` (float32 or float64);
/// any other type is an error naming `$what` (the op).
macro_rules! with_float {
    ($dt:expr, $what:expr, $T:ident, $body:expr) => {
        match $dt {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            dt => Err(Error::user(format!("{} needs a float32 or float64 input, got {dt}", $what))),
        }
    };
}

/// Runs `$body` with `$T` bound to the Rust type of a numeric (non-bool) `$dt`; bool is an
/// error naming `$what` (the op).
macro_rules! with_num {
    ($dt:expr, $what:expr, $T:ident, $body:expr) => {
        match $dt {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            DType::I64 => {
                type $T = i64;
                $body
            }
            DType::I32 => {
                type $T = i32;
                $body
            }
            DType::I8 => {
                type $T = i8;
                $body
            }
            DType::U8 => {
                type $T = u8;
                $body
            }
            DType::I16 => {
                type $T = i16;
                $body
            }
            DType::U16 => {
                type $T = u16;
                $body
            }
            DType::U32 => {
                type $T = u32;
                $body
            }
            DType::U64 => {
                type $T = u64;
                $body
            }
            dt => Err(Error::user(format!("{} does not support {dt}", $what))),
        }
    };
}

pub(crate) mod conv;
pub(crate) mod einsum;
pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod nn;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod resize;
pub(crate) mod shape;

/// A float element type (float32, float64) for kernels that compute in f64 and store in
/// the input's precision.
pub(crate) trait Float: Elem + Default + PartialOrd {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// A numeric element type: integer arithmetic wraps (two's complement, as numpy and
/// onnxruntime do), float arithmetic is IEEE.
pub(crate) trait Num: Elem + Default + PartialOrd {
    const ZERO: Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// From f64, saturating for integers (NaN to 0).
    fn of_f64(v: f64) -> Self;
}

macro_rules! impl_num_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: Self = 0;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            fn of_f64(v: f64) -> Self { v as $t }
        }
    )*};
}
impl_num_int!(i64, i32, i16, i8, u64, u32, u16, u8);

macro_rules! impl_num_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: Self = 0.0;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self + o }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)]
            fn of_f64(v: f64) -> Self { v as $t }
        }
    )*};
}
impl_num_float!(f32, f64);

impl Float for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// A prepared operator. `inputs` has one slot per node input (`None` for an omitted
/// optional one); a slot whose tensor holds the only reference to its buffer may be reused
/// for the output. Returns one tensor per node output, in order (a kernel may return fewer
/// when trailing optional outputs were not requested).
pub(crate) trait Kernel: Send + Sync {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>>;
    /// Input slots whose constant this kernel copied at build into a layout of its own and
    /// no longer reads: the session may then drop the constant and hand `None` in that slot
    /// (a MatMul's prepacked weight: the weights are held once, in the packed layout).
    fn packed_inputs(&self) -> &[usize] {
        &[]
    }
}

/// What a kernel builder sees of the node.
pub(crate) struct NodeCtx<'a> {
    pub node: &'a ExecNode,
    pub opset: i64,
    /// The constant tensor of each input, where that input is a program constant.
    pub consts: Vec<Option<&'a Tensor>>,
}

impl<'a> NodeCtx<'a> {
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs(&self.node.attrs)
    }
    /// Number of inputs present (not counting omitted trailing ones).
    pub fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(|x| x.is_some())
    }
    pub fn const_input(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten()
    }
    pub fn require_inputs(&self, min: usize, max: usize) -> Result<()> {
        let n = self.node.inputs.len();
        if n < min || n > max {
            return Err(Error::user(format!("expects {min} to {max} inputs, got {n}")));
        }
        for i in 0..min {
            if !self.has_input(i) {
                return Err(Error::user(format!("input {i} is required")));
            }
        }
        Ok(())
    }
}

/// Typed read access to a node's attributes.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a>(pub &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => match (a.i, a.r#type) {
                (Some(i), _) => Ok(i),
                (None, Some(2)) | (None, None) => Ok(0),
                _ => Err(Error::user(format!("attribute '{name}' must be an int"))),
            },
        }
    }
    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => match (a.f, a.r#type) {
                (Some(f), _) => Ok(f),
                (None, Some(1)) | (None, None) => Ok(0.0),
                _ => Err(Error::user(format!("attribute '{name}' must be a float"))),
            },
        }
    }
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                if a.i.is_some() && a.ints.is_empty() {
                    return Err(Error::user(format!("attribute '{name}' must be a list of ints")));
                }
                Ok(Some(a.ints.clone()))
            }
        }
    }
    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) => match &a.s {
                Some(s) => String::from_utf8(s.to_vec())
                    .map_err(|_| Error::user(format!("attribute '{name}' is not valid UTF-8"))),
                None => Err(Error::user(format!("attribute '{name}' must be a string"))),
            },
        }
    }
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => match &a.t {
                Some(t) => Tensor::from_proto(t).map(Some),
                None => Err(Error::user(format!("attribute '{name}' must be a tensor"))),
            },
        }
    }
}

/// The tensor in input slot `i`, or an error if it is absent.
pub(crate) fn input(inputs: &[Option<Tensor>], i: usize) -> Result<&Tensor> {
    inputs.get(i).and_then(|x| x.as_ref()).ok_or_else(|| Error::user(format!("input {i} is missing")))
}

/// Takes the tensor out of input slot `i` (so its buffer may be reused).
pub(crate) fn take(inputs: &mut [Option<Tensor>], i: usize) -> Result<Tensor> {
    inputs.get_mut(i).and_then(|x| x.take()).ok_or_else(|| Error::user(format!("input {i} is missing")))
}

/// The tensor in slot `i` if present.
pub(crate) fn opt_input(inputs: &[Option<Tensor>], i: usize) -> Option<&Tensor> {
    inputs.get(i).and_then(|x| x.as_ref())
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(Error::user(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Element count threshold above which element-wise kernels split work across threads
/// (in fixed-size chunks, so results never depend on the thread count).
pub(crate) const PAR_CHUNK: usize = 1 << 16;

/// Builds the kernel for a node, validating the op type and its attributes.
pub(crate) fn build(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let domain = cx.node.domain.as_str();
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(Error::user(format!(
            "op {} of domain '{domain}' is not supported by the reference interpreter (only the default ONNX domain is)",
            cx.node.op_type
        )));
    }
    let op = cx.node.op_type.as_str();
    match op {
        "Conv" => conv::build_conv(cx),
        "ConvTranspose" => conv::build_conv_transpose(cx),
        "Gemm" => linalg::build_gemm(cx),
        "MatMul" => linalg::build_matmul(cx),
        "MaxPool" | "AveragePool" => pool::build_pool(cx),
        "GlobalAveragePool" | "GlobalMaxPool" => pool::build_global_pool(cx),
        "BatchNormalization" => nn::build_batchnorm(cx),
        "LayerNormalization" => norm::build_layer_norm(cx),
        "GroupNormalization" => norm::build_group_norm(cx),
        "InstanceNormalization" => norm::build_instance_norm(cx),
        "LRN" => norm::build_lrn(cx),
        "Resize" | "Upsample" => resize::build_resize(cx),
        "Softmax" | "LogSoftmax" => nn::build_softmax(cx),
        "QuantizeLinear" => nn::build_quantize(cx),
        "DequantizeLinear" => nn::build_dequantize(cx),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => nn::build_reduce(cx),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "LessOrEqual"
        | "GreaterOrEqual" | "And" | "Or" | "Max" | "Min" | "Sum" | "Mean" | "Mod" | "PRelu" => {
            elementwise::build_binary(cx)
        }
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Neg" | "Abs" | "Reciprocal" | "Floor"
        | "Ceil" | "LeakyRelu" | "HardSigmoid" | "HardSwish" | "Not" | "Erf" | "Elu" | "Softplus" | "Sin" | "Cos"
        | "Tan" | "Sign" | "Round" | "Softsign" | "Gelu" | "Selu" | "Shrink" => {
            elementwise::build_unary(cx)
        }
        "Clip" => elementwise::build_clip(cx),
        "Cast" => elementwise::build_cast(cx),
        "Where" => elementwise::build_where(cx),
        "Identity" | "Dropout" => shape::build_identity(cx),
        "Constant" => shape::build_constant(cx),
        "Shape" => shape::build_shape(cx),
        "Size" => shape::build_size(cx),
        "Reshape" => shape::build_reshape(cx),
        "Flatten" => shape::build_flatten(cx),
        "Transpose" => shape::build_transpose(cx),
        "Squeeze" | "Unsqueeze" => shape::build_squeeze(cx),
        "Concat" => shape::build_concat(cx),
        "Split" => shape::build_split(cx),
        "Slice" => shape::build_slice(cx),
        "Gather" => shape::build_gather(cx),
        "Pad" => shape::build_pad(cx),
        "ConstantOfShape" => shape::build_constant_of_shape(cx),
        "Expand" => shape::build_expand(cx),
        "Range" => shape::build_range(cx),
        "Einsum" => einsum::build_einsum(cx),
        "TopK" => index::build_topk(cx),
        "ArgMax" | "ArgMin" => index::build_arg(cx),
        "CumSum" => index::build_cumsum(cx),
        "Trilu" => index::build_trilu(cx),
        "Tile" => index::build_tile(cx),
        "GatherElements" => index::build_gather_elements(cx),
        "GatherND" => index::build_gather_nd(cx),
        "ScatterND" => index::build_scatter_nd(cx),
        "OneHot" => index::build_one_hot(cx),
        "NonZero" => index::build_nonzero(cx),
        "DepthToSpace" | "SpaceToDepth" => index::build_depth_space(cx),
        _ => Err(Error::user(format!("op {op} is not supported by the reference interpreter"))),
    }
}

/// Whether the interpreter has a kernel for `op` of `domain` at default-domain `opset`.
/// Asks [`build`] itself with an attribute-less, input-less node, so it cannot drift from
/// the dispatch: an op the dispatch knows fails on its missing inputs or attributes (or
/// builds), an op it does not know gets the "not supported" error.
pub(crate) fn is_supported(op: &str, domain: &str, opset: i64) -> bool {
    let node = ExecNode { name: String::new(), op_type: op.into(), domain: domain.into(), inputs: vec![], outputs: vec![], attrs: vec![] };
    let cx = NodeCtx { node: &node, opset, consts: vec![] };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(&cx).map(|_| ()))) {
        Ok(Ok(())) | Err(_) => true,
        Ok(Err(e)) => !e.to_string().contains("not supported by the reference interpreter"),
    }
}
