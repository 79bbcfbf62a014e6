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
    /// Last field: after the session's weights and buffers are freed, their heap pages go
    /// back to the kernel (the raised trim threshold would otherwise keep them).
    _trim: crate::util::HeapTrim,
}

/// Element types of graph inputs that are fed as f32 and cast to their type in the
/// program (int64, int32, bool, uint8, float16, double): calibration samples hold f32
/// values, which carry every value of these types that the sample readers accept exactly
/// (integers up to 2^24, checked when the arrays are read).
const FED_AS_F32: &[i32] = &[7, 6, 9, 2, 10, 11];

/// Bytes of weights a session build copies between two releases of the mapped input's pages.
const RELEASE_EVERY_BYTES: usize = 64 << 20;

/// Ops evaluated once at session build when all their inputs are constant.
const FOLDABLE: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Identity", "Cast", "Transpose"];

impl ModelSession {
    /// Builds a session for `m` (every node, every initializer as a constant). Nodes of
    /// [`FOLDABLE`] ops whose inputs are all initializers (or such nodes' outputs) are run
    /// once here and their outputs become constants: a Q/DQ model's weights then reach the
    /// Conv/Gemm kernels as constants, which pack them once instead of per run
    /// (MobileNetV2 Q/DQ forward about 2× faster), with identical results.
    ///
    /// Folding runs one node at a time, each on its own inputs only, and keeps a folded
    /// value only while a later fold or the session reads it; initializers that only folded
    /// nodes read are not loaded into the session. A Q/DQ model then holds its weights
    /// once (the dequantized ones), not three times (float, quantized and dequantized, as
    /// when one session with every initializer folded them: BERT-base's 415 MiB of weights
    /// took 1.2 GiB).
    pub fn new(m: &Model) -> Result<ModelSession> {
        let g = &m.graph;
        let order = g.topo_order()?;
        let (fold_nodes, folded) = fold_plan(m, &order)?;
        if fold_nodes.is_empty() {
            return Self::build(m, &order, &HashSet::new(), Vec::new(), None);
        }
        // whether the session (a node that is not folded, or a graph output) reads a value
        let mut session_reads: HashSet<ValueId> = g.outputs.iter().copied().collect();
        for &id in order.iter().filter(|id| !fold_nodes.contains(id)) {
            session_reads.extend(g.n(id)?.inputs.iter().flatten().copied());
        }
        // folded nodes linked by the values they pass on form chains (a weight's Q -> DQ):
        // chains are independent, so they fold in parallel, each one node at a time
        let fold_order: Vec<crate::ir::NodeId> = order.iter().copied().filter(|id| fold_nodes.contains(id)).collect();
        let pos: HashMap<crate::ir::NodeId, usize> = fold_order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut parent: Vec<usize> = (0..fold_order.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (i, &id) in fold_order.iter().enumerate() {
            for v in g.n(id)?.inputs.iter().flatten() {
                if let Producer::Node(p, _) = g.v(*v)?.producer {
                    if let Some(&j) = pos.get(&p) {
                        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                        parent[a.max(b)] = a.min(b);
                    }
                }
            }
        }
        let mut chains: Vec<Vec<crate::ir::NodeId>> = Vec::new();
        let mut chain_of: HashMap<usize, usize> = HashMap::new();
        for (i, &id) in fold_order.iter().enumerate() {
            let r = root(&mut parent, i);
            let c = *chain_of.entry(r).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            chains[c].push(id);
        }
        let folded_chains: Vec<Vec<(ValueId, crate::exec::Tensor)>> = {
            use rayon::prelude::*;
            chains.par_iter().map(|chain| fold_chain(m, chain, &session_reads)).collect::<Result<_>>()?
        };
        let extra: Vec<(ValueId, crate::exec::Tensor)> = folded_chains.into_iter().flatten().collect();
        let mut ms = Self::build(m, &order, &fold_nodes, extra, None)?;
        // every folded value counts as computed once (none can be fed), kept or not
        ms.folded.extend(folded);
        Ok(ms)
    }

    /// The values [`ModelSession::new`] computes once at build (outputs of foldable nodes
    /// on constants), without building a session.
    pub fn folded_values(m: &Model) -> Result<HashSet<ValueId>> {
        Ok(fold_plan(m, &m.graph.topo_order()?)?.1)
    }

    /// A session that computes only `targets` from the fed values `known` (and the graph
    /// inputs): only the nodes on the way and the constants they read are loaded, nothing is
    /// folded (foldable nodes on the way run in every call). For runs over one stretch of
    /// the graph (`measure::Resume`): each such run then holds that stretch's weights, not the
    /// whole model's (forced 2:4 BERT-base built two whole-model sessions per layer, 72 times).
    pub fn for_values(m: &Model, known: &[ValueId], targets: &[ValueId]) -> Result<ModelSession> {
        let g = &m.graph;
        let order = g.topo_order()?;
        let known: HashSet<ValueId> = known.iter().copied().collect();
        let mut needed = HashSet::new();
        let mut seen = HashSet::new();
        let mut stack = targets.to_vec();
        while let Some(v) = stack.pop() {
            if !seen.insert(v) || known.contains(&v) {
                continue;
            }
            if let Producer::Node(n, _) = g.v(v)?.producer {
                if needed.insert(n) {
                    stack.extend(g.n(n)?.inputs.iter().flatten().copied());
                }
            }
        }
        let skip: HashSet<crate::ir::NodeId> = order.iter().copied().filter(|n| !needed.contains(n)).collect();
        let fed: Vec<ValueId> = known.iter().copied().filter(|v| !g.inputs.contains(v)).collect();
        Self::build(m, &order, &skip, Vec::new(), Some((&fed, targets)))
    }

    /// A session without constant folding (every node runs on every call), to check that
    /// folding changes nothing.
    pub fn new_unfolded(m: &Model) -> Result<ModelSession> {
        Self::build(m, &m.graph.topo_order()?, &HashSet::new(), Vec::new(), None)
    }

    /// The session of `m`'s nodes in `order` except `skip`, with `extra` constants (folded
    /// values); its inputs and outputs are the graph's, or with `restrict = (fed, targets)`,
    /// the graph's inputs plus the intermediate values `fed`, and `targets`.
    fn build(
        m: &Model,
        order: &[crate::ir::NodeId],
        skip: &HashSet<crate::ir::NodeId>,
        extra: Vec<(ValueId, crate::exec::Tensor)>,
        restrict: Option<(&[ValueId], &[ValueId])>,
    ) -> Result<ModelSession> {
        let g = &m.graph;
        let mut p = Program::new(m.opset());
        let mut ids = HashMap::new();
        for v in g.value_ids() {
            let pv = p.add_value(g.name_of(v));
            ids.insert(v, pv);
        }
        let mut inputs = Vec::new();
        // initializers that only skipped (folded) nodes read are not needed by the session
        let skipped_only = |v: ValueId, uses: &[crate::ir::Use]| -> bool {
            !skip.is_empty() && !uses.is_empty() && uses.iter().all(|u| skip.contains(&u.node)) && !g.outputs.contains(&v)
        };
        // copying a weight out of a memory-mapped input faults its pages in: they are let go
        // every 64 MiB copied, not only at the end (else the mapped file and the copies are
        // both resident for a moment: BERT-base's 415 MiB twice)
        let mut copied = 0usize;
        for v in g.value_ids() {
            let val = g.v(v)?;
            if val.producer == Producer::Initializer && !skipped_only(v, &val.uses) {
                let t = val.constant.as_ref().ok_or_else(|| Error::internal("initializer without data"))?;
                let tensor = crate::exec::Tensor::from_proto(&t.proto)?;
                copied += tensor.len() * tensor.dtype().size();
                p.add_constant(ids[&v], tensor);
                if copied >= RELEASE_EVERY_BYTES {
                    crate::onnx::load::release_mapped_pages();
                    copied = 0;
                }
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
                let raw = p.add_value(format!("{}#fed", val.name));
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
        if let Some((fed, _)) = restrict {
            for v in fed {
                p.add_input(ids[v]);
            }
        }
        for v in restrict.map_or(&g.outputs[..], |r| r.1) {
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
        // the session holds its own copies of the weights now; the copies that its MatMul
        // kernels packed were freed into the heap, whose raised trim threshold would keep them
        // resident beside the packed ones (ViT --dense peaked 13 MiB higher)
        crate::onnx::load::release_mapped_pages();
        crate::util::trim_heap();
        Ok(ModelSession { session, ids, inputs, folded, _trim: crate::util::HeapTrim })
    }

    pub fn id(&self, v: ValueId) -> Result<usize> {
        self.ids.get(&v).copied().ok_or_else(|| Error::internal("value not in the session"))
    }
}

/// Folds one chain of [`FOLDABLE`] nodes (in topological order; every folded node that reads
/// a value another one folds is in the same chain), one node at a time, each on its own
/// inputs only; a folded value is kept only while a later node of the chain reads it.
/// Returns the folded values that the session reads.
fn fold_chain(m: &Model, chain: &[crate::ir::NodeId], session_reads: &HashSet<ValueId>) -> Result<Vec<(ValueId, crate::exec::Tensor)>> {
    let g = &m.graph;
    // how often each value is still to be read by a node of the chain
    let mut fold_reads: HashMap<ValueId, usize> = HashMap::new();
    for &id in chain {
        for v in g.n(id)?.inputs.iter().flatten() {
            *fold_reads.entry(*v).or_default() += 1;
        }
    }
    let mut live: HashMap<ValueId, crate::exec::Tensor> = HashMap::new();
    let mut kept: Vec<ValueId> = Vec::new();
    for &id in chain {
        let n = g.n(id)?;
        let mut p = Program::new(m.opset());
        let mut inputs = Vec::with_capacity(n.inputs.len());
        for v in &n.inputs {
            inputs.push(match v {
                None => None,
                Some(v) => {
                    let pv = p.add_value(g.name_of(*v));
                    let t = match live.get(v) {
                        Some(t) => t.clone(),
                        None => {
                            let c = g.v(*v)?.constant.as_ref().ok_or_else(|| Error::internal("folded input without data"))?;
                            crate::exec::Tensor::from_proto(&c.proto)?
                        }
                    };
                    p.add_constant(pv, t);
                    Some(pv)
                }
            });
        }
        let outs: Vec<ValueId> = n.outputs.iter().flatten().copied().collect();
        let node_outs: Vec<Option<usize>> = n.outputs.iter().map(|o| o.map(|v| p.add_value(g.name_of(v)))).collect();
        let out_ids: Vec<usize> = node_outs.iter().flatten().copied().collect();
        p.add_node(ExecNode {
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            domain: n.domain.clone(),
            inputs,
            outputs: node_outs,
            attrs: n.attrs.clone(),
        });
        let values = Session::new(p)?.run_from(Vec::new(), &out_ids).map_err(|e| e.context(format!("folding node '{}'", n.name)))?;
        for v in n.inputs.iter().flatten() {
            let left = fold_reads.get_mut(v).expect("counted");
            *left -= 1;
            if *left == 0 && !session_reads.contains(v) {
                live.remove(v);
            }
        }
        for (v, t) in outs.into_iter().zip(values) {
            if fold_reads.contains_key(&v) || session_reads.contains(&v) {
                live.insert(v, t);
                kept.push(v);
            }
        }
    }
    Ok(kept.into_iter().filter(|v| session_reads.contains(v)).filter_map(|v| live.remove(&v).map(|t| (v, t))).collect())
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

/// The nodes [`ModelSession::new`] folds (in `order`: [`FOLDABLE`] ops of the default domain
/// whose inputs are all initializers or folded values, and whose outputs are not graph
/// outputs) and the values they produce.
fn fold_plan(m: &Model, order: &[crate::ir::NodeId]) -> Result<(HashSet<crate::ir::NodeId>, HashSet<ValueId>)> {
    let g = &m.graph;
    let mut constant: HashSet<ValueId> = g.value_ids().filter(|v| g.v(*v).map(|x| x.producer == Producer::Initializer).unwrap_or(false)).collect();
    let mut fold_nodes = HashSet::new();
    let mut folded = HashSet::new();
    for &id in order {
        let n = g.n(id)?;
        if n.domain.is_empty()
            && FOLDABLE.contains(&n.op_type.as_str())
            && n.inputs.iter().flatten().all(|v| constant.contains(v))
            && n.outputs.iter().all(|o| o.is_some())
            && !n.outputs.iter().flatten().any(|o| g.outputs.contains(o))
        {
            fold_nodes.insert(id);
            constant.extend(n.outputs.iter().flatten().copied());
            folded.extend(n.outputs.iter().flatten().copied());
        }
    }
    Ok((fold_nodes, folded))
}
