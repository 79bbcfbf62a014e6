//! `cleanup`: turns an export into the clean graph pruning and quantization need.
//!
//! Repeated to a fixpoint:
//! 1. Constant nodes become initializers (PaddleOCR-style models ship every weight so);
//! 2. constant folding: a node whose inputs are all constants is evaluated by the CPU
//!    interpreter (`sparseqc::exec`) and replaced by initializers — this removes the
//!    Shape → Gather → Unsqueeze → Concat → Reshape chains PyTorch exports carry and makes
//!    Pad amounts static; `Shape` of a tensor with a fully known shape, and `Gather` of
//!    known dims out of a `Shape`, fold too;
//! 3. Identity (and inference-mode Dropout) nodes are removed;
//! 4. dead nodes and unused initializers are removed;
//! 5. with `fuse-pad` (default on), a constant zero Pad feeding only a Conv is merged
//!    into the Conv's pads.
//! Graph outputs and their names are kept. Q/DQ nodes are never folded (the Q/DQ on
//! weights is how TensorRT receives quantized weights). Running it twice changes nothing.

use crate::ir::edit::node_label;
use crate::error::{Error, Result};
use crate::ir::{attr_ints, Dim, Model, NodeId, Producer, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, ReportItem};

pub const NAME: &str = "cleanup";
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("fold-constants", OptionKind::Bool, "true", "evaluate nodes whose inputs are all constant"),
    OptionSpec::new("fuse-pad", OptionKind::Bool, "true", "merge a constant zero Pad into the following Conv's pads"),
    OptionSpec::new("max-folded-elements", OptionKind::Int, "16777216", "do not fold nodes producing more elements than this"),
];

pub struct Cleanup {
    fold: bool,
    fuse_pad: bool,
    max_elems: usize,
}

impl Cleanup {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        Ok(Cleanup {
            fold: o.bool("fold-constants", true)?,
            fuse_pad: o.bool("fuse-pad", true)?,
            max_elems: o.int("max-folded-elements", 1 << 24)?.max(0) as usize,
        })
    }
}

/// Ops never folded even with constant inputs.
fn never_fold(op: &str) -> bool {
    matches!(op, "QuantizeLinear" | "DequantizeLinear" | "RandomNormal" | "RandomUniform" | "RandomNormalLike" | "RandomUniformLike" | "Multinomial" | "Bernoulli")
}

/// Data of a Constant node's attribute, whichever form it takes.
fn constant_node_tensor(n: &crate::ir::Node) -> Option<Tensor> {
    let a = n.attrs.first()?;
    if n.attrs.len() != 1 {
        return None;
    }
    match a.name() {
        "value" => a.t.clone().map(Tensor::new),
        "value_float" => Some(Tensor::from_f32("", &[], &[a.f?])),
        "value_floats" => Some(Tensor::from_f32("", &[a.floats.len() as i64], &a.floats)),
        "value_int" => Some(Tensor::from_i64("", &[], &[a.i?])),
        "value_ints" => Some(Tensor::from_i64("", &[a.ints.len() as i64], &a.ints)),
        _ => None,
    }
}

