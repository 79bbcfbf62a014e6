//! `check-qdq`: a model that arrives with its own Q/DQ nodes (QAT from pytorch-quantization,
//! ModelOpt, or a torch export of fake quantization) is checked against TensorRT's
//! explicit-quantization placement rules instead of being calibrated and quantized again.
//!
//! The rules are the ones `insert-qdq` follows, from `src/qdq.rs` (`is_weighted`,
//! `weight_axis`, `residual_skip_input`, `layer_violations`):
//! - a weighted op (Conv, ConvTranspose, Gemm, MatMul) that is quantized at all has both its
//!   data input and its weight from a DequantizeLinear (rule 1); a layer without any Q/DQ is
//!   a float layer, which is allowed;
//! - zero points are int8 and 0; activations have one scale; a per-channel weight scale runs
//!   along the weight's output-channel axis and has its length;
//! - the skip input of a residual Add whose fused conv is quantized is quantized too (rule 4).
//!
//! Every violation is a report item (`violation`, the node and what is wrong). The scales,
//! zero points and weights of the model are never recomputed. `fix=` decides what is changed:
//! - `none` (default): nothing; the report lists the violations;
//! - `insert`: adds only Q/DQ whose numbers are already determined: an activation that has a
//!   Q → DQ pair elsewhere in the model (another consumer, e.g. the identity branch of a
//!   residual block reads the tensor the block's first conv quantizes) reuses that pair; one
//!   reached from a DequantizeLinear through ops that commute with quantization (Relu,
//!   MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Identity) gets that scale
//!   (what TensorRT does when it moves Q/DQ, rule 5); an unquantized float weight of a
//!   quantized layer gets per-channel max|w|/127 (as `insert-qdq`). Anything else stays a
//!   violation;
//! - `remove`: a layer whose Q/DQ break the rules becomes a float layer: its data input reads
//!   the tensor before its Q → DQ, and its weight becomes the dequantized constant (so the
//!   weight values it computes with do not change; the activation rounding is gone).
//!
//! Layers matching `exclude` are made float the same way (the user asked for them in float).
//! `weights=int8` stores each float weight behind Q → DQ as the INT8 initializer that Q
//! computes (same scales, same dequantized values, about 4x smaller file).
//! Each layer's report item says whether it came in quantized and whether its weight is
//! already 2:4 along TensorRT's axis.

use crate::inspect::weight_is_2of4;
use crate::ir::edit::node_label;
use crate::qdq::{add_qdq_pair, from_dq, insert_weight_qdq, is_quantized_layer, is_weighted, layer_violations, residual_skip_input};
use crate::error::{Error, Result};
use crate::ir::{Graph, Model, NodeId, Position, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, Pattern, ReportItem, KEEP_FLOAT};

pub const NAME: &str = "check-qdq";
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("fix", OptionKind::Str, "none", "none: report violations; insert: add Q/DQ whose scale is known (reused pair, scale through Relu/MaxPool/reshapes, weight max|w|/127); remove: make offending layers float"),
    OptionSpec::new("exclude", OptionKind::Str, "", "layers made float: name globs or op:Type, separated by |"),
    OptionSpec::new("weights", OptionKind::Str, "qdq", "qdq: keep weights as given; int8: store float weights behind Q->DQ as the INT8 initializers Q computes"),
    OptionSpec::new("strict", OptionKind::Bool, "false", "fail when a violation remains"),
];

/// The residual Adds whose skip input should be quantized and is not: (add, skip slot).
/// Only Adds whose fused input comes from a quantized layer count.
fn residual_violations(g: &Graph) -> Result<Vec<(NodeId, usize)>> {
    let mut out = Vec::new();
    for id in g.topo_order()? {
        let Some(slot) = residual_skip_input(g, id) else { continue };
        let fused = g.n(id)?.inputs.get(1 - slot).copied().flatten();
        let quantized = fused.and_then(|v| g.producer_node(v)).map(|(p, _)| is_quantized_layer(g, p)).unwrap_or(false);
        if quantized {
            out.push((id, slot));
        }
    }
    Ok(out)
}

