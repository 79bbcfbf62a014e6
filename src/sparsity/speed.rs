//! Whether 2:4 is expected to make a layer faster in TensorRT on a target GPU, from
//! measured evidence, with the evidence named.
//!
//! - Hopper: the H200 table (`data/h200-int8-2of4.csv`, from shared/docs/h200-sparse-gemm.md):
//!   INT8 2:4 GEMM time against the best dense 8-bit GEMM at 99 real layer shapes. A layer's
//!   GEMM is m = output channels, k = C·R·S, n = batch × output pixels; its expected speed-up
//!   is the inverse-distance-weighted mean (in log m, log k, log n) of the three nearest
//!   measured shapes, and the nearest one is named.
//! - Ampere: no table; TensorRT's documented guidance (maintainers, NVIDIA/TensorRT #3849,
//!   #4065: sparse kernels beat dense only when input and output channels are large, > 256,
//!   a 3×3 kernel counting as 9×C) and NVIDIA's ResNet-34 figure (1.4× end to end, sparse vs
//!   dense INT8, A40): a gain is expected when K ≥ 256 and C·R·S ≥ 256.
//!
//! A speed-up counts as a gain above [`GAIN_THRESHOLD`]: the table's best CNN layer, 1.01×, is
//! within run-to-run noise and would not pay for the sparse kernel's fixed cost.

use crate::error::{Error, Result};

/// The embedded H200 table (see the file's header for its source).
pub const H200_TABLE: &str = include_str!("../../data/h200-int8-2of4.csv");

/// Speed-ups at or below this are not an expected gain.
pub const GAIN_THRESHOLD: f64 = 1.05;

/// The GPU family a model is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpu {
    /// Hopper (H100, H200): decided from the H200 table.
    Hopper,
    /// Ampere (A100, A40, A10, ...): decided from TensorRT's guidance.
    Ampere,
}

impl std::str::FromStr for Gpu {
    type Err = Error;
    fn from_str(s: &str) -> Result<Gpu> {
        match s.to_ascii_lowercase().as_str() {
            "hopper" | "h100" | "h200" => Ok(Gpu::Hopper),
            "ampere" | "a100" | "a40" | "a10" => Ok(Gpu::Ampere),
            _ => Err(Error::usage(format!("unknown GPU '{s}': use hopper or ampere"))),
        }
    }
}

impl std::fmt::Display for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gpu::Hopper => "hopper",
            Gpu::Ampere => "ampere",
        })
    }
}

/// One measured row of the H200 table.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub model: String,
    pub layer: String,
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// INT8 2:4 over the best dense 8-bit GEMM.
    pub speedup: f64,
}

/// The expected effect of 2:4 on one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Whether a gain is expected (speed-up above [`GAIN_THRESHOLD`], or Ampere's rule).
    pub gain: bool,
    /// The estimated speed-up, where a table gives one.
    pub speedup: Option<f64>,
    /// What decided it, for the report.
    pub evidence: String,
}

/// Parses the H200 table (comment lines start with `#`).
pub fn h200_rows() -> Result<Vec<Measured>> {
    let mut out = Vec::new();
    for line in H200_TABLE.lines().filter(|l| !l.starts_with('#') && !l.starts_with("model,") && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let bad = || Error::internal(format!("data/h200-int8-2of4.csv: bad row '{line}'"));
        if f.len() != 7 {
            return Err(bad());
        }
        let num = |i: usize| f[i].trim().parse::<usize>().map_err(|_| bad());
        out.push(Measured {
            model: f[0].into(),
            layer: f[1].into(),
            batch: num(2)?,
            m: num(3)?,
            k: num(4)?,
            n: num(5)?,
            speedup: f[6].trim().parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

/// The expected effect of 2:4 on a layer whose GEMM is `m` (output channels) × `k` (C·R·S)
/// × `n` (batch × output pixels) on `gpu`.
pub fn expected(gpu: Gpu, m: usize, k: usize, n: usize) -> Result<Expected> {
    match gpu {
        Gpu::Ampere => {
            let gain = m >= 256 && k >= 256;
            Ok(Expected {
                gain,
                speedup: None,
                evidence: format!(
                    "Ampere guidance (TensorRT #3849/#4065: sparse wins only with K and C·R·S ≥ 256; NVIDIA ResNet-34 1.4× on A40): K={m}, C·R·S={k}: {}",
                    if gain { "gain expected" } else { "no gain expected" }
                ),
            })
        }
        Gpu::Hopper => {
            let rows = h200_rows()?;
            let lg = |x: usize| (x.max(1) as f64).ln();
            let mut d: Vec<(f64, &Measured)> = rows
                .iter()
                .map(|r| (((lg(r.m) - lg(m)).powi(2) + (lg(r.k) - lg(k)).powi(2) + (lg(r.n) - lg(n)).powi(2)).sqrt(), r))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            let near = &d[..d.len().min(3)];
            let Some(&(d0, r0)) = near.first() else { return Err(Error::internal("the H200 table is empty")) };
            let speedup = if d0 < 1e-9 {
                r0.speedup
            } else {
                let w: f64 = near.iter().map(|(d, _)| 1.0 / d).sum();
                near.iter().map(|(d, r)| r.speedup / d).sum::<f64>() / w
            };
            let gain = speedup > GAIN_THRESHOLD;
            Ok(Expected {
                gain,
                speedup: Some(speedup),
                evidence: format!(
                    "H200 table: GEMM {m}×{k}×{n} ≈ {speedup:.2}× (nearest measured: {} '{}' batch {}, {}×{}×{}, {:.2}×){}",
                    r0.model,
                    r0.layer,
                    r0.batch,
                    r0.m,
                    r0.k,
                    r0.n,
                    r0.speedup,
                    if gain { "" } else { ": no gain expected" }
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_decides_per_layer() {
        let rows = h200_rows().unwrap();
        assert_eq!(rows.len(), 99);
        // a measured shape gets its own figure
        let e = expected(Gpu::Hopper, 16, 144, 1024).unwrap();
        assert_eq!(e.speedup, Some(0.692));
        assert!(!e.gain && e.evidence.contains("ResNet-20 CIFAR"), "{}", e.evidence);
        // no CNN layer of ResNet-20 or MobileNetV2 gains on Hopper; BERT-base at 8k tokens does
        for (m, k, n) in [(64, 576, 64), (1280, 320, 49), (96, 16, 401_408), (160, 960, 1568)] {
            assert!(!expected(Gpu::Hopper, m, k, n).unwrap().gain, "{m}x{k}x{n}");
        }
        let e = expected(Gpu::Hopper, 768, 3072, 8192).unwrap();
        assert!(e.gain && (e.speedup.unwrap() - 1.479).abs() < 1e-9, "{}", e.evidence);
        // a shape between measured ones is interpolated from its neighbours
        let e = expected(Gpu::Hopper, 3000, 800, 8000).unwrap();
        assert!(e.gain && e.speedup.unwrap() > 1.05 && e.speedup.unwrap() < 1.9, "{}", e.evidence);
        // Ampere: TensorRT's guidance
        assert!(expected(Gpu::Ampere, 512, 4608, 49).unwrap().gain);
        assert!(!expected(Gpu::Ampere, 64, 576, 3136).unwrap().gain);
        assert!("H200".parse::<Gpu>().is_ok() && "volta".parse::<Gpu>().is_err());
    }
}
