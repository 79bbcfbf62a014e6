//! `upgrade-opset`: rewrites a model of default-domain opset 7 to 12 into opset 13, keeping
//! its function exactly. The rest of the pipeline (per-channel Q/DQ, the TensorRT lowering)
//! assumes opset 13 semantics; exporters still write 9 to 12.
//!
//! What changed between opsets 7 and 13, per op (the ONNX operator changelog), and what the
//! pass does about it:
//! - Softmax, LogSoftmax, Hardmax (< 13): the input was coerced to 2-D at `axis` (default 1)
//!   and normalised over everything from `axis` on. When `axis` is the last dimension the
//!   new op with that axis is the same; otherwise Flatten(axis) → op(axis=-1) → Reshape to
//!   the input's shape.
//! - Squeeze, Unsqueeze, ReduceSum (< 13), Split (< 13, `split`): the attribute became an
//!   int64 input.
//! - Clip (< 11): `min`/`max` attributes became scalar inputs of the input's type.
//! - Pad (< 11): `pads` and `value` became inputs (`mode` stays an attribute).
//! - Slice (< 10): `starts`, `ends`, `axes` became int64 inputs.
//! - TopK (< 10): `k` became an int64 input of shape [1].
//! - Upsample (deprecated in 10) → Resize with `coordinate_transformation_mode=asymmetric`
//!   (Upsample's x_in = x_out / scale) and, for nearest, `nearest_mode=floor` (its truncation;
//!   scales below 1 are refused, Upsample's definition requires at least 1).
//! - Resize (10) → the same coordinates (`asymmetric`; nearest: `floor` when no scale is
//!   below 1, `ceil` when none is above 1), `roi` input left empty. Resize 11/12 is kept
//!   except `tf_half_pixel_for_nn`, which opset 13 removed (refused).
//! - BatchNormalization (< 9): `spatial` dropped (`spatial=0`, per-activation statistics,
//!   has no opset-13 form and is refused).
//! - Dropout (< 12): `ratio` became an input, `is_test` went away; a mask output that a node
//!   reads is refused before opset 10 (its type changed from T to bool).
//! - Scatter (9, 10) → ScatterElements (same semantics, deprecated name).
//! - Scan (< 9): refused (its batch axis semantics changed).
//! - Experimental ops removed in opset 10 (ImageScaler, Crop, ...): refused.
//! - Every other op's changes between 7 and 13 only added types, negative axes, optional
//!   inputs or attributes whose defaults keep the old behaviour (Gemm, Flatten, Cast,
//!   Concat, Constant, Gather, MaxPool, AveragePool, Reshape, Expand, comparisons, Mod,
//!   Sum/Max/Min/Mean, Where, ...): the node is kept as it is.
//! Nodes with sub-graphs (If/Loop/Scan) are kept when their sub-graphs need no rewrite, and
//! refused otherwise. Every node that cannot be upgraded is listed in one error (node and
//! reason). The default-domain opset import becomes 13, and the IR version at least 7.

use crate::ir::edit::node_label;
use crate::error::{Error, Result};
use crate::ir::{attr_int, attr_string, Graph, Model, NodeId, NodeSpec, Position, Tensor, ValueId};
use crate::pass::{OptionSpec, Pass, PassContext, PassOptions, PassReport, ReportItem};
use crate::proto::{AttributeProto, GraphProto};

pub const NAME: &str = "upgrade-opset";
pub const OPTIONS: &[OptionSpec] = &[];
/// The opset every model leaves this pass with (or the model's own when later).
pub const TARGET: i64 = 13;
/// The oldest default-domain opset the pass upgrades.
pub const OLDEST: i64 = 7;

pub struct UpgradeOpset;

impl UpgradeOpset {
    pub fn from_options(_o: &PassOptions) -> Result<Self> {
        Ok(UpgradeOpset)
    }
}

