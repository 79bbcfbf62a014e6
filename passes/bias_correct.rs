//! `bias-correct`: after quantization (place it after `insert-qdq`), re-estimates each
//! quantized layer's per-output-channel mean shift on calibration data and folds it into
//! the layer's (float) bias.
//!
//! The float reference is the same graph with every QuantizeLinear → DequantizeLinear pair
//! bypassed. Its per-channel output means of every Conv/Gemm/MatMul are measured once;
//! then, layer by layer in topological order, the quantized network (as corrected so far)
//! runs to the layer's output and the difference of means is added to the bias. Correcting
//! in order lets each layer also absorb the mean shift its quantized inputs carry.
//!
//! With `min-t=T` a channel is corrected only when its mean shift exceeds T standard errors
//! (paired over samples). With `validate=N` (default 32) the last N calibration samples are
//! held out: the output SQNR against the float reference is measured before and after, and
//! the whole correction is undone when it went down. Opt-in: not in the default pipelines.

use super::obs::{forward, load_samples};
use super::util::{node_label, set_const_input};
use crate::error::Result;
use crate::ir::{Model, NodeId, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, Pattern, ReportItem};

pub const NAME: &str = "bias-correct";
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("samples", OptionKind::Int, "64", "calibration samples used"),
    OptionSpec::new("min-t", OptionKind::Float, "0", "correct a channel only when its shift exceeds this many standard errors (0: always)"),
    OptionSpec::new("exclude", OptionKind::Str, "", "layers left alone: name globs or op:Type, separated by |"),
    OptionSpec::new("validate", OptionKind::Int, "32", "held-out calibration samples on which the corrected model must reproduce the float outputs better, else it is undone (0: no check)"),
];

pub struct BiasCorrect {
    samples: usize,
    min_t: f64,
    exclude: Pattern,
    validate: usize,
}

impl BiasCorrect {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        Ok(BiasCorrect {
            samples: o.int("samples", 64)?.max(1) as usize,
            min_t: o.float("min-t", 0.0)?.max(0.0),
            validate: o.int("validate", 32)?.max(0) as usize,
            exclude: Pattern::parse(o.str("exclude").unwrap_or("")),
        })
    }
}

/// The graph with every Q → DQ pair bypassed (and INT8 weights behind a DQ dequantized).
fn float_reference(m: &Model) -> Result<Model> {
    let mut f = m.clone();
    let g = &mut f.graph;
    for id in g.topo_order()? {
        let Some(n) = g.node(id).cloned() else { continue };
        if n.op_type != "DequantizeLinear" {
            continue;
        }
        let (Some(Some(q_out)), Some(Some(d_out))) = (n.inputs.first().copied(), n.outputs.first().copied()) else { continue };
        let src = match g.producer_node(q_out) {
            Some((_, q)) if q.op_type == "QuantizeLinear" => q.inputs.first().copied().flatten(),
            _ => None,
        };
        if let Some(src) = src {
            g.replace_uses(d_out, src)?;
        }
    }
    Ok(f)
}

fn channel_means(t: &crate::exec::Tensor, k: usize, channel_last: bool, acc: &mut [f64]) -> Result<()> {
    let v = t.as_f32()?;
    let per = (v.len() / k.max(1)).max(1) as f64;
    if channel_last {
        for row in v.chunks(k) {
            for (j, x) in row.iter().enumerate() {
                acc[j] += *x as f64 / per;
            }
        }
    } else {
        let inner = v.len() / k.max(1) / t.shape().first().copied().unwrap_or(1).max(1);
        for (j, c) in v.chunks(inner.max(1)).enumerate() {
            acc[j % k] += c.iter().map(|x| *x as f64).sum::<f64>() / per;
        }
    }
    Ok(())
}

