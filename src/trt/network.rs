//! A network-definition model mirroring TensorRT's `INetworkDefinition` (TensorRT 11.4
//! `NvInfer.h`): tensors, inputs, layers with their parameters, outputs.
//!
//! The lowering from the quantized IR builds a [`Network`] with [`Network::add_input`],
//! [`Network::add_layer`] and [`Network::mark_output`]; the shim (see [`crate::trt::engine`])
//! replays it against TensorRT's C++ API, [`crate::trt::text`] prints it and
//! [`crate::trt::serial`] (de)serializes it.
//!
//! Conventions copied from TensorRT:
//! * dimensions are `i64`, `-1` marks a dynamic dimension (only allowed on network inputs);
//! * layers are in definition order, which is a topological order: a layer may only read
//!   tensors that exist when it is added;
//! * every layer kind supported here has exactly one output tensor;
//! * weights are owned, typed host buffers ([`Weights`]); TensorRT holds them by reference
//!   until the engine build returns, which the borrow of the [`Network`] during
//!   [`crate::trt::engine::build_engine`] guarantees.

use std::collections::HashMap;
use std::fmt;

use crate::error::{Error, Result};

/// Element type of a tensor or of weights: TensorRT's `nvinfer1::DataType`.
/// Discriminants are the values of the TensorRT 10.x/11.x headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum DataType {
    /// `kFLOAT`: 32-bit IEEE float.
    Float = 0,
    /// `kHALF`: 16-bit IEEE float.
    Half = 1,
    /// `kINT8`: signed 8-bit integer (quantized values).
    Int8 = 2,
    /// `kINT32`: signed 32-bit integer.
    Int32 = 3,
    /// `kBOOL`: 8-bit boolean.
    Bool = 4,
    /// `kUINT8`: unsigned 8-bit integer.
    UInt8 = 5,
    /// `kFP8`: 8-bit float (E4M3).
    Fp8 = 6,
    /// `kBF16`: brain float 16.
    BF16 = 7,
    /// `kINT64`: signed 64-bit integer.
    Int64 = 8,
    /// `kINT4`: signed 4-bit integer (packed).
    Int4 = 9,
}

impl DataType {
    /// All data types, in header order.
    pub const ALL: [DataType; 10] = [
        DataType::Float,
        DataType::Half,
        DataType::Int8,
        DataType::Int32,
        DataType::Bool,
        DataType::UInt8,
        DataType::Fp8,
        DataType::BF16,
        DataType::Int64,
        DataType::Int4,
    ];

    /// The header's numeric value (`static_cast<int32_t>(DataType::kX)`).
    pub fn value(self) -> i32 {
        self as i32
    }

    /// Inverse of [`DataType::value`].
    pub fn from_value(v: i32) -> Option<DataType> {
        DataType::ALL.iter().copied().find(|d| d.value() == v)
    }

    /// The name without the `k` prefix, as printed in the text form: `FLOAT`, `INT8`, ...
    pub fn name(self) -> &'static str {
        match self {
            DataType::Float => "FLOAT",
            DataType::Half => "HALF",
            DataType::Int8 => "INT8",
            DataType::Int32 => "INT32",
            DataType::Bool => "BOOL",
            DataType::UInt8 => "UINT8",
            DataType::Fp8 => "FP8",
            DataType::BF16 => "BF16",
            DataType::Int64 => "INT64",
            DataType::Int4 => "INT4",
        }
    }

    /// Parses [`DataType::name`] (case-insensitive, optional `k` prefix).
    pub fn from_name(s: &str) -> Option<DataType> {
        let u = s.to_ascii_uppercase();
        let u = u
            .strip_prefix('K')
            .filter(|r| DataType::ALL.iter().any(|d| d.name() == *r))
            .unwrap_or(u.as_str());
        DataType::ALL.iter().copied().find(|d| d.name() == u)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Declares a TensorRT enum mirror: Rust variants with the header's values and names.
macro_rules! trt_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:expr => $trt:expr,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name { $($(#[$vm])* $var = $val,)+ }
        impl $name {
            /// All variants, in header order.
            pub const ALL: &'static [$name] = &[$($name::$var,)+];
            /// The TensorRT 11.x header's numeric value.
            pub fn value(self) -> i32 { self as i32 }
            /// Inverse of `value`.
            pub fn from_value(v: i32) -> Option<$name> {
                Self::ALL.iter().copied().find(|x| x.value() == v)
            }
            /// The header's enumerator name, e.g. `kRELU`.
            pub fn trt_name(self) -> &'static str {
                match self { $($name::$var => $trt,)+ }
            }
            /// Inverse of `trt_name`.
            pub fn from_trt_name(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|x| x.trt_name() == s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.trt_name()) }
        }
    };
}

trt_enum! {
    /// `nvinfer1::ActivationType` (the subset CNN lowering needs).
    ActivationType {
        /// max(0, x)
        Relu = 0 => "kRELU",
        /// 1 / (1 + exp(-x))
        Sigmoid = 1 => "kSIGMOID",
        /// tanh(x)
        Tanh = 2 => "kTANH",
        /// x >= 0 ? x : alpha * x
        LeakyRelu = 3 => "kLEAKY_RELU",
        /// x >= 0 ? x : alpha * (exp(x) - 1)
        Elu = 4 => "kELU",
        /// alpha * log(exp(beta * x) + 1)
        Softplus = 7 => "kSOFTPLUS",
        /// max(alpha, min(beta, x)); ReLU6 is alpha = 0, beta = 6.
        Clip = 8 => "kCLIP",
        /// max(0, min(1, alpha * x + beta))
        HardSigmoid = 9 => "kHARD_SIGMOID",
        /// 0.5 x (1 + erf(x / sqrt 2))
        GeluErf = 12 => "kGELU_ERF",
        /// tanh approximation of GELU
        GeluTanh = 13 => "kGELU_TANH",
    }
}

