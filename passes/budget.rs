//! Budgeted layer selection for `prune-2of4{budget=X}` (CLI: `--accuracy-budget X`).
//!
//! X is the minimum top-1 **agreement with the float model** on calibration samples (no
//! labels needed): 0.99 means at most 1 % of the samples may change their top-1 class.
//! 1. The float model's top-1 on `budget-samples` calibration samples is the reference.
//! 2. Sensitivity: for each eligible layer alone, magnitude 2:4 pruning and the resulting
//!    agreement.
//! 3. Gain: the layer's multiply-accumulates weighted by TensorRT's expected speed class
//!    (likely sparse 1.0, maybe 0.5, likely dense 0.1).
//! 4. Layers are taken in order of gain per unit of agreement lost (robust, profitable
//!    first) while the summed individual losses stay within the budget; the chosen set is
//!    then pruned (with the configured method) and the real agreement measured; while it is
//!    below the budget the least profitable chosen layer is dropped and the set pruned again
//!    (at most `max-rounds` times, from the original weights each time).
//! Layers left dense are reported with the reason; they still get INT8 from insert-qdq.

use super::obs::{forward, load_samples};
use super::prune::{candidates, speed_class, Candidate, Prune};
use crate::error::Result;
use crate::ir::{Dim, Model, Tensor, ValueId};
use crate::pass::{PassContext, PassReport, Pattern, ReportItem};
use crate::sparsity::{prune_2of4_magnitude, GroupLayout};

type Samples = Vec<Vec<(String, Vec<usize>, Vec<f32>)>>;

