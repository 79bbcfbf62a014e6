//! Single-threaded packed SGEMM used by Conv, Gemm and MatMul.
//!
//! `C[m x n] += A[m x k] * B[k x n]`, with A packed once into row panels of up to [`MR`]
//! rows (`[k][mr]` layout) and B packed into column panels of [`NR`] columns (`[k][NR]`,
//! zero-padded). Conv packs its B panels straight from the image (implicit im2col).
//! A microkernel keeps an `mr x NR` block of C in registers and runs the whole k loop in
//! order, so every element of C is `C + sum_k a_ik * b_kj` accumulated in the same order
//! whatever the blocking or threading around it: results never depend on the thread count.
//! On x86-64 with AVX2 and FMA the kernel uses 256-bit FMA; elsewhere a portable one.

/// Rows of a packed A panel.
pub(crate) const MR: usize = 6;
/// Columns of a packed B panel.
pub(crate) const NR: usize = 16;

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major view with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Mat<'a> {
        Mat { data, rs: ld, cs: 1 }
    }
    /// The transpose of a row-major view with row stride `ld`.
    pub fn rows_t(data: &'a [f32], ld: usize) -> Mat<'a> {
        Mat { data, rs: 1, cs: ld }
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// A packed left operand: row panels of up to [`MR`] rows, each `[k][mr]`.
#[derive(Clone, Debug)]
pub(crate) struct PackedA {
    pub m: usize,
    pub k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs `alpha * A` for an `m x k` view.
    pub fn new(m: usize, k: usize, a: Mat, alpha: f32) -> PackedA {
        if a.cs == 1 && m > 0 && k > 0 {
            // row-major A (activations): read each row once, in order
            assert!((m - 1) * a.rs + k <= a.data.len(), "PackedA: view too small");
            let mut data = vec![0f32; m * k];
            for i0 in (0..m).step_by(MR) {
                let mr = MR.min(m - i0);
                let dst = &mut data[i0 * k..(i0 + mr) * k];
                if mr == MR {
                    // a full panel: six rows interleaved, written in order
                    let row = |r: usize| &a.data[(i0 + r) * a.rs..(i0 + r) * a.rs + k];
                    let (r0, r1, r2, r3, r4, r5) = (row(0), row(1), row(2), row(3), row(4), row(5));
                    for (p, d) in dst.chunks_exact_mut(MR).enumerate() {
                        d[0] = alpha * r0[p];
                        d[1] = alpha * r1[p];
                        d[2] = alpha * r2[p];
                        d[3] = alpha * r3[p];
                        d[4] = alpha * r4[p];
                        d[5] = alpha * r5[p];
                    }
                    continue;
                }
                for r in 0..mr {
                    let row = &a.data[(i0 + r) * a.rs..(i0 + r) * a.rs + k];
                    for (d, &x) in dst[r..].iter_mut().step_by(mr).zip(row) {
                        *d = alpha * x;
                    }
                }
            }
            return PackedA { m, k, data };
        }
        let mut data = Vec::with_capacity(m * k);
        for i0 in (0..m).step_by(MR) {
            let mr = MR.min(m - i0);
            for p in 0..k {
                for r in 0..mr {
                    data.push(alpha * a.at(i0 + r, p));
                }
            }
        }
        PackedA { m, k, data }
    }

    /// The panel starting at row `i0` (a multiple of MR) and its row count.
    #[inline]
    fn panel(&self, i0: usize) -> (&[f32], usize) {
        let mr = MR.min(self.m - i0);
        (&self.data[i0 * self.k..i0 * self.k + mr * self.k], mr)
    }
}

/// A right operand packed once into column panels of [`NR`] columns (`[k][NR]` each, the
/// last one zero-padded), for a constant weight that every run multiplies by: the runs then
/// read it sequentially and never repack it ([`gemm_prepacked`]).
///
/// On CPUs with AVX-512 the panels are [`NR_WIDE`] columns wide, for a 6 x 32 microkernel
/// with twice the AVX2 kernel's throughput; its sums are the same FMAs in the same k order,
/// so the results are bit-identical either way.
#[derive(Clone, Debug)]
pub(crate) struct PackedB {
    pub k: usize,
    pub n: usize,
    /// Panel width: [`NR`] or [`NR_WIDE`].
    nr: usize,
    data: Vec<f32>,
}

/// Columns of a wide B panel (AVX-512).
pub(crate) const NR_WIDE: usize = 32;

impl PackedB {
    /// Packs a `k x n` view, in the panel width this CPU's fastest kernel reads.
    pub fn new(k: usize, n: usize, b: Mat) -> PackedB {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                return Self::with_width(k, n, b, NR_WIDE);
            }
        }
        Self::with_width(k, n, b, NR)
    }

    /// Packs a `k x n` view into panels `nr` ([`NR`] or [`NR_WIDE`]) columns wide.
    pub fn with_width(k: usize, n: usize, b: Mat, nr: usize) -> PackedB {
        assert!(nr == NR || nr == NR_WIDE, "PackedB: panel width {nr}");
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; panels * k * nr];
        if k > 0 && n > 0 {
            assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "PackedB: view too small");
            for (jp, dst) in data.chunks_exact_mut(k * nr).enumerate() {
                let j0 = jp * nr;
                pack_b_panel(b, k, j0, nr.min(n - j0), nr, dst);
            }
        }
        PackedB { k, n, nr, data }
    }
}

