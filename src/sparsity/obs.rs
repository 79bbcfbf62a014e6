//! One-shot layer-wise reconstruction for 2:4 pruning (in the spirit of OBC and
//! SparseGPT), with groups along TensorRT's axis.
//!
//! A layer is a matrix `W` (`rows` = output channels, `cols` = reduction length). For a
//! Conv weight `K×C×R×S` the columns are reordered to `(R, S, C)` order
//! ([`conv_weight_to_rows`]): column `(r·S + s)·C + c`, so the four consecutive columns of
//! a 2:4 group are four consecutive input channels at one kernel position. The layer's
//! inputs are unfolded the same way ([`im2col`]) and accumulated into the Hessian
//! `H = XᵀX / n` ([`HessianAccumulator`]). Then [`obs_prune_2of4`] prunes `W` so as to
//! keep `trace((W−W')H(W−W')ᵀ)` (the mean squared output change on the calibration
//! inputs, [`layer_output_error`]) small.

use super::mask::keep_two_of_four;
use crate::error::{Error, Result};
use rayon::prelude::*;

// ---------------------------------------------------------------------------------------
// Dense kernels
// ---------------------------------------------------------------------------------------

/// `c (m×n, row stride ldc) = alpha·a (m×k, lda)·b (k×n, ldb) + beta·c`, row-major f64.
#[allow(clippy::too_many_arguments)]
fn dgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    lda: usize,
    b: &[f64],
    ldb: usize,
    beta: f64,
    c: &mut [f64],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The pointer arithmetic below stays inside these bounds.
    assert!(k == 0 || (a.len() >= (m - 1) * lda + k && b.len() >= (k - 1) * ldb + n));
    assert!(c.len() >= (m - 1) * ldc + n && lda >= k && ldb >= n && ldc >= n);
    // SAFETY: the asserts above ensure every accessed element lies inside the slices;
    // `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            lda as isize,
            1,
            b.as_ptr(),
            ldb as isize,
            1,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// Column block of [`gram_f32`]: only blocks on or above the diagonal are computed.
const GRAM_BLOCK: usize = 128;

/// `g (cols×cols) = xᵀx` for `x` row-major `rows×cols`, in f32. Computes the blocks on
/// and above the diagonal and mirrors them.
fn gram_f32(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut g = vec![0f32; cols * cols];
    if rows == 0 || cols == 0 {
        return g;
    }
    assert!(x.len() >= rows * cols);
    for bi in (0..cols).step_by(GRAM_BLOCK) {
        let mi = GRAM_BLOCK.min(cols - bi);
        for bj in (bi..cols).step_by(GRAM_BLOCK) {
            let nj = GRAM_BLOCK.min(cols - bj);
            // SAFETY: A = x[:, bi..bi+mi]ᵀ is read at k*cols + bi + i (i < mi, k < rows), B =
            // x[:, bj..bj+nj] at k*cols + bj + j, C written at (bi+i)*cols + bj + j: all in
            // bounds by the assert and the block sizes. `g` is not aliased.
            unsafe {
                matrixmultiply::sgemm(
                    mi,
                    rows,
                    nj,
                    1.0,
                    x.as_ptr().add(bi),
                    1,
                    cols as isize,
                    x.as_ptr().add(bj),
                    cols as isize,
                    1,
                    0.0,
                    g.as_mut_ptr().add(bi * cols + bj),
                    cols as isize,
                    1,
                );
            }
        }
    }
    for i in 0..cols {
        for j in 0..i {
            g[i * cols + j] = g[j * cols + i];
        }
    }
    g
}

/// Dot product with independent accumulators (vectorisable).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0.0;
    for i in chunks * 8..n {
        s += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

/// Diagonal block of the blocked Cholesky factorisation ([`cholesky_lower`]).
const CHOL_BLOCK: usize = 64;
/// Rows per parallel task of its trailing update (fixed, so the result does not depend on
/// the number of threads).
const CHOL_ROWS: usize = 64;

/// In-place lower Cholesky factor of the symmetric `n×n` matrix `a` (row-major; only the
/// lower triangle is read; the strict upper triangle is zeroed). Fails on a non-positive
/// or non-finite pivot (the matrix is not positive definite).
///
/// Right-looking and blocked: each diagonal block of [`CHOL_BLOCK`] columns is factored
/// with dot products, the panel below it solved row by row (rows in parallel), and the
/// lower triangle of the trailing matrix updated with one GEMM per fixed tile of
/// [`CHOL_ROWS`] rows (tiles in parallel). Deterministic whatever the number of threads.
pub(crate) fn cholesky_lower(a: &mut [f64], n: usize) -> Result<()> {
    if a.len() != n * n {
        return Err(Error::internal(format!("cholesky: {} elements for a {n}x{n} matrix", a.len())));
    }
    let mut k0 = 0;
    while k0 < n {
        let k1 = (k0 + CHOL_BLOCK).min(n);
        let kb = k1 - k0;
        // 1. the diagonal block (already updated by the blocks before it)
        for i in k0..k1 {
            for j in k0..=i {
                let s = a[i * n + j] - dot(&a[i * n + k0..i * n + j], &a[j * n + k0..j * n + j]);
                if i == j {
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(Error::user(format!("matrix is not positive definite (pivot {i} is {s:e})")));
                    }
                    a[i * n + i] = s.sqrt();
                } else {
                    a[i * n + j] = s / a[j * n + j];
                }
            }
        }
        if k1 == n {
            break;
        }
        let (top, bottom) = a.split_at_mut(k1 * n);
        let l11 = &top[k0 * n..];
        // 2. the panel below it: L21 = A21 · L11⁻ᵀ, one row at a time; kept contiguous too
        let mut panel = vec![0f64; (n - k1) * kb];
        bottom.par_chunks_mut(n).zip(panel.par_chunks_mut(kb)).for_each(|(row, p)| {
            for j in 0..kb {
                let s = row[k0 + j] - dot(&row[k0..k0 + j], &l11[j * n + k0..j * n + k0 + j]);
                row[k0 + j] = s / l11[j * n + k0 + j];
            }
            p.copy_from_slice(&row[k0..k1]);
        });
        // 3. trailing update, lower triangle: A22[i][j] -= L21[i]·L21[j] for j <= i
        bottom.par_chunks_mut(CHOL_ROWS * n).enumerate().for_each(|(t, rows)| {
            let r0 = t * CHOL_ROWS;
            let m = rows.len() / n;
            let cols = r0 + m; // columns k1 .. k1 + cols reach this tile's last row
            // SAFETY: A = panel rows r0..r0+m (m×kb, row stride kb), B = panelᵀ columns
            // 0..cols (kb×cols: element (t, j) at j*kb + t, j < cols <= n-k1), C = rows[.., k1..k1+cols]
            // (row stride n, k1 + cols <= n): all inside their slices; C is this task's own rows.
            unsafe {
                matrixmultiply::dgemm(
                    m,
                    kb,
                    cols,
                    -1.0,
                    panel.as_ptr().add(r0 * kb),
                    kb as isize,
                    1,
                    panel.as_ptr(),
                    1,
                    kb as isize,
                    1.0,
                    rows.as_mut_ptr().add(k1),
                    n as isize,
                    1,
                );
            }
        });
        k0 = k1;
    }
    for i in 0..n {
        for v in &mut a[i * n + i + 1..(i + 1) * n] {
            *v = 0.0;
        }
    }
    Ok(())
}

