//! Choosing a tensor's amax (clipping threshold) from its [`TensorStats`].
//!
//! Every method returns an amax in `(0, max|x|]`, the INT8 scale `amax / 127` and the fraction
//! of values that the amax clips. Except for `max`, the amax is an upper bin edge
//! `i * range / 2048` (capped at the observed max), so the clipped fraction is exact up to the
//! bin holding the edge: it counts the values in bins `i..`, i.e. `|x| >= amax`.
//!
//! * [`Method::Max`]: amax = max `|x|`. Nothing is clipped.
//! * [`Method::Percentile`]: the smallest bin edge below which at least `p` % of the values lie.
//!   (pytorch-quantization/ModelOpt return the *lower* edge of that bin; this takes the upper
//!   one, so at least `p` % of the values are never clipped.)
//! * [`Method::Entropy`]: KL-divergence minimisation after Migacz (GTC 2017, S7310), the scheme
//!   behind TensorRT's EntropyCalibration2 as open references describe it. For each candidate
//!   `i` in `128..=2048`:
//!   - P = bins `0..i`, the count of all values above (bins `i..` and the overflow) added to
//!     bin `i-1`;
//!   - Q = bins `0..i` *before* that folding, merged into 128 groups (bin `k` goes to group
//!     `floor(128 k / i)`, so groups differ by at most one bin in size), each group's total
//!     spread evenly over its nonzero bins (empty bins stay 0);
//!   - KL(P‖Q) after normalising each to sum 1; a bin with P > 0 and Q = 0 (the last bin when
//!     it was empty but outliers were folded into it) makes the divergence infinite.
//!
//!   The amax is the upper edge of the `i` with the smallest divergence (the largest such `i`
//!   on exact ties). Known differences from other implementations: TensorRT's own code is
//!   closed; it builds its histogram over a range that grows by powers of two as batches arrive
//!   (this module uses the exact max of pass 1, see [`crate::calib::stats`]). Exact zeros are
//!   left out of the histogram here (they quantize exactly whatever the amax): kept in, the
//!   zero spike of a ReLU output dominates the divergence and drags the amax far down (on
//!   exponential data with 50 % zeros: amax 2.1 with the zeros, 7.5 without, max 8.5).
//!   pytorch-quantization gets the same effect by overwriting bin 0 with bin 1's count;
//!   Migacz's description keeps them. pytorch-quantization groups bins with a float
//!   `linspace`, which can put a boundary bin in the neighbouring group where this uses exact
//!   integer arithmetic. On the test distributions below the result equals, to the bit, that
//!   of an independent numpy implementation of the pytorch-quantization algorithm
//!   (`testdata/calib-mini/entropy_ref.py`).
//! * [`Method::Mse`]: for each candidate edge `i` in `1..=2048`, the expected squared error of
//!   symmetric INT8 quantization with amax = edge (rounding error inside the range, clipping
//!   error outside), assuming the values of each bin are spread uniformly over the bin (exact
//!   zeros are known and cost nothing; values above the histogram range, if any, are taken to
//!   sit halfway between the range and the max). The error is integrated exactly over the
//!   quantization cells that cross each bin, not estimated at bin centres. The smallest error
//!   wins (largest `i` on ties).
//!
//! A tensor that was zero everywhere gets amax 1.0 (any positive scale represents 0 exactly)
//! and [`Calibration::all_zero`] set, so that the caller can warn.

use std::fmt;
use std::str::FromStr;

use crate::calib::stats::{TensorStats, NUM_BINS};
use crate::error::{Error, Result};

/// Default percentile for [`Method::Percentile`].
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// First candidate bin of the entropy method (the number of INT8 magnitude levels).
const ENTROPY_FIRST: usize = 128;
/// Number of quantized levels the entropy method merges P into.
const ENTROPY_LEVELS: usize = 128;

/// An amax calibration method. Parse with [`str::parse`]: `max`, `percentile`,
/// `percentile:P` (or `percentile=P`), `entropy`, `mse` (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// The max of `|x|`.
    Max,
    /// The given percentile of `|x|`, in percent, `0 < p <= 100`.
    Percentile(f64),
    /// KL-divergence minimisation (TensorRT EntropyCalibration2 style).
    Entropy,
    /// Minimum expected squared quantization + clipping error.
    Mse,
}