fn top1(m: &Model, samples: &Samples) -> Result<Vec<usize>> {
    let out: ValueId = m.graph.outputs[0];
    let mut res = Vec::new();
    forward(m, samples, &[out], &mut |ts| {
        let v = ts[0].as_f32()?;
        let best = v.iter().enumerate().fold((0, f32::NEG_INFINITY), |a, (i, x)| if *x > a.1 { (i, *x) } else { a }).0;
        res.push(best);
        Ok(())
    })?;
    Ok(res)
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

fn macs(m: &Model, c: &Candidate) -> f64 {
    let out = m.graph.node(c.node).and_then(|n| n.outputs[0]);
    let spatial: f64 = out
        .and_then(|o| m.graph.value(o))
        .and_then(|v| v.ty.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.iter().skip(2).map(|d| if let Dim::Known(k) = d { *k as f64 } else { 1.0 }).product())
        .unwrap_or(1.0);
    (c.k * c.c * c.rs) as f64 * if c.op == "Conv" { spatial } else { 1.0 }
}

fn class_weight(class: &str) -> f64 {
    match class {
        "likely-sparse" => 1.0,
        "maybe-sparse" => 0.5,
        _ => 0.1,
    }
}

pub fn run_budget(p: &Prune, m: &mut Model, ctx: &mut PassContext, budget: f64) -> Result<PassReport> {
    crate::ir::shape::infer(&mut m.graph)?;
    let samples = load_samples(m, ctx, p.budget_samples)?;
    let reference = top1(m, &samples)?;
    let cands: Vec<Candidate> = candidates(&m.graph, p)?.into_iter().filter_map(|c| c.ok()).collect();
    let total_macs: f64 = cands.iter().map(|c| macs(m, c)).sum();
    // sensitivity of each layer alone
    let mut sens = Vec::new();
    for c in &cands {
        let mut trial = m.clone();
        let t = trial.graph.constant(c.weight).expect("candidate").clone();
        let mut w = t.to_f32()?;
        prune_2of4_magnitude(&mut w, &GroupLayout::new(&c.shape, c.axis)?)?;
        trial.graph.set_constant(c.weight, Tensor::from_f32("", t.dims(), &w))?;
        let agr = agreement(&reference, &top1(&trial, &samples)?);
        let (class, _) = speed_class(c.k, c.c, c.rs);
        let gain = macs(m, c) * class_weight(class);
        sens.push((c.clone(), 1.0 - agr, gain, class));
    }
    // most gain per loss first
    let mut order: Vec<usize> = (0..sens.len()).collect();
    order.sort_by(|&a, &b| {
        let ka = sens[a].2 / (sens[a].1 + 1e-3);
        let kb = sens[b].2 / (sens[b].1 + 1e-3);
        kb.partial_cmp(&ka).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
    });
    let allowed = 1.0 - budget;
    let mut chosen: Vec<usize> = Vec::new();
    let mut predicted = 0.0;
    for &i in &order {
        if sens[i].2 <= 0.0 {
            continue;
        }
        if predicted + sens[i].1 <= allowed + 1e-12 {
            predicted += sens[i].1;
            chosen.push(i);
        }
    }
    let original = m.clone();
    let mut final_rep = PassReport::new(super::prune::NAME);
    let mut achieved = 1.0;
    for round in 0..p.budget_rounds.max(1) {
        *m = original.clone();
        let names: Vec<String> = chosen.iter().map(|&i| sens[i].0.label.clone()).collect();
        let mut sub = Prune { include: Pattern::parse(&names.join("|")), ..p.clone_config() };
        sub.budget = None;
        let rep = if names.is_empty() {
            PassReport::new(super::prune::NAME)
        } else if sub.method == "obs" {
            super::obs::run_obs(&sub, m, ctx)?
        } else {
            crate::pass::Pass::run(&mut sub, m, ctx)?
        };
        achieved = agreement(&reference, &top1(m, &samples)?);
        final_rep = rep;
        if achieved + 1e-12 >= budget || chosen.is_empty() || round + 1 == p.budget_rounds.max(1) {
            break;
        }
        // drop the least profitable chosen layer and try again
        if let Some((pos, _)) = chosen
            .iter()
            .enumerate()
            .min_by(|a, b| {
                let ka = sens[*a.1].2 / (sens[*a.1].1 + 1e-3);
                let kb = sens[*b.1].2 / (sens[*b.1].1 + 1e-3);
                ka.partial_cmp(&kb).unwrap_or(std::cmp::Ordering::Equal)
            })
        {
            chosen.remove(pos);
        }
    }
    let chosen_macs: f64 = chosen.iter().map(|&i| macs(m, &sens[i].0)).sum();
    let mut rep = PassReport::new(super::prune::NAME);
    for (i, (c, loss, gain, class)) in sens.iter().enumerate() {
        let picked = chosen.contains(&i);
        let why = if picked {
            format!("chosen: alone it changes {:.1}% of top-1 answers; {class}", 100.0 * loss)
        } else {
            format!("left dense (INT8): alone it changes {:.1}% of top-1 answers, over the budget's share; {class}", 100.0 * loss)
        };
        let mut it = ReportItem::new(&c.label, &c.op, if picked { "pruned" } else { "kept-dense" }, why)
            .with("sensitivity", *loss)
            .with("gain_macs", *gain)
            .with("macs", macs(m, c));
        if picked {
            if let Some(x) = final_rep.items.iter().find(|x| x.node == c.label) {
                for (k, v) in &x.details {
                    it = it.with(k, v.clone());
                }
            }
        }
        rep.item(it);
    }
    rep.changed = !chosen.is_empty();
    rep.summary = format!(
        "budget {:.3}: {} of {} eligible layers 2:4 ({:.1}% of prunable MACs), agreement with float {:.4} on {} samples",
        budget,
        chosen.len(),
        sens.len(),
        100.0 * chosen_macs / total_macs.max(1.0),
        achieved,
        samples.len()
    );
    rep.stat("sparse_mac_fraction", chosen_macs / total_macs.max(1.0));
    rep.stat("agreement", achieved);
    rep.stat("pruned_layers", chosen.len());
    Ok(rep)
}
