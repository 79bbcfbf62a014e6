//! ONNX `ModelProto` → IR.

use super::*;
use crate::proto::ModelProto;
use std::collections::HashSet;

/// Converts a decoded model into the IR. Fails (with the node and tensor named) on a
/// value with two producers, a dangling input or output, or duplicate names.
pub fn import(mut proto: ModelProto) -> Result<Model> {
    let gp = proto.graph.take().ok_or_else(|| Error::user("the model has no graph"))?;
    let mut graph = import_graph(gp)?;
    // calibration annotations carried as graph metadata (text form, --keep-annotations)
    let prefix = super::QUANT_KEY_PREFIX;
    let (quant, other): (Vec<_>, Vec<_>) =
        std::mem::take(&mut graph.rest.metadata_props).into_iter().partition(|m| m.key().starts_with(prefix));
    graph.rest.metadata_props = other;
    for m in quant {
        let name = &m.key()[prefix.len()..];
        let id = graph
            .value_by_name(name)
            .ok_or_else(|| Error::user(format!("quant annotation names tensor '{name}', which the graph does not have")))?;
        let q = QuantInfo::from_text(m.value()).map_err(|e| e.context(format!("tensor '{name}'")))?;
        graph.value_mut(id).expect("named").quant = Some(q);
    }
    Ok(Model { graph, rest: proto })
}

fn import_graph(mut gp: GraphProto) -> Result<Graph> {
    let mut g = Graph::default();
    let nodes = std::mem::take(&mut gp.node);
    let inits = std::mem::take(&mut gp.initializer);
    let inputs = std::mem::take(&mut gp.input);
    let outputs = std::mem::take(&mut gp.output);
    let value_info = std::mem::take(&mut gp.value_info);
    g.rest = gp;

    for vi in inputs {
        let name = vi.name().to_string();
        let id = g.add_value(&name).map_err(|_| Error::user(format!("graph input '{name}' is declared twice")))?;
        let v = g.value_mut(id).expect("just added");
        v.producer = Producer::GraphInput;
        v.ty = vi.r#type.as_ref().and_then(ValueType::from_proto);
        // a graph input declared with a 0 dim (some exporters' "dynamic") is fed with data
        // that fixes it: dynamic, like -1 and symbolic dims
        if let Some(shape) = v.ty.as_mut().and_then(|t| t.shape.as_mut()) {
            for d in shape.iter_mut() {
                if *d == Dim::Known(0) {
                    *d = Dim::Unknown;
                }
            }
        }
        g.inputs.push(id);
        g.input_info.push(vi);
    }
    for t in inits {
        let name = t.name().to_string();
        let tensor = Tensor::new(t);
        tensor.check().map_err(|e| e.context(format!("initializer '{name}'")))?;
        if let Some(id) = g.value_by_name(&name) {
            let v = g.value_mut(id).expect("named");
            if v.producer == Producer::GraphInput && v.constant.is_none() {
                // an initializer that is also a graph input: a default, overridable value
                v.constant = Some(tensor);
                g.initializers.push(id);
                continue;
            }
            return Err(Error::user(format!("initializer '{name}' is defined twice")));
        }
        let id = g.add_value(&name)?;
        let v = g.value_mut(id).expect("just added");
        v.producer = Producer::Initializer;
        v.ty = Some(ValueType { elem: tensor.dtype(), shape: Some(tensor.dims().iter().map(|&d| Dim::Known(d)).collect()) });
        v.constant = Some(tensor);
        g.initializers.push(id);
    }

    // First create every node with its outputs, then connect inputs: the file's node
    // order need not be topological for the import to succeed.
    let mut pending: Vec<(NodeId, Vec<String>, Vec<String>)> = Vec::with_capacity(nodes.len());
    for (idx, mut np) in nodes.into_iter().enumerate() {
        let input_names = std::mem::take(&mut np.input);
        let output_names = std::mem::take(&mut np.output);
        let attrs = std::mem::take(&mut np.attribute);
        for a in &attrs {
            if let Some(t) = &a.t {
                Tensor::new(t.clone()).check().map_err(|e| {
                    e.context(format!("attribute '{}' of node '{}' ({})", a.name(), np.name(), np.op_type()))
                })?;
            }
        }
        let desc = if np.name().is_empty() { format!("node #{idx} ({})", np.op_type()) } else { format!("node '{}' ({})", np.name(), np.op_type()) };
        let mut outs = Vec::with_capacity(output_names.len());
        for o in &output_names {
            if o.is_empty() {
                outs.push(None);
            } else {
                let id = g.add_value(o).map_err(|_| {
                    Error::user(format!("tensor '{o}' has two producers (it is also produced or declared elsewhere)")).context(desc.clone())
                })?;
                outs.push(Some(id));
            }
        }
        let spec = NodeSpec {
            op_type: np.op_type().to_string(),
            domain: np.domain().to_string(),
            name: np.name().to_string(),
            inputs: vec![],
            outputs: outs,
            attrs,
        };
        let id = g.add_node(spec, Position::End)?;
        g.node_mut(id).expect("just added").rest = np;
        pending.push((id, input_names, subgraph_outer_refs(g.node(id).expect("added"))));
    }
    for (id, input_names, outer) in pending {
        let desc = g.node(id).map(|n| n.describe()).unwrap_or_default();
        for (slot, name) in input_names.iter().enumerate() {
            let v = if name.is_empty() {
                None
            } else {
                Some(g.value_by_name(name).ok_or_else(|| {
                    Error::user(format!("input {slot} '{name}' is not produced by any node, initializer or graph input"))
                        .context(format!("node {desc}"))
                })?)
            };
            g.set_input(id, slot, v)?;
        }
        for name in outer {
            let v = g.value_by_name(&name).ok_or_else(|| {
                Error::user(format!("sub-graph references '{name}', which the outer graph does not define")).context(format!("node {desc}"))
            })?;
            g.node_mut(id).expect("live").implicit_inputs.push(v);
            g.value_mut(v).expect("live").uses.push(Use { node: id, slot: IMPLICIT });
        }
    }
    for vi in outputs {
        let name = vi.name().to_string();
        let id = g
            .value_by_name(&name)
            .ok_or_else(|| Error::user(format!("graph output '{name}' is not produced by any node, initializer or input")))?;
        if g.value(id).map(|v| v.ty.is_none()).unwrap_or(false) {
            let ty = vi.r#type.as_ref().and_then(ValueType::from_proto);
            g.value_mut(id).expect("live").ty = ty;
        }
        g.outputs.push(id);
        g.output_info.push(vi);
    }
    for vi in value_info {
        match g.value_by_name(vi.name()) {
            Some(id) if g.value(id).map(|v| v.info.is_none()).unwrap_or(false) => {
                let v = g.value_mut(id).expect("live");
                if v.ty.is_none() {
                    v.ty = vi.r#type.as_ref().and_then(ValueType::from_proto);
                }
                v.info = Some(vi);
                g.value_info.push(id);
            }
            _ => g.orphan_value_info.push(vi),
        }
    }
    Ok(g)
}

