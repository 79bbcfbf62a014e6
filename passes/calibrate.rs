//! `calibrate`: runs the float model on the user's data and annotates every activation
//! tensor that Q/DQ placement may need with its INT8 scale (`Value::quant`), or reads the
//! scales from a TensorRT calibration cache / JSON table (`--calib-cache`).
//!
//! Statistics are collected in one pass over the data (`passes=1`, default): a 2048-bin
//! histogram of |x| on a power-of-two grid that coarsens exactly as larger values arrive
//! ([`calib::GridHistogram`]). `passes=2` runs the data twice instead (max |x|, then the
//! histogram over exactly [0, max]). Both use integer counts, so the scales do not depend on
//! the thread count or the sample order. Samples run in parallel on all cores. Methods: `max`,
//! `percentile` (`percentile=99.99`), `entropy` (default, TensorRT's EntropyCalibration2
//! as published), `mse`; per-tensor overrides with `override=glob=method;glob=method`.

use crate::ir::edit::node_label;
use crate::calib::{self, CalibTable, Method, StatsSet};
use crate::engine::{f32_tensor, ModelSession};
use crate::error::{Error, Result};
use crate::measure::{self, open_calib_source, outputs_of, sqnr_against, FloatObs, SampleCache};
use crate::ir::{Model, QuantInfo, ValueId};
use crate::qdq::tensors_to_calibrate;
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, Pattern, ReportItem};
use rayon::prelude::*;
use std::str::FromStr;

pub const NAME: &str = "calibrate";
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("method", OptionKind::Str, "auto", "auto | max | percentile | entropy | mse (auto: the one whose Q/DQ model reproduces the float outputs best on the data)"),
    OptionSpec::new("auto-samples", OptionKind::Int, "16", "auto: calibration samples the candidate methods are scored on (not given: 16, fewer when each sample's outputs hold many values: enough for 65536 values, at least 4)"),
    OptionSpec::new("percentile", OptionKind::Float, "99.99", "the percentile for method=percentile"),
    OptionSpec::new("override", OptionKind::Str, "", "per-tensor methods: 'glob=method;glob=method' (tensor names)"),
    OptionSpec::new("tensors", OptionKind::Str, "qdq", "qdq: tensors Q/DQ placement may need; all: every float activation"),
    OptionSpec::new("refine", OptionKind::Bool, "false", "then search each tensor's amax (x0.35, x0.5, x0.7, x1.4), last tensors first, for the best output SQNR on the auto samples (one Q/DQ forward per candidate)"),
    OptionSpec::new("passes", OptionKind::Int, "1", "1: one run over the data (power-of-two histogram grid); 2: max first, then a histogram over exactly [0, max]"),
];

pub struct Calibrate {
    /// `None`: auto (chosen per model among [`AUTO_CANDIDATES`]).
    method: Option<Method>,
    auto_samples: usize,
    /// Whether `auto-samples` was given (else it adapts to the output size).
    auto_samples_given: bool,
    refine: bool,
    overrides: Vec<(Pattern, Method)>,
    all: bool,
    passes: usize,
}

fn parse_method(s: &str, percentile: f64) -> Result<Method> {
    let m = Method::from_str(s).map_err(|e| Error::usage(format!("calibrate: {e}")))?;
    Ok(match m {
        Method::Percentile(_) if s == "percentile" => Method::Percentile(percentile),
        m => m,
    })
}