const VALID_METHODS: &str = "max, percentile (99.99), percentile:P with 0 < P <= 100, entropy, mse";

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Method> {
        let t = s.trim().to_ascii_lowercase();
        let (head, arg) = match t.find([':', '=']) {
            Some(pos) => (&t[..pos], Some(t[pos + 1..].trim())),
            None => (t.as_str(), None),
        };
        let method = match (head.trim(), arg) {
            ("max" | "minmax", None) => Method::Max,
            ("entropy" | "kl", None) => Method::Entropy,
            ("mse", None) => Method::Mse,
            ("percentile", None) => Method::Percentile(DEFAULT_PERCENTILE),
            ("percentile", Some(a)) => {
                let p: f64 = a.parse().map_err(|_| {
                    Error::user(format!("calibration method '{s}': '{a}' is not a number"))
                })?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(Error::user(format!(
                        "calibration method '{s}': the percentile must be in (0, 100], got {p}"
                    )));
                }
                Method::Percentile(p)
            }
            _ => {
                return Err(Error::user(format!(
                    "unknown calibration method '{s}'; valid: {VALID_METHODS}"
                )))
            }
        };
        Ok(method)
    }
}

impl fmt::Display for Method {
    /// The canonical string, which parses back to the same method.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Max => write!(f, "max"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
            Method::Entropy => write!(f, "entropy"),
            Method::Mse => write!(f, "mse"),
        }
    }
}

/// The calibration result of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Clipping threshold: values are quantized over `[-amax, amax]`.
    pub amax: f32,
    /// INT8 scale, `amax / 127`.
    pub scale: f32,
    /// Fraction of the finite values with `|x| >= amax` (0 when amax is the max).
    pub fraction_clipped: f64,
    /// The tensor was zero everywhere: amax is an arbitrary 1.0.
    pub all_zero: bool,
}

/// Chooses the amax of one tensor with `method`. Errors when no finite value was observed.
pub fn compute_amax(stats: &TensorStats, method: Method) -> Result<Calibration> {
    if stats.count == 0 {
        return Err(Error::user(if stats.nonfinite > 0 {
            format!(
                "all {} observed values are NaN or infinite",
                stats.nonfinite
            )
        } else {
            "no values were observed".to_string()
        }));
    }
    if stats.bins.len() != NUM_BINS {
        return Err(Error::internal(format!(
            "histogram has {} bins, expected {NUM_BINS}",
            stats.bins.len()
        )));
    }
    if stats.max_abs <= 0.0 {
        return Ok(Calibration {
            amax: 1.0,
            scale: 1.0 / 127.0,
            fraction_clipped: 0.0,
            all_zero: true,
        });
    }
    let bin = match method {
        Method::Max => None,
        Method::Percentile(p) => {
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::user(format!(
                    "percentile must be in (0, 100], got {p}"
                )));
            }
            percentile_bin(stats, p)
        }
        Method::Entropy => entropy_bin(stats),
        Method::Mse => Some(mse_bin(stats)),
    };
    Ok(finish(stats, bin))
}

/// Turns a chosen bin edge into a [`Calibration`]; `None` means the max.
fn finish(stats: &TensorStats, bin: Option<usize>) -> Calibration {
    let (amax, clipped) = match bin {
        Some(i) => {
            let edge = stats.edge(i) as f32;
            if edge < stats.max_abs && edge > 0.0 {
                (edge, stats.count_from(i) as f64 / stats.count as f64)
            } else {
                (stats.max_abs, 0.0)
            }
        }
        None => (stats.max_abs, 0.0),
    };
    Calibration {
        amax,
        scale: amax / 127.0,
        fraction_clipped: clipped,
        all_zero: false,
    }
}

/// Smallest `i` such that bins `0..i` hold at least `p` % of all values; `None` when the
/// overflow keeps the bins from reaching it (the max is then the answer).
fn percentile_bin(stats: &TensorStats, p: f64) -> Option<usize> {
    let target = p / 100.0 * stats.count as f64;
    let mut cum = 0u64;
    for (k, &c) in stats.bins.iter().enumerate() {
        cum += c;
        if cum as f64 >= target && cum > 0 {
            return Some(k + 1);
        }
    }
    None
}

