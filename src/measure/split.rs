//! The split of the calibration samples into those the passes use (calibration,
//! reconstruction, selection) and the held-out ones that only judge the final model, and
//! the confidence bounds judged on them.
//!
//! Sources hand out samples in `spread_order` (see [`crate::calib::spread_order`]), so the
//! first `use` samples and the last `held_out` ones each spread over the whole set.

/// How many of `n` calibration samples are held out: a quarter, at least 64 (or half of
/// them when there are fewer than 128), at most 256. None of 0 or 1 sample.
pub fn held_out_count(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    (n / 4).max(64.min(n / 2)).min(256)
}

/// The fewest held-out samples that judge an output SQNR (see [`held_out_count_for`]).
pub const HELD_OUT_MIN_SQNR: usize = 8;
/// Output values the held-out samples of a non-classifier should hold together.
pub const HELD_OUT_SQNR_VALUES: usize = 1 << 18;

/// [`held_out_count`], or fewer when the output is not class scores and each sample's
/// outputs hold many values (`values`: per sample, when the declared shapes say): an output
/// SQNR over 8 samples of a BERT hidden state (786,432 values) is measured as well as over 32,
/// and every sample not held out calibrates. At least [`HELD_OUT_MIN_SQNR`] samples (never
/// more than [`held_out_count`] gives), enough for [`HELD_OUT_SQNR_VALUES`] values.
pub fn held_out_count_for(n: usize, class_scores: bool, values: Option<usize>) -> usize {
    let h = held_out_count(n);
    match values {
        Some(v) if !class_scores && v > 0 => h.min(HELD_OUT_SQNR_VALUES.div_ceil(v).max(HELD_OUT_MIN_SQNR)),
        _ => h,
    }
}

/// Wilson score interval for `k` successes in `n` trials at `z` standard deviations (1.96:
/// 95 % two-sided): `(low, high)`. It stays inside [0, 1] and is sound at k = n, where the
/// normal approximation would claim certainty. (0, 1) for n = 0.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (nf, p) = (n as f64, k.min(n) as f64 / n as f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * nf);
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    let d = 1.0 + z2 / nf;
    (((centre - half) / d).max(0.0), ((centre + half) / d).min(1.0))
}

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for a one-sided 95 % lower bound (what a budget is proved with).
pub const Z95_ONE_SIDED: f64 = 1.644_853_626_951_472_6;

/// Held-out samples needed to prove an agreement of at least `x` (one-sided 95 %) when every
/// one of them agrees: the smallest n with n / (n + z²) >= x.
pub fn samples_to_prove(x: f64) -> usize {
    if x <= 0.0 {
        return 1;
    }
    if x >= 1.0 {
        return usize::MAX;
    }
    let z2 = Z95_ONE_SIDED * Z95_ONE_SIDED;
    (z2 * x / (1.0 - x)).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_split_sizes() {
        assert_eq!(held_out_count(0), 0);
        assert_eq!(held_out_count(1), 0);
        assert_eq!(held_out_count(32), 16);
        assert_eq!(held_out_count(100), 50);
        assert_eq!(held_out_count(250), 64);
        assert_eq!(held_out_count(1000), 250);
        assert_eq!(held_out_count(5000), 256);
        for n in 2..600 {
            let h = held_out_count(n);
            assert!(h >= 1 && h <= n / 2, "n={n} h={h}");
        }
    }

    #[test]
    fn wilson_interval_matches_the_closed_form() {
        // all agree: the lower bound is n / (n + z²)
        let (lo, hi) = wilson(125, 125, Z95);
        assert!((lo - 125.0 / (125.0 + Z95 * Z95)).abs() < 1e-12 && hi == 1.0);
        // 45 of 50 (0.9): the textbook Wilson interval 0.7864 .. 0.9565
        let (lo, hi) = wilson(45, 50, Z95);
        assert!((lo - 0.7864).abs() < 5e-4 && (hi - 0.9565).abs() < 5e-4, "{lo} {hi}");
        // the interval holds the point estimate and narrows with n
        let (a, b) = wilson(90, 100, Z95);
        let (c, d) = wilson(900, 1000, Z95);
        assert!(a < 0.9 && 0.9 < b && c > a && d < b);
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
        // a one-sided bound is tighter than the two-sided one
        assert!(wilson(95, 100, Z95_ONE_SIDED).0 > wilson(95, 100, Z95).0);
        // proving 0.97 at full agreement takes 88 samples: 87 do not suffice
        let n = samples_to_prove(0.97);
        assert_eq!(n, 88);
        assert!(wilson(n, n, Z95_ONE_SIDED).0 >= 0.97 && wilson(n - 1, n - 1, Z95_ONE_SIDED).0 < 0.97);
    }

    #[test]
    fn a_large_non_classifier_output_holds_out_fewer_samples() {
        // BERT-base's hidden state, 64 samples: 8 held out, 56 calibrate
        assert_eq!(held_out_count_for(64, false, Some(128 * 768)), 8);
        // classifiers and unknown sizes keep the quarter / 64 rule
        assert_eq!(held_out_count_for(64, true, Some(10)), held_out_count(64));
        assert_eq!(held_out_count_for(1000, false, None), held_out_count(1000));
        // a small non-classifier output needs more samples, never more than the rule gives
        assert_eq!(held_out_count_for(1000, false, Some(1024)), 250);
        assert_eq!(held_out_count_for(1000, false, Some(4096)), 64);
        assert_eq!(held_out_count_for(16, false, Some(1 << 20)), 8);
    }
}
