//! Where the 2:4 groups of a weight tensor lie.
//!
//! A [`GroupLayout`] names a dense row-major tensor shape and its *reduction axis*: the
//! axis along which TensorRT multiplies the weight with the layer's input (input channels
//! of a Conv, the `K` dimension of a MatMul/Gemm). A 2:4 group is four elements whose
//! multi-indices are equal everywhere except along that axis, where they take the four
//! consecutive positions `4g, 4g+1, 4g+2, 4g+3`.
//!
//! For a Conv weight `K×C×R×S` (axis 1) that is: for every output channel `k` and every
//! kernel position `(r, s)`, the channels `4g..4g+3`. Any number of spatial dimensions
//! works (1-D, 2-D, 3-D convolutions).

use crate::error::{Error, Result};

/// The 2:4 axis rule: the axis of a layer's weight along which TensorRT groups four
/// consecutive elements (the reduction axis), by the kind of layer, or `None` where TensorRT
/// has no sparse kernel. Conv `K×C×spatial…` (rank ≥ 3, `group` = 1): axis 1, the input
/// channels. A matrix multiply's constant `B` (rank ≥ 2): its rows, axis `rank − 2`, or its
/// last axis when TensorRT reads it transposed (a Gemm with `transB=1`, a MatrixMultiply with
/// `kTRANSPOSE`). The one definition used by `prune-2of4`, `inspect`, the testing kit and the
/// TensorRT lowering's check.
pub fn reduction_axis(kind: WeightedKind, rank: usize) -> Option<usize> {
    match kind {
        WeightedKind::Conv { group: 1 } if rank >= 3 => Some(1),
        WeightedKind::Conv { .. } => None,
        WeightedKind::MatMulB { transposed } if rank >= 2 => Some(if transposed { rank - 1 } else { rank - 2 }),
        WeightedKind::MatMulB { .. } => None,
    }
}

/// The kinds of layer [`reduction_axis`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightedKind {
    /// A convolution with `group` groups (TensorRT has no sparse grouped convolution).
    Conv { group: i64 },
    /// The constant `B` operand of a matrix multiply (ONNX MatMul, Gemm), `transposed` when
    /// the layer reads it transposed (Gemm `transB=1`).
    MatMulB { transposed: bool },
}

/// Why a weight has no 2:4 grouping (TensorRT considers no sparse kernel for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    /// The axis is outside the tensor's rank.
    AxisOutOfRange { axis: usize, rank: usize },
    /// A dimension is 0.
    Empty,
    /// The axis length is not a multiple of 4. TensorRT's rule is stated for groups of four
    /// consecutive input channels; a short last group has no defined pattern, and Polygraphy's
    /// pruner and checker skip such weights (shared/docs/tensorrt-facts.md). Such a weight is
    /// not eligible: never pruned, and reported as not 2:4 by every check.
    NotMultipleOf4 { len: usize },
    /// The element count overflows.
    TooLarge,
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ineligible::AxisOutOfRange { axis, rank } => write!(f, "axis {axis} out of range for rank {rank}"),
            Ineligible::Empty => f.write_str("empty tensor"),
            Ineligible::NotMultipleOf4 { len } => write!(f, "axis length {len} not a multiple of 4"),
            Ineligible::TooLarge => f.write_str("tensor too large"),
        }
    }
}

/// The 2:4 grouping of a row-major tensor: groups of 4 consecutive positions along `axis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// Tensor shape (row-major, last dimension fastest).
    pub shape: Vec<usize>,
    /// The reduction axis along which groups of 4 run.
    pub axis: usize,
}

