//! Conv and ConvTranspose (1-D, 2-D and 3-D, groups, dilations, strides, pads, auto_pad).
//!
//! Conv lowers each (image, group, block of output rows) to an im2col panel and one SGEMM;
//! a 1x1 stride-1 unpadded conv multiplies the input directly, and a depthwise conv runs a
//! direct loop. The work split depends only on the shapes, never on the thread count, so
//! results are bit-identical whatever rayon's pool size.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::super::gemm::{gemm_rows, sgemm, Mat, PackedA};
use super::super::tensor::{numel, pool, Tensor};
use super::{input, opt_input, Attrs, Kernel, NodeCtx};

pub(crate) use crate::util::AutoPad;

pub(crate) fn parse_auto_pad(a: &Attrs) -> Result<AutoPad> {
    let s = a.string("auto_pad", "NOTSET")?;
    AutoPad::parse(&s).ok_or_else(|| Error::user(format!("unknown auto_pad '{s}'")))
}

/// Spatial attributes shared by Conv, ConvTranspose and the pools.
#[derive(Clone, Debug)]
pub(crate) struct SpatialAttrs {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
}

fn positive_list(a: &Attrs, name: &str) -> Result<Option<Vec<usize>>> {
    match a.ints(name)? {
        None => Ok(None),
        Some(v) => {
            if v.iter().any(|&x| x < 1) {
                return Err(Error::user(format!("attribute '{name}' = {v:?} must be positive")));
            }
            Ok(Some(v.iter().map(|&x| x as usize).collect()))
        }
    }
}

impl SpatialAttrs {
    pub fn parse(a: &Attrs) -> Result<SpatialAttrs> {
        let pads = match a.ints("pads")? {
            None => None,
            Some(v) => {
                if v.iter().any(|&x| x < 0) {
                    return Err(Error::user(format!("negative pads {v:?} are not supported")));
                }
                Some(v.iter().map(|&x| x as usize).collect())
            }
        };
        Ok(SpatialAttrs {
            kernel_shape: positive_list(a, "kernel_shape")?,
            strides: positive_list(a, "strides")?,
            dilations: positive_list(a, "dilations")?,
            pads,
            auto_pad: parse_auto_pad(a)?,
        })
    }

    fn list(v: &Option<Vec<usize>>, r: usize, name: &str) -> Result<Vec<usize>> {
        match v {
            None => Ok(vec![1; r]),
            Some(v) if v.len() == r => Ok(v.clone()),
            Some(v) => Err(Error::user(format!("attribute '{name}' = {v:?} does not have {r} entries"))),
        }
    }

    /// Output geometry for input spatial dims `inp` and kernel `k` (normalized to 3-D).
    pub fn geometry(&self, inp: &[usize], k: &[usize], ceil_mode: bool) -> Result<Geom> {
        let r = inp.len();
        if r == 0 || r > 3 {
            return Err(Error::user(format!("{r}-D spatial input is not supported (1-D to 3-D are)")));
        }
        if k.len() != r {
            return Err(Error::user(format!("kernel {k:?} does not match {r} spatial dims")));
        }
        let s = Self::list(&self.strides, r, "strides")?;
        let d = Self::list(&self.dilations, r, "dilations")?;
        let pads = match &self.pads {
            None => vec![0; 2 * r],
            Some(p) if p.len() == 2 * r => p.clone(),
            Some(p) => return Err(Error::user(format!("attribute 'pads' = {p:?} does not have {} entries", 2 * r))),
        };
        let mut g = Geom { inp: [1; 3], k: [1; 3], s: [1; 3], d: [1; 3], pb: [0; 3], pe: [0; 3], out: [1; 3] };
        let o = 3 - r;
        for i in 0..r {
            let ek = (k[i] - 1) * d[i] + 1;
            let (pb, pe, out) = match self.auto_pad {
                AutoPad::NotSet => {
                    let (pb, pe) = (pads[i], pads[i + r]);
                    let span = inp[i] + pb + pe;
                    if span < ek {
                        return Err(Error::user(format!(
                            "padded input size {span} is smaller than the kernel extent {ek} on spatial axis {i}"
                        )));
                    }
                    let mut out = if ceil_mode { (span - ek).div_ceil(s[i]) + 1 } else { (span - ek) / s[i] + 1 };
                    if ceil_mode && (out - 1) * s[i] >= inp[i] + pb {
                        out -= 1;
                    }
                    (pb, pe, out)
                }
                AutoPad::Valid => {
                    if inp[i] < ek {
                        return Err(Error::user(format!(
                            "input size {} is smaller than the kernel extent {ek} on spatial axis {i}",
                            inp[i]
                        )));
                    }
                    let out = if ceil_mode { (inp[i] - ek).div_ceil(s[i]) + 1 } else { (inp[i] - ek) / s[i] + 1 };
                    (0, 0, out)
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let (pb, pe, out) = self.auto_pad.same_pads(inp[i] as i64, ek as i64, s[i] as i64);
                    (pb as usize, pe as usize, out as usize)
                }
            };
            g.inp[o + i] = inp[i];
            g.k[o + i] = k[i];
            g.s[o + i] = s[i];
            g.d[o + i] = d[i];
            g.pb[o + i] = pb;
            g.pe[o + i] = pe;
            g.out[o + i] = out;
        }
        Ok(g)
    }
}

/// Spatial geometry normalized to 3-D (leading dims of size 1 for 1-D/2-D).
#[derive(Clone, Debug)]
pub(crate) struct Geom {
    pub inp: [usize; 3],
    pub k: [usize; 3],
    pub s: [usize; 3],
    pub d: [usize; 3],
    pub pb: [usize; 3],
    pub pe: [usize; 3],
    pub out: [usize; 3],
}

