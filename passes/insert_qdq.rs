//! `insert-qdq`: explicit quantization by TensorRT's Q/DQ placement recommendations.
//!
//! - Every data input of Conv, ConvTranspose, Gemm and MatMul gets a per-tensor symmetric
//!   INT8 QuantizeLinear → DequantizeLinear pair with the calibrated scale (zero point 0).
//! - Every constant weight of those ops gets per-output-channel symmetric INT8 Q/DQ,
//!   scale = max|w|/127 per channel: axis 0 for Conv and Gemm with transB=1, axis 1 for
//!   ConvTranspose (group 1) and Gemm with transB=0, the last axis for MatMul. The weight
//!   stays a float initializer feeding Q → DQ (2:4 zeros stay visible to TensorRT);
//!   `weights=int8` stores pre-quantized INT8 weights feeding DQ instead.
//!   `per-channel=false` gives each weight one scale (max|w|/127 over the tensor).
//! - A MatMul (or Gemm) whose two operands are both activations — the attention batched
//!   MatMuls Q·Kᵀ and softmax·V — stays float unless `attention=true`; then both operands
//!   get per-tensor Q/DQ, which is the placement TensorRT's INT8 fused MHA needs (before
//!   the first BMM, after the softmax, and V; the output of the second BMM is quantized by
//!   the output projection's input Q/DQ, through the Transpose/Reshape that commute with
//!   it). See docs/quantization-rules.md.
//! - A residual Add gets Q/DQ on its skip input, so TensorRT can fuse conv + add in INT8,
//!   when the other input comes from a Conv/ConvTranspose/Gemm. A residual Add after a
//!   MatMul (a transformer's residual stream, read by a float LayerNorm) stays float.
//! - Outputs of weighted ops are not quantized unless `int8-outputs=true` (after the fused
//!   activation, if any).
//! - Biases stay float. One Q/DQ pair per tensor is shared by all consumers, so no
//!   DQ → Q pair with equal scales is ever created.
//! Layers matching `exclude`, or annotated `sparseqc.keep-float=true`, stay float.

use crate::ir::edit::node_label;
use crate::error::{Error, Result};
use crate::ir::{Graph, Model, NodeId, Position, Producer, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, Pattern, ReportItem};
use std::collections::HashMap;

pub const NAME: &str = "insert-qdq";
/// Node annotation: keep this layer in float (`true`); shared with plugins.
pub use crate::pass::KEEP_FLOAT;

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("exclude", OptionKind::Str, "", "layers kept float: name globs or op:Type, separated by |"),
    OptionSpec::new("int8-outputs", OptionKind::Bool, "false", "also quantize outputs of weighted ops (INT8-in/INT8-out GEMMs)"),
    OptionSpec::new("weights", OptionKind::Str, "qdq", "qdq: float weights through Q->DQ; int8: INT8 initializers through DQ"),
    OptionSpec::new("per-channel", OptionKind::Bool, "true", "weights: one scale per output channel (false: one per tensor)"),
    OptionSpec::new("residual", OptionKind::Bool, "true", "quantize the skip input of residual Adds"),
    OptionSpec::new("attention", OptionKind::Bool, "false", "also quantize MatMuls whose both operands are activations (attention Q·Kᵀ and softmax·V), as TensorRT's INT8 fused MHA needs"),
    OptionSpec::new("allow-missing-scales", OptionKind::Bool, "false", "leave a layer float when a tensor has no scale"),
];

use crate::qdq::{add_qdq_pair, insert_weight_qdq, is_float_activation, is_weighted, output_tensor, residual_skip_input};

pub struct InsertQdq {
    exclude: Pattern,
    int8_outputs: bool,
    int8_weights: bool,
    per_channel: bool,
    residual: bool,
    attention: bool,
    allow_missing: bool,
}

