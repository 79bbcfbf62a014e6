//! 2:4 structured-sparsity checks on weights, as TensorRT applies them: for every output
//! channel and every kernel position, each group of 4 consecutive *input channels* holds at
//! least 2 zeros. For a convolution kernel K×C×R×S that is axis 1 (C), separately for every
//! (k, r, s) — not groups along the flattened C·R·S axis. For a matrix multiply with constant
//! B, the reduction axis of B (axis -2 for kNONE, -1 for kTRANSPOSE).

use std::fmt;

use crate::sparsity::{check_2of4_by, reduction_axis, GroupLayout, WeightedKind};

use super::network::{LayerId, LayerKind, MatrixOperation, Network, Weights};

/// Result of a 2:4 check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sparse24 {
    /// Every group of 4 along the axis has at least 2 zeros.
    Yes,
    /// At least one group has fewer than 2 zeros.
    No,
    /// The check does not apply (reason given), e.g. the axis length is not a multiple of 4.
    NotApplicable(String),
}

impl fmt::Display for Sparse24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sparse24::Yes => f.write_str("yes"),
            Sparse24::No => f.write_str("no"),
            Sparse24::NotApplicable(r) => write!(f, "n/a({r})"),
        }
    }
}

/// Checks 2:4 sparsity of `w`, laid out row-major with `shape`, in groups of 4 consecutive
/// elements along `axis` (for every position of the other axes).
pub fn check_2to4(w: &Weights, shape: &[i64], axis: usize) -> Sparse24 {
    if axis >= shape.len() || shape.iter().any(|&d| d <= 0) {
        return Sparse24::NotApplicable("bad shape".into());
    }
    let total: i64 = shape.iter().product();
    if total as usize != w.count() {
        return Sparse24::NotApplicable("shape mismatch".into());
    }
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    match GroupLayout::try_new(&dims, axis) {
        Err(why) => Sparse24::NotApplicable(why.to_string()),
        Ok(layout) if check_2of4_by(&layout, |i| w.is_zero(i)).ok => Sparse24::Yes,
        Ok(_) => Sparse24::No,
    }
}

/// Where a weighted layer's kernel comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelSource {
    /// `kernelWeights` of the layer itself.
    Inline,
    /// A Constant layer (possibly behind Q/DQ/Cast/Identity) feeding input 1.
    Constant(LayerId),
    /// Input 1 is not a constant: the weights are unknown at build time.
    NonConstant,
}

/// The kernel of a convolution / matrix-multiply layer and its 2:4 status.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelInfo<'a> {
    /// Where the weights come from.
    pub source: KernelSource,
    /// The weights, when known.
    pub weights: Option<&'a Weights>,
    /// Their shape (conv: K×C/g×R×S), when known.
    pub shape: Option<Vec<i64>>,
    /// The 2:4 check along the input-channel (reduction) axis.
    pub sparse: Sparse24,
}

