//! Gemm and MatMul (float32).

use crate::error::{Error, Result};

use super::super::gemm::{gemm_packed, gemm_prepacked, sgemm, Mat, PackedA, PackedB};
use super::super::tensor::{numel, Tensor};
use super::elementwise::{broadcast_shapes, broadcast_strides};
use super::shape::gather_strided;
use super::{input, opt_input, Kernel, NodeCtx};

struct GemmKernel {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    /// `alpha * B'` packed as the left operand (`[N x K]`) when B is a constant: the run
    /// then computes `Y' = (alpha B') A'` and so never repacks the weight.
    packed_b: Option<(Vec<usize>, PackedA)>,
}

pub(crate) fn build_gemm(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 3)?;
    let a = cx.attrs();
    let alpha = a.float("alpha", 1.0)?;
    let trans_b = a.int("transB", 0)? != 0;
    let packed_b = match cx.const_input(1) {
        Some(b) if b.rank() == 2 => {
            let bv = b.as_f32().map_err(|e| e.context("input B"))?;
            let (r, c) = (b.shape()[0], b.shape()[1]);
            let (n, k) = if trans_b { (r, c) } else { (c, r) };
            let view = if trans_b { Mat::rows(bv, k) } else { Mat::rows_t(bv, n) };
            Some((b.shape().to_vec(), PackedA::new(n, k, view, alpha)))
        }
        _ => None,
    };
    Ok(Box::new(GemmKernel { alpha, beta: a.float("beta", 1.0)?, trans_a: a.int("transA", 0)? != 0, trans_b, packed_b }))
}

impl Kernel for GemmKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let a = input(inputs, 0)?;
        let b = input(inputs, 1)?;
        if a.rank() != 2 || b.rank() != 2 {
            return Err(Error::user(format!("Gemm needs 2-D inputs, got {:?} and {:?}", a.shape(), b.shape())));
        }
        let (m, k) = if self.trans_a { (a.shape()[1], a.shape()[0]) } else { (a.shape()[0], a.shape()[1]) };
        let (kb, n) = if self.trans_b { (b.shape()[1], b.shape()[0]) } else { (b.shape()[0], b.shape()[1]) };
        if k != kb {
            return Err(Error::user(format!(
                "Gemm inner dimensions differ: A {:?} (transA={}) and B {:?} (transB={})",
                a.shape(),
                self.trans_a as u8,
                b.shape(),
                self.trans_b as u8
            )));
        }
        let (av, bv) = (a.as_f32()?, b.as_f32()?);
        let mut y = vec![0f32; m * n];
        let mut beta = 0.0;
        if let Some(c) = opt_input(inputs, 2) {
            if self.beta != 0.0 {
                let s = broadcast_shapes(c.shape(), &[m, n])?;
                if s != [m, n] {
                    return Err(Error::user(format!("Gemm C of shape {:?} does not broadcast to [{m}, {n}]", c.shape())));
                }
                let st = broadcast_strides(c.shape(), &[m, n]);
                y = gather_strided(c.as_f32()?, &[m, n], &st, 0);
                beta = self.beta;
            }
        }
        match &self.packed_b {
            Some(_) if m <= SMALL_M => {
                // few rows (a classifier on a small batch): dot products / row updates
                if beta != 1.0 {
                    y.iter_mut().for_each(|v| *v *= beta);
                }
                small_m_gemm(m, k, n, self.alpha, av, self.trans_a, bv, self.trans_b, &mut y);
            }
            Some((shape, pb)) if shape.as_slice() == b.shape() => {
                // Y'[n x m] = (alpha B') A', then Y += Y'^T.
                let at = if self.trans_a { Mat::rows(av, m) } else { Mat::rows_t(av, k) };
                let mut yt = vec![0f32; n * m];
                gemm_packed(pb, at, m, &mut yt, m);
                if beta != 1.0 {
                    y.iter_mut().for_each(|v| *v *= beta);
                }
                for i in 0..m {
                    for j in 0..n {
                        y[i * n + j] += yt[j * m + i];
                    }
                }
            }
            _ => {
                let am = if self.trans_a { Mat::rows_t(av, m) } else { Mat::rows(av, k) };
                let bm = if self.trans_b { Mat::rows_t(bv, k) } else { Mat::rows(bv, n) };
                sgemm(m, k, n, self.alpha, am, bm, beta, &mut y, n);
            }
        }
        Ok(vec![Tensor::from_vec(vec![m, n], y)])
    }
}

