//! Per-tensor activation statistics: the running max of `|x|` and a 2048-bin histogram of `|x|`.
//!
//! # Determinism
//!
//! Calibration must give the same amax whatever the thread count, the split of the data over
//! workers and the order of the samples. TensorRT grows its histogram range by powers of two as
//! larger values arrive, so its result depends on batch order; this module does not. It uses
//! **two passes** over the calibration data:
//!
//! 1. [`RangeCollector`]: the max of `|x|` over all finite values (plus counts). `max` is
//!    commutative and associative on non-NaN floats, so any merge order gives the same bits.
//! 2. [`HistogramCollector`]: a histogram of `|x|` with [`NUM_BINS`] equal bins over
//!    `[0, range]`, where `range` is the max found in pass 1. The bin of a value depends only on
//!    the value and `range` (`floor(|x| * NUM_BINS / range)`, computed in `f64`, the value equal
//!    to `range` going into the last bin), and bins hold integer counts, so merging partial
//!    histograms (one per sample, per thread, ...) in any order gives identical counts.
//!
//! A histogram may also be built over a range fixed in advance (one pass, e.g. a range from a
//! previous run): values above it are counted in [`TensorStats::overflow`] and treated by the
//! amax methods as lying beyond the last bin.
//!
//! Non-finite values (NaN, ±inf) are never binned nor used for the max; they are counted in
//! [`TensorStats::nonfinite`] so the caller can warn or refuse.
//!
//! [`StatsSet`] bundles both passes for many named tensors.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Number of histogram bins (TensorRT's entropy calibration uses 2048).
pub const NUM_BINS: usize = 2048;

/// Pass 1 state for one tensor: running max of `|x|` and value counts. Mergeable in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeCollector {
    max_abs: f32,
    count: u64,
    nonfinite: u64,
}

impl RangeCollector {
    /// An empty collector (max 0, no values).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds values. NaN and ±inf are counted as non-finite and otherwise ignored.
    pub fn observe(&mut self, values: &[f32]) {
        let mut m = self.max_abs;
        let mut finite = 0u64;
        for &v in values {
            let a = v.abs();
            if a.is_finite() {
                finite += 1;
                if a > m {
                    m = a;
                }
            }
        }
        self.max_abs = m;
        self.count += finite;
        self.nonfinite += values.len() as u64 - finite;
    }

    /// Merges another partial collector into this one (order-independent).
    pub fn merge(&mut self, other: &RangeCollector) {
        self.max_abs = self.max_abs.max(other.max_abs);
        self.count += other.count;
        self.nonfinite += other.nonfinite;
    }

    /// Max of `|x|` over the finite values seen (0 when none).
    pub fn max_abs(&self) -> f32 {
        self.max_abs
    }

    /// Number of finite values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of NaN / ±inf values seen.
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }
}

/// Pass 2 state for one tensor: histogram of `|x|` over a fixed `[0, range]`. Mergeable in any
/// order with other collectors of the same range.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramCollector {
    range: f32,
    /// `NUM_BINS / range`, in f64 so the bin index of a value is exact enough and reproducible.
    inv_width: f64,
    bins: Vec<u64>,
    zeros: u64,
    overflow: u64,
    count: u64,
    nonfinite: u64,
    max_abs: f32,
}

impl HistogramCollector {
    /// A histogram over `[0, range]`. `range` must be finite and > 0; for a tensor that was all
    /// zeros in pass 1 pass any positive range (e.g. 1.0): every value then lands in bin 0.
    pub fn new(range: f32) -> Result<Self> {
        if !(range.is_finite() && range > 0.0) {
            return Err(Error::internal(format!(
                "histogram range must be finite and positive, got {range}"
            )));
        }
        Ok(HistogramCollector {
            range,
            inv_width: NUM_BINS as f64 / range as f64,
            bins: vec![0; NUM_BINS],
            zeros: 0,
            overflow: 0,
            count: 0,
            nonfinite: 0,
            max_abs: 0.0,
        })
    }

    /// A histogram whose range is the max found by a pass-1 collector (1.0 if it saw only zeros).
    pub fn from_range(r: &RangeCollector) -> Self {
        let range = if r.max_abs > 0.0 { r.max_abs } else { 1.0 };
        // Unwrap: `range` is finite (RangeCollector only keeps finite values) and > 0.
        HistogramCollector::new(range).unwrap()
    }