impl ActivationType {
    /// Whether TensorRT reads alpha/beta for this activation.
    pub fn uses_alpha_beta(self) -> bool {
        matches!(
            self,
            ActivationType::LeakyRelu
                | ActivationType::Elu
                | ActivationType::Softplus
                | ActivationType::Clip
                | ActivationType::HardSigmoid
        )
    }
}

trt_enum! {
    /// `nvinfer1::ElementWiseOperation`.
    ElementWiseOperation {
        /// a + b
        Sum = 0 => "kSUM",
        /// a * b
        Prod = 1 => "kPROD",
        /// max(a, b)
        Max = 2 => "kMAX",
        /// min(a, b)
        Min = 3 => "kMIN",
        /// a - b
        Sub = 4 => "kSUB",
        /// a / b
        Div = 5 => "kDIV",
        /// a ^ b
        Pow = 6 => "kPOW",
    }
}

trt_enum! {
    /// `nvinfer1::PoolingType`.
    PoolingType {
        /// Maximum over the window.
        Max = 0 => "kMAX",
        /// Average over the window (see `average_count_excludes_padding`).
        Average = 1 => "kAVERAGE",
    }
}

trt_enum! {
    /// `nvinfer1::ReduceOperation`.
    ReduceOperation {
        /// Sum.
        Sum = 0 => "kSUM",
        /// Product.
        Prod = 1 => "kPROD",
        /// Maximum.
        Max = 2 => "kMAX",
        /// Minimum.
        Min = 3 => "kMIN",
        /// Average (global average pooling: axes H and W, keepDims).
        Avg = 4 => "kAVG",
    }
}

trt_enum! {
    /// `nvinfer1::MatrixOperation`: how an input of `IMatrixMultiplyLayer` is read.
    MatrixOperation {
        /// Treat as a (batch of) matrices.
        None = 0 => "kNONE",
        /// Transpose the last two dimensions.
        Transpose = 1 => "kTRANSPOSE",
        /// Treat the last dimension as a vector.
        Vector = 2 => "kVECTOR",
    }
}

trt_enum! {
    /// `nvinfer1::SampleMode` of `ISliceLayer`.
    SampleMode {
        /// Out-of-bounds is an error.
        StrictBounds = 0 => "kSTRICT_BOUNDS",
        /// Coordinates wrap around.
        Wrap = 1 => "kWRAP",
        /// Coordinates are clamped.
        Clamp = 2 => "kCLAMP",
        /// Out-of-bounds reads the fill value (input 4).
        Fill = 3 => "kFILL",
        /// Coordinates reflect.
        Reflect = 4 => "kREFLECT",
    }
}

/// A tensor handle: index into [`Network::tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

/// A layer handle: index into [`Network::layers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(pub u32);

/// Typed, owned weight values, as TensorRT's `Weights` points to them (host-endian, dense).
/// The shape is not part of the weights (as in TensorRT): it follows from the layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// `kFLOAT`
    Float(Vec<f32>),
    /// `kHALF`, raw IEEE binary16 bits.
    Half(Vec<u16>),
    /// `kBF16`, raw bfloat16 bits.
    BF16(Vec<u16>),
    /// `kINT8`
    Int8(Vec<i8>),
    /// `kUINT8`
    UInt8(Vec<u8>),
    /// `kINT32`
    Int32(Vec<i32>),
    /// `kINT64`
    Int64(Vec<i64>),
    /// `kBOOL`
    Bool(Vec<bool>),
}

impl Weights {
    /// The element type.
    pub fn dtype(&self) -> DataType {
        match self {
            Weights::Float(_) => DataType::Float,
            Weights::Half(_) => DataType::Half,
            Weights::BF16(_) => DataType::BF16,
            Weights::Int8(_) => DataType::Int8,
            Weights::UInt8(_) => DataType::UInt8,
            Weights::Int32(_) => DataType::Int32,
            Weights::Int64(_) => DataType::Int64,
            Weights::Bool(_) => DataType::Bool,
        }
    }

    /// Number of elements (`Weights::count`).
    pub fn count(&self) -> usize {
        match self {
            Weights::Float(v) => v.len(),
            Weights::Half(v) | Weights::BF16(v) => v.len(),
            Weights::Int8(v) => v.len(),
            Weights::UInt8(v) => v.len(),
            Weights::Int32(v) => v.len(),
            Weights::Int64(v) => v.len(),
            Weights::Bool(v) => v.len(),
        }
    }

    /// Bytes per element.
    pub fn element_size(&self) -> usize {
        match self {
            Weights::Float(_) | Weights::Int32(_) => 4,
            Weights::Half(_) | Weights::BF16(_) => 2,
            Weights::Int8(_) | Weights::UInt8(_) | Weights::Bool(_) => 1,
            Weights::Int64(_) => 8,
        }
    }

    /// Pointer to the first element (what TensorRT's `Weights::values` receives).
    pub fn as_ptr(&self) -> *const std::ffi::c_void {
        match self {
            Weights::Float(v) => v.as_ptr().cast(),
            Weights::Half(v) | Weights::BF16(v) => v.as_ptr().cast(),
            Weights::Int8(v) => v.as_ptr().cast(),
            Weights::UInt8(v) => v.as_ptr().cast(),
            Weights::Int32(v) => v.as_ptr().cast(),
            Weights::Int64(v) => v.as_ptr().cast(),
            Weights::Bool(v) => v.as_ptr().cast(),
        }
    }