/// Up to this many rows, Gemm with a constant B uses [`small_m_gemm`].
const SMALL_M: usize = 4;

/// `y[i, j] += alpha * sum_p A'[i, p] B'[p, j]` by dot products (transB) or row updates,
/// compiled for AVX2 when the CPU has it.
#[allow(clippy::too_many_arguments)]
fn small_m_gemm(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], ta: bool, b: &[f32], tb: bool, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::super::gemm::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { small_m_gemm_avx2(m, k, n, alpha, a, ta, b, tb, y) };
        }
    }
    small_m_gemm_impl(m, k, n, alpha, a, ta, b, tb, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn small_m_gemm_avx2(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], ta: bool, b: &[f32], tb: bool, y: &mut [f32]) {
    small_m_gemm_impl(m, k, n, alpha, a, ta, b, tb, y)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn small_m_gemm_impl(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], ta: bool, b: &[f32], tb: bool, y: &mut [f32]) {
    for i in 0..m {
        let row: Vec<f32> = (0..k).map(|p| if ta { a[p * m + i] } else { a[i * k + p] }).collect();
        let yr = &mut y[i * n..(i + 1) * n];
        if tb {
            // B' [k x n] is B [n x k]: y[i, j] = dot(row, B[j, :])
            for (j, yv) in yr.iter_mut().enumerate() {
                let bj = &b[j * k..(j + 1) * k];
                let mut acc = [0f32; 8];
                let full = k / 8 * 8;
                for (ac, bc) in row[..full].chunks_exact(8).zip(bj[..full].chunks_exact(8)) {
                    for l in 0..8 {
                        acc[l] += ac[l] * bc[l];
                    }
                }
                let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
                for p in full..k {
                    s += row[p] * bj[p];
                }
                *yv += alpha * s;
            }
        } else {
            // B [k x n]: y[i, :] += alpha * row[p] * B[p, :]
            let mut acc = vec![0f32; n];
            for (p, &av) in row.iter().enumerate() {
                for (o, &bv) in acc.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *o += av * bv;
                }
            }
            for (yv, s) in yr.iter_mut().zip(acc) {
                *yv += alpha * s;
            }
        }
    }
}

struct MatMulKernel {
    /// A constant 2-D float B, packed once at build (the session then drops its copy).
    packed_b: Option<PackedB>,
}

pub(crate) fn build_matmul(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    let packed_b = match cx.const_input(1) {
        Some(b) if b.rank() == 2 && b.dtype() == super::super::tensor::DType::F32 => {
            let (k, n) = (b.shape()[0], b.shape()[1]);
            Some(PackedB::new(k, n, Mat::rows(b.as_f32()?, n)))
        }
        _ => None,
    };
    Ok(Box::new(MatMulKernel { packed_b }))
}

/// numpy `matmul` of a float32 tensor by a prepacked 2-D B: A's leading dimensions are
/// batch dimensions that B broadcasts over, so all of A's rows form one `rows x k` matrix.
/// Bit-identical to [`matmul`] (the same kernel over the same k order per element).
fn matmul_prepacked(a: &Tensor, pb: &PackedB) -> Result<Tensor> {
    let sa = a.shape();
    let Some(&k) = sa.last() else {
        return Err(Error::user("MatMul inputs must have rank >= 1"));
    };
    if k != pb.k {
        return Err(Error::user(format!("MatMul inner dimensions differ: {:?} and [{}, {}]", sa, pb.k, pb.n)));
    }
    let rows = numel(&sa[..sa.len() - 1]);
    let av = a.as_f32()?;
    let mut y = vec![0f32; rows * pb.n];
    if rows > 0 && k > 0 {
        gemm_prepacked(&PackedA::new(rows, k, Mat::rows(av, k), 1.0), pb, &mut y, pb.n);
    }
    let mut shape = sa[..sa.len() - 1].to_vec();
    shape.push(pb.n);
    Ok(Tensor::from_vec(shape, y))
}