impl Calibrate {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        let p = o.float("percentile", 99.99)?;
        let m = o.str("method").unwrap_or("auto");
        let method = if m.eq_ignore_ascii_case("auto") { None } else { Some(parse_method(m, p)?) };
        let mut overrides = Vec::new();
        for part in o.str("override").unwrap_or("").split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (pat, m) = part
                .rsplit_once('=')
                .ok_or_else(|| Error::usage(format!("calibrate: override '{part}' is not glob=method")))?;
            overrides.push((Pattern::parse(pat), parse_method(m, p)?));
        }
        let all = match o.str("tensors").unwrap_or("qdq") {
            "qdq" => false,
            "all" => true,
            t => return Err(Error::usage(format!("calibrate: tensors must be qdq or all, not '{t}'"))),
        };
        let passes = match o.int("passes", 1)? {
            1 => 1,
            2 => 2,
            p => return Err(Error::usage(format!("calibrate: passes must be 1 or 2, not {p}"))),
        };
        let auto_samples = o.int("auto-samples", 16)?.max(1) as usize;
        let auto_samples_given = o.str("auto-samples").is_some();
        let refine = o.bool("refine", false)?;
        Ok(Calibrate { method, overrides, all, passes, auto_samples, auto_samples_given, refine })
    }
    fn method_for(&self, name: &str, default: Method) -> Method {
        self.overrides.iter().find(|(p, _)| p.matches_any(name, "")).map(|(_, m)| *m).unwrap_or(default)
    }
}

/// Every float activation (node output) of the graph.
fn all_activations(m: &Model) -> Result<Vec<ValueId>> {
    let g = &m.graph;
    let mut out = Vec::new();
    for id in g.topo_order()? {
        for o in g.n(id)?.outputs.iter().flatten() {
            // unknown types are tried too; non-float results are skipped when observed
            let float = g.v(*o)?.ty.as_ref().map(|t| t.elem == 1 || t.elem == 0).unwrap_or(true);
            if float {
                out.push(*o);
            }
        }
    }
    Ok(out)
}

fn progress(ctx: &PassContext, len: u64, msg: &str) -> indicatif::ProgressBar {
    if !ctx.show_progress() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} samples {per_sec} ETA {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(msg.to_string());
    pb
}

/// Runs the model on every sample, once or twice (`passes`), collecting statistics of `targets`.
pub fn collect_stats(
    m: &Model,
    src: &dyn calib::CalibSource,
    targets: &[ValueId],
    ctx: &PassContext,
    passes: usize,
) -> Result<std::collections::BTreeMap<String, calib::TensorStats>> {
    Ok(collect_stats_recording(m, src, targets, ctx, passes, 0)?.0)
}

