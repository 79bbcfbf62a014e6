//! Graph-editing helpers shared by passes (built-in and plugins): constant inputs, dead-constant
//! removal, single consumers, report labels.

use crate::error::{Error, Result};
use crate::ir::{Graph, NodeId, Tensor, ValueId};

/// The f32 data of a constant input (initializer or Constant node) of a node.
pub fn const_f32(g: &Graph, v: Option<ValueId>) -> Option<(ValueId, Vec<f32>, Vec<i64>)> {
    let v = v?;
    let t = g.constant_value(v)?;
    if t.dtype() != 1 {
        return None;
    }
    let data = t.to_f32().ok()?;
    Some((v, data, t.dims().to_vec()))
}

/// Gives input `slot` of `node` new constant data. The initializer is updated in place
/// when this node is its only user (keeping its name); otherwise a new initializer named
/// after `base` is created, so other users keep the old data.
pub fn set_const_input(g: &mut Graph, node: NodeId, slot: usize, base: &str, t: Tensor) -> Result<ValueId> {
    let cur = g.n(node)?.inputs.get(slot).copied().flatten();
    if let Some(v) = cur {
        let val = g.v(v)?;
        let only_user = val.uses.len() == 1 && !g.is_graph_output(v);
        if only_user && g.constant(v).is_some() {
            g.set_constant(v, t)?;
            return Ok(v);
        }
    }
    let nv = g.add_fresh_initializer(base, t);
    g.set_input(node, slot, Some(nv))?;
    Ok(nv)
}

/// Removes the given values if they became unused constants (initializers or Constant
/// node outputs). Returns how many were removed.
pub fn drop_dead_constants(g: &mut Graph, vals: &[ValueId]) -> Result<usize> {
    let mut n = 0;
    for &v in vals {
        let Some(val) = g.value(v) else { continue };
        if !val.uses.is_empty() || g.is_graph_output(v) || g.inputs.contains(&v) {
            continue;
        }
        match val.producer {
            crate::ir::Producer::Initializer => {
                g.remove_value(v)?;
                n += 1;
            }
            crate::ir::Producer::Node(p, _) => {
                let is_const = g.node(p).map(|x| x.op_type == "Constant" && x.outputs.len() == 1).unwrap_or(false);
                if is_const {
                    g.remove_node(p)?;
                    g.remove_value(v)?;
                    n += 1;
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

/// The only node consuming `v`, if exactly one node input uses it and it is not a graph output.
pub fn single_consumer(g: &Graph, v: ValueId) -> Option<NodeId> {
    let val = g.value(v)?;
    if val.uses.len() != 1 || g.is_graph_output(v) {
        return None;
    }
    Some(val.uses[0].node)
}

/// Name used in reports: the node name, or `<op>#<index>` for an unnamed node.
pub fn node_label(g: &Graph, id: NodeId) -> String {
    match g.node(id) {
        Some(n) if !n.name.is_empty() => n.name.clone(),
        Some(n) => {
            let idx = g.node_ids().iter().position(|x| *x == id).unwrap_or(0);
            format!("<{}#{idx}>", n.op_type)
        }
        None => "<removed>".into(),
    }
}

/// Error for an internal invariant.
pub fn internal(msg: &str) -> Error {
    Error::internal(msg.to_string())
}

/// Adds `shift` (one value per output channel, the last axis) to the output of a MatMul
/// with a constant weight, keeping the graph valid: MatMul takes no bias input, so the
/// shift goes into the constant of the bias Add that follows it (the MatMul's only
/// consumer, with a constant operand of `shift.len()` values along the last axis), or,
/// when there is none, into a new Add after it. The new Add takes over the MatMul's output
/// value (the MatMul writes a fresh one), so every value id downstream stays valid.
/// Returns the label of the Add that holds the bias.
pub fn shift_matmul_output(g: &mut Graph, node: NodeId, shift: &[f32]) -> Result<String> {
    let n = g.n(node)?.clone();
    if n.op_type != "MatMul" {
        return Err(internal(&format!("shift_matmul_output on {}", n.describe())));
    }
    let out = n.outputs.first().copied().flatten().ok_or_else(|| internal("MatMul without output"))?;
    let k = shift.len();
    if let Some(add) = single_consumer(g, out) {
        let a = g.n(add)?;
        if a.op_type == "Add" && a.domain.is_empty() && a.inputs.len() == 2 {
            let other = 1 - a.inputs.iter().position(|i| *i == Some(out)).unwrap_or(0);
            if let Some((_, data, dims)) = const_f32(g, a.inputs[other]) {
                let last_only = dims.last().copied() == Some(k as i64) && dims.iter().rev().skip(1).all(|d| *d == 1);
                if last_only && data.len() == k {
                    let new: Vec<f32> = data.iter().zip(shift).map(|(b, s)| b + s).collect();
                    let label = node_label(g, add);
                    set_const_input(g, add, other, &format!("{label}.bias_corrected"), Tensor::from_f32("", &dims, &new))?;
                    return Ok(label);
                }
            }
        }
    }
    let label = node_label(g, node);
    let ty = g.v(out)?.ty.clone();
    let mm_out = g.add_fresh_value(&format!("{}_matmul", g.name_of(out)));
    if let Some(v) = g.value_mut(mm_out) {
        v.ty = ty;
    }
    let bias = g.add_fresh_initializer(&format!("{label}.bias_corrected"), Tensor::from_f32("", &[k as i64], shift));
    // the MatMul is re-created in its place writing `mm_out`, with its attributes and
    // everything else of the node (annotations, doc string) carried over
    let order = g.node_ids();
    let next = order.iter().position(|x| *x == node).and_then(|i| order.get(i + 1)).copied();
    let old = g.remove_node(node)?;
    let mut spec = crate::ir::NodeSpec::new(&old.op_type, &old.name, old.inputs.clone(), vec![Some(mm_out)]);
    spec.domain = old.domain.clone();
    spec.attrs = old.attrs.clone();
    let mm = g.add_node(spec, next.map(crate::ir::Position::Before).unwrap_or(crate::ir::Position::End))?;
    if let Some(x) = g.node_mut(mm) {
        x.rest = old.rest;
    }
    let add_name = g.fresh_name(&format!("{label}_bias"));
    g.add_node(crate::ir::NodeSpec::new("Add", &add_name, vec![Some(mm_out), Some(bias)], vec![Some(out)]), crate::ir::Position::After(mm))?;
    Ok(add_name)
}
