//! TensorRT's explicit-quantization placement rules: which tensors of a graph get Q/DQ
//! (the data inputs and weights of Conv/ConvTranspose/Gemm/MatMul, the skip input of a
//! residual Add) and the per-channel axis of each weight. `insert-qdq` places Q/DQ by these
//! rules; `calibrate` measures exactly the tensors they name ([`tensors_to_calibrate`]).

use crate::error::Result;
use crate::ir::{Graph, NodeId, ValueId};

pub fn is_weighted(op: &str) -> bool {
    matches!(op, "Conv" | "ConvTranspose" | "Gemm" | "MatMul")
}

pub fn is_float_activation(g: &Graph, v: ValueId) -> bool {
    let Some(val) = g.value(v) else { return false };
    if g.constant(v).is_some() {
        return false;
    }
    if let Some((_, p)) = g.producer_node(v) {
        if p.op_type == "Constant" || p.op_type == "DequantizeLinear" {
            return false;
        }
    }
    val.ty.as_ref().map(|t| t.elem == 1 || t.elem == 0).unwrap_or(true)
}

/// The per-channel axis of a weighted op's weight (None: per-tensor).
pub fn weight_axis(op: &str, node: &crate::ir::Node, rank: usize) -> Option<usize> {
    match op {
        "Conv" => Some(0),
        "ConvTranspose" if node.attr_i("group").unwrap_or(1) == 1 => Some(1),
        "Gemm" if rank == 2 => Some(if node.attr_i("transB").unwrap_or(0) != 0 { 0 } else { 1 }),
        "MatMul" if rank >= 2 => Some(rank - 1),
        _ => None,
    }
}

/// The input of a residual Add that should be quantized (the skip branch), if any: the
/// other input is the one TensorRT fuses into its producing conv.
pub fn residual_skip_input(g: &Graph, add: NodeId) -> Option<usize> {
    let n = g.node(add)?;
    if n.op_type != "Add" || n.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (n.inputs[0]?, n.inputs[1]?);
    if !is_float_activation(g, a) || !is_float_activation(g, b) {
        return None;
    }
    // TensorRT fuses the Add into a Conv (or Gemm) epilogue; a MatMul's output in a
    // transformer is the residual stream, summed in float and read by a float LayerNorm.
    let fusable = |v: ValueId| -> bool {
        g.producer_node(v).map(|(_, p)| matches!(p.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm")).unwrap_or(false)
            && g.value(v).map(|x| x.uses.len() == 1).unwrap_or(false)
    };
    match (fusable(a), fusable(b)) {
        (true, _) => Some(1),
        (false, true) => Some(0),
        _ => None,
    }
}

/// For `int8-outputs`: the tensor to quantize after a weighted op: the output of a
/// single following ReLU/Clip (which TensorRT fuses), else the op's own output.
pub fn output_tensor(g: &Graph, node: NodeId) -> Option<ValueId> {
    let out = g.node(node)?.outputs.first().copied().flatten()?;
    let v = g.value(out)?;
    if v.uses.len() == 1 && !g.is_graph_output(out) {
        let c = g.node(v.uses[0].node)?;
        if matches!(c.op_type.as_str(), "Relu" | "Clip" | "LeakyRelu" | "Sigmoid") {
            return c.outputs.first().copied().flatten();
        }
    }
    Some(out)
}

/// Every activation tensor a Q/DQ placement may need a scale for (the calibrate pass
/// measures these): data inputs and outputs of weighted ops and residual Add inputs.
pub fn tensors_to_calibrate(g: &Graph) -> Result<Vec<ValueId>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |v: ValueId, out: &mut Vec<ValueId>| {
        if seen.insert(v) {
            out.push(v)
        }
    };
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if is_weighted(&n.op_type) {
            for (slot, i) in n.inputs.iter().enumerate().take(2) {
                if let Some(v) = i {
                    if (slot == 0 || g.constant_value(*v).is_none()) && is_float_activation(g, *v) {
                        push(*v, &mut out);
                    }
                }
            }
            if let Some(o) = output_tensor(g, id) {
                push(o, &mut out);
            }
        } else if n.op_type == "Add" {
            if residual_skip_input(g, id).is_some() {
                for v in n.inputs.iter().flatten() {
                    push(*v, &mut out);
                }
            }
        }
    }
    Ok(out)
}