impl Pass for BiasCorrect {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        crate::ir::shape::infer(&mut m.graph)?;
        let mut samples = load_samples(m, ctx, self.samples + self.validate)?;
        // the last `validate` samples are held out (when there are enough to keep some for estimation)
        let held: Vec<_> = if self.validate > 0 && samples.len() > self.validate {
            samples.split_off(samples.len() - self.validate)
        } else {
            samples.clone()
        };
        let before = m.clone();
        // quantized weighted layers with a constant-size output channel count
        let mut layers: Vec<(NodeId, ValueId, usize, bool)> = Vec::new();
        for id in m.graph.topo_order()? {
            let n = m.graph.n(id)?;
            if !matches!(n.op_type.as_str(), "Conv" | "Gemm") {
                continue;
            }
            let w = n.inputs.get(1).copied().flatten();
            let quantized = w.and_then(|w| m.graph.producer_node(w)).map(|(_, p)| p.op_type == "DequantizeLinear").unwrap_or(false);
            if !quantized || self.exclude.matches_any(&node_label(&m.graph, id), &n.op_type) {
                continue;
            }
            let out = n.outputs[0].expect("output");
            let dims = m.graph.v(out)?.ty.as_ref().and_then(|t| t.shape.clone());
            let Some(dims) = dims else { continue };
            let k = match (n.op_type.as_str(), dims.get(1)) {
                ("Conv", Some(crate::ir::Dim::Known(k))) => *k as usize,
                ("Gemm", Some(crate::ir::Dim::Known(k))) => *k as usize,
                _ => continue,
            };
            layers.push((id, out, k, n.op_type == "Gemm"));
        }
        let reference = float_reference(m)?;
        let outs: Vec<ValueId> = layers.iter().map(|l| l.1).collect();
        // per sample (callback) and channel: the float reference's output means
        let mut ref_means: Vec<Vec<Vec<f64>>> = layers.iter().map(|_| Vec::new()).collect();
        forward(&reference, &samples, &outs, &mut |ts| {
            for (i, t) in ts.iter().enumerate() {
                let mut acc = vec![0f64; layers[i].2];
                channel_means(t, layers[i].2, layers[i].3, &mut acc)?;
                ref_means[i].push(acc);
            }
            Ok(())
        })?;
        let mut total_shift = 0f64;
        let (mut kept, mut total) = (0usize, 0usize);
        for (li, (id, out, k, gemm)) in layers.iter().enumerate() {
            // paired differences reference - quantized, per sample and channel
            let mut diffs: Vec<Vec<f64>> = Vec::new();
            forward(m, &samples, &[*out], &mut |ts| {
                let mut acc = vec![0f64; *k];
                channel_means(&ts[0], *k, *gemm, &mut acc)?;
                diffs.push(acc);
                Ok(())
            })?;
            let ns = diffs.len().min(ref_means[li].len());
            let mut shift = vec![0f64; *k];
            for j in 0..*k {
                let d: Vec<f64> = (0..ns).map(|i| ref_means[li][i][j] - diffs[i][j]).collect();
                let mean = d.iter().sum::<f64>() / ns.max(1) as f64;
                let var = if ns > 1 { d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (ns - 1) as f64 } else { 0.0 };
                let se = (var / ns.max(1) as f64).sqrt();
                // a shift that sampling noise explains is left alone
                if self.min_t == 0.0 || mean.abs() > self.min_t * se {
                    shift[j] = mean;
                    kept += 1;
                }
                total += 1;
            }
            let n = m.graph.n(*id)?.clone();
            let beta = if *gemm { n.attr_f("beta").unwrap_or(1.0) as f64 } else { 1.0 };
            if beta == 0.0 {
                continue;
            }
            let old: Vec<f32> = match n.inputs.get(2).copied().flatten() {
                Some(b) => match m.graph.constant_value(b) {
                    Some(t) if t.numel()? == *k => t.to_f32()?,
                    _ => continue,
                },
                None => vec![0.0; *k],
            };
            let mut shift_abs = 0.0;
            let new: Vec<f32> = (0..*k)
                .map(|j| {
                    let s = shift[j];
                    shift_abs += s.abs();
                    (old[j] as f64 + s / beta) as f32
                })
                .collect();
            let label = node_label(&m.graph, *id);
            set_const_input(&mut m.graph, *id, 2, &format!("{label}.bias_corrected"), Tensor::from_f32("", &[*k as i64], &new))?;
            total_shift += shift_abs / *k as f64;
            rep.item(
                ReportItem::new(&label, &n.op_type, "bias-corrected", "output mean shift from quantization folded into the bias")
                    .with("mean_abs_shift", shift_abs / *k as f64),
            );
        }
        if self.validate > 0 && !layers.is_empty() {
            let r = super::calibrate::outputs_of(&reference, &held)?;
            let (db_before, db_after) = (super::calibrate::sqnr_against(&r, &before, &held)?, super::calibrate::sqnr_against(&r, m, &held)?);
            rep.stat("sqnr_db_before", db_before);
            rep.stat("sqnr_db_after", db_after);
            if db_after < db_before {
                *m = before;
                rep.changed = false;
                rep.summary = format!(
                    "bias correction undone: on {} held-out samples it lowered the output SQNR against the float model from {db_before:.2} to {db_after:.2} dB",
                    held.len()
                );
                rep.stat("undone", true);
                return Ok(rep);
            }
        }
        rep.changed = !layers.is_empty();
        rep.summary = format!(
            "{} layers bias-corrected on {} samples: {kept} of {total} channels shifted beyond {} standard errors (mean |shift| {:.2e})",
            layers.len(),
            samples.len(),
            self.min_t,
            total_shift / layers.len().max(1) as f64
        );
        rep.stat("channels_corrected", kept);
        Ok(rep)
    }
}
