//! The guarded compile: runs the pipeline, judges the final model (after INT8 and
//! bias-correct) against the input model on held-out calibration samples that no pass saw,
//! and, when a budget is not proved there, backs off: half the sparse layers, then none
//! (dense INT8), then mixed precision (the layers whose INT8 input costs the output most, as
//! measured on calibration samples that are not held out, kept float: 1/16 of the quantized
//! layers, then twice as many, up to a quarter), and for an explicit `--accuracy-budget`
//! finally no INT8 either.
//!
//! An agreement budget is met by the one-sided 95 % Wilson lower bound of the held-out
//! agreement, not by the point estimate; an SQNR budget by the held-out SQNR.

use crate::error::Result;
use crate::ir::Model;
use crate::measure::split::{wilson, Z95, Z95_ONE_SIDED};
use crate::measure::{fidelity, load_sample_window, load_samples, outputs_of, sqnr_against, Budget, Sample};
use crate::pass::{PassContext, PassManager, PassReport, PipelineEntry, Registry, RunOptions};

/// The final model against the input model on held-out samples.
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub samples: usize,
    /// Samples whose top-1 class is the input model's (when the model has one output).
    pub agree: Option<usize>,
    pub sqnr_db: f64,
}

impl HeldOut {
    /// Point estimate of the agreement.
    pub fn agreement(&self) -> Option<f64> {
        self.agree.map(|k| k as f64 / self.samples.max(1) as f64)
    }
    /// Two-sided 95 % Wilson interval of the agreement.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.agree.map(|k| wilson(k, self.samples, Z95))
    }
    /// One-sided 95 % lower bound of the agreement (what a budget is proved with).
    pub fn lower_bound(&self) -> Option<f64> {
        self.agree.map(|k| wilson(k, self.samples, Z95_ONE_SIDED).0)
    }
    /// Whether the budget is proved on these samples.
    pub fn proves(&self, b: &Budget) -> bool {
        match *b {
            Budget::Agreement(x) => self.lower_bound().is_some_and(|lb| lb + 1e-12 >= x),
            Budget::SqnrDb(d) => self.sqnr_db >= d,
        }
    }
    /// Whether these samples are too few to prove the agreement budget `b` even if all agree.
    pub fn unprovable(&self, b: &Budget) -> bool {
        matches!(*b, Budget::Agreement(x) if self.agree.is_some() && self.samples < crate::measure::split::samples_to_prove(x))
    }
    /// Whether the point estimate of the agreement reaches `b` (an SQNR budget: as `proves`).
    pub fn meets_by_point(&self, b: &Budget) -> bool {
        match *b {
            Budget::Agreement(x) => self.agreement().is_some_and(|a| a + 1e-12 >= x),
            Budget::SqnrDb(_) => self.proves(b),
        }
    }
    /// The verdict when the point estimate decides.
    pub fn point_verdict(&self, b: &Budget) -> String {
        let x = match *b {
            Budget::Agreement(x) => x,
            Budget::SqnrDb(_) => return self.verdict(b),
        };
        format!(
            "agreement >= {x} {} by the point estimate ({} of {} held-out samples agree; {} are needed to prove it, give more calibration samples)",
            if self.meets_by_point(b) { "met" } else { "missed" },
            self.agree.unwrap_or(0),
            self.samples,
            crate::measure::split::samples_to_prove(x)
        )
    }
    /// What these samples show about `b`, in words.
    pub fn verdict(&self, b: &Budget) -> String {
        match (*b, self.agree, self.lower_bound()) {
            (Budget::Agreement(x), Some(k), Some(lb)) if self.proves(b) => format!(
                "agreement >= {x} proved with 95 % confidence on {} held-out samples ({k} agree; lower bound {lb:.3})",
                self.samples
            ),
            (Budget::Agreement(x), Some(k), Some(lb)) => format!(
                "agreement >= {x} not proved on {} held-out samples ({k} agree; 95 % lower bound {lb:.3})",
                self.samples
            ),
            (Budget::Agreement(x), _, _) => format!("agreement >= {x} cannot be judged: the output is not one vector of class scores per sample"),
            (Budget::SqnrDb(d), _, _) => format!(
                "output SQNR >= {d:.1} dB {} on {} held-out samples ({:.1} dB measured)",
                if self.proves(b) { "met" } else { "not met" },
                self.samples,
                self.sqnr_db
            ),
        }
    }
    /// The summary line.
    pub fn line(&self) -> String {
        match (self.agreement(), self.interval()) {
            (Some(a), Some((lo, hi))) => format!(
                "fidelity (final model vs input model, {} held-out calibration samples): top-1 agreement {:.1} % (95 % interval {:.1}-{:.1} %), output SQNR {:.1} dB",
                self.samples,
                100.0 * a,
                100.0 * lo,
                100.0 * hi,
                self.sqnr_db
            ),
            _ => format!(
                "fidelity (final model vs input model, {} held-out calibration samples): output SQNR {:.1} dB",
                self.samples, self.sqnr_db
            ),
        }
    }
    /// Whether the result is poor enough to warn about.
    pub fn is_poor(&self) -> bool {
        self.sqnr_db < 10.0 || self.agreement().is_some_and(|a| a < 0.8)
    }
    /// The report's `fidelity` field.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "held_out": true,
            "samples": self.samples,
            "output_sqnr_db": self.sqnr_db,
            "top1_agreement": self.agreement(),
            "top1_agreement_95": self.interval().map(|(a, b)| vec![a, b]),
            "top1_agreement_lower_bound_95": self.lower_bound(),
        })
    }
}

