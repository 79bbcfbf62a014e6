//! `sparseqc inspect`: op histogram, parameter count, and per weight tensor its dtype,
//! shape, zero fraction and TensorRT 2:4 status along the right axis.

use crate::error::Result;
use crate::ir::{Graph, Model, NodeId, ValueId};
use crate::pass::Pattern;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct WeightInfo {
    pub tensor: String,
    /// The layer (node) consuming it as a weight, if any.
    pub layer: String,
    pub op: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    pub zero_fraction: f64,
    /// The axis TensorRT groups along (None for tensors that are not GEMM/conv weights).
    pub axis: Option<usize>,
    /// `Some(true)` when every group of 4 along `axis` has at least 2 zeros.
    pub sparse_2of4: Option<bool>,
    /// Groups checked / groups violating.
    pub groups: usize,
    pub violations: usize,
    /// Why no check was made, if none.
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub parameters: u64,
    pub initializers: usize,
    pub weights: Vec<WeightInfo>,
}

/// Finds the constant weight feeding input `slot` of a node, looking through
/// DequantizeLinear, QuantizeLinear, Transpose, Cast and Identity (like Polygraphy).
/// Returns the constant value and the Transpose perm met on the way (if any).
pub fn find_weight(g: &Graph, node: NodeId, slot: usize) -> Option<(ValueId, Option<Vec<i64>>)> {
    let mut v = g.node(node)?.inputs.get(slot).copied().flatten()?;
    let mut perm = None;
    for _ in 0..8 {
        if g.constant(v).is_some() {
            return Some((v, perm));
        }
        let (_, p) = g.producer_node(v)?;
        match p.op_type.as_str() {
            "DequantizeLinear" | "QuantizeLinear" | "Cast" | "Identity" => v = p.inputs.first().copied().flatten()?,
            "Transpose" => {
                perm = Some(p.attr_ints("perm").map(|x| x.to_vec()).unwrap_or_default());
                v = p.inputs.first().copied().flatten()?
            }
            _ => return None,
        }
    }
    None
}

/// The axis TensorRT's 2:4 rule groups along for a weight of `op` with rank `rank`
/// (Conv: input channels, axis 1; Gemm B: axis 0, or 1 with transB; MatMul B: rows,
/// the second-to-last axis). `transposed` tells that a Transpose sits between.
pub fn sparsity_axis(g: &Graph, node: NodeId, slot: usize, rank: usize, perm: Option<&[i64]>) -> Option<usize> {
    let n = g.node(node)?;
    use crate::sparsity::{reduction_axis, WeightedKind};
    let axis = match (n.op_type.as_str(), slot) {
        ("Conv", 1) => reduction_axis(WeightedKind::Conv { group: n.attr_i("group").unwrap_or(1) }, rank)?,
        ("Gemm", 1) if rank == 2 => reduction_axis(WeightedKind::MatMulB { transposed: n.attr_i("transB").unwrap_or(0) != 0 }, rank)?,
        ("MatMul", 1) => reduction_axis(WeightedKind::MatMulB { transposed: false }, rank)?,
        _ => return None,
    };
    match perm {
        // the consumer sees axis `axis` of the transposed tensor = axis perm[axis] of the constant
        Some(p) if !p.is_empty() => p.get(axis).map(|&a| a as usize),
        _ => Some(axis),
    }
}

/// `Some(true)` when the layer's constant weight is 2:4 along TensorRT's axis (every group
/// of 4 input channels has at least 2 zeros), `Some(false)` when it is not, None when the
/// layer has no such axis (grouped conv, channels not a multiple of 4, no constant weight).
pub fn weight_is_2of4(g: &Graph, id: NodeId) -> Result<Option<bool>> {
    let Some((w, perm)) = find_weight(g, id, 1) else { return Ok(None) };
    let Some(t) = g.constant(w) else { return Ok(None) };
    let shape = t.shape();
    let Some(axis) = sparsity_axis(g, id, 1, shape.len(), perm.as_deref()) else { return Ok(None) };
    if shape.get(axis).map(|c| c % 4 != 0).unwrap_or(true) {
        return Ok(None);
    }
    let Ok(vals) = t.to_f32() else { return Ok(None) };
    let layout = crate::sparsity::GroupLayout::new(&shape, axis)?;
    Ok(Some(crate::sparsity::check_2of4(&vals, &layout)?.ok))
}

