//! Conversion between the network model and its protobuf form (proto/trt_network.proto),
//! used by `--emit network FILE`.

use super::config::{BuildConfig, BuilderFlag, OptimizationProfile, ProfileShapes, TrtVersion};
use super::network::{
    ActivationType, ConvParams, DataType, ElementWiseOperation, Layer, LayerKind, MatrixOperation,
    Network, PoolingParams, PoolingType, ReduceOperation, SampleMode, ShuffleParams, Tensor,
    TensorId, Weights,
};
use crate::error::{Error, Result, ResultExt};
use prost::Message;

/// Generated wire types for proto/trt_network.proto (package `sparseqc.trt`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/sparseqc.trt.rs"));
}

/// Schema version written to [`pb::NetworkFile::format_version`].
pub const FORMAT_VERSION: u32 = 1;

fn dims(d: &[i64]) -> Option<pb::Dims> {
    Some(pb::Dims { d: d.to_vec() })
}

fn weights(w: &Weights) -> pb::Weights {
    pb::Weights {
        dtype: w.dtype().value(),
        count: w.count() as i64,
        data: w.to_le_bytes().into(),
    }
}

fn conv(p: &ConvParams) -> pb::Convolution {
    pb::Convolution {
        nb_output_maps: p.nb_output_maps,
        kernel_size: dims(&p.kernel_size),
        kernel: p.kernel.as_ref().map(weights),
        bias: p.bias.as_ref().map(weights),
        pre_padding: dims(&p.pre_padding),
        post_padding: dims(&p.post_padding),
        stride: dims(&p.stride),
        dilation: dims(&p.dilation),
        nb_groups: p.nb_groups,
    }
}

fn kind_to_pb(k: &LayerKind) -> pb::layer::Kind {
    use pb::layer::Kind as K;
    match k {
        LayerKind::Convolution(p) => K::Convolution(conv(p)),
        LayerKind::Deconvolution(p) => K::Deconvolution(conv(p)),
        LayerKind::MatrixMultiply { op0, op1 } => K::MatrixMultiply(pb::MatrixMultiply {
            op0: op0.value(),
            op1: op1.value(),
        }),
        LayerKind::Quantize { axis, to_type } => K::Quantize(pb::QuantizeParams {
            axis: *axis,
            to_type: to_type.value(),
        }),
        LayerKind::Dequantize { axis, to_type } => K::Dequantize(pb::QuantizeParams {
            axis: *axis,
            to_type: to_type.value(),
        }),
        LayerKind::Constant {
            dims: d,
            weights: w,
        } => K::Constant(pb::Constant {
            dims: dims(d),
            weights: Some(weights(w)),
        }),
        LayerKind::ElementWise(op) => K::ElementWise(pb::ElementWise { op: op.value() }),
        LayerKind::Activation {
            activation,
            alpha,
            beta,
        } => K::Activation(pb::Activation {
            r#type: activation.value(),
            alpha: *alpha,
            beta: *beta,
        }),
        LayerKind::Pooling(p) => K::Pooling(pb::Pooling {
            r#type: p.pooling_type.value(),
            window: dims(&p.window),
            stride: dims(&p.stride),
            pre_padding: dims(&p.pre_padding),
            post_padding: dims(&p.post_padding),
            average_count_excludes_padding: p.average_count_excludes_padding,
        }),
        LayerKind::Shuffle(s) => K::Shuffle(pb::Shuffle {
            first_transpose: s
                .first_transpose
                .as_ref()
                .map(|o| pb::Permutation { order: o.clone() }),
            reshape: s.reshape.as_deref().and_then(dims),
            second_transpose: s
                .second_transpose
                .as_ref()
                .map(|o| pb::Permutation { order: o.clone() }),
            zero_is_placeholder: s.zero_is_placeholder,
        }),
        LayerKind::Concatenation { axis } => K::Concatenation(pb::Concatenation { axis: *axis }),
        LayerKind::Reduce {
            op,
            axes,
            keep_dims,
        } => K::Reduce(pb::Reduce {
            op: op.value(),
            axes: *axes,
            keep_dims: *keep_dims,
        }),
        LayerKind::SoftMax { axes } => K::SoftMax(pb::SoftMax { axes: *axes }),
        LayerKind::Slice {
            start,
            size,
            stride,
            mode,
            axes,
        } => K::Slice(pb::Slice {
            start: dims(start),
            size: dims(size),
            stride: dims(stride),
            mode: mode.value(),
            axes: axes.as_deref().and_then(dims),
        }),
        LayerKind::Padding { pre, post } => K::Padding(pb::Padding {
            pre: dims(pre),
            post: dims(post),
        }),
        LayerKind::Identity => K::Identity(pb::Identity {}),
        LayerKind::Cast { to_type } => K::Cast(pb::Cast {
            to_type: to_type.value(),
        }),
    }
}

