//! BatchNormalization (inference), Softmax/LogSoftmax, QuantizeLinear/DequantizeLinear,
//! ReduceMean/Sum/Max/Min.

use std::mem::MaybeUninit;
use crate::error::{Error, Result};

use super::super::tensor::{numel, DType, Tensor};
use super::elementwise::map_slice;
use super::shape::strides;
use super::{input, norm_axis, opt_input, take, Kernel, NodeCtx};

// ---------------------------------------------------------------------------------------

struct BatchNormKernel {
    eps: f32,
    /// Per-channel (a, b) with y = x * a + b, when all four parameters are constants.
    folded: Option<(Vec<f32>, Vec<f32>)>,
}

fn bn_coeffs(scale: &Tensor, bias: &Tensor, mean: &Tensor, var: &Tensor, eps: f32) -> Result<(Vec<f32>, Vec<f32>)> {
    let (s, b, m, v) = (scale.as_f32()?, bias.as_f32()?, mean.as_f32()?, var.as_f32()?);
    let c = s.len();
    if b.len() != c || m.len() != c || v.len() != c {
        return Err(Error::user(format!(
            "BatchNormalization parameters differ in length: scale {}, B {}, mean {}, var {}",
            c,
            b.len(),
            m.len(),
            v.len()
        )));
    }
    let a: Vec<f32> = (0..c).map(|i| s[i] / (v[i] + eps).sqrt()).collect();
    let bb: Vec<f32> = (0..c).map(|i| b[i] - m[i] * a[i]).collect();
    Ok((a, bb))
}

pub(crate) fn build_batchnorm(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(5, 5)?;
    let a = cx.attrs();
    if a.int("training_mode", 0)? != 0 {
        return Err(Error::user("BatchNormalization in training mode is not supported"));
    }
    if cx.opset < 9 && a.int("spatial", 1)? == 0 {
        return Err(Error::user("BatchNormalization with spatial = 0 is not supported"));
    }
    if cx.node.outputs.iter().skip(1).any(|o| o.is_some()) {
        return Err(Error::user("BatchNormalization's training outputs (mean, var, ...) are not supported"));
    }
    let eps = a.float("epsilon", 1e-5)?;
    let folded = match (cx.const_input(1), cx.const_input(2), cx.const_input(3), cx.const_input(4)) {
        (Some(s), Some(b), Some(m), Some(v)) => Some(bn_coeffs(s, b, m, v, eps)?),
        _ => None,
    };
    Ok(Box::new(BatchNormKernel { eps, folded }))
}

impl Kernel for BatchNormKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let computed;
        let (a, b) = match &self.folded {
            Some((a, b)) => (a, b),
            None => {
                computed = bn_coeffs(
                    input(inputs, 1)?,
                    input(inputs, 2)?,
                    input(inputs, 3)?,
                    input(inputs, 4)?,
                    self.eps,
                )?;
                (&computed.0, &computed.1)
            }
        };
        let mut x = take(inputs, 0)?;
        let xs = x.shape().to_vec();
        if xs.len() < 2 || xs[1] != a.len() {
            return Err(Error::user(format!(
                "BatchNormalization input {xs:?} does not have {} channels on axis 1",
                a.len()
            )));
        }
        let c = xs[1];
        let plane: usize = xs[2..].iter().product();
        let apply = |dst: &mut [f32], src: &[f32]| {
            for (i, (d, s)) in dst.chunks_mut(plane.max(1)).zip(src.chunks(plane.max(1))).enumerate() {
                let (ai, bi) = (a[i % c], b[i % c]);
                for (o, &v) in d.iter_mut().zip(s) {
                    *o = v * ai + bi;
                }
            }
        };
        if plane == 0 {
            return Ok(vec![x]);
        }
        if let Some(buf) = x.unique_mut::<f32>() {
            for (i, d) in buf.chunks_mut(plane).enumerate() {
                let (ai, bi) = (a[i % c], b[i % c]);
                map_slice(d, &|v| v * ai + bi);
            }
            return Ok(vec![x]);
        }
        let src = x.as_f32()?;
        let mut out = vec![0f32; src.len()];
        apply(&mut out, src);
        Ok(vec![Tensor::from_vec(xs, out)])
    }
}