    /// Whether element `i` is exactly zero (`-0.0` counts as zero). Out of range is `false`.
    pub fn is_zero(&self, i: usize) -> bool {
        match self {
            Weights::Float(v) => v.get(i).is_some_and(|x| *x == 0.0),
            Weights::Half(v) | Weights::BF16(v) => v.get(i).is_some_and(|x| x & 0x7fff == 0),
            Weights::Int8(v) => v.get(i).is_some_and(|x| *x == 0),
            Weights::UInt8(v) => v.get(i).is_some_and(|x| *x == 0),
            Weights::Int32(v) => v.get(i).is_some_and(|x| *x == 0),
            Weights::Int64(v) => v.get(i).is_some_and(|x| *x == 0),
            Weights::Bool(v) => v.get(i).is_some_and(|x| !*x),
        }
    }

    /// Number of exact zeros.
    pub fn zero_count(&self) -> usize {
        (0..self.count()).filter(|&i| self.is_zero(i)).count()
    }

    /// The values as little-endian bytes (the serialized form; also the in-memory form on
    /// the little-endian hosts TensorRT runs on).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.count() * self.element_size());
        match self {
            Weights::Float(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Weights::Half(v) | Weights::BF16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Weights::Int8(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Weights::UInt8(v) => out.extend_from_slice(v),
            Weights::Int32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Weights::Int64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Weights::Bool(v) => v.iter().for_each(|x| out.push(u8::from(*x))),
        }
        out
    }

    /// Inverse of [`Weights::to_le_bytes`]. Fails on a length that is not a multiple of the
    /// element size or on a type that has no owned representation here (FP8, INT4).
    pub fn from_le_bytes(dtype: DataType, bytes: &[u8]) -> Result<Weights> {
        fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>> {
            if !b.len().is_multiple_of(N) {
                return Err(Error::user(format!(
                    "weights of {} bytes are not a whole number of {N}-byte elements",
                    b.len()
                )));
            }
            Ok(b.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect())
        }
        Ok(match dtype {
            DataType::Float => Weights::Float(chunks(bytes, f32::from_le_bytes)?),
            DataType::Half => Weights::Half(chunks(bytes, u16::from_le_bytes)?),
            DataType::BF16 => Weights::BF16(chunks(bytes, u16::from_le_bytes)?),
            DataType::Int8 => Weights::Int8(chunks(bytes, i8::from_le_bytes)?),
            DataType::UInt8 => Weights::UInt8(bytes.to_vec()),
            DataType::Int32 => Weights::Int32(chunks(bytes, i32::from_le_bytes)?),
            DataType::Int64 => Weights::Int64(chunks(bytes, i64::from_le_bytes)?),
            DataType::Bool => Weights::Bool(bytes.iter().map(|b| *b != 0).collect()),
            DataType::Fp8 | DataType::Int4 => {
                return Err(Error::user(format!(
                    "weights of type {dtype} are not supported"
                )))
            }
        })
    }
}

/// Parameters of `IConvolutionLayer` and `IDeconvolutionLayer`
/// (`addConvolutionNd`/`addDeconvolutionNd` plus the setters).
///
/// Convolution kernel layout is K×(C/groups)×R×S (K = `nb_output_maps`); deconvolution
/// kernel layout is C×(K/groups)×R×S. The kernel comes either as [`ConvParams::kernel`]
/// weights, or — when `kernel` is `None` — as layer input 1 (e.g. the output of a
/// Dequantize layer over an INT8 constant: explicit quantization). Likewise the bias may
/// come as input 2 when `bias` is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvParams {
    /// `nbOutputMaps` (K).
    pub nb_output_maps: i64,
    /// `kernelSize` (R, S) — or (D, R, S) for 3-D; TensorRT has no 1-D convolution.
    pub kernel_size: Vec<i64>,
    /// `kernelWeights`; `None` = empty weights, kernel from input 1.
    pub kernel: Option<Weights>,
    /// `biasWeights`; `None` = no bias, or bias from input 2.
    pub bias: Option<Weights>,
    /// `setPrePadding`.
    pub pre_padding: Vec<i64>,
    /// `setPostPadding`.
    pub post_padding: Vec<i64>,
    /// `setStrideNd`.
    pub stride: Vec<i64>,
    /// `setDilationNd` (convolution only; ignored for deconvolution).
    pub dilation: Vec<i64>,
    /// `setNbGroups`.
    pub nb_groups: i64,
}

impl ConvParams {
    /// Defaults for a `kernel_size` convolution: stride 1, dilation 1, no padding, 1 group,
    /// no weights (kernel from input 1).
    pub fn new(nb_output_maps: i64, kernel_size: &[i64]) -> ConvParams {
        let n = kernel_size.len();
        ConvParams {
            nb_output_maps,
            kernel_size: kernel_size.to_vec(),
            kernel: None,
            bias: None,
            pre_padding: vec![0; n],
            post_padding: vec![0; n],
            stride: vec![1; n],
            dilation: vec![1; n],
            nb_groups: 1,
        }
    }
}

/// Parameters of `IPoolingLayer` (`addPoolingNd` plus the setters).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolingParams {
    /// `PoolingType`.
    pub pooling_type: PoolingType,
    /// `windowSize`.
    pub window: Vec<i64>,
    /// `setStrideNd`.
    pub stride: Vec<i64>,
    /// `setPrePadding`.
    pub pre_padding: Vec<i64>,
    /// `setPostPadding`.
    pub post_padding: Vec<i64>,
    /// `setAverageCountExcludesPadding` (TensorRT's default is true; ONNX
    /// `count_include_pad=0` is true as well).
    pub average_count_excludes_padding: bool,
}

impl PoolingParams {
    /// Pooling over `window` with stride = window and no padding.
    pub fn new(pooling_type: PoolingType, window: &[i64]) -> PoolingParams {
        let n = window.len();
        PoolingParams {
            pooling_type,
            window: window.to_vec(),
            stride: window.to_vec(),
            pre_padding: vec![0; n],
            post_padding: vec![0; n],
            average_count_excludes_padding: true,
        }
    }
}