    /// The upper edge of the last bin.
    pub fn range(&self) -> f32 {
        self.range
    }

    /// Adds values: `|x|` goes to bin `floor(|x| * NUM_BINS / range)` (the last bin for
    /// `|x| == range`), values above `range` to the overflow count, non-finite ones to their own
    /// count.
    pub fn observe(&mut self, values: &[f32]) {
        let last = NUM_BINS - 1;
        for &v in values {
            let a = v.abs();
            if !a.is_finite() {
                self.nonfinite += 1;
                continue;
            }
            self.count += 1;
            if a > self.max_abs {
                self.max_abs = a;
            }
            if a == 0.0 {
                self.zeros += 1;
                self.bins[0] += 1;
            } else if a > self.range {
                self.overflow += 1;
            } else {
                let idx = ((a as f64) * self.inv_width) as usize;
                self.bins[idx.min(last)] += 1;
            }
        }
    }

    /// Merges another partial histogram of the same range (order-independent: integer sums and
    /// max). Different ranges are a caller bug and give an internal error.
    pub fn merge(&mut self, other: &HistogramCollector) -> Result<()> {
        if self.range.to_bits() != other.range.to_bits() {
            return Err(Error::internal(format!(
                "cannot merge histograms of different ranges ({} and {})",
                self.range, other.range
            )));
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += *b;
        }
        self.zeros += other.zeros;
        self.overflow += other.overflow;
        self.count += other.count;
        self.nonfinite += other.nonfinite;
        self.max_abs = self.max_abs.max(other.max_abs);
        Ok(())
    }

    /// The finished statistics.
    pub fn finish(self) -> TensorStats {
        TensorStats {
            max_abs: self.max_abs,
            range: self.range,
            bins: self.bins,
            zeros: self.zeros,
            overflow: self.overflow,
            count: self.count,
            nonfinite: self.nonfinite,
        }
    }
}

/// One-pass histogram of `|x|` on a fixed power-of-two grid.
///
/// The range is always `2^e` for the smallest integer `e` with `max |x| < 2^e`, and value `a`
/// goes to bin `floor(a * 2^(11 - e))`: a multiplication by a power of two, exact in `f64`.
/// When a larger value arrives, `e` grows and the counts are coarsened (`bin >> shift`); since
/// `floor(a * 2^(11-e-1)) == floor(a * 2^(11-e)) >> 1` exactly, the coarsened histogram equals
/// the one that would have been built at the final `e` directly. The result is therefore a
/// function of the multiset of values alone: any split over workers, any merge order, any
/// sample order gives identical counts, in one pass over the data. The price against the
/// two-pass histogram: the max lies in bins `1024..2048` instead of the last bin, so the
/// resolution below the max is 1024 to 2048 bins instead of exactly 2048.
#[derive(Debug, Clone, PartialEq)]
pub struct GridHistogram {
    /// `e` of the range `2^e`; `None` until a nonzero finite value was seen.
    exp: Option<i32>,
    bins: Vec<u64>,
    zeros: u64,
    count: u64,
    nonfinite: u64,
    max_abs: f32,
}

impl Default for GridHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The smallest `e` with `a < 2^e`, for finite `a > 0`.
fn grid_exp(a: f32) -> i32 {
    // In f64 every f32 (subnormals included) is normal: a = 1.m * 2^E, so a < 2^(E+1).
    let bits = (a as f64).to_bits();
    ((bits >> 52) & 0x7ff) as i32 - 1023 + 1
}

/// The fast path's inner loop over `values` (a multiple of 8 long): bins `|x| * scale`
/// (clamped to the last bin; NaN and inf land there too, and the caller then discards the
/// counts) into four interleaved sub-histograms. Returns the largest finite `|x|` as bits, the
/// finite count and the zero count. AVX2 when the CPU has it: the same bins and counts.
fn bin_fast(values: &[f32], scale: f32, sub: &mut [u32]) -> (u32, u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2.
            return unsafe { bin_fast_avx2(values, scale, sub) };
        }
    }
    bin_fast_scalar(values, scale, sub)
}

