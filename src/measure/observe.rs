//! Observations of the float model on calibration samples: per-channel output means of the
//! Conv/Gemm layers and the graph outputs ([`FloatObs`]), recorded once by `calibrate` and
//! reused by later passes after a bit-for-bit check on one sample.

use super::forward::forward;
use super::samples::Sample;
use crate::error::Result;
use crate::ir::{Model, ValueId};
use crate::pass::PassContext;

/// Gemm output when `channel_last`) to `acc`.
pub fn channel_means(t: &crate::exec::Tensor, k: usize, channel_last: bool, acc: &mut [f64]) -> Result<()> {
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
            acc[j % k] += sum_f32(c) / per;
        }
    }
    Ok(())
}

/// Sum of `v` in f64, from f32 partial sums over blocks of 256 in 8 lanes (vectorizes; the
/// partial sums of at most 32 values per lane keep f32 rounding far below what a mean needs).
pub fn sum_f32(v: &[f32]) -> f64 {
    let mut total = 0f64;
    for blk in v.chunks(256) {
        let mut lanes = [0f32; 8];
        let mut it = blk.chunks_exact(8);
        for c in &mut it {
            for (l, x) in lanes.iter_mut().zip(c) {
                *l += *x;
            }
        }
        total += lanes.iter().map(|x| *x as f64).sum::<f64>() + it.remainder().iter().map(|x| *x as f64).sum::<f64>();
    }
    total
}

/// How many leading calibration samples `calibrate` records [`FloatObs`] for: what
/// `bias-correct` needs by default (64 to estimate, 32 held out) and more than the 16 that
/// method=auto scores on.
pub const OBS_SAMPLES: usize = 96;

/// Largest total size of one sample's Conv/Gemm outputs that `calibrate` keeps alive to record
/// their channel means (MobileNetV2: 40 MB).
pub const RECORD_LAYER_BYTES: u64 = 512 << 20;

/// The float model's observations on the first calibration samples, recorded by `calibrate`
/// during its run over the data and kept in the pipeline's [`crate::pass::RunCache`]:
/// per sample, the channel means of every Conv/Gemm output (by node label) and the graph's
/// outputs (flattened, as [`super::outputs_of`] gives them). Later passes reuse
/// them instead of running the float model again, after checking on one sample
/// ([`FloatObs::matches`]) that their float model computes the same.
#[derive(Debug)]
pub struct FloatObs {
    /// The calibration data they were taken on (source, preprocessing, limit).
    pub key: String,
    pub means: std::collections::HashMap<String, Vec<Vec<f64>>>,
    pub outputs: Vec<Vec<f32>>,
}

impl FloatObs {
    /// The key of the calibration data `ctx` names.
    pub fn key_of(ctx: &PassContext) -> String {
        super::samples::data_key(ctx)
    }

    /// Samples recorded.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether `m` gives bit-identical layer means (for `layers`: node label, output value,
    /// channels, channel-last) and outputs on the first sample (one forward run).
    pub fn matches(&self, m: &Model, sample: &Sample, layers: &[(String, ValueId, usize, bool)]) -> Result<bool> {
        if self.outputs.is_empty() || layers.iter().any(|l| self.means.get(&l.0).is_none_or(|v| v.is_empty())) {
            return Ok(false);
        }
        let mut targets: Vec<ValueId> = layers.iter().map(|l| l.1).collect();
        let n_layers = targets.len();
        targets.extend(m.graph.outputs.iter().copied());
        let mut same = true;
        forward(m, std::slice::from_ref(sample), &targets, &mut |ts| {
            for (l, t) in layers.iter().zip(&ts) {
                let mut acc = vec![0f64; l.2];
                channel_means(t, l.2, l.3, &mut acc)?;
                same &= acc == self.means[&l.0][0];
            }
            let mut out = Vec::new();
            for t in &ts[n_layers..] {
                if let Ok(x) = t.as_f32() {
                    out.extend_from_slice(x);
                }
            }
            same &= out == self.outputs[0];
            Ok(())
        })?;
        Ok(same)
    }
}

/// The Conv/Gemm layers whose output channel count is known: (node label, output value,
/// channels, channel-last).
pub fn layers_with_channels(m: &Model) -> Result<Vec<(crate::ir::NodeId, String, ValueId, usize, bool)>> {
    let g = &m.graph;
    let mut v = Vec::new();
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm") {
            continue;
        }
        let Some(out) = n.outputs.first().copied().flatten() else { continue };
        let dims = g.v(out)?.ty.as_ref().and_then(|t| t.shape.clone());
        let Some(crate::ir::Dim::Known(k)) = dims.as_ref().and_then(|d| d.get(1)).cloned() else { continue };
        v.push((id, crate::ir::edit::node_label(g, id), out, k as usize, n.op_type == "Gemm"));
    }
    Ok(v)
}