// ---------------------------------------------------------------------------------------

struct SoftmaxKernel {
    axis: i64,
    log: bool,
    /// Opset < 13: coerce to 2-D at `axis` and normalize over the whole trailing block.
    legacy: bool,
}

pub(crate) fn build_softmax(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let legacy = cx.opset < 13;
    let axis = cx.attrs().int("axis", if legacy { 1 } else { -1 })?;
    Ok(Box::new(SoftmaxKernel { axis, log: cx.node.op_type == "LogSoftmax", legacy }))
}

impl Kernel for SoftmaxKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = take(inputs, 0)?;
        let xs = x.shape().to_vec();
        if xs.is_empty() {
            return Err(Error::user("Softmax input must have rank >= 1"));
        }
        let ax = norm_axis(self.axis, xs.len())?;
        let (len, inner) = if self.legacy { (numel(&xs[ax..]), 1) } else { (xs[ax], numel(&xs[ax + 1..])) };
        let mut v = x.into_vec::<f32>()?;
        if len > 0 && inner > 0 {
            for blk in v.chunks_mut(len * inner) {
                for j in 0..inner {
                    let mut mx = f32::NEG_INFINITY;
                    for i in 0..len {
                        mx = mx.max(blk[i * inner + j]);
                    }
                    let mut sum = 0f32;
                    for i in 0..len {
                        let e = (blk[i * inner + j] - mx).exp();
                        sum += e;
                        if !self.log {
                            blk[i * inner + j] = e;
                        }
                    }
                    if self.log {
                        let ls = sum.ln();
                        for i in 0..len {
                            blk[i * inner + j] = blk[i * inner + j] - mx - ls;
                        }
                    } else {
                        for i in 0..len {
                            blk[i * inner + j] /= sum;
                        }
                    }
                }
            }
        }
        Ok(vec![Tensor::from_vec(xs, v)])
    }
}

// ---------------------------------------------------------------------------------------
// Quantization

/// Per-tensor or per-axis parameter layout: returns (outer, channels, inner) such that the
/// parameter index of flat element `i` is `(i / inner) % channels`.
fn qparam_layout(xs: &[usize], scale: &Tensor, axis: i64) -> Result<(usize, usize)> {
    let n = scale.len();
    if scale.rank() == 0 || (n == 1 && scale.rank() == 1) {
        return Ok((1, numel(xs).max(1)));
    }
    if scale.rank() != 1 {
        return Err(Error::user(format!(
            "quantization scale of shape {:?} is not supported (scalar or 1-D per-axis; blocked quantization is not)",
            scale.shape()
        )));
    }
    let ax = norm_axis(axis, xs.len())?;
    if xs[ax] != n {
        return Err(Error::user(format!(
            "per-axis scale has {n} elements but axis {ax} of input {xs:?} has {}",
            xs[ax]
        )));
    }
    Ok((n, numel(&xs[ax + 1..]).max(1)))
}

struct QuantizeKernel {
    axis: i64,
    out: DType,
}

pub(crate) fn build_quantize(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 3)?;
    let a = cx.attrs();
    if a.int("block_size", 0)? != 0 {
        return Err(Error::user("blocked quantization (block_size != 0) is not supported"));
    }
    let mut out = DType::U8;
    if a.has("output_dtype") && a.int("output_dtype", 0)? != 0 {
        out = DType::from_onnx(a.int("output_dtype", 0)? as i32)?;
    }
    if let Some(zp) = cx.const_input(2) {
        out = zp.dtype();
    }
    if !matches!(out, DType::U8 | DType::I8) {
        return Err(Error::user(format!("QuantizeLinear to {out} is not supported (int8 and uint8 are)")));
    }
    Ok(Box::new(QuantizeKernel { axis: a.int("axis", 1)?, out }))
}