fn bin_fast_scalar(values: &[f32], scale: f32, sub: &mut [u32]) -> (u32, u64, u64) {
    let lastf = (NUM_BINS - 1) as f32;
    let (mut maxb, mut finite, mut zeros) = (0u32, 0u64, 0u64);
    let mut idx = [0u32; 8];
    for c in values.chunks_exact(8) {
        for k in 0..8 {
            let b = c[k].to_bits() & 0x7fff_ffff;
            let fin = b < 0x7f80_0000;
            finite += fin as u64;
            zeros += (b == 0) as u64;
            maxb = maxb.max(if fin { b } else { 0 });
            // in [0, 2047] (NaN.min gives 2047): the unchecked conversion is exact
            let x = (f32::from_bits(b) * scale).min(lastf);
            // SAFETY: x is finite and in [0, 2047], representable as u32.
            idx[k] = unsafe { x.to_int_unchecked::<u32>() };
        }
        for (k, i) in idx.iter().enumerate() {
            sub[(k & 3) * NUM_BINS + *i as usize] += 1;
        }
    }
    (maxb, finite, zeros)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bin_fast_avx2(values: &[f32], scale: f32, sub: &mut [u32]) -> (u32, u64, u64) {
    use std::arch::x86_64::*;
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let inf_bits = _mm256_set1_epi32(0x7f80_0000);
    let zero = _mm256_setzero_si256();
    let vscale = _mm256_set1_ps(scale);
    let lastf = _mm256_set1_ps((NUM_BINS - 1) as f32);
    let mut vmax = _mm256_setzero_si256();
    let (mut finite, mut zeros) = (0u64, 0u64);
    let mut idx = [0u32; 8];
    for c in values.chunks_exact(8) {
        // SAFETY: c holds 8 f32; unaligned load.
        let v = _mm256_loadu_si256(c.as_ptr() as *const __m256i);
        let b = _mm256_and_si256(v, abs_mask);
        // finite: b < 0x7f800000 (both non-negative as i32)
        let fin = _mm256_cmpgt_epi32(inf_bits, b);
        finite += (_mm256_movemask_ps(_mm256_castsi256_ps(fin)) as u32).count_ones() as u64;
        zeros += (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(b, zero))) as u32).count_ones() as u64;
        vmax = _mm256_max_epi32(vmax, _mm256_and_si256(b, fin));
        // min(x, last) returns `last` when x is NaN, as f32::min does
        let x = _mm256_min_ps(_mm256_mul_ps(_mm256_castsi256_ps(b), vscale), lastf);
        _mm256_storeu_si256(idx.as_mut_ptr() as *mut __m256i, _mm256_cvttps_epi32(x));
        for (k, i) in idx.iter().enumerate() {
            *sub.get_unchecked_mut((k & 3) * NUM_BINS + *i as usize) += 1;
        }
    }
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, vmax);
    (lanes.iter().copied().max().unwrap_or(0), finite, zeros)
}