impl Geom {
    pub fn in_size(&self) -> usize {
        self.inp.iter().product()
    }
    pub fn out_size(&self) -> usize {
        self.out.iter().product()
    }
    pub fn k_size(&self) -> usize {
        self.k.iter().product()
    }
    /// Valid output range `[lo, hi)` along axis `a` for kernel offset `kk`: the outputs
    /// whose input coordinate `o * s + kk * d - pb` lies inside the input.
    #[inline]
    pub fn valid_range(&self, a: usize, kk: usize) -> (usize, usize) {
        let off = kk * self.d[a]; // input coord = o*s + off - pb
        let s = self.s[a];
        let lo = if self.pb[a] > off { (self.pb[a] - off).div_ceil(s) } else { 0 };
        let lim = self.inp[a] + self.pb[a]; // need o*s + off < lim
        let hi = if lim > off { (lim - off).div_ceil(s) } else { 0 };
        (lo.min(self.out[a]), hi.min(self.out[a]).max(lo.min(self.out[a])))
    }
}

// ---------------------------------------------------------------------------------------

struct ConvKernel {
    attrs: SpatialAttrs,
    group: usize,
    /// The weight when it is a program constant, with its per-group packed panels.
    weight: Option<(Tensor, Vec<PackedA>)>,
}

/// Packs a conv weight [M, C/group, *k] into one [`PackedA`] per group.
fn pack_weight(w: &[f32], ws: &[usize], group: usize) -> Vec<PackedA> {
    let mg = ws[0] / group;
    let kdim: usize = ws[1..].iter().product();
    (0..group).map(|gi| PackedA::new(mg, kdim, Mat::rows(&w[gi * mg * kdim..][..mg * kdim], kdim), 1.0)).collect()
}

pub(crate) fn build_conv(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 3)?;
    let a = cx.attrs();
    let group = a.int("group", 1)?;
    if group < 1 {
        return Err(Error::user(format!("group = {group} must be positive")));
    }
    let group = group as usize;
    let attrs = SpatialAttrs::parse(&a)?;
    let weight = match cx.const_input(1) {
        None => None,
        Some(w) => {
            let wv = w.as_f32().map_err(|e| e.context("weight"))?;
            if w.rank() < 3 || w.rank() > 5 {
                return Err(Error::user(format!("weight of shape {:?} must have rank 3 to 5", w.shape())));
            }
            if w.shape()[0] % group != 0 {
                return Err(Error::user(format!("{} output channels are not divisible by group {group}", w.shape()[0])));
            }
            Some((w.clone(), pack_weight(wv, w.shape(), group)))
        }
    };
    Ok(Box::new(ConvKernel { attrs, group, weight }))
}

/// Floats of the im2col panel aimed for per task (keeps it within L2).
const PANEL_FLOATS: usize = 48 * 1024;
/// Output columns per task of the implicit-GEMM path.
const GRID_COLS: usize = 512;
/// Below this many multiply-adds a conv runs on the calling thread only.
const PAR_MACS: usize = 1 << 21;