impl GroupLayout {
    /// A layout for `shape` grouped along `axis`.
    ///
    /// Fails (user error) when `axis` is out of range, the tensor is empty, or the length of
    /// `axis` is not a multiple of 4 (such weights are not eligible for 2:4 sparsity).
    pub fn new(shape: &[usize], axis: usize) -> Result<Self> {
        Self::try_new(shape, axis).map_err(|e| {
            Error::user(match e {
                Ineligible::AxisOutOfRange { .. } => {
                    format!("2:4 grouping axis {axis} out of range for a tensor of rank {} (shape {shape:?})", shape.len())
                }
                Ineligible::Empty => format!("cannot group an empty tensor of shape {shape:?}"),
                Ineligible::NotMultipleOf4 { len } => {
                    format!("axis {axis} of shape {shape:?} has length {len}, not a multiple of 4: not eligible for 2:4 sparsity")
                }
                Ineligible::TooLarge => format!("tensor shape {shape:?} is too large"),
            })
        })
    }

    /// [`GroupLayout::new`], with the reason as a value: the one place that decides whether
    /// a weight can be grouped 2:4 at all.
    pub fn try_new(shape: &[usize], axis: usize) -> std::result::Result<Self, Ineligible> {
        if axis >= shape.len() {
            return Err(Ineligible::AxisOutOfRange { axis, rank: shape.len() });
        }
        if shape.contains(&0) {
            return Err(Ineligible::Empty);
        }
        if !shape[axis].is_multiple_of(4) {
            return Err(Ineligible::NotMultipleOf4 { len: shape[axis] });
        }
        shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(Ineligible::TooLarge)?;
        Ok(GroupLayout { shape: shape.to_vec(), axis })
    }

    /// Conv weight `K×C×spatial...` (rank ≥ 3): groups along the input channels (axis 1).
    pub fn conv(shape: &[usize]) -> Result<Self> {
        if shape.len() < 3 {
            return Err(Error::user(format!(
                "a Conv weight must have rank >= 3 (K x C x spatial...), got shape {shape:?}"
            )));
        }
        Self::new(shape, reduction_axis(WeightedKind::Conv { group: 1 }, shape.len()).unwrap_or(1))
    }

    /// Constant `B` operand of a MatMul, shape `K×N`: groups along axis 0.
    pub fn matmul_b(shape: &[usize]) -> Result<Self> {
        if shape.len() != 2 {
            return Err(Error::user(format!("a MatMul weight must be 2-D, got shape {shape:?}")));
        }
        Self::new(shape, reduction_axis(WeightedKind::MatMulB { transposed: false }, 2).unwrap_or(0))
    }

    /// `B` operand of a Gemm: `K×N` grouped along axis 0, or `N×K` (`transB=1`) along axis 1.
    pub fn gemm_b(shape: &[usize], trans_b: bool) -> Result<Self> {
        if shape.len() != 2 {
            return Err(Error::user(format!("a Gemm weight must be 2-D, got shape {shape:?}")));
        }
        Self::new(shape, reduction_axis(WeightedKind::MatMulB { transposed: trans_b }, 2).unwrap_or(usize::from(trans_b)))
    }

    /// Number of elements of the tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Product of the dimensions before `axis`.
    pub fn outer(&self) -> usize {
        self.shape[..self.axis].iter().product()
    }

    /// Product of the dimensions after `axis`: the flat-index distance between neighbours
    /// along `axis`.
    pub fn inner(&self) -> usize {
        self.shape[self.axis + 1..].iter().product()
    }

    /// Length of the reduction axis.
    pub fn axis_len(&self) -> usize {
        self.shape[self.axis]
    }

    /// Number of 2:4 groups (`numel / 4`).
    pub fn num_groups(&self) -> usize {
        self.numel() / 4
    }

    /// The four flat indices of group number `g` (`g < num_groups()`), in the order
    /// [`groups`](Self::groups) yields them. Returns `None` when `g` is out of range.
    pub fn group(&self, g: usize) -> Option<[usize; 4]> {
        if g >= self.num_groups() {
            return None;
        }
        let inner = self.inner();
        let per_outer = self.axis_len() / 4 * inner;
        let o = g / per_outer;
        let rem = g % per_outer;
        let ga = rem / inner;
        let i = rem % inner;
        let base = (o * self.axis_len() + 4 * ga) * inner + i;
        Some([base, base + inner, base + 2 * inner, base + 3 * inner])
    }