impl GridHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        GridHistogram { exp: None, bins: vec![0; NUM_BINS], zeros: 0, count: 0, nonfinite: 0, max_abs: 0.0 }
    }

    /// Coarsens the counts to exponent `e` (>= the current one).
    fn grow_to(&mut self, e: i32) {
        match self.exp {
            None => self.exp = Some(e),
            Some(cur) if e > cur => {
                let shift = (e - cur) as u32;
                let mut nb = vec![0u64; NUM_BINS];
                for (j, c) in self.bins.iter().enumerate() {
                    // shift >= 64 would move everything to bin 0
                    let k = if shift >= usize::BITS { 0 } else { j >> shift };
                    nb[k] += c;
                }
                self.bins = nb;
                self.exp = Some(e);
            }
            Some(_) => {}
        }
    }

    /// Adds values (NaN and ±inf are counted apart and otherwise ignored).
    pub fn observe(&mut self, values: &[f32]) {
        // Fast path: one read of the data, binning at the current exponent. When the slice
        // holds a value beyond the current range or a non-finite one, its partial counts are
        // dropped and the exact two-loop path below runs instead (rare after the first samples).
        if let Some(e) = self.exp {
            let exp32 = 11 - e;
            if !values.is_empty() && values.len() < u32::MAX as usize && (-120..=120).contains(&exp32) {
                let scale = f32::powi(2.0, exp32);
                let last = NUM_BINS - 1;
                let mut sub = vec![0u32; 4 * NUM_BINS];
                let body = values.len() / 8 * 8;
                let (mut maxb, mut finite, mut zeros) = bin_fast(&values[..body], scale, &mut sub);
                for v in &values[body..] {
                    let b = v.to_bits() & 0x7fff_ffff;
                    let fin = b < 0x7f80_0000;
                    finite += fin as u64;
                    zeros += (b == 0) as u64;
                    maxb = maxb.max(if fin { b } else { 0 });
                    sub[((f32::from_bits(b) * scale) as usize).min(last)] += 1;
                }
                let m = f32::from_bits(maxb);
                if finite == values.len() as u64 && grid_exp(m.max(f32::MIN_POSITIVE)) <= e {
                    for q in sub.chunks_exact(NUM_BINS) {
                        for (x, y) in self.bins.iter_mut().zip(q) {
                            *x += *y as u64;
                        }
                    }
                    self.count += finite;
                    self.zeros += zeros;
                    if m > self.max_abs {
                        self.max_abs = m;
                    }
                    return;
                }
            }
        }
        self.observe_exact(values);
    }

    /// The two-loop path: max and counts first, then binning at the final exponent.
    fn observe_exact(&mut self, values: &[f32]) {
        // 1) max and counts, branch-free so that it vectorizes
        let mut m = 0f32;
        let mut finite = 0u64;
        let mut zeros = 0u64;
        for &v in values {
            let a = v.abs();
            let ok = a <= f32::MAX;
            finite += ok as u64;
            zeros += (a == 0.0) as u64;
            m = if ok && a > m { a } else { m };
        }
        self.count += finite;
        self.zeros += zeros;
        self.nonfinite += values.len() as u64 - finite;
        if m > self.max_abs {
            self.max_abs = m;
        }
        if m == 0.0 {
            // only zeros (or nothing finite): bin 0 at whatever range comes
            self.bins[0] += zeros;
            return;
        }
        self.grow_to(grid_exp(m));
        let e = self.exp.expect("set by grow_to");
        // 2) binning: index = floor(|x| * 2^(11-e)), exact (multiplying by a power of two is
        //    exact for every product >= 1, and smaller products go to bin 0 either way)
        let last = NUM_BINS - 1;
        let exp32 = 11 - e;
        if finite == values.len() as u64 && values.len() < u32::MAX as usize && (-120..=120).contains(&exp32) {
            // fast path, every value finite: f32 products, four interleaved u32 histograms so
            // that runs of one bin (the zeros of a ReLU output) do not serialize on one counter
            let scale = f32::powi(2.0, exp32);
            let mut sub = vec![0u32; 4 * NUM_BINS];
            let mut idx = [0usize; 8];
            let mut it = values.chunks_exact(8);
            for c in &mut it {
                for (k, v) in c.iter().enumerate() {
                    idx[k] = ((v.abs() * scale) as usize).min(last);
                }
                for (k, i) in idx.iter().enumerate() {
                    sub[(k & 3) * NUM_BINS + i] += 1;
                }
            }
            for v in it.remainder() {
                sub[((v.abs() * scale) as usize).min(last)] += 1;
            }
            for q in sub.chunks_exact(NUM_BINS) {
                for (x, y) in self.bins.iter_mut().zip(q) {
                    *x += *y as u64;
                }
            }
        } else {
            let scale = f64::powi(2.0, exp32);
            for &v in values {
                let a = v.abs();
                if a <= f32::MAX {
                    self.bins[((a as f64 * scale) as usize).min(last)] += 1;
                }
            }
        }
    }

    /// Merges another grid histogram (order-independent).
    pub fn merge(&mut self, other: &GridHistogram) {
        let mut o = other.clone();
        match (self.exp, o.exp) {
            (Some(a), Some(b)) if a > b => o.grow_to(a),
            (Some(a), Some(b)) if b > a => self.grow_to(b),
            (None, Some(b)) => self.grow_to(b),
            (Some(a), None) => o.grow_to(a),
            _ => {}
        }
        for (x, y) in self.bins.iter_mut().zip(&o.bins) {
            *x += y;
        }
        self.zeros += o.zeros;
        self.count += o.count;
        self.nonfinite += o.nonfinite;
        self.max_abs = self.max_abs.max(o.max_abs);
    }

    /// The finished statistics (range `2^e`, or 1.0 when every value was zero).
    pub fn finish(self) -> TensorStats {
        let range = match self.exp {
            Some(e) => {
                let r = f64::powi(2.0, e);
                // beyond f32's range (values near f32::MAX): the largest finite f32 is the range
                if r > f32::MAX as f64 { f32::MAX } else { r as f32 }
            }
            None => 1.0,
        };
        TensorStats {
            max_abs: self.max_abs,
            range,
            bins: self.bins,
            zeros: self.zeros,
            overflow: 0,
            count: self.count,
            nonfinite: self.nonfinite,
        }
    }
}