/// Experimental ops of early opsets that ONNX removed in opset 10.
const REMOVED_EXPERIMENTAL: &[&str] = &[
    "ATen",
    "Affine",
    "ConstantFill",
    "Crop",
    "DynamicSlice",
    "GRUUnit",
    "GivenTensorFill",
    "ImageScaler",
    "ParametricSoftplus",
    "Scale",
    "ScaledTanh",
];

/// True for ops whose node this pass rewrites when coming from `from` (used to decide
/// whether a sub-graph can stay as it is).
fn needs_rewrite(op: &str, from: i64) -> bool {
    match op {
        "Softmax" | "LogSoftmax" | "Hardmax" | "Squeeze" | "Unsqueeze" | "ReduceSum" | "Split" => from < 13,
        "Clip" | "Pad" => from < 11,
        "Slice" | "TopK" | "Upsample" | "Resize" => from < 13,
        "BatchNormalization" => from < 9,
        "Dropout" => from < 12,
        "Scatter" | "Scan" => true,
        _ => REMOVED_EXPERIMENTAL.contains(&op),
    }
}

fn is_default_domain(d: &str) -> bool {
    d.is_empty() || d == "ai.onnx"
}

/// An int64 tensor.
fn i64s(vals: &[i64], dims: &[i64]) -> Tensor {
    Tensor::from_i64("", dims, vals)
}

/// A scalar of element type `elem` (float, float16, double) holding `v`.
fn float_scalar(elem: i32, v: f32) -> Option<Tensor> {
    match elem {
        1 => Some(Tensor::from_f32("", &[], &[v])),
        10 => {
            let mut t = Tensor::from_f32("", &[], &[]);
            t.proto.data_type = Some(10);
            t.proto.raw_data = Some(f32_to_f16(v).to_le_bytes().to_vec().into());
            Some(t)
        }
        11 => {
            let mut t = Tensor::from_f32("", &[], &[]);
            t.proto.data_type = Some(11);
            t.proto.raw_data = Some((v as f64).to_le_bytes().to_vec().into());
            Some(t)
        }
        _ => None,
    }
}

/// IEEE half from f32, round to nearest even (the bounds written here are exact in f32).
fn f32_to_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// Types known after shape inference on a copy of the graph (the model itself keeps the
/// declarations it came with).
struct Probe {
    g: Graph,
}

impl Probe {
    fn new(m: &Model) -> Result<Probe> {
        let mut g = m.graph.clone();
        crate::ir::shape::infer(&mut g)?;
        Ok(Probe { g })
    }
    fn elem(&self, v: ValueId) -> i32 {
        self.g.value(v).and_then(|x| x.ty.as_ref()).map(|t| t.elem).unwrap_or(0)
    }
    fn rank(&self, v: ValueId) -> Option<usize> {
        self.g.value(v).and_then(|x| x.ty.as_ref()).and_then(|t| t.shape.as_ref()).map(|s| s.len())
    }
}

/// What happened to one node.
enum Outcome {
    Kept,
    Rewritten(String),
}

/// Why a node cannot be upgraded (collected, reported all at once).
struct Refusal(String);

type NodeResult = std::result::Result<Outcome, Refusal>;

fn refuse<T>(why: impl Into<String>) -> std::result::Result<T, Refusal> {
    Err(Refusal(why.into()))
}

/// Internal errors of the graph API become refusals naming the failure (they should not
/// happen on a verified graph).
fn api<T>(r: Result<T>) -> std::result::Result<T, Refusal> {
    r.map_err(|e| Refusal(format!("internal: {e}")))
}

fn input(g: &Graph, id: NodeId, slot: usize) -> Option<ValueId> {
    g.node(id).and_then(|n| n.inputs.get(slot).copied().flatten())
}

fn output(g: &Graph, id: NodeId, slot: usize) -> Option<ValueId> {
    g.node(id).and_then(|n| n.outputs.get(slot).copied().flatten())
}