    /// Iterates over all groups, yielding the four flat indices of each, ordered by
    /// (outer index, group along axis, inner index). The first index of each group
    /// increases strictly along the iteration.
    pub fn groups(&self) -> GroupIter {
        GroupIter {
            outer: self.outer(),
            ngroups_axis: self.axis_len() / 4,
            inner: self.inner(),
            axis_len: self.axis_len(),
            o: 0,
            g: 0,
            i: 0,
        }
    }

    /// The multi-index of a flat index (for error messages).
    pub fn unravel(&self, mut flat: usize) -> Vec<usize> {
        let mut idx = vec![0; self.shape.len()];
        for (d, &n) in self.shape.iter().enumerate().rev() {
            idx[d] = flat % n;
            flat /= n;
        }
        idx
    }

    /// Checks that a data slice has exactly `numel()` elements.
    pub(crate) fn check_len(&self, len: usize) -> Result<()> {
        if len != self.numel() {
            return Err(Error::user(format!(
                "weight has {len} elements but its shape {:?} needs {}",
                self.shape,
                self.numel()
            )));
        }
        Ok(())
    }
}

/// Iterator over the groups of a [`GroupLayout`]; see [`GroupLayout::groups`].
#[derive(Debug, Clone)]
pub struct GroupIter {
    outer: usize,
    ngroups_axis: usize,
    inner: usize,
    axis_len: usize,
    o: usize,
    g: usize,
    i: usize,
}

impl Iterator for GroupIter {
    type Item = [usize; 4];

    fn next(&mut self) -> Option<[usize; 4]> {
        if self.o >= self.outer || self.ngroups_axis == 0 || self.inner == 0 {
            return None;
        }
        let inner = self.inner;
        let base = (self.o * self.axis_len + 4 * self.g) * inner + self.i;
        self.i += 1;
        if self.i == inner {
            self.i = 0;
            self.g += 1;
            if self.g == self.ngroups_axis {
                self.g = 0;
                self.o += 1;
            }
        }
        Some([base, base + inner, base + 2 * inner, base + 3 * inner])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let total = self.outer * self.ngroups_axis * self.inner;
        let done =
            if self.o >= self.outer { total } else { (self.o * self.ngroups_axis + self.g) * self.inner + self.i };
        (total - done, Some(total - done))
    }
}

