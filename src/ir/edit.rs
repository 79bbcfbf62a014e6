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