/// Final statistics of one tensor, input to [`crate::calib::methods::compute_amax`].
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStats {
    /// Max of `|x|` over all finite values.
    pub max_abs: f32,
    /// Upper edge of the last bin; bin `i` covers `[i, i+1) * range / NUM_BINS`.
    pub range: f32,
    /// [`NUM_BINS`] counts of `|x|` (values exactly 0 included in bin 0).
    pub bins: Vec<u64>,
    /// How many values were exactly zero (a subset of `bins[0]`).
    pub zeros: u64,
    /// Values with `|x| > range` (0 in the two-pass scheme).
    pub overflow: u64,
    /// Number of finite values (`sum(bins) + overflow`).
    pub count: u64,
    /// Number of NaN / ±inf values, excluded from everything else.
    pub nonfinite: u64,
}

impl TensorStats {
    /// Both passes over values held in memory (for tests and small tensors).
    pub fn from_values(values: &[f32]) -> TensorStats {
        let mut r = RangeCollector::new();
        r.observe(values);
        let mut h = HistogramCollector::from_range(&r);
        h.observe(values);
        h.finish()
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f64 {
        self.range as f64 / NUM_BINS as f64
    }

    /// Upper edge of the first `i` bins (`i` in `0..=NUM_BINS`), i.e. `i * range / NUM_BINS`;
    /// exactly `range` for `i == NUM_BINS`.
    pub fn edge(&self, i: usize) -> f64 {
        self.range as f64 * i as f64 / NUM_BINS as f64
    }

    /// Number of values in bins `i..` plus the overflow: the values counted as clipped when
    /// amax is `edge(i)`.
    pub fn count_from(&self, i: usize) -> u64 {
        self.bins[i.min(NUM_BINS)..].iter().sum::<u64>() + self.overflow
    }
}

/// Which pass a [`StatsSet`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Pass 1: collecting max `|x|`.
    Range,
    /// Pass 2: collecting histograms over the ranges of pass 1.
    Histogram,
    /// The only pass of the one-pass scheme: [`GridHistogram`]s.
    Grid,
}

/// Two-pass statistics for many named tensors.
///
/// Usage: create with [`StatsSet::new`], feed every sample's activations with
/// [`observe`](Self::observe) (in parallel: one set per worker or per sample, created with
/// [`fork`](Self::fork), combined with [`merge`](Self::merge)); call
/// [`begin_histograms`](Self::begin_histograms); feed every sample again; [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct StatsSet {
    pass: Pass,
    ranges: BTreeMap<String, RangeCollector>,
    hists: BTreeMap<String, HistogramCollector>,
    grids: BTreeMap<String, GridHistogram>,
}

impl Default for StatsSet {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsSet {
    /// An empty set in pass 1.
    pub fn new() -> Self {
        StatsSet {
            pass: Pass::Range,
            ranges: BTreeMap::new(),
            hists: BTreeMap::new(),
            grids: BTreeMap::new(),
        }
    }

    /// An empty set for the one-pass scheme ([`GridHistogram`] per tensor): feed every
    /// sample once, then [`finish`](Self::finish).
    pub fn one_pass() -> Self {
        StatsSet { pass: Pass::Grid, ..StatsSet::new() }
    }

    /// The current pass.
    pub fn pass(&self) -> Pass {
        self.pass
    }