impl ExactSizeIterator for GroupIter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_rule_and_the_short_last_group() {
        assert_eq!(reduction_axis(WeightedKind::Conv { group: 1 }, 4), Some(1));
        assert_eq!(reduction_axis(WeightedKind::Conv { group: 1 }, 3), Some(1));
        assert_eq!(reduction_axis(WeightedKind::Conv { group: 32 }, 4), None);
        assert_eq!(reduction_axis(WeightedKind::MatMulB { transposed: false }, 2), Some(0));
        assert_eq!(reduction_axis(WeightedKind::MatMulB { transposed: true }, 2), Some(1));
        assert_eq!(reduction_axis(WeightedKind::MatMulB { transposed: false }, 3), Some(1));
        assert_eq!(reduction_axis(WeightedKind::MatMulB { transposed: false }, 1), None);
        // 6 input channels: no short last group is formed; the weight is not eligible
        assert_eq!(GroupLayout::try_new(&[2, 6, 3, 3], 1), Err(Ineligible::NotMultipleOf4 { len: 6 }));
        assert_eq!(Ineligible::NotMultipleOf4 { len: 6 }.to_string(), "axis length 6 not a multiple of 4");
        assert!(GroupLayout::new(&[2, 6, 3, 3], 1).is_err());
        assert_eq!(GroupLayout::try_new(&[2, 8, 3, 3], 1).map(|l| l.num_groups()), Ok(2 * 2 * 9));
    }

    #[test]
    fn conv_groups_run_along_input_channels() {
        // K=2, C=8, R=3, S=3
        let l = GroupLayout::conv(&[2, 8, 3, 3]).unwrap();
        assert_eq!(l.num_groups(), 2 * 8 * 9 / 4);
        let groups: Vec<_> = l.groups().collect();
        assert_eq!(groups.len(), l.num_groups());
        // First group: k=0, c=0..3, r=0, s=0.
        assert_eq!(groups[0], [0, 9, 18, 27]);
        // Every group: same k, r, s; channels 4g..4g+3.
        for grp in &groups {
            let idx: Vec<_> = grp.iter().map(|&f| l.unravel(f)).collect();
            for j in 0..4 {
                assert_eq!(idx[j][0], idx[0][0]);
                assert_eq!(idx[j][2], idx[0][2]);
                assert_eq!(idx[j][3], idx[0][3]);
                assert_eq!(idx[j][1], idx[0][1] + j);
            }
            assert_eq!(idx[0][1] % 4, 0);
        }
        // Each element in exactly one group.
        let mut seen = vec![0u8; l.numel()];
        for grp in &groups {
            for &f in grp {
                seen[f] += 1;
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        // group(g) agrees with the iterator, first indices strictly increase.
        for (g, grp) in groups.iter().enumerate() {
            assert_eq!(l.group(g), Some(*grp));
            if g > 0 {
                assert!(grp[0] > groups[g - 1][0]);
            }
        }
        assert_eq!(l.group(groups.len()), None);
    }

    #[test]
    fn conv_1d_and_3d() {
        let l = GroupLayout::conv(&[3, 4, 5]).unwrap();
        assert_eq!(l.groups().next(), Some([0, 5, 10, 15]));
        assert_eq!(l.groups().count(), 15);
        let l = GroupLayout::conv(&[1, 8, 2, 2, 2]).unwrap();
        assert_eq!(l.groups().count(), 16);
        assert_eq!(l.groups().nth(8), Some([32, 40, 48, 56]));
    }

    #[test]
    fn matrix_axes() {
        // Gemm transB=1: N x K, groups along K (axis 1) = 4 contiguous elements.
        let l = GroupLayout::gemm_b(&[3, 8], true).unwrap();
        assert_eq!(l.groups().collect::<Vec<_>>()[..3], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]);
        // MatMul B: K x N, groups along K (axis 0) = stride N.
        let l = GroupLayout::matmul_b(&[8, 3]).unwrap();
        assert_eq!(
            l.groups().collect::<Vec<_>>(),
            vec![[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11], [12, 15, 18, 21], [13, 16, 19, 22], [14, 17, 20, 23]]
        );
        assert_eq!(GroupLayout::gemm_b(&[8, 3], false).unwrap(), l);
    }

    #[test]
    fn rejects_ineligible() {
        assert!(GroupLayout::conv(&[8, 6, 3, 3]).is_err());
        assert!(GroupLayout::conv(&[8, 1, 3, 3]).is_err()); // depthwise
        assert!(GroupLayout::conv(&[8, 8]).is_err());
        assert!(GroupLayout::new(&[8, 8], 2).is_err());
        assert!(GroupLayout::new(&[0, 8], 1).is_err());
        assert!(GroupLayout::new(&[usize::MAX, 8], 1).is_err());
        assert!(GroupLayout::matmul_b(&[4, 4, 4]).is_err());
        let l = GroupLayout::new(&[4], 0).unwrap();
        assert!(l.check_len(3).is_err());
        assert!(l.check_len(4).is_ok());
    }

    #[test]
    fn size_hint_is_exact() {
        let l = GroupLayout::conv(&[2, 8, 3]).unwrap();
        let mut it = l.groups();
        assert_eq!(it.len(), 12);
        it.next();
        it.next();
        assert_eq!(it.len(), 10);
        assert_eq!(it.count(), 10);
    }
}
