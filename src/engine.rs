//! The bridge from the IR to the CPU interpreter (`crate::exec`): builds an executable
//! program for a model, with a map from IR values to program values, and converts
//! tensors both ways. Used by calibration, constant folding, reconstruction and the
//! testing kit.

use crate::error::{Error, Result};
use crate::exec::{ExecNode, Program, Session};
use crate::ir::{Model, Producer, Tensor, ValueId};
use std::collections::HashMap;

/// An executable session for a model, with value lookups by IR id.
pub struct ModelSession {
    pub session: Session,
    /// IR value → program value.
    pub ids: HashMap<ValueId, usize>,
    /// Program ids of the graph inputs (non-initializer), in graph order.
    pub inputs: Vec<(String, usize)>,
}

impl ModelSession {
    /// Builds a session for `m` (every node, every initializer as a constant).
    pub fn new(m: &Model) -> Result<ModelSession> {
        let g = &m.graph;
        let mut p = Program::new(m.opset());
        let mut ids = HashMap::new();
        for v in g.value_ids() {
            let pv = p.add_value(g.name_of(v));
            ids.insert(v, pv);
        }
        let mut inputs = Vec::new();
        for v in g.value_ids() {
            let val = g.v(v)?;
            if val.producer == Producer::Initializer {
                let t = val.constant.as_ref().ok_or_else(|| Error::internal("initializer without data"))?;
                p.add_constant(ids[&v], crate::exec::Tensor::from_proto(&t.proto)?);
            }
        }
        for v in &g.inputs {
            let val = g.v(*v)?;
            if let Some(t) = &val.constant {
                // an input with a default initializer: feed the default
                p.add_constant(ids[v], crate::exec::Tensor::from_proto(&t.proto)?);
            } else {
                p.add_input(ids[v]);
                inputs.push((val.name.clone(), ids[v]));
            }
        }
        for v in &g.outputs {
            p.add_output(ids[v]);
        }
        for id in g.topo_order()? {
            let n = g.n(id)?;
            p.add_node(ExecNode {
                name: n.name.clone(),
                op_type: n.op_type.clone(),
                domain: n.domain.clone(),
                inputs: n.inputs.iter().map(|i| i.map(|v| ids[&v])).collect(),
                outputs: n.outputs.iter().map(|o| o.map(|v| ids[&v])).collect(),
                attrs: n.attrs.clone(),
            });
        }
        let session = Session::new(p)?;
        Ok(ModelSession { session, ids, inputs })
    }

    pub fn id(&self, v: ValueId) -> Result<usize> {
        self.ids.get(&v).copied().ok_or_else(|| Error::internal("value not in the session"))
    }
}

/// Converts an interpreter tensor into an IR constant.
pub fn tensor_to_ir(t: &crate::exec::Tensor) -> Result<Tensor> {
    use crate::exec::Data;
    let dims: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    Ok(match t.data() {
        Data::F32(v) => Tensor::from_f32("", &dims, v),
        Data::I64(v) => Tensor::from_i64("", &dims, v),
        Data::I32(v) => Tensor::from_i32("", &dims, v),
        Data::I8(v) => Tensor::from_i8("", &dims, v),
        other => {
            let proto = crate::proto::TensorProto {
                dims,
                data_type: Some(t.dtype().onnx_code()),
                raw_data: Some(bytes::Bytes::from(match other {
                    Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                    Data::U8(v) => v.to_vec(),
                    Data::Bool(v) => v.iter().map(|b| *b as u8).collect(),
                    _ => return Err(Error::internal("unhandled tensor type")),
                })),
                ..Default::default()
            };
            Tensor::new(proto)
        }
    })
}

/// Converts a calibration sample input into an interpreter tensor.
pub fn f32_tensor(shape: &[usize], data: Vec<f32>) -> Result<crate::exec::Tensor> {
    crate::exec::Tensor::new(shape.to_vec(), data)
}
