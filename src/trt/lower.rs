//! Lowering of the (quantized) IR to a TensorRT network definition: [`lower`] turns a
//! [`Model`] into a [`Network`] plus the [`BuildConfig`] to build it with.
//!
//! Every ONNX op the lowering knows maps to TensorRT layers that compute exactly what the
//! ONNX op computes, attribute by attribute; anything else — an op, an attribute value, a
//! non-constant input where TensorRT needs a build-time constant — stops the lowering with
//! an error that names the node, the op and what is missing, before any TensorRT call.
//! See docs/tensorrt.md for the op table.
//!
//! Shapes: the lowering tracks the dimensions of every tensor itself. Dimensions unknown at
//! build time (a symbolic batch `N`) are kept as symbols, so that the shape sub-graphs
//! PyTorch exports (`Shape → Gather → Unsqueeze → Concat → Reshape`) become a static
//! reshape with TensorRT's placeholders (`0` = copy that input dimension, `-1` = infer)
//! instead of shape layers. In the network they print as `-1`.
//!
//! Explicit quantization: `QuantizeLinear`/`DequantizeLinear` become Quantize/Dequantize
//! layers whose scale is a Constant layer (per tensor: 0-D; per channel: 1-D with the axis
//! set); zero points must be INT8 zeros. A weight that reaches a Conv/Gemm/MatMul through
//! a DequantizeLinear becomes the layer's input 1 (TensorRT's Q/DQ convention), so the
//! 2:4 zeros of the weight stay visible to TensorRT's sparsity check behind the Q/DQ pair.

use crate::util::AutoPad;
use std::collections::{HashMap, HashSet};

use super::config::{BuildConfig, OptimizationProfile, TrtVersion};
use super::network::{
    fmt_dims, ActivationType, ConvParams, DataType, ElementWiseOperation, LayerKind,
    MatrixOperation, Network, PoolingParams, PoolingType, ReduceOperation, SampleMode,
    ShuffleParams, TensorId, Weights,
};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, Model, Node, NodeId, Producer, Tensor as IrTensor, ValueId};

/// The ONNX ops [`lower`] knows (default domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "ConvTranspose",
    "DequantizeLinear",
    "Div",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "QuantizeLinear",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// How to build: the CLI's `--trt-version`, `--workspace` and `--shapes`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowerOptions {
    /// Target TensorRT release.
    pub target: TrtVersion,
    /// Strong typing; `None` = the target's default (always on for 11.x, off for 10.x so
    /// that `kINT8` is set).
    pub strongly_typed: Option<bool>,
    /// Builder workspace limit in MiB; `None` = TensorRT's default.
    pub workspace_mib: Option<u64>,
    /// One optimization profile (`NAME:MIN[,OPT,MAX][;NAME:...]`); required when an input
    /// has a dynamic dimension.
    pub shapes: Option<String>,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            target: TrtVersion::V11,
            strongly_typed: None,
            workspace_mib: None,
            shapes: None,
        }
    }
}

/// Lowers `model` to a network and its build configuration. Fails (before anything
/// touches TensorRT) on an unsupported op or attribute, and on dynamic inputs without
/// `shapes`.
pub fn lower(model: &Model, opts: &LowerOptions) -> Result<(Network, BuildConfig)> {
    let net = lower_network(model)?;
    let config = build_config(&net, opts)?;
    Ok((net, config))
}

/// The builder configuration for `net`: kSPARSE_WEIGHTS always; strongly typed on
/// TensorRT 11 (kINT8 only on 10.x without strong typing); the workspace limit; the
/// optimization profile, which every input with a dynamic dimension needs.
pub fn build_config(net: &Network, opts: &LowerOptions) -> Result<BuildConfig> {
    let mut c = BuildConfig::new(opts.target);
    if let Some(st) = opts.strongly_typed {
        c.strongly_typed = st;
    }
    c.workspace_bytes = opts.workspace_mib.map(|m| m.saturating_mul(1 << 20));
    if let Some(s) = &opts.shapes {
        c.profiles.push(OptimizationProfile::parse(s)?);
    }
    if c.profiles.is_empty() {
        for &t in net.inputs() {
            let t = net.tensor(t)?;
            let dims = t.dims.clone().unwrap_or_default();
            if dims.contains(&-1) {
                let ex = |b: i64| {
                    dims.iter()
                        .map(|&d| if d == -1 { b } else { d }.to_string())
                        .collect::<Vec<_>>()
                        .join("x")
                };
                return Err(Error::usage(format!(
                    "input '{}' has dynamic dimensions {}: give its shapes with --shapes, e.g. --shapes {}:{} \
                     (or min,opt,max: --shapes {}:{},{},{})",
                    t.name,
                    fmt_dims(&dims),
                    t.name,
                    ex(1),
                    t.name,
                    ex(1),
                    ex(8),
                    ex(32)
                )));
            }
        }
    }
    c.validate(net)?;
    Ok(c)
}

/// Lowers the graph of `model` to a network (no build configuration; dynamic inputs are
/// fine here). Only nodes that the graph outputs depend on are lowered.
pub fn lower_network(model: &Model) -> Result<Network> {
    let g = &model.graph;
    let mut lw = Lowerer::new(model);
    lw.inputs()?;
    let needed = needed_nodes(g)?;
    for id in g.topo_order()? {
        if !needed.contains(&id) {
            continue;
        }
        let n = g.n(id)?;
        let label = if n.name.is_empty() {
            format!("{}_{}", n.op_type, lw.unnamed)
        } else {
            n.name.clone()
        };
        if n.name.is_empty() {
            lw.unnamed += 1;
        }
        let cx = Cx { n, label };
        lw.node(&cx)?;
    }
    lw.outputs()?;
    lw.net
        .validate()
        .map_err(|e| e.context("lowering to TensorRT"))?;
    Ok(lw.net)
}

/// Nodes the graph outputs depend on.
fn needed_nodes(g: &Graph) -> Result<HashSet<NodeId>> {
    let mut seen = HashSet::new();
    let mut stack: Vec<ValueId> = g.outputs.clone();
    let mut visited = HashSet::new();
    while let Some(v) = stack.pop() {
        if !visited.insert(v) {
            continue;
        }
        if let Some((id, n)) = g.producer_node(v) {
            if seen.insert(id) {
                stack.extend(n.inputs.iter().flatten().copied());
                stack.extend(n.implicit_inputs.iter().copied());
            }
        }
    }
    Ok(seen)
}

/// A dimension: known, or a symbol (unknown at build time; equal symbols are equal sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum D {
    K(i64),
    S(u32),
}

fn trt_dims(d: &[D]) -> Vec<i64> {
    d.iter()
        .map(|x| match x {
            D::K(v) => *v,
            D::S(_) => -1,
        })
        .collect()
}

fn fmt_d(d: &[D]) -> String {
    fmt_dims(&trt_dims(d))
}

/// A network tensor with its (tracked) dims and type.
#[derive(Clone, Debug)]
struct Tv {
    id: TensorId,
    dims: Vec<D>,
    dtype: DataType,
}

/// What an ONNX value lowered to.
#[derive(Clone, Debug)]
enum Val {
    /// A network tensor.
    T(Tv),
    /// A constant of the IR (initializer or Constant node), materialized on demand.
    C(ValueId),
    /// An int64 shape vector (or scalar) computed by shape ops, known symbolically.
    S { dims: Vec<D>, scalar: bool },
}

/// The node being lowered.
struct Cx<'n> {
    n: &'n Node,
    label: String,
}