/// [`collect_stats`], also recording the float model's [`FloatObs`] on the first `record`
/// samples (in the first pass) at the cost of some channel sums, and keeping those samples
/// decoded (within [`measure::SAMPLE_CACHE_BYTES`]).
pub(crate) fn collect_stats_recording(
    m: &Model,
    src: &dyn calib::CalibSource,
    targets: &[ValueId],
    ctx: &PassContext,
    passes: usize,
    record: usize,
) -> Result<(std::collections::BTreeMap<String, calib::TensorStats>, Option<FloatObs>, Option<SampleCache>)> {
    let ms = ModelSession::new(m)?;
    let target_ids: Vec<usize> = targets.iter().map(|v| ms.id(*v)).collect::<Result<_>>()?;
    let names: Vec<String> = targets.iter().map(|v| m.graph.name_of(*v).to_string()).collect();
    let known: Vec<usize> = ms.inputs.iter().map(|(_, id)| *id).collect();
    // the calibrated tensors are observed as they are computed (not all held to the end)
    let plan = ms.session.plan_observing(&known, &[], &target_ids)?;
    let n = src.len();
    let record = record.min(n);
    // recorded samples run a plan with the layer outputs and graph outputs as targets too;
    // the layer outputs of a recorded sample stay alive until its run ends: recorded only
    // when their size is known and small (else later passes compute their own); a symbolic
    // dim counts as 1, the batch of one calibration sample
    let mut layers = if record > 0 { measure::layers_with_channels(m)? } else { Vec::new() };
    let held_bytes = layers.iter().try_fold(0u64, |acc, l| {
        let dims = m.graph.v(l.2).ok()?.ty.as_ref()?.shape.clone()?;
        Some(acc + 4 * dims.iter().map(|d| if let crate::ir::Dim::Known(k) = d { (*k).max(0) as u64 } else { 1 }).product::<u64>())
    });
    if held_bytes.is_none_or(|b| b > measure::RECORD_LAYER_BYTES) {
        layers.clear();
    }
    let mut rec_ids = Vec::new();
    for v in layers.iter().map(|l| l.2).chain(m.graph.outputs.iter().copied()) {
        rec_ids.push(ms.id(v)?);
    }
    let rec_plan = if record > 0 { Some(ms.session.plan_observing(&known, &rec_ids, &target_ids)?) } else { None };
    let recorded: std::sync::Mutex<Vec<Option<(Vec<Vec<f64>>, Vec<f32>)>>> = std::sync::Mutex::new(vec![None; record]);
    let decoded: std::sync::Mutex<Vec<Option<measure::Sample>>> = std::sync::Mutex::new(vec![None; record]);
    let decoded_bytes = std::sync::atomic::AtomicUsize::new(0);
    let pb = progress(ctx, (passes * n) as u64, "calibrating");
    let mut set = if passes == 1 { StatsSet::one_pass() } else { StatsSet::new() };
    for pass in 0..passes {
        let base = set.fork();
        let partial = (0..n)
            .into_par_iter()
            .try_fold(
                || base.fork(),
                |mut acc, i| -> Result<StatsSet> {
                    let sample = src.sample(i)?;
                    if pass == 0 && i < record {
                        let bytes: usize = sample.iter().map(|t| 4 * t.data.len()).sum();
                        if decoded_bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes <= measure::SAMPLE_CACHE_BYTES {
                            decoded.lock().map_err(|_| Error::internal("recording lock poisoned"))?[i] = Some(sample.clone());
                        }
                    }
                    let mut feed = Vec::with_capacity(sample.len());
                    for t in sample {
                        let id = ms
                            .inputs
                            .iter()
                            .find(|(name, _)| *name == t.name)
                            .map(|(_, id)| *id)
                            .ok_or_else(|| Error::user(format!("calibration data names input '{}', which the model does not have", t.name)))?;
                        feed.push((id, f32_tensor(&t.shape, t.data)?));
                    }
                    let rec = rec_plan.as_ref().filter(|_| pass == 0 && i < record);
                    let mut seen = 0usize;
                    let extra = ms
                        .session
                        .run_plan_observed(rec.unwrap_or(&plan), feed, &mut |k, t| {
                            if let Ok(values) = t.as_f32() {
                                acc.observe(&names[k], values)?;
                            }
                            seen += 1;
                            Ok(())
                        })
                        .map_err(|e| e.context(format!("calibration sample {i}")))?;
                    if seen != names.len() {
                        return Err(Error::internal(format!("calibration sample {i}: {seen} of {} tensors observed", names.len())));
                    }
                    if rec.is_some() {
                        let mut means = Vec::with_capacity(layers.len());
                        for (l, t) in layers.iter().zip(&extra) {
                            let mut a = vec![0f64; l.3];
                            measure::channel_means(t, l.3, l.4, &mut a)?;
                            means.push(a);
                        }
                        let mut out = Vec::new();
                        for t in &extra[layers.len()..] {
                            if let Ok(x) = t.as_f32() {
                                out.extend_from_slice(x);
                            }
                        }
                        recorded.lock().map_err(|_| Error::internal("recording lock poisoned"))?[i] = Some((means, out));
                    }
                    pb.inc(1);
                    Ok(acc)
                },
            )
            .try_reduce(|| base.fork(), |mut a, b| {
                a.merge(&b)?;
                Ok(a)
            })?;
        set.merge(&partial)?;
        if pass == 0 && passes == 2 {
            set.begin_histograms()?;
        }
    }
    pb.finish_and_clear();
    let obs = if record > 0 {
        let rows = recorded.into_inner().map_err(|_| Error::internal("recording lock poisoned"))?;
        // per layer, the samples' means (rows hold, per sample, the layers' means)
        let mut per_layer: Vec<Vec<Vec<f64>>> = layers.iter().map(|_| Vec::with_capacity(record)).collect();
        let mut outputs = Vec::with_capacity(record);
        for row in rows {
            let (means, out) = row.ok_or_else(|| Error::internal("a recorded sample is missing"))?;
            per_layer.iter_mut().zip(means).for_each(|(l, mm)| l.push(mm));
            outputs.push(out);
        }
        let means = layers.iter().map(|l| l.1.clone()).zip(per_layer).collect();
        Some(FloatObs { key: FloatObs::key_of(ctx), means, outputs })
    } else {
        None
    };
    // the decoded samples, when all of the first `record` fit the budget
    let decoded: Option<Vec<measure::Sample>> = decoded.into_inner().map_err(|_| Error::internal("recording lock poisoned"))?.into_iter().collect();
    let samples = decoded.filter(|d| !d.is_empty()).map(|samples| SampleCache { key: FloatObs::key_of(ctx), total: n, samples });
    Ok((set.finish()?, obs, samples))
}