/// The protobuf form of a network and its build configuration.
pub fn to_proto(net: &Network, config: &BuildConfig) -> pb::NetworkFile {
    let network = pb::Network {
        name: net.name.clone(),
        tensors: net
            .tensors()
            .iter()
            .map(|t| pb::Tensor {
                name: t.name.clone(),
                dtype: t.dtype.map(|d| d.value()),
                dims: t.dims.as_deref().and_then(dims),
            })
            .collect(),
        inputs: net.inputs().iter().map(|t| t.0).collect(),
        layers: net
            .layers()
            .iter()
            .map(|l| pb::Layer {
                name: l.name.clone(),
                inputs: l.inputs.iter().map(|t| t.0).collect(),
                outputs: l.outputs.iter().map(|t| t.0).collect(),
                kind: Some(kind_to_pb(&l.kind)),
            })
            .collect(),
        outputs: net.outputs().iter().map(|t| t.0).collect(),
    };
    let config = pb::BuildConfig {
        target_major: config.target.major,
        target_minor: config.target.minor,
        strongly_typed: config.strongly_typed,
        flags: config.flags.iter().map(|f| f.name().to_string()).collect(),
        workspace_bytes: config.workspace_bytes,
        profiles: config
            .profiles
            .iter()
            .map(|p| pb::OptimizationProfile {
                inputs: p
                    .inputs
                    .iter()
                    .map(|s| pb::ProfileShapes {
                        input: s.input.clone(),
                        min: dims(&s.min),
                        opt: dims(&s.opt),
                        max: dims(&s.max),
                    })
                    .collect(),
            })
            .collect(),
    };
    pb::NetworkFile {
        format_version: FORMAT_VERSION,
        network: Some(network),
        config: Some(config),
    }
}

fn d(x: &Option<pb::Dims>) -> Vec<i64> {
    x.as_ref().map(|d| d.d.clone()).unwrap_or_default()
}

fn dtype(v: i32) -> Result<DataType> {
    DataType::from_value(v).ok_or_else(|| Error::user(format!("unknown DataType value {v}")))
}

fn enum_val<T>(what: &str, v: i32, f: fn(i32) -> Option<T>) -> Result<T> {
    f(v).ok_or_else(|| Error::user(format!("unknown {what} value {v}")))
}

fn weights_from(w: &pb::Weights) -> Result<Weights> {
    let out = Weights::from_le_bytes(dtype(w.dtype)?, &w.data)?;
    if out.count() as i64 != w.count {
        return Err(Error::user(format!(
            "weights declare {} values but hold {}",
            w.count,
            out.count()
        )));
    }
    Ok(out)
}

fn conv_from(c: &pb::Convolution) -> Result<ConvParams> {
    Ok(ConvParams {
        nb_output_maps: c.nb_output_maps,
        kernel_size: d(&c.kernel_size),
        kernel: c
            .kernel
            .as_ref()
            .map(weights_from)
            .transpose()
            .ctx("kernel")?,
        bias: c.bias.as_ref().map(weights_from).transpose().ctx("bias")?,
        pre_padding: d(&c.pre_padding),
        post_padding: d(&c.post_padding),
        stride: d(&c.stride),
        dilation: d(&c.dilation),
        nb_groups: c.nb_groups,
    })
}