/// For ops whose output can hold many more elements than their inputs together, an upper
/// bound of its element count computed from the constant inputs alone (None: it cannot be
/// bounded); other ops: `Some(0)`, their output is no larger than what is already in memory.
fn grown_size(m: &Model, n: &crate::ir::Node) -> Option<u128> {
    let input = |i: usize| n.inputs.get(i).copied().flatten().and_then(|v| m.graph.constant(v));
    let ints = |i: usize| input(i).and_then(|t| t.to_i64().ok());
    let floats = |i: usize| input(i).and_then(|t| t.to_f32().ok());
    let numel = |i: usize| input(i).and_then(|t| t.numel().ok()).map(|e| e as u128);
    let prod = |v: &[i64]| v.iter().try_fold(1u128, |a, &d| a.checked_mul(u128::try_from(d.max(0)).ok()?));
    match n.op_type.as_str() {
        "ConstantOfShape" => prod(&ints(0)?),
        "Expand" => {
            let (x, s) = (input(0)?.dims().to_vec(), ints(1)?);
            let r = x.len().max(s.len());
            let at = |v: &[i64], i: usize| if i + v.len() >= r { v[i + v.len() - r] } else { 1 };
            prod(&(0..r).map(|i| at(&x, i).max(at(&s, i))).collect::<Vec<_>>())
        }
        "Tile" => numel(0)?.checked_mul(prod(&ints(1)?)?),
        "Range" => {
            let (a, b, d) = (floats(0)?.first().copied()?, floats(1)?.first().copied()?, floats(2)?.first().copied()?);
            let k = ((b - a) / d).ceil();
            (k.is_finite()).then(|| k.max(0.0) as u128)
        }
        "Resize" | "Upsample" => {
            let x = numel(0)?;
            // sizes (Resize input 3), else scales (Upsample input 1, Resize input 2)
            if let Some(sizes) = ints(3).filter(|v| !v.is_empty()) {
                return prod(&sizes);
            }
            let scales = floats(if n.op_type == "Upsample" { 1 } else { 2 })?;
            let f: f64 = scales.iter().map(|&s| s.abs().max(1.0) as f64).product();
            (f.is_finite() && f < 1e30).then(|| (x as f64 * f).ceil() as u128)
        }
        "OneHot" => numel(0)?.checked_mul(u128::try_from(floats(1)?.first().copied()?.max(0.0) as i64).ok()?),
        "Pad" => {
            let x = input(0)?.dims().to_vec();
            let pads = ints(1).or_else(|| n.attr_ints("pads").map(|v| v.to_vec()))?;
            let r = x.len();
            if pads.len() != 2 * r {
                return None;
            }
            prod(&(0..r).map(|i| x[i] + pads[i].max(0) + pads[r + i].max(0)).collect::<Vec<_>>())
        }
        _ => Some(0),
    }
}

fn is_const(m: &Model, v: ValueId) -> bool {
    m.graph.constant(v).is_some()
}

fn static_shape(m: &Model, v: ValueId) -> Option<Vec<i64>> {
    m.graph.value(v)?.ty.as_ref()?.static_dims()
}

impl Cleanup {
    fn constants_to_initializers(&self, m: &mut Model, rep: &mut PassReport) -> Result<usize> {
        let mut n = 0;
        for id in m.graph.node_ids() {
            let node = m.graph.n(id)?;
            if node.op_type != "Constant" || !node.domain.is_empty() {
                continue;
            }
            let Some(out) = node.outputs.first().copied().flatten() else { continue };
            if m.graph.is_graph_output(out) {
                continue;
            }
            let Some(t) = constant_node_tensor(node) else { continue };
            if t.proto.data_location.unwrap_or(0) != 0 || t.check().is_err() {
                continue;
            }
            let label = node_label(&m.graph, id);
            m.graph.remove_node(id)?;
            m.graph.make_initializer(out, t)?;
            rep.item(ReportItem::new(&label, "Constant", "to-initializer", format!("became initializer '{}'", m.graph.name_of(out))));
            n += 1;
        }
        Ok(n)
    }