/// Places Q/DQ on `q` with `insert-qdq`'s default options, through the registry (a pass
/// never imports another pass).
fn insert_qdq_default(q: &mut Model, ctx: &mut PassContext) -> Result<PassReport> {
    let entry = crate::pass::PipelineEntry { name: "insert-qdq".into(), options: PassOptions::default() };
    crate::pass::Registry::with_builtins().create(&entry)?.run(q, ctx)
}

/// Writes a table as JSON (`.json`) or as a TensorRT calibration cache.
fn write_table(table: &CalibTable, out: &std::path::Path) -> Result<()> {
    if out.extension().map(|e| e == "json").unwrap_or(false) {
        table.write_json(out)
    } else {
        table.write_trt_cache(out)
    }
}

/// Multipliers of the current amax that `refine=true` tries for each tensor.
const REFINE_STEPS: [f32; 4] = [0.35, 0.5, 0.7, 1.4];

/// `refine=true`: greedy per-tensor search of the amax by the Q/DQ model's output SQNR.
/// Tensors are visited last to first; a candidate replaces the current amax only when it
/// raises the SQNR by more than 0.02 dB. `m` carries the scales; returns (before, after) dB.
fn refine_scales(m: &mut Model, ctx: &PassContext, targets: &[ValueId], n_samples: usize, rep: &mut PassReport) -> Result<(f64, f64)> {
    let samples = measure::load_samples(m, ctx, n_samples)?;
    let reference = outputs_of(m, &samples)?;
    let mut q = m.clone();
    let mut sub = PassContext { quiet: true, ..Default::default() };
    insert_qdq_default(&mut q, &mut sub)?;
    // the scale constants of each target's Q → DQ pair(s) in the Q/DQ copy
    let ids = q.graph.node_ids();
    let mut scales_of: std::collections::HashMap<ValueId, Vec<ValueId>> = std::collections::HashMap::new();
    for id in &ids {
        let n = q.graph.n(*id)?;
        if n.op_type != "QuantizeLinear" {
            continue;
        }
        let (Some(Some(x)), Some(Some(s)), Some(Some(y))) = (n.inputs.first().copied(), n.inputs.get(1).copied(), n.outputs.first().copied()) else { continue };
        if q.graph.constant(x).is_some() {
            continue; // weights
        }
        let e = scales_of.entry(x).or_default();
        e.push(s);
        for id2 in &ids {
            let d = q.graph.n(*id2)?;
            if d.op_type == "DequantizeLinear" && d.inputs.first().copied().flatten() == Some(y) {
                if let Some(Some(ds)) = d.inputs.get(1).copied() {
                    e.push(ds);
                }
            }
        }
    }
    let set = |q: &mut Model, v: ValueId, scale: f32| -> Result<()> {
        for s in scales_of.get(&v).cloned().unwrap_or_default() {
            q.graph.set_constant(s, crate::ir::Tensor::from_f32("", &[], &[scale]))?;
        }
        Ok(())
    };
    let before = sqnr_against(&reference, &q, &samples)?;
    let mut cur_db = before;
    let pb = progress(ctx, targets.len() as u64, "refining");
    for v in targets.iter().rev() {
        pb.inc(1);
        let Some(qi) = m.graph.value(*v).and_then(|x| x.quant.clone()) else { continue };
        if !scales_of.contains_key(v) {
            continue;
        }
        let mut best = (cur_db, 1.0f32);
        for f in REFINE_STEPS {
            set(&mut q, *v, qi.amax * f / 127.0)?;
            let db = sqnr_against(&reference, &q, &samples)?;
            if db > best.0 + 0.02 {
                best = (db, f);
            }
        }
        set(&mut q, *v, qi.amax * best.1 / 127.0)?;
        if best.1 != 1.0 {
            let name = m.graph.name_of(*v).to_string();
            rep.item(
                ReportItem::new(&name, "", "refined", format!("amax x{} raised the output SQNR from {:.2} to {:.2} dB", best.1, cur_db, best.0))
                    .with("amax_before", qi.amax as f64)
                    .with("amax", (qi.amax * best.1) as f64),
            );
            let amax = qi.amax * best.1;
            m.graph.value_mut(*v).expect("live").quant =
                Some(QuantInfo { amax, scale: amax / 127.0, method: format!("{} (refined x{})", qi.method, best.1), clipped: qi.clipped });
            cur_db = best.0;
        }
    }
    pb.finish_and_clear();
    Ok((before, cur_db))
}