    /// An empty set in the same pass with the same histogram ranges, for a parallel worker.
    pub fn fork(&self) -> StatsSet {
        match self.pass {
            Pass::Range => StatsSet::new(),
            Pass::Grid => StatsSet::one_pass(),
            Pass::Histogram => StatsSet {
                pass: Pass::Histogram,
                ranges: BTreeMap::new(),
                grids: BTreeMap::new(),
                hists: self
                    .hists
                    .iter()
                    .map(|(k, h)| {
                        // Unwrap: the range was accepted once already.
                        (k.clone(), HistogramCollector::new(h.range).unwrap())
                    })
                    .collect(),
            },
        }
    }

    /// Adds values of tensor `name` to the current pass. In pass 2 a name unseen in pass 1 is
    /// an internal error (both passes must observe the same tensors).
    pub fn observe(&mut self, name: &str, values: &[f32]) -> Result<()> {
        match self.pass {
            Pass::Range => {
                if let Some(r) = self.ranges.get_mut(name) {
                    r.observe(values);
                } else {
                    let mut r = RangeCollector::new();
                    r.observe(values);
                    self.ranges.insert(name.to_string(), r);
                }
                Ok(())
            }
            Pass::Histogram => match self.hists.get_mut(name) {
                Some(h) => {
                    h.observe(values);
                    Ok(())
                }
                None => Err(Error::internal(format!(
                    "tensor '{name}' observed in the histogram pass but not in the range pass"
                ))),
            },
            Pass::Grid => {
                if let Some(h) = self.grids.get_mut(name) {
                    h.observe(values);
                } else {
                    let mut h = GridHistogram::new();
                    h.observe(values);
                    self.grids.insert(name.to_string(), h);
                }
                Ok(())
            }
        }
    }