impl InsertQdq {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        let int8_weights = match o.str("weights").unwrap_or("qdq") {
            "qdq" => false,
            "int8" => true,
            w => return Err(Error::usage(format!("insert-qdq: weights must be qdq or int8, not '{w}'"))),
        };
        Ok(InsertQdq {
            exclude: Pattern::parse(o.str("exclude").unwrap_or("")),
            int8_outputs: o.bool("int8-outputs", false)?,
            int8_weights,
            per_channel: o.bool("per-channel", true)?,
            residual: o.bool("residual", true)?,
            attention: o.bool("attention", false)?,
            allow_missing: o.bool("allow-missing-scales", false)?,
        })
    }
}

struct Inserter {
    /// tensor → its dequantized replacement (one pair per tensor)
    dq_of: HashMap<ValueId, ValueId>,
}

impl Inserter {
    /// x → Q → DQ for an activation with per-tensor `scale`; returns the DQ output.
    fn activation(&mut self, g: &mut Graph, x: ValueId, scale: f32) -> Result<ValueId> {
        if let Some(d) = self.dq_of.get(&x) {
            return Ok(*d);
        }
        let base = g.name_of(x).to_string();
        let s = g.add_fresh_initializer(&format!("{base}_scale"), Tensor::from_f32("", &[], &[scale]));
        let z = g.add_fresh_initializer(&format!("{base}_zero_point"), Tensor::from_i8("", &[], &[0]));
        let pos = match g.v(x)?.producer {
            Producer::Node(p, _) => Position::After(p),
            _ => match g.node_ids().first() {
                Some(first) => Position::Before(*first),
                None => Position::End,
            },
        };
        let d = add_qdq_pair(g, x, s, z, pos)?;
        self.dq_of.insert(x, d);
        Ok(d)
    }
}

/// Rewires the consumers of `x` listed in `uses` (node, slot) to read `d`.
fn rewire(g: &mut Graph, uses: &[(NodeId, usize)], d: ValueId) -> Result<()> {
    for (n, slot) in uses {
        g.set_input(*n, *slot, Some(d))?;
    }
    Ok(())
}

impl Pass for InsertQdq {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        if m.opset() < 13 {
            return Err(Error::user(format!(
                "per-channel QuantizeLinear/DequantizeLinear needs ONNX opset 13 or later; this model imports opset {}. \
                 Convert it first (e.g. onnx.version_converter) and run sparseqc again",
                m.opset()
            )));
        }
        crate::ir::shape::infer(&mut m.graph)?;
        let g = &mut m.graph;
        let order = g.topo_order()?;
        let mut ins = Inserter { dq_of: HashMap::new() };
        let (mut n_int8, mut n_float) = (0usize, 0usize);
        let scale_of = |g: &Graph, v: ValueId| -> Option<f32> { g.value(v)?.quant.as_ref().map(|q| q.scale).filter(|s| *s > 0.0 && s.is_finite()) };

