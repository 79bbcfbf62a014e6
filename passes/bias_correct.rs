//! `bias-correct`: after quantization (place it after `insert-qdq`; both default pipelines
//! end with it), re-estimates each quantized layer's per-output-channel shift on calibration
//! data and folds it into the layer's (float) bias.
//!
//! The float reference is the same graph with every QuantizeLinear → DequantizeLinear pair
//! bypassed. Its per-channel output means of every Conv/Gemm are measured once. Then one
//! sweep runs the quantized network over the samples in topological order, keeping only the
//! values that cross the cut after each layer: at each layer the shift is measured, folded
//! into the bias and added to the layer's cached output before the layers after it run.
//! Each node runs once (MobileNetV2: 4.3 s instead of 146 s with one forward per layer), and each layer
//! also absorbs the shift its quantized (and already corrected) inputs carry.
//!
//! The shift of a channel is the **median over samples** of the per-sample difference of
//! channel means (`estimator=median`, the default), not their mean: the differences are
//! heavy-tailed (on MobileNetV2's features.16 project conv the mean of one channel's
//! differences is −0.078 while the median is −0.006 and 5 % of the samples lie below −0.42),
//! and moving every sample by a mean that a few samples dominate made the output worse
//! (onnxruntime, 64 held-out samples: 16.19 → 10.14 dB with means, → 16.56 dB with medians).
//!
//! With `min-t=T` a channel is corrected only when its shift exceeds T standard errors
//! (paired over samples). With `validate=N` (default 32) the last N calibration samples are
//! held out: the output SQNR against the float reference is measured before and after, and
//! the whole correction is undone when it went down, so the pass never makes the model
//! reproduce its float form worse on data it did not fit.

use crate::measure::{channel_means, feed, forward, layers_with_channels, load_samples, outputs_of, sqnr_against, FloatObs};
use crate::ir::edit::{node_label, set_const_input};
use crate::error::Result;
use rayon::prelude::*;
use crate::ir::{Model, NodeId, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, Pattern, ReportItem};

pub const NAME: &str = "bias-correct";
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("samples", OptionKind::Int, "64", "calibration samples used"),
    OptionSpec::new("estimator", OptionKind::Str, "median", "per-channel shift: median (robust to the few samples that carry most of the difference) or mean of the per-sample differences"),
    OptionSpec::new("min-t", OptionKind::Float, "0", "correct a channel only when its shift exceeds this many standard errors (0: always)"),
    OptionSpec::new("exclude", OptionKind::Str, "", "layers left alone: name globs or op:Type, separated by |"),
    OptionSpec::new("validate", OptionKind::Int, "32", "held-out calibration samples on which the corrected model must reproduce the float outputs better, else it is undone (0: no check)"),
];

pub struct BiasCorrect {
    samples: usize,
    median: bool,
    min_t: f64,
    exclude: Pattern,
    validate: usize,
}

