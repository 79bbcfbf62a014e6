//! Input-channel permutation search before 2:4 pruning.
//!
//! Which channels share a 2:4 group is arbitrary as long as the producer of the layer's
//! input is permuted the same way (its output channels, bias, BatchNorm, and every other
//! consumer), so the channel order can be chosen to keep more magnitude after pruning.
//! This module only finds and applies permutations; keeping the network equivalent is
//! the caller's business.
//!
//! # Model
//! The weight is viewed as a matrix with one column per channel of the reduction axis
//! (`C` columns) and one row per other position (`K·R·S` rows for a Conv). Pruning keeps,
//! in every row and every group of 4 consecutive (permuted) columns, the two largest
//! values. The objective is the total kept magnitude.
//!
//! # Search
//! A local search over *swaps* of two channels that sit in different groups, starting from
//! the identity and accepting only strict improvements, so the result never keeps less
//! than the identity. For a group `A` and one of its columns `a`, let `q` be the row-wise
//! second largest of the three other columns and `m = max(q, a)` (what `a` contributes
//! beyond the rest). Replacing `a` by a column `x` changes the group's kept sum by
//! `Σ_rows max(q, x) − m`, so one candidate swap costs two passes over the rows with
//! precomputed `q`, `m` of every (group, column).
//!
//! Group pairs are visited by *distance*: round `d` considers the pairs
//! `(A, A + d mod G)` for all groups `A`, evaluates the best of the 16 swaps of each pair
//! in parallel against the current state, then applies the improving swaps greedily by
//! decreasing gain, skipping pairs whose groups already changed in this round (swaps of
//! disjoint group pairs do not interact). A pair found without an improving swap is not
//! evaluated again until one of its two groups changes. Distances cycle through `1..=G/2`; the search
//! stops when a whole cycle accepts nothing (a local optimum of the swap neighbourhood),
//! after `max_rounds` rounds, or when the next round would exceed the `max_work` budget.
//! Everything is independent of the number of threads, so the result is deterministic.

use super::layout::GroupLayout;
use super::mask::retained_fraction_2of4;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Bounds on the permutation search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermuteOptions {
    /// At most this many rounds (one round = one distance `d`, all `G` group pairs).
    pub max_rounds: usize,
    /// Work budget in row-operations: a round costs `32 · rows · pairs`. The search stops
    /// before a round that would exceed it. The default (6·10⁹) takes one to two CPU-seconds
    /// with AVX2 (about a second on two cores), about twice that without.
    pub max_work: u64,
}

impl Default for PermuteOptions {
    fn default() -> Self {
        PermuteOptions { max_rounds: 100_000, max_work: 6_000_000_000 }
    }
}

/// Result of [`search_permutation`].
#[derive(Debug, Clone, PartialEq)]
pub struct PermutationResult {
    /// The permutation of the reduction axis, as a gather: new position `i` holds old
    /// channel `perm[i]` (see [`permute_axis`]).
    pub perm: Vec<usize>,
    /// Fraction of `Σ|w|` kept by 2:4 magnitude pruning in the original channel order.
    pub retained_identity: f64,
    /// Fraction of `Σ|w|` kept by 2:4 magnitude pruning after applying `perm`
    /// (always `>= retained_identity`).
    pub retained_permuted: f64,
    /// Number of accepted swaps.
    pub swaps: usize,
    /// Number of rounds run.
    pub rounds: usize,
    /// Whether the search reached a local optimum (a whole cycle of distances without
    /// an improving swap) rather than a budget limit.
    pub converged: bool,
}