    /// Merges a partial set of the same pass (order-independent).
    pub fn merge(&mut self, other: &StatsSet) -> Result<()> {
        if self.pass != other.pass {
            return Err(Error::internal(
                "cannot merge statistics of different passes",
            ));
        }
        match self.pass {
            Pass::Range => {
                for (k, r) in &other.ranges {
                    self.ranges.entry(k.clone()).or_default().merge(r);
                }
            }
            Pass::Grid => {
                for (k, h) in &other.grids {
                    self.grids.entry(k.clone()).or_default().merge(h);
                }
            }
            Pass::Histogram => {
                for (k, h) in &other.hists {
                    match self.hists.get_mut(k) {
                        Some(mine) => mine.merge(h)?,
                        None => {
                            self.hists.insert(k.clone(), h.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Pass-1 results so far.
    pub fn ranges(&self) -> &BTreeMap<String, RangeCollector> {
        &self.ranges
    }

    /// Ends pass 1: every tensor gets a histogram over `[0, its max |x|]`.
    pub fn begin_histograms(&mut self) -> Result<()> {
        if self.pass != Pass::Range {
            return Err(Error::internal("begin_histograms called twice or in the one-pass scheme"));
        }
        self.hists = self
            .ranges
            .iter()
            .map(|(k, r)| (k.clone(), HistogramCollector::from_range(r)))
            .collect();
        self.pass = Pass::Histogram;
        Ok(())
    }

    /// Ends pass 2: the statistics of every tensor, by name.
    pub fn finish(self) -> Result<BTreeMap<String, TensorStats>> {
        if self.pass == Pass::Grid {
            return Ok(self.grids.into_iter().map(|(k, h)| (k, h.finish())).collect());
        }
        if self.pass != Pass::Histogram {
            return Err(Error::internal("finish called before the histogram pass"));
        }
        Ok(self
            .hists
            .into_iter()
            .map(|(k, h)| (k, h.finish()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values (xorshift), roughly Laplace-shaped with outliers.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                let mag = -(1.0 - u).ln();
                let sign = if s & 1 == 0 { 1.0 } else { -1.0 };
                let v = if i % 97 == 0 { 0.0 } else { sign * mag };
                v as f32
            })
            .collect()
    }

    #[test]
    fn histogram_counts_everything_once() {
        let v = values(10_000, 1);
        let st = TensorStats::from_values(&v);
        assert_eq!(st.count, 10_000);
        assert_eq!(st.bins.iter().sum::<u64>(), 10_000);
        assert_eq!(st.overflow, 0);
        assert_eq!(st.range, st.max_abs);
        assert!(st.bins[NUM_BINS - 1] >= 1, "the max lands in the last bin");
        assert_eq!(st.zeros, v.iter().filter(|x| **x == 0.0).count() as u64);
    }

    #[test]
    fn merge_is_order_and_split_independent() {
        let samples: Vec<Vec<f32>> = (0..12)
            .map(|i| values(500 + 37 * i, i as u64 + 7))
            .collect();
        let all: Vec<f32> = samples.iter().flatten().copied().collect();
        let whole = TensorStats::from_values(&all);

        // Per-sample collectors merged in two different orders and groupings.
        let mut r = RangeCollector::new();
        for s in samples.iter().rev() {
            let mut p = RangeCollector::new();
            p.observe(s);
            r.merge(&p);
        }
        let mut orders: Vec<Vec<usize>> = vec![(0..12).collect(), (0..12).rev().collect()];
        orders.push(vec![5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]);
        for order in orders {
            let mut h = HistogramCollector::from_range(&r);
            for chunk in order.chunks(5) {
                let mut part = HistogramCollector::from_range(&r);
                for &i in chunk {
                    part.observe(&samples[i]);
                }
                h.merge(&part).unwrap();
            }
            assert_eq!(h.finish(), whole);
        }
    }

    #[test]
    fn nonfinite_values_are_counted_apart() {
        let st = TensorStats::from_values(&[1.0, f32::NAN, -2.0, f32::INFINITY, 0.0]);
        assert_eq!(st.count, 3);
        assert_eq!(st.nonfinite, 2);
        assert_eq!(st.max_abs, 2.0);
        assert_eq!(st.zeros, 1);
        assert_eq!(st.bins[0], 1);
        assert_eq!(st.bins[1024], 1);
        assert_eq!(st.bins[2047], 1);
    }

    #[test]
    fn fixed_range_counts_overflow() {
        let mut h = HistogramCollector::new(1.0).unwrap();
        h.observe(&[0.5, 1.0, 1.5, -3.0]);
        let st = h.finish();
        assert_eq!(st.overflow, 2);
        assert_eq!(st.count, 4);
        assert_eq!(st.max_abs, 3.0);
        assert_eq!(st.count_from(NUM_BINS), 2);
        assert_eq!(st.count_from(1024), 4);
        assert!(HistogramCollector::new(0.0).is_err());
        assert!(HistogramCollector::new(f32::NAN).is_err());
    }

    #[test]
    fn stats_set_two_passes_in_parallel_pieces() {
        let a = values(3000, 3);
        let b = values(2000, 4);
        let run = |order: &[usize]| {
            let data = [&a[..1000], &a[1000..], &b[..], &a[..10]];
            let mut set = StatsSet::new();
            for &i in order {
                let mut w = set.fork();
                w.observe("t", data[i]).unwrap();
                w.observe("u", &data[i][..5]).unwrap();
                set.merge(&w).unwrap();
            }
            set.begin_histograms().unwrap();
            for &i in order.iter().rev() {
                let mut w = set.fork();
                w.observe("t", data[i]).unwrap();
                w.observe("u", &data[i][..5]).unwrap();
                set.merge(&w).unwrap();
            }
            set.finish().unwrap()
        };
        let x = run(&[0, 1, 2, 3]);
        let y = run(&[3, 1, 0, 2]);
        assert_eq!(x, y);
        assert_eq!(x["t"].count, 3010 + 2000);

        let mut set = StatsSet::new();
        set.observe("t", &[1.0]).unwrap();
        set.begin_histograms().unwrap();
        assert!(set.observe("other", &[1.0]).is_err());
        assert!(set.begin_histograms().is_err());
    }

    /// The grid histogram built naively: every value binned directly at the final exponent.
    fn grid_direct(values: &[f32]) -> TensorStats {
        let finite: Vec<f32> = values.iter().map(|v| v.abs()).filter(|a| a.is_finite()).collect();
        let max = finite.iter().cloned().fold(0f32, f32::max);
        let mut e = 0i32;
        while (max as f64) >= f64::powi(2.0, e) {
            e += 1;
        }
        while e > -160 && (max as f64) < f64::powi(2.0, e - 1) {
            e -= 1;
        }
        let mut bins = vec![0u64; NUM_BINS];
        for a in &finite {
            bins[(*a as f64 * f64::powi(2.0, 11 - e)).floor() as usize] += 1;
        }
        TensorStats {
            max_abs: max,
            range: f64::powi(2.0, e) as f32,
            bins,
            zeros: finite.iter().filter(|a| **a == 0.0).count() as u64,
            overflow: 0,
            count: finite.len() as u64,
            nonfinite: (values.len() - finite.len()) as u64,
        }
    }

    #[test]
    fn grid_histogram_is_split_and_order_independent() {
        // growing maxima force several coarsenings; one sample holds NaN and inf
        let mut samples: Vec<Vec<f32>> = (0..12)
            .map(|i| values(300 + 41 * i, i as u64 + 3).iter().map(|v| v * (1.7f32).powi(i as i32 - 4)).collect())
            .collect();
        samples[4].extend([f32::NAN, f32::NEG_INFINITY, 0.0]);
        let all: Vec<f32> = samples.iter().flatten().copied().collect();
        let direct = grid_direct(&all);
        let mut one = GridHistogram::new();
        one.observe(&all);
        assert_eq!(one.clone().finish(), direct);
        let orders: Vec<Vec<usize>> =
            vec![(0..12).collect(), (0..12).rev().collect(), vec![5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]];
        for order in orders {
            for chunk_len in [1, 5, 12] {
                let mut h = GridHistogram::new();
                for chunk in order.chunks(chunk_len) {
                    let mut part = GridHistogram::new();
                    for &i in chunk {
                        part.observe(&samples[i]);
                    }
                    h.merge(&part);
                }
                assert_eq!(h.finish(), direct, "order {order:?} chunks {chunk_len}");
            }
        }
        assert!(direct.max_abs < direct.range && direct.max_abs >= direct.range / 2.0);
        assert_eq!(direct.nonfinite, 2);
    }

    #[test]
    fn grid_histogram_edge_values() {
        // a power of two goes to the next range (max < range strictly), subnormals work
        let mut h = GridHistogram::new();
        h.observe(&[1.0, 0.5, 0.0]);
        let st = h.finish();
        assert_eq!(st.range, 2.0);
        assert_eq!(st.bins[1024], 1);
        assert_eq!(st.bins[512], 1);
        assert_eq!(st.bins[0], 1);
        let tiny = f32::from_bits(3); // subnormal
        let mut h = GridHistogram::new();
        h.observe(&[tiny, -tiny]);
        assert_eq!(h.clone().finish(), grid_direct(&[tiny, -tiny]));
        h.observe(&[1e30]);
        let st = h.finish();
        assert_eq!(st.bins[0], 2);
        assert_eq!(st.count, 3);
        let mut z = GridHistogram::new();
        z.observe(&[0.0, 0.0]);
        let st = z.finish();
        assert_eq!((st.range, st.bins[0], st.zeros), (1.0, 2, 2));
        let mut set = StatsSet::one_pass();
        set.observe("t", &[0.25, -3.0]).unwrap();
        let mut w = set.fork();
        w.observe("t", &[5.0]).unwrap();
        set.merge(&w).unwrap();
        assert!(set.begin_histograms().is_err());
        let st = &set.finish().unwrap()["t"];
        assert_eq!((st.range, st.max_abs, st.count), (8.0, 5.0, 3));
    }

    #[test]
    fn vector_and_scalar_binning_agree() {
        let mut v = values(4096, 9);
        v.extend([0.0, -0.0, f32::from_bits(1), 1e-30, 3.99, -4.0, 4.5, f32::NAN, f32::INFINITY, -f32::INFINITY]);
        v.extend(values(6, 10));
        let body = v.len() / 8 * 8;
        for scale in [1.0f32, 256.0, 0.25] {
            let (mut a, mut b) = (vec![0u32; 4 * NUM_BINS], vec![0u32; 4 * NUM_BINS]);
            let fast = bin_fast(&v[..body], scale, &mut a);
            let slow = bin_fast_scalar(&v[..body], scale, &mut b);
            assert_eq!(fast, slow);
            assert_eq!(a, b);
            assert_eq!(fast.1, body as u64 - 3);
        }
    }

    #[test]
    fn all_zero_tensor() {
        let st = TensorStats::from_values(&[0.0; 10]);
        assert_eq!(st.max_abs, 0.0);
        assert_eq!(st.range, 1.0);
        assert_eq!(st.bins[0], 10);
    }
}