/// `C[a.m x b.n] += A * B` for a packed A and a prepacked B (C row-major, stride `ldc`).
/// The same kernel calls over the same k order as [`gemm_packed`], so the results are
/// bit-identical to it.
///
/// Panics if the sizes disagree or C is too small.
pub(crate) fn gemm_prepacked(pa: &PackedA, pb: &PackedB, c: &mut [f32], ldc: usize) {
    let (m, k, n) = (pa.m, pa.k, pb.n);
    assert_eq!(k, pb.k, "gemm_prepacked: inner sizes differ");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm output view too small");
    let cp = c.as_mut_ptr();
    #[cfg(target_arch = "x86_64")]
    {
        if pb.nr == NR_WIDE {
            assert!(avx512::available(), "wide panels need AVX-512");
            for (jp, panel) in pb.data.chunks_exact(k * NR_WIDE).enumerate() {
                let j0 = jp * NR_WIDE;
                let w = NR_WIDE.min(n - j0);
                for i0 in (0..m).step_by(MR) {
                    let (ap, mr) = pa.panel(i0);
                    // SAFETY: AVX-512 checked; the panel holds k rows of 32 and the A panel
                    // k * mr floats; the mr x w block lies inside c (asserted).
                    unsafe { avx512::dispatch(k, ap, mr, panel, cp.add(i0 * ldc + j0), ldc, w) };
                }
            }
            return;
        }
    }
    assert_eq!(pb.nr, NR, "wide panels need AVX-512");
    let boff: Vec<usize> = (0..k).map(|p| p * NR).collect();
    for (jp, panel) in pb.data.chunks_exact(k * NR).enumerate() {
        let j0 = jp * NR;
        let w = NR.min(n - j0);
        for i0 in (0..m).step_by(MR) {
            let (ap, mr) = pa.panel(i0);
            // SAFETY: the panel holds k rows of NR; the block lies inside c (asserted).
            unsafe { kernel(k, ap, mr, panel, &boff, None, cp.add(i0 * ldc + j0), ldc, w) };
        }
    }
}

/// Packs columns `j0 .. j0 + w` (w <= nr) of a `k x n` view into one `[k][nr]` panel, the
/// columns past `w` zero.
pub(crate) fn pack_b_panel(b: Mat, k: usize, j0: usize, w: usize, nr: usize, dst: &mut [f32]) {
    for (p, row) in dst[..k * nr].chunks_exact_mut(nr).enumerate() {
        if b.cs == 1 {
            let s = p * b.rs + j0;
            row[..w].copy_from_slice(&b.data[s..s + w]);
        } else {
            for (j, o) in row[..w].iter_mut().enumerate() {
                *o = b.at(p, j0 + j);
            }
        }
        row[w..].fill(0.0);
    }
}