/// Searches a permutation of `layout`'s reduction axis that maximises the magnitude kept
/// by 2:4 pruning of `w`. See the module docs for the algorithm. Fails when `w.len()`
/// does not match the layout.
pub fn search_permutation(w: &[f32], layout: &GroupLayout, opts: &PermuteOptions) -> Result<PermutationResult> {
    layout.check_len(w.len())?;
    let c = layout.axis_len();
    let (outer, inner) = (layout.outer(), layout.inner());
    let rows = outer * inner;
    // Column-major magnitudes: column ch holds |w[o, ch, i]| for all (o, i).
    let mut cols = vec![0f32; c * rows];
    for o in 0..outer {
        for ch in 0..c {
            let src = &w[(o * c + ch) * inner..(o * c + ch + 1) * inner];
            let dst = &mut cols[ch * rows + o * inner..ch * rows + (o + 1) * inner];
            for (d, s) in dst.iter_mut().zip(src) {
                *d = if s.is_finite() { s.abs() } else { 0.0 };
            }
        }
    }
    let (perm, swaps, rounds, converged) = search_columns(&cols, c, rows, opts);

    let retained_identity = retained_fraction_2of4(w, layout)?;
    let permuted = permute_axis(w, &layout.shape, layout.axis, &perm)?;
    let retained_permuted = retained_fraction_2of4(&permuted, layout)?;
    // Guarantee: never worse than the identity (guards against rounding in the search).
    if retained_permuted >= retained_identity {
        Ok(PermutationResult { perm, retained_identity, retained_permuted, swaps, rounds, converged })
    } else {
        Ok(PermutationResult {
            perm: (0..c).collect(),
            retained_identity,
            retained_permuted: retained_identity,
            swaps: 0,
            rounds,
            converged,
        })
    }
}

/// Per-group precomputation: for each of the group's 4 slots, `q` (row-wise second
/// largest of the other three columns) and `m = max(q, own column)`.
struct GroupCache {
    q: [Vec<f32>; 4],
    m: [Vec<f32>; 4],
}