/// Inverse of a lower-triangular `n×n` matrix with positive diagonal (rows in parallel).
fn lower_tri_inverse(l: &[f64], n: usize) -> Vec<f64> {
    // lt = lᵀ so that columns of l are contiguous.
    let mut lt = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            lt[j * n + i] = l[i * n + j];
        }
    }
    let mut x = vec![0f64; n * n];
    // Row i of X = L⁻¹ solves X L = I: x[i][i] = 1/l[i][i];
    // x[i][j] = -(Σ_{k=j+1..=i} x[i][k] l[k][j]) / l[j][j] for j < i, from j = i-1 down.
    x.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        if i >= n {
            return;
        }
        row[i] = 1.0 / l[i * n + i];
        for j in (0..i).rev() {
            let s = dot(&row[j + 1..=i], &lt[j * n + j + 1..j * n + i + 1]);
            row[j] = -s / l[j * n + j];
        }
    });
    x
}

/// Upper-triangular `U` with `UᵀU = a⁻¹` for a symmetric positive definite `a`: the factor
/// SparseGPT obtains as `cholesky(inverse(H), upper=True)`. Computed as `U = J·L⁻¹·J`
/// where `J` reverses indices and `L` is the lower Cholesky factor of `J·a·J`.
pub(crate) fn upper_factor_of_inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut r = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            r[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    cholesky_lower(&mut r, n)?;
    let x = lower_tri_inverse(&r, n);
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = x[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    if u.iter().any(|v| !v.is_finite()) {
        return Err(Error::user("matrix is too ill-conditioned to invert"));
    }
    Ok(u)
}

/// `X` (`k×n`, row-major) with `X·H = B` for a symmetric positive definite `H` (`n×n`) and
/// `B` (`k×n`): `X = (B·L⁻ᵀ)·L⁻¹` with `H = L·Lᵀ` ([`cholesky_lower`], [`lower_tri_inverse`]),
/// both products as GEMMs over fixed tiles of rows of `B`, in parallel (deterministic).
/// Fails when `H` is not positive definite or the result is not finite.
pub(crate) fn solve_right_spd(h: &[f64], b: &[f64], n: usize, k: usize) -> Result<Vec<f64>> {
    if h.len() != n * n || b.len() != k * n {
        return Err(Error::internal(format!("solve: {} and {} elements for n = {n}, k = {k}", h.len(), b.len())));
    }
    let mut l = h.to_vec();
    cholesky_lower(&mut l, n)?;
    let li = lower_tri_inverse(&l, n);
    drop(l);
    // T = B · L⁻ᵀ, then X = T · L⁻¹; each a GEMM per tile of rows (L⁻ᵀ read as a strided view)
    let times = |x: &[f64], transposed: bool| -> Vec<f64> {
        let mut out = vec![0f64; k * n];
        out.par_chunks_mut(TILE_ROWS * n).zip(x.par_chunks(TILE_ROWS * n)).for_each(|(o, xr)| {
            let m = xr.len() / n;
            let (rs, cs) = if transposed { (1, n as isize) } else { (n as isize, 1) };
            // SAFETY: A = xr (m×n, row stride n), B = li or its transpose (n×n, all indices
            // < n²), C = o (m×n, row stride n): every access is inside the slices.
            unsafe {
                matrixmultiply::dgemm(m, n, n, 1.0, xr.as_ptr(), n as isize, 1, li.as_ptr(), rs, cs, 0.0, o.as_mut_ptr(), n as isize, 1);
            }
        });
        out
    };
    let x = times(&times(b, true), false);
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::user("matrix is too ill-conditioned to solve with"));
    }
    Ok(x)
}

// ---------------------------------------------------------------------------------------
// Hessian accumulation
// ---------------------------------------------------------------------------------------

/// Rows per Gram chunk: each chunk's `XᵀX` is computed in f32, then added in f64.
const CHUNK_ROWS: usize = 256;

/// Accumulates `XᵀX` (in f64) over the input rows of a layer.
///
/// Rows are buffered and processed in fixed chunks of 256 consecutive rows (chunk `XᵀX`
/// in f32 with a fast GEMM, in parallel), whose results are added to the f64 sum in row
/// order. The chunk boundaries depend only on the global row index, so the result is
/// bit-identical whatever the number of threads and however the rows are split across
/// [`add_rows`](Self::add_rows) calls. Partial accumulators (e.g. one per worker) can be
/// combined with [`merge`](Self::merge); merge them in a fixed order for reproducibility.
#[derive(Debug, Clone)]
pub struct HessianAccumulator {
    cols: usize,
    sum: Vec<f64>,
    rows: u64,
    pending: Vec<f32>,
    pending_rows: usize,
}

impl HessianAccumulator {
    /// An empty accumulator for rows of length `cols`.
    pub fn new(cols: usize) -> Self {
        HessianAccumulator { cols, sum: vec![0.0; cols * cols], rows: 0, pending: Vec::new(), pending_rows: 0 }
    }

    /// Row length (the Hessian is `cols×cols`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows per parallel wave (a multiple of the chunk size): depends on `cols` only, never
    /// on the thread count. At most 16 chunks, and the f32 partial results of a wave stay
    /// within about 64 MiB.
    fn wave_rows(&self) -> usize {
        let per = (self.cols * self.cols * 4).max(1);
        ((64 << 20) / per).clamp(1, 16) * CHUNK_ROWS
    }

    /// Adds `n_rows` input rows (`x` row-major, `n_rows × cols`). Fails on a length
    /// mismatch or non-finite values.
    pub fn add_rows(&mut self, x: &[f32], n_rows: usize) -> Result<()> {
        let cols = self.cols;
        if n_rows.checked_mul(cols) != Some(x.len()) {
            return Err(Error::user(format!("Hessian input has {} values, expected {n_rows} rows of {cols}", x.len())));
        }
        if let Some(p) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::user(format!("non-finite value {} in layer input (row {})", x[p], p / cols.max(1))));
        }
        let wave = self.wave_rows().max(CHUNK_ROWS);
        let mut off = 0;
        while off < n_rows {
            let take = (n_rows - off).min(wave - self.pending_rows);
            self.pending.extend_from_slice(&x[off * cols..(off + take) * cols]);
            self.pending_rows += take;
            off += take;
            if self.pending_rows == wave {
                add_chunked_gram(&self.pending, self.pending_rows, cols, &mut self.sum);
                self.pending.clear();
                self.pending_rows = 0;
            }
        }
        self.rows += n_rows as u64;
        Ok(())
    }

    /// Adds the patches of a Conv input `x` of shape `[N, C, spatial…]` (see [`im2col`]),
    /// one image at a time. `cols` must be `C × kernel size`.
    pub fn add_conv_input(&mut self, x: &[f32], input_shape: &[usize], geom: &ConvGeometry) -> Result<()> {
        check_conv_input(x, input_shape, geom)?;
        let c = input_shape[1];
        let kprod: usize = geom.kernel.iter().product();
        if c * kprod != self.cols {
            return Err(Error::user(format!(
                "conv input has {c} channels x kernel {:?} = {} columns, the Hessian has {}",
                geom.kernel,
                c * kprod,
                self.cols
            )));
        }
        let per_image = x.len() / input_shape[0].max(1);
        let mut shape1 = input_shape.to_vec();
        shape1[0] = 1;
        for img in x.chunks(per_image.max(1)) {
            let p = im2col(img, &shape1, geom)?;
            self.add_rows(&p.data, p.rows)?;
        }
        Ok(())
    }

    /// Adds another accumulator's rows to this one: the same, up to rounding, as adding
    /// its rows after this one's. Merging the same partial accumulators in the same order
    /// always gives bit-identical results.
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<()> {
        if other.cols != self.cols {
            return Err(Error::user(format!("cannot merge Hessians of {} and {} columns", self.cols, other.cols)));
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        self.rows += other.rows - other.pending_rows as u64;
        self.add_rows(&other.pending, other.pending_rows)
    }

    /// The Hessian `XᵀX / n` (row-major `cols×cols`, symmetric) over all rows added.
    /// Fails when no row was added.
    pub fn hessian(&self) -> Result<Vec<f64>> {
        self.clone().into_hessian()
    }

    /// [`hessian`](Self::hessian), bit for bit, in the accumulator's own buffer: the sum
    /// is not held twice (BERT-base's FFN output layer: 75 MB per accumulator).
    pub fn into_hessian(self) -> Result<Vec<f64>> {
        if self.rows == 0 {
            return Err(Error::user("no calibration rows reached this layer: cannot form its Hessian"));
        }
        let mut h = self.sum;
        add_chunked_gram(&self.pending, self.pending_rows, self.cols, &mut h);
        let inv = 1.0 / self.rows as f64;
        for v in &mut h {
            *v *= inv;
        }
        Ok(h)
    }
}