/// Output values `method=auto` scores each candidate on (when `auto-samples` is not given).
pub const AUTO_VALUES: usize = 1 << 16;
/// The fewest samples `method=auto` scores on.
pub const AUTO_MIN_SAMPLES: usize = 4;

/// The methods `method=auto` chooses among.
pub const AUTO_CANDIDATES: [Method; 3] = [Method::Entropy, Method::Mse, Method::Percentile(calib::methods::DEFAULT_PERCENTILE)];

impl Calibrate {
    /// For each candidate method: the scales it gives, placed by `insert-qdq` (default options)
    /// on a copy of the model, and the signal-to-quantization-noise ratio (dB) of that copy's
    /// outputs against the float model's on the first `auto_samples` calibration samples.
    #[allow(clippy::type_complexity)]
    fn score_candidates(
        &self,
        m: &Model,
        ctx: &PassContext,
        targets: &[ValueId],
        stats: &std::collections::BTreeMap<String, calib::TensorStats>,
    ) -> Result<(usize, Vec<(Method, f64, std::collections::BTreeMap<String, calib::Calibration>)>)> {
        let mut samples = measure::load_samples(m, ctx, self.auto_samples)?;
        // the float outputs on these samples were recorded during the run over the data
        let mut reference = match &ctx.cache.float_obs {
            Some(o) if o.key == FloatObs::key_of(ctx) && o.len() >= samples.len() => o.outputs[..samples.len()].to_vec(),
            _ => outputs_of(m, &samples)?,
        };
        // a sample whose outputs hold many values (a transformer's hidden states, a detection
        // map) measures the SQNR on its own: 4 of BERT-base's 98,304-value outputs say more than
        // 16 classifier logits, and each candidate run costs a forward per sample
        if !self.auto_samples_given {
            let per = reference.first().map_or(1, |r| r.len().max(1));
            let n = AUTO_VALUES.div_ceil(per).clamp(AUTO_MIN_SAMPLES, self.auto_samples).min(samples.len());
            samples.truncate(n);
            reference.truncate(n);
        }
        let mut scores = Vec::new();
        for cand in AUTO_CANDIDATES {
            let mut q = m.clone();
            // the amax of every tensor, in parallel (mse is the costly one)
            let cals: std::collections::BTreeMap<String, calib::Calibration> = targets
                .par_iter()
                .filter_map(|v| {
                    let name = m.graph.name_of(*v).to_string();
                    let st = stats.get(&name)?;
                    Some(calib::compute_amax(st, self.method_for(&name, cand)).map(|c| (name.clone(), c)).map_err(|e| e.context(format!("tensor '{name}'"))))
                })
                .collect::<Result<_>>()?;
            for v in targets {
                let name = m.graph.name_of(*v).to_string();
                let Some(c) = cals.get(&name).copied() else { continue };
                q.graph.value_mut(*v).expect("live").quant =
                    Some(QuantInfo { amax: c.amax, scale: c.scale, method: cand.to_string(), clipped: c.fraction_clipped });
            }
            let mut sub = PassContext { quiet: true, ..Default::default() };
            insert_qdq_default(&mut q, &mut sub)?;
            let db = sqnr_against(&reference, &q, &samples)?;
            scores.push((cand, db, cals));
        }
        Ok((samples.len(), scores))
    }
}