/// The entropy (KL-divergence) candidate; `None` when every candidate diverges.
///
/// Computed in O(128) per candidate with prefix sums: with `T` the total count, `Qt` the count
/// of bins `0..i` and `q_g` the mean nonzero count of group `g`,
/// `KL = (sum_k p_k ln p_k - sum_g m_g ln q_g) / T - ln T + ln Qt`, where `m_g` is the P-mass of
/// group `g` (its count, plus the outliers for the group holding bin `i-1`). The direct
/// O(i)-per-candidate form is kept in the tests as an oracle.
fn entropy_bin(stats: &TensorStats) -> Option<usize> {
    // Exact zeros are left out: they quantize exactly whatever the amax.
    let mut bins = stats.bins.clone();
    bins[0] -= stats.zeros;
    let total_count = stats.count - stats.zeros;
    if total_count == 0 {
        return None;
    }
    let total = total_count as f64;
    let xlnx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
    // Prefix sums over bins 0..k: counts, nonzero bins, c ln c.
    let mut cnt = vec![0u64; NUM_BINS + 1];
    let mut nonzero = vec![0u64; NUM_BINS + 1];
    let mut clnc = vec![0f64; NUM_BINS + 1];
    for (k, &c) in bins.iter().enumerate() {
        cnt[k + 1] = cnt[k] + c;
        nonzero[k + 1] = nonzero[k] + u64::from(c != 0);
        clnc[k + 1] = clnc[k] + xlnx(c as f64);
    }
    let mut best: Option<(f64, usize)> = None;
    for i in ENTROPY_FIRST..=NUM_BINS {
        let q_total = cnt[i];
        if q_total == 0 {
            continue;
        }
        let outliers = total_count - cnt[i];
        let last = bins[i - 1];
        if last == 0 && outliers > 0 {
            continue; // P > 0 where Q = 0: infinite divergence
        }
        let sum_plnp = clnc[i - 1] + xlnx((last + outliers) as f64);
        let mut sum_plnq = 0.0;
        for g in 0..ENTROPY_LEVELS {
            // Group g holds the bins k with floor(128 k / i) == g.
            let start = (g * i).div_ceil(ENTROPY_LEVELS);
            let end = ((g + 1) * i).div_ceil(ENTROPY_LEVELS);
            let nz = nonzero[end] - nonzero[start];
            if nz == 0 {
                continue;
            }
            let gs = cnt[end] - cnt[start];
            let mass = if end == i { gs + outliers } else { gs };
            sum_plnq += mass as f64 * (gs as f64 / nz as f64).ln();
        }
        let kl = (sum_plnp - sum_plnq) / total - total.ln() + (q_total as f64).ln();
        match best {
            Some((b, _)) if kl > b => {}
            _ => best = Some((kl, i)),
        }
    }
    best.map(|(_, i)| i)
}

/// Integral of `(x - q)^2` over `[lo, hi]`.
#[cfg(test)]
fn sq_integral(lo: f64, hi: f64, q: f64) -> f64 {
    let (a, b) = (lo - q, hi - q);
    (b * b * b - a * a * a) / 3.0
}

/// Squared quantization error, with clipping threshold `c`, of the values in `bins[range]`
/// (spread uniformly within each bin; exact zeros cost nothing). The direct form, the tests'
/// oracle for [`InRangeMoments`].
#[cfg(test)]
fn mse_bins(stats: &TensorStats, c: f64, range: std::ops::Range<usize>) -> f64 {
    let s = c / 127.0;
    let w = stats.bin_width();
    let mut err = 0.0f64;
    for b in range {
        let n = if b == 0 {
            stats.bins[0] - stats.zeros
        } else {
            stats.bins[b]
        };
        if n == 0 {
            continue;
        }
        let lo = b as f64 * w;
        let hi = lo + w;
        // Quantization cell k (0..=126) covers [(k-0.5)s, (k+0.5)s) and maps to k*s; everything
        // from 126.5*s upwards maps to 127*s = c.
        let mut acc = 0.0;
        let mut k = ((lo / s) + 0.5).floor().min(127.0) as i64;
        loop {
            let cell_lo = if k == 0 { 0.0 } else { (k as f64 - 0.5) * s };
            let cell_hi = if k >= 127 {
                f64::INFINITY
            } else {
                (k as f64 + 0.5) * s
            };
            let a = lo.max(cell_lo);
            let z = hi.min(cell_hi);
            if z > a {
                acc += sq_integral(a, z, k as f64 * s);
            }
            if cell_hi >= hi {
                break;
            }
            k += 1;
        }
        err += n as f64 * acc / w;
    }
    err
}