impl Cx<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::user(msg.into())
            .context(format!("node '{}' ({})", self.label, self.n.op_type))
            .context("lowering to TensorRT")
    }
    fn wrap(&self, e: Error) -> Error {
        e.context(format!("node '{}' ({})", self.label, self.n.op_type))
            .context("lowering to TensorRT")
    }
    fn check_attrs(&self, allowed: &[&str]) -> Result<()> {
        for a in &self.n.attrs {
            if !allowed.contains(&a.name()) {
                return Err(self.err(format!(
                    "attribute '{}' is not supported{}",
                    a.name(),
                    if allowed.is_empty() {
                        String::new()
                    } else {
                        format!(" (supported: {})", allowed.join(", "))
                    }
                )));
            }
        }
        Ok(())
    }
    /// Fails when an output beyond the first `n` is used.
    fn check_outputs(&self, g: &Graph, n: usize) -> Result<()> {
        for (i, o) in self.n.outputs.iter().enumerate().skip(n) {
            if let Some(o) = o {
                if !g.is_dead(*o) {
                    return Err(self.err(format!(
                        "output {i} '{}' is used, but only the first {n} output(s) can be lowered",
                        g.name_of(*o)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// ONNX TensorProto data type → TensorRT data type.
fn trt_dtype(onnx: i32) -> Option<DataType> {
    Some(match onnx {
        1 => DataType::Float,
        10 => DataType::Half,
        16 => DataType::BF16,
        3 => DataType::Int8,
        2 => DataType::UInt8,
        6 => DataType::Int32,
        7 => DataType::Int64,
        9 => DataType::Bool,
        _ => return None,
    })
}

/// The values of a constant, typed as TensorRT weights.
fn weights_of(t: &IrTensor) -> Result<Weights> {
    let raw = t.raw_bytes()?;
    let dt = t.dtype();
    match trt_dtype(dt) {
        Some(DataType::Float) => Ok(Weights::Float(t.to_f32()?)),
        Some(d) => Weights::from_le_bytes(d, &raw),
        None => Err(Error::user(format!(
            "constant '{}' of type {} has no TensorRT weight type",
            t.proto.name(),
            crate::ir::tensor::dtype_name(dt)
        ))),
    }
}

/// Normalizes an axis in `[-rank, rank)`.
fn norm_axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

/// (strides, dilations, pre-padding, post-padding) of a Conv or pooling window.
type WindowAttrs = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

/// Output size of a sliding window along one axis (floor or ceil mode).
fn window_out(d: i64, k: i64, s: i64, dil: i64, pre: i64, post: i64, ceil: bool) -> i64 {
    // saturating: absurd attribute values give absurd sizes, never an overflow
    let span = d
        .saturating_add(pre)
        .saturating_add(post)
        .saturating_sub(extent(k, dil));
    if span < 0 {
        return 0;
    }
    if ceil {
        span.saturating_add(s - 1) / s + 1
    } else {
        span / s + 1
    }
}

/// The output size of a transposed convolution before cropping:
/// s * (d - 1) + output_padding + (k - 1) * dil + 1.
fn deconv_full(d: i64, s: i64, opad: i64, k: i64, dil: i64) -> i64 {
    s.saturating_mul(d - 1)
        .saturating_add(opad)
        .saturating_add(extent(k, dil))
}

/// The extent of a dilated kernel: (k - 1) * dil + 1.
fn extent(k: i64, dil: i64) -> i64 {
    k.saturating_sub(1).saturating_mul(dil).saturating_add(1)
}

/// Broadcasts two dims lists of equal rank (numpy rules).
fn broadcast(a: &[D], b: &[D]) -> std::result::Result<Vec<D>, String> {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (D::K(1), _) => Ok(*y),
            (_, D::K(1)) => Ok(*x),
            (D::K(p), D::K(q)) if p == q => Ok(*x),
            (D::K(p), D::K(q)) => Err(format!("dimensions {p} and {q} do not broadcast")),
            (D::K(_), D::S(_)) => Ok(*x),
            (D::S(_), D::K(_)) => Ok(*y),
            (D::S(_), D::S(_)) => Ok(*x),
        })
        .collect()
}

/// TensorRT reshape dimensions producing `out` from `input`: a known dim is written as
/// is, a symbolic one as `0` (copy) when `input` has the same symbol at the same position,
/// else as `-1` (at most one). Returns (dims, zeroIsPlaceholder).
fn reshape_spec(input: &[D], out: &[D]) -> std::result::Result<(Vec<i64>, bool), String> {
    let mut spec = Vec::with_capacity(out.len());
    let (mut placeholders, mut literal_zero, mut infer) = (false, false, false);
    for (i, d) in out.iter().enumerate() {
        match d {
            D::K(v) => {
                literal_zero |= *v == 0;
                spec.push(*v);
            }
            D::S(_) if input.get(i) == Some(d) => {
                placeholders = true;
                spec.push(0);
            }
            D::S(_) => {
                if infer {
                    return Err(format!(
                        "the target shape {} has more than one dimension unknown at build time",
                        fmt_d(out)
                    ));
                }
                infer = true;
                spec.push(-1);
            }
        }
    }
    if placeholders && literal_zero {
        return Err(format!(
            "the target shape {} mixes empty dimensions with dimensions copied from the input",
            fmt_d(out)
        ));
    }
    Ok((spec, !literal_zero))
}

struct Lowerer<'a> {
    g: &'a Graph,
    opset: i64,
    net: Network,
    vals: HashMap<ValueId, Val>,
    /// Tensors of Constant nodes.
    node_consts: HashMap<ValueId, IrTensor>,
    /// Materialized constants by (value, dims).
    const_cache: HashMap<(ValueId, Vec<i64>), Tv>,
    syms: HashMap<String, u32>,
    next_sym: u32,
    /// ONNX value names: tensors of later values keep these names.
    reserved_tensors: HashSet<String>,
    used_tensors: HashSet<String>,
    /// ONNX node names: each names the main layer of its node.
    reserved_layers: HashSet<String>,
    used_layers: HashSet<String>,
    unnamed: usize,
}

/// The output tensor name of a new layer.
enum Out<'s> {
    /// The ONNX value of that name.
    Value(&'s str),
    /// An intermediate tensor, named `base/suffix` (made unique).
    Aux(String),
}

impl<'a> Lowerer<'a> {
    fn new(model: &'a Model) -> Lowerer<'a> {
        let g = &model.graph;
        let name = g
            .rest
            .name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "sparseqc".into());
        let reserved_tensors = g.value_ids().map(|v| g.name_of(v).to_string()).collect();
        let reserved_layers = g
            .node_ids()
            .iter()
            .filter_map(|id| g.node(*id))
            .filter(|n| !n.name.is_empty())
            .map(|n| n.name.clone())
            .collect();
        Lowerer {
            g,
            opset: model.opset(),
            net: Network::new(name),
            vals: HashMap::new(),
            node_consts: HashMap::new(),
            const_cache: HashMap::new(),
            syms: HashMap::new(),
            next_sym: 0,
            reserved_tensors,
            used_tensors: HashSet::new(),
            reserved_layers,
            used_layers: HashSet::new(),
            unnamed: 0,
        }
    }

    fn fresh(&mut self) -> D {
        self.next_sym += 1;
        D::S(self.next_sym)
    }

    fn layer_name(&mut self, base: &str, main: bool) -> String {
        let taken = |s: &Self, c: &str| {
            s.used_layers.contains(c) || (!main && s.reserved_layers.contains(c))
        };
        let mut name = base.to_string();
        let mut i = 1;
        while taken(self, &name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.used_layers.insert(name.clone());
        name
    }

    fn tensor_name(&mut self, out: Out<'_>) -> String {
        let (base, aux) = match out {
            Out::Value(v) => (v.to_string(), false),
            Out::Aux(s) => (s, true),
        };
        let taken = |s: &Self, c: &str| {
            s.used_tensors.contains(c) || (aux && s.reserved_tensors.contains(c))
        };
        let mut name = base.clone();
        let mut i = 1;
        while taken(self, &name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.used_tensors.insert(name.clone());
        name
    }

    /// Adds a layer named `label` (`suffix` None) or `label/suffix`.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        cx: &Cx,
        suffix: Option<&str>,
        kind: LayerKind,
        inputs: &[TensorId],
        out: Out<'_>,
        dims: Vec<D>,
        dtype: DataType,
    ) -> Result<Tv> {
        let lname = match suffix {
            None => self.layer_name(&cx.label, true),
            Some(s) => self.layer_name(&format!("{}/{s}", cx.label), false),
        };
        if dims.len() > 8 {
            return Err(cx.err(format!(
                "the output would have rank {}; TensorRT tensors have at most 8 dimensions",
                dims.len()
            )));
        }
        let tname = self.tensor_name(out);
        let id = self
            .net
            .add_layer_with_output(lname, kind, inputs, tname)
            .map_err(|e| cx.wrap(e))?;
        self.net
            .set_tensor_info(id, Some(dtype), Some(trt_dims(&dims)))?;
        Ok(Tv { id, dims, dtype })
    }

    /// Records the value of output `slot` of the node.
    fn set(&mut self, cx: &Cx, slot: usize, v: Val) {
        if let Some(Some(o)) = cx.n.outputs.get(slot) {
            self.vals.insert(*o, v);
        }
    }

    /// The ONNX name of output `slot` (for naming the layer output after it).
    fn out_name(&self, cx: &Cx, slot: usize) -> Result<String> {
        match cx.n.outputs.get(slot).copied().flatten() {
            Some(o) => Ok(self.g.v(o)?.name.clone()),
            None => Err(cx.err(format!("has no output {slot}"))),
        }
    }

    fn const_tensor(&self, v: ValueId) -> Option<&IrTensor> {
        if let Some(t) = self.node_consts.get(&v) {
            return Some(t);
        }
        let val = self.g.value(v)?;
        match val.producer {
            Producer::Initializer | Producer::GraphInput => val.constant.as_ref(),
            _ => None,
        }
    }

    // ---------- inputs and outputs ----------

    fn inputs(&mut self) -> Result<()> {
        let g = self.g;
        for &v in &g.inputs {
            let val = g.v(v)?;
            if val.constant.is_some() {
                // an input with an initializer: a weight of an old (IR < 4) model
                self.vals.insert(v, Val::C(v));
                continue;
            }
            let ctx = || format!("lowering to TensorRT: input '{}'", val.name);
            let ty = val.ty.as_ref().ok_or_else(|| {
                Error::user("has no declared type; TensorRT inputs need a type and a shape")
                    .context(ctx())
            })?;
            let dtype = trt_dtype(ty.elem).ok_or_else(|| {
                Error::user(format!(
                    "element type {} is not a TensorRT input type",
                    crate::ir::tensor::dtype_name(ty.elem)
                ))
                .context(ctx())
            })?;
            let shape = ty.shape.as_ref().ok_or_else(|| {
                Error::user("has no declared shape (rank); TensorRT inputs need one").context(ctx())
            })?;
            let mut dims = Vec::new();
            for d in shape {
                dims.push(match d {
                    Dim::Known(k) if *k >= 0 => D::K(*k),
                    Dim::Known(k) => {
                        return Err(
                            Error::user(format!("has a negative dimension {k}")).context(ctx())
                        )
                    }
                    Dim::Param(p) => match self.syms.get(p) {
                        Some(s) => D::S(*s),
                        None => {
                            let s = self.fresh();
                            if let D::S(id) = s {
                                self.syms.insert(p.clone(), id);
                            }
                            s
                        }
                    },
                    Dim::Unknown => self.fresh(),
                });
            }
            let name = self.tensor_name(Out::Value(&val.name));
            let id = self
                .net
                .add_input(name, dtype, &trt_dims(&dims))
                .map_err(|e| e.context(ctx()))?;
            self.vals.insert(v, Val::T(Tv { id, dims, dtype }));
        }
        Ok(())
    }

    fn outputs(&mut self) -> Result<()> {
        let g = self.g;
        for &v in &g.outputs {
            let name = g.v(v)?.name.clone();
            let ctx = || format!("lowering to TensorRT: output '{name}'");
            let tv = match self.vals.get(&v) {
                Some(Val::T(tv)) => tv.clone(),
                Some(_) => {
                    return Err(Error::user(
                        "is a constant; a TensorRT network cannot output a build-time constant",
                    )
                    .context(ctx()))
                }
                None => return Err(Error::internal(format!("output '{name}' was not lowered"))),
            };
            let t = self.net.tensor(tv.id)?;
            let needs_copy = t.name != name
                || self.net.inputs().contains(&tv.id)
                || self.net.outputs().contains(&tv.id);
            let id = if needs_copy {
                let lname = self.layer_name(&format!("{name}/output"), false);
                let tname = self.tensor_name(Out::Value(&name));
                let id = self
                    .net
                    .add_layer_with_output(lname, LayerKind::Identity, &[tv.id], tname)
                    .map_err(|e| e.context(ctx()))?;
                self.net
                    .set_tensor_info(id, Some(tv.dtype), Some(trt_dims(&tv.dims)))?;
                id
            } else {
                tv.id
            };
            self.net.mark_output(id).map_err(|e| e.context(ctx()))?;
        }
        Ok(())
    }

    // ---------- reading inputs ----------

    /// Input `i` of the node: (value, lowered form), or None when absent.
    fn input(&self, cx: &Cx, i: usize) -> Result<Option<(ValueId, Val)>> {
        let Some(v) = cx.n.inputs.get(i).copied().flatten() else {
            return Ok(None);
        };
        if let Some(val) = self.vals.get(&v) {
            return Ok(Some((v, val.clone())));
        }
        if self.const_tensor(v).is_some() {
            return Ok(Some((v, Val::C(v))));
        }
        Err(cx.err(format!(
            "input '{}' was not lowered (internal order error)",
            self.g.name_of(v)
        )))
    }

    fn req(&self, cx: &Cx, i: usize, what: &str) -> Result<(ValueId, Val)> {
        self.input(cx, i)?
            .ok_or_else(|| cx.err(format!("input {i} ({what}) is missing")))
    }

    fn dims_of(&self, v: &Val) -> Vec<D> {
        match v {
            Val::T(t) => t.dims.clone(),
            Val::C(c) => self
                .const_tensor(*c)
                .map(|t| t.dims().iter().map(|&d| D::K(d)).collect())
                .unwrap_or_default(),
            Val::S { dims, scalar } => {
                if *scalar {
                    vec![]
                } else {
                    vec![D::K(dims.len() as i64)]
                }
            }
        }
    }

    /// Integer values of a constant or a fully known shape value.
    fn ints_of(&self, v: &Val) -> Option<Vec<i64>> {
        match v {
            Val::C(c) => self.const_tensor(*c)?.to_i64().ok(),
            Val::S { dims, .. } => dims
                .iter()
                .map(|d| match d {
                    D::K(k) => Some(*k),
                    D::S(_) => None,
                })
                .collect(),
            Val::T(_) => None,
        }
    }

    /// A constant integer input (`what` names it in the error).
    fn const_ints(&self, cx: &Cx, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        match self.input(cx, i)? {
            None => Ok(None),
            Some((v, val)) => self.ints_of(&val).map(Some).ok_or_else(|| {
                cx.err(format!(
                    "input {i} '{}' ({what}) must be a constant integer tensor: TensorRT needs it at build time",
                    self.g.name_of(v)
                ))
            }),
        }
    }

    /// A constant float input: (dims, values).
    fn const_floats(&self, cx: &Cx, i: usize, what: &str) -> Result<Option<(Vec<i64>, Vec<f32>)>> {
        match self.input(cx, i)? {
            None => Ok(None),
            Some((v, Val::C(c))) => {
                let t = self.const_tensor(c).ok_or_else(|| Error::internal("constant vanished"))?;
                if !matches!(t.dtype(), 1 | 10 | 11 | 16) {
                    return Err(cx.err(format!(
                        "input {i} '{}' ({what}) must be a float constant, not {}",
                        self.g.name_of(v),
                        crate::ir::tensor::dtype_name(t.dtype())
                    )));
                }
                Ok(Some((t.dims().to_vec(), t.to_f32().map_err(|e| cx.wrap(e))?)))
            }
            Some((v, _)) => Err(cx.err(format!(
                "input {i} '{}' ({what}) must be a constant (an initializer): TensorRT needs it at build time",
                self.g.name_of(v)
            ))),
        }
    }

    /// A shape-like value: a shape vector/scalar, or an integer constant of rank <= 1.
    fn shape_like(&self, v: &Val) -> Option<(Vec<D>, bool)> {
        match v {
            Val::S { dims, scalar } => Some((dims.clone(), *scalar)),
            Val::C(c) => {
                let t = self.const_tensor(*c)?;
                if t.dims().len() > 1 || !matches!(t.dtype(), 6 | 7) {
                    return None;
                }
                Some((
                    t.to_i64().ok()?.into_iter().map(D::K).collect(),
                    t.dims().is_empty(),
                ))
            }
            Val::T(_) => None,
        }
    }

    /// A constant as a Constant layer with `dims` (default: its own), cached.
    fn materialize(&mut self, cx: &Cx, v: ValueId, dims: Option<Vec<i64>>) -> Result<Tv> {
        let t = self
            .const_tensor(v)
            .ok_or_else(|| Error::internal(format!("'{}' is not a constant", self.g.name_of(v))))?;
        let own = t.dims().to_vec();
        let dims = dims.unwrap_or_else(|| own.clone());
        if let Some(tv) = self.const_cache.get(&(v, dims.clone())) {
            return Ok(tv.clone());
        }
        let dtype = trt_dtype(t.dtype()).ok_or_else(|| {
            cx.err(format!(
                "constant '{}' of type {} has no TensorRT type",
                self.g.name_of(v),
                crate::ir::tensor::dtype_name(t.dtype())
            ))
        })?;
        let weights = weights_of(t).map_err(|e| cx.wrap(e))?;
        let vname = self.g.name_of(v).to_string();
        let first = !self.const_cache.keys().any(|(c, _)| *c == v);
        let tname = if first {
            self.tensor_name(Out::Value(&vname))
        } else {
            self.tensor_name(Out::Aux(format!("{vname}/{}", dims.len())))
        };
        let lname = self.layer_name(&tname, false);
        let id = self
            .net
            .add_layer_with_output(
                lname,
                LayerKind::Constant {
                    dims: dims.clone(),
                    weights,
                },
                &[],
                tname,
            )
            .map_err(|e| cx.wrap(e))?;
        let d: Vec<D> = dims.iter().map(|&x| D::K(x)).collect();
        self.net
            .set_tensor_info(id, Some(dtype), Some(dims.clone()))?;
        let tv = Tv { id, dims: d, dtype };
        self.const_cache.insert((v, dims), tv.clone());
        Ok(tv)
    }

    /// A value as a network tensor, with its rank raised to `rank` (leading 1s) if given.
    fn tensor(&mut self, cx: &Cx, (v, val): &(ValueId, Val), rank: Option<usize>) -> Result<Tv> {
        let tv = match val {
            Val::T(t) => t.clone(),
            Val::C(c) => {
                let own = self
                    .const_tensor(*c)
                    .map(|t| t.dims().to_vec())
                    .unwrap_or_default();
                let mut dims = own.clone();
                if let Some(r) = rank {
                    while dims.len() < r {
                        dims.insert(0, 1);
                    }
                }
                return self.materialize(cx, *c, (dims != own).then_some(dims));
            }
            Val::S { dims, scalar } => {
                let ints = self.ints_of(val).ok_or_else(|| {
                    cx.err(format!(
                        "'{}' is a shape {} computed at run time (it depends on a dynamic dimension); \
                         it can only feed Reshape, Concat, Gather, Unsqueeze, Squeeze, Slice or Cast here",
                        self.g.name_of(*v),
                        fmt_d(dims)
                    ))
                })?;
                let cdims = if *scalar {
                    vec![]
                } else {
                    vec![ints.len() as i64]
                };
                let tname = self.tensor_name(Out::Aux(format!("{}/const", self.g.name_of(*v))));
                let lname = self.layer_name(&tname, false);
                let id = self
                    .net
                    .add_layer_with_output(
                        lname,
                        LayerKind::Constant {
                            dims: cdims.clone(),
                            weights: Weights::Int64(ints),
                        },
                        &[],
                        tname,
                    )
                    .map_err(|e| cx.wrap(e))?;
                self.net
                    .set_tensor_info(id, Some(DataType::Int64), Some(cdims.clone()))?;
                Tv {
                    id,
                    dims: cdims.into_iter().map(D::K).collect(),
                    dtype: DataType::Int64,
                }
            }
        };
        match rank {
            Some(r) if tv.dims.len() < r => {
                let mut out = vec![D::K(1); r - tv.dims.len()];
                out.extend(tv.dims.iter().copied());
                let (spec, zp) = reshape_spec(&tv.dims, &out).map_err(|m| cx.err(m))?;
                let base = self.net.tensor(tv.id)?.name.clone();
                let kind = LayerKind::Shuffle(ShuffleParams {
                    reshape: Some(spec),
                    zero_is_placeholder: zp,
                    ..Default::default()
                });
                self.add(
                    cx,
                    Some(&format!("rank{r}")),
                    kind,
                    &[tv.id],
                    Out::Aux(format!("{base}/rank{r}")),
                    out,
                    tv.dtype,
                )
            }
            _ => Ok(tv),
        }
    }

    // ---------- ops ----------

    fn node(&mut self, cx: &Cx) -> Result<()> {
        let n = cx.n;
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(cx.err(format!(
                "ops of domain '{}' are not supported by the TensorRT lowering",
                n.domain
            )));
        }
        if !n.implicit_inputs.is_empty() {
            return Err(cx.err("ops with sub-graphs are not supported by the TensorRT lowering"));
        }
        match n.op_type.as_str() {
            "Conv" => self.conv(cx),
            "ConvTranspose" => self.conv_transpose(cx),
            "Gemm" => self.gemm(cx),
            "MatMul" => self.matmul(cx),
            "QuantizeLinear" | "DequantizeLinear" => self.qdq(cx),
            "Relu" | "Sigmoid" => self.activation(cx),
            "Clip" => self.clip(cx),
            "Add" | "Sub" | "Mul" | "Div" => self.elementwise(cx),
            "AveragePool" | "MaxPool" => self.pool(cx),
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(cx),
            "Flatten" => self.flatten(cx),
            "Reshape" => self.reshape(cx),
            "Transpose" => self.transpose(cx),
            "Concat" => self.concat(cx),
            "Pad" => self.pad(cx),
            "Slice" => self.slice(cx),
            "Softmax" => self.softmax(cx),
            "Identity" => {
                cx.check_attrs(&[])?;
                let x = self.req(cx, 0, "input")?;
                self.set(cx, 0, x.1);
                Ok(())
            }
            "Cast" => self.cast(cx),
            "Constant" => self.constant(cx),
            "Shape" => self.shape(cx),
            "Gather" => self.gather(cx),
            "Unsqueeze" | "Squeeze" => self.squeeze(cx),
            op => {
                // ops the default pipeline removes: say which pass
                let all_const = n.inputs.iter().flatten().all(|v| match self.vals.get(v) {
                    Some(val @ (Val::C(_) | Val::S { .. })) => {
                        self.ints_of(val).is_some() || matches!(val, Val::C(_))
                    }
                    Some(Val::T(_)) => false,
                    None => self.const_tensor(*v).is_some(),
                });
                let hint = if op == "BatchNormalization" {
                    "; run the fold-bn pass first (the default pipeline does)"
                } else if all_const {
                    "; its inputs are known at build time: run the cleanup pass first to fold it"
                } else {
                    ""
                };
                Err(cx.err(format!(
                    "op '{op}' is not supported by the TensorRT lowering (supported: {}){hint}",
                    SUPPORTED_OPS.join(", ")
                )))
            }
        }
    }

    /// Spatial attributes shared by Conv and pooling.
    fn window_attrs(
        &self,
        cx: &Cx,
        x: &[D],
        kernel: &[i64],
        dilations_ok: bool,
    ) -> Result<WindowAttrs> {
        let n = cx.n;
        let sp = kernel.len();
        let get = |name: &str, default: i64, len: usize, min: i64| -> Result<Vec<i64>> {
            match n.attr_ints(name) {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len && v.iter().all(|&x| x >= min) => Ok(v.to_vec()),
                Some(v) => Err(cx.err(format!(
                    "attribute {name}={v:?} must have {len} values >= {min}"
                ))),
            }
        };
        let strides = get("strides", 1, sp, 1)?;
        let dil = get("dilations", 1, sp, 1)?;
        if !dilations_ok && dil.iter().any(|&d| d != 1) {
            return Err(cx.err(format!(
                "attribute dilations={dil:?} is not supported (only 1)"
            )));
        }
        let pads = get("pads", 0, 2 * sp, 0)?;
        let auto = n.attr_s("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let (mut pre, mut post) = (pads[..sp].to_vec(), pads[sp..].to_vec());
        match AutoPad::parse(&auto) {
            Some(AutoPad::NotSet) => {}
            Some(AutoPad::Valid) => {
                pre = vec![0; sp];
                post = vec![0; sp];
            }
            Some(mode @ (AutoPad::SameUpper | AutoPad::SameLower)) => {
                for i in 0..sp {
                    let d = match x.get(2 + i) {
                        Some(D::K(d)) => *d,
                        _ => {
                            return Err(cx.err(format!(
                                "auto_pad={auto} needs the spatial dimensions of the input at build time, \
                                 and input has dims {}",
                                fmt_d(x)
                            )))
                        }
                    };
                    (pre[i], post[i], _) = mode.same_pads(d, extent(kernel[i], dil[i]), strides[i]);
                }
            }
            None => return Err(cx.err(format!("auto_pad='{auto}' is not a valid value"))),
        }
        Ok((strides, dil, pre, post))
    }

    /// A kernel (weight) input: inline weights for a constant, else a tensor with known dims.
    fn kernel_input(
        &mut self,
        cx: &Cx,
        w: &(ValueId, Val),
    ) -> Result<(Vec<i64>, Option<Weights>, Option<Tv>)> {
        match &w.1 {
            Val::C(c) => {
                let t = self
                    .const_tensor(*c)
                    .ok_or_else(|| Error::internal("constant vanished"))?;
                if t.dtype() != 1 {
                    return Err(cx.err(format!(
                        "weight '{}' of type {} must be float (or come through DequantizeLinear)",
                        self.g.name_of(*c),
                        crate::ir::tensor::dtype_name(t.dtype())
                    )));
                }
                Ok((
                    t.dims().to_vec(),
                    Some(Weights::Float(t.to_f32().map_err(|e| cx.wrap(e))?)),
                    None,
                ))
            }
            _ => {
                let tv = self.tensor(cx, w, None)?;
                let dims = trt_dims(&tv.dims);
                if dims.contains(&-1) {
                    return Err(cx.err(format!(
                        "the weight '{}' has dims {} unknown at build time",
                        self.g.name_of(w.0),
                        fmt_dims(&dims)
                    )));
                }
                Ok((dims, None, Some(tv)))
            }
        }
    }

    /// Operands shared by Conv and ConvTranspose: the input, the kernel (inline weights or
    /// a tensor such as a DQ output), spatial rank (2 or 3) and kernel size, checked against
    /// `kernel_shape`. `what`/`trt_name` word the errors.
    #[allow(clippy::type_complexity)]
    fn conv_operands(
        &mut self,
        cx: &Cx,
        what: &str,
        trt_name: &str,
    ) -> Result<(Tv, Vec<i64>, Option<Weights>, Option<Tv>, usize, Vec<i64>)> {
        let xv = self.req(cx, 0, "X")?;
        let x = self.tensor(cx, &xv, None)?;
        let wv = self.req(cx, 1, "W")?;
        let (wd, kernel, wt) = self.kernel_input(cx, &wv)?;
        let r = x.dims.len();
        if r < 3 || wd.len() != r {
            return Err(cx.err(format!(
                "input dims {} and weight dims {} do not make a {what}",
                fmt_d(&x.dims),
                fmt_dims(&wd)
            )));
        }
        let sp = r - 2;
        if !(2..=3).contains(&sp) {
            return Err(cx.err(format!("{sp}-D {what} is not supported: TensorRT {trt_name} are 2-D or 3-D")));
        }
        let ks = wd[2..].to_vec();
        if let Some(k) = cx.n.attr_ints("kernel_shape") {
            if k != ks.as_slice() {
                return Err(cx.err(format!("kernel_shape {k:?} differs from the weight's {ks:?}")));
            }
        }
        Ok((x, wd, kernel, wt, sp, ks))
    }

    /// The optional bias (input 2) of Conv/ConvTranspose: inline float weights when
    /// constant, else a tensor input (only when the kernel is a tensor input too).
    fn conv_bias(&mut self, cx: &Cx, p: &mut ConvParams, kernel_is_tensor: bool, inputs: &mut Vec<TensorId>) -> Result<()> {
        let Some(bv) = self.input(cx, 2)? else { return Ok(()) };
        match &bv.1 {
            Val::C(c) => {
                let b = self.const_tensor(*c).ok_or_else(|| Error::internal("constant vanished"))?;
                if b.dtype() != 1 {
                    return Err(cx.err("the bias must be a float tensor"));
                }
                p.bias = Some(Weights::Float(b.to_f32().map_err(|e| cx.wrap(e))?));
            }
            _ if kernel_is_tensor => {
                let b = self.tensor(cx, &bv, None)?;
                inputs.push(b.id);
            }
            _ => return Err(cx.err("a bias computed at run time with constant (inline) weights is not supported")),
        }
        Ok(())
    }

    fn conv(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
        let (x, wd, kernel, wt, sp, ks) = self.conv_operands(cx, "convolution", "convolutions")?;
        let group = cx.n.attr_i("group").unwrap_or(1);
        if group < 1 || wd[0] % group != 0 {
            return Err(cx.err(format!(
                "group={group} does not divide the {} output channels",
                wd[0]
            )));
        }
        if let D::K(c) = x.dims[1] {
            if c != wd[1] * group {
                return Err(cx.err(format!(
                    "input has {c} channels, the weight expects {} x group {group}",
                    wd[1]
                )));
            }
        }
        let (strides, dil, pre, post) = self.window_attrs(cx, &x.dims, &ks, true)?;
        let mut p = ConvParams::new(wd[0], &ks);
        p.kernel = kernel;
        p.stride = strides.clone();
        p.dilation = dil.clone();
        p.pre_padding = pre.clone();
        p.post_padding = post.clone();
        p.nb_groups = group;
        let mut inputs = vec![x.id];
        if let Some(t) = &wt {
            inputs.push(t.id);
        }
        self.conv_bias(cx, &mut p, wt.is_some(), &mut inputs)?;
        let mut dims = vec![x.dims[0], D::K(wd[0])];
        for i in 0..sp {
            dims.push(match x.dims[2 + i] {
                D::K(d) => {
                    let o = window_out(d, ks[i], strides[i], dil[i], pre[i], post[i], false);
                    if o <= 0 {
                        return Err(cx.err(format!(
                            "the output would be empty (input dims {})",
                            fmt_d(&x.dims)
                        )));
                    }
                    D::K(o)
                }
                D::S(_) => self.fresh(),
            });
        }
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::Convolution(p),
            &inputs,
            Out::Value(&out),
            dims,
            x.dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn conv_transpose(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "output_padding",
            "pads",
            "strides",
        ])?;
        let (x, wd, kernel, wt, sp, ks) = self.conv_operands(cx, "transposed convolution", "deconvolutions")?;
        let group = cx.n.attr_i("group").unwrap_or(1);
        if group < 1 || wd[0] % group != 0 {
            return Err(cx.err(format!(
                "group={group} does not divide the {} input channels",
                wd[0]
            )));
        }
        if let D::K(c) = x.dims[1] {
            if c != wd[0] {
                return Err(cx.err(format!(
                    "input has {c} channels, the weight expects {}",
                    wd[0]
                )));
            }
        }
        let k_out = wd[1] * group;
        let get = |name: &str, default: i64, len: usize, min: i64| -> Result<Vec<i64>> {
            match cx.n.attr_ints(name) {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len && v.iter().all(|&x| x >= min) => Ok(v.to_vec()),
                Some(v) => Err(cx.err(format!(
                    "attribute {name}={v:?} must have {len} values >= {min}"
                ))),
            }
        };
        let strides = get("strides", 1, sp, 1)?;
        let dil = get("dilations", 1, sp, 1)?;
        let opad = get("output_padding", 0, sp, 0)?;
        let pads = get("pads", 0, 2 * sp, 0)?;
        let (mut pre, mut post) = (pads[..sp].to_vec(), pads[sp..].to_vec());
        let auto = cx.n.attr_s("auto_pad").unwrap_or_else(|| "NOTSET".into());
        match AutoPad::parse(&auto) {
            Some(AutoPad::NotSet) => {}
            Some(AutoPad::Valid) => {
                pre = vec![0; sp];
                post = vec![0; sp];
            }
            Some(mode @ (AutoPad::SameUpper | AutoPad::SameLower)) => {
                for i in 0..sp {
                    let D::K(d) = x.dims[2 + i] else {
                        return Err(cx.err(format!(
                            "auto_pad={auto} needs the spatial dimensions of the input at build time, and input has dims {}",
                            fmt_d(&x.dims)
                        )));
                    };
                    let total = deconv_full(d, strides[i], opad[i], ks[i], dil[i])
                        .saturating_sub(d.saturating_mul(strides[i]))
                        .max(0);
                    (pre[i], post[i]) = mode.split(total);
                }
            }
            None => return Err(cx.err(format!("auto_pad='{auto}' is not a valid value"))),
        }
        // TensorRT crops pre/post from the full output; output_padding adds at the end.
        let mut trt_post = Vec::with_capacity(sp);
        for i in 0..sp {
            let v = post[i] - opad[i];
            if v < 0 {
                return Err(cx.err(format!(
                    "output_padding {:?} larger than the end padding {:?} is not supported",
                    opad, post
                )));
            }
            trt_post.push(v);
        }
        let mut p = ConvParams::new(k_out, &ks);
        p.kernel = kernel;
        p.stride = strides.clone();
        p.dilation = dil.clone();
        p.pre_padding = pre.clone();
        p.post_padding = trt_post.clone();
        p.nb_groups = group;
        let mut inputs = vec![x.id];
        if let Some(t) = &wt {
            inputs.push(t.id);
        }
        self.conv_bias(cx, &mut p, wt.is_some(), &mut inputs)?;
        let mut dims = vec![x.dims[0], D::K(k_out)];
        for i in 0..sp {
            dims.push(match x.dims[2 + i] {
                D::K(d) => {
                    let o = deconv_full(d, strides[i], opad[i], ks[i], dil[i])
                        .saturating_sub(pre[i])
                        .saturating_sub(post[i]);
                    if o <= 0 {
                        return Err(cx.err(format!(
                            "the output would be empty (input dims {})",
                            fmt_d(&x.dims)
                        )));
                    }
                    D::K(o)
                }
                D::S(_) => self.fresh(),
            });
        }
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::Deconvolution(p),
            &inputs,
            Out::Value(&out),
            dims,
            x.dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    /// A scalar float constant layer broadcastable against a rank-`rank` tensor.
    fn scalar_const(&mut self, cx: &Cx, what: &str, v: f32, rank: usize) -> Result<Tv> {
        let dims = vec![1i64; rank];
        let out = Out::Aux(format!("{}/{what}", cx.label));
        self.add(
            cx,
            Some(what),
            LayerKind::Constant {
                dims: dims.clone(),
                weights: Weights::Float(vec![v]),
            },
            &[],
            out,
            dims.into_iter().map(D::K).collect(),
            DataType::Float,
        )
    }

    fn gemm(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["alpha", "beta", "transA", "transB"])?;
        let n = cx.n;
        let alpha = n.attr_f("alpha").unwrap_or(1.0);
        let beta = n.attr_f("beta").unwrap_or(1.0);
        let ta = n.attr_i("transA").unwrap_or(0) != 0;
        let tb = n.attr_i("transB").unwrap_or(0) != 0;
        let av = self.req(cx, 0, "A")?;
        let bv = self.req(cx, 1, "B")?;
        let a = self.tensor(cx, &av, None)?;
        let b = self.tensor(cx, &bv, None)?;
        if a.dims.len() != 2 || b.dims.len() != 2 {
            return Err(cx.err(format!(
                "A {} and B {} must both be 2-D",
                fmt_d(&a.dims),
                fmt_d(&b.dims)
            )));
        }
        let (m, ka) = if ta {
            (a.dims[1], a.dims[0])
        } else {
            (a.dims[0], a.dims[1])
        };
        let (kb, nn) = if tb {
            (b.dims[1], b.dims[0])
        } else {
            (b.dims[0], b.dims[1])
        };
        if let (D::K(p), D::K(q)) = (ka, kb) {
            if p != q {
                return Err(cx.err(format!("inner dimensions differ: {p} vs {q}")));
            }
        }
        let c = self.input(cx, 2)?;
        let out = self.out_name(cx, 0)?;
        let dims = vec![m, nn];
        let last_is_mm = alpha == 1.0 && c.is_none();
        let op = |t: bool| {
            if t {
                MatrixOperation::Transpose
            } else {
                MatrixOperation::None
            }
        };
        let mm_out = if last_is_mm {
            Out::Value(&out)
        } else {
            Out::Aux(format!("{out}/matmul"))
        };
        let mut y = self.add(
            cx,
            None,
            LayerKind::MatrixMultiply {
                op0: op(ta),
                op1: op(tb),
            },
            &[a.id, b.id],
            mm_out,
            dims.clone(),
            a.dtype,
        )?;
        if alpha != 1.0 {
            let s = self.scalar_const(cx, "alpha", alpha, 2)?;
            let o = if c.is_none() {
                Out::Value(&out)
            } else {
                Out::Aux(format!("{out}/alpha_ab"))
            };
            y = self.add(
                cx,
                Some("scale_alpha"),
                LayerKind::ElementWise(ElementWiseOperation::Prod),
                &[y.id, s.id],
                o,
                dims.clone(),
                a.dtype,
            )?;
        }
        if let Some(cv) = c {
            let ct = self.tensor(cx, &cv, Some(2))?;
            if ct.dims.len() != 2 {
                return Err(cx.err(format!(
                    "C has dims {}, expected at most 2-D",
                    fmt_d(&ct.dims)
                )));
            }
            broadcast(&dims, &ct.dims)
                .map_err(|m| cx.err(format!("C does not broadcast to [M, N]: {m}")))?;
            let mut cb = ct;
            if beta != 1.0 {
                let s = self.scalar_const(cx, "beta", beta, 2)?;
                let cdims = cb.dims.clone();
                cb = self.add(
                    cx,
                    Some("scale_beta"),
                    LayerKind::ElementWise(ElementWiseOperation::Prod),
                    &[cb.id, s.id],
                    Out::Aux(format!("{out}/beta_c")),
                    cdims,
                    a.dtype,
                )?;
            }
            y = self.add(
                cx,
                Some("bias"),
                LayerKind::ElementWise(ElementWiseOperation::Sum),
                &[y.id, cb.id],
                Out::Value(&out),
                dims,
                a.dtype,
            )?;
        }
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn matmul(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&[])?;
        let av = self.req(cx, 0, "A")?;
        let bv = self.req(cx, 1, "B")?;
        let (ra, rb) = (self.dims_of(&av.1).len(), self.dims_of(&bv.1).len());
        if ra < 2 || rb < 2 {
            return Err(
                cx.err("1-D operands are not supported (only matrices and batches of matrices)")
            );
        }
        let r = ra.max(rb);
        let a = self.tensor(cx, &av, Some(r))?;
        let b = self.tensor(cx, &bv, Some(r))?;
        let batch = broadcast(&a.dims[..r - 2], &b.dims[..r - 2])
            .map_err(|m| cx.err(format!("batch dims: {m}")))?;
        if let (D::K(p), D::K(q)) = (a.dims[r - 1], b.dims[r - 2]) {
            if p != q {
                return Err(cx.err(format!("inner dimensions differ: {p} vs {q}")));
            }
        }
        let mut dims = batch;
        dims.push(a.dims[r - 2]);
        dims.push(b.dims[r - 1]);
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::MatrixMultiply {
                op0: MatrixOperation::None,
                op1: MatrixOperation::None,
            },
            &[a.id, b.id],
            Out::Value(&out),
            dims,
            a.dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn qdq(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["axis", "saturate", "block_size", "output_dtype"])?;
        let n = cx.n;
        let quant = n.op_type == "QuantizeLinear";
        if n.attr_i("block_size").unwrap_or(0) != 0 {
            return Err(cx.err("blocked quantization (block_size) is not supported"));
        }
        let xv = self.req(cx, 0, "x")?;
        let (sv_id, sv) = self.req(cx, 1, "scale")?;
        let Val::C(sc) = sv else {
            return Err(cx.err(format!(
                "the scale '{}' must be a constant: TensorRT needs Q/DQ scales at build time",
                self.g.name_of(sv_id)
            )));
        };
        let (sdims, scales) = self
            .const_floats(cx, 1, "scale")?
            .ok_or_else(|| Error::internal("scale vanished"))?;
        let st = self.const_tensor(sc).map(|t| t.dtype()).unwrap_or(0);
        if st != 1 {
            return Err(cx.err(format!(
                "the scale must be float32, not {}",
                crate::ir::tensor::dtype_name(st)
            )));
        }
        if scales.is_empty() {
            return Err(cx.err("the scale is empty"));
        }
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(cx.err(format!("scale {bad} is not a positive finite number")));
        }
        // zero point: INT8 zeros only (TensorRT quantization is symmetric INT8)
        match self.input(cx, 2)? {
            Some((zid, zv)) => {
                let Val::C(zc) = zv else {
                    return Err(cx.err(format!("the zero point '{}' must be a constant", self.g.name_of(zid))));
                };
                let zt = self.const_tensor(zc).ok_or_else(|| Error::internal("constant vanished"))?;
                if zt.dtype() != 3 {
                    return Err(cx.err(format!(
                        "the zero point '{}' is {}: TensorRT quantizes to INT8 only (symmetric, zero point 0)",
                        self.g.name_of(zid),
                        crate::ir::tensor::dtype_name(zt.dtype())
                    )));
                }
                let z = zt.to_i64().map_err(|e| cx.wrap(e))?;
                if let Some(bad) = z.iter().find(|&&v| v != 0) {
                    return Err(cx.err(format!(
                        "zero point {bad} in '{}': TensorRT supports symmetric quantization only (zero point 0)",
                        self.g.name_of(zid)
                    )));
                }
            }
            None if quant && n.attr_i("output_dtype").unwrap_or(0) != 3 => {
                return Err(cx.err(
                    "no zero point: ONNX then quantizes to UINT8, and TensorRT quantizes to INT8 only; \
                     give an INT8 zero point of 0",
                ))
            }
            None => {}
        }
        if let Some(od) = n.attr_i("output_dtype") {
            if od != 0 && od != if quant { 3 } else { 1 } {
                return Err(cx.err(format!(
                    "output_dtype {} is not supported",
                    crate::ir::tensor::dtype_name(od as i32)
                )));
            }
        }
        let x = self.tensor(cx, &xv, None)?;
        if !quant && x.dtype != DataType::Int8 {
            return Err(cx.err(format!(
                "the input is {}, TensorRT dequantizes INT8",
                x.dtype
            )));
        }
        if quant && !matches!(x.dtype, DataType::Float | DataType::Half | DataType::BF16) {
            return Err(cx.err(format!("the input is {}, expected a float tensor", x.dtype)));
        }
        let per_channel = scales.len() > 1 || sdims.len() == 1 && sdims[0] != 1;
        let (axis, scale_dims) = if per_channel {
            if sdims.len() != 1 {
                return Err(cx.err(format!(
                    "the scale has dims {}; expected a scalar or 1-D",
                    fmt_dims(&sdims)
                )));
            }
            let a = n.attr_i("axis").unwrap_or(1);
            let ax = norm_axis(a, x.dims.len()).ok_or_else(|| {
                cx.err(format!(
                    "axis {a} is out of range for dims {}",
                    fmt_d(&x.dims)
                ))
            })?;
            if let D::K(c) = x.dims[ax] {
                if c != sdims[0] {
                    return Err(cx.err(format!(
                        "{} scales for {c} channels along axis {ax}",
                        sdims[0]
                    )));
                }
            }
            (Some(ax as i32), sdims.clone())
        } else {
            (None, vec![])
        };
        let s = self.materialize(cx, sc, Some(scale_dims))?;
        let out = self.out_name(cx, 0)?;
        let (kind, dtype) = if quant {
            (
                LayerKind::Quantize {
                    axis,
                    to_type: DataType::Int8,
                },
                DataType::Int8,
            )
        } else {
            (
                LayerKind::Dequantize {
                    axis,
                    to_type: DataType::Float,
                },
                DataType::Float,
            )
        };
        let dims = x.dims.clone();
        let y = self.add(cx, None, kind, &[x.id, s.id], Out::Value(&out), dims, dtype)?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn unary(&mut self, cx: &Cx, kind: LayerKind) -> Result<()> {
        let xv = self.req(cx, 0, "X")?;
        let x = self.tensor(cx, &xv, None)?;
        let out = self.out_name(cx, 0)?;
        let dims = x.dims.clone();
        let y = self.add(cx, None, kind, &[x.id], Out::Value(&out), dims, x.dtype)?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn activation(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&[])?;
        let activation = if cx.n.op_type == "Relu" {
            ActivationType::Relu
        } else {
            ActivationType::Sigmoid
        };
        self.unary(
            cx,
            LayerKind::Activation {
                activation,
                alpha: 0.0,
                beta: 0.0,
            },
        )
    }

    fn clip(&mut self, cx: &Cx) -> Result<()> {
        let (lo, hi) = if self.opset < 11 {
            cx.check_attrs(&["min", "max"])?;
            (
                cx.n.attr_f("min").unwrap_or(f32::MIN),
                cx.n.attr_f("max").unwrap_or(f32::MAX),
            )
        } else {
            cx.check_attrs(&[])?;
            let bound = |s: &Self, i: usize, what: &str, default: f32| -> Result<f32> {
                match s.const_floats(cx, i, what)? {
                    None => Ok(default),
                    Some((_, v)) if v.len() == 1 => Ok(v[0]),
                    Some((d, _)) => Err(cx.err(format!(
                        "{what} must be a scalar, has dims {}",
                        fmt_dims(&d)
                    ))),
                }
            };
            (
                bound(self, 1, "min", f32::MIN)?,
                bound(self, 2, "max", f32::MAX)?,
            )
        };
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(cx.err(format!(
                "bounds min={lo} max={hi} are not supported (need min <= max)"
            )));
        }
        self.unary(
            cx,
            LayerKind::Activation {
                activation: ActivationType::Clip,
                alpha: lo,
                beta: hi,
            },
        )
    }

    fn elementwise(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&[])?;
        let op = match cx.n.op_type.as_str() {
            "Add" => ElementWiseOperation::Sum,
            "Sub" => ElementWiseOperation::Sub,
            "Mul" => ElementWiseOperation::Prod,
            _ => ElementWiseOperation::Div,
        };
        let av = self.req(cx, 0, "A")?;
        let bv = self.req(cx, 1, "B")?;
        let shape_arith = matches!(av.1, Val::S { .. }) || matches!(bv.1, Val::S { .. });
        if shape_arith && (self.ints_of(&av.1).is_none() || self.ints_of(&bv.1).is_none()) {
            return Err(cx.err("arithmetic on shapes computed at run time is not supported"));
        }
        let r = self.dims_of(&av.1).len().max(self.dims_of(&bv.1).len());
        let a = self.tensor(cx, &av, Some(r))?;
        let b = self.tensor(cx, &bv, Some(r))?;
        if a.dtype != b.dtype {
            return Err(cx.err(format!("operand types differ: {} and {}", a.dtype, b.dtype)));
        }
        let dims = broadcast(&a.dims, &b.dims).map_err(|m| {
            cx.err(format!(
                "{} and {} do not broadcast: {m}",
                fmt_d(&a.dims),
                fmt_d(&b.dims)
            ))
        })?;
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::ElementWise(op),
            &[a.id, b.id],
            Out::Value(&out),
            dims,
            a.dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn pool(&mut self, cx: &Cx) -> Result<()> {
        let max = cx.n.op_type == "MaxPool";
        if max {
            cx.check_attrs(&[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "storage_order",
                "strides",
            ])?;
            cx.check_outputs(self.g, 1)?;
        } else {
            cx.check_attrs(&[
                "auto_pad",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
        }
        let xv = self.req(cx, 0, "X")?;
        let x = self.tensor(cx, &xv, None)?;
        let ks =
            cx.n.attr_ints("kernel_shape")
                .ok_or_else(|| cx.err("attribute kernel_shape is missing"))?
                .to_vec();
        let sp = ks.len();
        if !(2..=3).contains(&sp) || x.dims.len() != sp + 2 || ks.iter().any(|&k| k < 1) {
            return Err(cx.err(format!(
                "a {sp}-D window {ks:?} over input dims {} is not supported: TensorRT pools over 2 or 3 dims",
                fmt_d(&x.dims)
            )));
        }
        let (strides, _, pre, post) = self.window_attrs(cx, &x.dims, &ks, false)?;
        let ceil = cx.n.attr_i("ceil_mode").unwrap_or(0) != 0;
        let mut dims = vec![x.dims[0], x.dims[1]];
        for i in 0..sp {
            dims.push(match x.dims[2 + i] {
                D::K(d) => {
                    let fl = window_out(d, ks[i], strides[i], 1, pre[i], post[i], false);
                    if ceil && window_out(d, ks[i], strides[i], 1, pre[i], post[i], true) != fl {
                        return Err(cx.err(format!(
                            "ceil_mode=1 changes the output size here (input dims {}); only ceil_mode=0 \
                             or a ceil_mode that does not change the size is supported",
                            fmt_d(&x.dims)
                        )));
                    }
                    if fl <= 0 {
                        return Err(cx.err(format!("the output would be empty (input dims {})", fmt_d(&x.dims))));
                    }
                    D::K(fl)
                }
                D::S(_) if ceil => {
                    return Err(cx.err(format!(
                        "ceil_mode=1 needs the spatial dimensions at build time, and input has dims {}",
                        fmt_d(&x.dims)
                    )))
                }
                D::S(_) => self.fresh(),
            });
        }
        let mut p = PoolingParams::new(
            if max {
                PoolingType::Max
            } else {
                PoolingType::Average
            },
            &ks,
        );
        p.stride = strides;
        p.pre_padding = pre;
        p.post_padding = post;
        p.average_count_excludes_padding =
            max || cx.n.attr_i("count_include_pad").unwrap_or(0) == 0;
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::Pooling(p),
            &[x.id],
            Out::Value(&out),
            dims,
            x.dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn global_pool(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&[])?;
        let xv = self.req(cx, 0, "X")?;
        let x = self.tensor(cx, &xv, None)?;
        let r = x.dims.len();
        if !(3..=8).contains(&r) {
            return Err(cx.err(format!("input dims {} need rank 3 or more", fmt_d(&x.dims))));
        }
        let axes = (2..r).fold(0u32, |m, a| m | (1 << a));
        let op = if cx.n.op_type == "GlobalAveragePool" {
            ReduceOperation::Avg
        } else {
            ReduceOperation::Max
        };
        let mut dims = x.dims[..2].to_vec();
        dims.extend(std::iter::repeat_n(D::K(1), r - 2));
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::Reduce {
                op,
                axes,
                keep_dims: true,
            },
            &[x.id],
            Out::Value(&out),
            dims,
            x.dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    /// A Shuffle that reshapes `x` to `out` dims.
    fn reshape_to(&mut self, cx: &Cx, x: &Tv, out: Vec<D>) -> Result<Tv> {
        let (spec, zp) = reshape_spec(&x.dims, &out).map_err(|m| cx.err(m))?;
        let kind = LayerKind::Shuffle(ShuffleParams {
            reshape: Some(spec),
            zero_is_placeholder: zp,
            ..Default::default()
        });
        let name = self.out_name(cx, 0)?;
        self.add(cx, None, kind, &[x.id], Out::Value(&name), out, x.dtype)
    }

    fn product(&mut self, d: &[D]) -> D {
        let mut p = 1i64;
        for x in d {
            match x {
                D::K(v) => p = p.saturating_mul(*v),
                D::S(_) => return if d.len() == 1 { *x } else { self.fresh() },
            }
        }
        D::K(p)
    }

    fn flatten(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["axis"])?;
        let xv = self.req(cx, 0, "input")?;
        let x = self.tensor(cx, &xv, None)?;
        let r = x.dims.len();
        let a = cx.n.attr_i("axis").unwrap_or(1);
        let a = if a < 0 { a + r as i64 } else { a };
        if !(0..=r as i64).contains(&a) {
            return Err(cx.err(format!(
                "axis {} is out of range for rank {r}",
                cx.n.attr_i("axis").unwrap_or(1)
            )));
        }
        let a = a as usize;
        let lead = self.product(&x.dims[..a]);
        let tail = self.product(&x.dims[a..]);
        let y = self.reshape_to(cx, &x, vec![lead, tail])?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn reshape(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["allowzero"])?;
        let allowzero = cx.n.attr_i("allowzero").unwrap_or(0) != 0;
        let xv = self.req(cx, 0, "data")?;
        let (sid, sv) = self.req(cx, 1, "shape")?;
        let (entries, _) = self.shape_like(&sv).ok_or_else(|| {
            cx.err(format!(
                "the shape '{}' must be a constant or computed from Shape: TensorRT needs it at build time",
                self.g.name_of(sid)
            ))
        })?;
        let x = self.tensor(cx, &xv, None)?;
        if entries.len() > 8 {
            return Err(cx.err("TensorRT tensors have at most 8 dimensions"));
        }
        // output dims and the reshape spec, entry by entry
        let mut out: Vec<Option<D>> = Vec::new();
        let mut spec = Vec::new();
        let (mut infer_at, mut placeholder, mut literal_zero) = (None, false, false);
        for (i, e) in entries.iter().enumerate() {
            match *e {
                D::K(0) if !allowzero => {
                    let d = *x.dims.get(i).ok_or_else(|| {
                        cx.err(format!(
                            "shape entry {i} copies a dimension the input lacks"
                        ))
                    })?;
                    out.push(Some(d));
                    spec.push(0);
                    placeholder = true;
                }
                D::K(-1) => {
                    if infer_at.is_some() {
                        return Err(cx.err("the shape has more than one -1"));
                    }
                    infer_at = Some(i);
                    out.push(None);
                    spec.push(-1);
                }
                D::K(v) if v < 0 => return Err(cx.err(format!("invalid shape entry {v}"))),
                D::K(v) => {
                    literal_zero |= v == 0;
                    out.push(Some(D::K(v)));
                    spec.push(v);
                }
                D::S(s) => {
                    out.push(Some(D::S(s)));
                    if x.dims.get(i) == Some(&D::S(s)) {
                        spec.push(0);
                        placeholder = true;
                    } else if infer_at.is_none() {
                        infer_at = Some(i);
                        spec.push(-1);
                    } else {
                        return Err(cx.err(format!(
                            "shape entry {i} is a dimension known only at run time that TensorRT cannot express here \
                             (shape {})",
                            fmt_d(&entries)
                        )));
                    }
                }
            }
        }
        if placeholder && literal_zero {
            return Err(cx.err(
                "allowzero=1 with both literal zeros and copied dimensions is not supported",
            ));
        }
        if let Some(i) = infer_at {
            if out[i].is_none() {
                // -1: the volume divided by the other dims, cancelling equal symbols
                let mut in_syms: Vec<u32> = Vec::new();
                let mut in_known = 1i64;
                for d in &x.dims {
                    match d {
                        D::K(v) => in_known = in_known.saturating_mul(*v),
                        D::S(s) => in_syms.push(*s),
                    }
                }
                let mut out_known = 1i64;
                let mut ok = true;
                for d in out.iter().flatten() {
                    match d {
                        D::K(v) => out_known = out_known.saturating_mul(*v),
                        D::S(s) => match in_syms.iter().position(|x| x == s) {
                            Some(p) => {
                                in_syms.swap_remove(p);
                            }
                            None => ok = false,
                        },
                    }
                }
                out[i] = Some(if ok && in_syms.is_empty() && out_known != 0 {
                    if in_known % out_known != 0 {
                        return Err(cx.err(format!(
                            "cannot reshape {} to {}",
                            fmt_d(&x.dims),
                            fmt_d(&entries)
                        )));
                    }
                    D::K(in_known / out_known)
                } else {
                    self.fresh()
                });
            }
        }
        let out: Vec<D> = out.into_iter().map(|d| d.unwrap_or(D::K(0))).collect();
        if let (Some(a), Some(b)) = (known_volume(&x.dims), known_volume(&out)) {
            if a != b {
                return Err(cx.err(format!(
                    "cannot reshape {} ({a} values) to {} ({b})",
                    fmt_d(&x.dims),
                    fmt_d(&out)
                )));
            }
        }
        let kind = LayerKind::Shuffle(ShuffleParams {
            reshape: Some(spec),
            zero_is_placeholder: !literal_zero,
            ..Default::default()
        });
        let name = self.out_name(cx, 0)?;
        let y = self.add(cx, None, kind, &[x.id], Out::Value(&name), out, x.dtype)?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn transpose(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["perm"])?;
        let xv = self.req(cx, 0, "data")?;
        let x = self.tensor(cx, &xv, None)?;
        let r = x.dims.len();
        let perm: Vec<i64> = match cx.n.attr_ints("perm") {
            Some(p) => p.to_vec(),
            None => (0..r as i64).rev().collect(),
        };
        let mut seen = vec![false; r];
        if perm.len() != r
            || !perm.iter().all(|&p| {
                (0..r as i64).contains(&p) && !std::mem::replace(&mut seen[p as usize], true)
            })
        {
            return Err(cx.err(format!("perm {perm:?} is not a permutation of {r} axes")));
        }
        let dims = perm.iter().map(|&p| x.dims[p as usize]).collect();
        let kind = LayerKind::Shuffle(ShuffleParams {
            first_transpose: Some(perm.iter().map(|&p| p as i32).collect()),
            zero_is_placeholder: true,
            ..Default::default()
        });
        let out = self.out_name(cx, 0)?;
        let y = self.add(cx, None, kind, &[x.id], Out::Value(&out), dims, x.dtype)?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn concat(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["axis"])?;
        let a =
            cx.n.attr_i("axis")
                .ok_or_else(|| cx.err("attribute axis is missing"))?;
        let mut ins = Vec::new();
        for i in 0..cx.n.inputs.len() {
            if let Some(v) = self.input(cx, i)? {
                ins.push(v);
            }
        }
        if ins.is_empty() {
            return Err(cx.err("has no inputs"));
        }
        if ins.iter().any(|(_, v)| matches!(v, Val::S { .. })) {
            // a shape computation: concatenate the (symbolic) values
            let mut dims = Vec::new();
            for (v, val) in &ins {
                let (d, scalar) = self.shape_like(val).ok_or_else(|| {
                    cx.err(format!(
                        "input '{}' cannot be concatenated with a shape",
                        self.g.name_of(*v)
                    ))
                })?;
                if scalar {
                    return Err(cx.err("Concat of scalars is invalid"));
                }
                dims.extend(d);
            }
            if norm_axis(a, 1) != Some(0) {
                return Err(cx.err(format!("axis {a} is invalid for 1-D shapes")));
            }
            self.set(
                cx,
                0,
                Val::S {
                    dims,
                    scalar: false,
                },
            );
            return Ok(());
        }
        let r = self.dims_of(&ins[0].1).len();
        let ax = norm_axis(a, r)
            .ok_or_else(|| cx.err(format!("axis {a} is out of range for rank {r}")))?;
        let mut ts = Vec::new();
        for v in &ins {
            let t = self.tensor(cx, v, None)?;
            if t.dims.len() != r {
                return Err(cx.err("inputs have different ranks"));
            }
            ts.push(t);
        }
        let mut dims = ts[0].dims.clone();
        let mut total = Some(0i64);
        for t in &ts {
            total = match (total, t.dims[ax]) {
                (Some(s), D::K(v)) => Some(s + v),
                _ => None,
            };
        }
        dims[ax] = match total {
            Some(t) => D::K(t),
            None => self.fresh(),
        };
        let ids: Vec<TensorId> = ts.iter().map(|t| t.id).collect();
        let out = self.out_name(cx, 0)?;
        let y = self.add(
            cx,
            None,
            LayerKind::Concatenation { axis: ax as i32 },
            &ids,
            Out::Value(&out),
            dims,
            ts[0].dtype,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn pad(&mut self, cx: &Cx) -> Result<()> {
        let n = cx.n;
        let mode = n.attr_s("mode").unwrap_or_else(|| "constant".into());
        let xv = self.req(cx, 0, "data")?;
        let r = self.dims_of(&xv.1).len();
        let (pads, value, axes) = if self.opset < 11 {
            cx.check_attrs(&["mode", "pads", "value"])?;
            let p = n
                .attr_ints("pads")
                .ok_or_else(|| cx.err("attribute pads is missing"))?
                .to_vec();
            (p, n.attr_f("value").unwrap_or(0.0), None)
        } else {
            cx.check_attrs(&["mode"])?;
            let p = self
                .const_ints(cx, 1, "pads")?
                .ok_or_else(|| cx.err("input 1 (pads) is missing"))?;
            let v = match self.const_floats(cx, 2, "constant_value")? {
                None => 0.0,
                Some((_, v)) if v.len() == 1 => v[0],
                Some((d, _)) => {
                    return Err(cx.err(format!(
                        "constant_value must be a scalar, has dims {}",
                        fmt_dims(&d)
                    )))
                }
            };
            (p, v, self.const_ints(cx, 3, "axes")?)
        };
        if mode != "constant" {
            return Err(cx.err(format!(
                "mode='{mode}' is not supported (only constant zero padding)"
            )));
        }
        if value != 0.0 {
            return Err(cx.err(format!(
                "padding value {value} is not supported: TensorRT's padding layer pads with zeros"
            )));
        }
        let axes: Vec<usize> = match axes {
            None => (0..r).collect(),
            Some(a) => a
                .iter()
                .map(|&x| {
                    norm_axis(x, r)
                        .ok_or_else(|| cx.err(format!("axis {x} is out of range for rank {r}")))
                })
                .collect::<Result<_>>()?,
        };
        if pads.len() != 2 * axes.len() {
            return Err(cx.err(format!("{} pads for {} axes", pads.len(), axes.len())));
        }
        let mut pre = vec![0i64; r];
        let mut post = vec![0i64; r];
        for (i, &ax) in axes.iter().enumerate() {
            pre[ax] = pads[i];
            post[ax] = pads[i + axes.len()];
        }
        let padded: Vec<usize> = (0..r).filter(|&i| pre[i] != 0 || post[i] != 0).collect();
        if padded.is_empty() {
            self.set(cx, 0, xv.1);
            return Ok(());
        }
        if r < 4 {
            return Err(cx.err(format!(
                "padding a rank-{r} tensor is not supported (TensorRT's padding layer needs 4-D or higher)"
            )));
        }
        let x = self.tensor(cx, &xv, None)?;
        let mut dims = x.dims.clone();
        for i in 0..r {
            if pre[i] != 0 || post[i] != 0 {
                dims[i] = match x.dims[i] {
                    D::K(d) => {
                        let o = d + pre[i] + post[i];
                        if o < 0 {
                            return Err(cx.err(format!(
                                "negative padding removes more than dimension {i} holds"
                            )));
                        }
                        D::K(o)
                    }
                    D::S(_) => self.fresh(),
                };
            }
        }
        let out_name = self.out_name(cx, 0)?;
        // TensorRT pads the last two dims: move the padded axes there (two at a time).
        let mut cur = x.clone();
        let chunks: Vec<Vec<usize>> = padded.chunks(2).map(|c| c.to_vec()).collect();
        let nchunks = chunks.len();
        for (ci, chunk) in chunks.into_iter().enumerate() {
            let last = ci + 1 == nchunks;
            let step = |s: &str| {
                if nchunks == 1 {
                    s.to_string()
                } else {
                    format!("{s}{ci}")
                }
            };
            let tail: Vec<usize> = match chunk.as_slice() {
                [a] if *a + 2 >= r => vec![r - 2, r - 1],
                [a] => vec![*a, r - 1],
                _ => chunk.clone(),
            };
            let mut perm: Vec<usize> = (0..r).filter(|a| !tail.contains(a)).collect();
            perm.extend(&tail);
            let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
            // dims in the original axis order once this chunk is padded
            let after: Vec<D> = (0..r)
                .map(|a| {
                    if chunk.contains(&a) {
                        dims[a]
                    } else {
                        cur.dims[a]
                    }
                })
                .collect();
            if !identity {
                let tdims: Vec<D> = perm.iter().map(|&p| cur.dims[p]).collect();
                let k = LayerKind::Shuffle(ShuffleParams {
                    first_transpose: Some(perm.iter().map(|&p| p as i32).collect()),
                    zero_is_placeholder: true,
                    ..Default::default()
                });
                let o = Out::Aux(format!("{out_name}/{}", step("to_last")));
                cur = self.add(
                    cx,
                    Some(&step("to_last")),
                    k,
                    &[cur.id],
                    o,
                    tdims,
                    cur.dtype,
                )?;
            }
            let side = |a: usize| {
                if chunk.contains(&a) {
                    (pre[a], post[a])
                } else {
                    (0, 0)
                }
            };
            let (p0, p1) = (side(tail[0]), side(tail[1]));
            let pdims: Vec<D> = perm.iter().map(|&p| after[p]).collect();
            let kind = LayerKind::Padding {
                pre: vec![p0.0, p1.0],
                post: vec![p0.1, p1.1],
            };
            let final_here = last && identity;
            let o = if final_here {
                Out::Value(&out_name)
            } else {
                Out::Aux(format!("{out_name}/{}", step("pad")))
            };
            let suffix = (!final_here).then(|| step("pad"));
            cur = self.add(cx, suffix.as_deref(), kind, &[cur.id], o, pdims, cur.dtype)?;
            if !identity {
                let mut inv = vec![0usize; r];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                let k = LayerKind::Shuffle(ShuffleParams {
                    first_transpose: Some(inv.iter().map(|&p| p as i32).collect()),
                    zero_is_placeholder: true,
                    ..Default::default()
                });
                let o = if last {
                    Out::Value(&out_name)
                } else {
                    Out::Aux(format!("{out_name}/{}", step("back")))
                };
                let suffix = (!last).then(|| step("back"));
                cur = self.add(cx, suffix.as_deref(), k, &[cur.id], o, after, cur.dtype)?;
            }
        }
        self.set(cx, 0, Val::T(cur));
        Ok(())
    }

    fn slice(&mut self, cx: &Cx) -> Result<()> {
        let n = cx.n;
        let xv = self.req(cx, 0, "data")?;
        let (starts, ends, axes, steps) = if self.opset < 10 {
            cx.check_attrs(&["starts", "ends", "axes"])?;
            let s = n
                .attr_ints("starts")
                .ok_or_else(|| cx.err("attribute starts is missing"))?
                .to_vec();
            let e = n
                .attr_ints("ends")
                .ok_or_else(|| cx.err("attribute ends is missing"))?
                .to_vec();
            (s, e, n.attr_ints("axes").map(|a| a.to_vec()), None)
        } else {
            cx.check_attrs(&[])?;
            let s = self
                .const_ints(cx, 1, "starts")?
                .ok_or_else(|| cx.err("input 1 (starts) is missing"))?;
            let e = self
                .const_ints(cx, 2, "ends")?
                .ok_or_else(|| cx.err("input 2 (ends) is missing"))?;
            (
                s,
                e,
                self.const_ints(cx, 3, "axes")?,
                self.const_ints(cx, 4, "steps")?,
            )
        };
        let in_dims = self.dims_of(&xv.1);
        let r = in_dims.len();
        let axes: Vec<usize> = match axes {
            None => (0..starts.len()).collect(),
            Some(a) => a
                .iter()
                .map(|&x| {
                    norm_axis(x, r)
                        .ok_or_else(|| cx.err(format!("axis {x} is out of range for rank {r}")))
                })
                .collect::<Result<_>>()?,
        };
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if starts.len() != axes.len()
            || ends.len() != axes.len()
            || steps.len() != axes.len()
            || axes.len() > r
        {
            return Err(cx.err("starts, ends, axes and steps must have the same length"));
        }
        let mut seen = vec![false; r];
        if axes.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
            return Err(cx.err("repeated axes"));
        }
        // per sliced axis: (start, size, step), ONNX clamping rules
        let mut spec = Vec::new();
        for (i, &ax) in axes.iter().enumerate() {
            let step = steps[i];
            if step == 0 {
                return Err(cx.err("step 0 is invalid"));
            }
            let D::K(d) = in_dims[ax] else {
                return Err(cx.err(format!(
                    "slicing axis {ax}, whose size is known only at run time (dims {}), is not supported",
                    fmt_d(&in_dims)
                )));
            };
            let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
            let (s, e) = (fix(starts[i]), fix(ends[i]));
            let (start, size) = if d == 0 {
                (0, 0)
            } else if step > 0 {
                let s = s.clamp(0, d);
                let e = e.clamp(0, d);
                (s, if e > s { (e - s - 1) / step + 1 } else { 0 })
            } else {
                let s = s.clamp(0, d - 1);
                let e = e.clamp(-1, d - 1);
                let back = step.checked_neg().unwrap_or(i64::MAX);
                (s, if s > e { (s - e - 1) / back + 1 } else { 0 })
            };
            spec.push((ax, start, size, step));
        }
        if let (
            Val::S {
                dims: sd,
                scalar: false,
            },
            Some(&(_, start, size, step)),
        ) = (&xv.1, spec.first())
        {
            // slicing a shape vector
            let mut out = Vec::new();
            for k in 0..size {
                out.push(sd[(start + k * step) as usize]);
            }
            self.set(
                cx,
                0,
                Val::S {
                    dims: out,
                    scalar: false,
                },
            );
            return Ok(());
        }
        let x = self.tensor(cx, &xv, None)?;
        let mut dims = x.dims.clone();
        for &(ax, _, size, _) in &spec {
            dims[ax] = D::K(size);
        }
        let all_known_elsewhere = (0..r).all(|a| axes.contains(&a) || matches!(x.dims[a], D::K(_)));
        let kind = if all_known_elsewhere {
            let mut start = vec![0i64; r];
            let mut size = trt_dims(&x.dims);
            let mut stride = vec![1i64; r];
            for &(ax, s, z, st) in &spec {
                start[ax] = s;
                size[ax] = z;
                stride[ax] = st;
            }
            LayerKind::Slice {
                start,
                size,
                stride,
                mode: SampleMode::StrictBounds,
                axes: None,
            }
        } else {
            let mut spec = spec.clone();
            spec.sort();
            LayerKind::Slice {
                start: spec.iter().map(|s| s.1).collect(),
                size: spec.iter().map(|s| s.2).collect(),
                stride: spec.iter().map(|s| s.3).collect(),
                mode: SampleMode::StrictBounds,
                axes: Some(spec.iter().map(|s| s.0 as i64).collect()),
            }
        };
        let out = self.out_name(cx, 0)?;
        let y = self.add(cx, None, kind, &[x.id], Out::Value(&out), dims, x.dtype)?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn softmax(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["axis"])?;
        let xv = self.req(cx, 0, "input")?;
        let r = self.dims_of(&xv.1).len();
        if r > 8 {
            return Err(cx.err(format!(
                "rank {r}: TensorRT tensors have at most 8 dimensions"
            )));
        }
        let default = if self.opset < 13 { 1 } else { -1 };
        let a = cx.n.attr_i("axis").unwrap_or(default);
        let ax = norm_axis(a, r)
            .ok_or_else(|| cx.err(format!("axis {a} is out of range for rank {r}")))?;
        if self.opset < 13 && ax + 1 != r {
            return Err(cx.err(format!(
                "before opset 13 Softmax normalizes over all axes from {ax} on (flattened); only the last axis is supported"
            )));
        }
        self.unary(cx, LayerKind::SoftMax { axes: 1 << ax })
    }

    fn cast(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["to", "saturate", "round_mode"])?;
        let to =
            cx.n.attr_i("to")
                .ok_or_else(|| cx.err("attribute to is missing"))? as i32;
        let xv = self.req(cx, 0, "input")?;
        if let Val::S { .. } = xv.1 {
            if matches!(to, 6 | 7) {
                self.set(cx, 0, xv.1);
                return Ok(());
            }
        }
        let dt = trt_dtype(to).ok_or_else(|| {
            cx.err(format!(
                "cast to {} is not supported",
                crate::ir::tensor::dtype_name(to)
            ))
        })?;
        let x = self.tensor(cx, &xv, None)?;
        if x.dtype == dt {
            self.set(cx, 0, Val::T(x));
            return Ok(());
        }
        let out = self.out_name(cx, 0)?;
        let dims = x.dims.clone();
        let y = self.add(
            cx,
            None,
            LayerKind::Cast { to_type: dt },
            &[x.id],
            Out::Value(&out),
            dims,
            dt,
        )?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }

    fn constant(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["value"])?;
        let t =
            cx.n.attr("value")
                .and_then(|a| a.t.clone())
                .ok_or_else(|| cx.err("only a tensor 'value' is supported"))?;
        let Some(Some(o)) = cx.n.outputs.first() else {
            return Ok(());
        };
        self.node_consts.insert(*o, IrTensor::new(t));
        self.vals.insert(*o, Val::C(*o));
        Ok(())
    }

    fn shape(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["start", "end"])?;
        let xv = self.req(cx, 0, "data")?;
        if let Val::S { .. } = xv.1 {
            return Err(cx.err("the shape of a shape is not supported"));
        }
        let d = self.dims_of(&xv.1);
        let r = d.len() as i64;
        let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let s = fix(cx.n.attr_i("start").unwrap_or(0));
        let e = fix(cx.n.attr_i("end").unwrap_or(r));
        let dims = if s < e { d[s..e].to_vec() } else { vec![] };
        self.set(
            cx,
            0,
            Val::S {
                dims,
                scalar: false,
            },
        );
        Ok(())
    }

    fn gather(&mut self, cx: &Cx) -> Result<()> {
        cx.check_attrs(&["axis"])?;
        let (dv, data) = self.req(cx, 0, "data")?;
        let Some((d, false)) = self
            .shape_like(&data)
            .filter(|_| matches!(data, Val::S { .. }))
        else {
            return Err(cx.err(format!(
                "Gather is supported on shapes only (Shape → Gather), and '{}' is not one",
                self.g.name_of(dv)
            )));
        };
        if cx.n.attr_i("axis").unwrap_or(0) != 0 {
            return Err(cx.err("axis must be 0 for a 1-D shape"));
        }
        let (_, iv) = self.req(cx, 1, "indices")?;
        let (idx, scalar) = self
            .shape_like(&iv)
            .and_then(|(i, s)| self.ints_of(&iv).map(|_| (i, s)))
            .ok_or_else(|| cx.err("the indices must be a constant"))?;
        let len = d.len() as i64;
        let mut out = Vec::new();
        for i in idx {
            let D::K(i) = i else {
                return Err(cx.err("the indices must be a constant"));
            };
            let j = if i < 0 { i + len } else { i };
            if !(0..len).contains(&j) {
                return Err(cx.err(format!(
                    "index {i} is out of range for a shape of {len} dims"
                )));
            }
            out.push(d[j as usize]);
        }
        self.set(cx, 0, Val::S { dims: out, scalar });
        Ok(())
    }

    fn squeeze(&mut self, cx: &Cx) -> Result<()> {
        let un = cx.n.op_type == "Unsqueeze";
        let axes = if self.opset < 13 {
            cx.check_attrs(&["axes"])?;
            cx.n.attr_ints("axes").map(|a| a.to_vec())
        } else {
            cx.check_attrs(&[])?;
            self.const_ints(cx, 1, "axes")?
        };
        let xv = self.req(cx, 0, "data")?;
        if let Val::S { dims, scalar } = &xv.1 {
            let ok = match (&axes, un, scalar) {
                (Some(a), true, true) => a.len() == 1 && norm_axis(a[0], 1) == Some(0),
                (a, false, false) => {
                    dims.len() == 1
                        && a.as_ref()
                            .is_none_or(|a| a.len() == 1 && norm_axis(a[0], 1) == Some(0))
                }
                _ => false,
            };
            if !ok {
                return Err(cx.err("only scalar <-> 1-element vector is supported for shapes"));
            }
            self.set(
                cx,
                0,
                Val::S {
                    dims: dims.clone(),
                    scalar: !*scalar,
                },
            );
            return Ok(());
        }
        let x = self.tensor(cx, &xv, None)?;
        let r = x.dims.len();
        let out: Vec<D> = if un {
            let axes = axes.ok_or_else(|| cx.err("axes are missing"))?;
            let orank = r + axes.len();
            let mut ax: Vec<usize> = axes
                .iter()
                .map(|&a| {
                    norm_axis(a, orank).ok_or_else(|| cx.err(format!("axis {a} is out of range")))
                })
                .collect::<Result<_>>()?;
            ax.sort();
            ax.dedup();
            if ax.len() != axes.len() {
                return Err(cx.err("repeated axes"));
            }
            let mut it = x.dims.iter();
            (0..orank)
                .map(|i| {
                    if ax.contains(&i) {
                        D::K(1)
                    } else {
                        *it.next().unwrap_or(&D::K(1))
                    }
                })
                .collect()
        } else {
            let ax: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&v| {
                        norm_axis(v, r).ok_or_else(|| cx.err(format!("axis {v} is out of range")))
                    })
                    .collect::<Result<_>>()?,
                None => {
                    if x.dims.iter().any(|d| matches!(d, D::S(_))) {
                        return Err(cx.err(
                            "Squeeze without axes needs every dimension known at build time",
                        ));
                    }
                    (0..r).filter(|&i| x.dims[i] == D::K(1)).collect()
                }
            };
            for &a in &ax {
                if x.dims[a] != D::K(1) {
                    return Err(cx.err(format!(
                        "axis {a} has size {}, not 1",
                        fmt_d(&x.dims[a..=a])
                    )));
                }
            }
            (0..r)
                .filter(|i| !ax.contains(i))
                .map(|i| x.dims[i])
                .collect()
        };
        let y = self.reshape_to(cx, &x, out)?;
        self.set(cx, 0, Val::T(y));
        Ok(())
    }
}

fn known_volume(d: &[D]) -> Option<i64> {
    d.iter().try_fold(1i64, |a, x| match x {
        D::K(v) => Some(a.saturating_mul(*v)),
        D::S(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_spec_placeholders_and_infer() {
        let n = D::S(1);
        assert_eq!(
            reshape_spec(&[n, D::K(64), D::K(1), D::K(1)], &[n, D::K(64)]),
            Ok((vec![0, 64], true))
        );
        assert_eq!(
            reshape_spec(&[n, D::K(4)], &[D::K(1), n, D::K(4)]),
            Ok((vec![1, -1, 4], true))
        );
        assert!(reshape_spec(&[n, D::S(2)], &[D::K(1), n, D::S(2)]).is_err());
        assert_eq!(
            reshape_spec(&[D::K(2)], &[D::K(0), D::K(2)]),
            Ok((vec![0, 2], false))
        );
        assert!(reshape_spec(&[n, D::K(0)], &[n, D::K(0)]).is_err());
    }

    #[test]
    fn window_and_broadcast() {
        assert_eq!(window_out(32, 3, 1, 1, 1, 1, false), 32);
        assert_eq!(window_out(32, 3, 2, 1, 1, 1, false), 16);
        assert_eq!(window_out(5, 2, 2, 1, 0, 0, false), 2);
        assert_eq!(window_out(5, 2, 2, 1, 0, 0, true), 3);
        assert_eq!(
            broadcast(&[D::K(1), D::K(3)], &[D::K(2), D::K(1)]),
            Ok(vec![D::K(2), D::K(3)])
        );
        assert!(broadcast(&[D::K(2)], &[D::K(3)]).is_err());
        assert_eq!(broadcast(&[D::S(4)], &[D::K(1)]), Ok(vec![D::S(4)]));
    }
}
