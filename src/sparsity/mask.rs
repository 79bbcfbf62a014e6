//! 2:4 magnitude pruning and the 2:4 pattern check.

use super::layout::GroupLayout;
use crate::error::Result;
use std::cmp::Ordering;

/// Which two of four scores to keep: the two largest, ties going to the lower index.
///
/// Scores are compared with [`f64::total_cmp`], so the choice is deterministic even with
/// NaNs (a positive NaN counts as larger than every number).
pub fn keep_two_of_four(scores: [f64; 4]) -> [bool; 4] {
    let mut keep = [false; 4];
    for i in 0..4 {
        // j beats i when its score is larger, or equal with a lower index.
        let beaten_by = (0..4)
            .filter(|&j| {
                j != i
                    && match scores[j].total_cmp(&scores[i]) {
                        Ordering::Greater => true,
                        Ordering::Equal => j < i,
                        Ordering::Less => false,
                    }
            })
            .count();
        keep[i] = beaten_by < 2;
    }
    keep
}

/// What [`prune_2of4_magnitude`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneStats {
    /// Number of weights set to zero by this call (weights already zero are not counted).
    pub zeroed: usize,
    /// `Σ|w| kept / Σ|w| before` (1.0 for an all-zero tensor).
    pub retained_abs_fraction: f64,
    /// Number of 2:4 groups.
    pub groups: usize,
}

/// Prunes `w` in place to 2:4 along `layout`: in every group the two largest `|w|` stay,
/// the other two become `0.0`. Ties keep the lower index. Fails when `w.len()` does not
/// match the layout's shape.
pub fn prune_2of4_magnitude(w: &mut [f32], layout: &GroupLayout) -> Result<PruneStats> {
    layout.check_len(w.len())?;
    let mut before = 0f64;
    let mut kept = 0f64;
    let mut zeroed = 0usize;
    let mut groups = 0usize;
    for grp in layout.groups() {
        groups += 1;
        let abs = grp.map(|i| (w[i] as f64).abs());
        let keep = keep_two_of_four(abs);
        for j in 0..4 {
            before += abs[j];
            if keep[j] {
                kept += abs[j];
            } else {
                if w[grp[j]] != 0.0 {
                    zeroed += 1;
                }
                w[grp[j]] = 0.0;
            }
        }
    }
    Ok(PruneStats { zeroed, retained_abs_fraction: ratio(kept, before), groups })
}

/// The fraction of `Σ|w|` that 2:4 magnitude pruning along `layout` would keep, without
/// changing `w`.
pub fn retained_fraction_2of4(w: &[f32], layout: &GroupLayout) -> Result<f64> {
    let mut copy = w.to_vec();
    Ok(prune_2of4_magnitude(&mut copy, layout)?.retained_abs_fraction)
}

pub(crate) fn ratio(kept: f64, before: f64) -> f64 {
    if before > 0.0 {
        kept / before
    } else {
        1.0
    }
}

/// Result of [`check_2of4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    /// Every group holds at least two zeros.
    pub ok: bool,
    /// Number of groups checked.
    pub groups: usize,
    /// Number of groups with fewer than two zeros.
    pub violating_groups: usize,
    /// Flat index of the first element of the first violating group (the lowest such
    /// index); [`GroupLayout::unravel`] turns it into a multi-index.
    pub first_violation: Option<usize>,
    /// Number of elements equal to zero (`0.0` or `-0.0`) in the whole tensor.
    pub zeros: usize,
}

/// Checks TensorRT's 2:4 rule along `layout`: every group of four holds at least two
/// zeros (`0.0` or `-0.0`; NaN is not zero). Fails when `w.len()` does not match.
pub fn check_2of4(w: &[f32], layout: &GroupLayout) -> Result<CheckResult> {
    layout.check_len(w.len())?;
    Ok(check_2of4_by(layout, |i| w[i] == 0.0))
}