#[inline(always)]
fn zip_map_impl<A: Copy, B: Copy, F: Fn(A) -> B>(xs: &[A], ys: &mut [MaybeUninit<B>], f: &F) {
    for (o, &v) in ys.iter_mut().zip(xs) {
        o.write(f(v));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn zip_map_avx2<A: Copy, B: Copy, F: Fn(A) -> B>(xs: &[A], ys: &mut [MaybeUninit<B>], f: &F) {
    zip_map_impl(xs, ys, f)
}

/// `ys[i] = f(xs[i])`, compiled for AVX2 when the CPU has it (the same arithmetic either way:
/// IEEE division and rounding, no FMA contraction in `f`). `ys` may be uninitialized (the
/// spare capacity of the output vector: no zero-fill before the write).
fn zip_map<A: Copy, B: Copy, F: Fn(A) -> B>(xs: &[A], ys: &mut [MaybeUninit<B>], f: &F) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::super::gemm::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { zip_map_avx2(xs, ys, f) };
        }
    }
    zip_map_impl(xs, ys, f)
}

#[inline(always)]
fn zip3_map_impl<A: Copy, P: Copy, Q: Copy, B: Copy, F: Fn(A, P, Q) -> B>(xs: &[A], ps: &[P], qs: &[Q], ys: &mut [MaybeUninit<B>], f: &F) {
    for (((o, &v), &p), &q) in ys.iter_mut().zip(xs).zip(ps).zip(qs) {
        o.write(f(v, p, q));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn zip3_map_avx2<A: Copy, P: Copy, Q: Copy, B: Copy, F: Fn(A, P, Q) -> B>(xs: &[A], ps: &[P], qs: &[Q], ys: &mut [MaybeUninit<B>], f: &F) {
    zip3_map_impl(xs, ps, qs, ys, f)
}

/// `ys[i] = f(xs[i], ps[i], qs[i])` (a row of per-channel parameters along the last axis),
/// compiled for AVX2 when the CPU has it, like [`zip_map`]. Panics unless `ps` and `qs`
/// are at least as long as `xs` and `ys`.
fn zip3_map<A: Copy, P: Copy, Q: Copy, B: Copy, F: Fn(A, P, Q) -> B>(xs: &[A], ps: &[P], qs: &[Q], ys: &mut [MaybeUninit<B>], f: &F) {
    assert!(ps.len() >= xs.len() && qs.len() >= xs.len() && ys.len() == xs.len(), "zip3_map lengths");
    #[cfg(target_arch = "x86_64")]
    {
        if super::super::gemm::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { zip3_map_avx2(xs, ps, qs, ys, f) };
        }
    }
    zip3_map_impl(xs, ps, qs, ys, f)
}

/// `f(block index, block of xs)` written into a new vector of `xs.len()` elements, block by
/// block (`block` elements each, the last one possibly shorter).
fn map_blocks<A: Copy, B: Copy>(xs: &[A], block: usize, f: impl Fn(usize, &[A], &mut [MaybeUninit<B>])) -> Vec<B> {
    let n = xs.len();
    let mut y: Vec<B> = Vec::with_capacity(n);
    for (b, (xs_, ys_)) in xs.chunks(block.max(1)).zip(y.spare_capacity_mut()[..n].chunks_mut(block.max(1))).enumerate() {
        f(b, xs_, ys_);
    }
    // SAFETY: the blocks cover 0..n and `f` writes each of its elements (every caller passes
    // its block to zip_map, which writes one output per input).
    unsafe { y.set_len(n) };
    y
}

/// `saturate(round_half_even(x / scale) + zero_point)` into int8 or uint8.
pub(crate) fn quantize(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64, out: DType) -> Result<Tensor> {
    let xs = x.shape();
    let xv = x.as_f32()?;
    let sv = scale.as_f32()?;
    let (ch, inner) = qparam_layout(xs, scale, axis)?;
    let zpv: Vec<f32> = match zp {
        Some(z) => {
            if z.len() != sv.len() {
                return Err(Error::user(format!("zero point has {} elements, scale {}", z.len(), sv.len())));
            }
            if z.dtype() != out {
                return Err(Error::user(format!("zero point type {} differs from output type {out}", z.dtype())));
            }
            z.to_f64_vec().into_iter().map(|v| v as f32).collect()
        }
        None => vec![0.0; sv.len()],
    };
    let (lo, hi) = if out == DType::I8 { (-128f32, 127f32) } else { (0f32, 255f32) };
    // Round half to even without a libm call: for |t| <= 2^22, (t + 1.5*2^23) - 1.5*2^23 is
    // t rounded to an integer in the default rounding mode (ties to even); larger |t|
    // saturate anyway. Written per channel block so that the loop vectorizes.
    const MAGIC: f32 = 12_582_912.0;
    const LIM: f32 = 4_194_304.0;
    // The result is an integer in [lo, hi], or NaN for a NaN input, which becomes 0 (what a
    // saturating `as i32` gives): the conversions below are then exact and vectorize (a
    // saturating `as` cast compiled to one scalar conversion per element).
    let q = |v: f32, s: f32, z: f32| -> f32 {
        let t = (v / s).clamp(-LIM, LIM);
        let r = ((t + MAGIC) - MAGIC + z).clamp(lo, hi);
        if r.is_nan() { 0.0 } else { r }
    };
    let block = if ch == 1 { xv.len().max(1) } else { inner };
    let chan = |b: usize| if ch == 1 { 0 } else { b % ch };
    if ch > 1 && inner == 1 {
        // channels along the last axis (a MatMul weight's output columns): row by row, each
        // element with its own channel's parameters (one block per element is slow)
        return Ok(match out {
            DType::I8 => Tensor::from_vec(
                xs.to_vec(),
                // SAFETY: q gives an integer in [-128, 127] (or 0).
                map_blocks(xv, ch, |_, xs_, ys_| zip3_map(xs_, sv, &zpv, ys_, &|v, s_, z_| unsafe { q(v, s_, z_).to_int_unchecked::<i32>() } as i8)),
            ),
            _ => Tensor::from_vec(
                xs.to_vec(),
                // SAFETY: q gives an integer in [0, 255] (or 0).
                map_blocks(xv, ch, |_, xs_, ys_| zip3_map(xs_, sv, &zpv, ys_, &|v, s_, z_| unsafe { q(v, s_, z_).to_int_unchecked::<i32>() } as u8)),
            ),
        });
    }
    // zipped slices (not `extend(map)`) so that the loops vectorize
    Ok(match out {
        DType::I8 => {
            let y = map_blocks(xv, block, |b, xs_, ys_| {
                let (s_, z_) = (sv[chan(b)], zpv[chan(b)]);
                // SAFETY: q gives an integer in [-128, 127] (or 0).
                zip_map(xs_, ys_, &|v| unsafe { q(v, s_, z_).to_int_unchecked::<i32>() } as i8);
            });
            Tensor::from_vec(xs.to_vec(), y)
        }
        _ => {
            let y = map_blocks(xv, block, |b, xs_, ys_| {
                let (s_, z_) = (sv[chan(b)], zpv[chan(b)]);
                // SAFETY: q gives an integer in [0, 255] (or 0).
                zip_map(xs_, ys_, &|v| unsafe { q(v, s_, z_).to_int_unchecked::<i32>() } as u8);
            });
            Tensor::from_vec(xs.to_vec(), y)
        }
    })
}

impl Kernel for QuantizeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let zp = opt_input(inputs, 2);
        let out = zp.map_or(self.out, |z| z.dtype());
        Ok(vec![quantize(input(inputs, 0)?, input(inputs, 1)?, zp, self.axis, out)?])
    }
}