/// Moves attribute `attr` (ints) of node `id` into input `slot` as an int64 tensor.
/// Returns the values moved, or None when the attribute is absent.
fn ints_attr_to_input(g: &mut Graph, id: NodeId, attr: &str, slot: usize, scalar_dims: Option<&[i64]>) -> std::result::Result<Option<Vec<i64>>, Refusal> {
    let Some(n) = g.node(id) else { return refuse("internal: stale node") };
    let Some(a) = n.attr(attr) else { return Ok(None) };
    let vals = if a.ints.is_empty() && a.i.is_some() { vec![a.i.unwrap_or(0)] } else { a.ints.clone() };
    let base = format!("{}_{attr}", if n.name.is_empty() { n.op_type.to_lowercase() } else { n.name.clone() });
    let dims = scalar_dims.map(|d| d.to_vec()).unwrap_or_else(|| vec![vals.len() as i64]);
    let c = g.add_fresh_initializer(&base, i64s(&vals, &dims));
    api(g.set_input(id, slot, Some(c)))?;
    if let Some(n) = g.node_mut(id) {
        n.remove_attr(attr);
    }
    Ok(Some(vals))
}

fn node_base(g: &Graph, id: NodeId) -> String {
    g.node(id).map(|n| if n.name.is_empty() { n.op_type.to_lowercase() } else { n.name.clone() }).unwrap_or_default()
}

/// Softmax, LogSoftmax, Hardmax before opset 13.
fn upgrade_softmax(g: &mut Graph, probe: &Probe, id: NodeId) -> NodeResult {
    let n = api(g.n(id))?.clone();
    let axis = n.attr_i("axis").unwrap_or(1);
    let Some(x) = input(g, id, 0) else { return refuse("no input") };
    let Some(y) = output(g, id, 0) else { return refuse("no output") };
    let rank = probe.rank(x);
    if let Some(r) = rank {
        let a = if axis < 0 { axis + r as i64 } else { axis };
        if a < 0 || a >= r as i64 {
            return refuse(format!("axis {axis} is out of range for a rank-{r} input"));
        }
        if a == r as i64 - 1 {
            if let Some(nm) = g.node_mut(id) {
                nm.set_attr(attr_int("axis", -1));
            }
            return Ok(Outcome::Rewritten(format!(
                "axis {axis} is the last of rank {r}: opset 13 {} over axis -1 is the same",
                n.op_type
            )));
        }
    } else if axis < 0 {
        return refuse(format!("axis {axis} with an input of unknown rank: cannot place the 2-D coercion"));
    }
    // Flatten(axis) -> op(axis=-1) -> Reshape(shape of x)
    let base = node_base(g, id);
    let shp = g.add_fresh_value(&format!("{base}/shape"));
    let flat = g.add_fresh_value(&format!("{base}/2d"));
    let soft = g.add_fresh_value(&format!("{base}/2d_out"));
    api(g.add_node(NodeSpec::new("Shape", &format!("{base}/shape"), vec![Some(x)], vec![Some(shp)]), Position::Before(id)))?;
    api(g.add_node(
        NodeSpec::new("Flatten", &format!("{base}/flatten"), vec![Some(x)], vec![Some(flat)]).attr(attr_int("axis", axis)),
        Position::Before(id),
    ))?;
    let mut spec = NodeSpec::new(&n.op_type, &n.name, vec![Some(flat)], vec![Some(soft)]);
    spec.domain = n.domain.clone();
    spec.attrs = n.attrs.iter().filter(|a| a.name() != "axis").cloned().collect();
    spec.attrs.push(attr_int("axis", -1));
    let new_id = api(g.add_node(spec, Position::Before(id)))?;
    if let Some(nm) = g.node_mut(new_id) {
        nm.rest = n.rest.clone();
    }
    api(g.remove_node(id))?;
    api(g.add_node(NodeSpec::new("Reshape", &format!("{base}/reshape"), vec![Some(soft), Some(shp)], vec![Some(y)]), Position::After(new_id)))?;
    Ok(Outcome::Rewritten(format!(
        "opset {} coerced the input to 2-D at axis {axis}: Flatten(axis={axis}) -> {}(axis=-1) -> Reshape to the input's shape",
        "< 13", n.op_type
    )))
}