/// Squared clipping error of the overflow values (taken to sit halfway between the histogram
/// range and the max).
fn mse_overflow(stats: &TensorStats, c: f64) -> f64 {
    if stats.overflow == 0 {
        return 0.0;
    }
    let x = (stats.range as f64 + stats.max_abs as f64) / 2.0;
    let d = (x - c).max(0.0);
    stats.overflow as f64 * d * d
}

/// Expected total squared error of quantizing the histogram with clipping threshold `c`
/// (every bin integrated; the direct form of what [`mse_bin`] computes).
#[cfg(test)]
fn mse_error(stats: &TensorStats, c: f64) -> f64 {
    mse_bins(stats, c, 0..NUM_BINS) + mse_overflow(stats, c)
}

/// The MSE candidate bin. Bins at or above the candidate edge lie wholly in the clipping cell,
/// so their error `sum n (E[x^2] - 2c E[x] + c^2)` comes from suffix sums of the uniform
/// in-bin moments; only the bins below are integrated cell by cell.
fn mse_bin(stats: &TensorStats) -> usize {
    let w = stats.bin_width();
    let mut n = vec![0f64; NUM_BINS + 1];
    let mut m1 = vec![0f64; NUM_BINS + 1];
    let mut m2 = vec![0f64; NUM_BINS + 1];
    for b in (0..NUM_BINS).rev() {
        let cnt = if b == 0 {
            stats.bins[0] - stats.zeros
        } else {
            stats.bins[b]
        } as f64;
        let (lo, hi) = (b as f64 * w, (b + 1) as f64 * w);
        n[b] = n[b + 1] + cnt;
        m1[b] = m1[b + 1] + cnt * (lo + hi) / 2.0;
        m2[b] = m2[b + 1] + cnt * (lo * lo + lo * hi + hi * hi) / 3.0;
    }
    let below = InRangeMoments::new(stats);
    let mut best = (f64::INFINITY, NUM_BINS);
    for i in 1..=NUM_BINS {
        let c = stats.edge(i);
        let tail = (m2[i] - 2.0 * c * m1[i] + c * c * n[i]).max(0.0);
        let e = below.error(i) * w * w + tail + mse_overflow(stats, c);
        if e <= best.0 {
            best = (e, i);
        }
    }
    best.1
}

/// Prefix moments of the histogram in units of one bin width (values spread uniformly within
/// each bin, exact zeros left out), so that the rounding error of the values below a candidate
/// edge is a sum over the 128 quantization cells instead of over the bins: O(128) per candidate
/// instead of O(bins) (65 MobileNetV2 tensors: 2.2 s of CPU -> milliseconds). [`mse_bins`] is
/// the direct form; `fast_mse_agrees_with_direct_form` checks one against the other.
struct InRangeMoments {
    counts: Vec<f64>,
    /// `p[q][j]`: integral of `u^q` times the density over bins `0..j`.
    p: [Vec<f64>; 3],
}

impl InRangeMoments {
    fn new(stats: &TensorStats) -> Self {
        let counts: Vec<f64> = (0..NUM_BINS).map(|b| (if b == 0 { stats.bins[0] - stats.zeros } else { stats.bins[b] }) as f64).collect();
        let mut p = [vec![0f64; NUM_BINS + 1], vec![0f64; NUM_BINS + 1], vec![0f64; NUM_BINS + 1]];
        for (j, &c) in counts.iter().enumerate() {
            let (a, b) = (j as f64, j as f64 + 1.0);
            p[0][j + 1] = p[0][j] + c;
            p[1][j + 1] = p[1][j] + c * (a + b) / 2.0;
            p[2][j + 1] = p[2][j] + c * (a * a + a * b + b * b) / 3.0;
        }
        InRangeMoments { counts, p }
    }

    /// The three moments of the values in `[0, u)`, for `u` in bin units (`u <= NUM_BINS`).
    fn at(&self, u: f64) -> [f64; 3] {
        let b = (u.floor() as usize).min(NUM_BINS);
        let mut m = [self.p[0][b], self.p[1][b], self.p[2][b]];
        if b < NUM_BINS && u > b as f64 {
            let (c, a) = (self.counts[b], b as f64);
            m[0] += c * (u - a);
            m[1] += c * (u * u - a * a) / 2.0;
            m[2] += c * (u * u * u - a * a * a) / 3.0;
        }
        m
    }