#[inline]
fn fmax(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

fn build_cache(cols: &[f32], rows: usize, members: &[usize]) -> GroupCache {
    let col = |s: usize| &cols[members[s] * rows..(members[s] + 1) * rows];
    let mk = |slot: usize| {
        let others: Vec<&[f32]> = (0..4).filter(|&t| t != slot).map(col).collect();
        let own = col(slot);
        let mut q = vec![0f32; rows];
        let mut m = vec![0f32; rows];
        for r in 0..rows {
            let (x, y, z) = (others[0][r], others[1][r], others[2][r]);
            // second largest of three = max(min(x,y), min(max(x,y), z))
            let lo = if x < y { x } else { y };
            let hi = fmax(x, y);
            let mid = fmax(lo, if hi < z { hi } else { z });
            q[r] = mid;
            m[r] = fmax(mid, own[r]);
        }
        (q, m)
    };
    let (q0, m0) = mk(0);
    let (q1, m1) = mk(1);
    let (q2, m2) = mk(2);
    let (q3, m3) = mk(3);
    GroupCache { q: [q0, q1, q2, q3], m: [m0, m1, m2, m3] }
}

/// Lanes of the gain kernel's accumulators.
const LANES: usize = 8;

/// Rows per cache block of the gain kernel.
const ROW_BLOCK: usize = 512;

/// For rows `o0..o1` (a multiple of `LANES` long): `acc[j] += max(q, x_j) − m` lane-wise
/// for the four columns `x`.
#[inline(always)]
fn accumulate4(acc: &mut [[f32; LANES]], q: &[f32], m: &[f32], x: &[&[f32]; 4], o0: usize, o1: usize) {
    let (q, m) = (&q[o0..o1], &m[o0..o1]);
    let x = x.map(|c| &c[o0..o1]);
    let mut a = [acc[0], acc[1], acc[2], acc[3]];
    for (k, (qs, ms)) in q.chunks_exact(LANES).zip(m.chunks_exact(LANES)).enumerate() {
        for (aj, xj) in a.iter_mut().zip(&x) {
            let xs = &xj[k * LANES..k * LANES + LANES];
            for l in 0..LANES {
                aj[l] += fmax(qs[l], xs[l]) - ms[l];
            }
        }
    }
    acc[..4].copy_from_slice(&a);
}

/// The 32 gain sums of a group pair (see [`best_swap`]): `[i*4 + j]` is group a's gain
/// when its slot `i` is replaced by b's slot `j`, `[16 + j*4 + i]` the converse.
/// `#[inline(always)]` so that the AVX2 wrapper below compiles it with AVX2; the per-lane
/// operations (max, sub, add) are exact IEEE operations in the same order, so both
/// versions give bit-identical results.
#[inline(always)]
fn gain_sums(ca: &GroupCache, cb: &GroupCache, xa: &[&[f32]; 4], xb: &[&[f32]; 4]) -> [f64; 32] {
    let rows = xa[0].len();
    let full = rows / LANES * LANES;
    // acc[i*4 + j] and acc[16 + j*4 + i], LANES lanes each.
    let mut acc = [[0f32; LANES]; 32];
    let mut o0 = 0;
    while o0 < full {
        let o1 = (o0 + ROW_BLOCK).min(full);
        for i in 0..4 {
            accumulate4(&mut acc[i * 4..i * 4 + 4], &ca.q[i], &ca.m[i], xb, o0, o1);
        }
        for j in 0..4 {
            accumulate4(&mut acc[16 + j * 4..16 + j * 4 + 4], &cb.q[j], &cb.m[j], xa, o0, o1);
        }
        o0 = o1;
    }
    let mut sums = [0f64; 32];
    for (s, a) in sums.iter_mut().zip(&acc) {
        *s = a.iter().map(|&v| v as f64).sum();
    }
    for r in full..rows {
        for i in 0..4 {
            for j in 0..4 {
                sums[i * 4 + j] += (fmax(ca.q[i][r], xb[j][r]) - ca.m[i][r]) as f64;
                sums[16 + j * 4 + i] += (fmax(cb.q[j][r], xa[i][r]) - cb.m[j][r]) as f64;
            }
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gain_sums_avx2(ca: &GroupCache, cb: &GroupCache, xa: &[&[f32]; 4], xb: &[&[f32]; 4]) -> [f64; 32] {
    gain_sums(ca, cb, xa, xb)
}

/// Best swap between groups `a` and `b`: (gain, slot in a, slot in b).
///
/// The gain of swapping slot `i` of `a` with slot `j` of `b` is
/// `Σ_r [max(qa_i, b_j) − ma_i] + Σ_r [max(qb_j, a_i) − mb_j]`; all 32 sums are computed
/// in one pass over the rows.
fn best_swap(
    cols: &[f32],
    rows: usize,
    perm: &[usize],
    caches: &[GroupCache],
    a: usize,
    b: usize,
) -> (f64, usize, usize) {
    let col = |ch: usize| &cols[ch * rows..(ch + 1) * rows];
    let (ca, cb) = (&caches[a], &caches[b]);
    let xa: [&[f32]; 4] = [0, 1, 2, 3].map(|t| col(perm[4 * a + t]));
    let xb: [&[f32]; 4] = [0, 1, 2, 3].map(|t| col(perm[4 * b + t]));
    #[cfg(target_arch = "x86_64")]
    let sums = if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked at run time.
        unsafe { gain_sums_avx2(ca, cb, &xa, &xb) }
    } else {
        gain_sums(ca, cb, &xa, &xb)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let sums = gain_sums(ca, cb, &xa, &xb);
    let mut best = (f64::NEG_INFINITY, 0, 0);
    for i in 0..4 {
        for j in 0..4 {
            let g = sums[i * 4 + j] + sums[16 + j * 4 + i];
            if g > best.0 {
                best = (g, i, j);
            }
        }
    }
    best
}

/// The search on a column-major magnitude matrix (`c` columns of `rows` values each).
/// Returns (perm, swaps, rounds, converged).
fn search_columns(cols: &[f32], c: usize, rows: usize, opts: &PermuteOptions) -> (Vec<usize>, usize, usize, bool) {
    let mut perm: Vec<usize> = (0..c).collect();
    let g = c / 4;
    if g < 2 || rows == 0 {
        return (perm, 0, 0, true);
    }
    let total: f64 = cols.iter().map(|&v| v as f64).sum();
    if total <= 0.0 {
        return (perm, 0, 0, true);
    }
    // Gains below this are rounding noise (f32 sums over `rows` values).
    let tol = total / c as f64 * 1e-5;
    let mut caches: Vec<GroupCache> =
        (0..g).into_par_iter().map(|gi| build_cache(cols, rows, &perm[4 * gi..4 * gi + 4])).collect();
    let max_d = g / 2;
    // Versions of the groups (bumped on every change) and, per pair (a, d), the versions
    // at which it was last evaluated without finding an improving swap: such a pair is
    // skipped until one of its groups changes.
    let mut version = vec![0u32; g];
    let mut clean = vec![(u32::MAX, u32::MAX); g * max_d];
    let (mut swaps, mut rounds, mut work) = (0usize, 0usize, 0u64);
    let mut idle_rounds = 0usize;
    let mut d = 1usize;
    let converged = loop {
        if idle_rounds >= max_d {
            break true;
        }
        if rounds >= opts.max_rounds {
            break false;
        }
        // Pairs at distance d; when 2d == g each pair would appear twice.
        let firsts = if 2 * d == g { d } else { g };
        let todo: Vec<usize> =
            (0..firsts).filter(|&a| clean[a * max_d + d - 1] != (version[a], version[(a + d) % g])).collect();
        let cost = 32u64 * rows as u64 * todo.len() as u64;
        if work.saturating_add(cost) > opts.max_work {
            break false;
        }
        work += cost;
        rounds += 1;
        let results: Vec<(f64, usize, usize, usize, usize)> = todo
            .par_iter()
            .map(|&a| {
                let b = (a + d) % g;
                let (gain, i, j) = best_swap(cols, rows, &perm, &caches, a, b);
                (gain, a, b, i, j)
            })
            .collect();
        let mut cands = Vec::new();
        for &(gain, a, b, i, j) in &results {
            if gain > tol {
                cands.push((gain, a, b, i, j));
            } else {
                clean[a * max_d + d - 1] = (version[a], version[b]);
            }
        }
        cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let mut touched = vec![false; g];
        let mut changed = Vec::new();
        for &(_, a, b, i, j) in &cands {
            if touched[a] || touched[b] {
                continue;
            }
            touched[a] = true;
            touched[b] = true;
            perm.swap(4 * a + i, 4 * b + j);
            changed.push(a);
            changed.push(b);
        }
        if changed.is_empty() {
            idle_rounds += 1;
        } else {
            idle_rounds = 0;
            swaps += changed.len() / 2;
            for &gi in &changed {
                version[gi] = version[gi].wrapping_add(1);
            }
            let fresh: Vec<(usize, GroupCache)> =
                changed.par_iter().map(|&gi| (gi, build_cache(cols, rows, &perm[4 * gi..4 * gi + 4]))).collect();
            for (gi, cache) in fresh {
                caches[gi] = cache;
            }
        }
        d = if d >= max_d { 1 } else { d + 1 };
    };
    (perm, swaps, rounds, converged)
}

/// Checks that `perm` is a permutation of `0..n`.
fn check_perm(perm: &[usize], n: usize) -> Result<()> {
    if perm.len() != n {
        return Err(Error::user(format!("permutation has {} entries, axis has {n}", perm.len())));
    }
    let mut seen = vec![false; n];
    for &p in perm {
        if p >= n || seen[p] {
            return Err(Error::user(format!("not a permutation of 0..{n}: entry {p} out of range or repeated")));
        }
        seen[p] = true;
    }
    Ok(())
}

/// The inverse permutation: `inv[perm[i]] = i`. Fails when `perm` is not a permutation.
pub fn invert_permutation(perm: &[usize]) -> Result<Vec<usize>> {
    check_perm(perm, perm.len())?;
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    Ok(inv)
}

/// Reorders `axis` of a row-major tensor: `out[.., i, ..] = data[.., perm[i], ..]`.
///
/// Apply the same `perm` to the input-channel axis of the pruned weight and to the output
/// channels of the producer (axis 0 of its weight, its bias, ...). Undo with
/// [`invert_permutation`]. Fails on a shape/length mismatch or an invalid permutation.
pub fn permute_axis<T: Copy>(data: &[T], shape: &[usize], axis: usize, perm: &[usize]) -> Result<Vec<T>> {
    if axis >= shape.len() {
        return Err(Error::user(format!("axis {axis} out of range for shape {shape:?}")));
    }
    let numel: usize = shape.iter().product();
    if numel != data.len() {
        return Err(Error::user(format!("tensor has {} elements, shape {shape:?} needs {numel}", data.len())));
    }
    let n = shape[axis];
    check_perm(perm, n)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(data.len());
    for o in 0..outer {
        for &p in perm {
            let start = (o * n + p) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparsity::mask::prune_2of4_magnitude;
    use crate::sparsity::testutil::Rng;

    #[test]
    fn permute_axis_roundtrip() {
        let shape = [2, 3, 2];
        let data: Vec<i32> = (0..12).collect();
        let out = permute_axis(&data, &shape, 1, &[2, 0, 1]).unwrap();
        assert_eq!(out, vec![4, 5, 0, 1, 2, 3, 10, 11, 6, 7, 8, 9]);
        let inv = invert_permutation(&[2, 0, 1]).unwrap();
        assert_eq!(inv, vec![1, 2, 0]);
        assert_eq!(permute_axis(&out, &shape, 1, &inv).unwrap(), data);
        let out0 = permute_axis(&data, &shape, 0, &[1, 0]).unwrap();
        assert_eq!(&out0[..6], &data[6..]);
        assert!(permute_axis(&data, &shape, 1, &[0, 0, 1]).is_err());
        assert!(permute_axis(&data, &shape, 1, &[0, 1]).is_err());
        assert!(permute_axis(&data, &shape, 3, &[0, 1]).is_err());
        assert!(permute_axis(&data[..11], &shape, 1, &[0, 1, 2]).is_err());
        assert!(invert_permutation(&[0, 3, 1]).is_err());
    }

    #[test]
    fn cache_gain_matches_direct_recomputation() {
        let mut rng = Rng::new(11);
        let (c, k) = (16, 5);
        let w: Vec<f32> = (0..k * c).map(|_| rng.normal() as f32).collect();
        let layout = GroupLayout::gemm_b(&[k, c], true).unwrap();
        let mut cols = vec![0f32; c * k];
        for r in 0..k {
            for ch in 0..c {
                cols[ch * k + r] = w[r * c + ch].abs();
            }
        }
        let perm: Vec<usize> = (0..c).collect();
        let caches: Vec<_> = (0..4).map(|gi| build_cache(&cols, k, &perm[4 * gi..4 * gi + 4])).collect();
        let (gain, i, j) = best_swap(&cols, k, &perm, &caches, 0, 2);
        let kept = |p: &[usize]| {
            let pw = permute_axis(&w, &[k, c], 1, p).unwrap();
            let mut x = pw.clone();
            prune_2of4_magnitude(&mut x, &layout).unwrap();
            x.iter().map(|v| v.abs() as f64).sum::<f64>()
        };
        let mut p2 = perm.clone();
        p2.swap(i, 8 + j);
        let direct = kept(&p2) - kept(&perm);
        assert!((gain - direct).abs() < 1e-4, "{gain} vs {direct}");
        // And it is the best of the 16 swaps.
        for a in 0..4 {
            for b in 8..12 {
                let mut p3 = perm.clone();
                p3.swap(a, b);
                assert!(kept(&p3) - kept(&perm) <= gain + 1e-4);
            }
        }
    }

    #[test]
    fn finds_improvement_on_structured_weight() {
        // Channels 0..4 are large, 4..8 small, for all rows: identity groups the four large
        // channels together and loses half of them; pairing large with small keeps them all.
        let (k, c) = (6, 8);
        let mut rng = Rng::new(5);
        let mut w = vec![0f32; k * c * 3];
        let layout = GroupLayout::conv(&[k, c, 3]).unwrap();
        for kk in 0..k {
            for ch in 0..c {
                for s in 0..3 {
                    let scale = if ch < 4 { 10.0 } else { 0.1 };
                    w[(kk * c + ch) * 3 + s] = (scale * (1.0 + 0.1 * rng.uniform())) as f32;
                }
            }
        }
        let res = search_permutation(&w, &layout, &PermuteOptions::default()).unwrap();
        assert!(res.converged);
        assert!(res.swaps >= 1);
        assert!(res.retained_permuted > 0.98, "{res:?}");
        assert!(res.retained_identity < 0.52, "{res:?}");
        let pw = permute_axis(&w, &layout.shape, 1, &res.perm).unwrap();
        assert!((retained_fraction_2of4(&pw, &layout).unwrap() - res.retained_permuted).abs() < 1e-12);
    }

    #[test]
    fn never_worse_deterministic_and_thread_independent() {
        let mut rng = Rng::new(9);
        let (k, c, s) = (16, 64, 3);
        // Heavy-tailed per-channel scales make permutation matter.
        let scales: Vec<f64> = (0..c).map(|_| rng.normal().exp()).collect();
        let w: Vec<f32> = (0..k * c * s).map(|i| (rng.normal() * scales[(i / s) % c]) as f32).collect();
        let layout = GroupLayout::conv(&[k, c, s]).unwrap();
        let opts = PermuteOptions::default();
        let r1 = search_permutation(&w, &layout, &opts).unwrap();
        assert!(r1.retained_permuted > r1.retained_identity + 0.005, "{r1:?}");
        let r2 = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| search_permutation(&w, &layout, &opts).unwrap());
        assert_eq!(r1, r2);
        // A tiny budget: stops early, still valid and never worse.
        let r3 = search_permutation(&w, &layout, &PermuteOptions { max_rounds: 2, max_work: u64::MAX }).unwrap();
        assert_eq!(r3.rounds, 2);
        assert!(!r3.converged);
        assert!(r3.retained_permuted >= r3.retained_identity);
        assert!(r3.retained_permuted <= r1.retained_permuted + 1e-9);
        let r4 = search_permutation(&w, &layout, &PermuteOptions { max_rounds: 100, max_work: 0 }).unwrap();
        assert_eq!(r4.perm, (0..c).collect::<Vec<_>>());
        assert_eq!(r4.retained_permuted, r4.retained_identity);
        // Invalid input.
        assert!(search_permutation(&w[1..], &layout, &opts).is_err());
    }

    #[test]
    fn single_group_and_zero_weights() {
        let layout = GroupLayout::gemm_b(&[3, 4], true).unwrap();
        let w = vec![1.0f32; 12];
        let r = search_permutation(&w, &layout, &PermuteOptions::default()).unwrap();
        assert_eq!(r.perm, vec![0, 1, 2, 3]);
        let layout = GroupLayout::gemm_b(&[3, 8], true).unwrap();
        let r = search_permutation(&[0.0; 24], &layout, &PermuteOptions::default()).unwrap();
        assert_eq!(r.perm, (0..8).collect::<Vec<_>>());
        assert_eq!(r.retained_permuted, 1.0);
    }
}
