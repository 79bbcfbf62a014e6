//! How closely a model reproduces a reference model's outputs on calibration samples:
//! the one implementation of SQNR and top-1 agreement that `calibrate`'s auto scoring,
//! `bias-correct`, the budget search and the CLI's final check use.

use super::forward::forward;
use super::samples::Sample;
use crate::error::{Error, Result};
use crate::ir::Model;

/// The model's outputs on `samples`, flattened per sample.
pub fn outputs_of(m: &Model, samples: &[Sample]) -> Result<Vec<Vec<f32>>> {
    let mut res = Vec::new();
    forward(m, samples, &m.graph.outputs.clone(), &mut |ts| {
        let mut v = Vec::new();
        for t in &ts {
            if let Ok(x) = t.as_f32() {
                v.extend_from_slice(x);
            }
        }
        res.push(v);
        Ok(())
    })?;
    Ok(res)
}

/// How closely outputs reproduce reference outputs (both from [`outputs_of`], per sample).
#[derive(Debug, Clone, Copy)]
pub struct Fidelity {
    /// Fraction of samples whose argmax (over the sample's concatenated outputs) is the same.
    pub agreement: f64,
    /// Signal-to-noise ratio over all values, in dB.
    pub sqnr_db: f64,
    /// Noise power relative to the signal.
    pub noise: f64,
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |a, (i, x)| if *x > a.1 { (i, *x) } else { a }).0
}

pub fn fidelity(reference: &[Vec<f32>], got: &[Vec<f32>]) -> Fidelity {
    let (mut sig, mut noise, mut same) = (0f64, 0f64, 0usize);
    for (r, g) in reference.iter().zip(got) {
        for (a, b) in r.iter().zip(g) {
            sig += (*a as f64).powi(2);
            noise += (*a as f64 - *b as f64).powi(2);
        }
        same += usize::from(argmax(r) == argmax(g));
    }
    Fidelity {
        agreement: same as f64 / reference.len().max(1) as f64,
        sqnr_db: if noise > 0.0 { 10.0 * (sig / noise).log10() } else { f64::INFINITY },
        noise: if sig > 0.0 { noise / sig } else if noise > 0.0 { f64::INFINITY } else { 0.0 },
    }
}

/// Signal-to-noise ratio (dB) of `q`'s outputs against `reference` (from [`outputs_of`]).
pub fn sqnr_against(reference: &[Vec<f32>], q: &Model, samples: &[Sample]) -> Result<f64> {
    Ok(fidelity(reference, &outputs_of(q, samples)?).sqnr_db)
}

/// How closely the compiled model reproduces the input model on calibration samples.
pub struct Check {
    pub samples: usize,
    pub sqnr_db: f64,
    /// Top-1 agreement (argmax of the single output), when that output is class scores.
    pub agreement: Option<f64>,
}

impl Check {
    /// The summary line.
    pub fn line(&self) -> String {
        match self.agreement {
            Some(ag) => format!(
                "fidelity: output SQNR {:.1} dB, top-1 agreement with the input model {:.1} % ({} calibration samples)",
                self.sqnr_db,
                100.0 * ag,
                self.samples
            ),
            None => format!("fidelity: output SQNR {:.1} dB ({} calibration samples)", self.sqnr_db, self.samples),
        }
    }
    /// Whether the result is poor enough to warn about.
    pub fn is_poor(&self) -> bool {
        self.sqnr_db < 10.0 || self.agreement.map(|a| a < 0.8).unwrap_or(false)
    }
    /// The report's `fidelity` field.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"samples": self.samples, "output_sqnr_db": self.sqnr_db, "top1_agreement": self.agreement})
    }
}

/// Runs `original` and `compiled` on the first 8 calibration samples.
pub fn check(original: &Model, compiled: &Model, ctx: &crate::pass::PassContext) -> Result<Check> {
    let samples = super::load_samples(original, ctx, 8)?;
    let r = outputs_of(original, &samples)?;
    let f = fidelity(&r, &outputs_of(compiled, &samples)?);
    // top-1 agreement only means something for class scores
    let agreement = (outputs_class_scores(original) && compiled.graph.outputs.len() == 1).then_some(f.agreement);
    Ok(Check { samples: samples.len(), sqnr_db: f.sqnr_db, agreement })
}


/// Whether the model's output is one vector of class scores per sample: a single output whose
/// declared shape, after the batch axis, has exactly one known dimension above 1 (`[N, C]`,
/// `[C]`, `[N, C, 1, 1]`). Only there does top-1 agreement mean "the same answer"; the argmax
/// of a hidden state, a sequence of logits or a probability map is not a prediction.
pub fn outputs_class_scores(m: &Model) -> bool {
    let g = &m.graph;
    let [out] = g.outputs.as_slice() else { return false };
    let Some(dims) = g.value(*out).and_then(|v| v.ty.as_ref()).and_then(|t| t.shape.as_ref()) else { return false };
    let rest = if dims.len() >= 2 { &dims[1..] } else { &dims[..] };
    let mut wide = 0;
    for d in rest {
        match d {
            crate::ir::Dim::Known(1) => {}
            crate::ir::Dim::Known(c) if *c >= 2 => wide += 1,
            _ => return false,
        }
    }
    wide == 1
}