/// The constant data behind a DequantizeLinear input chain, dequantized: `(scale, zero
/// point, axis)` of the DQ applied to an INT8 constant, or to Q of a float constant (the
/// values the layer computes with). None when an input is not constant.
fn dequantized_constant(g: &Graph, dq: NodeId) -> Result<Option<(Vec<f32>, Vec<i64>)>> {
    let n = g.n(dq)?;
    let (Some(x), Some(s)) = (n.inputs.first().copied().flatten(), n.inputs.get(1).copied().flatten()) else { return Ok(None) };
    let Some(scale) = g.constant_value(s) else { return Ok(None) };
    let zp = match n.inputs.get(2).copied().flatten() {
        Some(z) => match g.constant_value(z) {
            Some(t) => Some(t),
            None => return Ok(None),
        },
        None => None,
    };
    let scale = scale.to_f32()?;
    let zp: Vec<f32> = match &zp {
        Some(t) => t.to_f32()?,
        None => vec![0.0],
    };
    // the INT8 values: a constant, or Q of a float constant with the same parameters
    let (q, dims): (Vec<f32>, Vec<i64>) = if let Some(t) = g.constant_value(x) {
        (t.to_f32()?, t.dims().to_vec())
    } else if let Some((qid, qn)) = g.producer_node(x).filter(|(_, p)| p.op_type == "QuantizeLinear") {
        let Some(w) = qn.inputs.first().copied().flatten().and_then(|w| g.constant_value(w)) else { return Ok(None) };
        let dims = w.dims().to_vec();
        match quantize_constant(g, qid)? {
            Some(q) => (q.iter().map(|v| *v as f32).collect(), dims),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let pick = channel_picker(&dims, n.attr_i("axis"), scale.len(), &n.name)?;
    let vals = q.iter().enumerate().map(|(i, v)| (v - pick(&zp, i)) * pick(&scale, i)).collect();
    Ok(Some((vals, dims)))
}

/// Index → per-channel parameter for a tensor of `dims` with parameters along `axis`
/// (one parameter: per tensor).
fn channel_picker(dims: &[i64], axis: Option<i64>, len: usize, node: &str) -> Result<impl Fn(&[f32], usize) -> f32> {
    let rank = dims.len() as i64;
    let (c, inner) = if len <= 1 {
        (1usize, 1usize)
    } else {
        let ax = axis.unwrap_or(1);
        let ax = if ax < 0 { ax + rank } else { ax };
        if ax < 0 || ax >= rank || dims[ax as usize] as usize != len {
            return Err(Error::user(format!("'{node}': {len} per-channel parameters do not match axis {ax} of a {dims:?} tensor")));
        }
        (len, dims[ax as usize + 1..].iter().map(|&d| d.max(0) as usize).product())
    };
    Ok(move |p: &[f32], i: usize| if c == 1 { p.first().copied().unwrap_or(0.0) } else { p.get((i / inner.max(1)) % c).copied().unwrap_or(0.0) })
}

/// What QuantizeLinear `q` computes from its constant float input: round half to even,
/// plus the zero point, saturated to int8. None when an input is not constant or the
/// output is not int8.
fn quantize_constant(g: &Graph, q: NodeId) -> Result<Option<Vec<i8>>> {
    let n = g.n(q)?;
    let (Some(w), Some(s)) = (n.inputs.first().copied().flatten(), n.inputs.get(1).copied().flatten()) else { return Ok(None) };
    let (Some(w), Some(s)) = (g.constant_value(w), g.constant_value(s)) else { return Ok(None) };
    let zp = match n.inputs.get(2).copied().flatten() {
        Some(z) => match g.constant_value(z) {
            Some(t) if t.dtype() == 3 => t.to_f32()?,
            _ => return Ok(None),
        },
        None => return Ok(None),
    };
    let scale = s.to_f32()?;
    let data = w.to_f32()?;
    let pick = channel_picker(w.dims(), n.attr_i("axis"), scale.len(), &n.name)?;
    Ok(Some(data.iter().enumerate().map(|(i, v)| ((v / pick(&scale, i)).round_ties_even() + pick(&zp, i)).clamp(-128.0, 127.0) as i8).collect()))
}

/// Ops through which a quantization scale carries unchanged (TensorRT moves Q/DQ across them).
fn commutes_with_quantization(op: &str) -> bool {
    matches!(op, "Relu" | "MaxPool" | "Reshape" | "Flatten" | "Transpose" | "Squeeze" | "Unsqueeze" | "Identity")
}

/// The DQ output to read instead of `v` (an existing pair on the same tensor), or the
/// per-tensor scale and zero point to quantize `v` with (found through ops that commute).
enum Source {
    Reuse(ValueId),
    Scale(ValueId, ValueId),
}

fn find_quantization(g: &Graph, v: ValueId) -> Option<Source> {
    // another consumer quantizes this very tensor: Q(v) -> DQ, per tensor
    for u in &g.value(v)?.uses {
        let Some(q) = g.node(u.node) else { continue };
        if q.op_type != "QuantizeLinear" || u.slot != 0 {
            continue;
        }
        let Some(qo) = q.outputs.first().copied().flatten() else { continue };
        for du in &g.value(qo)?.uses {
            let Some(d) = g.node(du.node) else { continue };
            let per_tensor = d.inputs.get(1).copied().flatten().and_then(|s| g.constant_value(s)).and_then(|s| s.numel().ok()) == Some(1);
            if d.op_type == "DequantizeLinear" && per_tensor {
                if let Some(o) = d.outputs.first().copied().flatten() {
                    return Some(Source::Reuse(o));
                }
            }
        }
    }
    // back through ops that commute with quantization to a DequantizeLinear
    let mut cur = v;
    for _ in 0..8 {
        let (_, p) = g.producer_node(cur)?;
        if p.op_type == "DequantizeLinear" {
            let s = p.inputs.get(1).copied().flatten()?;
            let z = p.inputs.get(2).copied().flatten()?;
            let st = g.constant_value(s)?;
            return (st.numel().ok()? == 1 && cur != v).then_some(Source::Scale(s, z));
        }
        if !commutes_with_quantization(&p.op_type) {
            return None;
        }
        cur = p.inputs.first().copied().flatten()?;
    }
    None
}

/// Makes input `slot` of `node` read a quantized `v`; true when it did.
fn quantize_input(g: &mut Graph, node: NodeId, slot: usize, v: ValueId) -> Result<bool> {
    match find_quantization(g, v) {
        Some(Source::Reuse(d)) => {
            g.set_input(node, slot, Some(d))?;
            Ok(true)
        }
        Some(Source::Scale(s, z)) => {
            let d = add_qdq_pair(g, v, s, z, Position::Before(node))?;
            g.set_input(node, slot, Some(d))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Removes `v`'s producer chain of Q/DQ nodes (and their constants) once nothing uses it.
fn drop_dead_chain(g: &mut Graph, v: ValueId) -> Result<()> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if g.value(v).is_none() || !g.is_dead(v) || g.inputs.contains(&v) {
            continue;
        }
        match g.value(v).map(|x| x.producer) {
            Some(crate::ir::Producer::Node(p, _)) => {
                let Some(n) = g.node(p) else { continue };
                if !matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear" | "Constant") || n.outputs.len() != 1 {
                    continue;
                }
                let removed = g.remove_node(p)?;
                g.remove_value(v)?;
                stack.extend(removed.inputs.iter().flatten().copied());
            }
            Some(crate::ir::Producer::Initializer) => g.remove_value(v)?,
            _ => {}
        }
    }
    Ok(())
}

/// Makes a weighted layer float: the data input reads the tensor before its Q → DQ, the
/// weight becomes its dequantized constant. Returns what was done, or why not.
fn make_float(g: &mut Graph, id: NodeId) -> Result<std::result::Result<String, String>> {
    let n = g.n(id)?.clone();
    let x = n.inputs.first().copied().flatten();
    let w = n.inputs.get(1).copied().flatten();
    // weight first: it must be constant to be folded
    let mut new_w = None;
    if let Some(wv) = w {
        if let Some((dq, _)) = g.producer_node(wv).filter(|(_, p)| p.op_type == "DequantizeLinear") {
            match dequantized_constant(g, dq)? {
                Some((vals, dims)) => new_w = Some((wv, Tensor::from_f32("", &dims, &vals))),
                None => return Ok(Err("its weight's Q/DQ does not have constant inputs".into())),
            }
        }
    }
    if let Some(xv) = x {
        if let Some((_, dq)) = g.producer_node(xv).filter(|(_, p)| p.op_type == "DequantizeLinear") {
            let q_in = dq.inputs.first().copied().flatten();
            let src = q_in.and_then(|qv| g.producer_node(qv)).filter(|(_, p)| p.op_type == "QuantizeLinear").and_then(|(_, q)| q.inputs.first().copied().flatten());
            match src {
                Some(f) => {
                    g.set_input(id, 0, Some(f))?;
                    drop_dead_chain(g, xv)?;
                }
                None => return Ok(Err("its data input's DequantizeLinear does not follow a QuantizeLinear".into())),
            }
        }
    }
    if let Some((wv, t)) = new_w {
        let base = format!("{}_float", g.name_of(wv));
        let nv = g.add_fresh_initializer(&base, t);
        g.set_input(id, 1, Some(nv))?;
        drop_dead_chain(g, wv)?;
    }
    Ok(Ok("made float: data input reads the tensor before its Q/DQ, weight is the dequantized constant".into()))
}

/// Replaces every weight Q(float constant) → DQ by an INT8 constant → DQ; returns how many.
fn store_int8_weights(g: &mut Graph) -> Result<usize> {
    let mut n_done = 0;
    for id in g.topo_order()? {
        let Some(n) = g.node(id) else { continue };
        if !is_weighted(&n.op_type) {
            continue;
        }
        let Some(wv) = n.inputs.get(1).copied().flatten() else { continue };
        let Some((dq, dqn)) = g.producer_node(wv).filter(|(_, p)| p.op_type == "DequantizeLinear") else { continue };
        let Some(qv) = dqn.inputs.first().copied().flatten() else { continue };
        let Some((qid, qn)) = g.producer_node(qv).filter(|(_, p)| p.op_type == "QuantizeLinear") else { continue };
        // the DQ must undo exactly this Q (same scale and zero point tensors)
        if qn.inputs.get(1) != dqn.inputs.get(1) || qn.inputs.get(2) != dqn.inputs.get(2) || qn.attr_i("axis") != dqn.attr_i("axis") {
            continue;
        }
        let Some(w) = qn.inputs.first().copied().flatten() else { continue };
        let Some(dims) = g.constant_value(w).map(|t| t.dims().to_vec()) else { continue };
        let Some(q) = quantize_constant(g, qid)? else { continue };
        let base = format!("{}_int8", g.name_of(w));
        let nv = g.add_fresh_initializer(&base, Tensor::from_i8("", &dims, &q));
        g.set_input(dq, 0, Some(nv))?;
        drop_dead_chain(g, qv)?;
        n_done += 1;
    }
    Ok(n_done)
}

pub struct CheckQdq {
    fix: Fix,
    exclude: Pattern,
    int8_weights: bool,
    strict: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fix {
    None,
    Insert,
    Remove,
}

impl CheckQdq {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        let fix = match o.str("fix").unwrap_or("none") {
            "none" | "" => Fix::None,
            "insert" => Fix::Insert,
            "remove" => Fix::Remove,
            f => return Err(Error::usage(format!("check-qdq: fix must be none, insert or remove, not '{f}'"))),
        };
        let int8_weights = match o.str("weights").unwrap_or("qdq") {
            "qdq" => false,
            "int8" => true,
            w => return Err(Error::usage(format!("check-qdq: weights must be qdq or int8, not '{w}'"))),
        };
        Ok(CheckQdq { fix, exclude: Pattern::parse(o.str("exclude").unwrap_or("")), int8_weights, strict: o.bool("strict", false)? })
    }
}

impl Pass for CheckQdq {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        let g = &mut m.graph;
        let (mut quantized, mut float, mut sparse, mut violations, mut fixed, mut made_float) = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
        let mut sparse_layers = Vec::new();
        let mut quant_layers = Vec::new();
        for id in g.topo_order()? {
            let Some(n) = g.node(id).cloned() else { continue };
            if !is_weighted(&n.op_type) || !n.domain.is_empty() {
                continue;
            }
            let label = node_label(g, id);
            let was_quantized = is_quantized_layer(g, id);
            let is_sparse = weight_is_2of4(g, id)?;
            let mut item = ReportItem::new(&label, &n.op_type, "", "").with("quantized", was_quantized);
            if let Some(s) = is_sparse {
                item = item.with("sparse_2of4", s);
            }
            if is_sparse == Some(true) {
                sparse += 1;
                sparse_layers.push(label.clone());
            }
            if was_quantized {
                quant_layers.push(label.clone());
            }
            if self.exclude.matches_any(&label, &n.op_type) || n.annotation(KEEP_FLOAT) == Some("true") {
                let (action, why) = if !was_quantized {
                    ("float", "excluded; no Q/DQ in the input".to_string())
                } else {
                    match make_float(g, id)? {
                        Ok(w) => {
                            made_float += 1;
                            ("made-float", format!("excluded: {w}"))
                        }
                        Err(why) => {
                            violations += 1;
                            ("violation", format!("excluded, but cannot be made float: {why}"))
                        }
                    }
                };
                item.action = action.into();
                item.reason = why;
                float += 1;
                rep.item(item);
                continue;
            }
            if !was_quantized {
                item.action = "float".into();
                item.reason = "no Q/DQ on its inputs: TensorRT runs it in float".into();
                float += 1;
                rep.item(item);
                continue;
            }
            let mut msgs = layer_violations(g, id)?;
            if !msgs.is_empty() && self.fix == Fix::Insert {
                // a quantized layer with an unquantized input: add what is determined
                let (x, w) = (n.inputs.first().copied().flatten(), n.inputs.get(1).copied().flatten());
                let mut changed = false;
                if let Some(x) = x.filter(|x| !from_dq(g, Some(*x))) {
                    changed |= quantize_input(g, id, 0, x)?;
                }
                if let Some(w) = w.filter(|w| !from_dq(g, Some(*w))) {
                    if let Some(t) = g.constant_value(w).filter(|t| t.dtype() == 1) {
                        insert_weight_qdq(g, id, w, &t, false, true, &label)?;
                        changed = true;
                    } else {
                        changed |= quantize_input(g, id, 1, w)?;
                    }
                }
                if changed {
                    let left = layer_violations(g, id)?;
                    if left.len() < msgs.len() {
                        fixed += msgs.len() - left.len();
                        item = item.with("fixed", msgs.iter().filter(|m| !left.contains(m)).cloned().collect::<Vec<_>>());
                    }
                    msgs = left;
                }
            }
            if !msgs.is_empty() && self.fix == Fix::Remove {
                match make_float(g, id)? {
                    Ok(w) => {
                        made_float += 1;
                        item.action = "made-float".into();
                        item.reason = format!("broke TensorRT's Q/DQ rules ({}); {w}", msgs.join("; "));
                        float += 1;
                        rep.item(item);
                        continue;
                    }
                    Err(why) => msgs.push(format!("cannot be made float: {why}")),
                }
            }
            if msgs.is_empty() {
                item.action = "quantized".into();
                item.reason = "came in quantized; Q/DQ follow TensorRT's placement rules; scales kept".into();
                if let Some(wv) = g.n(id)?.inputs.get(1).copied().flatten() {
                    if let Some((_, dq)) = g.producer_node(wv) {
                        item = item.with("weight_axis", dq.attr_i("axis").unwrap_or(-1));
                    }
                }
                quantized += 1;
            } else {
                item.action = "violation".into();
                item.reason = msgs.join("; ");
                violations += msgs.len();
                quantized += 1;
            }
            rep.item(item);
        }
        // rule 4: the skip input of a residual Add next to a quantized conv
        for (add, slot) in residual_violations(g)? {
            let label = node_label(g, add);
            let v = g.n(add)?.inputs[slot].ok_or_else(|| Error::internal("residual input vanished"))?;
            let vname = g.name_of(v).to_string();
            let msg = format!(
                "skip input '{vname}' of a residual Add next to a quantized conv is not quantized (TensorRT rule 4: quantize the identity branch so conv + add fuse in INT8)"
            );
            if self.fix == Fix::Insert && quantize_input(g, add, slot, v)? {
                fixed += 1;
                rep.item(ReportItem::new(&label, "Add", "fixed", format!("{msg}; now reads a Q/DQ of '{vname}' with a scale already in the model")));
                continue;
            }
            violations += 1;
            rep.item(ReportItem::new(&label, "Add", "violation", msg));
        }
        let mut int8 = 0;
        if self.int8_weights {
            int8 = store_int8_weights(g)?;
        }
        if violations > 0 && self.strict {
            let list: Vec<String> = rep.items.iter().filter(|i| i.action == "violation").map(|i| format!("'{}' ({}): {}", i.node, i.op, i.reason)).collect();
            return Err(Error::user(format!("{violations} Q/DQ placement violation(s) against TensorRT's rules:\n  {}", list.join("\n  "))));
        }
        rep.changed = fixed + made_float + int8 > 0;
        rep.summary = format!(
            "{} layers came in quantized, {sparse} already 2:4; {quantized} quantized and {float} float after the check; {violations} Q/DQ placement violation(s){}{}{}",
            quant_layers.len(),
            if fixed > 0 { format!(", {fixed} fixed") } else { String::new() },
            if made_float > 0 { format!(", {made_float} layers made float") } else { String::new() },
            if int8 > 0 { format!(", {int8} weights stored as INT8") } else { String::new() },
        );
        rep.stat("quantized_layers", quantized);
        rep.stat("float_layers", float);
        rep.stat("sparse_layers", sparse);
        rep.stat("violations", violations);
        rep.stat("fixed", fixed);
        rep.stat("made_float", made_float);
        rep.stat("int8_weights", int8);
        rep.stat("came_in_quantized", quant_layers);
        rep.stat("came_in_sparse", sparse_layers);
        Ok(rep)
    }
}
