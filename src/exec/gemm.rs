//! Single-threaded SGEMM used by Conv, Gemm and MatMul: a bounds-checked wrapper over the
//! `matrixmultiply` crate (runtime-detected AVX2/FMA kernels). It never splits a reduction
//! across threads, so results depend only on the operands, never on the thread count.

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` view with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Mat<'a> {
        Mat { data, rs: ld, cs: 1 }
    }
    /// The transpose of a row-major view with row stride `ld`.
    pub fn rows_t(data: &'a [f32], ld: usize) -> Mat<'a> {
        Mat { data, rs: 1, cs: ld }
    }
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// `C[m x n] = alpha * A[m x k] * B[k x n] + beta * C`, C row-major with row stride `ldc`.
/// With `beta == 0`, C's previous contents are ignored (NaNs included).
///
/// Panics if a view is too small for the given sizes (a bug in the caller, never user input:
/// callers derive sizes from validated shapes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.fits(m, k) && b.fits(k, n), "sgemm operand views too small");
    assert!((m - 1) * ldc + n <= c.len(), "sgemm output view too small");
    if k == 0 {
        for i in 0..m {
            for x in &mut c[i * ldc..i * ldc + n] {
                *x = if beta == 0.0 { 0.0 } else { *x * beta };
            }
        }
        return;
    }
    // SAFETY: the asserts above prove every accessed index of a, b and c is in bounds
    // (strides are non-negative), and c is uniquely borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
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
}