/// Kernel and 2:4 status of layer `id`, or `None` for a layer without a kernel (only
/// Convolution, Deconvolution and MatrixMultiply have one).
pub fn kernel_info(net: &Network, id: LayerId) -> Option<KernelInfo<'_>> {
    let layer = net.layer(id).ok()?;
    let const_of = |input: usize| -> (KernelSource, Option<&Weights>, Option<Vec<i64>>) {
        let src = layer
            .inputs
            .get(input)
            .and_then(|t| net.constant_source(*t));
        match src.and_then(|lid| net.layer(lid).ok().map(|l| (lid, l))) {
            Some((lid, l)) => match &l.kind {
                LayerKind::Constant { dims, weights } => (
                    KernelSource::Constant(lid),
                    Some(weights),
                    Some(dims.clone()),
                ),
                _ => (KernelSource::NonConstant, None, None),
            },
            None => (KernelSource::NonConstant, None, None),
        }
    };
    match &layer.kind {
        LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => {
            let is_deconv = matches!(layer.kind, LayerKind::Deconvolution(_));
            let (source, weights, shape) = match &p.kernel {
                Some(w) => {
                    let per: i64 = p.nb_output_maps * p.kernel_size.iter().product::<i64>();
                    let c = if per > 0 { w.count() as i64 / per } else { 0 };
                    let mut shape = vec![p.nb_output_maps, c];
                    if is_deconv {
                        // deconvolution kernels are C×(K/g)×R×S
                        shape = vec![c * p.nb_groups, p.nb_output_maps / p.nb_groups.max(1)];
                    }
                    shape.extend(&p.kernel_size);
                    (KernelSource::Inline, Some(w), Some(shape))
                }
                None => const_of(1),
            };
            let sparse = if is_deconv {
                Sparse24::NotApplicable("deconvolution".into())
            } else {
                match (weights, &shape) {
                    (Some(w), Some(s)) if s.len() == 2 + p.kernel_size.len() => {
                        // the axis of an ungrouped conv; a grouped one is checked the same way
                        // and then reported as not applicable
                        let axis = reduction_axis(WeightedKind::Conv { group: 1 }, s.len()).unwrap_or(1);
                        let r = check_2to4(w, s, axis);
                        if p.nb_groups > 1 && r == Sparse24::Yes {
                            Sparse24::NotApplicable(
                                "grouped conv: TensorRT uses no sparse kernels".into(),
                            )
                        } else {
                            r
                        }
                    }
                    (Some(_), _) => Sparse24::NotApplicable("kernel shape".into()),
                    _ => Sparse24::NotApplicable("kernel not constant".into()),
                }
            };
            Some(KernelInfo {
                source,
                weights,
                shape,
                sparse,
            })
        }
        LayerKind::MatrixMultiply { op1, .. } => {
            let (source, weights, shape) = const_of(1);
            let sparse = match (weights, &shape) {
                (Some(w), Some(s)) if s.len() >= 2 => match op1 {
                    MatrixOperation::None | MatrixOperation::Transpose => {
                        let transposed = *op1 == MatrixOperation::Transpose;
                        match reduction_axis(WeightedKind::MatMulB { transposed }, s.len()) {
                            Some(axis) => check_2to4(w, s, axis),
                            None => Sparse24::NotApplicable("operand rank < 2".into()),
                        }
                    }
                    MatrixOperation::Vector => Sparse24::NotApplicable("vector operand".into()),
                },
                (Some(_), _) => Sparse24::NotApplicable("operand rank < 2".into()),
                _ => Sparse24::NotApplicable("operand not constant".into()),
            };
            Some(KernelInfo {
                source,
                weights,
                shape,
                sparse,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trt::network::{ConvParams, DataType};

    /// K=1, C=8, R=S=1 / 2: values chosen per (c, r, s).
    fn kernel(c: usize, rs: usize, zero: impl Fn(usize, usize) -> bool) -> Weights {
        let mut v = Vec::new();
        for ci in 0..c {
            for p in 0..rs {
                v.push(if zero(ci, p) { 0.0 } else { 1.0 });
            }
        }
        Weights::Float(v)
    }

    #[test]
    fn groups_run_along_input_channels() {
        // 2 zeros in each group of 4 channels, at every (r, s): sparse.
        let w = kernel(8, 4, |c, _| c % 4 < 2);
        assert_eq!(check_2to4(&w, &[1, 8, 2, 2], 1), Sparse24::Yes);
        // Zeros arranged so that the flattened C·R·S axis has 2:4 groups, but along C for a
        // fixed (r, s) there are none: TensorRT's rule says not sparse.
        let w = kernel(8, 4, |_, p| p < 2);
        assert_eq!(check_2to4(&w, &[1, 8, 2, 2], 1), Sparse24::No);
        assert_eq!(check_2to4(&w, &[32], 0), Sparse24::Yes); // the flattened view would pass
                                                             // One group with a single zero fails.
        let w = kernel(8, 1, |c, _| c == 0 || c == 4 || c == 5);
        assert_eq!(check_2to4(&w, &[1, 8, 1, 1], 1), Sparse24::No);
        // C not a multiple of 4.
        let w = kernel(6, 1, |_, _| true);
        assert!(matches!(
            check_2to4(&w, &[1, 6, 1, 1], 1),
            Sparse24::NotApplicable(_)
        ));
        assert!(matches!(
            check_2to4(&w, &[1, 7, 1, 1], 1),
            Sparse24::NotApplicable(_)
        ));
    }

    #[test]
    fn kernel_info_through_dq() {
        let mut n = Network::new("t");
        let x = n.add_input("x", DataType::Float, &[1, 8, 4, 4]).unwrap();
        let mut q = Vec::new();
        for k in 0..4 {
            for c in 0..8 {
                for _rs in 0..9 {
                    q.push(if (c + k) % 4 < 2 { 0i8 } else { 5 });
                }
            }
        }
        let w = n
            .add_layer(
                "w",
                LayerKind::Constant {
                    dims: vec![4, 8, 3, 3],
                    weights: Weights::Int8(q),
                },
                &[],
            )
            .unwrap();
        let s = n
            .add_layer(
                "s",
                LayerKind::Constant {
                    dims: vec![4],
                    weights: Weights::Float(vec![0.1; 4]),
                },
                &[],
            )
            .unwrap();
        let dq = n
            .add_layer(
                "dq",
                LayerKind::Dequantize {
                    axis: Some(0),
                    to_type: DataType::Float,
                },
                &[w, s],
            )
            .unwrap();
        let y = n
            .add_layer(
                "conv",
                LayerKind::Convolution(ConvParams::new(4, &[3, 3])),
                &[x, dq],
            )
            .unwrap();
        let info = kernel_info(&n, n.find_layer("conv").unwrap()).unwrap();
        assert_eq!(info.source, KernelSource::Constant(LayerId(0)));
        assert_eq!(info.sparse, Sparse24::Yes);
        let _ = n
            .add_layer(
                "conv2",
                LayerKind::Convolution(ConvParams::new(4, &[1, 1])),
                &[y, x],
            )
            .unwrap();
        let info = kernel_info(&n, n.find_layer("conv2").unwrap()).unwrap();
        assert_eq!(info.source, KernelSource::NonConstant);
        assert!(kernel_info(&n, n.find_layer("dq").unwrap()).is_none());
    }

    #[test]
    fn matmul_reduction_axis() {
        let mut n = Network::new("t");
        let a = n.add_input("a", DataType::Float, &[2, 8]).unwrap();
        // B is K×N = 8×2; zeros where k % 4 < 2: sparse along K (axis 0) for kNONE.
        let b: Vec<f32> = (0..16)
            .map(|i| if (i / 2) % 4 < 2 { 0.0 } else { 1.0 })
            .collect();
        let bt = n
            .add_layer(
                "b",
                LayerKind::Constant {
                    dims: vec![8, 2],
                    weights: Weights::Float(b),
                },
                &[],
            )
            .unwrap();
        let mm = LayerKind::MatrixMultiply {
            op0: MatrixOperation::None,
            op1: MatrixOperation::None,
        };
        n.add_layer("mm", mm, &[a, bt]).unwrap();
        assert_eq!(
            kernel_info(&n, n.find_layer("mm").unwrap()).unwrap().sparse,
            Sparse24::Yes
        );
    }
}