/// `acc += xᵀx`, computed in chunks of `CHUNK_ROWS` rows in parallel, added in order.
fn add_chunked_gram(x: &[f32], rows: usize, cols: usize, acc: &mut [f64]) {
    if rows == 0 || cols == 0 {
        return;
    }
    let chunks: Vec<&[f32]> = x[..rows * cols].chunks(CHUNK_ROWS * cols).collect();
    let partials: Vec<Vec<f32>> = chunks.par_iter().map(|c| gram_f32(c, c.len() / cols, cols)).collect();
    for p in partials {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v as f64;
        }
    }
}

// ---------------------------------------------------------------------------------------
// im2col and weight reordering
// ---------------------------------------------------------------------------------------

/// Convolution geometry for [`im2col`]: ONNX Conv attributes with `auto_pad` already
/// resolved to explicit pads. All vectors have one entry per spatial dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Kernel size per spatial dimension (`R, S` for 2-D).
    pub kernel: Vec<usize>,
    /// Strides.
    pub strides: Vec<usize>,
    /// Padding at the beginning of each spatial dimension.
    pub pads_begin: Vec<usize>,
    /// Padding at the end of each spatial dimension.
    pub pads_end: Vec<usize>,
    /// Dilations.
    pub dilations: Vec<usize>,
}

impl ConvGeometry {
    /// From ONNX attributes: `pads` is `[x1_begin, x2_begin, …, x1_end, x2_end, …]`; an
    /// empty `strides`, `pads` or `dilations` means the ONNX default (1, 0, 1).
    pub fn new(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize]) -> Result<Self> {
        let nd = kernel.len();
        if nd == 0 {
            return Err(Error::user("convolution kernel has no spatial dimension"));
        }
        let or = |v: &[usize], len: usize, dflt: usize, what: &str| -> Result<Vec<usize>> {
            if v.is_empty() {
                Ok(vec![dflt; len])
            } else if v.len() == len {
                Ok(v.to_vec())
            } else {
                Err(Error::user(format!("Conv {what} has {} entries, expected {len}", v.len())))
            }
        };
        let strides = or(strides, nd, 1, "strides")?;
        let dilations = or(dilations, nd, 1, "dilations")?;
        let pads = or(pads, 2 * nd, 0, "pads")?;
        if kernel.iter().chain(&strides).chain(&dilations).any(|&v| v == 0) {
            return Err(Error::user("Conv kernel, strides and dilations must be positive"));
        }
        Ok(ConvGeometry {
            kernel: kernel.to_vec(),
            strides,
            pads_begin: pads[..nd].to_vec(),
            pads_end: pads[nd..].to_vec(),
            dilations,
        })
    }

    /// Output spatial size for an input spatial size. Fails when the (padded) input is
    /// smaller than the dilated kernel or the ranks differ.
    pub fn output_spatial(&self, input_spatial: &[usize]) -> Result<Vec<usize>> {
        if input_spatial.len() != self.kernel.len() {
            return Err(Error::user(format!(
                "input has {} spatial dimensions, kernel has {}",
                input_spatial.len(),
                self.kernel.len()
            )));
        }
        (0..self.kernel.len())
            .map(|d| {
                let padded = input_spatial[d] + self.pads_begin[d] + self.pads_end[d];
                let span = self.dilations[d] * (self.kernel[d] - 1) + 1;
                if padded < span {
                    Err(Error::user(format!(
                        "spatial dim {d}: padded input {padded} is smaller than the dilated kernel {span}"
                    )))
                } else {
                    Ok((padded - span) / self.strides[d] + 1)
                }
            })
            .collect()
    }
}

/// Input patches produced by [`im2col`]: `rows × cols`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// Patch values.
    pub data: Vec<f32>,
    /// Number of patches: `N × output positions`, ordered (image, output position).
    pub rows: usize,
    /// Patch length: `kernel size × C`.
    pub cols: usize,
}

fn check_conv_input(x: &[f32], input_shape: &[usize], geom: &ConvGeometry) -> Result<()> {
    if input_shape.len() != geom.kernel.len() + 2 {
        return Err(Error::user(format!(
            "conv input shape {input_shape:?} does not match a {}-D kernel",
            geom.kernel.len()
        )));
    }
    let numel: usize = input_shape.iter().product();
    if numel != x.len() {
        return Err(Error::user(format!("conv input has {} values, shape {input_shape:?} needs {numel}", x.len())));
    }
    Ok(())
}

/// Unfolds a Conv input `x` of shape `[N, C, spatial…]` (groups = 1) into one row per
/// (image, output position), each row holding the receptive field in (kernel position,
/// channel) order: column `kpos·C + c`, with `kpos = r·S + s` for 2-D. Padding reads zero.
pub fn im2col(x: &[f32], input_shape: &[usize], geom: &ConvGeometry) -> Result<Patches> {
    check_conv_input(x, input_shape, geom)?;
    let nd = geom.kernel.len();
    let (n, c) = (input_shape[0], input_shape[1]);
    let in_sp = &input_shape[2..];
    let out_sp = geom.output_spatial(in_sp)?;
    let in_prod: usize = in_sp.iter().product();
    let out_prod: usize = out_sp.iter().product();
    let kprod: usize = geom.kernel.iter().product();
    let cols = kprod * c;
    let rows = n * out_prod;
    let mut data = vec![0f32; rows * cols];
    // Strides of the input spatial dims (row-major).
    let mut in_stride = vec![1usize; nd];
    for d in (0..nd.saturating_sub(1)).rev() {
        in_stride[d] = in_stride[d + 1] * in_sp[d + 1];
    }
    // Kernel positions as multi-indices.
    let kidx: Vec<Vec<usize>> = (0..kprod)
        .map(|mut kp| {
            let mut v = vec![0; nd];
            for d in (0..nd).rev() {
                v[d] = kp % geom.kernel[d];
                kp /= geom.kernel[d];
            }
            v
        })
        .collect();
    data.par_chunks_mut((out_prod * cols).max(1)).enumerate().for_each(|(img, out)| {
        let ximg = &x[img * c * in_prod..(img + 1) * c * in_prod];
        let mut opos = vec![0usize; nd];
        for op in 0..out_prod {
            let row = &mut out[op * cols..(op + 1) * cols];
            for (kp, kv) in kidx.iter().enumerate() {
                let mut off = 0usize;
                let mut inside = true;
                for d in 0..nd {
                    let pos =
                        (opos[d] * geom.strides[d] + kv[d] * geom.dilations[d]) as isize - geom.pads_begin[d] as isize;
                    if pos < 0 || pos as usize >= in_sp[d] {
                        inside = false;
                        break;
                    }
                    off += pos as usize * in_stride[d];
                }
                if inside {
                    for (ch, v) in row[kp * c..(kp + 1) * c].iter_mut().enumerate() {
                        *v = ximg[ch * in_prod + off];
                    }
                }
            }
            // Advance the output odometer.
            for d in (0..nd).rev() {
                opos[d] += 1;
                if opos[d] < out_sp[d] {
                    break;
                }
                opos[d] = 0;
            }
        }
    });
    Ok(Patches { data, rows, cols })
}