/// Parameters of `IShuffleLayer`: first transpose, reshape, second transpose.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShuffleParams {
    /// `setFirstTranspose` permutation (output dim `i` = input dim `perm[i]`); `None` = identity.
    pub first_transpose: Option<Vec<i32>>,
    /// `setReshapeDimensions`; `None` = no reshape. 0 copies the input dimension when
    /// `zero_is_placeholder`, -1 is inferred.
    pub reshape: Option<Vec<i64>>,
    /// `setSecondTranspose`; `None` = identity.
    pub second_transpose: Option<Vec<i32>>,
    /// `setZeroIsPlaceholder` (TensorRT's default is true; ONNX Reshape `allowzero=0`).
    pub zero_is_placeholder: bool,
}

/// The kind of a layer and its parameters. Inputs are not part of the kind: see
/// [`Layer::inputs`] and [`LayerKind::input_arity`].
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// `addConvolutionNd`. Inputs: data, then optionally kernel and bias tensors.
    Convolution(ConvParams),
    /// `addDeconvolutionNd`. Inputs: data, then optionally kernel and bias tensors.
    Deconvolution(ConvParams),
    /// `addMatrixMultiply(input0, op0, input1, op1)`. Inputs: A, B.
    MatrixMultiply {
        /// How input 0 is read.
        op0: MatrixOperation,
        /// How input 1 is read.
        op1: MatrixOperation,
    },
    /// `addQuantize(input, scale, toType)` + `setAxis`. Inputs: x, scale.
    Quantize {
        /// Per-channel axis; `None` for a per-tensor (scalar) scale.
        axis: Option<i32>,
        /// Output type (`kINT8`).
        to_type: DataType,
    },
    /// `addDequantize(input, scale, toType)` + `setAxis`. Inputs: x, scale.
    Dequantize {
        /// Per-channel axis; `None` for a per-tensor (scalar) scale.
        axis: Option<i32>,
        /// Output type (`kFLOAT` or `kHALF`).
        to_type: DataType,
    },
    /// `addConstant(dims, weights)`. No inputs.
    Constant {
        /// Output dimensions; their product is the weight count.
        dims: Vec<i64>,
        /// The values.
        weights: Weights,
    },
    /// `addElementWise(a, b, op)`. Inputs: a, b (broadcast as TensorRT does: same rank).
    ElementWise(ElementWiseOperation),
    /// `addActivation(input, type)` + `setAlpha`/`setBeta`. Inputs: x.
    Activation {
        /// The activation.
        activation: ActivationType,
        /// `alpha` (e.g. kCLIP lower bound, leaky slope).
        alpha: f32,
        /// `beta` (e.g. kCLIP upper bound: 6 for ReLU6).
        beta: f32,
    },
    /// `addPoolingNd` + setters. Inputs: x.
    Pooling(PoolingParams),
    /// `addShuffle` + setters. Inputs: x.
    Shuffle(ShuffleParams),
    /// `addConcatenation(inputs)` + `setAxis`. Inputs: 1 or more.
    Concatenation {
        /// Concatenation axis.
        axis: i32,
    },
    /// `addReduce(input, op, axes, keepDims)`. Inputs: x.
    Reduce {
        /// The reduction.
        op: ReduceOperation,
        /// Bitmask of reduced axes (bit i = axis i).
        axes: u32,
        /// Keep reduced axes as size 1.
        keep_dims: bool,
    },
    /// `addSoftMax` + `setAxes`. Inputs: x.
    SoftMax {
        /// Bitmask with exactly one bit: the softmax axis.
        axes: u32,
    },
    /// `addSlice(input, start, size, stride)` + `setMode` (+ `setAxes`). Inputs: x.
    Slice {
        /// Start coordinates.
        start: Vec<i64>,
        /// Output size.
        size: Vec<i64>,
        /// Stride per dimension.
        stride: Vec<i64>,
        /// Out-of-bounds handling.
        mode: SampleMode,
        /// `setAxes`: the axes `start`/`size`/`stride` apply to (the other axes are copied
        /// whole, whatever their runtime size); `None` = all axes, in order. Needed to slice
        /// a tensor with a dynamic dimension on an axis that is not sliced.
        axes: Option<Vec<i64>>,
    },
    /// `addPaddingNd(input, prePadding, postPadding)` (zero padding of the innermost dims).
    Padding {
        /// Padding before, innermost dims.
        pre: Vec<i64>,
        /// Padding after, innermost dims.
        post: Vec<i64>,
    },
    /// `addIdentity`. Inputs: x.
    Identity,
    /// `addCast(input, toType)`. Inputs: x.
    Cast {
        /// Output type.
        to_type: DataType,
    },
}

impl LayerKind {
    /// TensorRT's layer-type name (`LayerType` without the `k`, as TensorRT prints it).
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Convolution(_) => "Convolution",
            LayerKind::Deconvolution(_) => "Deconvolution",
            LayerKind::MatrixMultiply { .. } => "MatrixMultiply",
            LayerKind::Quantize { .. } => "Quantize",
            LayerKind::Dequantize { .. } => "Dequantize",
            LayerKind::Constant { .. } => "Constant",
            LayerKind::ElementWise(_) => "ElementWise",
            LayerKind::Activation { .. } => "Activation",
            LayerKind::Pooling(_) => "Pooling",
            LayerKind::Shuffle(_) => "Shuffle",
            LayerKind::Concatenation { .. } => "Concatenation",
            LayerKind::Reduce { .. } => "Reduce",
            LayerKind::SoftMax { .. } => "SoftMax",
            LayerKind::Slice { .. } => "Slice",
            LayerKind::Padding { .. } => "Padding",
            LayerKind::Identity => "Identity",
            LayerKind::Cast { .. } => "Cast",
        }
    }

    /// Allowed number of tensor inputs: (min, max).
    pub fn input_arity(&self) -> (usize, usize) {
        match self {
            LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => {
                if p.kernel.is_some() {
                    (1, 1)
                } else if p.bias.is_some() {
                    (2, 2)
                } else {
                    (2, 3)
                }
            }
            LayerKind::MatrixMultiply { .. }
            | LayerKind::Quantize { .. }
            | LayerKind::Dequantize { .. }
            | LayerKind::ElementWise(_) => (2, 2),
            LayerKind::Constant { .. } => (0, 0),
            LayerKind::Concatenation { .. } => (1, usize::MAX),
            _ => (1, 1),
        }
    }
}

