//! The bridge from the IR to the CPU interpreter (`crate::exec`): builds an executable
//! program for a model, with a map from IR values to program values, and converts
//! tensors both ways. Used by calibration, constant folding, reconstruction and the
//! testing kit.

use crate::error::{Error, Result};
use crate::exec::{ExecNode, Program, Session};
use crate::ir::{Model, Producer, Tensor, ValueId};
use std::collections::{HashMap, HashSet};

/// An executable session for a model, with value lookups by IR id.
pub struct ModelSession {
    pub session: Session,
    /// IR value → program value.
    pub ids: HashMap<ValueId, usize>,
    /// Program ids of the graph inputs (non-initializer), in graph order.
    pub inputs: Vec<(String, usize)>,
    /// IR values computed once when the session was built (outputs of nodes whose inputs are
    /// all constant, such as weights behind QuantizeLinear → DequantizeLinear): constants of
    /// the program, so they cannot be fed.
    pub folded: HashSet<ValueId>,
}

/// Element types of graph inputs that are fed as f32 and cast to their type in the
/// program (int64, int32, bool, uint8, float16, double): calibration samples hold f32
/// values, which carry every value of these types that the sample readers accept exactly
/// (integers up to 2^24, checked when the arrays are read).
const FED_AS_F32: &[i32] = &[7, 6, 9, 2, 10, 11];

/// Ops evaluated once at session build when all their inputs are constant.
const FOLDABLE: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Identity", "Cast", "Transpose"];

impl ModelSession {
    /// Builds a session for `m` (every node, every initializer as a constant). Nodes of
    /// [`FOLDABLE`] ops whose inputs are all initializers (or such nodes' outputs) are run
    /// once here and their outputs become constants: a Q/DQ model's weights then reach the
    /// Conv/Gemm kernels as constants, which pack them once instead of per run
    /// (MobileNetV2 Q/DQ forward about 2× faster), with identical results.
    pub fn new(m: &Model) -> Result<ModelSession> {
        let g = &m.graph;
        let order = g.topo_order()?;
        let mut constant: HashSet<ValueId> = g.value_ids().into_iter().filter(|v| g.v(*v).map(|x| x.producer == Producer::Initializer).unwrap_or(false)).collect();
        let mut fold_nodes = HashSet::new();
        for &id in &order {
            let n = g.n(id)?;
            if n.domain.is_empty()
                && FOLDABLE.contains(&n.op_type.as_str())
                && n.inputs.iter().flatten().all(|v| constant.contains(v))
                && n.outputs.iter().all(|o| o.is_some())
                && !n.outputs.iter().flatten().any(|o| g.outputs.contains(o))
            {
                fold_nodes.insert(id);
                constant.extend(n.outputs.iter().flatten().copied());
            }
        }
        if fold_nodes.is_empty() {
            return Self::build(m, &order, &HashSet::new(), Vec::new());
        }
        let full = Self::build(m, &order, &HashSet::new(), Vec::new())?;
        let folded: Vec<ValueId> = order.iter().filter(|id| fold_nodes.contains(id)).flat_map(|id| g.n(*id).map(|n| n.outputs.iter().flatten().copied().collect::<Vec<_>>()).unwrap_or_default()).collect();
        let targets: Vec<usize> = folded.iter().map(|v| full.id(*v)).collect::<Result<_>>()?;
        let values = full.session.run_from(Vec::new(), &targets)?;
        drop(full);
        Self::build(m, &order, &fold_nodes, folded.into_iter().zip(values).collect())
    }

    /// A session without constant folding (every node runs on every call), to check that
    /// folding changes nothing.
    pub fn new_unfolded(m: &Model) -> Result<ModelSession> {
        Self::build(m, &m.graph.topo_order()?, &HashSet::new(), Vec::new())
    }

    fn build(m: &Model, order: &[crate::ir::NodeId], skip: &HashSet<crate::ir::NodeId>, extra: Vec<(ValueId, crate::exec::Tensor)>) -> Result<ModelSession> {
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
        let folded: HashSet<ValueId> = extra.iter().map(|(v, _)| *v).collect();
        for (v, t) in extra {
            p.add_constant(ids[&v], t);
        }
        for v in &g.inputs {
            let val = g.v(*v)?;
            if let Some(t) = &val.constant {
                // an input with a default initializer: feed the default
                p.add_constant(ids[v], crate::exec::Tensor::from_proto(&t.proto)?);
            } else if let Some(to) = val.ty.as_ref().map(|t| t.elem).filter(|e| FED_AS_F32.contains(e)) {
                // calibration samples carry f32 values (integers exactly, see calib::npy);
                // the model reads its declared type
                let raw = p.add_value(&format!("{}#fed", val.name));
                p.add_input(raw);
                p.add_node(ExecNode {
                    name: format!("{}#to_{}", val.name, crate::ir::tensor::dtype_name(to)),
                    op_type: "Cast".into(),
                    domain: String::new(),
                    inputs: vec![Some(raw)],
                    outputs: vec![Some(ids[v])],
                    attrs: vec![crate::ir::attr_int("to", to as i64)],
                });
                inputs.push((val.name.clone(), raw));
            } else {
                p.add_input(ids[v]);
                inputs.push((val.name.clone(), ids[v]));
            }
        }
        for v in &g.outputs {
            p.add_output(ids[v]);
        }
        for &id in order {
            if skip.contains(&id) {
                continue;
            }
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
        Ok(ModelSession { session, ids, inputs, folded })
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
                    Data::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Data::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Data::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
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
