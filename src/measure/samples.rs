//! Calibration samples: the one sample type every consumer uses ([`Sample`], from
//! [`crate::calib`]), opening the user's data for a model, loading windows of samples (from
//! the pipeline's [`crate::pass::RunCache`] when `calibrate` decoded them already).

use crate::calib;
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::pass::PassContext;
use rayon::prelude::*;
use std::str::FromStr;

/// A calibration sample: one [`calib::InputTensor`] (name, shape, values) per model input.
pub type Sample = calib::Sample;

/// The first calibration samples, decoded (see [`crate::pass::RunCache`]).
#[derive(Debug)]
pub struct SampleCache {
    /// The calibration data they come from ([`data_key`]).
    pub key: String,
    /// Samples in the source (after `--calib-limit`).
    pub total: usize,
    /// Samples `0..samples.len()`.
    pub samples: Vec<Sample>,
}

/// At most this many bytes of decoded samples are kept (MobileNetV2: 96 × 0.6 MB).
pub const SAMPLE_CACHE_BYTES: usize = 256 << 20;

/// The key of the calibration data `ctx` names (source, preprocessing, limit): cached
/// samples and observations are used only for the same key.
pub fn data_key(ctx: &PassContext) -> String {
    format!("{:?}|{:?}|{:?}", ctx.calib.source, ctx.calib.preprocess, ctx.calib.limit)
}

/// The first `limit` calibration samples.
pub fn load_samples(m: &Model, ctx: &PassContext, limit: usize) -> Result<Vec<Sample>> {
    load_sample_window(m, ctx, (0, limit))
}

/// Number of calibration samples available (after `--calib-limit`).
pub fn count_samples(m: &Model, ctx: &PassContext) -> Result<usize> {
    Ok(open_calib_source(m, ctx, ctx.calib.limit, "prune-2of4")?.len())
}

/// Samples `start .. start + count` of the calibration data (clipped to what exists).
pub fn load_sample_window(m: &Model, ctx: &PassContext, (start, count): (usize, usize)) -> Result<Vec<Sample>> {
    let end = start.saturating_add(count);
    if let Some(c) = &ctx.cache.samples {
        let avail = c.total.min(end);
        if c.key == data_key(ctx) && avail <= c.samples.len() {
            return Ok(c.samples[start.min(avail)..avail].to_vec());
        }
    }
    let lim = Some(ctx.calib.limit.unwrap_or(usize::MAX).min(end));
    let src = open_calib_source(m, ctx, lim, "prune-2of4{method=obs}")?;
    (start.min(src.len())..src.len())
        .into_par_iter()
        .map(|i| src.sample(i))
        .collect()
}

/// Opens the user's calibration data (`--calib`, `--preprocess`) for the model's
/// inputs, validated before any work; `who` names the pass in the error.
pub fn open_calib_source(m: &Model, ctx: &PassContext, limit: Option<usize>, who: &str) -> Result<Box<dyn calib::CalibSource>> {
    let source = ctx.calib.source.clone().ok_or_else(|| {
        Error::user(format!("{who} needs calibration data: give --calib DIR (images, .npy or .npz) or --calib-cache FILE"))
    })?;
    let preprocess = match &ctx.calib.preprocess {
        Some(p) => Some(calib::Preprocess::from_str(p).map_err(|e| e.context("--preprocess"))?),
        None => None,
    };
    let typed = model_inputs(m);
    let inputs: Vec<calib::ModelInput> = typed.iter().map(|(i, _)| i.clone()).collect();
    let src = calib::open_source(&source, &calib::SourceOptions { preprocess, limit }, &inputs)
        .map_err(|e| e.context(format!("--calib {}", source.display())))?;
    calib::check_dtypes(src.as_ref(), &typed).map_err(|e| e.context(format!("--calib {}", source.display())))?;
    Ok(src)
}

/// The model inputs calibration data must feed (graph inputs without a default value),
/// with their declared element type (0 when undeclared): dims are `None` where dynamic
/// (symbolic, unknown, or written as -1 or 0 by exporters); the samples fix them.
pub fn model_inputs(m: &Model) -> Vec<(calib::ModelInput, i32)> {
    let g = &m.graph;
    g.inputs
        .iter()
        .filter_map(|v| g.value(*v))
        .filter(|val| val.constant.is_none())
        .map(|val| {
            let ty = val.ty.as_ref();
            let dims = ty
                .and_then(|t| t.shape.as_ref())
                .map(|s| s.iter().map(|d| if let crate::ir::Dim::Known(k) = d { (*k > 0).then_some(*k as usize) } else { None }).collect())
                .unwrap_or_default();
            ((val.name.clone(), dims), ty.map(|t| t.elem).unwrap_or(0))
        })
        .collect()
}