fn conv_dims(len: usize, shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 3 {
        return Err(Error::user(format!("conv weight shape {shape:?} must have rank >= 3")));
    }
    let numel: usize = shape.iter().product();
    if numel != len {
        return Err(Error::user(format!("conv weight has {len} values, shape {shape:?} needs {numel}")));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

/// Reorders a Conv weight `K×C×spatial…` into the matrix `K × (kernel size · C)` whose
/// column `kpos·C + c` holds `w[k, c, kpos]` (the order of [`im2col`] patches).
pub fn conv_weight_to_rows(w: &[f32], shape: &[usize]) -> Result<Vec<f32>> {
    let (k, c, kp) = conv_dims(w.len(), shape)?;
    let mut out = vec![0f32; w.len()];
    for kk in 0..k {
        for ch in 0..c {
            for p in 0..kp {
                out[kk * kp * c + p * c + ch] = w[(kk * c + ch) * kp + p];
            }
        }
    }
    Ok(out)
}

/// Inverse of [`conv_weight_to_rows`]: back to `K×C×spatial…` (`shape` is the Conv shape).
pub fn rows_to_conv_weight(wr: &[f32], shape: &[usize]) -> Result<Vec<f32>> {
    let (k, c, kp) = conv_dims(wr.len(), shape)?;
    let mut out = vec![0f32; wr.len()];
    for kk in 0..k {
        for ch in 0..c {
            for p in 0..kp {
                out[(kk * c + ch) * kp + p] = wr[kk * kp * c + p * c + ch];
            }
        }
    }
    Ok(out)
}

/// Transposes a row-major `rows×cols` matrix (e.g. a MatMul `B` of shape `K×N` into the
/// `N×K` layout [`obs_prune_2of4`] expects, and back).
pub fn transpose<T: Copy + Default>(data: &[T], rows: usize, cols: usize) -> Result<Vec<T>> {
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(Error::user(format!("matrix has {} values, {rows}x{cols} needs {}", data.len(), rows * cols)));
    }
    let mut out = vec![T::default(); data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// OBS pruning
// ---------------------------------------------------------------------------------------

/// Rows per parallel task.
const TILE_ROWS: usize = 32;
/// Damping retries after a failed factorisation (relative damping ×10 each time).
const MAX_RETRIES: usize = 8;

/// What [`obs_prune_2of4`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObsStats {
    /// Rows (output channels) of the layer.
    pub rows: usize,
    /// Columns (reduction length) of the layer.
    pub cols: usize,
    /// Number of 2:4 groups (`rows·cols/4`).
    pub groups: usize,
    /// Relative damping finally used (the requested one, or larger after retries).
    pub damp_relative: f64,
    /// Absolute damping `λ` added to the Hessian's diagonal.
    pub damping: f64,
    /// How many times the factorisation failed and damping was increased.
    pub retries: usize,
    /// Columns whose Hessian diagonal is zero (inputs never active on the calibration
    /// data); their weights are set to zero.
    pub dead_columns: usize,
    /// `trace(ΔW H ΔWᵀ)` of plain 2:4 magnitude pruning along the same groups.
    pub error_magnitude: f64,
    /// `trace(ΔW H ΔWᵀ)` of the weights returned (never above `error_magnitude`).
    pub error_obs: f64,
    /// Rows where the OBS result was worse than magnitude pruning on `H` and the
    /// magnitude-pruned row was kept instead.
    pub rows_fallback: usize,
}

fn check_matrix(w_len: usize, rows: usize, cols: usize, h: &[f64]) -> Result<()> {
    if rows.checked_mul(cols) != Some(w_len) {
        return Err(Error::user(format!("weight has {w_len} values, {rows}x{cols} needs {}", rows * cols)));
    }
    if cols.checked_mul(cols) != Some(h.len()) {
        return Err(Error::user(format!("Hessian has {} values, {cols}x{cols} needs {}", h.len(), cols * cols)));
    }
    Ok(())
}

/// Per-row `d H dᵀ` for a tile `d` (`rb×n`).
fn row_errors(d: &[f64], rb: usize, n: usize, h: &[f64]) -> Vec<f64> {
    let mut e = vec![0f64; rb * n];
    dgemm(rb, n, n, 1.0, d, n, h, n, 0.0, &mut e, n);
    (0..rb).map(|r| dot(&d[r * n..(r + 1) * n], &e[r * n..(r + 1) * n])).collect()
}

/// The layer's output error `trace((W−W')H(W−W')ᵀ)` for `rows×cols` weights and a
/// `cols×cols` Hessian. With `H = XᵀX/n` this is the mean, over the calibration inputs,
/// of the squared norm of the change of the layer's output. Deterministic.
pub fn layer_output_error(w_orig: &[f32], w_new: &[f32], rows: usize, cols: usize, h: &[f64]) -> Result<f64> {
    check_matrix(w_orig.len(), rows, cols, h)?;
    if w_new.len() != w_orig.len() {
        return Err(Error::user(format!("weights have {} and {} values", w_orig.len(), w_new.len())));
    }
    if cols == 0 {
        return Ok(0.0);
    }
    let per_tile: Vec<f64> = w_orig
        .par_chunks(TILE_ROWS * cols)
        .zip(w_new.par_chunks(TILE_ROWS * cols))
        .map(|(a, b)| {
            let rb = a.len() / cols;
            let d: Vec<f64> = a.iter().zip(b).map(|(&x, &y)| x as f64 - y as f64).collect();
            row_errors(&d, rb, cols, h).iter().sum::<f64>()
        })
        .collect();
    Ok(per_tile.iter().sum())
}

/// OBS pruning of one row tile (`rb×n`, f64, in place), using the upper factor `u` of
/// the damped inverse Hessian.
fn obs_tile(wt: &mut [f64], rb: usize, n: usize, u: &[f64], block: usize) {
    let mut err = vec![0f64; rb * block];
    let mut prune = vec![[false; 4]; rb];
    let mut i1 = 0;
    while i1 < n {
        let i2 = (i1 + block).min(n);
        for v in err.iter_mut() {
            *v = 0.0;
        }
        for i in i1..i2 {
            if i % 4 == 0 {
                // Adaptive mask for the group i..i+4, from the current (updated) weights.
                let dg = [0, 1, 2, 3].map(|t| u[(i + t) * n + i + t]);
                for (r, pr) in prune.iter_mut().enumerate() {
                    let row = &wt[r * n..(r + 1) * n];
                    let sal = [0, 1, 2, 3].map(|t| row[i + t] * row[i + t] / (dg[t] * dg[t]));
                    *pr = keep_two_of_four(sal).map(|k| !k);
                }
            }
            let d = u[i * n + i];
            let urow = &u[i * n + i + 1..i * n + i2];
            for r in 0..rb {
                let row = &mut wt[r * n..(r + 1) * n];
                if prune[r][i % 4] {
                    let e = row[i] / d;
                    err[r * block + (i - i1)] = e;
                    row[i] = 0.0;
                    if e != 0.0 {
                        for (x, &uv) in row[i + 1..i2].iter_mut().zip(urow) {
                            *x -= e * uv;
                        }
                    }
                }
            }
        }
        if i2 < n {
            // Lazy batch update of the later columns: W[:, i2..] -= Err · U[i1..i2, i2..].
            let bs = i2 - i1;
            dgemm(rb, bs, n - i2, -1.0, &err, block, &u[i1 * n + i2..], n, 1.0, &mut wt[i2..], n);
        }
        i1 = i2;
    }
}

/// Prunes `w` (`rows×cols`, row-major: rows = output channels, columns in the order of
/// the layer's input rows, e.g. `(R, S, C)` for a Conv via [`conv_weight_to_rows`]) to 2:4
/// along groups of four consecutive columns, with OBS reconstruction on the Hessian `h`
/// (`cols×cols`, e.g. from [`HessianAccumulator::hessian`]).
///
/// SparseGPT-style: dead inputs (`H_jj = 0`) get their weights zeroed; `H + λI` with
/// `λ = damp · mean(diag H)` (over live columns) is factorised into the upper Cholesky
/// factor `U` of its inverse (on failure `damp` is multiplied by 10 and the factorisation
/// retried, up to 8 times); columns are processed in blocks of `block` (rounded up to a
/// multiple of 4; 128 is a good value): at the start of each group every row drops its
/// two weights of smallest `w²/U_jj²` and each dropped weight's error is propagated to the
/// row's later columns. Finally every row whose output error on `h` exceeds that of plain
/// magnitude pruning is replaced by the magnitude-pruned row.
///
/// Rows are processed in parallel (tiles of 32 rows); the result does not depend on the
/// number of threads. Fails on inconsistent sizes, `cols % 4 != 0`, non-finite values,
/// a negative `damp`, a Hessian with non-positive diagonal mean, or a factorisation that
/// fails even after the retries.
pub fn obs_prune_2of4(w: &mut [f32], rows: usize, cols: usize, h: &[f64], damp: f64, block: usize) -> Result<ObsStats> {
    check_matrix(w.len(), rows, cols, h)?;
    if !cols.is_multiple_of(4) || cols == 0 {
        return Err(Error::user(format!("{cols} columns: not a positive multiple of 4, cannot prune 2:4")));
    }
    if !(damp >= 0.0 && damp.is_finite()) {
        return Err(Error::user(format!("dampening must be a finite number >= 0, got {damp}")));
    }
    if h.iter().any(|v| !v.is_finite()) {
        return Err(Error::user("Hessian has non-finite values"));
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(Error::user("weight has non-finite values"));
    }
    let n = cols;
    let block = block.max(4).div_ceil(4) * 4;
    let dead: Vec<bool> = (0..n).map(|j| h[j * n + j] == 0.0).collect();
    let dead_columns = dead.iter().filter(|&&d| d).count();
    let live_diag: Vec<f64> = (0..n).filter(|&j| !dead[j]).map(|j| h[j * n + j]).collect();
    let mean_diag = if live_diag.is_empty() { 1.0 } else { live_diag.iter().sum::<f64>() / live_diag.len() as f64 };
    if mean_diag <= 0.0 || !mean_diag.is_finite() {
        return Err(Error::user(format!("Hessian diagonal has non-positive mean {mean_diag:e}")));
    }

    // Factorise H + λI, retrying with more damping.
    let mut damp_rel = damp;
    let mut retries = 0;
    let u = loop {
        let lambda = damp_rel * mean_diag;
        let mut hd = h.to_vec();
        for j in 0..n {
            if dead[j] {
                hd[j * n + j] = mean_diag;
            }
            hd[j * n + j] += lambda;
        }
        match upper_factor_of_inverse(&hd, n) {
            Ok(u) => break u,
            Err(e) => {
                if retries >= MAX_RETRIES {
                    return Err(Error::user(format!(
                        "Hessian could not be factorised even with relative damping {damp_rel:e}: {}",
                        e.message
                    )));
                }
                retries += 1;
                damp_rel = if damp_rel > 0.0 { damp_rel * 10.0 } else { 1e-6 };
            }
        }
    };

    let tiles: Vec<(f64, f64, usize)> = w
        .par_chunks_mut(TILE_ROWS * n)
        .map(|wchunk| {
            let rb = wchunk.len() / n;
            let orig: Vec<f64> = wchunk.iter().map(|&v| v as f64).collect();
            // OBS.
            let mut wt = orig.clone();
            for r in 0..rb {
                for j in 0..n {
                    if dead[j] {
                        wt[r * n + j] = 0.0;
                    }
                }
            }
            obs_tile(&mut wt, rb, n, &u, block);
            let obs_f32: Vec<f32> = wt.iter().map(|&v| v as f32).collect();
            // Plain magnitude pruning of the original rows.
            let mut mag_f32: Vec<f32> = wchunk.to_vec();
            for grp in mag_f32.chunks_mut(4) {
                let keep = keep_two_of_four([0, 1, 2, 3].map(|t| (grp[t] as f64).abs()));
                for t in 0..4 {
                    if !keep[t] {
                        grp[t] = 0.0;
                    }
                }
            }
            let d_obs: Vec<f64> = orig.iter().zip(&obs_f32).map(|(&a, &b)| a - b as f64).collect();
            let d_mag: Vec<f64> = orig.iter().zip(&mag_f32).map(|(&a, &b)| a - b as f64).collect();
            let e_obs = row_errors(&d_obs, rb, n, h);
            let e_mag = row_errors(&d_mag, rb, n, h);
            let (mut sum_obs, mut sum_mag, mut fallback) = (0f64, 0f64, 0usize);
            for r in 0..rb {
                let dst = &mut wchunk[r * n..(r + 1) * n];
                sum_mag += e_mag[r];
                if e_obs[r] <= e_mag[r] {
                    dst.copy_from_slice(&obs_f32[r * n..(r + 1) * n]);
                    sum_obs += e_obs[r];
                } else {
                    dst.copy_from_slice(&mag_f32[r * n..(r + 1) * n]);
                    sum_obs += e_mag[r];
                    fallback += 1;
                }
            }
            (sum_obs, sum_mag, fallback)
        })
        .collect();
    let error_obs = tiles.iter().map(|t| t.0).sum();
    let error_magnitude = tiles.iter().map(|t| t.1).sum();
    let rows_fallback = tiles.iter().map(|t| t.2).sum();
    Ok(ObsStats {
        rows,
        cols,
        groups: rows * cols / 4,
        damp_relative: damp_rel,
        damping: damp_rel * mean_diag,
        retries,
        dead_columns,
        error_magnitude,
        error_obs,
        rows_fallback,
    })
}

/// [`obs_prune_2of4`] on a weight in its ONNX layout, described by `layout`:
/// a Conv weight `K×C×spatial…` grouped along axis 1 (reordered to `(kernel position, C)`
/// columns and back; build `h` from [`im2col`] patches or
/// [`HessianAccumulator::add_conv_input`]), a Gemm `B` with `transB=1` (`N×K`, axis 1), or
/// a MatMul/Gemm `B` of shape `K×N` (axis 0, transposed and back). `h` is `cols×cols` with
/// `cols = C·kernel size` or `K`. Other layouts are rejected.
pub fn obs_prune_2of4_layout(
    w: &mut [f32],
    layout: &super::layout::GroupLayout,
    h: &[f64],
    damp: f64,
    block: usize,
) -> Result<ObsStats> {
    layout.check_len(w.len())?;
    let shape = &layout.shape;
    match (shape.len(), layout.axis) {
        (r, 1) if r >= 3 => {
            let rows = shape[0];
            let cols = w.len() / rows;
            let mut wr = conv_weight_to_rows(w, shape)?;
            let st = obs_prune_2of4(&mut wr, rows, cols, h, damp, block)?;
            w.copy_from_slice(&rows_to_conv_weight(&wr, shape)?);
            Ok(st)
        }
        (2, 1) => obs_prune_2of4(w, shape[0], shape[1], h, damp, block),
        (2, 0) => {
            let (k, n) = (shape[0], shape[1]);
            let mut wt = transpose(w, k, n)?;
            let st = obs_prune_2of4(&mut wt, n, k, h, damp, block)?;
            w.copy_from_slice(&transpose(&wt, n, k)?);
            Ok(st)
        }
        _ => Err(Error::user(format!(
            "OBS pruning supports Conv weights (axis 1) and 2-D weights, not shape {shape:?} along axis {}",
            layout.axis
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparsity::layout::GroupLayout;
    use crate::sparsity::mask::{check_2of4, prune_2of4_magnitude};
    use crate::sparsity::testutil::Rng;

    fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Correlated inputs: rows z·A with a random mixing matrix A plus a common offset.
    fn correlated_rows(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
        let a: Vec<f64> = (0..cols * cols).map(|_| rng.normal()).collect();
        let mut x = vec![0f32; rows * cols];
        for r in 0..rows {
            let z: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
            for j in 0..cols {
                let mut s = 0.5;
                for k in 0..cols {
                    s += z[k] * a[k * cols + j] * if k < cols / 4 { 1.0 } else { 0.2 };
                }
                x[r * cols + j] = s as f32;
            }
        }
        x
    }

    fn matmul_t(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        // a·b for n×n
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn cholesky_and_inverse_factor() {
        let mut rng = Rng::new(1);
        let n = 13;
        let m: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum::<f64>() + if i == j { 0.5 } else { 0.0 };
            }
        }
        let mut l = a.clone();
        cholesky_lower(&mut l, n).unwrap();
        let mut lt = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                lt[j * n + i] = l[i * n + j];
            }
        }
        let llt = matmul_t(&l, &lt, n);
        for (x, y) in llt.iter().zip(&a) {
            assert!((x - y).abs() < 1e-9);
        }
        let u = upper_factor_of_inverse(&a, n).unwrap();
        let mut ut = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if j < i {
                    assert_eq!(u[i * n + j], 0.0);
                }
                ut[j * n + i] = u[i * n + j];
            }
            assert!(u[i * n + i] > 0.0);
        }
        let id = matmul_t(&matmul_t(&ut, &u, n), &a, n);
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((id[i * n + j] - want).abs() < 1e-8, "{i},{j}: {}", id[i * n + j]);
            }
        }
    }

    /// Random symmetric positive definite `n×n` matrix MᵀM/n + 0.1·I.
    fn spd(rng: &mut Rng, n: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum::<f64>() / n as f64 + if i == j { 0.1 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn blocked_cholesky_and_right_solve_across_block_edges() {
        // sizes below, at and across CHOL_BLOCK, and across the trailing update's row tiles
        let mut rng = Rng::new(7);
        for &n in &[1usize, 5, CHOL_BLOCK, CHOL_BLOCK + 1, 2 * CHOL_BLOCK + 37, CHOL_BLOCK + CHOL_ROWS + 3] {
            let a = spd(&mut rng, n);
            let mut l = a.clone();
            cholesky_lower(&mut l, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let llt: f64 = (0..n).map(|t| l[i * n + t] * l[j * n + t]).sum();
                    assert!((llt - a[i * n + j]).abs() < 1e-10, "n={n} LLᵀ[{i}][{j}] = {llt} vs {}", a[i * n + j]);
                    if j > i {
                        assert_eq!(l[i * n + j], 0.0, "n={n}: upper triangle not zeroed at {i},{j}");
                    }
                }
            }
            // X·A = B for k rows, k both below and above the row tiles
            for &k in &[1usize, TILE_ROWS + 3] {
                let b: Vec<f64> = (0..k * n).map(|_| rng.normal()).collect();
                let x = solve_right_spd(&a, &b, n, k).unwrap();
                for r in 0..k {
                    for j in 0..n {
                        let xa: f64 = (0..n).map(|t| x[r * n + t] * a[t * n + j]).sum();
                        assert!((xa - b[r * n + j]).abs() < 1e-8, "n={n} k={k} (XA)[{r}][{j}] = {xa} vs {}", b[r * n + j]);
                    }
                }
            }
        }
        // not positive definite: an error, not a panic, whichever block the bad pivot is in
        let n = CHOL_BLOCK + 10;
        let mut a = spd(&mut rng, n);
        a[(n - 3) * n + (n - 3)] = -1.0;
        assert!(cholesky_lower(&mut a.clone(), n).is_err());
        assert!(solve_right_spd(&a, &vec![1.0; n], n, 1).is_err());
        assert!(solve_right_spd(&a, &[1.0], n, 1).is_err(), "size mismatch is an error");
    }

    #[test]
    fn cholesky_rejects_non_pd_without_panicking() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0]; // eigenvalues 3, -1
        assert!(cholesky_lower(&mut a, 2).is_err());
        let mut a = vec![f64::NAN, 0.0, 0.0, 1.0];
        assert!(cholesky_lower(&mut a, 2).is_err());
        assert!(upper_factor_of_inverse(&[0.0, 0.0, 0.0, 1.0], 2).is_err());
        assert!(cholesky_lower(&mut [1.0; 3], 2).is_err());
    }

    #[test]
    fn hessian_is_deterministic_and_split_independent() {
        let mut rng = Rng::new(2);
        let (rows, cols) = (700, 12);
        let x = randn(&mut rng, rows * cols);
        let mut a = HessianAccumulator::new(cols);
        a.add_rows(&x, rows).unwrap();
        let ha = a.hessian().unwrap();
        // Reference in f64.
        for i in 0..cols {
            for j in 0..cols {
                let r: f64 =
                    (0..rows).map(|k| x[k * cols + i] as f64 * x[k * cols + j] as f64).sum::<f64>() / rows as f64;
                assert!((ha[i * cols + j] - r).abs() < 1e-5, "{} vs {r}", ha[i * cols + j]);
            }
        }
        // Split across calls, and across merged partial accumulators: bit-identical.
        let mut b = HessianAccumulator::new(cols);
        b.add_rows(&x[..5 * cols], 5).unwrap();
        b.add_rows(&x[5 * cols..300 * cols], 295).unwrap();
        let mut c = HessianAccumulator::new(cols);
        c.add_rows(&x[300 * cols..], 400).unwrap();
        b.merge(&c).unwrap();
        assert_eq!(b.rows(), rows as u64);
        assert_eq!(b.hessian().unwrap(), ha);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let h1 = one.install(|| {
            let mut d = HessianAccumulator::new(cols);
            d.add_rows(&x, rows).unwrap();
            d.hessian().unwrap()
        });
        assert_eq!(h1, ha);
        // Consumed in place: the same bits (b holds rows still pending)
        assert_eq!(b.into_hessian().unwrap(), ha);
        // Errors.
        assert!(HessianAccumulator::new(cols).hessian().is_err());
        assert!(HessianAccumulator::new(cols).into_hessian().is_err());
        assert!(a.add_rows(&x[1..], rows - 1).is_err());
        assert!(a.add_rows(&[f32::NAN; 12], 1).is_err());
        assert!(a.merge(&HessianAccumulator::new(4)).is_err());
    }

    #[test]
    fn hessian_flushes_large_waves() {
        // Rows across a wave boundary: a full wave is flushed, the rest stays pending.
        let cols = 1200;
        let acc = HessianAccumulator::new(cols);
        let wave = acc.wave_rows();
        assert_eq!(wave, CHUNK_ROWS * 11);
        let mut rng = Rng::new(4);
        let rows = wave + 3;
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() as f32).collect();
        let mut a = HessianAccumulator::new(cols);
        a.add_rows(&x, rows).unwrap();
        assert_eq!(a.pending_rows, 3);
        let h = a.hessian().unwrap();
        let want: f64 = (0..rows).map(|k| (x[k * cols + 7] as f64).powi(2)).sum::<f64>() / rows as f64;
        assert!((h[7 * cols + 7] - want).abs() < 1e-4);
    }

    /// Direct convolution (NCHW, groups=1) for reference.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(x: &[f32], n: usize, c: usize, hh: usize, ww: usize, w: &[f32], k: usize, g: &ConvGeometry) -> Vec<f64> {
        let (r, s) = (g.kernel[0], g.kernel[1]);
        let os = g.output_spatial(&[hh, ww]).unwrap();
        let mut out = vec![0f64; n * k * os[0] * os[1]];
        for b in 0..n {
            for kk in 0..k {
                for oy in 0..os[0] {
                    for ox in 0..os[1] {
                        let mut acc = 0f64;
                        for ch in 0..c {
                            for ry in 0..r {
                                for sx in 0..s {
                                    let iy =
                                        (oy * g.strides[0] + ry * g.dilations[0]) as isize - g.pads_begin[0] as isize;
                                    let ix =
                                        (ox * g.strides[1] + sx * g.dilations[1]) as isize - g.pads_begin[1] as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= hh || ix as usize >= ww {
                                        continue;
                                    }
                                    acc += x[((b * c + ch) * hh + iy as usize) * ww + ix as usize] as f64
                                        * w[((kk * c + ch) * r + ry) * s + sx] as f64;
                                }
                            }
                        }
                        out[((b * k + kk) * os[0] + oy) * os[1] + ox] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_direct_convolution_and_error_formula() {
        let mut rng = Rng::new(3);
        let (n, c, hh, ww, k) = (2, 4, 7, 6, 8);
        let g = ConvGeometry::new(&[3, 2], &[2, 1], &[1, 0, 1, 1], &[1, 2]).unwrap();
        let x = randn(&mut rng, n * c * hh * ww);
        let shape = [k, c, 3, 2];
        let w = randn(&mut rng, k * c * 6);
        let p = im2col(&x, &[n, c, hh, ww], &g).unwrap();
        let os = g.output_spatial(&[hh, ww]).unwrap();
        assert_eq!(p.rows, n * os[0] * os[1]);
        assert_eq!(p.cols, 6 * c);
        let wr = conv_weight_to_rows(&w, &shape).unwrap();
        assert_eq!(rows_to_conv_weight(&wr, &shape).unwrap(), w);
        let direct = conv2d(&x, n, c, hh, ww, &w, k, &g);
        let npos = os[0] * os[1];
        for row in 0..p.rows {
            let (b, pos) = (row / npos, row % npos);
            for kk in 0..k {
                let v: f64 = (0..p.cols).map(|j| p.data[row * p.cols + j] as f64 * wr[kk * p.cols + j] as f64).sum();
                assert!((v - direct[(b * k + kk) * npos + pos]).abs() < 1e-4);
            }
        }
        // layer_output_error == mean over patches of the squared output change.
        let mut w2 = w.clone();
        prune_2of4_magnitude(&mut w2, &GroupLayout::conv(&shape).unwrap()).unwrap();
        let out2 = conv2d(&x, n, c, hh, ww, &w2, k, &g);
        let want: f64 = direct.iter().zip(&out2).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / p.rows as f64;
        let mut acc = HessianAccumulator::new(p.cols);
        acc.add_conv_input(&x, &[n, c, hh, ww], &g).unwrap();
        let h = acc.hessian().unwrap();
        let wr2 = conv_weight_to_rows(&w2, &shape).unwrap();
        let got = layer_output_error(&wr, &wr2, k, p.cols, &h).unwrap();
        assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
        // Errors.
        assert!(im2col(&x[1..], &[n, c, hh, ww], &g).is_err());
        assert!(im2col(&x, &[n, c, hh * ww], &g).is_err());
        assert!(ConvGeometry::new(&[3, 3], &[1], &[], &[]).is_err());
        assert!(ConvGeometry::new(&[3, 0], &[], &[], &[]).is_err());
        assert!(g.output_spatial(&[1, 1]).is_err());
        assert!(HessianAccumulator::new(5).add_conv_input(&x, &[n, c, hh, ww], &g).is_err());
        assert!(conv_weight_to_rows(&w[1..], &shape).is_err());
        assert!(layer_output_error(&wr, &wr2[1..], k, p.cols, &h).is_err());
    }

    #[test]
    fn im2col_1d_and_3d() {
        let g = ConvGeometry::new(&[3], &[], &[1, 1], &[]).unwrap();
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect(); // N=1, C=2, L=4
        let p = im2col(&x, &[1, 2, 4], &g).unwrap();
        assert_eq!((p.rows, p.cols), (4, 6));
        // Output position 0: kernel taps at -1 (pad), 0, 1; columns (kpos, c).
        assert_eq!(&p.data[..6], &[0.0, 0.0, 0.0, 4.0, 1.0, 5.0]);
        let g3 = ConvGeometry::new(&[1, 1, 1], &[], &[], &[]).unwrap();
        let x3: Vec<f32> = (0..16).map(|v| v as f32).collect(); // N=1, C=2, 2x2x2
        let p3 = im2col(&x3, &[1, 2, 2, 2, 2], &g3).unwrap();
        assert_eq!((p3.rows, p3.cols), (8, 2));
        assert_eq!(&p3.data[..4], &[0.0, 8.0, 1.0, 9.0]);
    }

    #[test]
    fn transpose_roundtrip() {
        let m: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let t = transpose(&m, 2, 3).unwrap();
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, 3, 2).unwrap(), m);
        assert!(transpose(&m, 4, 2).is_err());
    }

    #[test]
    fn obs_beats_magnitude_and_keeps_tensorrt_pattern() {
        let mut rng = Rng::new(8);
        let (k, c, r, s) = (24, 8, 3, 3);
        let cols = c * r * s;
        let x = correlated_rows(&mut rng, 600, cols);
        let mut acc = HessianAccumulator::new(cols);
        acc.add_rows(&x, 600).unwrap();
        let h = acc.hessian().unwrap();
        let shape = [k, c, r, s];
        let w = randn(&mut rng, k * cols);
        let w_rows = conv_weight_to_rows(&w, &shape).unwrap();

        let mut w_mag = w.clone();
        prune_2of4_magnitude(&mut w_mag, &GroupLayout::conv(&shape).unwrap()).unwrap();
        let err_mag = layer_output_error(&w_rows, &conv_weight_to_rows(&w_mag, &shape).unwrap(), k, cols, &h).unwrap();

        let mut wo = w_rows.clone();
        let st = obs_prune_2of4(&mut wo, k, cols, &h, 0.01, 8).unwrap();
        let err_obs = layer_output_error(&w_rows, &wo, k, cols, &h).unwrap();
        assert!((st.error_magnitude - err_mag).abs() <= 1e-9 * err_mag);
        assert!((st.error_obs - err_obs).abs() <= 1e-9 * err_mag);
        assert!(err_obs <= err_mag);
        assert!(err_obs < 0.7 * err_mag, "obs {err_obs} vs magnitude {err_mag}");
        assert_eq!((st.retries, st.dead_columns, st.groups), (0, 0, k * cols / 4));
        assert!(st.rows_fallback < k / 4, "{st:?}");

        // Back in K×C×R×S the TensorRT pattern (along C) holds.
        let back = rows_to_conv_weight(&wo, &shape).unwrap();
        let chk = check_2of4(&back, &GroupLayout::conv(&shape).unwrap()).unwrap();
        assert!(chk.ok, "{chk:?}");
        assert!(check_2of4(&wo, &GroupLayout::new(&[k, cols], 1).unwrap()).unwrap().ok);
        let mut wl = w.clone();
        let stl = obs_prune_2of4_layout(&mut wl, &GroupLayout::conv(&shape).unwrap(), &h, 0.01, 8).unwrap();
        assert_eq!(wl, back);
        assert_eq!(stl, st);

        // Deterministic, independent of threads and stable over block sizes' validity.
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut w1 = w_rows.clone();
        let st1 = one.install(|| obs_prune_2of4(&mut w1, k, cols, &h, 0.01, 8).unwrap());
        assert_eq!(w1, wo);
        assert_eq!(st1, st);
        // Block size changes only rounding, not the result's quality.
        let mut w3 = w_rows.clone();
        let st3 = obs_prune_2of4(&mut w3, k, cols, &h, 0.01, 3).unwrap();
        assert!((st3.error_obs - st.error_obs).abs() < 1e-6 * st.error_obs.max(1.0));
        let mut w4 = w_rows.clone();
        let st4 = obs_prune_2of4(&mut w4, k, cols, &h, 0.01, 1000).unwrap();
        assert!((st4.error_obs - st.error_obs).abs() < 1e-6 * st.error_obs.max(1.0));
    }

    #[test]
    fn obs_handles_dead_inputs() {
        let mut rng = Rng::new(12);
        let (k, cols) = (8, 16);
        let mut x = correlated_rows(&mut rng, 200, cols);
        for row in x.chunks_mut(cols) {
            row[5] = 0.0;
            row[10] = 0.0;
        }
        let mut acc = HessianAccumulator::new(cols);
        acc.add_rows(&x, 200).unwrap();
        let h = acc.hessian().unwrap();
        let w0 = randn(&mut rng, k * cols);
        let mut w = w0.clone();
        let st = obs_prune_2of4(&mut w, k, cols, &h, 0.01, 128).unwrap();
        assert_eq!(st.dead_columns, 2);
        assert!(st.error_obs <= st.error_magnitude);
        assert!(check_2of4(&w, &GroupLayout::new(&[k, cols], 1).unwrap()).unwrap().ok);
        if st.rows_fallback == 0 {
            for r in 0..k {
                assert_eq!(w[r * cols + 5], 0.0);
                assert_eq!(w[r * cols + 10], 0.0);
            }
        }
        // All inputs dead: every weight may go (no output change on the calibration data).
        let mut wz = w0.clone();
        let st = obs_prune_2of4(&mut wz, k, cols, &vec![0.0; cols * cols], 0.01, 128).unwrap();
        assert_eq!(st.dead_columns, cols);
        assert_eq!((st.error_obs, st.error_magnitude), (0.0, 0.0));
    }

    #[test]
    fn obs_retries_with_more_damping_and_fails_gracefully() {
        let mut rng = Rng::new(13);
        let (k, cols) = (4, 8);
        let x = correlated_rows(&mut rng, 100, cols);
        let mut acc = HessianAccumulator::new(cols);
        acc.add_rows(&x, 100).unwrap();
        let mut h = acc.hessian().unwrap();
        let mean = (0..cols).map(|j| h[j * cols + j]).sum::<f64>() / cols as f64;
        // Make it indefinite: needs relative damping > 0.3 or so.
        for j in 0..cols {
            h[j * cols + j] -= 0.3 * mean;
        }
        let mut w = randn(&mut rng, k * cols);
        let st = obs_prune_2of4(&mut w, k, cols, &h, 0.01, 128).unwrap();
        assert!(st.retries >= 1, "{st:?}");
        assert!(st.damp_relative > 0.01);
        assert!(check_2of4(&w, &GroupLayout::new(&[k, cols], 1).unwrap()).unwrap().ok);

        // Hopeless or invalid inputs: errors, no panic.
        let mut neg = vec![0.0; cols * cols];
        for j in 0..cols {
            neg[j * cols + j] = if j == 0 { -1e6 } else { 1.0 };
        }
        let e = obs_prune_2of4(&mut w, k, cols, &neg, 0.0, 128);
        assert!(e.is_err());
        let mut hn = h.clone();
        hn[3] = f64::NAN;
        assert!(obs_prune_2of4(&mut w, k, cols, &hn, 0.01, 128).is_err());
        assert!(obs_prune_2of4(&mut w, k, cols, &h, -1.0, 128).is_err());
        assert!(obs_prune_2of4(&mut w[..k * cols - 4], k, cols - 1, &h, 0.01, 128).is_err());
        assert!(obs_prune_2of4(&mut w, k, cols, &h[1..], 0.01, 128).is_err());
        let mut w6 = vec![1.0f32; 12];
        assert!(obs_prune_2of4(&mut w6, 2, 6, &vec![1.0; 36], 0.01, 128).is_err());
    }

    #[test]
    fn obs_on_gemm_layer_transposed_layouts() {
        // MatMul B is K×N: transpose to N×K, prune, transpose back; pattern along axis 0.
        let mut rng = Rng::new(21);
        let (kdim, ndim) = (32, 10);
        let x = correlated_rows(&mut rng, 300, kdim);
        let mut acc = HessianAccumulator::new(kdim);
        acc.add_rows(&x, 300).unwrap();
        let h = acc.hessian().unwrap();
        let b = randn(&mut rng, kdim * ndim);
        let mut wt = transpose(&b, kdim, ndim).unwrap();
        let st = obs_prune_2of4(&mut wt, ndim, kdim, &h, 0.01, 16).unwrap();
        assert!(st.error_obs < st.error_magnitude);
        let back = transpose(&wt, ndim, kdim).unwrap();
        assert!(check_2of4(&back, &GroupLayout::matmul_b(&[kdim, ndim]).unwrap()).unwrap().ok);
        // The layout wrapper does the same.
        let mut b2 = b.clone();
        let layout = GroupLayout::matmul_b(&[kdim, ndim]).unwrap();
        let st2 = obs_prune_2of4_layout(&mut b2, &layout, &h, 0.01, 16).unwrap();
        assert_eq!(b2, back);
        assert_eq!(st2, st);
        let mut bt = transpose(&b, kdim, ndim).unwrap();
        obs_prune_2of4_layout(&mut bt, &GroupLayout::gemm_b(&[ndim, kdim], true).unwrap(), &h, 0.01, 16).unwrap();
        assert_eq!(bt, wt);
        let mut w3 = vec![1.0f32; 4 * 8 * 2];
        assert!(obs_prune_2of4_layout(&mut w3, &GroupLayout::new(&[4, 8, 2], 0).unwrap(), &h, 0.01, 16).is_err());
    }
}