/// Clip before opset 11.
fn upgrade_clip(g: &mut Graph, probe: &Probe, id: NodeId) -> NodeResult {
    let n = api(g.n(id))?.clone();
    let Some(x) = input(g, id, 0) else { return refuse("no input") };
    let (lo, hi) = (n.attr_f("min"), n.attr_f("max"));
    let elem = match probe.elem(x) {
        0 => 1,
        e => e,
    };
    let base = node_base(g, id);
    let mut did = Vec::new();
    for (slot, name, v) in [(1usize, "min", lo), (2, "max", hi)] {
        let Some(v) = v else { continue };
        let Some(t) = float_scalar(elem, v) else {
            return refuse(format!("input of type {} (Clip before opset 11 is for float types)", crate::ir::tensor::dtype_name(elem)));
        };
        let c = g.add_fresh_initializer(&format!("{base}_{name}"), t);
        api(g.set_input(id, slot, Some(c)))?;
        did.push(format!("{name}={v}"));
    }
    if let Some(nm) = g.node_mut(id) {
        nm.remove_attr("min");
        nm.remove_attr("max");
    }
    if did.is_empty() {
        return Ok(Outcome::Rewritten("no bounds: opset 13 Clip without bound inputs is the same".into()));
    }
    Ok(Outcome::Rewritten(format!("attributes {} became scalar inputs ({})", did.join(", "), crate::ir::tensor::dtype_name(elem))))
}

/// Pad before opset 11.
fn upgrade_pad(g: &mut Graph, probe: &Probe, id: NodeId) -> NodeResult {
    let n = api(g.n(id))?.clone();
    let Some(x) = input(g, id, 0) else { return refuse("no input") };
    let Some(pads) = n.attr_ints("pads").map(|p| p.to_vec()) else { return refuse("no 'pads' attribute") };
    let value = n.attr_f("value").unwrap_or(0.0);
    let mode = n.attr_s("mode").unwrap_or_else(|| "constant".into());
    if !matches!(mode.as_str(), "constant" | "reflect" | "edge") {
        return refuse(format!("unknown mode '{mode}'"));
    }
    let base = node_base(g, id);
    let c = g.add_fresh_initializer(&format!("{base}_pads"), i64s(&pads, &[pads.len() as i64]));
    api(g.set_input(id, 1, Some(c)))?;
    let mut what = format!("pads {pads:?} became an input");
    if value != 0.0 && mode == "constant" {
        let elem = match probe.elem(x) {
            0 => 1,
            e => e,
        };
        let Some(t) = float_scalar(elem, value) else {
            return refuse(format!("constant value {value} for an input of type {}", crate::ir::tensor::dtype_name(elem)));
        };
        let v = g.add_fresh_initializer(&format!("{base}_value"), t);
        api(g.set_input(id, 2, Some(v)))?;
        what.push_str(&format!(", value {value} too"));
    }
    if let Some(nm) = g.node_mut(id) {
        nm.remove_attr("pads");
        nm.remove_attr("value");
    }
    Ok(Outcome::Rewritten(format!("{what} (mode {mode})")))
}

/// Slice before opset 10.
fn upgrade_slice(g: &mut Graph, id: NodeId) -> NodeResult {
    let n = api(g.n(id))?.clone();
    if n.attr("starts").is_none() || n.attr("ends").is_none() {
        return refuse("no 'starts'/'ends' attributes");
    }
    let s = ints_attr_to_input(g, id, "starts", 1, None)?.unwrap_or_default();
    let e = ints_attr_to_input(g, id, "ends", 2, None)?.unwrap_or_default();
    let a = ints_attr_to_input(g, id, "axes", 3, None)?;
    Ok(Outcome::Rewritten(format!(
        "starts {s:?}, ends {e:?}{} became inputs",
        a.map(|a| format!(", axes {a:?}")).unwrap_or_default()
    )))
}

