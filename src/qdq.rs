//! TensorRT's explicit-quantization placement rules: which tensors of a graph get Q/DQ
//! (the data inputs and weights of Conv/ConvTranspose/Gemm/MatMul, the skip input of a
//! residual Add) and the per-channel axis of each weight. `insert-qdq` places Q/DQ by these
//! rules; `calibrate` measures exactly the tensors they name ([`tensors_to_calibrate`]);
//! `check-qdq` and `testing::check_qdq` check a graph against them ([`layer_violations`]).
//! The two edits `insert-qdq` and `check-qdq` share are here too ([`add_qdq_pair`],
//! [`insert_weight_qdq`]).

use crate::error::Result;
use crate::inspect::find_weight;
use crate::ir::{attr_int, Graph, Model, NodeId, NodeSpec, Position, Tensor, ValueId};

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
        } else if n.op_type == "Add" && residual_skip_input(g, id).is_some() {
            for v in n.inputs.iter().flatten() {
                push(*v, &mut out);
            }
        }
    }
    Ok(out)
}

/// Whether the model carries any QuantizeLinear/DequantizeLinear node.
pub fn has_qdq(m: &Model) -> bool {
    let g = &m.graph;
    g.node_ids().iter().any(|id| g.node(*id).map(|n| matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear")).unwrap_or(false))
}

/// Whether `v` is the output of a DequantizeLinear.
pub fn from_dq(g: &Graph, v: Option<ValueId>) -> bool {
    v.and_then(|v| g.producer_node(v)).map(|(_, p)| p.op_type == "DequantizeLinear").unwrap_or(false)
}

/// Whether a weighted layer has any Q/DQ on its data input or weight.
pub fn is_quantized_layer(g: &Graph, id: NodeId) -> bool {
    g.node(id).map(|n| from_dq(g, n.inputs.first().copied().flatten()) || from_dq(g, n.inputs.get(1).copied().flatten())).unwrap_or(false)
}

/// TensorRT's placement rules for one weighted layer, as messages (empty: it follows them).
/// Shared with `sparseqc::testing::check_qdq`, which applies them to every selected layer.
pub fn layer_violations(g: &Graph, id: NodeId) -> Result<Vec<String>> {
    let n = g.n(id)?;
    let mut msgs = Vec::new();
    // An attention batched MatMul (both operands activations) may stay float as a whole
    // (insert-qdq's default); quantized, both operands must be.
    let from_dq = |slot: usize| {
        n.inputs.get(slot).copied().flatten().and_then(|v| g.producer_node(v)).is_some_and(|(_, p)| p.op_type == "DequantizeLinear")
    };
    if crate::inspect::find_weight(g, id, 1).is_none() && !from_dq(0) && !from_dq(1) {
        return Ok(msgs);
    }
    for slot in [0usize, 1] {
        let role = if slot == 0 { "data input" } else { "weight" };
        let Some(v) = n.inputs.get(slot).copied().flatten() else {
            msgs.push(format!("has no {role}"));
            continue;
        };
        let Some((dq_id, dq)) = g.producer_node(v).filter(|(_, p)| p.op_type == "DequantizeLinear") else {
            let from = match (g.producer_node(v), g.value(v).map(|x| x.producer)) {
                (Some((_, p)), _) => format!("it comes from {}", p.describe()),
                (None, Some(crate::ir::Producer::GraphInput)) => "it is a graph input".to_string(),
                (None, Some(crate::ir::Producer::Initializer)) => "it is a float constant".to_string(),
                _ => "it has no producer".to_string(),
            };
            msgs.push(format!("{role} '{}' does not come from a DequantizeLinear ({from})", g.name_of(v)));
            continue;
        };
        check_zero_point(g, dq_id, role, &mut msgs);
        // the quantized tensor: a constant (weights) or a QuantizeLinear (activations)
        let x = dq.inputs.first().copied().flatten();
        if let Some((q_id, _)) = x.and_then(|x| g.producer_node(x)).filter(|(_, p)| p.op_type == "QuantizeLinear") {
            check_zero_point(g, q_id, role, &mut msgs);
        }
        let scale = dq.inputs.get(1).copied().flatten().and_then(|s| g.constant_value(s));
        let scale_len = scale.as_ref().and_then(|s| s.numel().ok()).unwrap_or(1);
        if let Some(s) = &scale {
            if s.to_f32().map(|v| v.iter().any(|x| !(*x > 0.0 && x.is_finite()))).unwrap_or(false) {
                msgs.push(format!("{role}: {} has a scale that is not positive and finite", dq.describe()));
            }
        }
        if slot == 0 {
            if scale_len > 1 {
                msgs.push(format!("data input '{}' is quantized per channel; TensorRT needs one scale per activation tensor", g.name_of(v)));
            }
            continue;
        }
        if scale_len > 1 {
            let weight_dims = x
                .and_then(|x| find_weight(g, dq_id, 0).map(|(w, _)| w).or(Some(x)))
                .and_then(|w| g.constant(w).map(|t| t.dims().to_vec()).or_else(|| g.value(w).and_then(|v| v.ty.as_ref()?.static_dims())));
            let Some(dims) = weight_dims else {
                msgs.push("per-channel weight of unknown shape".into());
                continue;
            };
            let rank = dims.len();
            let axis = dq.attr_i("axis").unwrap_or(1);
            let axis = if axis < 0 { axis + rank as i64 } else { axis };
            match weight_axis(&n.op_type, n, rank) {
                Some(w) if axis != w as i64 => msgs.push(format!(
                    "weight scale runs along axis {axis}, but the output channels of a {} weight {:?} are on axis {w}",
                    n.op_type, dims
                )),
                Some(w) if dims.get(w).copied() != Some(scale_len as i64) => {
                    msgs.push(format!("weight scale has {scale_len} values for {} output channels", dims.get(w).copied().unwrap_or(0)))
                }
                _ => {}
            }
        }
    }
    Ok(msgs)
}

/// Zero-point rules for one QuantizeLinear/DequantizeLinear.
fn check_zero_point(g: &Graph, id: NodeId, role: &str, msgs: &mut Vec<String>) {
    let Some(n) = g.node(id) else { return };
    let zp: Option<ValueId> = n.inputs.get(2).copied().flatten();
    match zp {
        None => {
            // DequantizeLinear takes its type from x; QuantizeLinear defaults to uint8
            // unless output_dtype says otherwise (opset 21).
            if n.op_type == "QuantizeLinear" && n.attr_i("output_dtype").unwrap_or(0) != 3 {
                msgs.push(format!("{role}: {} has no zero point, so it yields uint8; TensorRT needs int8 with zero point 0", n.describe()));
            }
            if n.op_type == "DequantizeLinear" {
                let x = n.inputs.first().copied().flatten();
                let xt = x.and_then(|x| g.constant(x).map(|t| t.dtype()).or_else(|| g.value(x)?.ty.as_ref().map(|t| t.elem)));
                if let Some(dt) = xt {
                    if dt != 3 && dt != 0 {
                        msgs.push(format!("{role}: {} dequantizes {}; TensorRT needs int8", n.describe(), crate::ir::tensor::dtype_name(dt)));
                    }
                }
            }
        }
        Some(z) => match g.constant_value(z) {
            None => msgs.push(format!("{role}: the zero point of {} is not a constant", n.describe())),
            Some(t) => {
                if t.dtype() != 3 {
                    msgs.push(format!("{role}: the zero point of {} is {}; TensorRT needs int8", n.describe(), crate::ir::tensor::dtype_name(t.dtype())));
                }
                match t.to_i64() {
                    Ok(v) if v.iter().all(|x| *x == 0) => {}
                    Ok(_) => msgs.push(format!("{role}: the zero point of {} is not 0", n.describe())),
                    Err(e) => msgs.push(format!("{role}: the zero point of {}: {}", n.describe(), e.message)),
                }
            }
        },
    }
}

/// Adds `x` → QuantizeLinear(s, z) → DequantizeLinear(s, z) at `pos` (per tensor; values
/// named after `x`, typed INT8 and like `x`); returns the DequantizeLinear's output.
pub fn add_qdq_pair(g: &mut Graph, x: ValueId, s: ValueId, z: ValueId, pos: Position) -> Result<ValueId> {
    let base = g.name_of(x).to_string();
    let q = g.add_fresh_value(&format!("{base}_quantized"));
    let d = g.add_fresh_value(&format!("{base}_dequantized"));
    let ty = g.v(x)?.ty.clone();
    if let Some(v) = g.value_mut(q) {
        v.ty = ty.clone().map(|mut t| {
            t.elem = 3;
            t
        });
    }
    if let Some(v) = g.value_mut(d) {
        v.ty = ty;
    }
    let qn = g.add_node(NodeSpec::new("QuantizeLinear", &format!("{base}_QuantizeLinear"), vec![Some(x), Some(s), Some(z)], vec![Some(q)]), pos)?;
    g.add_node(NodeSpec::new("DequantizeLinear", &format!("{base}_DequantizeLinear"), vec![Some(q), Some(s), Some(z)], vec![Some(d)]), Position::After(qn))?;
    Ok(d)
}

/// Quantizes the constant weight `w_in` (data `wt`) of weighted node `id` per output
/// channel (scale max|w|/127, axis by [`weight_axis`]; `per_channel` false: one scale), as `insert-qdq` does: Q → DQ in
/// front of the node, or with `int8_weights` an INT8 initializer → DQ. Returns the scale
/// axis (None: per tensor) and the number of scales.
pub fn insert_weight_qdq(g: &mut Graph, id: NodeId, w_in: ValueId, wt: &Tensor, int8_weights: bool, per_channel: bool, label: &str) -> Result<(Option<usize>, usize)> {
    let dims = wt.dims().to_vec();
    let data = wt.to_f32().map_err(|e| e.context(format!("weight of {label}")))?;
    let n = g.n(id)?.clone();
    let axis = if per_channel { weight_axis(&n.op_type, &n, dims.len()) } else { None };
    let (scales, ch) = match axis {
        Some(ax) => {
            let c = dims[ax] as usize;
            let inner: usize = dims[ax + 1..].iter().map(|&d| d as usize).product();
            let mut mx = vec![0f32; c];
            // block by block (no division per element): [outer][c][inner]
            for outer in data.chunks((c * inner).max(1)) {
                for (m, chunk) in mx.iter_mut().zip(outer.chunks(inner.max(1))) {
                    *m = chunk.iter().fold(*m, |a, v| a.max(v.abs()));
                }
            }
            (mx.iter().map(|m| if *m > 0.0 { m / 127.0 } else { 1.0 }).collect::<Vec<f32>>(), Some((ax, c, inner)))
        }
        None => {
            let m = data.iter().fold(0f32, |a, v| a.max(v.abs()));
            (vec![if m > 0.0 { m / 127.0 } else { 1.0 }], None)
        }
    };
    let wname = g.name_of(w_in).to_string();
    let sdims: Vec<i64> = if ch.is_some() { vec![scales.len() as i64] } else { vec![] };
    let s = g.add_fresh_initializer(&format!("{wname}_scale"), Tensor::from_f32("", &sdims, &scales));
    let z = g.add_fresh_initializer(&format!("{wname}_zero_point"), Tensor::from_i8("", &sdims, &vec![0i8; scales.len()]));
    let d = g.add_fresh_value(&format!("{wname}_dequantized"));
    if let Some(v) = g.value_mut(d) {
        v.ty = Some(crate::ir::ValueType { elem: 1, shape: Some(dims.iter().map(|&x| crate::ir::Dim::Known(x)).collect()) });
    }
    let axis_attr = |spec: NodeSpec| match ch {
        Some((ax, _, _)) => spec.attr(attr_int("axis", ax as i64)),
        None => spec,
    };
    let dq_src = if int8_weights {
        let quant = |v: f32, sc: f32| (v / sc).round_ties_even().clamp(-127.0, 127.0) as i8;
        let q: Vec<i8> = match ch {
            Some((_, c, inner)) => data
                .chunks((c * inner).max(1))
                .flat_map(|outer| outer.chunks(inner.max(1)).zip(&scales).flat_map(move |(chunk, &sc)| chunk.iter().map(move |&v| quant(v, sc))))
                .collect(),
            None => data.iter().map(|&v| quant(v, scales[0])).collect(),
        };
        g.add_fresh_initializer(&format!("{wname}_int8"), Tensor::from_i8("", &dims, &q))
    } else {
        let q = g.add_fresh_value(&format!("{wname}_quantized"));
        let qn = g.add_node(
            axis_attr(NodeSpec::new("QuantizeLinear", &format!("{wname}_QuantizeLinear"), vec![Some(w_in), Some(s), Some(z)], vec![Some(q)])),
            Position::Before(id),
        )?;
        let _ = qn;
        q
    };
    g.add_node(
        axis_attr(NodeSpec::new("DequantizeLinear", &format!("{wname}_DequantizeLinear"), vec![Some(dq_src), Some(s), Some(z)], vec![Some(d)])),
        Position::Before(id),
    )?;
    g.set_input(id, 1, Some(d))?;
    if int8_weights && g.is_dead(w_in) {
        g.remove_value(w_in)?;
    }
    Ok((ch.map(|c| c.0), scales.len()))
}
