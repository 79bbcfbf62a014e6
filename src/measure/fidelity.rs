//! How closely a model reproduces a reference model's outputs on calibration samples:
//! the one implementation of SQNR and top-1 agreement that `calibrate`'s auto scoring,
//! `bias-correct`, the budget search and the CLI's final check use.

use super::forward::forward;
use super::samples::Sample;
use crate::error::Result;
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
    /// Top-1 agreement (argmax of the single output), when the model has one output.
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
    // top-1 agreement only means something for a single output
    let agreement = (original.graph.outputs.len() == 1 && compiled.graph.outputs.len() == 1).then_some(f.agreement);
    Ok(Check { samples: samples.len(), sqnr_db: f.sqnr_db, agreement })
}