/// Names a node's sub-graphs read from enclosing scopes.
pub fn subgraph_outer_refs(n: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for a in &n.attrs {
        for sg in a.g.iter().chain(a.graphs.iter()) {
            collect_outer(sg, &HashSet::new(), &mut out, &mut seen);
        }
    }
    out
}

fn collect_outer(g: &GraphProto, enclosing_defs: &HashSet<String>, out: &mut Vec<String>, seen: &mut HashSet<String>) {
    let mut defs: HashSet<String> = enclosing_defs.clone();
    defs.extend(g.input.iter().map(|v| v.name().to_string()));
    defs.extend(g.initializer.iter().map(|t| t.name().to_string()));
    defs.extend(g.sparse_initializer.iter().filter_map(|s| s.values.as_ref()).map(|t| t.name().to_string()));
    for n in &g.node {
        defs.extend(n.output.iter().cloned());
    }
    let local_only: HashSet<String> = defs.difference(enclosing_defs).cloned().collect();
    let mut note = |name: &str, out: &mut Vec<String>| {
        if !name.is_empty() && !local_only.contains(name) && !enclosing_defs.contains(name) && seen.insert(name.to_string()) {
            out.push(name.to_string());
        }
    };
    for n in &g.node {
        for i in &n.input {
            note(i, out);
        }
    }
    for o in &g.output {
        note(o.name(), out);
    }
    for n in &g.node {
        for a in &n.attribute {
            for sg in a.g.iter().chain(a.graphs.iter()) {
                let mut inner = Vec::new();
                collect_outer(sg, &defs, &mut inner, &mut HashSet::new());
                for name in inner {
                    note(&name, out);
                }
            }
        }
    }
}