impl BiasCorrect {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        Ok(BiasCorrect {
            samples: o.int("samples", 64)?.max(1) as usize,
            median: match o.str("estimator").unwrap_or("median") {
                "median" | "" => true,
                "mean" => false,
                v => return Err(crate::error::Error::usage(format!("bias-correct: estimator must be median or mean, not '{v}'"))),
            },
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

/// `t` with `shift[c]` added to every element of channel `c` (axis 1, or the last axis for
/// a Gemm output).
fn add_channel_shift(t: &crate::exec::Tensor, shift: &[f64], channel_last: bool) -> Result<crate::exec::Tensor> {
    let k = shift.len().max(1);
    let mut v = t.as_f32()?.to_vec();
    if channel_last {
        for row in v.chunks_mut(k) {
            row.iter_mut().zip(shift).for_each(|(x, s)| *x = (*x as f64 + s) as f32);
        }
    } else {
        let inner = (v.len() / k / t.shape().first().copied().unwrap_or(1).max(1)).max(1);
        for (j, c) in v.chunks_mut(inner).enumerate() {
            let s = shift[j % k];
            c.iter_mut().for_each(|x| *x = (*x as f64 + s) as f32);
        }
    }
    crate::exec::Tensor::new(t.shape().to_vec(), v)
}

/// The median (mean of the two middle values for an even count; 0 for none).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
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
        let held_apart = self.validate > 0 && samples.len() > self.validate;
        let held: Vec<_> = if held_apart { samples.split_off(samples.len() - self.validate) } else { samples.clone() };
        let before = m.clone();
        // quantized weighted layers with a constant-size output channel count
        let mut layers: Vec<(NodeId, ValueId, usize, bool)> = Vec::new();
        // the same with node labels (to look up calibrate's records)
        let mut labelled: Vec<(String, ValueId, usize, bool)> = Vec::new();
        for (id, label, out, k, gemm) in layers_with_channels(m)? {
            let n = m.graph.n(id)?;
            let w = n.inputs.get(1).copied().flatten();
            let quantized = w.and_then(|w| m.graph.producer_node(w)).map(|(_, p)| p.op_type == "DequantizeLinear").unwrap_or(false);
            if !quantized || self.exclude.matches_any(&label, &n.op_type) {
                continue;
            }
            // the bias must be able to absorb the shift: none yet, or a constant of K values
            let beta = if gemm { n.attr_f("beta").unwrap_or(1.0) } else { 1.0 };
            let bias_ok = match n.inputs.get(2).copied().flatten() {
                None => true,
                Some(b) => m.graph.constant_value(b).map(|t| t.numel().ok() == Some(k)).unwrap_or(false),
            };
            if beta == 0.0 || !bias_ok {
                continue;
            }
            layers.push((id, out, k, gemm));
            labelled.push((label, out, k, gemm));
        }
        if layers.is_empty() {
            // nothing to correct: no forward runs (on BERT-base they cost 2.6 s of `--dense`)
            rep.summary = format!(
                "0 layers bias-corrected: no quantized Conv/Gemm whose bias can absorb a shift ({} Conv/Gemm with a known channel count checked; MatMul layers are not corrected)",
                layers_with_channels(m)?.len()
            );
            rep.stat("channels_corrected", 0);
            return Ok(rep);
        }
        let reference = float_reference(m)?;
        let outs: Vec<ValueId> = layers.iter().map(|l| l.1).collect();
        // per sample and channel: the float reference's output means, and its outputs on the
        // held-out samples; from what `calibrate` recorded when its float model computes the
        // same (checked on the first sample), else by running the reference
        let n_all = samples.len() + if held_apart { held.len() } else { 0 };
        let cached: Option<std::sync::Arc<FloatObs>> = match &ctx.cache.float_obs {
            Some(o) if o.key == FloatObs::key_of(ctx) && o.len() >= n_all && !samples.is_empty() && o.matches(&reference, &samples[0], &labelled)? => Some(o.clone()),
            _ => None,
        };
        let mut ref_means: Vec<Vec<Vec<f64>>> = layers.iter().map(|_| Vec::new()).collect();
        match &cached {
            Some(o) => {
                for (i, l) in labelled.iter().enumerate() {
                    ref_means[i] = o.means[&l.0][..samples.len()].to_vec();
                }
                rep.stat("float_runs_reused", n_all);
            }
            None => forward(&reference, &samples, &outs, &mut |ts| {
                for (i, t) in ts.iter().enumerate() {
                    let mut acc = vec![0f64; layers[i].2];
                    channel_means(t, layers[i].2, layers[i].3, &mut acc)?;
                    ref_means[i].push(acc);
                }
                Ok(())
            })?,
        }
        let mut total_shift = 0f64;
        let (mut kept, mut total) = (0usize, 0usize);
        // One sweep through the quantized network: the samples' values that cross the cut
        // after each layer are kept, so each node runs once; a layer's correction is added
        // to its cached output before the layers after it run (the bias is additive).
        let ms = crate::engine::ModelSession::new(m)?;
        let topo = m.graph.topo_order()?;
        let pos: std::collections::HashMap<NodeId, usize> = topo.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let frontier_after = |t: usize| -> Result<Vec<usize>> {
            let mut v = Vec::new();
            for val in m.graph.value_ids() {
                let x = m.graph.v(val)?;
                if x.constant.is_some() || ms.folded.contains(&val) {
                    continue;
                }
                let made = match m.graph.producer_node(val) {
                    Some((pid, _)) => pos.get(&pid).is_some_and(|p| *p <= t),
                    None => m.graph.inputs.contains(&val),
                };
                if made && x.uses.iter().any(|u| pos.get(&u.node).is_some_and(|p| *p > t)) {
                    v.push(ms.id(val)?);
                }
            }
            Ok(v)
        };
        let mut state = samples.iter().map(|smp| feed(&ms, smp)).collect::<Result<Vec<_>>>()?;
        let mut shifts: Vec<Vec<f64>> = Vec::with_capacity(layers.len());
        for (li, (id, out, k, gemm)) in layers.iter().enumerate() {
            let out_id = ms.id(*out)?;
            let mut targets = vec![out_id];
            let front = frontier_after(pos[id])?;
            targets.extend(front.iter().copied().filter(|v| *v != out_id));
            let results = ms.session.run_batch(std::mem::take(&mut state), &targets)?;
            // paired differences reference - quantized, per sample and channel
            let diffs: Vec<Vec<f64>> = results
                .par_iter()
                .map(|r| {
                    let mut acc = vec![0f64; *k];
                    channel_means(&r[0], *k, *gemm, &mut acc)?;
                    Ok(acc)
                })
                .collect::<Result<_>>()?;
            let ns = diffs.len().min(ref_means[li].len());
            let mut shift = vec![0f64; *k];
            for j in 0..*k {
                let d: Vec<f64> = (0..ns).map(|i| ref_means[li][i][j] - diffs[i][j]).collect();
                let mean = d.iter().sum::<f64>() / ns.max(1) as f64;
                let var = if ns > 1 { d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (ns - 1) as f64 } else { 0.0 };
                let se = (var / ns.max(1) as f64).sqrt();
                let est = if self.median { median(d) } else { mean };
                // a shift that sampling noise explains is left alone
                if self.min_t == 0.0 || est.abs() > self.min_t * se {
                    shift[j] = est;
                    kept += 1;
                }
                total += 1;
            }
            // the next cut: the frontier, with this layer's output moved by the shift
            state = results
                .into_par_iter()
                .map(|r| {
                    let mut next = Vec::with_capacity(front.len());
                    for (t, v) in targets.iter().zip(r) {
                        if !front.contains(t) {
                            continue;
                        }
                        let v = if *t == out_id { add_channel_shift(&v, &shift, *gemm)? } else { v };
                        next.push((*t, v));
                    }
                    Ok(next)
                })
                .collect::<Result<_>>()?;
            shifts.push(shift);
        }
        // the sweep's session goes before the validation below builds two more
        drop(state);
        drop(ms);
        for (li, (id, _out, k, gemm)) in layers.iter().enumerate() {
            let shift = &shifts[li];
            let n = m.graph.n(*id)?.clone();
            let beta = if *gemm { n.attr_f("beta").unwrap_or(1.0) as f64 } else { 1.0 };
            let old: Vec<f32> = match n.inputs.get(2).copied().flatten() {
                Some(b) => m.graph.constant_value(b).ok_or_else(|| crate::error::Error::internal("bias checked above"))?.to_f32()?,
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
            let r = match &cached {
                Some(o) => {
                    let start = if held_apart { samples.len() } else { 0 };
                    o.outputs[start..start + held.len()].to_vec()
                }
                None => outputs_of(&reference, &held)?,
            };
            let (db_before, db_after) = (sqnr_against(&r, &before, &held)?, sqnr_against(&r, m, &held)?);
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
        let channels = if self.min_t > 0.0 { format!("{kept} of {total} channels beyond {} standard errors", self.min_t) } else { format!("{total} channels") };
        let checked = match (rep.stats.get("sqnr_db_before").and_then(|v| v.as_f64()), rep.stats.get("sqnr_db_after").and_then(|v| v.as_f64())) {
            (Some(b), Some(a)) => format!("; output SQNR on {} {} samples {b:.2} -> {a:.2} dB", held.len(), if held_apart { "held-out" } else { "of the same" }),
            _ => String::new(),
        };
        rep.summary = format!(
            "{} layers bias-corrected ({channels}, mean |shift| {:.2e}) from {} samples{checked}{}",
            layers.len(),
            total_shift / layers.len().max(1) as f64,
            samples.len(),
            if cached.is_some() { "; float reference from calibrate's run" } else { "" }
        );
        rep.stat("channels_corrected", kept);
        Ok(rep)
    }
}