/// Judges `compiled` against `original` on calibration samples `window` (start, count) of the
/// data `ctx` names.
pub fn judge(original: &Model, compiled: &Model, ctx: &PassContext, window: (usize, usize)) -> Result<HeldOut> {
    let samples = load_sample_window(original, ctx, window)?;
    let r = outputs_of(original, &samples)?;
    let f = fidelity(&r, &outputs_of(compiled, &samples)?);
    // top-1 agreement only where the output is class scores
    let single = crate::measure::fidelity::outputs_class_scores(original) && compiled.graph.outputs.len() == 1;
    let n = samples.len();
    Ok(HeldOut { samples: n, agree: single.then(|| (f.agreement * n as f64).round() as usize), sqnr_db: f.sqnr_db })
}

/// Samples (not held out) that rank the layers for mixed precision.
pub const SENSITIVITY_SAMPLES: usize = 8;

/// The quantized layers of the Q/DQ model `q`, most sensitive first: for each, the output SQNR
/// (against `reference`, the input model's outputs on `samples`) gained when that layer alone
/// reads its input activation in float. Layers whose name cannot be written in a pattern (it
/// holds `|`) are left out.
pub fn sensitivity_order(q: &Model, samples: &[Sample], reference: &[Vec<f32>]) -> Result<Vec<(String, f64)>> {
    let base = sqnr_against(reference, q, samples)?;
    let g = &q.graph;
    let mut out = Vec::new();
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if !crate::qdq::is_weighted(&n.op_type) || !crate::qdq::is_quantized_layer(g, id) {
            continue;
        }
        // the float tensor behind the layer's input Q -> DQ
        let float_in = n
            .inputs
            .first()
            .copied()
            .flatten()
            .and_then(|x| g.producer_node(x))
            .filter(|(_, dq)| dq.op_type == "DequantizeLinear")
            .and_then(|(_, dq)| dq.inputs.first().copied().flatten())
            .and_then(|y| g.producer_node(y))
            .filter(|(_, qn)| qn.op_type == "QuantizeLinear")
            .and_then(|(_, qn)| qn.inputs.first().copied().flatten());
        let label = crate::ir::edit::node_label(g, id);
        let Some(f) = float_in else { continue };
        if label.contains('|') {
            continue;
        }
        let mut v = q.clone();
        v.graph.set_input(id, 0, Some(f))?;
        let db = sqnr_against(reference, &v, samples)?;
        out.push((label, if db.is_finite() { db - base } else { f64::MAX }));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

/// How many of `n` quantized layers the mixed-precision back-off keeps float after keeping
/// `prev` (0: the first step): 1/16 of them (at least 1), then twice as many, up to a quarter.
pub fn next_float_count(n: usize, prev: usize) -> Option<usize> {
    let cap = n / 4;
    let k = if prev == 0 { n.div_ceil(16).max(1) } else { (prev * 2).min(cap) };
    (k > prev && k <= cap.max(1) && k <= n).then_some(k)
}

/// How the pipeline is guarded.
pub struct Guard<'a> {
    pub reg: &'a Registry,
    pub run: RunOptions,
    /// The budget, and whether the user gave it (an explicit budget may end without INT8;
    /// the default one stops at dense INT8).
    pub budget: Option<(Budget, bool)>,
    /// Held-out samples (start, count) and the context that loads them.
    pub held_out: Option<((usize, usize), PassContext)>,
}