struct DequantizeKernel {
    axis: i64,
}

pub(crate) fn build_dequantize(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 3)?;
    let a = cx.attrs();
    if a.int("block_size", 0)? != 0 {
        return Err(Error::user("blocked quantization (block_size != 0) is not supported"));
    }
    Ok(Box::new(DequantizeKernel { axis: a.int("axis", 1)? }))
}

/// `(x - zero_point) * scale` for int8, uint8 or int32 `x`.
pub(crate) fn dequantize(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64) -> Result<Tensor> {
    if !matches!(x.dtype(), DType::I8 | DType::U8 | DType::I32) {
        return Err(Error::user(format!("DequantizeLinear input must be int8, uint8 or int32, got {}", x.dtype())));
    }
    let xs = x.shape();
    let sv = scale.as_f32()?;
    let (ch, inner) = qparam_layout(xs, scale, axis)?;
    let zpv: Vec<i64> = match zp {
        Some(z) => {
            if z.dtype() != x.dtype() {
                return Err(Error::user(format!("zero point type {} differs from input type {}", z.dtype(), x.dtype())));
            }
            if z.len() != sv.len() {
                return Err(Error::user(format!("zero point has {} elements, scale {}", z.len(), sv.len())));
            }
            z.to_i64_vec()?
        }
        None => vec![0; sv.len()],
    };
    let block = if ch == 1 { x.len().max(1) } else { inner };
    let chan = |b: usize| if ch == 1 { 0 } else { b % ch };
    if ch > 1 && inner == 1 && matches!(x.dtype(), DType::I8 | DType::U8) {
        // channels along the last axis: row by row (see `quantize`)
        let zi: Vec<i32> = zpv.iter().map(|&z| z as i32).collect();
        let y = match x.dtype() {
            DType::I8 => map_blocks(x.as_slice::<i8>()?, ch, |_, xs_, ys_| zip3_map(xs_, sv, &zi, ys_, &|v, s_, z_| (v as i32 - z_) as f32 * s_)),
            _ => map_blocks(x.as_slice::<u8>()?, ch, |_, xs_, ys_| zip3_map(xs_, sv, &zi, ys_, &|v, s_, z_| (v as i32 - z_) as f32 * s_)),
        };
        return Ok(Tensor::from_vec(xs.to_vec(), y));
    }
    let mut y: Vec<f32> = Vec::with_capacity(x.len());
    // 8-bit inputs: i32 arithmetic (exact) and zipped slices, so that the loops vectorize
    match x.dtype() {
        DType::I8 => {
            y = map_blocks(x.as_slice::<i8>()?, block, |b, xs_, ys_| {
                let (s_, z_) = (sv[chan(b)], zpv[chan(b)] as i32);
                zip_map(xs_, ys_, &|v| (v as i32 - z_) as f32 * s_);
            });
        }
        DType::U8 => {
            y = map_blocks(x.as_slice::<u8>()?, block, |b, xs_, ys_| {
                let (s_, z_) = (sv[chan(b)], zpv[chan(b)] as i32);
                zip_map(xs_, ys_, &|v| (v as i32 - z_) as f32 * s_);
            });
        }
        _ => {
            let xv = x.to_i64_vec()?;
            for (b, xs_) in xv.chunks(block).enumerate() {
                let (s_, z_) = (sv[chan(b)], zpv[chan(b)]);
                y.extend(xs_.iter().map(|&v| (v - z_) as f32 * s_));
            }
        }
    }
    Ok(Tensor::from_vec(xs.to_vec(), y))
}