/// Upsample (7 to 9) or Resize 10.
fn upgrade_upsample(g: &mut Graph, id: NodeId, from: i64) -> NodeResult {
    let n = api(g.n(id))?.clone();
    let upsample = n.op_type == "Upsample";
    let mode = n.attr_s("mode").unwrap_or_else(|| "nearest".into());
    if !matches!(mode.as_str(), "nearest" | "linear") {
        return refuse(format!("unknown mode '{mode}'"));
    }
    let Some(x) = input(g, id, 0) else { return refuse("no input") };
    let Some(y) = output(g, id, 0) else { return refuse("no output") };
    // the scales: an attribute (Upsample 7, 8) or input 1
    let base = node_base(g, id);
    let (scales_v, scales) = if upsample && from < 9 {
        let Some(a) = n.attr("scales") else { return refuse("no 'scales' attribute") };
        let s = a.floats.clone();
        (g.add_fresh_initializer(&format!("{base}_scales"), Tensor::from_f32("", &[s.len() as i64], &s)), Some(s))
    } else {
        let Some(s) = input(g, id, 1) else { return refuse("no scales input") };
        (s, g.constant_value(s).and_then(|t| t.to_f32().ok()))
    };
    if let Some(s) = &scales {
        if s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return refuse(format!("scales {s:?}: every scale must be positive"));
        }
    }
    let nearest_mode = if mode == "nearest" {
        match &scales {
            Some(s) if upsample && s.iter().any(|v| *v < 1.0) => {
                return refuse(format!("scales {s:?} below 1: Upsample is defined for scales of at least 1"))
            }
            Some(s) if s.iter().all(|v| *v >= 1.0) => Some("floor"),
            Some(s) if s.iter().all(|v| *v <= 1.0) => Some("ceil"),
            Some(s) => return refuse(format!("scales {s:?} mix up- and downsampling: Resize-10's nearest rounding differs per axis")),
            None if upsample => Some("floor"),
            None => return refuse("nearest with scales that are not constant: the rounding (floor when upsampling, ceil when downsampling) cannot be chosen"),
        }
    } else {
        None
    };
    let mut spec = NodeSpec::new("Resize", &n.name, vec![Some(x), None, Some(scales_v)], vec![Some(y)]);
    spec.attrs.push(attr_string("mode", &mode));
    spec.attrs.push(attr_string("coordinate_transformation_mode", "asymmetric"));
    if let Some(nm) = nearest_mode {
        spec.attrs.push(attr_string("nearest_mode", nm));
    }
    api(replace_node(g, id, spec))?;
    Ok(Outcome::Rewritten(format!(
        "{} {mode} -> Resize {mode}, coordinate_transformation_mode=asymmetric{}{}",
        if upsample { "Upsample" } else { "Resize-10" },
        nearest_mode.map(|m| format!(", nearest_mode={m}")).unwrap_or_default(),
        scales.map(|s| format!(", scales {s:?}")).unwrap_or_default()
    )))
}

/// Puts a node built from `spec` in the place of node `id` (same position, its outputs and
/// the old node's other proto fields).
fn replace_node(g: &mut Graph, id: NodeId, mut spec: NodeSpec) -> Result<NodeId> {
    let outputs = std::mem::take(&mut spec.outputs);
    let new_id = g.add_node(spec, Position::Before(id))?;
    let old = g.remove_node(id)?;
    for (slot, o) in outputs.iter().enumerate() {
        if let Some(o) = o {
            if let Some(v) = g.value_mut(*o) {
                v.producer = crate::ir::Producer::Node(new_id, slot);
            }
        }
    }
    if let Some(nm) = g.node_mut(new_id) {
        nm.outputs = outputs;
        nm.rest = old.rest;
    }
    Ok(new_id)
}