/// What the guarded compile produced.
pub struct Outcome {
    pub model: Model,
    pub reports: Vec<PassReport>,
    pub held_out: Option<HeldOut>,
    /// One line per decision (budget verdicts, back-offs), for the summary.
    pub lines: Vec<String>,
    /// The same for the report.
    pub steps: Vec<serde_json::Value>,
    /// The layers the first run made sparse (those dense in the end were dropped for accuracy).
    pub first_pruned: Vec<String>,
}

/// The layers `prune-2of4` made sparse, in its report's order.
pub fn pruned_layers(reports: &[PassReport]) -> Vec<String> {
    reports.iter().filter(|r| r.pass == "prune-2of4").flat_map(|r| r.items.iter()).filter(|i| i.action == "pruned").map(|i| i.node.clone()).collect()
}

/// Runs `entries` on a copy of `original`, judging and backing off as the guard says.
pub fn compile(g: &Guard, original: &Model, mut entries: Vec<PipelineEntry>, ctx: &PassContext) -> Result<Outcome> {
    let (mut lines, mut steps) = (Vec::new(), Vec::new());
    let mut first_pruned: Option<Vec<String>> = None;
    // mixed precision: the layers ranked by sensitivity (once, on the first dense INT8 model
    // that misses the budget), how many of them are kept float now, and insert-qdq's own
    // exclude pattern before that
    let mut float_rank: Option<Vec<(String, f64)>> = None;
    let mut float_k = 0usize;
    let mut base_exclude: Option<String> = None;
    loop {
        let mut model = original.clone();
        let mut c = ctx.clone();
        let passes = entries.iter().map(|e| g.reg.create(e)).collect::<Result<Vec<_>>>()?;
        let reports = PassManager::new(passes, g.run.clone()).run(&mut model, &mut c)?;
        let held = match &g.held_out {
            Some((w, hc)) => Some(judge(original, &model, hc, *w)?),
            None => None,
        };
        let pruned = pruned_layers(&reports);
        let first = first_pruned.get_or_insert_with(|| pruned.clone()).clone();
        let has_prune = entries.iter().any(|e| e.name == "prune-2of4");
        let int8 = entries.iter().any(|e| e.name == "insert-qdq");
        let what = if !int8 {
            "float (no INT8)".to_string()
        } else if pruned.is_empty() && float_k > 0 {
            format!("dense INT8 with {float_k} layers float")
        } else if pruned.is_empty() {
            "dense INT8".to_string()
        } else {
            format!("{} layers 2:4 + INT8", pruned.len())
        };
        let (budget, explicit) = match (&g.budget, &held) {
            (Some((b, e)), Some(_)) => (*b, *e),
            _ => return Ok(Outcome { model, reports, held_out: held, lines, steps, first_pruned: first }),
        };
        let h = held.as_ref().expect("matched above");
        // the default budget on too few held-out samples to prove it even if all agree: the
        // point estimate decides (an explicit budget is always proved or backed off from)
        let by_point = !explicit && h.unprovable(&budget);
        let met = if by_point { h.meets_by_point(&budget) } else { h.proves(&budget) };
        let verdict = if by_point { h.point_verdict(&budget) } else { h.verdict(&budget) };
        let floats: Vec<&str> = float_rank.iter().flatten().take(if int8 { float_k } else { 0 }).map(|(n, _)| n.as_str()).collect();
        steps.push(serde_json::json!({"model": what, "budget": budget.describe(), "proved": h.proves(&budget), "met": met, "verdict": verdict, "held_out": h.to_json(), "float_layers": floats}));
        if met {
            lines.push(format!("budget ({}): {what}: {verdict}", if explicit { "--accuracy-budget" } else { "default" }));
            return Ok(Outcome { model, reports, held_out: held, lines, steps, first_pruned: first });
        }
        // back off: half the sparse layers (in the order prune-2of4 took them), then none,
        // then (explicit budgets only) no INT8
        let next: Option<(Vec<PipelineEntry>, String)> = if !pruned.is_empty() && has_prune {
            let keep = pruned.len() / 2;
            let mut n = entries.clone();
            if keep == 0 {
                n.retain(|e| e.name != "prune-2of4");
                Some((n, "dense INT8".into()))
            } else {
                for e in n.iter_mut().filter(|e| e.name == "prune-2of4") {
                    e.options.values.insert("include".into(), pruned[..keep].join("|"));
                }
                Some((n, format!("{keep} of those layers 2:4")))
            }
        } else if let Some((n, desc)) = if int8 && pruned.is_empty() {
            mixed_precision_step(original, &model, ctx, &entries, &mut float_rank, &mut float_k, &mut base_exclude)?
        } else {
            None
        } {
            Some((n, desc))
        } else if explicit && int8 {
            let n: Vec<PipelineEntry> = entries.iter().filter(|e| matches!(e.name.as_str(), "upgrade-opset" | "fold-bn" | "cleanup")).cloned().collect();
            Some((n, "no INT8 (upgrade-opset, fold-bn, cleanup only)".into()))
        } else {
            None
        };
        match next {
            Some((n, desc)) => {
                lines.push(format!("budget ({}): {what}: {verdict}; backing off to {desc}", if explicit { "--accuracy-budget" } else { "default" }));
                entries = n;
            }
            None => {
                lines.push(format!(
                    "budget ({}): {what}: {verdict}; nothing left to back off to, writing this model",
                    if explicit { "--accuracy-budget" } else { "default" }
                ));
                return Ok(Outcome { model, reports, held_out: held, lines, steps, first_pruned: first });
            }
        }
    }
}