    /// Squared rounding error, in squared bin widths, of the values in bins `0..i` quantized
    /// with clipping threshold at edge `i` (step `i / 127` bins).
    fn error(&self, i: usize) -> f64 {
        let end = i as f64;
        let s = end / 127.0;
        let mut err = 0.0;
        let mut lo = self.at(0.0);
        for k in 0..=127usize {
            let hi_u = if k >= 127 { end } else { ((k as f64 + 0.5) * s).min(end) };
            let hi = self.at(hi_u);
            let t = k as f64 * s;
            let e = (hi[2] - lo[2]) - 2.0 * t * (hi[1] - lo[1]) + t * t * (hi[0] - lo[0]);
            err += e.max(0.0);
            if hi_u >= end {
                break;
            }
            lo = hi;
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    /// Gaussian values (Box-Muller) with a few large outliers.
    fn gaussian_with_outliers(n: usize, seed: u64) -> Vec<f32> {
        let mut u = lcg(seed);
        let mut v: Vec<f32> = (0..n)
            .map(|_| {
                let (a, b) = (u(), u());
                ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
            })
            .collect();
        for k in 0..5 {
            v[k * 7] = 40.0 + k as f32;
        }
        v
    }

    /// ReLU-like: half zeros, the rest exponential.
    fn relu_like(n: usize, seed: u64) -> Vec<f32> {
        let mut u = lcg(seed);
        (0..n)
            .map(|_| {
                let a = u();
                if a < 0.5 {
                    0.0
                } else {
                    (-(u()).ln()) as f32
                }
            })
            .collect()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("max".parse::<Method>().unwrap(), Method::Max);
        assert_eq!("Entropy".parse::<Method>().unwrap(), Method::Entropy);
        assert_eq!("mse".parse::<Method>().unwrap(), Method::Mse);
        assert_eq!(
            "percentile".parse::<Method>().unwrap(),
            Method::Percentile(99.99)
        );
        assert_eq!(
            "percentile:99.999".parse::<Method>().unwrap(),
            Method::Percentile(99.999)
        );
        assert_eq!(
            "percentile=99.9".parse::<Method>().unwrap(),
            Method::Percentile(99.9)
        );
        for m in [
            Method::Max,
            Method::Percentile(99.999),
            Method::Entropy,
            Method::Mse,
        ] {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        }
        let e = "foo".parse::<Method>().unwrap_err().to_string();
        assert!(
            e.contains("unknown calibration method 'foo'") && e.contains("entropy"),
            "{e}"
        );
        assert!("percentile:101".parse::<Method>().is_err());
        assert!("percentile:0".parse::<Method>().is_err());
        assert!("percentile:abc".parse::<Method>().is_err());
        assert!("max:3".parse::<Method>().is_err());
    }

    #[test]
    fn max_method() {
        let st = TensorStats::from_values(&[0.5, -3.0, 1.0]);
        let c = compute_amax(&st, Method::Max).unwrap();
        assert_eq!(c.amax, 3.0);
        assert_eq!(c.scale, 3.0 / 127.0);
        assert_eq!(c.fraction_clipped, 0.0);
    }

    #[test]
    fn percentile_on_uniform_values() {
        // 0.001 .. 10.0 in steps of 0.001: the 99 % point is 9.9.
        let v: Vec<f32> = (1..=10_000).map(|i| i as f32 * 0.001).collect();
        let st = TensorStats::from_values(&v);
        let c = compute_amax(&st, Method::Percentile(99.0)).unwrap();
        assert!((c.amax - 9.9).abs() <= 10.0 / 2048.0 + 1e-4, "{}", c.amax);
        assert!(
            c.amax >= 9.9 - 1e-4,
            "upper edge keeps at least 99 %: {}",
            c.amax
        );
        assert!(
            (c.fraction_clipped - 0.01).abs() < 0.001,
            "{}",
            c.fraction_clipped
        );
        let full = compute_amax(&st, Method::Percentile(100.0)).unwrap();
        assert_eq!(full.amax, 10.0);
        assert_eq!(full.fraction_clipped, 0.0);
    }

    #[test]
    fn entropy_clips_outliers_and_never_exceeds_max() {
        for seed in 0..2 {
            for v in [
                gaussian_with_outliers(20_000, seed),
                relu_like(20_000, seed),
            ] {
                let st = TensorStats::from_values(&v);
                let mx = compute_amax(&st, Method::Max).unwrap();
                for m in [Method::Entropy, Method::Mse, Method::Percentile(99.99)] {
                    let c = compute_amax(&st, m).unwrap();
                    assert!(c.amax <= mx.amax, "{m}: {} > {}", c.amax, mx.amax);
                    assert!(c.amax > 0.0);
                    assert_eq!(c.scale, c.amax / 127.0);
                    assert!((0.0..=1.0).contains(&c.fraction_clipped));
                }
            }
        }
        // Gaussian with outliers at 40: the entropy threshold sits far below 40, clipping only
        // the outliers and a thin tail.
        let st = TensorStats::from_values(&gaussian_with_outliers(50_000, 9));
        let c = compute_amax(&st, Method::Entropy).unwrap();
        assert!(c.amax > 2.0 && c.amax < 10.0, "entropy: {}", c.amax);
        assert!(
            c.fraction_clipped > 0.0 && c.fraction_clipped < 0.01,
            "{}",
            c.fraction_clipped
        );
    }

    #[test]
    fn fast_mse_agrees_with_direct_form() {
        for v in [gaussian_with_outliers(5_000, 4), relu_like(5_000, 5)] {
            let st = TensorStats::from_values(&v);
            let i = mse_bin(&st);
            let direct: Vec<f64> = (1..=NUM_BINS).map(|j| mse_error(&st, st.edge(j))).collect();
            let min = direct.iter().cloned().fold(f64::INFINITY, f64::min);
            assert!(
                direct[i - 1] <= min * (1.0 + 1e-9),
                "{} vs {min}",
                direct[i - 1]
            );
        }
    }

    #[test]
    fn cell_sums_match_bin_by_bin_integration() {
        // the O(128) in-range error against the direct integration, at every candidate edge
        for v in [gaussian_with_outliers(5_000, 4), relu_like(5_000, 5), relu_like(300, 6)] {
            let st = TensorStats::from_values(&v);
            let fast = InRangeMoments::new(&st);
            let w = st.bin_width();
            for i in (1..=NUM_BINS).step_by(7).chain([1, 2, 126, 127, 128, NUM_BINS]) {
                let direct = mse_bins(&st, st.edge(i), 0..i);
                let got = fast.error(i) * w * w;
                assert!((got - direct).abs() <= 1e-9 * direct.max(1e-300) + 1e-12 * w * w, "edge {i}: {got} vs {direct}");
            }
        }
    }

    #[test]
    fn mse_finds_the_known_laplace_optimum() {
        // For Laplace(b = 1) data the MSE-optimal 8-bit clipping threshold is about 9.9 b
        // (Banner et al., ACIQ), well below the max of 200k samples (about 12).
        let mut u = lcg(42);
        let v: Vec<f32> = (0..200_000)
            .map(|_| {
                let m = -(u()).ln();
                if u() < 0.5 {
                    m as f32
                } else {
                    -m as f32
                }
            })
            .collect();
        let st = TensorStats::from_values(&v);
        let c = compute_amax(&st, Method::Mse).unwrap();
        assert!(st.max_abs > 11.0, "{}", st.max_abs);
        assert!(
            c.amax > 8.5 && c.amax < 11.0,
            "mse: {} (max {})",
            c.amax,
            st.max_abs
        );
    }

    /// The entropy candidate computed term by term (test oracle for `entropy_bin`).
    fn entropy_bin_direct(stats: &TensorStats) -> Option<usize> {
        // Exact zeros are left out: they quantize exactly whatever the amax.
        let mut bins = stats.bins.clone();
        bins[0] -= stats.zeros;
        let total = (stats.count - stats.zeros) as f64;
        if total == 0.0 {
            return None;
        }
        // suffix[i] = count of bins i.. plus overflow
        let mut suffix = vec![0u64; NUM_BINS + 1];
        suffix[NUM_BINS] = stats.overflow;
        for k in (0..NUM_BINS).rev() {
            suffix[k] = suffix[k + 1] + bins[k];
        }
        let mut group_sum = vec![0u64; ENTROPY_LEVELS];
        let mut group_nonzero = vec![0u64; ENTROPY_LEVELS];
        let mut best: Option<(f64, usize)> = None;
        for i in ENTROPY_FIRST..=NUM_BINS {
            group_sum.iter_mut().for_each(|g| *g = 0);
            group_nonzero.iter_mut().for_each(|g| *g = 0);
            for (k, &c) in bins[..i].iter().enumerate() {
                let g = k * ENTROPY_LEVELS / i;
                group_sum[g] += c;
                group_nonzero[g] += u64::from(c != 0);
            }
            let q_total = (suffix[0] - suffix[i]) as f64;
            if q_total == 0.0 {
                continue;
            }
            let outliers = suffix[i];
            let mut kl = 0.0f64;
            for (k, &c) in bins[..i].iter().enumerate() {
                let p = if k == i - 1 { c + outliers } else { c };
                if p == 0 {
                    continue;
                }
                if c == 0 {
                    kl = f64::INFINITY;
                    break;
                }
                let g = k * ENTROPY_LEVELS / i;
                let q = group_sum[g] as f64 / group_nonzero[g] as f64;
                let pn = p as f64 / total;
                let qn = q / q_total;
                kl += pn * (pn / qn).ln();
            }
            if !kl.is_finite() {
                continue;
            }
            match best {
                Some((b, _)) if kl > b => {}
                _ => best = Some((kl, i)),
            }
        }
        best.map(|(_, i)| i)
    }

    #[test]
    fn fast_entropy_equals_direct_form() {
        let mut sets = vec![
            gaussian_with_outliers(20_000, 1),
            relu_like(20_000, 2),
            (0..5000).map(|i| (i % 17) as f32).collect::<Vec<f32>>(),
            vec![1.0, 2.0, 3.0, 100.0],
        ];
        sets.push(sets[0].iter().map(|v| v.abs().sqrt()).collect());
        for (n, v) in sets.iter().enumerate() {
            let st = TensorStats::from_values(v);
            assert_eq!(entropy_bin(&st), entropy_bin_direct(&st), "set {n}");
        }
    }

    #[test]
    fn entropy_matches_numpy_reference() {
        // Expected values from testdata/calib-mini/entropy_ref.py, run on these histograms.
        let g = TensorStats::from_values(&gaussian_with_outliers(50_000, 9));
        assert_eq!(compute_amax(&g, Method::Entropy).unwrap().amax, 4.425_781_3);
        let r = TensorStats::from_values(&relu_like(50_000, 3));
        let c = compute_amax(&r, Method::Entropy).unwrap();
        assert_eq!(c.amax, 7.529_744);
        assert!(r.zeros > 20_000);
        // Clipped fraction: share of all values (zeros included) at or above amax.
        assert!(
            (c.fraction_clipped - 6e-5).abs() < 1e-9,
            "{}",
            c.fraction_clipped
        );
    }

    #[test]
    fn entropy_keeps_full_range_of_uniform_data() {
        // Uniform data without outliers: clipping only loses information.
        let v: Vec<f32> = (0..40_000)
            .map(|i| ((i * 7919) % 40_000) as f32 / 40_000.0 + 0.0001)
            .collect();
        let st = TensorStats::from_values(&v);
        let c = compute_amax(&st, Method::Entropy).unwrap();
        assert!(c.amax > 0.9 * st.max_abs, "{} vs {}", c.amax, st.max_abs);
        let m = compute_amax(&st, Method::Mse).unwrap();
        assert!(m.amax > 0.95 * st.max_abs, "{} vs {}", m.amax, st.max_abs);
    }

    #[test]
    fn mse_integral_matches_brute_force() {
        // Check mse_error against direct quantization of many values spread uniformly.
        let v: Vec<f32> = (0..200_000)
            .map(|i| (i as f32 + 0.5) / 200_000.0 * 3.0)
            .collect();
        let st = TensorStats::from_values(&v);
        for c in [3.0f64, 1.5, 0.7] {
            let s = c / 127.0;
            let brute: f64 = v
                .iter()
                .map(|&x| {
                    let x = x as f64;
                    let q = (x / s).round().min(127.0) * s;
                    (x - q) * (x - q)
                })
                .sum();
            let model = mse_error(&st, c);
            assert!(
                (model - brute).abs() / brute < 0.01,
                "c={c}: {model} vs {brute}"
            );
        }
    }

    #[test]
    fn all_zero_and_empty() {
        let st = TensorStats::from_values(&[0.0; 4]);
        let c = compute_amax(&st, Method::Entropy).unwrap();
        assert!(c.all_zero);
        assert_eq!(c.amax, 1.0);
        let st = TensorStats::from_values(&[f32::NAN]);
        let e = compute_amax(&st, Method::Max).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
        let st = TensorStats::from_values(&[]);
        assert!(compute_amax(&st, Method::Max).is_err());
    }
}