/// A tensor of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Unique tensor name (`ITensor::setName`).
    pub name: String,
    /// Element type: required for inputs, informational (inferred by TensorRT) otherwise.
    pub dtype: Option<DataType>,
    /// Dimensions (-1 = dynamic): required for inputs, informational otherwise.
    pub dims: Option<Vec<i64>>,
}

/// A layer of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Unique layer name (`ILayer::setName`); TensorRT's build log refers to it.
    pub name: String,
    /// Kind and parameters.
    pub kind: LayerKind,
    /// Tensor inputs, in TensorRT's input-index order.
    pub inputs: Vec<TensorId>,
    /// Output tensors (always one for the supported kinds).
    pub outputs: Vec<TensorId>,
}

/// A network definition: the Rust mirror of `INetworkDefinition`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    /// Network name (`INetworkDefinition::setName`).
    pub name: String,
    pub(crate) tensors: Vec<Tensor>,
    pub(crate) inputs: Vec<TensorId>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) outputs: Vec<TensorId>,
}

fn check_dims(what: &str, dims: &[i64], allow_dynamic: bool) -> Result<()> {
    if dims.len() > 8 {
        return Err(Error::user(format!(
            "{what}: rank {} exceeds TensorRT's maximum of 8",
            dims.len()
        )));
    }
    for &d in dims {
        if d < -1 || (d == -1 && !allow_dynamic) {
            return Err(Error::user(format!(
                "{what}: invalid dimension {d} in {}",
                fmt_dims(dims)
            )));
        }
    }
    Ok(())
}

/// Formats dims as `[a,b,c]`.
pub fn fmt_dims(d: &[i64]) -> String {
    let inner: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("[{}]", inner.join(","))
}

impl Network {
    /// An empty network.
    pub fn new(name: impl Into<String>) -> Network {
        Network {
            name: name.into(),
            ..Network::default()
        }
    }

    /// All tensors, indexed by [`TensorId`].
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
    /// All layers in definition (topological) order, indexed by [`LayerId`].
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// Network inputs in order.
    pub fn inputs(&self) -> &[TensorId] {
        &self.inputs
    }
    /// Network outputs in order.
    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    /// The tensor behind an id. Panics never: an unknown id yields an internal error.
    pub fn tensor(&self, id: TensorId) -> Result<&Tensor> {
        self.tensors
            .get(id.0 as usize)
            .ok_or_else(|| Error::internal(format!("unknown tensor id {}", id.0)))
    }

    /// The layer behind an id.
    pub fn layer(&self, id: LayerId) -> Result<&Layer> {
        self.layers
            .get(id.0 as usize)
            .ok_or_else(|| Error::internal(format!("unknown layer id {}", id.0)))
    }

    /// Mutable access to a layer's parameters (e.g. to patch weights after lowering).
    pub fn layer_mut(&mut self, id: LayerId) -> Result<&mut Layer> {
        self.layers
            .get_mut(id.0 as usize)
            .ok_or_else(|| Error::internal(format!("unknown layer id {}", id.0)))
    }

    /// Finds a tensor by name.
    pub fn find_tensor(&self, name: &str) -> Option<TensorId> {
        self.tensors
            .iter()
            .position(|t| t.name == name)
            .map(|i| TensorId(i as u32))
    }

    /// Finds a layer by name.
    pub fn find_layer(&self, name: &str) -> Option<LayerId> {
        self.layers
            .iter()
            .position(|l| l.name == name)
            .map(|i| LayerId(i as u32))
    }

    /// The layer producing `t`, or `None` for a network input.
    pub fn producer(&self, t: TensorId) -> Option<LayerId> {
        self.layers
            .iter()
            .position(|l| l.outputs.contains(&t))
            .map(|i| LayerId(i as u32))
    }

    fn new_tensor(
        &mut self,
        name: String,
        dtype: Option<DataType>,
        dims: Option<Vec<i64>>,
    ) -> Result<TensorId> {
        if name.is_empty() {
            return Err(Error::user("tensor name must not be empty"));
        }
        if self.find_tensor(&name).is_some() {
            return Err(Error::user(format!("duplicate tensor name '{name}'")));
        }
        let id = TensorId(self.tensors.len() as u32);
        self.tensors.push(Tensor { name, dtype, dims });
        Ok(id)
    }