impl Pass for Calibrate {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        crate::ir::shape::infer(&mut m.graph)?;
        let targets = if self.all { all_activations(m)? } else { tensors_to_calibrate(&m.graph)? };

        if let Some(cache) = ctx.calib.cache.clone() {
            let table = CalibTable::read(&cache).map_err(|e| e.context(cache.display().to_string()))?;
            let (mut used, mut unknown) = (0, 0);
            for (name, e) in &table.tensors {
                match m.graph.value_by_name(name) {
                    Some(v) => {
                        m.graph.value_mut(v).expect("named").quant = Some(QuantInfo {
                            amax: e.amax,
                            scale: e.scale,
                            method: e.method.clone().unwrap_or_else(|| format!("cache ({})", table.header)),
                            clipped: 0.0,
                        });
                        used += 1;
                    }
                    None => {
                        rep.item(ReportItem::new(name, "", "cache-unknown", "the cache names a tensor the graph does not have (ignored)"));
                        unknown += 1;
                    }
                }
            }
            let mut missing = 0;
            for v in &targets {
                let name = m.graph.name_of(*v).to_string();
                if !table.tensors.contains_key(&name) {
                    rep.item(ReportItem::new(&name, "", "cache-missing", "needed for Q/DQ placement but not in the cache"));
                    missing += 1;
                }
            }
            if (unknown > 0 || missing > 0) && !ctx.quiet {
                eprintln!(
                    "warning: calibration cache {}: {unknown} tensor(s) unknown to the graph, {missing} needed tensor(s) missing (see the report)",
                    cache.display()
                );
            }
            if let Some(out) = &ctx.calib.write_cache {
                write_table(&table, out)?;
            }
            rep.changed = used > 0;
            rep.summary = format!("{used} scales read from {}, {unknown} unknown, {missing} missing", cache.display());
            return Ok(rep);
        }