fn value_used(g: &Graph, v: Option<ValueId>) -> bool {
    v.and_then(|v| g.value(v)).map(|x| !x.uses.is_empty()).unwrap_or(false) || v.map(|v| g.is_graph_output(v)).unwrap_or(false)
}

fn subgraphs(a: &AttributeProto) -> Vec<&GraphProto> {
    a.g.iter().chain(a.graphs.iter()).collect()
}

/// Ops in a sub-graph (recursively) that would need a rewrite.
fn subgraph_rewrites(gp: &GraphProto, from: i64, out: &mut Vec<String>) {
    for n in &gp.node {
        let op = n.op_type();
        if is_default_domain(n.domain()) && needs_rewrite(op, from) {
            out.push(format!("{} ({op})", n.name()));
        }
        for a in &n.attribute {
            for sg in subgraphs(a) {
                subgraph_rewrites(sg, from, out);
            }
        }
    }
}

fn upgrade_node(g: &mut Graph, probe: &Probe, id: NodeId, from: i64) -> NodeResult {
    let n = api(g.n(id))?.clone();
    if !is_default_domain(&n.domain) {
        return Ok(Outcome::Kept);
    }
    let op = n.op_type.as_str();
    // sub-graphs are not rewritten: they must not need it
    let mut inner = Vec::new();
    for a in &n.attrs {
        for sg in subgraphs(a) {
            subgraph_rewrites(sg, from, &mut inner);
        }
    }
    if !inner.is_empty() {
        return refuse(format!("its sub-graph holds nodes that need an opset rewrite: {}", inner.join(", ")));
    }
    if REMOVED_EXPERIMENTAL.contains(&op) {
        return refuse(format!("{op} is an experimental op that ONNX removed in opset 10"));
    }
    match op {
        "Softmax" | "LogSoftmax" | "Hardmax" if from < 13 => upgrade_softmax(g, probe, id),
        "Squeeze" | "Unsqueeze" | "ReduceSum" if from < 13 => match ints_attr_to_input(g, id, "axes", 1, None)? {
            Some(a) => Ok(Outcome::Rewritten(format!("axes {a:?} became an input"))),
            None if op == "Unsqueeze" => refuse("no 'axes' attribute"),
            None => Ok(Outcome::Kept),
        },
        "Split" if from < 13 => match ints_attr_to_input(g, id, "split", 1, None)? {
            Some(s) => Ok(Outcome::Rewritten(format!("split {s:?} became an input"))),
            None => Ok(Outcome::Kept),
        },
        "Clip" if from < 11 => upgrade_clip(g, probe, id),
        "Pad" if from < 11 => upgrade_pad(g, probe, id),
        "Slice" if from < 10 => upgrade_slice(g, id),
        "TopK" if from < 10 => {
            let Some(k) = n.attr_i("k") else { return refuse("no 'k' attribute") };
            ints_attr_to_input(g, id, "k", 1, Some(&[1]))?;
            Ok(Outcome::Rewritten(format!("k {k} became an input")))
        }
        "Upsample" => upgrade_upsample(g, id, from),
        "Resize" if from < 11 => upgrade_upsample(g, id, from),
        "Resize" => {
            let ctm = n.attr_s("coordinate_transformation_mode").unwrap_or_default();
            if ctm == "tf_half_pixel_for_nn" {
                return refuse("coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed in opset 13 and has no equivalent");
            }
            Ok(Outcome::Kept)
        }
        "BatchNormalization" if from < 9 => {
            let spatial = n.attr_i("spatial").unwrap_or(1);
            if spatial == 0 {
                return refuse("spatial=0 (per-activation statistics) has no opset-13 form");
            }
            if n.attr("spatial").is_none() {
                return Ok(Outcome::Kept);
            }
            if let Some(nm) = g.node_mut(id) {
                nm.remove_attr("spatial");
            }
            Ok(Outcome::Rewritten("attribute spatial=1 dropped (the only behaviour from opset 9)".into()))
        }
        "Dropout" if from < 12 => {
            let mask = n.outputs.get(1).copied().flatten();
            if from < 10 && value_used(g, mask) {
                return refuse("its mask output is used, and the mask's type changed from the input's to bool in opset 10");
            }
            let ratio = n.attr_f("ratio");
            if let Some(nm) = g.node_mut(id) {
                nm.remove_attr("ratio");
                nm.remove_attr("is_test");
                nm.remove_attr("seed");
            }
            if let (Some(mv), true) = (mask, from < 10) {
                // unused: drop it rather than leave a declaration of the old type
                api(g.remove_value(mv))?;
                if let Some(nm) = g.node_mut(id) {
                    nm.outputs.truncate(1);
                }
            }
            match ratio {
                Some(r) => {
                    let base = node_base(g, id);
                    let c = g.add_fresh_initializer(&format!("{base}_ratio"), Tensor::from_f32("", &[], &[r]));
                    api(g.set_input(id, 1, Some(c)))?;
                    Ok(Outcome::Rewritten(format!("ratio {r} became an input (inference: the identity)")))
                }
                None => Ok(Outcome::Rewritten("inference-mode Dropout (the identity) in opset 13 form".into())),
            }
        }
        "Scatter" => {
            if let Some(nm) = g.node_mut(id) {
                nm.op_type = "ScatterElements".into();
            }
            Ok(Outcome::Rewritten("Scatter (deprecated in 11) is ScatterElements".into()))
        }
        "Scan" if from < 9 => refuse("Scan before opset 9 had a batch axis; no rewrite is implemented"),
        _ => Ok(Outcome::Kept),
    }
}