pub fn inspect(model: &Model) -> Result<InspectReport> {
    let g = &model.graph;
    let mut ops = BTreeMap::new();
    for id in g.node_ids() {
        let n = g.n(id)?;
        let key = if n.domain.is_empty() { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
        *ops.entry(key).or_insert(0) += 1;
    }
    let mut parameters = 0u64;
    let mut weights = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // weights by layer first, in topological order
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul" | "ConvTranspose") {
            continue;
        }
        let Some((w, perm)) = find_weight(g, id, 1) else { continue };
        let t = g.constant(w).expect("find_weight returns constants");
        seen.insert(w);
        let rank = t.dims().len();
        let axis = sparsity_axis(g, id, 1, rank, perm.as_deref());
        let mut info = WeightInfo {
            tensor: g.name_of(w).to_string(),
            layer: n.name.clone(),
            op: n.op_type.clone(),
            dtype: crate::ir::tensor::dtype_name(t.dtype()).to_string(),
            shape: t.dims().to_vec(),
            zero_fraction: t.zero_fraction().unwrap_or(0.0),
            axis,
            sparse_2of4: None,
            groups: 0,
            violations: 0,
            note: String::new(),
        };
        match axis {
            None => {
                info.note = if n.op_type == "Conv" && n.attr_i("group").unwrap_or(1) != 1 {
                    "grouped/depthwise conv: TensorRT has no sparse kernels for it".into()
                } else {
                    "not a 2:4 candidate".into()
                }
            }
            Some(ax) => {
                let shape: Vec<usize> = t.shape();
                match (crate::sparsity::GroupLayout::try_new(&shape, ax), t.to_f32()) {
                    (Err(crate::sparsity::Ineligible::NotMultipleOf4 { len }), _) => {
                        info.note = format!("axis {ax} length {len} is not a multiple of 4")
                    }
                    (Err(why), _) => info.note = format!("axis {ax}: {why}"),
                    (Ok(l), Ok(vals)) => {
                        let c = crate::sparsity::check_2of4(&vals, &l)?;
                        info.groups = c.groups;
                        info.violations = c.violating_groups;
                        info.sparse_2of4 = Some(c.ok);
                    }
                    (Ok(_), Err(_)) => info.note = "weight data not readable as float".into(),
                }
            }
        }
        weights.push(info);
    }
    for v in g.initializers.iter() {
        let t = match g.value(*v).and_then(|x| x.constant.as_ref()) {
            Some(t) => t,
            None => continue,
        };
        parameters += t.numel().unwrap_or(0) as u64;
        if seen.contains(v) {
            continue;
        }
        weights.push(WeightInfo {
            tensor: g.name_of(*v).to_string(),
            layer: String::new(),
            op: String::new(),
            dtype: crate::ir::tensor::dtype_name(t.dtype()).to_string(),
            shape: t.dims().to_vec(),
            zero_fraction: t.zero_fraction().unwrap_or(0.0),
            axis: None,
            sparse_2of4: None,
            groups: 0,
            violations: 0,
            note: String::new(),
        });
    }
    Ok(InspectReport { nodes: g.node_count(), ops, parameters, initializers: g.initializers.len(), weights })
}

pub fn format_report(r: &InspectReport, sparsity_only: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "nodes: {}   parameters: {}   initializers: {}", r.nodes, r.parameters, r.initializers);
    if !sparsity_only {
        let _ = writeln!(s, "ops:");
        for (k, v) in &r.ops {
            let _ = writeln!(s, "  {k:<28} {v}");
        }
    }
    let _ = writeln!(s, "weights:");
    let _ = writeln!(s, "  {:<36} {:<24} {:<8} {:<18} {:>7}  2:4", "tensor", "layer", "dtype", "shape", "zeros");
    for w in &r.weights {
        if sparsity_only && w.layer.is_empty() {
            continue;
        }
        let status = match (w.sparse_2of4, w.axis) {
            (Some(true), Some(a)) => format!("yes (axis {a}, {} groups)", w.groups),
            (Some(false), Some(a)) => format!("NO (axis {a}: {} of {} groups have < 2 zeros)", w.violations, w.groups),
            _ if !w.note.is_empty() => format!("- ({})", w.note),
            _ => "-".into(),
        };
        let shape = format!("{:?}", w.shape).replace(' ', "");
        let _ = writeln!(s, "  {:<36} {:<24} {:<8} {:<18} {:>6.1}%  {}", w.tensor, w.layer, w.dtype, shape, 100.0 * w.zero_fraction, status);
    }
    s
}

/// What `--require-2of4 PATTERN` found.
#[derive(Debug, Clone, Default)]
pub struct Require2of4 {
    /// Layers matching the pattern that could be 2:4 and are not.
    pub failing: Vec<String>,
    /// Layers matching the pattern that can never be 2:4 (grouped/depthwise conv, an axis
    /// that is not a multiple of 4, no 2:4 axis), with the reason; not held against the model.
    pub skipped: Vec<(String, String)>,
    /// Layers matching the pattern that were checked.
    pub checked: usize,
}

/// Checks the layers matching `pat`. A pattern that matches no layer is a usage error (a
/// typo in a CI guard must not pass).
pub fn require_2of4(r: &InspectReport, pat: &Pattern) -> crate::error::Result<Require2of4> {
    let mut out = Require2of4::default();
    let mut matched = 0;
    for w in r.weights.iter().filter(|w| !w.layer.is_empty() && pat.matches_any(&w.layer, &w.op)) {
        matched += 1;
        match w.sparse_2of4 {
            Some(true) => out.checked += 1,
            Some(false) => {
                out.checked += 1;
                out.failing.push(w.layer.clone());
            }
            None => out.skipped.push((w.layer.clone(), if w.note.is_empty() { "no 2:4 axis".to_string() } else { w.note.clone() })),
        }
    }
    if matched == 0 {
        let layers: Vec<&str> = r.weights.iter().filter(|w| !w.layer.is_empty()).map(|w| w.layer.as_str()).take(8).collect();
        return Err(crate::error::Error::usage(format!(
            "--require-2of4: the pattern matches no layer with a constant weight (layers: {}{})",
            if layers.is_empty() { "none".to_string() } else { layers.join(", ") },
            if r.weights.iter().filter(|w| !w.layer.is_empty()).count() > 8 { ", ..." } else { "" }
        )));
    }
    Ok(out)
}
