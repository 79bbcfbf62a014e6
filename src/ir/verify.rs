//! The IR verifier: checks the invariants listed in `ir/mod.rs`. Runs after every pass
//! in tests and debug builds, and with `--verify-each`.

use super::*;

/// Checks every structural invariant; the error names the node or tensor at fault.
pub fn verify(g: &Graph) -> Result<()> {
    let live_nodes = g.node_ids();
    for id in &live_nodes {
        let n = g.n(*id)?;
        let at = || format!("node {}", n.describe());
        for (slot, i) in n.inputs.iter().enumerate() {
            if let Some(v) = i {
                let val = g.value(*v).ok_or_else(|| Error::internal(format!("input {slot} is a stale value")).context(at()))?;
                if !val.uses.iter().any(|u| u.node == *id && u.slot == slot) {
                    return Err(Error::internal(format!("input {slot} '{}' does not record this use", val.name)).context(at()));
                }
                if val.producer == Producer::None {
                    return Err(Error::user(format!("input {slot} '{}' has no producer (dangling)", val.name)).context(at()));
                }
            }
        }
        for v in &n.implicit_inputs {
            let val = g.value(*v).ok_or_else(|| Error::internal("implicit input is a stale value").context(at()))?;
            if val.producer == Producer::None {
                return Err(Error::user(format!("sub-graph input '{}' has no producer", val.name)).context(at()));
            }
        }
        for (slot, o) in n.outputs.iter().enumerate() {
            if let Some(v) = o {
                let val = g.value(*v).ok_or_else(|| Error::internal(format!("output {slot} is a stale value")).context(at()))?;
                if val.producer != Producer::Node(*id, slot) {
                    return Err(Error::user(format!("output '{}' has another producer", val.name)).context(at()));
                }
            }
        }
    }
    let mut count = 0usize;
    for vid in g.value_ids() {
        count += 1;
        let v = g.v(vid)?;
        if g.value_by_name(&v.name) != Some(vid) {
            return Err(Error::internal(format!("tensor '{}' is missing from the name table", v.name)));
        }
        for u in &v.uses {
            let n = g.node(u.node).ok_or_else(|| Error::internal(format!("tensor '{}' is used by a removed node", v.name)))?;
            let ok = if u.slot == IMPLICIT { n.implicit_inputs.contains(&vid) } else { n.inputs.get(u.slot) == Some(&Some(vid)) };
            if !ok {
                return Err(Error::internal(format!("tensor '{}' records a use that node {} does not have", v.name, n.describe())));
            }
        }
        match v.producer {
            Producer::Node(n, slot) => {
                let node = g.node(n).ok_or_else(|| Error::internal(format!("tensor '{}' is produced by a removed node", v.name)))?;
                if node.outputs.get(slot) != Some(&Some(vid)) {
                    return Err(Error::internal(format!("tensor '{}' producer link is broken", v.name)));
                }
            }
            Producer::Initializer => {
                if v.constant.is_none() {
                    return Err(Error::internal(format!("initializer '{}' has no data", v.name)));
                }
            }
            Producer::GraphInput => {}
            Producer::None => {
                if !v.uses.is_empty() || g.outputs.contains(&vid) {
                    return Err(Error::user(format!("tensor '{}' is used but nothing produces it", v.name)));
                }
            }
        }
    }
    if count != g.names.len() {
        return Err(Error::internal("the name table holds removed values"));
    }
    for o in &g.outputs {
        let v = g.value(*o).ok_or_else(|| Error::internal("a graph output is a stale value"))?;
        if v.producer == Producer::None {
            return Err(Error::user(format!("graph output '{}' has no producer", v.name)));
        }
    }
    if g.inputs.len() != g.input_info.len() || g.outputs.len() != g.output_info.len() {
        return Err(Error::internal("graph input/output declarations are out of step"));
    }
    g.topo_order()?;
    Ok(())
}