    /// `addInput(name, type, dims)`: declares a network input; -1 marks dynamic dimensions
    /// (these need an optimization profile, see [`crate::trt::config::OptimizationProfile`]).
    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        dtype: DataType,
        dims: &[i64],
    ) -> Result<TensorId> {
        let name = name.into();
        check_dims(&format!("input '{name}'"), dims, true)?;
        let id = self.new_tensor(name, Some(dtype), Some(dims.to_vec()))?;
        self.inputs.push(id);
        Ok(id)
    }

    /// Adds a layer whose output tensor is named like the layer. See [`Network::add_layer_with_output`].
    pub fn add_layer(
        &mut self,
        name: impl Into<String>,
        kind: LayerKind,
        inputs: &[TensorId],
    ) -> Result<TensorId> {
        let name = name.into();
        let out = name.clone();
        self.add_layer_with_output(name, kind, inputs, out)
    }

    /// Adds a layer reading `inputs` (in TensorRT input-index order) and returns its output
    /// tensor, named `output`. Checks names, input count and parameters.
    pub fn add_layer_with_output(
        &mut self,
        name: impl Into<String>,
        kind: LayerKind,
        inputs: &[TensorId],
        output: impl Into<String>,
    ) -> Result<TensorId> {
        let name = name.into();
        let ctx = |e: Error| e.context(format!("layer '{name}' ({})", kind.type_name()));
        if name.is_empty() {
            return Err(ctx(Error::user("layer name must not be empty")));
        }
        if self.find_layer(&name).is_some() {
            return Err(ctx(Error::user("duplicate layer name")));
        }
        for t in inputs {
            self.tensor(*t).map_err(ctx)?;
        }
        check_layer(&kind, inputs.len()).map_err(ctx)?;
        let out = self.new_tensor(output.into(), None, None).map_err(ctx)?;
        self.layers.push(Layer {
            name,
            kind,
            inputs: inputs.to_vec(),
            outputs: vec![out],
        });
        Ok(out)
    }

    /// Records the (inferred) type and shape of a tensor, for the text form only.
    pub fn set_tensor_info(
        &mut self,
        t: TensorId,
        dtype: Option<DataType>,
        dims: Option<Vec<i64>>,
    ) -> Result<()> {
        let tensor = self
            .tensors
            .get_mut(t.0 as usize)
            .ok_or_else(|| Error::internal(format!("unknown tensor id {}", t.0)))?;
        tensor.dtype = dtype;
        tensor.dims = dims;
        Ok(())
    }

    /// Renames a tensor (names must stay unique).
    pub fn rename_tensor(&mut self, t: TensorId, name: impl Into<String>) -> Result<()> {
        let name = name.into();
        if let Some(other) = self.find_tensor(&name) {
            if other != t {
                return Err(Error::user(format!("duplicate tensor name '{name}'")));
            }
        }
        self.tensors
            .get_mut(t.0 as usize)
            .ok_or_else(|| Error::internal(format!("unknown tensor id {}", t.0)))?
            .name = name;
        Ok(())
    }

    /// `markOutput(tensor)`.
    pub fn mark_output(&mut self, t: TensorId) -> Result<()> {
        let name = self.tensor(t)?.name.clone();
        if self.outputs.contains(&t) {
            return Err(Error::user(format!("tensor '{name}' is already an output")));
        }
        if self.inputs.contains(&t) {
            return Err(Error::user(format!(
                "network input '{name}' cannot also be an output"
            )));
        }
        self.outputs.push(t);
        Ok(())
    }

    /// Checks the whole network: unique names, inputs defined before use, parameters,
    /// at least one output. [`crate::trt::engine::build_engine`] and the deserializer call it.
    pub fn validate(&self) -> Result<()> {
        let mut tensor_names = HashMap::new();
        for (i, t) in self.tensors.iter().enumerate() {
            if t.name.is_empty() {
                return Err(Error::user(format!("tensor #{i} has no name")));
            }
            if tensor_names.insert(t.name.as_str(), i).is_some() {
                return Err(Error::user(format!("duplicate tensor name '{}'", t.name)));
            }
        }
        let mut defined = vec![false; self.tensors.len()];
        for &i in &self.inputs {
            let t = self.tensor(i)?;
            if t.dtype.is_none() || t.dims.is_none() {
                return Err(Error::user(format!(
                    "input '{}' needs a type and dimensions",
                    t.name
                )));
            }
            check_dims(
                &format!("input '{}'", t.name),
                t.dims.as_deref().unwrap_or(&[]),
                true,
            )?;
            if std::mem::replace(&mut defined[i.0 as usize], true) {
                return Err(Error::user(format!(
                    "tensor '{}' is declared as input twice",
                    t.name
                )));
            }
        }
        let mut layer_names = HashMap::new();
        for l in &self.layers {
            let ctx = |e: Error| e.context(format!("layer '{}' ({})", l.name, l.kind.type_name()));
            if l.name.is_empty() {
                return Err(Error::user("a layer has no name"));
            }
            if layer_names.insert(l.name.as_str(), ()).is_some() {
                return Err(ctx(Error::user("duplicate layer name")));
            }
            for t in &l.inputs {
                let known = defined.get(t.0 as usize).copied();
                match known {
                    None => return Err(ctx(Error::user(format!("unknown input tensor #{}", t.0)))),
                    Some(false) => {
                        return Err(ctx(Error::user(format!(
                            "reads tensor '{}' before it is defined",
                            self.tensors[t.0 as usize].name
                        ))))
                    }
                    Some(true) => {}
                }
            }
            check_layer(&l.kind, l.inputs.len()).map_err(ctx)?;
            if l.outputs.len() != 1 {
                return Err(ctx(Error::user(format!(
                    "has {} outputs, expected 1",
                    l.outputs.len()
                ))));
            }
            for t in &l.outputs {
                match defined.get_mut(t.0 as usize) {
                    None => {
                        return Err(ctx(Error::user(format!("unknown output tensor #{}", t.0))))
                    }
                    Some(d) if *d => {
                        return Err(ctx(Error::user(format!(
                            "output tensor '{}' is already defined",
                            self.tensors[t.0 as usize].name
                        ))))
                    }
                    Some(d) => *d = true,
                }
            }
        }
        if self.outputs.is_empty() {
            return Err(Error::user(format!(
                "network '{}' has no outputs",
                self.name
            )));
        }
        for t in &self.outputs {
            if !defined.get(t.0 as usize).copied().unwrap_or(false) {
                return Err(Error::user(format!(
                    "output tensor #{} is not defined",
                    t.0
                )));
            }
        }
        Ok(())
    }

    /// Follows `t` back through Quantize/Dequantize (input 0), Cast and Identity layers to
    /// a Constant layer: the weights a kernel input really carries. Returns the Constant's
    /// layer id, or `None` if `t` is not (transitively) constant.
    pub fn constant_source(&self, mut t: TensorId) -> Option<LayerId> {
        for _ in 0..=self.layers.len() {
            let lid = self.producer(t)?;
            let l = &self.layers[lid.0 as usize];
            match &l.kind {
                LayerKind::Constant { .. } => return Some(lid),
                LayerKind::Quantize { .. }
                | LayerKind::Dequantize { .. }
                | LayerKind::Cast { .. }
                | LayerKind::Identity => {
                    t = *l.inputs.first()?;
                }
                _ => return None,
            }
        }
        None
    }
}