        let src = open_calib_source(m, ctx, ctx.calib.limit, "calibrate")?;
        let t0 = std::time::Instant::now();
        let (stats, obs, decoded) = collect_stats_recording(m, src.as_ref(), &targets, ctx, self.passes, measure::OBS_SAMPLES)?;
        ctx.cache.float_obs = obs.map(std::sync::Arc::new);
        ctx.cache.samples = decoded.map(std::sync::Arc::new);
        let secs = t0.elapsed().as_secs_f64();
        let mut cached = std::collections::BTreeMap::new();
        let method = match self.method {
            Some(mm) => mm,
            None => {
                let ta = std::time::Instant::now();
                let (scored_on, mut scores) = self.score_candidates(m, ctx, &targets, &stats)?;
                rep.stat("auto_samples", scored_on);
                let mut bi = 0;
                for (i, s) in scores.iter().enumerate() {
                    if s.1 > scores[bi].1 {
                        bi = i;
                    }
                }
                let best = (scores[bi].0, scores[bi].1);
                cached = std::mem::take(&mut scores[bi].2);
                for (mm, db, _) in &scores {
                    rep.item(
                        ReportItem::new(&mm.to_string(), "", if mm.to_string() == best.0.to_string() { "chosen" } else { "candidate" }, "auto: output SQNR of the Q/DQ model against the float model on calibration samples")
                            .with("sqnr_db", *db),
                    );
                }
                rep.stat("auto_seconds", ta.elapsed().as_secs_f64());
                rep.stat("auto_sqnr_db", best.1);
                best.0
            }
        };
        let mut table = CalibTable::new(calib::default_header(method));
        let mut clipped_sum = 0.0;
        for v in &targets {
            let name = m.graph.name_of(*v).to_string();
            let Some(st) = stats.get(&name) else { continue };
            let method = self.method_for(&name, method);
            let c = match cached.remove(&name) {
                Some(c) => c,
                None => calib::compute_amax(st, method).map_err(|e| e.context(format!("tensor '{name}'")))?,
            };
            table.insert(name.clone(), &c, method);
            clipped_sum += c.fraction_clipped;
            let producer = m.graph.producer_node(*v).map(|(p, n)| (node_label(&m.graph, p), n.op_type.clone())).unwrap_or_default();
            let mut item = ReportItem::new(&name, &producer.1, "calibrated", format!("output of '{}'", producer.0))
                .with("amax", c.amax as f64)
                .with("scale", c.scale as f64)
                .with("max", st.max_abs as f64)
                .with("method", method.to_string())
                .with("clipped", c.fraction_clipped);
            if c.all_zero {
                item.reason.push_str("; all values were zero on the calibration data (scale set for amax 1.0)");
            }
            rep.item(item);
            m.graph.value_mut(*v).expect("live").quant =
                Some(QuantInfo { amax: c.amax, scale: c.scale, method: method.to_string(), clipped: c.fraction_clipped });
        }
        let mut refined = None;
        if self.refine {
            let tr = std::time::Instant::now();
            let (b, a) = refine_scales(m, ctx, &targets, self.auto_samples, &mut rep)?;
            // the cache gets the refined values
            for v in &targets {
                let name = m.graph.name_of(*v).to_string();
                if let (Some(q), Some(e)) = (m.graph.value(*v).and_then(|x| x.quant.clone()), table.tensors.get_mut(&name)) {
                    e.amax = q.amax;
                    e.scale = q.scale;
                }
            }
            rep.stat("refine_sqnr_db_before", b);
            rep.stat("refine_sqnr_db_after", a);
            rep.stat("refine_seconds", tr.elapsed().as_secs_f64());
            refined = Some((b, a));
        }
        if let Some(out) = &ctx.calib.write_cache {
            write_table(&table, out)?;
        }
        let n = src.len();
        rep.changed = !table.tensors.is_empty();
        rep.summary = format!(
            "{} tensors calibrated ({}) on {n} samples in {secs:.2} s ({:.1} samples/s, {}); mean clipped fraction {:.2e}",
            table.tensors.len(),
            if self.method.is_none() { format!("auto: {method}") } else { method.to_string() },
            n as f64 / secs.max(1e-9),
            if self.passes == 1 { "one pass" } else { "two passes" },
            clipped_sum / table.tensors.len().max(1) as f64
        );
        if let Some((b, a)) = refined {
            rep.summary.push_str(&format!("; refined: output SQNR {b:.2} -> {a:.2} dB ({} tensors changed)", rep.count("refined")));
        }
        rep.stat("samples", n);
        rep.stat("seconds", secs);
        rep.stat("tensors", table.tensors.len());
        Ok(rep)
    }
}