/// How many values one sample's outputs hold, from the declared shapes (the first axis of
/// each output is the batch); `None` when a shape after it is not known.
pub fn output_values_per_sample(m: &Model) -> Option<usize> {
    let g = &m.graph;
    let mut total = 0usize;
    for &o in &g.outputs {
        let dims = g.value(o)?.ty.as_ref()?.shape.as_ref()?;
        let rest = if dims.len() >= 2 { &dims[1..] } else { &dims[..] };
        let mut n = 1usize;
        for d in rest {
            match d {
                crate::ir::Dim::Known(k) if *k >= 0 => n = n.checked_mul(*k as usize)?,
                _ => return None,
            }
        }
        total = total.checked_add(n)?;
    }
    Some(total)
}

/// The output SQNR the default budget asks of a model whose output is not class scores
/// (see [`Budget::default_for`]).
pub const DEFAULT_SQNR_DB: f64 = 20.0;

/// What the budget bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Minimum fraction of calibration samples whose top-1 class stays the float model's.
    Agreement(f64),
    /// Minimum output signal-to-noise ratio against the float model, in dB.
    SqnrDb(f64),
}

impl Budget {
    /// `0.97` (agreement) or `25dB` (output SQNR).
    pub fn parse(s: &str) -> Result<Budget> {
        let t = s.trim();
        let bad = || {
            Error::usage(format!(
                "accuracy budget '{s}': give a top-1 agreement between 0 and 1 (e.g. 0.97) or an output SQNR in dB (e.g. 25dB)"
            ))
        };
        let lower = t.to_ascii_lowercase();
        if let Some(num) = lower.strip_suffix("db") {
            let v: f64 = num.trim().parse().map_err(|_| bad())?;
            if !v.is_finite() {
                return Err(bad());
            }
            return Ok(Budget::SqnrDb(v));
        }
        let v: f64 = t.parse().map_err(|_| bad())?;
        if !(0.0..=1.0).contains(&v) {
            return Err(bad());
        }
        Ok(Budget::Agreement(v))
    }

    /// Whether `f` meets the budget (a point estimate; the final model is judged by a
    /// confidence bound, see `guard`).
    pub fn met(&self, f: &Fidelity) -> bool {
        match *self {
            Budget::Agreement(a) => f.agreement + 1e-12 >= a,
            Budget::SqnrDb(d) => f.sqnr_db >= d,
        }
    }

    /// The default budget for `m`: top-1 agreement `agreement` where the output is class
    /// scores ([`outputs_class_scores`]), else an output SQNR of [`DEFAULT_SQNR_DB`] (noise at
    /// 1 % of the signal's power; INT8 models that keep the float model's answers measure
    /// 25-36 dB here: ResNet-20, the ViT, BERT-shaped encoders).
    pub fn default_for(m: &Model, agreement: f64) -> Budget {
        if outputs_class_scores(m) {
            Budget::Agreement(agreement)
        } else {
            Budget::SqnrDb(DEFAULT_SQNR_DB)
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Budget::Agreement(a) => format!("top-1 agreement >= {a:.3}"),
            Budget::SqnrDb(d) => format!("output SQNR >= {d:.1} dB"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-node model (Relu) with the given output declarations (`float[1,10] y`, ...).
    fn model(outs: &[&str]) -> Model {
        let decls: Vec<String> = outs.iter().map(|o| o.to_string()).collect();
        let nodes: Vec<String> = outs
            .iter()
            .map(|o| format!("  {} = Relu (x)", o.rsplit(' ').next().unwrap()))
            .collect();
        crate::testing::parse_model(&format!(
            "<\n  ir_version: 8,\n  opset_import: [\"\" : 13]\n>\ng (float[1,4] x) => ({})\n<\n>\n{{\n{}\n}}\n",
            decls.join(", "),
            nodes.join("\n")
        ))
    }

    #[test]
    fn class_scores_are_one_vector_per_sample() {
        for (outs, want) in [
            (vec!["float[1,10] y"], true),
            (vec!["float[N,1000] y"], true),
            (vec!["float[10] y"], true),
            (vec!["float[1,1000,1,1] y"], true),
            // a hidden state, a sequence of logits, a probability map
            (vec!["float[1,128,768] y"], false),
            (vec!["float[1,1,640,640] y"], false),
            // one score, an unknown class count, two outputs
            (vec!["float[1,1] y"], false),
            (vec!["float[1,C] y"], false),
            (vec!["float[1,10] y", "float[1,10] z"], false),
        ] {
            assert_eq!(outputs_class_scores(&model(&outs)), want, "{outs:?}");
        }
        assert_eq!(Budget::default_for(&model(&["float[1,10] y"]), 0.95), Budget::Agreement(0.95));
        assert_eq!(Budget::default_for(&model(&["float[1,128,768] y"]), 0.95), Budget::SqnrDb(DEFAULT_SQNR_DB));
    }
}