/// numpy `matmul` of float32 tensors.
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (mut sa, mut sb) = (a.shape().to_vec(), b.shape().to_vec());
    if sa.is_empty() || sb.is_empty() {
        return Err(Error::user("MatMul inputs must have rank >= 1"));
    }
    let a1 = sa.len() == 1;
    let b1 = sb.len() == 1;
    if a1 {
        sa.insert(0, 1);
    }
    if b1 {
        sb.push(1);
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != kb {
        return Err(Error::user(format!("MatMul inner dimensions differ: {:?} and {:?}", a.shape(), b.shape())));
    }
    let batch = broadcast_shapes(&sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let nb = numel(&batch);
    let st_a = broadcast_strides(&sa[..sa.len() - 2], &batch);
    let st_b = broadcast_strides(&sb[..sb.len() - 2], &batch);
    let (av, bv) = (a.as_f32()?, b.as_f32()?);
    // Offsets of each batch matrix, in units of whole matrices.
    let offs_a: Vec<usize> = gather_strided(&(0..numel(&sa[..sa.len() - 2]).max(1)).collect::<Vec<_>>(), &batch, &st_a, 0);
    let offs_b: Vec<usize> = gather_strided(&(0..numel(&sb[..sb.len() - 2]).max(1)).collect::<Vec<_>>(), &batch, &st_b, 0);
    let mut y = vec![0f32; nb * m * n];
    for i in 0..nb {
        let (oa, ob) = (offs_a[i] * m * k, offs_b[i] * k * n);
        sgemm(
            m,
            k,
            n,
            1.0,
            Mat::rows(&av[oa..oa + m * k], k),
            Mat::rows(&bv[ob..ob + k * n], n),
            0.0,
            &mut y[i * m * n..(i + 1) * m * n],
            n,
        );
    }
    let mut out_shape = batch;
    if !a1 {
        out_shape.push(m);
    }
    if !b1 {
        out_shape.push(n);
    }
    Ok(Tensor::from_vec(out_shape, y))
}

impl Kernel for MatMulKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        match &self.packed_b {
            Some(pb) => Ok(vec![matmul_prepacked(input(inputs, 0)?, pb)?]),
            None => Ok(vec![matmul(input(inputs, 0)?, input(inputs, 1)?)?]),
        }
    }
    fn packed_inputs(&self) -> &[usize] {
        if self.packed_b.is_some() {
            &[1]
        } else {
            &[]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_shapes() {
        let a = Tensor::new(vec![2, 1, 2, 3], (0..12).map(|x| x as f32).collect()).unwrap();
        let b = Tensor::new(vec![3, 3, 2], (0..18).map(|x| x as f32).collect()).unwrap();
        let y = matmul(&a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 3, 2, 2]);
        // first batch: [[0,1,2],[3,4,5]] x [[0,1],[2,3],[4,5]] = [[10,13],[28,40]]
        assert_eq!(&y.as_f32().unwrap()[..4], &[10., 13., 28., 40.]);
        let v = Tensor::new(vec![3], vec![1f32, 1., 1.]).unwrap();
        let y = matmul(&a, &v).unwrap();
        assert_eq!(y.shape(), &[2, 1, 2]);
        assert_eq!(y.as_f32().unwrap(), &[3., 12., 21., 30.]);
        assert!(matmul(&v, &a).is_err());
    }

    #[test]
    fn prepacked_matmul_is_bit_identical_and_keeps_numpy_shapes() {
        let b = Tensor::new(vec![5, 19], (0..95).map(|x| (x as f32 * 0.37).sin()).collect()).unwrap();
        let pb = PackedB::new(5, 19, Mat::rows(b.as_f32().unwrap(), 19));
        for shape in [vec![5], vec![3, 5], vec![2, 7, 5], vec![2, 1, 4, 5], vec![0, 5]] {
            let n: usize = shape.iter().product();
            let a = Tensor::new(shape.clone(), (0..n).map(|x| (x as f32 * 0.91).cos()).collect()).unwrap();
            let (want, got) = (matmul(&a, &b).unwrap(), matmul_prepacked(&a, &pb).unwrap());
            assert_eq!(want.shape(), got.shape(), "{shape:?}");
            assert!(want.bit_eq(&got), "{shape:?}");
        }
        let wrong = Tensor::new(vec![2, 4], vec![0.0; 8]).unwrap();
        assert!(matmul_prepacked(&wrong, &pb).is_err());
    }
}