/// The next mixed-precision step after dense INT8 `model` missed the budget: the pipeline with
/// insert-qdq's `exclude` extended by the next most sensitive layers, and its description;
/// None when the quarter of the layers is reached (or no layer can be kept float).
fn mixed_precision_step(
    original: &Model,
    model: &Model,
    ctx: &PassContext,
    entries: &[PipelineEntry],
    rank: &mut Option<Vec<(String, f64)>>,
    k: &mut usize,
    base_exclude: &mut Option<String>,
) -> Result<Option<(Vec<PipelineEntry>, String)>> {
    if !entries.iter().any(|e| e.name == "insert-qdq") {
        return Ok(None);
    }
    if rank.is_none() {
        // samples that calibration may have seen, never the held-out ones that judge
        let samples = load_samples(original, ctx, SENSITIVITY_SAMPLES)?;
        let reference = outputs_of(original, &samples)?;
        *rank = Some(sensitivity_order(model, &samples, &reference)?);
    }
    let r = rank.as_ref().expect("set above");
    let Some(next) = next_float_count(r.len(), *k) else { return Ok(None) };
    *k = next;
    let names: Vec<&str> = r[..next].iter().map(|(n, _)| n.as_str()).collect();
    let mut n = entries.to_vec();
    for e in n.iter_mut().filter(|e| e.name == "insert-qdq") {
        let base = base_exclude.get_or_insert_with(|| e.options.values.get("exclude").cloned().unwrap_or_default()).clone();
        let mut pat = names.join("|");
        if !base.is_empty() {
            pat = format!("{base}|{pat}");
        }
        e.options.values.insert("exclude".into(), pat);
    }
    let shown = if names.len() > 3 { format!("{}, ... (see the report)", names[..3].join(", ")) } else { names.join(", ") };
    Ok(Some((n, format!("mixed precision: the {next} of {} quantized layers whose INT8 input costs the output most kept float ({shown})", r.len()))))
}

#[cfg(test)]
mod tests {
    use super::{next_float_count, HeldOut};
    use crate::measure::Budget;

    #[test]
    fn a_default_budget_too_few_samples_can_prove_is_judged_by_the_point_estimate() {
        let b = Budget::Agreement(0.95);
        let h = |samples, agree| HeldOut { samples, agree: Some(agree), sqnr_db: 20.0 };
        // 52 samples can prove 0.95 when all agree; 8 never can
        assert!(h(8, 8).unprovable(&b) && !h(52, 52).unprovable(&b) && h(51, 51).unprovable(&b));
        assert!(h(52, 52).proves(&b) && !h(8, 8).proves(&b));
        assert!(h(8, 8).meets_by_point(&b) && !h(8, 7).meets_by_point(&b));
        assert!(h(8, 7).point_verdict(&b).contains("missed by the point estimate (7 of 8 held-out samples agree; 52 are needed"));
        // several outputs: no agreement, nothing to decide by
        assert!(!HeldOut { samples: 8, agree: None, sqnr_db: 20.0 }.unprovable(&b));
        assert!(!h(8, 8).unprovable(&Budget::SqnrDb(20.0)));
    }

    #[test]
    fn mixed_precision_steps_double_up_to_a_quarter() {
        let steps = |n: usize| {
            let mut v = vec![];
            let mut k = 0;
            while let Some(x) = next_float_count(n, k) {
                v.push(x);
                k = x;
            }
            v
        };
        assert_eq!(steps(53), vec![4, 8, 13]);
        assert_eq!(steps(20), vec![2, 4, 5]);
        assert_eq!(steps(4), vec![1]);
        assert_eq!(steps(2), vec![1]);
        assert_eq!(steps(1), vec![1]);
        assert_eq!(steps(0), Vec::<usize>::new());
    }
}