fn kind_from(k: &pb::layer::Kind) -> Result<LayerKind> {
    use pb::layer::Kind as K;
    Ok(match k {
        K::Convolution(c) => LayerKind::Convolution(conv_from(c)?),
        K::Deconvolution(c) => LayerKind::Deconvolution(conv_from(c)?),
        K::MatrixMultiply(m) => LayerKind::MatrixMultiply {
            op0: enum_val("MatrixOperation", m.op0, MatrixOperation::from_value)?,
            op1: enum_val("MatrixOperation", m.op1, MatrixOperation::from_value)?,
        },
        K::Quantize(q) => LayerKind::Quantize {
            axis: q.axis,
            to_type: dtype(q.to_type)?,
        },
        K::Dequantize(q) => LayerKind::Dequantize {
            axis: q.axis,
            to_type: dtype(q.to_type)?,
        },
        K::Constant(c) => LayerKind::Constant {
            dims: d(&c.dims),
            weights: weights_from(
                c.weights
                    .as_ref()
                    .ok_or_else(|| Error::user("constant without weights"))?,
            )?,
        },
        K::ElementWise(e) => LayerKind::ElementWise(enum_val(
            "ElementWiseOperation",
            e.op,
            ElementWiseOperation::from_value,
        )?),
        K::Activation(a) => LayerKind::Activation {
            activation: enum_val("ActivationType", a.r#type, ActivationType::from_value)?,
            alpha: a.alpha,
            beta: a.beta,
        },
        K::Pooling(p) => LayerKind::Pooling(PoolingParams {
            pooling_type: enum_val("PoolingType", p.r#type, PoolingType::from_value)?,
            window: d(&p.window),
            stride: d(&p.stride),
            pre_padding: d(&p.pre_padding),
            post_padding: d(&p.post_padding),
            average_count_excludes_padding: p.average_count_excludes_padding,
        }),
        K::Shuffle(s) => LayerKind::Shuffle(ShuffleParams {
            first_transpose: s.first_transpose.as_ref().map(|p| p.order.clone()),
            reshape: s.reshape.as_ref().map(|r| r.d.clone()),
            second_transpose: s.second_transpose.as_ref().map(|p| p.order.clone()),
            zero_is_placeholder: s.zero_is_placeholder,
        }),
        K::Concatenation(c) => LayerKind::Concatenation { axis: c.axis },
        K::Reduce(r) => LayerKind::Reduce {
            op: enum_val("ReduceOperation", r.op, ReduceOperation::from_value)?,
            axes: r.axes,
            keep_dims: r.keep_dims,
        },
        K::SoftMax(s) => LayerKind::SoftMax { axes: s.axes },
        K::Slice(s) => LayerKind::Slice {
            start: d(&s.start),
            size: d(&s.size),
            stride: d(&s.stride),
            mode: enum_val("SampleMode", s.mode, SampleMode::from_value)?,
            axes: s.axes.as_ref().map(|a| a.d.clone()),
        },
        K::Padding(p) => LayerKind::Padding {
            pre: d(&p.pre),
            post: d(&p.post),
        },
        K::Identity(_) => LayerKind::Identity,
        K::Cast(c) => LayerKind::Cast {
            to_type: dtype(c.to_type)?,
        },
    })
}

/// Rebuilds the network and configuration from the protobuf form, and validates both.
pub fn from_proto(f: &pb::NetworkFile) -> Result<(Network, BuildConfig)> {
    if f.format_version != FORMAT_VERSION {
        return Err(Error::user(format!(
            "network file format version {} is not supported (expected {FORMAT_VERSION})",
            f.format_version
        )));
    }
    let n = f
        .network
        .as_ref()
        .ok_or_else(|| Error::user("network file has no network"))?;
    let nt = n.tensors.len() as u32;
    let tid = |i: u32| -> Result<TensorId> {
        if i < nt {
            Ok(TensorId(i))
        } else {
            Err(Error::user(format!("tensor index {i} out of range")))
        }
    };
    let mut net = Network::new(n.name.clone());
    for t in &n.tensors {
        net.tensors.push(Tensor {
            name: t.name.clone(),
            dtype: t
                .dtype
                .map(dtype)
                .transpose()
                .with_ctx(|| format!("tensor '{}'", t.name))?,
            dims: t.dims.as_ref().map(|d| d.d.clone()),
        });
    }
    net.inputs = n.inputs.iter().map(|&i| tid(i)).collect::<Result<_>>()?;
    for l in &n.layers {
        let kind = l
            .kind
            .as_ref()
            .ok_or_else(|| Error::user("layer has no kind"))
            .and_then(kind_from)
            .with_ctx(|| format!("layer '{}'", l.name))?;
        net.layers.push(Layer {
            name: l.name.clone(),
            kind,
            inputs: l.inputs.iter().map(|&i| tid(i)).collect::<Result<_>>()?,
            outputs: l.outputs.iter().map(|&i| tid(i)).collect::<Result<_>>()?,
        });
    }
    net.outputs = n.outputs.iter().map(|&i| tid(i)).collect::<Result<_>>()?;
    net.validate()?;

    let c = f
        .config
        .as_ref()
        .ok_or_else(|| Error::user("network file has no build configuration"))?;
    let target = TrtVersion {
        major: c.target_major,
        minor: c.target_minor,
    };
    TrtVersion::parse(&target.to_string())?;
    let config = BuildConfig {
        target,
        strongly_typed: c.strongly_typed,
        flags: c
            .flags
            .iter()
            .map(|s| {
                BuilderFlag::from_name(s)
                    .ok_or_else(|| Error::user(format!("unknown builder flag '{s}'")))
            })
            .collect::<Result<_>>()?,
        workspace_bytes: c.workspace_bytes,
        profiles: c
            .profiles
            .iter()
            .map(|p| OptimizationProfile {
                inputs: p
                    .inputs
                    .iter()
                    .map(|s| ProfileShapes {
                        input: s.input.clone(),
                        min: d(&s.min),
                        opt: d(&s.opt),
                        max: d(&s.max),
                    })
                    .collect(),
            })
            .collect(),
    };
    config.validate(&net)?;
    Ok((net, config))
}

/// Encodes network + configuration as protobuf bytes.
pub fn encode(net: &Network, config: &BuildConfig) -> Vec<u8> {
    to_proto(net, config).encode_to_vec()
}

/// Decodes protobuf bytes written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<(Network, BuildConfig)> {
    let f = pb::NetworkFile::decode(bytes)
        .map_err(|e| Error::user(format!("not a sparseqc network file: {e}")))?;
    from_proto(&f)
}

/// Writes the network file (`--emit network FILE`).
pub fn write_network_file(
    path: &std::path::Path,
    net: &Network,
    config: &BuildConfig,
) -> Result<()> {
    crate::util::write_atomic(path, &encode(net, config))
}

/// Reads a network file written by [`write_network_file`].
pub fn read_network_file(path: &std::path::Path) -> Result<(Network, BuildConfig)> {
    let bytes = std::fs::read(path).with_ctx(|| path.display().to_string())?;
    decode(&bytes).with_ctx(|| path.display().to_string())
}