thread_local! {
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks holding an OutPtr write pairwise-disjoint element sets of one live buffer.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer `off` elements in (taking `self` whole keeps closures `Sync`).
    #[inline]
    fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// Fills `col` ([cg * kvol, rows * OW]) for output rows `r0..r1` (row = od * OH + oh).
fn im2col(x: &[f32], g: &Geom, cg: usize, r0: usize, r1: usize, col: &mut [f32]) {
    let [_, oh_n, ow_n] = g.out;
    let [d_n, h_n, w_n] = g.inp;
    let ncols = (r1 - r0) * ow_n;
    let mut krow = 0;
    for c in 0..cg {
        for kd in 0..g.k[0] {
            for kh in 0..g.k[1] {
                for kw in 0..g.k[2] {
                    let dst = &mut col[krow * ncols..(krow + 1) * ncols];
                    krow += 1;
                    let (wlo, whi) = g.valid_range(2, kw);
                    for r in r0..r1 {
                        let (od, oh) = (r / oh_n, r % oh_n);
                        let drow = &mut dst[(r - r0) * ow_n..(r - r0 + 1) * ow_n];
                        let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                        let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                        if id < 0 || id >= d_n as isize || ih < 0 || ih >= h_n as isize || wlo >= whi {
                            drow.fill(0.0);
                            continue;
                        }
                        let src = &x[((c * d_n + id as usize) * h_n + ih as usize) * w_n..][..w_n];
                        drow[..wlo].fill(0.0);
                        drow[whi..].fill(0.0);
                        let base = wlo * g.s[2] + kw * g.d[2] - g.pb[2];
                        if g.s[2] == 1 {
                            drow[wlo..whi].copy_from_slice(&src[base..base + (whi - wlo)]);
                        } else {
                            for (j, o) in drow[wlo..whi].iter_mut().enumerate() {
                                *o = src[base + j * g.s[2]];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Depthwise conv of one channel plane: each output row accumulates all its taps while it
/// sits in L1. Strided rows are first split into `s` phase rows so every tap is a
/// contiguous multiply-add.
fn depthwise_plane(x: &[f32], w: &[f32], bias: f32, g: &Geom, out: &mut [f32], phase: &mut Vec<f32>) {
    let [od_n, oh_n, ow_n] = g.out;
    let [_, h_n, w_n] = g.inp;
    let sw = g.s[2];
    let plen = w_n.div_ceil(sw);
    if sw > 1 && phase.len() < sw * plen {
        phase.resize(sw * plen, 0.0);
    }
    let wr: Vec<(usize, usize)> = (0..g.k[2]).map(|kw| g.valid_range(2, kw)).collect();
    out.fill(bias);
    for od in 0..od_n {
        for oh in 0..oh_n {
            let dst = &mut out[(od * oh_n + oh) * ow_n..][..ow_n];
            for kd in 0..g.k[0] {
                let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                if id < 0 || id >= g.inp[0] as isize {
                    continue;
                }
                for kh in 0..g.k[1] {
                    let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                    if ih < 0 || ih >= h_n as isize {
                        continue;
                    }
                    let src = &x[(id as usize * h_n + ih as usize) * w_n..][..w_n];
                    if sw > 1 {
                        // phase q holds src[q], src[q + sw], ...
                        for (t, &v) in src.iter().enumerate() {
                            phase[(t % sw) * plen + t / sw] = v;
                        }
                    }
                    for kw in 0..g.k[2] {
                        let (wlo, whi) = wr[kw];
                        if wlo >= whi {
                            continue;
                        }
                        let wv = w[(kd * g.k[1] + kh) * g.k[2] + kw];
                        // input column of output wlo
                        let base = wlo * sw + kw * g.d[2] - g.pb[2];
                        let d = &mut dst[wlo..whi];
                        let len = d.len();
                        let sv = if sw == 1 {
                            &src[base..base + len]
                        } else {
                            let (q, start) = (base % sw, base / sw);
                            &phase[q * plen + start..q * plen + start + len]
                        };
                        for (o, &v) in d.iter_mut().zip(sv) {
                            *o += wv * v;
                        }
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Depthwise conv of consecutive 1-D/2-D channel planes `i0 ..` (plane `i` is channel
/// `i % m`), register-blocked: each block of outputs accumulates all its taps before being
/// stored. Each plane is first copied into a zero-padded buffer split into `s` column
/// phases (s = the column stride), so that every tap reads a contiguous, in-bounds run.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn depthwise_2d<const FMA: bool>(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    i0: usize,
    g: &Geom,
    out: &mut [f32],
    buf: &mut Vec<f32>,
) {
    let [_, oh_n, ow_n] = g.out;
    let [_, h_n, w_n] = g.inp;
    let (kh_n, kw_n) = (g.k[1], g.k[2]);
    let (sh, sw) = (g.s[1], g.s[2]);
    let (isz, osz, kvol) = (h_n * w_n, oh_n * ow_n, kh_n * kw_n);
    let hp = h_n + g.pb[1] + g.pe[1];
    let wp = w_n + g.pb[2] + g.pe[2];
    // phase row length, with slack so 8-wide chunks past the last output stay in bounds
    let len = wp.div_ceil(sw) + 8;
    let total = sw * hp * len;
    if buf.len() < total + 2 * len {
        buf.resize(total + 2 * len, 0.0);
    }
    let (plane, rest) = buf.split_at_mut(total);
    let prow = &mut rest[..2 * len];
    // Padding cells are never written below, so one clear serves every plane.
    plane.fill(0.0);
    prow.fill(0.0);
    // Each tap (kh, kw) reads the plane at row_base + off + ow.
    let offs: Vec<usize> = (0..kvol)
        .map(|t| {
            let (kh, kw) = (t / kw_n, t % kw_n);
            let c = kw * g.d[2];
            (((c % sw) * hp + kh * g.d[1]) * len) + c / sw
        })
        .collect();
    let nplanes = out.len() / osz.max(1);
    for p in 0..nplanes {
        let i = i0 + p;
        let ch = i % m;
        let xp = &x[i * isz..(i + 1) * isz];
        fill_phase_plane(xp, g, sw, hp, len, plane, prow);
        let taps: Vec<(usize, f32)> = offs.iter().copied().zip(w[ch * kvol..(ch + 1) * kvol].iter().copied()).collect();
        let bias = b.map_or(0.0, |b| b[ch]);
        let outp = &mut out[p * osz..(p + 1) * osz];
        let plane: &[f32] = plane;
        let mut oh = 0;
        while oh < oh_n {
            if oh + DW_ROWS <= oh_n {
                dw_rows::<FMA, DW_ROWS>(plane, &taps, bias, oh, sh * len, ow_n, outp);
                oh += DW_ROWS;
            } else {
                dw_rows::<FMA, 1>(plane, &taps, bias, oh, sh * len, ow_n, outp);
                oh += 1;
            }
        }
    }
}

/// Copies one input plane into the interior of the zero-padded phase planes.
#[inline(always)]
fn fill_phase_plane(x: &[f32], g: &Geom, sw: usize, hp: usize, len: usize, plane: &mut [f32], prow: &mut [f32]) {
    let [_, h_n, w_n] = g.inp;
    for ih in 0..h_n {
        let row = &x[ih * w_n..(ih + 1) * w_n];
        let ihp = ih + g.pb[1];
        if sw == 1 {
            let d0 = ihp * len + g.pb[2];
            plane[d0..d0 + w_n].copy_from_slice(row);
            continue;
        }
        if sw == 2 {
            // pad the row, then split it into even and odd columns 8 at a time
            let prow = &mut prow[..2 * len];
            prow[g.pb[2]..g.pb[2] + w_n].copy_from_slice(row);
            let (even, odd) = plane[ihp * len..].split_at_mut(hp * len);
            let (even, odd) = (&mut even[..len], &mut odd[..len]);
            for ((e8, o8), s16) in even.chunks_exact_mut(8).zip(odd.chunks_exact_mut(8)).zip(prow.chunks_exact(16)) {
                for i in 0..8 {
                    e8[i] = s16[2 * i];
                    o8[i] = s16[2 * i + 1];
                }
            }
            let done = len / 8 * 8;
            for t in done..len {
                even[t] = prow[2 * t];
                odd[t] = prow[2 * t + 1];
            }
            continue;
        }
        for q in 0..sw {
            // padded column iwp = t * sw + q holds row[iwp - pl], for pl <= iwp < pl + w_n
            let dst = &mut plane[(q * hp + ihp) * len..(q * hp + ihp + 1) * len];
            let t_lo = g.pb[2].saturating_sub(q).div_ceil(sw);
            let t_hi = (g.pb[2] + w_n).saturating_sub(q).div_ceil(sw);
            if t_lo < t_hi {
                let first = t_lo * sw + q - g.pb[2];
                for (d, &v) in dst[t_lo..t_hi].iter_mut().zip(row[first..].iter().step_by(sw)) {
                    *d = v;
                }
            }
        }
    }
}

/// Channel planes per depthwise task.
const DW_PLANES: usize = 16;

/// Rows per depthwise block.
const DW_ROWS: usize = 4;

/// Output rows `oh .. oh + R` of a depthwise plane.
#[inline(always)]
fn dw_rows<const FMA: bool, const R: usize>(
    plane: &[f32],
    taps: &[(usize, f32)],
    bias: f32,
    oh: usize,
    row_step: usize,
    ow_n: usize,
    out: &mut [f32],
) {
    let mut ow = 0;
    while ow < ow_n {
        let bases: [usize; R] = std::array::from_fn(|r| (oh + r) * row_step + ow);
        if ow + 16 <= ow_n {
            let acc = dw_block::<FMA, R, 16>(plane, taps, bias, &bases);
            for (r, a) in acc.iter().enumerate() {
                out[(oh + r) * ow_n + ow..][..16].copy_from_slice(a);
            }
            ow += 16;
        } else {
            let acc = dw_block::<FMA, R, 8>(plane, taps, bias, &bases);
            let n = 8.min(ow_n - ow);
            for (r, a) in acc.iter().enumerate() {
                out[(oh + r) * ow_n + ow..][..n].copy_from_slice(&a[..n]);
            }
            ow += 8;
        }
    }
}

/// An `R x N` block of outputs; row `r`'s taps read `plane[bases[r] + off ..]`.
#[inline(always)]
fn dw_block<const FMA: bool, const R: usize, const N: usize>(
    plane: &[f32],
    taps: &[(usize, f32)],
    bias: f32,
    bases: &[usize; R],
) -> [[f32; N]; R] {
    let mut acc = [[bias; N]; R];
    for &(off, wv) in taps {
        for r in 0..R {
            let b = bases[r] + off;
            let src: &[f32; N] = match plane[b..b + N].try_into() {
                Ok(a) => a,
                Err(_) => return acc,
            };
            for l in 0..N {
                acc[r][l] = madd::<FMA>(wv, src[l], acc[r][l]);
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn depthwise_2d_avx2(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    i0: usize,
    g: &Geom,
    out: &mut [f32],
    buf: &mut Vec<f32>,
) {
    depthwise_2d::<true>(x, w, b, m, i0, g, out, buf)
}

/// Depthwise conv of the planes `i0 ..` that `out` holds, picking the fastest variant.
#[allow(clippy::too_many_arguments)]
fn depthwise_planes(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    i0: usize,
    g: &Geom,
    out: &mut [f32],
    buf: &mut Vec<f32>,
) {
    let (isz, osz, kvol) = (g.in_size(), g.out_size(), g.k_size());
    if g.inp[0] != 1 || g.k[0] != 1 {
        for (p, o) in out.chunks_mut(osz).enumerate() {
            let ch = (i0 + p) % m;
            let xp = &x[(i0 + p) * isz..][..isz];
            depthwise_plane(xp, &w[ch * kvol..][..kvol], b.map_or(0.0, |b| b[ch]), g, o, buf);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if super::super::gemm::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { depthwise_2d_avx2(x, w, b, m, i0, g, out, buf) };
        }
    }
    depthwise_2d::<false>(x, w, b, m, i0, g, out, buf)
}

/// Runs a conv of float data. `x`: [N, C, *sp], `w`: [M, C/group, *k], `b`: [M];
/// `packed`: the weight's per-group panels if already packed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_forward(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    packed: Option<&[PackedA]>,
    b: Option<&[f32]>,
    group: usize,
    attrs: &SpatialAttrs,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let r = xs.len();
    if !(3..=5).contains(&r) || ws.len() != r {
        return Err(Error::user(format!("Conv input {xs:?} and weight {ws:?} must both have rank 3 to 5")));
    }
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    if c != ws[1] * group || m % group != 0 {
        return Err(Error::user(format!(
            "Conv input channels {c} / output channels {m} do not match weight {ws:?} with group {group}"
        )));
    }
    if let Some(ks) = &attrs.kernel_shape {
        if ks.as_slice() != &ws[2..] {
            return Err(Error::user(format!("kernel_shape {ks:?} does not match weight {ws:?}")));
        }
    }
    if let Some(b) = b {
        if b.len() != m {
            return Err(Error::user(format!("Conv bias has {} elements, expected {m}", b.len())));
        }
    }
    let g = attrs.geometry(&xs[2..], &ws[2..], false)?;
    let mut out_shape = vec![n, m];
    out_shape.extend_from_slice(&g.out[3 - (r - 2)..]);
    let (cg, mg) = (c / group, m / group);
    let (isz, osz, kvol) = (g.in_size(), g.out_size(), g.k_size());
    let kdim = cg * kvol;
    // Every output element is written below (bias seed or depthwise store).
    let mut y = pool::scratch(n * m * osz);
    if y.is_empty() {
        return Ok((out_shape, y));
    }
    let macs = n * m * osz * kdim;
    let par = macs >= PAR_MACS;

    // Depthwise: one input and one output channel per group (so plane i of x feeds plane i
    // of y). Work is split in fixed chunks of planes.
    if cg == 1 && mg == 1 {
        let task = |(ci, chunk): (usize, &mut [f32])| {
            SCRATCH.with(|s| {
                let buf = &mut s.borrow_mut().0;
                depthwise_planes(x, w, b, m, ci * DW_PLANES, &g, chunk, buf);
            });
        };
        if par {
            y.par_chunks_mut(osz * DW_PLANES).enumerate().for_each(task);
        } else {
            y.chunks_mut(osz * DW_PLANES).enumerate().for_each(task);
        }
        return Ok((out_shape, y));
    }

    let owned;
    let packed = match packed {
        Some(p) => p,
        None => {
            owned = pack_weight(w, ws, group);
            &owned[..]
        }
    };
    let ow_n = g.out[2];
    let bias_all: Vec<f32> = b.map_or_else(|| vec![0.0; m], |b| b.to_vec());
    let out = OutPtr(y.as_mut_ptr());
    let ylen = y.len();
    // Seeds output row segment (channel mi of group gi of image img, columns c0..c0+len).
    let seg = move |img: usize, ch: usize, c0: usize, len: usize| -> &mut [f32] {
        let off = (img * m + ch) * osz + c0;
        assert!(off + len <= ylen);
        // SAFETY: tasks own disjoint (image, group, row block) parts of y; this segment lies
        // inside y (asserted) and belongs to the calling task.
        unsafe { std::slice::from_raw_parts_mut(out.at(off), len) }
    };

    // Stride-1 1-D/2-D convs: implicit GEMM over the zero-padded input. Output (oh, ow) is
    // column oh * wp + ow of a grid as wide as the padded input, so every B row (c, kh, kw)
    // is a contiguous run of the padded input at offset c*hp*wp + kh*dh*wp + kw*dw; the
    // wp - OW junk columns of each row are computed and dropped.
    let grid = g.inp[0] == 1 && g.k[0] == 1 && g.s[1] == 1 && g.s[2] == 1;
    if grid {
        let (hp, wp) = (g.inp[1] + g.pb[1] + g.pe[1], g.inp[2] + g.pb[2] + g.pe[2]);
        let (h_n, w_n) = (g.inp[1], g.inp[2]);
        let mut padded_buf: Option<Vec<f32>> = None;
        if hp != h_n || wp != w_n {
            let mut v = pool::zeros(n * c * hp * wp);
            for (pl, dst) in v.chunks_mut(hp * wp).enumerate() {
                let src = &x[pl * isz..(pl + 1) * isz];
                for ih in 0..h_n {
                    let d0 = (ih + g.pb[1]) * wp + g.pb[2];
                    dst[d0..d0 + w_n].copy_from_slice(&src[ih * w_n..(ih + 1) * w_n]);
                }
            }
            padded_buf = Some(v);
        }
        let xp: &[f32] = padded_buf.as_deref().unwrap_or(x);
        let psz = hp * wp;
        let mut boff = Vec::with_capacity(kdim);
        for ci in 0..cg {
            for kh in 0..g.k[1] {
                for kw in 0..g.k[2] {
                    boff.push(ci * psz + kh * g.d[1] * wp + kw * g.d[2]);
                }
            }
        }
        let oh_n = g.out[1];
        let rows_per_blk = (GRID_COLS / wp).clamp(1, oh_n);
        let nblk = oh_n.div_ceil(rows_per_blk);
        let in_place = wp == ow_n;
        let task = |t: usize| {
            let (img, rest) = (t / (group * nblk), t % (group * nblk));
            let (gi, bi) = (rest / nblk, rest % nblk);
            let r0 = bi * rows_per_blk;
            let r1 = (r0 + rows_per_blk).min(oh_n);
            let ncols = (r1 - r0 - 1) * wp + ow_n;
            let base = &xp[(img * c + gi * cg) * psz + r0 * wp..(img * c + (gi + 1) * cg) * psz];
            let bias = Some(&bias_all[gi * mg..(gi + 1) * mg]);
            if in_place {
                let c_off = (img * m + gi * mg) * osz + r0 * ow_n;
                assert!(c_off + (mg - 1) * osz + ncols <= ylen);
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    // SAFETY: the mg x ncols block at c_off (stride osz) is inside y and owned
                    // by this task; it is fully written (bias + product).
                    unsafe { gemm_rows(&packed[gi], base, &boff, bias, ncols, out.at(c_off), osz, &mut s.1) };
                });
                return;
            }
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let (tmp, buf) = &mut *s;
                if tmp.len() < mg * ncols {
                    tmp.resize(mg * ncols, 0.0);
                }
                let tmp = &mut tmp[..mg * ncols];
                // SAFETY: tmp is an exclusively borrowed mg x ncols buffer (fully written).
                unsafe { gemm_rows(&packed[gi], base, &boff, bias, ncols, tmp.as_mut_ptr(), ncols, buf) };
                for mi in 0..mg {
                    for oh in r0..r1 {
                        let src = &tmp[mi * ncols + (oh - r0) * wp..][..ow_n];
                        seg(img, gi * mg + mi, oh * ow_n, ow_n).copy_from_slice(src);
                    }
                }
            });
        };
        let ntasks = n * group * nblk;
        if par {
            (0..ntasks).into_par_iter().for_each(task);
        } else {
            (0..ntasks).for_each(task);
        }
        drop(boff);
        if let Some(v) = padded_buf.take() {
            pool::give(v);
        }
        return Ok((out_shape, y));
    }

    // Strided or 3-D convs: explicit im2col per block of output rows.
    let rows_total = g.out[0] * g.out[1];
    let rows_per_blk = (PANEL_FLOATS / (kdim * ow_n).max(1)).clamp(1, rows_total);
    let nblk = rows_total.div_ceil(rows_per_blk);
    let task = |t: usize| {
        let (img, rest) = (t / (group * nblk), t % (group * nblk));
        let (gi, bi) = (rest / nblk, rest % nblk);
        let r0 = bi * rows_per_blk;
        let r1 = (r0 + rows_per_blk).min(rows_total);
        let (c0, ncols) = (r0 * ow_n, (r1 - r0) * ow_n);
        let xg = &x[(img * c + gi * cg) * isz..][..cg * isz];
        let c_off = (img * m + gi * mg) * osz + c0;
        assert!(c_off + (mg - 1) * osz + ncols <= ylen);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (col, buf) = &mut *s;
            if col.len() < kdim * ncols {
                col.resize(kdim * ncols, 0.0);
            }
            let colv = &mut col[..kdim * ncols];
            im2col(xg, &g, cg, r0, r1, colv);
            let boff: Vec<usize> = (0..kdim).map(|p| p * ncols).collect();
            // SAFETY: the mg x ncols block at c_off (row stride osz) is inside y and owned by
            // this task only.
            // The block is fully written (bias + product).
            let bias = Some(&bias_all[gi * mg..(gi + 1) * mg]);
            unsafe { gemm_rows(&packed[gi], colv, &boff, bias, ncols, out.at(c_off), osz, buf) };
        });
    };
    let ntasks = n * group * nblk;
    if par {
        (0..ntasks).into_par_iter().for_each(task);
    } else {
        (0..ntasks).for_each(task);
    }
    Ok((out_shape, y))
}

impl Kernel for ConvKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let (w, packed) = match &self.weight {
            Some((w, p)) => (w, Some(p.as_slice())),
            None => (input(inputs, 1)?, None),
        };
        let b = opt_input(inputs, 2).map(|t| t.as_f32()).transpose()?;
        let (shape, y) =
            conv_forward(x.as_f32()?, x.shape(), w.as_f32()?, w.shape(), packed, b, self.group, &self.attrs)?;
        Ok(vec![Tensor::from_vec(shape, y)])
    }
}

// ---------------------------------------------------------------------------------------
// ConvTranspose

struct ConvTransposeKernel {
    attrs: SpatialAttrs,
    group: usize,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
}

pub(crate) fn build_conv_transpose(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 3)?;
    let a = cx.attrs();
    let group = a.int("group", 1)?;
    if group < 1 {
        return Err(Error::user(format!("group = {group} must be positive")));
    }
    let nonneg = |name: &str| -> Result<Option<Vec<usize>>> {
        match a.ints(name)? {
            None => Ok(None),
            Some(v) if v.iter().all(|&x| x >= 0) => Ok(Some(v.iter().map(|&x| x as usize).collect())),
            Some(v) => Err(Error::user(format!("attribute '{name}' = {v:?} must be non-negative"))),
        }
    };
    Ok(Box::new(ConvTransposeKernel {
        attrs: SpatialAttrs::parse(&a)?,
        group: group as usize,
        output_padding: nonneg("output_padding")?,
        output_shape: nonneg("output_shape")?,
    }))
}

impl Kernel for ConvTransposeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let w = input(inputs, 1)?;
        let (xs, ws) = (x.shape(), w.shape());
        let r = xs.len();
        if !(3..=5).contains(&r) || ws.len() != r {
            return Err(Error::user(format!("ConvTranspose input {xs:?} and weight {ws:?} must have rank 3 to 5")));
        }
        let sp = r - 2;
        let group = self.group;
        let (n, c) = (xs[0], xs[1]);
        if ws[0] != c || c % group != 0 {
            return Err(Error::user(format!("ConvTranspose weight {ws:?} does not match {c} input channels, group {group}")));
        }
        let (cg, mg) = (c / group, ws[1]);
        let m = mg * group;
        let list = |v: &Option<Vec<usize>>, def: usize, name: &str| -> Result<Vec<usize>> {
            match v {
                None => Ok(vec![def; sp]),
                Some(v) if v.len() == sp => Ok(v.clone()),
                Some(v) => Err(Error::user(format!("attribute '{name}' = {v:?} does not have {sp} entries"))),
            }
        };
        let s = list(&self.attrs.strides, 1, "strides")?;
        let d = list(&self.attrs.dilations, 1, "dilations")?;
        let op = list(&self.output_padding, 0, "output_padding")?;
        let k = &ws[2..];
        if let Some(ks) = &self.attrs.kernel_shape {
            if ks.as_slice() != k {
                return Err(Error::user(format!("kernel_shape {ks:?} does not match weight {ws:?}")));
            }
        }
        let mut geo = Geom { inp: [1; 3], k: [1; 3], s: [1; 3], d: [1; 3], pb: [0; 3], pe: [0; 3], out: [1; 3] };
        // Signed leading pads: an output_shape larger than the full output pads with
        // negative amounts (as onnxruntime does: the head gets total / 2, truncated).
        let mut pbs = [0isize; 3];
        let o = 3 - sp;
        for i in 0..sp {
            let ek = (k[i] - 1) * d[i] + 1;
            let full = (s[i] * (xs[2 + i] - 1) + op[i] + ek) as isize; // output size with no padding
            let split = |total: isize| -> isize { self.attrs.auto_pad.split(total as i64).0 as isize };
            let (pb, out) = if let Some(os) = &self.output_shape {
                if os.len() < sp {
                    return Err(Error::user(format!("output_shape {os:?} has fewer than {sp} entries")));
                }
                let target = os[os.len() - sp + i] as isize;
                (split(full - target), target)
            } else {
                match self.attrs.auto_pad {
                    AutoPad::SameUpper | AutoPad::SameLower => {
                        let target = (xs[2 + i] * s[i]) as isize;
                        (split(full - target), target)
                    }
                    AutoPad::Valid => (0, full),
                    AutoPad::NotSet => {
                        let pads = self.attrs.pads.clone().unwrap_or(vec![0; 2 * sp]);
                        if pads.len() != 2 * sp {
                            return Err(Error::user(format!("attribute 'pads' = {pads:?} does not have {} entries", 2 * sp)));
                        }
                        (pads[i] as isize, full - (pads[i] + pads[i + sp]) as isize)
                    }
                }
            };
            if out < 0 {
                return Err(Error::user(format!("ConvTranspose output size {out} on spatial axis {i} is negative")));
            }
            geo.inp[o + i] = xs[2 + i];
            geo.k[o + i] = k[i];
            geo.s[o + i] = s[i];
            geo.d[o + i] = d[i];
            pbs[o + i] = pb;
            geo.out[o + i] = out as usize;
        }
        let b = opt_input(inputs, 2).map(|t| t.as_f32()).transpose()?;
        if let Some(b) = b {
            if b.len() != m {
                return Err(Error::user(format!("ConvTranspose bias has {} elements, expected {m}", b.len())));
            }
        }
        let (xv, wv) = (x.as_f32()?, w.as_f32()?);
        let (isz, osz, kvol) = (geo.in_size(), geo.out_size(), geo.k_size());
        let mut out_shape = vec![n, m];
        out_shape.extend_from_slice(&geo.out[o..]);
        let mut y = vec![0f32; n * m * osz];
        let rows = mg * kvol;
        let mut col = vec![0f32; rows * isz];
        for img in 0..n {
            for gi in 0..group {
                let xg = &xv[(img * c + gi * cg) * isz..][..cg * isz];
                let wg = &wv[gi * cg * rows..][..cg * rows];
                // col[rows, isz] = Wg^T [rows x cg] * Xg [cg x isz]
                sgemm(rows, cg, isz, 1.0, Mat::rows_t(wg, rows), Mat::rows(xg, isz), 0.0, &mut col, isz);
                let yg = &mut y[(img * m + gi * mg) * osz..][..mg * osz];
                col2im(&col, &geo, &pbs, mg, yg);
            }
        }
        if let Some(b) = b {
            for (i, plane) in y.chunks_mut(osz.max(1)).enumerate() {
                let bv = b[i % m];
                plane.iter_mut().for_each(|v| *v += bv);
            }
        }
        debug_assert_eq!(numel(&out_shape), y.len());
        Ok(vec![Tensor::from_vec(out_shape, y)])
    }
}

/// Scatters `col` ([mg * kvol, in_size]) into `y` ([mg, out_size]) for a transposed conv.
fn col2im(col: &[f32], g: &Geom, pb: &[isize; 3], mg: usize, y: &mut [f32]) {
    let isz = g.in_size();
    let osz = g.out_size();
    let [id_n, ih_n, iw_n] = g.inp;
    let [od_n, oh_n, ow_n] = g.out;
    let mut row = 0;
    for m in 0..mg {
        let yp = &mut y[m * osz..][..osz];
        for kd in 0..g.k[0] {
            for kh in 0..g.k[1] {
                for kw in 0..g.k[2] {
                    let src = &col[row * isz..][..isz];
                    row += 1;
                    for id in 0..id_n {
                        let od = (id * g.s[0] + kd * g.d[0]) as isize - pb[0];
                        if od < 0 || od >= od_n as isize {
                            continue;
                        }
                        for ih in 0..ih_n {
                            let oh = (ih * g.s[1] + kh * g.d[1]) as isize - pb[1];
                            if oh < 0 || oh >= oh_n as isize {
                                continue;
                            }
                            let srow = &src[(id * ih_n + ih) * iw_n..][..iw_n];
                            let ybase = (od as usize * oh_n + oh as usize) * ow_n;
                            for (iw, &v) in srow.iter().enumerate() {
                                let ow = (iw * g.s[2] + kw * g.d[2]) as isize - pb[2];
                                if ow >= 0 && (ow as usize) < ow_n {
                                    yp[ybase + ow as usize] += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(strides: &[usize], pads: &[usize], dil: &[usize], auto_pad: AutoPad) -> SpatialAttrs {
        SpatialAttrs {
            kernel_shape: None,
            strides: Some(strides.to_vec()),
            dilations: Some(dil.to_vec()),
            pads: Some(pads.to_vec()),
            auto_pad,
        }
    }

    /// Straightforward 2-D reference conv.
    #[allow(clippy::too_many_arguments)]
    fn naive(x: &[f32], xs: &[usize], w: &[f32], ws: &[usize], b: &[f32], group: usize, g: &Geom) -> Vec<f32> {
        let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
        let (m, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        let mg = m / group;
        let (oh, ow) = (g.out[1], g.out[2]);
        let mut y = vec![0f32; n * m * oh * ow];
        for img in 0..n {
            for mo in 0..m {
                let gi = mo / mg;
                for i in 0..oh {
                    for j in 0..ow {
                        let mut acc = b[mo];
                        for ci in 0..cg {
                            let cin = gi * cg + ci;
                            for a in 0..kh {
                                for bb in 0..kw {
                                    let ih = (i * g.s[1] + a * g.d[1]) as isize - g.pb[1] as isize;
                                    let iw = (j * g.s[2] + bb * g.d[2]) as isize - g.pb[2] as isize;
                                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wd {
                                        acc += x[((img * c + cin) * h + ih as usize) * wd + iw as usize]
                                            * w[((mo * cg + ci) * kh + a) * kw + bb];
                                    }
                                }
                            }
                        }
                        y[((img * m + mo) * oh + i) * ow + j] = acc;
                    }
                }
            }
        }
        y
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s >> 8) as f32 / (1u32 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn hand_computed_3x3() {
        // 1x1x3x3 input 1..9, 2x2 kernel of ones, no pad: sums of 2x2 windows.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = vec![1f32; 4];
        let a = attrs(&[1, 1], &[0, 0, 0, 0], &[1, 1], AutoPad::NotSet);
        let (s, y) = conv_forward(&x, &[1, 1, 3, 3], &w, &[1, 1, 2, 2], None, Some(&[0.5]), 1, &a).unwrap();
        assert_eq!(s, vec![1, 1, 2, 2]);
        assert_eq!(y, vec![12.5, 16.5, 24.5, 28.5]);
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn matches_naive_on_edge_cases() {
        let cases: Vec<(Vec<usize>, Vec<usize>, usize, Vec<usize>, Vec<usize>, Vec<usize>, AutoPad)> = vec![
            // xs, ws, group, strides, pads, dilations, auto_pad
            (vec![2, 4, 7, 6], vec![6, 4, 3, 3], 1, vec![1, 1], vec![1, 1, 1, 1], vec![1, 1], AutoPad::NotSet),
            (vec![1, 4, 9, 8], vec![4, 2, 3, 2], 2, vec![2, 3], vec![0, 1, 2, 0], vec![1, 1], AutoPad::NotSet),
            (vec![1, 3, 10, 10], vec![5, 3, 3, 3], 1, vec![1, 2], vec![0; 4], vec![2, 2], AutoPad::NotSet),
            (vec![1, 6, 8, 8], vec![6, 1, 3, 3], 6, vec![2, 2], vec![1, 1, 1, 1], vec![1, 1], AutoPad::NotSet),
            (vec![1, 6, 8, 8], vec![6, 1, 3, 3], 6, vec![1, 1], vec![1, 1, 1, 1], vec![1, 1], AutoPad::NotSet),
            (vec![1, 4, 5, 7], vec![8, 4, 1, 1], 1, vec![1, 1], vec![0; 4], vec![1, 1], AutoPad::NotSet),
            (vec![1, 2, 7, 7], vec![3, 2, 4, 4], 1, vec![2, 2], vec![0; 4], vec![1, 1], AutoPad::SameUpper),
            (vec![1, 2, 7, 7], vec![3, 2, 4, 4], 1, vec![2, 2], vec![0; 4], vec![1, 1], AutoPad::SameLower),
            (vec![1, 2, 7, 7], vec![3, 2, 3, 3], 1, vec![2, 2], vec![0; 4], vec![1, 1], AutoPad::Valid),
            (vec![2, 3, 10, 9], vec![13, 3, 3, 3], 1, vec![1, 1], vec![1, 2, 0, 1], vec![2, 1], AutoPad::NotSet),
            (vec![1, 4, 6, 40], vec![8, 2, 3, 3], 2, vec![1, 1], vec![1, 1, 1, 1], vec![1, 1], AutoPad::NotSet),
            (vec![1, 4, 5, 7], vec![7, 4, 2, 2], 1, vec![1, 1], vec![0; 4], vec![1, 1], AutoPad::NotSet),
            (vec![1, 8, 20, 30], vec![40, 8, 1, 1], 1, vec![1, 1], vec![0; 4], vec![1, 1], AutoPad::NotSet),
            (vec![2, 3, 11, 10], vec![3, 1, 3, 3], 3, vec![2, 3], vec![1, 0, 2, 1], vec![1, 2], AutoPad::NotSet),
            (vec![1, 2, 9, 9], vec![2, 1, 5, 5], 2, vec![1, 1], vec![2, 2, 2, 2], vec![1, 1], AutoPad::NotSet),
            (vec![2, 3, 5, 75], vec![3, 1, 3, 3], 3, vec![1, 1], vec![1, 1, 1, 1], vec![1, 1], AutoPad::NotSet),
            (vec![1, 3, 6, 150], vec![3, 1, 3, 3], 3, vec![2, 2], vec![1, 0, 1, 1], vec![1, 1], AutoPad::NotSet),
            (vec![1, 2, 6, 90], vec![2, 1, 3, 5], 2, vec![1, 3], vec![0, 2, 1, 0], vec![2, 2], AutoPad::NotSet),
        ];
        for (xs, ws, group, st, pads, dil, ap) in cases {
            let x = pseudo(numel(&xs), 1);
            let w = pseudo(numel(&ws), 2);
            let b = pseudo(ws[0], 3);
            let a = attrs(&st, &pads, &dil, ap);
            let (s, y) = conv_forward(&x, &xs, &w, &ws, None, Some(&b), group, &a).unwrap();
            let g = a.geometry(&xs[2..], &ws[2..], false).unwrap();
            let yr = naive(&x, &xs, &w, &ws, &b, group, &g);
            assert_eq!(numel(&s), yr.len());
            for (p, q) in y.iter().zip(&yr) {
                assert!((p - q).abs() < 1e-5, "{xs:?} {ws:?}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn same_padding_split() {
        let a = attrs(&[2], &[0, 0], &[1], AutoPad::SameUpper);
        let g = a.geometry(&[7], &[4], false).unwrap();
        // out = 4, total pad = 3*2+4-7 = 3 -> begin 1, end 2
        assert_eq!((g.out[2], g.pb[2], g.pe[2]), (4, 1, 2));
        let a = attrs(&[2], &[0, 0], &[1], AutoPad::SameLower);
        let g = a.geometry(&[7], &[4], false).unwrap();
        assert_eq!((g.out[2], g.pb[2], g.pe[2]), (4, 2, 1));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = attrs(&[1, 1], &[0; 4], &[1, 1], AutoPad::NotSet);
        assert!(conv_forward(&[0.0; 9], &[1, 1, 3, 3], &[0.0; 16], &[1, 1, 4, 4], None, None, 1, &a).is_err());
        assert!(conv_forward(&[0.0; 18], &[1, 2, 3, 3], &[0.0; 4], &[1, 1, 2, 2], None, None, 1, &a).is_err());
    }
}