/// TensorRT's 2:4 rule on a tensor of any element type, read through `is_zero(flat index)`
/// (every index below `layout.numel()`): the one implementation of the check.
pub fn check_2of4_by(layout: &GroupLayout, is_zero: impl Fn(usize) -> bool) -> CheckResult {
    let mut violating_groups = 0;
    let mut first_violation = None;
    let mut groups = 0;
    for grp in layout.groups() {
        groups += 1;
        let z = grp.iter().filter(|&&i| is_zero(i)).count();
        if z < 2 {
            violating_groups += 1;
            first_violation.get_or_insert(grp[0]);
        }
    }
    let zeros = (0..layout.numel()).filter(|&i| is_zero(i)).count();
    CheckResult { ok: violating_groups == 0, groups, violating_groups, first_violation, zeros }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparsity::testutil::Rng;

    #[test]
    fn keeps_two_largest_with_lower_index_tie_break() {
        assert_eq!(keep_two_of_four([1.0, 4.0, 3.0, 2.0]), [false, true, true, false]);
        assert_eq!(keep_two_of_four([1.0, 1.0, 1.0, 1.0]), [true, true, false, false]);
        assert_eq!(keep_two_of_four([0.0, 2.0, 2.0, 2.0]), [false, true, true, false]);
        assert_eq!(keep_two_of_four([5.0, 1.0, 5.0, 5.0]), [true, false, true, false]);
        assert_eq!(keep_two_of_four([0.0, 0.0, 0.0, 3.0]), [true, false, false, true]);
        assert_eq!(keep_two_of_four([f64::NAN, 1.0, 2.0, 0.0]), [true, false, true, false]);
    }

    #[test]
    fn magnitude_pruning_uses_abs_and_reports() {
        // Gemm transB=1 N x K = 2 x 8.
        let l = GroupLayout::gemm_b(&[2, 8], true).unwrap();
        let mut w = vec![1.0, -4.0, 3.0, 0.5, 0.0, 0.0, 0.0, 0.0, -2.0, -2.0, 2.0, 2.0, 1.0, 0.0, 0.0, 9.0];
        let s = prune_2of4_magnitude(&mut w, &l).unwrap();
        assert_eq!(w, vec![0.0, -4.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0, -2.0, 0.0, 0.0, 1.0, 0.0, 0.0, 9.0]);
        assert_eq!(s.groups, 4);
        assert_eq!(s.zeroed, 4);
        let before = 8.5 + 8.0 + 10.0;
        let kept = 7.0 + 4.0 + 10.0;
        assert!((s.retained_abs_fraction - kept / before).abs() < 1e-12);
        assert!(check_2of4(&w, &l).unwrap().ok);
        // Idempotent.
        let s2 = prune_2of4_magnitude(&mut w, &l).unwrap();
        assert_eq!(s2.zeroed, 0);
        assert_eq!(s2.retained_abs_fraction, 1.0);
        // All zero tensor.
        let mut z = vec![0.0; 16];
        assert_eq!(prune_2of4_magnitude(&mut z, &l).unwrap().retained_abs_fraction, 1.0);
        assert!(prune_2of4_magnitude(&mut z[..8], &l).is_err());
        assert!(check_2of4(&z[..8], &l).is_err());
    }

    #[test]
    fn check_reports_first_violation() {
        let l = GroupLayout::matmul_b(&[4, 3]).unwrap();
        // columns along axis 0: groups are [0,3,6,9], [1,4,7,10], [2,5,8,11]
        let w = vec![0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        let c = check_2of4(&w, &l).unwrap();
        assert!(!c.ok);
        assert_eq!(c.groups, 3);
        assert_eq!(c.violating_groups, 2);
        assert_eq!(c.first_violation, Some(1));
        assert_eq!(c.zeros, 4);
        let w = vec![-0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let c = check_2of4(&w, &l).unwrap();
        assert!(c.ok, "{c:?}");
        assert_eq!(c.first_violation, None);
    }

    /// Grouping 4 consecutive elements of the flattened C·R·S axis (what some pruners do)
    /// is not TensorRT's rule for a 3×3 kernel, and vice versa.
    #[test]
    fn flattened_crs_grouping_is_not_tensorrt_rule() {
        let (k, c, r, s) = (4, 8, 3, 3);
        let mut rng = Rng::new(7);
        let w0: Vec<f32> = (0..k * c * r * s).map(|_| rng.normal() as f32).collect();
        let trt = GroupLayout::conv(&[k, c, r, s]).unwrap();
        let flat = GroupLayout::new(&[k, c * r * s], 1).unwrap();

        let mut wf = w0.clone();
        prune_2of4_magnitude(&mut wf, &flat).unwrap();
        assert!(check_2of4(&wf, &flat).unwrap().ok);
        let cf = check_2of4(&wf, &trt).unwrap();
        assert!(!cf.ok);
        assert!(cf.violating_groups > cf.groups / 4, "{cf:?}");
        // Same density, wrong pattern.
        assert_eq!(cf.zeros, w0.len() / 2);

        let mut wt = w0.clone();
        prune_2of4_magnitude(&mut wt, &trt).unwrap();
        assert!(check_2of4(&wt, &trt).unwrap().ok);
        assert!(!check_2of4(&wt, &flat).unwrap().ok);

        // The very first flattened group (k=0, c=0, r=0, s=0..3) straddles kernel
        // positions, while TensorRT's first group is (k=0, c=0..3, r=0, s=0).
        assert_eq!(flat.groups().next(), Some([0, 1, 2, 3]));
        assert_eq!(trt.groups().next(), Some([0, 9, 18, 27]));
    }

    #[test]
    fn one_by_one_conv_both_groupings_agree() {
        // For 1×1 kernels flattened grouping equals grouping along C.
        let mut rng = Rng::new(3);
        let w0: Vec<f32> = (0..8 * 16).map(|_| rng.normal() as f32).collect();
        let trt = GroupLayout::conv(&[8, 16, 1, 1]).unwrap();
        let flat = GroupLayout::new(&[8, 16], 1).unwrap();
        let mut a = w0.clone();
        let mut b = w0;
        prune_2of4_magnitude(&mut a, &trt).unwrap();
        prune_2of4_magnitude(&mut b, &flat).unwrap();
        assert_eq!(a, b);
    }
}