impl Kernel for DequantizeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![dequantize(input(inputs, 0)?, input(inputs, 1)?, opt_input(inputs, 2), self.axis)?])
    }
}

// ---------------------------------------------------------------------------------------
// Reductions

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reduce {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

struct ReduceKernel {
    kind: Reduce,
    attr_axes: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

pub(crate) fn build_reduce(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 2)?;
    let a = cx.attrs();
    let kind = match cx.node.op_type.as_str() {
        "ReduceMean" => Reduce::Mean,
        "ReduceSum" => Reduce::Sum,
        "ReduceMax" => Reduce::Max,
        "ReduceMin" => Reduce::Min,
        "ReduceProd" => Reduce::Prod,
        "ReduceL1" => Reduce::L1,
        "ReduceL2" => Reduce::L2,
        "ReduceLogSum" => Reduce::LogSum,
        "ReduceLogSumExp" => Reduce::LogSumExp,
        "ReduceSumSquare" => Reduce::SumSquare,
        other => return Err(Error::internal(format!("build_reduce called for {other}"))),
    };
    Ok(Box::new(ReduceKernel {
        kind,
        attr_axes: a.ints("axes")?,
        keepdims: a.int("keepdims", 1)? != 0,
        noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
    }))
}

/// For each input element (row-major), the offset of the output element it reduces into.
fn reduce_targets(xs: &[usize], red: &[bool]) -> Vec<usize> {
    let r = xs.len();
    let kept: Vec<usize> = (0..r).map(|d| if red[d] { 1 } else { xs[d] }).collect();
    let ost = strides(&kept);
    let mut out = Vec::with_capacity(numel(xs));
    let mut idx = vec![0usize; r];
    for _ in 0..numel(xs) {
        out.push((0..r).filter(|&d| !red[d]).map(|d| idx[d] * ost[d]).sum());
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < xs[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Float reduction in f64: `vals` are the inputs, `tgt` their output slots.
fn reduce_float(kind: Reduce, vals: impl Iterator<Item = f64> + Clone, tgt: &[usize], n_out: usize, cnt: usize) -> Vec<f64> {
    let init = match kind {
        Reduce::Max | Reduce::LogSumExp => f64::NEG_INFINITY,
        Reduce::Min => f64::INFINITY,
        Reduce::Prod => 1.0,
        _ => 0.0,
    };
    let mut acc = vec![init; n_out];
    for (v, &o) in vals.clone().zip(tgt) {
        acc[o] = match kind {
            Reduce::Mean | Reduce::Sum | Reduce::LogSum => acc[o] + v,
            Reduce::Max | Reduce::LogSumExp => {
                if v > acc[o] || v.is_nan() {
                    v
                } else {
                    acc[o]
                }
            }
            Reduce::Min => {
                if v < acc[o] || v.is_nan() {
                    v
                } else {
                    acc[o]
                }
            }
            Reduce::Prod => acc[o] * v,
            Reduce::L1 => acc[o] + v.abs(),
            Reduce::L2 | Reduce::SumSquare => acc[o] + v * v,
        };
    }
    match kind {
        Reduce::Mean => acc.iter_mut().for_each(|v| *v /= cnt as f64),
        Reduce::L2 => acc.iter_mut().for_each(|v| *v = v.sqrt()),
        Reduce::LogSum => acc.iter_mut().for_each(|v| *v = v.ln()),
        Reduce::LogSumExp => {
            // second pass: sum of exp(v - max), stable for large inputs
            let mx = acc.clone();
            let mut sum = vec![0f64; n_out];
            for (v, &o) in vals.zip(tgt) {
                if mx[o].is_finite() {
                    sum[o] += (v - mx[o]).exp();
                }
            }
            for o in 0..n_out {
                acc[o] = if mx[o].is_finite() { mx[o] + sum[o].ln() } else { mx[o] };
            }
        }
        _ => {}
    }
    acc
}

/// Integer reduction with wrapping i64 arithmetic (Mean divides, truncating); L2, LogSum
/// and LogSumExp go through f64.
fn reduce_int(kind: Reduce, vals: &[i64], tgt: &[usize], n_out: usize, cnt: usize) -> Vec<i64> {
    match kind {
        Reduce::L2 | Reduce::LogSum | Reduce::LogSumExp => {
            return reduce_float(kind, vals.iter().map(|&v| v as f64), tgt, n_out, cnt).into_iter().map(|v| v as i64).collect()
        }
        _ => {}
    }
    let init = match kind {
        Reduce::Max => i64::MIN,
        Reduce::Min => i64::MAX,
        Reduce::Prod => 1,
        _ => 0,
    };
    let mut acc = vec![init; n_out];
    for (&v, &o) in vals.iter().zip(tgt) {
        acc[o] = match kind {
            Reduce::Max => acc[o].max(v),
            Reduce::Min => acc[o].min(v),
            Reduce::Prod => acc[o].wrapping_mul(v),
            Reduce::L1 => acc[o].wrapping_add(v.wrapping_abs()),
            Reduce::SumSquare => acc[o].wrapping_add(v.wrapping_mul(v)),
            _ => acc[o].wrapping_add(v),
        };
    }
    if kind == Reduce::Mean && cnt > 0 {
        acc.iter_mut().for_each(|v| *v /= cnt as i64);
    }
    acc
}

impl Kernel for ReduceKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let axes = match (&self.attr_axes, opt_input(inputs, 1)) {
            (Some(a), _) => a.clone(),
            (None, Some(t)) => t.to_i64_vec()?,
            (None, None) => Vec::new(),
        };
        let x = take(inputs, 0)?;
        if axes.is_empty() && self.noop_with_empty_axes {
            return Ok(vec![x]);
        }
        let xs = x.shape().to_vec();
        let r = xs.len();
        let mut red = vec![axes.is_empty(); r];
        for &a in &axes {
            red[norm_axis(a, r)?] = true;
        }
        let kept: Vec<usize> = (0..r).map(|d| if red[d] { 1 } else { xs[d] }).collect();
        let n_out = numel(&kept);
        let cnt: usize = (0..r).filter(|&d| red[d]).map(|d| xs[d]).product();
        let out_shape: Vec<usize> =
            if self.keepdims { kept } else { (0..r).filter(|&d| !red[d]).map(|d| xs[d]).collect() };
        let tgt = reduce_targets(&xs, &red);
        let kind = self.kind;
        macro_rules! ints {
            ($t:ty) => {{
                let v: Vec<i64> = x.as_slice::<$t>()?.iter().map(|&v| v as i64).collect();
                let y: Vec<$t> = reduce_int(kind, &v, &tgt, n_out, cnt).into_iter().map(|v| v as $t).collect();
                Tensor::from_vec(out_shape, y)
            }};
        }
        let y = match x.dtype() {
            DType::F32 => {
                let y = reduce_float(kind, x.as_f32()?.iter().map(|&v| v as f64), &tgt, n_out, cnt);
                Tensor::from_vec(out_shape, y.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
            }
            DType::F64 => Tensor::from_vec(out_shape, reduce_float(kind, x.as_slice::<f64>()?.iter().copied(), &tgt, n_out, cnt)),
            DType::I64 => ints!(i64),
            DType::I32 => ints!(i32),
            DType::I8 => ints!(i8),
            DType::U8 => ints!(u8),
            DType::I16 => ints!(i16),
            DType::U16 => ints!(u16),
            DType::U32 => ints!(u32),
            DType::U64 => ints!(u64),
            DType::Bool if matches!(kind, Reduce::Max | Reduce::Min) => {
                // max: any, min: all (opset 20)
                let init = kind == Reduce::Min;
                let mut acc = vec![init; n_out];
                for (&v, &o) in x.as_slice::<bool>()?.iter().zip(&tgt) {
                    acc[o] = if kind == Reduce::Max { acc[o] || v } else { acc[o] && v };
                }
                Tensor::from_vec(out_shape, acc)
            }
            dt => return Err(Error::user(format!("{kind:?} reduction does not support {dt}"))),
        };
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounding_and_saturation() {
        let x = Tensor::new(vec![6], vec![0.5f32, 1.5, 2.5, -0.5, 1000.0, -1000.0]).unwrap();
        let s = Tensor::scalar(1.0f32);
        let q = quantize(&x, &s, None, 1, DType::U8).unwrap();
        assert_eq!(q.as_slice::<u8>().unwrap(), &[0, 2, 2, 0, 255, 0]);
        let zp = Tensor::scalar(-1i8);
        let q = quantize(&x, &s, Some(&zp), 1, DType::I8).unwrap();
        assert_eq!(q.as_slice::<i8>().unwrap(), &[-1, 1, 1, -1, 127, -128]);
        let d = dequantize(&q, &s, Some(&zp), 1).unwrap();
        assert_eq!(d.as_f32().unwrap(), &[0., 2., 2., 0., 128., -127.]);
    }

    #[test]
    fn per_axis() {
        let x = Tensor::new(vec![2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let s = Tensor::new(vec![2], vec![1f32, 2.]).unwrap();
        let q = quantize(&x, &s, None, 0, DType::I8).unwrap();
        assert_eq!(q.as_slice::<i8>().unwrap(), &[1, 2, 3, 2, 2, 3]);
        let s3 = Tensor::new(vec![3], vec![1f32, 2., 4.]).unwrap();
        let q = quantize(&x, &s3, None, 1, DType::I8).unwrap();
        assert_eq!(q.as_slice::<i8>().unwrap(), &[1, 1, 1, 4, 2, 2]);
        assert!(quantize(&x, &s3, None, 0, DType::I8).is_err());
    }

    #[test]
    fn batchnorm_coeffs() {
        let t = |v: f32| Tensor::new(vec![1], vec![v]).unwrap();
        let (a, b) = bn_coeffs(&t(2.0), &t(1.0), &t(3.0), &t(4.0 - 1e-5), 1e-5).unwrap();
        // y = (x - 3) / 2 * 2 + 1 = x - 2
        assert!((a[0] - 1.0).abs() < 1e-6 && (b[0] + 2.0).abs() < 1e-6);
    }
}