/// The default-domain opset of a model and whether the pass would change it.
pub fn needs_upgrade(m: &Model) -> bool {
    m.opset() < TARGET
}

impl Pass for UpgradeOpset {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        let from = m.opset();
        if from >= TARGET {
            rep.summary = format!("opset {from}: nothing to do");
            return Ok(rep);
        }
        if from < OLDEST {
            return Err(Error::user(format!(
                "the model imports default-domain opset {from}; upgrade-opset handles {OLDEST} to 12 (convert it with onnx.version_converter first)"
            )));
        }
        let probe = Probe::new(m)?;
        let mut refused: Vec<(String, String, String)> = Vec::new();
        let mut kept = 0usize;
        for id in m.graph.topo_order()? {
            let label = node_label(&m.graph, id);
            let op = m.graph.n(id)?.op_type.clone();
            match upgrade_node(&mut m.graph, &probe, id, from) {
                Ok(Outcome::Kept) => kept += 1,
                Ok(Outcome::Rewritten(what)) => rep.item(ReportItem::new(&label, &op, "rewritten", what)),
                Err(Refusal(why)) => refused.push((label, op, why)),
            }
        }
        if !refused.is_empty() {
            let lines: Vec<String> = refused.iter().map(|(l, op, why)| format!("  node '{l}' ({op}): {why}")).collect();
            return Err(Error::user(format!(
                "cannot upgrade this opset-{from} model to opset {TARGET}: {} node(s) have no exact rewrite:\n{}",
                refused.len(),
                lines.join("\n")
            )));
        }
        for o in m.rest.opset_import.iter_mut() {
            if is_default_domain(o.domain()) {
                o.version = Some(TARGET);
            }
        }
        if m.rest.ir_version.unwrap_or(0) < 7 {
            m.rest.ir_version = Some(7);
        }
        rep.changed = true;
        rep.stat("from", from);
        rep.stat("to", TARGET);
        rep.summary = format!("opset {from} -> {TARGET}: {} node(s) rewritten, {kept} unchanged", rep.count("rewritten"));
        Ok(rep)
    }
}