        for id in order.iter().copied() {
            let Some(n) = g.node(id).cloned() else { continue };
            if !is_weighted(&n.op_type) {
                continue;
            }
            let label = node_label(g, id);
            if self.exclude.matches_any(&label, &n.op_type) || n.annotation(KEEP_FLOAT) == Some("true") {
                let why = if n.annotation(KEEP_FLOAT) == Some("true") { "annotated sparseqc.keep-float" } else { "matches the exclude pattern" };
                rep.item(ReportItem::new(&label, &n.op_type, "kept-float", why));
                n_float += 1;
                continue;
            }
            let x = n.inputs.first().copied().flatten().ok_or_else(|| Error::user(format!("{label}: no data input")))?;
            let w_in = n.inputs.get(1).copied().flatten().ok_or_else(|| Error::user(format!("{label}: no weight input")))?;
            let w_const = g.constant(w_in).cloned();
            if w_const.is_none() && !self.attention && is_float_activation(g, w_in) {
                rep.item(ReportItem::new(
                    &label,
                    &n.op_type,
                    "kept-float",
                    "both operands are activations (attention batched MatMul): float unless insert-qdq{attention=true}",
                ));
                n_float += 1;
                continue;
            }
            // every activation input needs a scale
            let mut acts = vec![(0usize, x)];
            if w_const.is_none() {
                acts.push((1, w_in));
            }
            let mut missing = None;
            for (_, v) in &acts {
                if !is_float_activation(g, *v) {
                    continue;
                }
                if scale_of(g, *v).is_none() {
                    missing = Some(g.name_of(*v).to_string());
                }
            }
            if let Some(t) = missing {
                if self.allow_missing {
                    rep.item(ReportItem::new(&label, &n.op_type, "kept-float", format!("tensor '{t}' has no calibration scale (allow-missing-scales)")));
                    n_float += 1;
                    continue;
                }
                return Err(Error::user(format!(
                    "tensor '{t}' (input of {} '{label}') has no calibration scale; run the calibrate pass first, give --calib-cache, \
                     or use insert-qdq{{allow-missing-scales}} to leave such layers float",
                    n.op_type
                )));
            }
            let why = if w_const.is_none() {
                "attention batched MatMul: both operands INT8, the placement TensorRT's INT8 fused MHA needs (attention=true)"
            } else {
                "INT8 inputs and weights (TensorRT Q/DQ placement rule 1)"
            };
            let mut details = ReportItem::new(&label, &n.op_type, "quantized", why);
            for (slot, v) in acts {
                if !is_float_activation(g, v) {
                    continue;
                }
                let s = scale_of(g, v).expect("checked above");
                let d = ins.activation(g, v, s)?;
                rewire(g, &[(id, slot)], d)?;
                details = details.with(if slot == 0 { "input_scale" } else { "b_scale" }, s as f64);
            }
            if let Some(wt) = w_const {
                let (ax, nsc) = insert_weight_qdq(g, id, w_in, &wt, self.int8_weights, self.per_channel, &label)?;
                details = details.with("weight_axis", ax.map(|a| a as i64).unwrap_or(-1)).with("weight_channels", nsc);
            }
            if self.int8_outputs {
                if let Some(o) = output_tensor(g, id) {
                    match scale_of(g, o) {
                        Some(s) => {
                            let uses: Vec<(NodeId, usize)> = g.v(o)?.uses.iter().map(|u| (u.node, u.slot)).collect();
                            if !uses.is_empty() {
                                let d = ins.activation(g, o, s)?;
                                rewire(g, &uses, d)?;
                                details = details.with("output_scale", s as f64);
                            }
                        }
                        None if self.allow_missing => {}
                        None => {
                            return Err(Error::user(format!(
                                "tensor '{}' (output of '{label}', int8-outputs) has no calibration scale",
                                g.name_of(o)
                            )))
                        }
                    }
                }
            }
            rep.item(details);
            n_int8 += 1;
        }

        let mut n_res = 0;
        if self.residual {
            for id in order {
                if g.node(id).is_none() {
                    continue;
                }
                let Some(slot) = residual_skip_input(g, id) else { continue };
                let label = node_label(g, id);
                let v = g.n(id)?.inputs[slot].expect("checked");
                if g.producer_node(v).map(|(_, p)| p.op_type == "DequantizeLinear").unwrap_or(false) {
                    continue;
                }
                match scale_of(g, v) {
                    Some(s) => {
                        let d = ins.activation(g, v, s)?;
                        rewire(g, &[(id, slot)], d)?;
                        rep.item(
                            ReportItem::new(&label, "Add", "quantized-skip", format!("Q/DQ on skip input '{}' so TensorRT can fuse conv + add in INT8", g.name_of(v)))
                                .with("scale", s as f64),
                        );
                        n_res += 1;
                    }
                    None if self.allow_missing => {
                        rep.item(ReportItem::new(&label, "Add", "kept-float", format!("skip input '{}' has no scale", g.name_of(v))));
                    }
                    None => {
                        return Err(Error::user(format!(
                            "tensor '{}' (skip input of residual Add '{label}') has no calibration scale",
                            g.name_of(v)
                        )))
                    }
                }
            }
        }
        rep.changed = n_int8 + n_res > 0;
        rep.summary = format!("{n_int8} layers INT8, {n_float} kept float, {n_res} residual skip inputs quantized");
        rep.stat("int8_layers", n_int8);
        rep.stat("float_layers", n_float);
        rep.stat("residual_adds", n_res);
        Ok(rep)
    }
}