/// Checks a layer's parameters and input count.
fn check_layer(kind: &LayerKind, nb_inputs: usize) -> Result<()> {
    let (lo, hi) = kind.input_arity();
    if nb_inputs < lo || nb_inputs > hi {
        let want = if lo == hi {
            lo.to_string()
        } else if hi == usize::MAX {
            format!("at least {lo}")
        } else {
            format!("{lo} to {hi}")
        };
        let extra = match kind {
            LayerKind::Convolution(p) | LayerKind::Deconvolution(p)
                if p.kernel.is_none() && nb_inputs < 2 =>
            {
                " (no kernel weights given, so the kernel must be input 1)"
            }
            LayerKind::Convolution(p) | LayerKind::Deconvolution(p)
                if p.kernel.is_some() && nb_inputs > 1 =>
            {
                " (kernel given both as weights and as input 1)"
            }
            _ => "",
        };
        return Err(Error::user(format!(
            "takes {want} inputs, got {nb_inputs}{extra}"
        )));
    }
    match kind {
        LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => {
            let n = p.kernel_size.len();
            if !(2..=3).contains(&n) {
                return Err(Error::user(format!(
                    "kernel size {} must have 2 or 3 dims (TensorRT convolutions are 2-D or 3-D; \
                     lower a 1-D convolution as 2-D with a 1xK kernel)",
                    fmt_dims(&p.kernel_size)
                )));
            }
            if p.nb_output_maps <= 0 || p.nb_groups <= 0 || p.kernel_size.iter().any(|&k| k <= 0) {
                return Err(Error::user(
                    "nbOutputMaps, nbGroups and the kernel size must be positive",
                ));
            }
            for (what, v, min) in [
                ("prePadding", &p.pre_padding, 0),
                ("postPadding", &p.post_padding, 0),
                ("stride", &p.stride, 1),
                ("dilation", &p.dilation, 1),
            ] {
                if v.len() != n {
                    return Err(Error::user(format!(
                        "{what} {} does not match the kernel rank {n}",
                        fmt_dims(v)
                    )));
                }
                if v.iter().any(|&x| x < min) {
                    return Err(Error::user(format!(
                        "{what} {} must be >= {min}",
                        fmt_dims(v)
                    )));
                }
            }
            if let Some(k) = &p.kernel {
                let per = p
                    .nb_output_maps
                    .checked_mul(p.kernel_size.iter().product::<i64>())
                    .unwrap_or(0);
                if per <= 0 || k.count() as i64 % per != 0 || k.count() == 0 {
                    return Err(Error::user(format!(
                        "kernel has {} values, not a multiple of nbOutputMaps x kernel size = {per}",
                        k.count()
                    )));
                }
            }
            if let Some(b) = &p.bias {
                if b.count() as i64 != p.nb_output_maps {
                    return Err(Error::user(format!(
                        "bias has {} values, expected nbOutputMaps = {}",
                        b.count(),
                        p.nb_output_maps
                    )));
                }
            }
        }
        LayerKind::Constant { dims, weights } => {
            check_dims("constant", dims, false)?;
            let n: i64 = dims.iter().product();
            if n != weights.count() as i64 {
                return Err(Error::user(format!(
                    "constant of dims {} needs {n} values, has {}",
                    fmt_dims(dims),
                    weights.count()
                )));
            }
        }
        LayerKind::Pooling(p) => {
            let n = p.window.len();
            if !(2..=3).contains(&n) || p.window.iter().any(|&w| w <= 0) {
                return Err(Error::user(format!(
                    "invalid pooling window {} (TensorRT pools over 2 or 3 dims)",
                    fmt_dims(&p.window)
                )));
            }
            for (what, v) in [
                ("stride", &p.stride),
                ("prePadding", &p.pre_padding),
                ("postPadding", &p.post_padding),
            ] {
                if v.len() != n {
                    return Err(Error::user(format!(
                        "{what} {} does not match the window rank {n}",
                        fmt_dims(v)
                    )));
                }
            }
            if p.stride.iter().any(|&s| s <= 0)
                || p.pre_padding.iter().chain(&p.post_padding).any(|&x| x < 0)
            {
                return Err(Error::user(
                    "pooling stride must be positive and padding non-negative",
                ));
            }
        }
        LayerKind::Shuffle(s) => {
            for perm in [&s.first_transpose, &s.second_transpose]
                .into_iter()
                .flatten()
            {
                let mut seen = vec![false; perm.len()];
                let ok = perm.len() <= 8
                    && perm.iter().all(|&p| {
                        p >= 0
                            && (p as usize) < seen.len()
                            && !std::mem::replace(&mut seen[p as usize], true)
                    });
                if !ok {
                    return Err(Error::user(format!(
                        "{perm:?} is not a permutation of at most 8 axes"
                    )));
                }
            }
            if let Some(r) = &s.reshape {
                if r.len() > 8
                    || r.iter().any(|&d| d < -1)
                    || r.iter().filter(|&&d| d == -1).count() > 1
                {
                    return Err(Error::user(format!(
                        "invalid reshape dimensions {}",
                        fmt_dims(r)
                    )));
                }
            }
        }
        LayerKind::SoftMax { axes } if axes.count_ones() != 1 => {
            return Err(Error::user(format!(
                "softmax axes mask {axes:#b} must have exactly one bit set"
            )));
        }
        LayerKind::Reduce { axes: 0, .. } => {
            return Err(Error::user("reduce axes mask is empty"));
        }
        LayerKind::Slice {
            start,
            size,
            stride,
            axes,
            ..
        } => {
            if start.len() != size.len() || size.len() != stride.len() || start.len() > 8 {
                return Err(Error::user(
                    "slice start/size/stride must have the same rank (at most 8)",
                ));
            }
            if let Some(a) = axes {
                let mut seen = [false; 8];
                let ok = a.len() == start.len()
                    && a.iter().all(|&x| {
                        (0..8).contains(&x) && !std::mem::replace(&mut seen[x as usize], true)
                    });
                if !ok {
                    return Err(Error::user(format!(
                        "slice axes {} must be distinct axes in [0, 8), one per start/size/stride entry",
                        fmt_dims(a)
                    )));
                }
            }
        }
        LayerKind::Padding { pre, post } if pre.len() != post.len() || pre.len() > 8 => {
            return Err(Error::user("padding pre and post must have the same rank"));
        }
        LayerKind::Quantize { to_type, .. }
            if !matches!(to_type, DataType::Int8 | DataType::Fp8 | DataType::Int4) =>
        {
            return Err(Error::user(format!(
                "quantize output type {to_type} is not a quantized type"
            )));
        }
        LayerKind::Dequantize { to_type, .. }
            if !matches!(to_type, DataType::Float | DataType::Half | DataType::BF16) =>
        {
            return Err(Error::user(format!(
                "dequantize output type {to_type} is not a float type"
            )));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_validates() {
        let mut n = Network::new("t");
        let x = n.add_input("x", DataType::Float, &[-1, 4, 8, 8]).unwrap();
        let mut p = ConvParams::new(8, &[3, 3]);
        p.kernel = Some(Weights::Float(vec![0.0; 8 * 4 * 9]));
        let y = n
            .add_layer("conv", LayerKind::Convolution(p), &[x])
            .unwrap();
        n.mark_output(y).unwrap();
        n.validate().unwrap();
        assert_eq!(n.producer(y), Some(LayerId(0)));
        assert_eq!(n.producer(x), None);
    }

    #[test]
    fn rejects_bad_layers() {
        let mut n = Network::new("t");
        let x = n.add_input("x", DataType::Float, &[1, 4, 8, 8]).unwrap();
        // kernel neither as weights nor as input 1
        let p = ConvParams::new(8, &[3, 3]);
        let e = n
            .add_layer("conv", LayerKind::Convolution(p.clone()), &[x])
            .unwrap_err();
        assert!(e.to_string().contains("kernel must be input 1"), "{e}");
        // wrong kernel count
        let mut q = p.clone();
        q.kernel = Some(Weights::Float(vec![0.0; 7]));
        assert!(n
            .add_layer("conv", LayerKind::Convolution(q), &[x])
            .is_err());
        // duplicate names
        assert!(n.add_input("x", DataType::Float, &[1]).is_err());
        let y = n.add_layer("id", LayerKind::Identity, &[x]).unwrap();
        assert!(n.add_layer("id", LayerKind::Identity, &[y]).is_err());
        // constant count mismatch
        let c = LayerKind::Constant {
            dims: vec![2, 2],
            weights: Weights::Float(vec![1.0; 3]),
        };
        assert!(n.add_layer("c", c, &[]).is_err());
        // no outputs
        assert!(n.validate().is_err());
        n.mark_output(y).unwrap();
        n.validate().unwrap();
        assert!(n.mark_output(y).is_err());
        assert!(n
            .add_layer("sm", LayerKind::SoftMax { axes: 0b11 }, &[x])
            .is_err());
    }

    #[test]
    fn weights_bytes_roundtrip() {
        for w in [
            Weights::Float(vec![1.5, -0.0, 3.0]),
            Weights::Int8(vec![-128, 0, 127]),
            Weights::Int64(vec![i64::MIN, 0]),
            Weights::Half(vec![0x8000, 0x3c00]),
            Weights::Bool(vec![true, false]),
        ] {
            let b = w.to_le_bytes();
            assert_eq!(b.len(), w.count() * w.element_size());
            assert_eq!(Weights::from_le_bytes(w.dtype(), &b).unwrap(), w);
        }
        assert!(Weights::from_le_bytes(DataType::Float, &[0, 0, 0]).is_err());
        assert_eq!(Weights::Float(vec![0.0, -0.0, 1.0]).zero_count(), 2);
        assert_eq!(Weights::Half(vec![0x8000, 0x3c00]).zero_count(), 1);
    }

    #[test]
    fn constant_source_looks_through_qdq() {
        let mut n = Network::new("t");
        let w = n
            .add_layer(
                "w",
                LayerKind::Constant {
                    dims: vec![4],
                    weights: Weights::Int8(vec![1, 0, 0, 1]),
                },
                &[],
            )
            .unwrap();
        let s = n
            .add_layer(
                "s",
                LayerKind::Constant {
                    dims: vec![],
                    weights: Weights::Float(vec![0.1]),
                },
                &[],
            )
            .unwrap();
        let dq = n
            .add_layer(
                "dq",
                LayerKind::Dequantize {
                    axis: None,
                    to_type: DataType::Float,
                },
                &[w, s],
            )
            .unwrap();
        let id = n.add_layer("id", LayerKind::Identity, &[dq]).unwrap();
        assert_eq!(n.constant_source(id), Some(LayerId(0)));
        let x = n.add_input("x", DataType::Float, &[4]).unwrap();
        assert_eq!(n.constant_source(x), None);
    }

    #[test]
    fn datatype_names() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_name(d.name()), Some(d));
            assert_eq!(DataType::from_value(d.value()), Some(d));
        }
        assert_eq!(DataType::from_name("kINT8"), Some(DataType::Int8));
        assert_eq!(
            ActivationType::from_trt_name("kCLIP"),
            Some(ActivationType::Clip)
        );
        assert_eq!(ActivationType::Clip.value(), 8);
    }
}