    /// Evaluates one node whose inputs are all constants.
    fn eval_node(&self, m: &Model, id: NodeId) -> Result<Option<Vec<Tensor>>> {
        use crate::exec::{ExecNode, Program, Session};
        let g = &m.graph;
        let n = g.n(id)?;
        // Decide by the inferred size before running: a ConstantOfShape of 2^40 elements must
        // not be materialised to find out it is too large. Ops whose output can be much larger
        // than their inputs are only folded when their constant inputs bound its size.
        for o in n.outputs.iter().flatten() {
            if let Some(dims) = static_shape(m, *o) {
                let elems = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?));
                if elems.is_none_or(|e| e > self.max_elems) {
                    return Ok(None);
                }
            }
        }
        if grown_size(m, n).is_none_or(|e| e > self.max_elems as u128) {
            return Ok(None);
        }
        let mut p = Program::new(m.opset());
        let mut ins = Vec::new();
        for i in &n.inputs {
            match i {
                None => ins.push(None),
                Some(v) => {
                    let t = g.constant(*v).ok_or_else(|| Error::internal("eval_node on a non-constant input"))?;
                    let pv = p.add_value(g.name_of(*v));
                    p.add_constant(pv, crate::exec::Tensor::from_proto(&t.proto)?);
                    ins.push(Some(pv));
                }
            }
        }
        let mut outs = Vec::new();
        for o in &n.outputs {
            match o {
                None => outs.push(None),
                Some(v) => {
                    let pv = p.add_value(g.name_of(*v));
                    p.add_output(pv);
                    outs.push(Some(pv));
                }
            }
        }
        p.add_node(ExecNode { name: n.name.clone(), op_type: n.op_type.clone(), domain: n.domain.clone(), inputs: ins, outputs: outs, attrs: n.attrs.clone() });
        // an op the interpreter does not know is simply not folded
        let Ok(s) = Session::new(p) else { return Ok(None) };
        let Ok(res) = s.run_outputs(vec![]) else { return Ok(None) };
        if res.iter().any(|t| t.len() > self.max_elems) {
            return Ok(None);
        }
        Ok(Some(res.iter().map(crate::engine::tensor_to_ir).collect::<Result<Vec<_>>>()?))
    }

    fn fold_constants(&self, m: &mut Model, rep: &mut PassReport) -> Result<usize> {
        let mut n_folded = 0;
        crate::ir::shape::infer(&mut m.graph)?;
        for id in m.graph.topo_order()? {
            let Some(node) = m.graph.node(id) else { continue };
            if never_fold(&node.op_type) || !node.domain.is_empty() || node.attrs.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()) {
                continue;
            }
            let outs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
            if outs.is_empty() || outs.iter().any(|o| m.graph.is_graph_output(*o)) {
                continue;
            }
            let op = node.op_type.clone();
            // Shape of a statically shaped tensor, and Gather of static dims out of a Shape
            let special: Option<Tensor> = match op.as_str() {
                "Shape" if node.inputs.len() == 1 => {
                    let x = node.inputs[0].ok_or_else(|| Error::user("Shape without input"))?;
                    static_shape(m, x).and_then(|dims| {
                        let r = dims.len() as i64;
                        let norm = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.clamp(0, r) };
                        let start = norm(node.attr_i("start").unwrap_or(0)) as usize;
                        let end = norm(node.attr_i("end").unwrap_or(r)) as usize;
                        if is_const(m, x) || start > end {
                            None
                        } else {
                            Some(Tensor::from_i64("", &[(end - start) as i64], &dims[start..end]))
                        }
                    })
                }
                "Gather" if node.inputs.len() == 2 && node.attr_i("axis").unwrap_or(0) == 0 => (|| {
                    let src = node.inputs[0]?;
                    let idx = m.graph.constant(node.inputs[1]?)?.to_i64().ok()?;
                    let idx_dims = m.graph.constant(node.inputs[1]?)?.dims().to_vec();
                    let (_, sh) = m.graph.producer_node(src)?;
                    if sh.op_type != "Shape" || sh.attrs.iter().any(|a| a.name() == "start" || a.name() == "end") {
                        return None;
                    }
                    let x = sh.inputs.first().copied().flatten()?;
                    let shape = m.graph.value(x)?.ty.as_ref()?.shape.clone()?;
                    let r = shape.len() as i64;
                    let vals: Option<Vec<i64>> = idx
                        .iter()
                        .map(|&i| {
                            let i = if i < 0 { i + r } else { i };
                            match shape.get(i as usize)? {
                                Dim::Known(d) => Some(*d),
                                _ => None,
                            }
                        })
                        .collect();
                    vals.map(|v| Tensor::from_i64("", &idx_dims, &v))
                })(),
                _ => None,
            };
            let node = m.graph.n(id)?;
            let results = if let Some(t) = special {
                vec![t]
            } else {
                let all_const = !node.inputs.is_empty() && node.inputs.iter().flatten().all(|v| is_const(m, *v)) && node.implicit_inputs.is_empty();
                if !all_const || !self.fold {
                    continue;
                }
                match self.eval_node(m, id)? {
                    Some(r) => r,
                    None => continue,
                }
            };
            let node = m.graph.n(id)?.clone();
            if results.len() != node.outputs.iter().filter(|o| o.is_some()).count() && node.outputs.len() != results.len() {
                continue;
            }
            let label = node_label(&m.graph, id);
            m.graph.remove_node(id)?;
            for (o, t) in node.outputs.iter().zip(results) {
                if let Some(o) = o {
                    m.graph.make_initializer(*o, t)?;
                }
            }
            rep.item(ReportItem::new(&label, &op, "folded", "all inputs are constant: replaced by its value"));
            n_folded += 1;
        }
        Ok(n_folded)
    }

    fn remove_identities(&self, m: &mut Model, rep: &mut PassReport) -> Result<usize> {
        let mut n = 0;
        for id in m.graph.node_ids() {
            let node = m.graph.n(id)?;
            let is_identity = node.op_type == "Identity"
                || (node.op_type == "Dropout"
                    && node.inputs.iter().skip(1).flatten().next().is_none()
                    && node.outputs.iter().skip(1).flatten().all(|o| m.graph.is_dead(*o)));
            if !is_identity || !node.domain.is_empty() {
                continue;
            }
            let (Some(Some(x)), Some(Some(y))) = (node.inputs.first().copied(), node.outputs.first().copied()) else { continue };
            let op = node.op_type.clone();
            let g = &mut m.graph;
            if g.is_graph_output(y) {
                // the output name must stay: x takes it over, unless x has a fixed name
                let x_fixed = g.is_graph_output(x) || g.inputs.contains(&x) || g.v(x)?.uses.iter().any(|u| u.slot == crate::ir::IMPLICIT);
                if x_fixed {
                    continue;
                }
            }
            let label = node_label(g, id);
            let extra: Vec<ValueId> = g.n(id)?.outputs.iter().skip(1).flatten().copied().collect();
            g.remove_node(id)?;
            if g.v(y)?.uses.iter().any(|u| u.slot == crate::ir::IMPLICIT) {
                return Err(Error::user(format!("{label}: its output is read by name from a sub-graph; cannot remove")));
            }
            g.replace_value(y, x)?;
            g.remove_value(y)?;
            for e in extra {
                g.remove_value(e)?;
            }
            rep.item(ReportItem::new(&label, &op, "removed", "identity"));
            n += 1;
        }
        Ok(n)
    }

    fn remove_dead(&self, m: &mut Model, rep: &mut PassReport) -> Result<usize> {
        let mut n = 0;
        let g = &mut m.graph;
        let mut order = g.topo_order()?;
        order.reverse();
        for id in order {
            let node = g.n(id)?;
            let outs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
            if outs.iter().all(|o| g.is_dead(*o)) {
                let label = node_label(g, id);
                let op = node.op_type.clone();
                g.remove_node(id)?;
                for o in outs {
                    g.remove_value(o)?;
                }
                rep.item(ReportItem::new(&label, &op, "removed", "dead: no output is used"));
                n += 1;
            }
        }
        let inits: Vec<ValueId> = g.initializers.clone();
        let mut removed = 0;
        for v in inits {
            if g.is_dead(v) && !g.inputs.contains(&v) && g.v(v)?.producer == Producer::Initializer {
                g.remove_value(v)?;
                removed += 1;
            }
        }
        if removed > 0 {
            rep.item(ReportItem::new("", "", "removed-initializers", format!("{removed} unused initializers")).with("count", removed));
        }
        Ok(n + removed)
    }

    fn fuse_pads(&self, m: &mut Model, rep: &mut PassReport) -> Result<usize> {
        let mut n = 0;
        for id in m.graph.node_ids() {
            let g = &m.graph;
            let node = g.n(id)?;
            if node.op_type != "Pad" || !node.domain.is_empty() {
                continue;
            }
            let mode = node.attr_s("mode").unwrap_or_else(|| "constant".into());
            if mode != "constant" {
                continue;
            }
            let pads: Vec<i64> = match node.inputs.get(1).copied().flatten() {
                Some(p) => match g.constant(p).and_then(|t| t.to_i64().ok()) {
                    Some(v) => v,
                    None => continue,
                },
                None => match node.attr_ints("pads") {
                    Some(p) => p.to_vec(),
                    None => continue,
                },
            };
            let value_zero = match node.inputs.get(2).copied().flatten() {
                Some(c) => g.constant(c).and_then(|t| t.to_f32().ok()).map(|v| v.iter().all(|x| *x == 0.0)).unwrap_or(false),
                None => node.attr_f("value").unwrap_or(0.0) == 0.0,
            };
            if !value_zero || node.inputs.get(3).copied().flatten().is_some() {
                continue;
            }
            let (Some(Some(x)), Some(Some(y))) = (node.inputs.first().copied(), node.outputs.first().copied()) else { continue };
            let Some(conv) = crate::ir::edit::single_consumer(g, y) else { continue };
            let c = g.n(conv)?;
            if c.op_type != "Conv" || c.inputs.first().copied().flatten() != Some(y) {
                continue;
            }
            if c.attr_s("auto_pad").map(|a| a != "NOTSET").unwrap_or(false) {
                continue;
            }
            let r = pads.len() / 2;
            if r < 3 || pads.len() != 2 * r || pads[0] != 0 || pads[1] != 0 || pads[r] != 0 || pads[r + 1] != 0 || pads.iter().any(|p| *p < 0) {
                continue;
            }
            let sp = r - 2;
            let old = c.attr_ints("pads").map(|p| p.to_vec()).unwrap_or(vec![0; 2 * sp]);
            if old.len() != 2 * sp {
                continue;
            }
            let mut newp = old.clone();
            for i in 0..sp {
                newp[i] += pads[2 + i];
                newp[sp + i] += pads[r + 2 + i];
            }
            let label = node_label(g, id);
            let clabel = node_label(g, conv);
            let g = &mut m.graph;
            g.node_mut(conv).expect("live").set_attr(attr_ints("pads", &newp));
            g.set_input(conv, 0, Some(x))?;
            g.remove_node(id)?;
            g.remove_value(y)?;
            rep.item(ReportItem::new(&label, "Pad", "fused", format!("zero padding merged into Conv '{clabel}' pads {newp:?}")));
            n += 1;
        }
        Ok(n)
    }
}

impl Pass for Cleanup {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        let before_nodes = m.graph.node_count();
        let before_inits = m.graph.initializers.len();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut changed = 0;
            changed += self.constants_to_initializers(m, &mut rep)?;
            if self.fold {
                changed += self.fold_constants(m, &mut rep)?;
            }
            changed += self.remove_identities(m, &mut rep)?;
            if self.fuse_pad {
                changed += self.fuse_pads(m, &mut rep)?;
            }
            changed += self.remove_dead(m, &mut rep)?;
            if changed == 0 || rounds > 100 {
                break;
            }
        }
        rep.changed = !rep.items.is_empty();
        rep.summary = format!(
            "{} nodes -> {}, {} initializers -> {} ({} constant nodes, {} folded, {} identities, {} pads fused, {} dead)",
            before_nodes,
            m.graph.node_count(),
            before_inits,
            m.graph.initializers.len(),
            rep.count("to-initializer"),
            rep.count("folded"),
            rep.items.iter().filter(|i| i.action == "removed" && i.reason == "identity").count(),
            rep.count("fused"),
            rep.items.iter().filter(|i| i.action == "removed" && i.reason.starts_with("dead")).count(),
        );
        Ok(rep)
    }
}
