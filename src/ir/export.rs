//! IR → ONNX `ModelProto`. Untouched parts come back exactly as they were read: nodes
//! in the original order (when it was topological), original NodeProto/ValueInfoProto/
//! TensorProto fields, initializer and value_info order.

use super::*;

/// Builds the ModelProto for `model`. Tensor bytes are shared, not copied.
pub fn export(model: &Model) -> Result<ModelProto> {
    let mut proto = model.rest.clone();
    proto.graph = Some(export_graph(&model.graph)?);
    Ok(proto)
}

fn with_name(mut vi: ValueInfoProto, name: &str) -> ValueInfoProto {
    if vi.name() != name {
        vi.name = Some(name.to_string());
    }
    vi
}

fn fresh_info(g: &Graph, v: ValueId) -> ValueInfoProto {
    let val = g.value(v).expect("live value");
    ValueInfoProto {
        name: Some(val.name.clone()),
        r#type: val.ty.as_ref().map(type_proto),
        ..Default::default()
    }
}

pub fn export_graph(g: &Graph) -> Result<GraphProto> {
    let mut gp = g.rest.clone();
    for id in g.topo_order()? {
        let n = g.n(id)?;
        let mut np = n.rest.clone();
        if np.op_type() != n.op_type {
            np.op_type = Some(n.op_type.clone());
        }
        if np.domain() != n.domain {
            np.domain = Some(n.domain.clone());
        }
        if np.name() != n.name {
            np.name = Some(n.name.clone());
        }
        np.input = n.inputs.iter().map(|i| i.map(|v| g.name_of(v).to_string()).unwrap_or_default()).collect();
        // drop trailing absent optional inputs only if they were added by a pass; keep as is
        np.output = n.outputs.iter().map(|o| o.map(|v| g.name_of(v).to_string()).unwrap_or_default()).collect();
        np.attribute = n.attrs.clone();
        gp.node.push(np);
    }
    for id in &g.initializers {
        let v = g.v(*id)?;
        let mut t = v.constant.as_ref().ok_or_else(|| Error::internal(format!("initializer '{}' has no data", v.name)))?.proto.clone();
        if t.name() != v.name {
            t.name = Some(v.name.clone());
        }
        gp.initializer.push(t);
    }
    for (i, id) in g.inputs.iter().enumerate() {
        let name = g.name_of(*id);
        gp.input.push(match g.input_info.get(i) {
            Some(vi) => with_name(vi.clone(), name),
            None => fresh_info(g, *id),
        });
    }
    for (i, id) in g.outputs.iter().enumerate() {
        let name = g.name_of(*id);
        gp.output.push(match g.output_info.get(i) {
            Some(vi) => with_name(vi.clone(), name),
            None => fresh_info(g, *id),
        });
    }
    for id in &g.value_info {
        let v = g.v(*id)?;
        if let Some(vi) = &v.info {
            gp.value_info.push(with_name(vi.clone(), &v.name));
        }
    }
    gp.value_info.extend(g.orphan_value_info.iter().cloned());
    Ok(gp)
}

/// Like [`export`], but calibration annotations travel as graph metadata entries
/// (`sparseqc.quant/<tensor>`), which the text form shows as its `quant { }` block and
/// [`crate::ir::import::import`] reads back.
pub fn export_with_annotations(model: &Model) -> Result<ModelProto> {
    let mut proto = export(model)?;
    let g = &model.graph;
    let mut entries: Vec<(String, String)> = g
        .value_ids()
        .filter_map(|v| {
            let val = g.value(v)?;
            val.quant.as_ref().map(|q| (val.name.clone(), q.to_text()))
        })
        .collect();
    entries.sort();
    if let Some(gp) = proto.graph.as_mut() {
        for (k, v) in entries {
            gp.metadata_props.push(crate::proto::StringStringEntryProto {
                key: Some(format!("{}{k}", super::QUANT_KEY_PREFIX)),
                value: Some(v),
            });
        }
    }
    Ok(proto)
}