/// `C += A * B` for one `mr x w` block, or `C = bias + A * B` (row `r` adding `bias[r]`)
/// when `bias` is given. `a` is a packed A panel (`[k][mr]`); row `p` of the B block is
/// `b[boff[p] .. boff[p] + NR]` (all NR columns are read, those past `w` ignored); `c` is
/// the block's first element with row stride `ldc`, of which rows `0..mr` and columns
/// `0..w` are written.
///
/// # Safety
/// `a.len() >= k * mr`, `boff.len() >= k`, `boff[p] + NR <= b.len()` for every `p < k`,
/// `mr <= MR`, `w <= NR`; `c` must be valid for reads and writes of `c[r * ldc + j]` for
/// `r < mr`, `j < w`, and no other thread may access those elements meanwhile.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel(
    k: usize,
    a: &[f32],
    mr: usize,
    b: &[f32],
    boff: &[usize],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    w: usize,
) {
    debug_assert!(a.len() >= k * mr && boff.len() >= k && mr <= MR && w <= NR);
    debug_assert!(boff[..k].iter().all(|&o| o + NR <= b.len()));
    debug_assert!(bias.is_none_or(|b| b.len() >= mr));
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above); forwarded contract.
            unsafe { avx2::dispatch(k, a, mr, b, boff, bias, c, ldc, w) };
            return;
        }
    }
    // SAFETY: forwarded contract.
    unsafe { portable(k, a, mr, b, boff, bias, c, ldc, w) };
}

/// Whether the CPU has AVX2 and FMA (x86-64 only; detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    avx2::available()
}

/// Portable microkernel (any CPU).
#[allow(clippy::too_many_arguments)]
unsafe fn portable(
    k: usize,
    a: &[f32],
    mr: usize,
    b: &[f32],
    boff: &[usize],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    w: usize,
) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..k {
        let bp = &b[boff[p]..boff[p] + NR];
        for r in 0..mr {
            let av = a[p * mr + r];
            for j in 0..NR {
                acc[r][j] += av * bp[j];
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(mr) {
        for (j, &v) in row.iter().enumerate().take(w) {
            // SAFETY: caller guarantees the block is valid and exclusively ours.
            unsafe {
                let cp = c.add(r * ldc + j);
                *cp = match bias {
                    Some(bs) => bs[r] + v,
                    None => *cp + v,
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::{MR, NR};

    static STATE: AtomicU8 = AtomicU8::new(0);

    /// Whether AVX2 and FMA are usable (detected once).
    #[inline]
    pub fn available() -> bool {
        match STATE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                ok
            }
        }
    }

    /// # Safety
    /// AVX2+FMA available; the contract of `super::kernel`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn dispatch(
        k: usize,
        a: &[f32],
        mr: usize,
        b: &[f32],
        boff: &[usize],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        w: usize,
    ) {
        let (ap, bp, op) = (a.as_ptr(), b.as_ptr(), boff.as_ptr());
        let bi = bias.map_or(std::ptr::null(), |b| b.as_ptr());
        // SAFETY: forwarded contract.
        unsafe {
            if w == NR {
                match mr {
                    6 => kern::<6>(k, ap, bp, op, bi, c, ldc),
                    5 => kern::<5>(k, ap, bp, op, bi, c, ldc),
                    4 => kern::<4>(k, ap, bp, op, bi, c, ldc),
                    3 => kern::<3>(k, ap, bp, op, bi, c, ldc),
                    2 => kern::<2>(k, ap, bp, op, bi, c, ldc),
                    _ => kern::<1>(k, ap, bp, op, bi, c, ldc),
                }
            } else {
                // Partial width: run on a zeroed tile, then add the valid part into C.
                let mut tile = [0f32; MR * NR];
                let t = tile.as_mut_ptr();
                match mr {
                    6 => kern::<6>(k, ap, bp, op, std::ptr::null(), t, NR),
                    5 => kern::<5>(k, ap, bp, op, std::ptr::null(), t, NR),
                    4 => kern::<4>(k, ap, bp, op, std::ptr::null(), t, NR),
                    3 => kern::<3>(k, ap, bp, op, std::ptr::null(), t, NR),
                    2 => kern::<2>(k, ap, bp, op, std::ptr::null(), t, NR),
                    _ => kern::<1>(k, ap, bp, op, std::ptr::null(), t, NR),
                }
                for r in 0..mr {
                    for j in 0..w {
                        let cp = c.add(r * ldc + j);
                        *cp = match bias {
                            Some(bs) => bs[r] + tile[r * NR + j],
                            None => *cp + tile[r * NR + j],
                        };
                    }
                }
            }
        }
    }

    /// `C[M x 16] += A[M x k] * B[k x 16]` with the C block in registers; with a non-null
    /// `bias`, `C = bias[r] + A * B` instead (C is not read).
    ///
    /// # Safety
    /// AVX2+FMA available; `a` holds `k * M` floats; `boff` holds `k` offsets with
    /// `b[boff[p] .. boff[p] + 16]` readable; `bias` is null or holds M floats; the C block
    /// (M rows of 16, stride `ldc`) is valid and exclusive.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kern<const M: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        boff: *const usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc0 = [_mm256_setzero_ps(); M];
        let mut acc1 = [_mm256_setzero_ps(); M];
        for p in 0..k {
            // SAFETY: p < k, inside the documented bounds.
            unsafe {
                let row = b.add(*boff.add(p));
                let b0 = _mm256_loadu_ps(row);
                let b1 = _mm256_loadu_ps(row.add(8));
                for r in 0..M {
                    let av = _mm256_broadcast_ss(&*a.add(p * M + r));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
            }
        }
        for r in 0..M {
            // SAFETY: caller guarantees the C block (and bias, when non-null).
            unsafe {
                let cp = c.add(r * ldc);
                let (c0, c1) = if bias.is_null() {
                    (_mm256_loadu_ps(cp), _mm256_loadu_ps(cp.add(8)))
                } else {
                    let bv = _mm256_broadcast_ss(&*bias.add(r));
                    (bv, bv)
                };
                _mm256_storeu_ps(cp, _mm256_add_ps(c0, acc0[r]));
                _mm256_storeu_ps(cp.add(8), _mm256_add_ps(c1, acc1[r]));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR_WIDE};

    /// Whether AVX-512F (and FMA) are usable (std caches the detection).
    #[inline]
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")
    }

    /// `C[mr x w] += A * B` for a packed A panel (`[k][mr]`) and a wide B panel (`[k][32]`).
    ///
    /// # Safety
    /// AVX-512F available; `a.len() >= k * mr`, `b.len() >= k * 32`, `mr <= MR`, `w <= 32`;
    /// `c` valid for reads and writes of `c[r * ldc + j]`, `r < mr`, `j < w`, and exclusive.
    pub unsafe fn dispatch(k: usize, a: &[f32], mr: usize, b: &[f32], c: *mut f32, ldc: usize, w: usize) {
        debug_assert!(a.len() >= k * mr && b.len() >= k * NR_WIDE && mr <= MR && w <= NR_WIDE);
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let kern: unsafe fn(usize, *const f32, *const f32, *mut f32, usize) = match mr {
            6 => kern::<6>,
            5 => kern::<5>,
            4 => kern::<4>,
            3 => kern::<3>,
            2 => kern::<2>,
            _ => kern::<1>,
        };
        // SAFETY: forwarded contract.
        unsafe {
            if w == NR_WIDE {
                kern(k, ap, bp, c, ldc);
            } else {
                // partial width: a zeroed tile, then its valid part added into C
                let mut tile = [0f32; MR * NR_WIDE];
                kern(k, ap, bp, tile.as_mut_ptr(), NR_WIDE);
                for r in 0..mr {
                    for j in 0..w {
                        *c.add(r * ldc + j) += tile[r * NR_WIDE + j];
                    }
                }
            }
        }
    }

    /// `C[M x 32] += A[M x k] * B[k x 32]` with the C block in 2 M registers: per element the
    /// same FMA sequence as the AVX2 kernel (a zeroed accumulator, k FMAs in order, one add
    /// into C), 16 lanes at a time.
    ///
    /// # Safety
    /// AVX-512F available; `a` holds `k * M` floats, `b` `k * 32`; the C block (M rows of 32,
    /// stride `ldc`) is valid and exclusive.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn kern<const M: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize) {
        let mut acc0 = [_mm512_setzero_ps(); M];
        let mut acc1 = [_mm512_setzero_ps(); M];
        for p in 0..k {
            // SAFETY: p < k, inside the documented bounds.
            unsafe {
                let row = b.add(p * NR_WIDE);
                let b0 = _mm512_loadu_ps(row);
                let b1 = _mm512_loadu_ps(row.add(16));
                for r in 0..M {
                    let av = _mm512_set1_ps(*a.add(p * M + r));
                    acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                }
            }
        }
        for r in 0..M {
            // SAFETY: the caller guarantees the C block.
            unsafe {
                let cp = c.add(r * ldc);
                _mm512_storeu_ps(cp, _mm512_add_ps(_mm512_loadu_ps(cp), acc0[r]));
                _mm512_storeu_ps(cp.add(16), _mm512_add_ps(_mm512_loadu_ps(cp.add(16)), acc1[r]));
            }
        }
    }
}

/// From this many elements of B (`k * n`, 1 MiB of floats) [`gemm_packed`] packs B's column
/// panels instead of reading its rows in place.
const PACK_B_MIN: usize = 1 << 18;

/// `C[m x n] = alpha * A * B + beta * C` (C row-major with row stride `ldc`); with
/// `beta == 0` C's previous contents are ignored.
///
/// Panics if a view is too small for the sizes (a caller bug: callers derive sizes from
/// validated shapes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "sgemm output view too small");
    for i in 0..m {
        for x in &mut c[i * ldc..i * ldc + n] {
            *x = if beta == 0.0 { 0.0 } else { *x * beta };
        }
    }
    if k == 0 {
        return;
    }
    let pa = PackedA::new(m, k, a, alpha);
    gemm_packed(&pa, b, n, c, ldc);
}

/// `C[a.m x n] += A * B` for a packed A and a `a.k x n` view B (C row-major, stride `ldc`).
///
/// Panics if a view is too small for the sizes.
pub(crate) fn gemm_packed(pa: &PackedA, b: Mat, n: usize, c: &mut [f32], ldc: usize) {
    let (m, k) = (pa.m, pa.k);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm output view too small");
    assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "gemm B view too small");
    let mut buf = Vec::new();
    let cp = c.as_mut_ptr();
    // B rows read in place: each kernel call walks k rows `rs` floats apart, one cache line
    // each. When several A panels reuse every B column panel (m > MR) and B is too large to
    // stay in cache (a transformer's 768 x 3072 weight is 9.4 MB), packing each panel once
    // into contiguous `[k][NR]` memory, as below, makes those reads sequential. The kernel and
    // its k order are the same either way, so the results are bit-identical.
    if b.cs == 1 && (m <= MR || k * n < PACK_B_MIN) {
        let boff: Vec<usize> = (0..k).map(|p| p * b.rs).collect();
        // SAFETY: the m x n block of c is inside c (asserted) and borrowed mutably; every
        // B row p spans b.data[p * rs .. p * rs + n] (asserted).
        unsafe { gemm_rows(pa, b.data, &boff, None, n, cp, ldc, &mut buf) };
        return;
    }
    let boff: Vec<usize> = (0..k).map(|p| p * NR).collect();
    let mut panel = vec![0f32; k * NR];
    for j0 in (0..n).step_by(NR) {
        let w = NR.min(n - j0);
        pack_b_panel(b, k, j0, w, NR, &mut panel);
        for i0 in (0..m).step_by(MR) {
            let (ap, mr) = pa.panel(i0);
            // SAFETY: the panel holds k rows of NR; the block lies inside c (asserted).
            unsafe { kernel(k, ap, mr, &panel, &boff, None, cp.add(i0 * ldc + j0), ldc, w) };
        }
    }
}

/// `C += A * B` (or `C = bias + A * B`, row `i` adding `bias[i]`, when `bias` is given) for a
/// packed A (`a.m x a.k`) and B given by rows: `B[p][j] = b[boff[p] + j]` for `j < n`. `c`
/// points at C's first element (row stride `ldc`). Full 16-column panels are read in
/// place; the last partial one is packed into `buf`.
///
/// Panics unless `boff.len() == a.k`, every `boff[p] + n <= b.len()` and `bias` (if any)
/// has `a.m` entries.
///
/// # Safety
/// `c` must be valid for the whole `a.m x n` block with stride `ldc`, and exclusively ours.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_rows(
    a: &PackedA,
    b: &[f32],
    boff: &[usize],
    bias: Option<&[f32]>,
    n: usize,
    c: *mut f32,
    ldc: usize,
    buf: &mut Vec<f32>,
) {
    let k = a.k;
    if a.m == 0 || n == 0 {
        return;
    }
    assert!(bias.is_none_or(|b| b.len() == a.m), "bias length");
    if k == 0 {
        if let Some(bs) = bias {
            for (i, &bv) in bs.iter().enumerate() {
                for j in 0..n {
                    // SAFETY: forwarded contract: the a.m x n block of C is ours.
                    unsafe { *c.add(i * ldc + j) = bv };
                }
            }
        }
        return;
    }
    assert_eq!(boff.len(), k);
    let max_off = boff.iter().copied().max().unwrap_or(0);
    assert!(max_off + n <= b.len(), "B rows out of bounds");
    let full = n / NR * NR;
    // Row blocks outer: the A panel stays in L1 while B streams from L2.
    for i0 in (0..a.m).step_by(MR) {
        let (ap, mr) = a.panel(i0);
        for j0 in (0..full).step_by(NR) {
            // SAFETY: boff[p] + j0 + NR <= max_off + n <= b.len(); forwarded C contract.
            unsafe { kernel(k, ap, mr, &b[j0..], boff, bias.map(|bs| &bs[i0..]), c.add(i0 * ldc + j0), ldc, NR) };
        }
    }
    if full < n {
        let w = n - full;
        if buf.len() < k * NR {
            buf.resize(k * NR, 0.0);
        }
        let panel = &mut buf[..k * NR];
        for p in 0..k {
            let src = &b[boff[p] + full..boff[p] + n];
            panel[p * NR..p * NR + w].copy_from_slice(src);
            panel[p * NR + w..(p + 1) * NR].fill(0.0);
        }
        let poff: Vec<usize> = (0..k).map(|p| p * NR).collect();
        for i0 in (0..a.m).step_by(MR) {
            let (ap, mr) = a.panel(i0);
            // SAFETY: the packed panel holds k rows of NR; forwarded C contract.
            unsafe { kernel(k, ap, mr, panel, &poff, bias.map(|bs| &bs[i0..]), c.add(i0 * ldc + full), ldc, w) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_and_transpose() {
        // A = [[1,2,3],[4,5,6]], B = [[1,0],[0,1],[1,1]]
        let a = [1., 2., 3., 4., 5., 6.];
        let b = [1., 0., 0., 1., 1., 1.];
        let mut c = [1.0f32; 4];
        sgemm(2, 3, 2, 1.0, Mat::rows(&a, 3), Mat::rows(&b, 2), 0.0, &mut c, 2);
        assert_eq!(c, [4., 5., 10., 11.]);
        // A^T stored as [3 x 2]
        let at = [1., 4., 2., 5., 3., 6.];
        let mut c2 = [1.0f32; 4];
        sgemm(2, 3, 2, 2.0, Mat::rows_t(&at, 2), Mat::rows(&b, 2), 1.0, &mut c2, 2);
        assert_eq!(c2, [9., 11., 21., 23.]);
    }

    #[test]
    fn prepacked_b_is_bit_identical_to_packing_per_call() {
        for &(m, k, n) in &[(1, 1, 1), (7, 5, 17), (13, 33, 40), (128, 96, 48), (3, 700, 400), (20, 3, 33)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32) / 97.0 - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729 % 1009) as f32) / 89.0 - 5.5).collect();
            let mut want = vec![0f32; m * n];
            sgemm(m, k, n, 1.0, Mat::rows(&a, k), Mat::rows(&b, n), 0.0, &mut want, n);
            // both panel widths (the wide one where the CPU has AVX-512), B row-major and strided
            let mut widths = vec![NR];
            #[cfg(target_arch = "x86_64")]
            if avx512::available() {
                widths.push(NR_WIDE);
            }
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            for nr in widths {
                for view in [Mat::rows(&b, n), Mat::rows_t(&bt, k)] {
                    let mut got = vec![0f32; m * n];
                    gemm_prepacked(&PackedA::new(m, k, Mat::rows(&a, k), 1.0), &PackedB::with_width(k, n, view, nr), &mut got, n);
                    assert!(want.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n} nr={nr}");
                }
            }
            // and the packed A of a row-major view is the strided view's
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let (p1, p2) = (PackedA::new(m, k, Mat::rows(&a, k), 0.5), PackedA::new(m, k, Mat::rows_t(&at, m), 0.5));
            assert_eq!(p1.data, p2.data);
        }
    }

    #[test]
    fn odd_sizes_match_naive() {
        for &(m, k, n) in &[(1, 1, 1), (7, 5, 17), (13, 33, 40), (6, 64, 16), (20, 3, 33)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
            let mut c = vec![0.5f32; m * n];
            sgemm(m, k, n, 1.0, Mat::rows(&a, k), Mat::rows(&b, n), 1.0, &mut c, n);
            for i in 0..m {
                for j in 0..n {
                    let r: f32 = 0.5 + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
                    assert_eq!(c[i * n + j], r, "{m}x{k}x{n} at {i},{j}");
                }
            }
        }
    }
}
