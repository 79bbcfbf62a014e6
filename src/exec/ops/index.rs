//! Index and data-movement ops: TopK, ArgMax/ArgMin, CumSum, Trilu, Tile, GatherElements,
//! GatherND, ScatterND, OneHot, NonZero, DepthToSpace, SpaceToDepth. Every element type
//! flows through the pure data-movement ops; arithmetic ones (CumSum, ScatterND's
//! reductions) take the numeric types.

use std::cmp::Ordering;

use crate::error::{Error, Result};

use super::super::tensor::{numel, DType, Elem, Tensor};
use super::shape::{strides, transpose};
use super::{input, norm_axis, opt_input, Kernel, NodeCtx, Num};

/// A scalar (or one-element) integer input.
fn int_scalar(t: &Tensor, what: &str) -> Result<i64> {
    let v = t.to_i64_vec().map_err(|e| e.context(what.to_string()))?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(Error::user(format!("{what} must hold one value, got shape {:?}", t.shape()))),
    }
}

/// Resolves a possibly negative index against `dim`.
fn fix_index(i: i64, dim: usize, what: &str) -> Result<usize> {
    let d = dim as i64;
    let j = if i < 0 { i + d } else { i };
    if j < 0 || j >= d {
        return Err(Error::user(format!("{what} index {i} is out of range for a dimension of size {dim}")));
    }
    Ok(j as usize)
}

/// (outer, dim, inner) sizes around axis `ax`.
fn split3(shape: &[usize], ax: usize) -> (usize, usize, usize) {
    (numel(&shape[..ax]), shape[ax], numel(&shape[ax + 1..]))
}

/// Total order for sorting: NaN is larger than everything (numpy's sort order).
fn cmp_nan_last<T: PartialOrd>(a: &T, b: &T) -> Ordering {
    match a.partial_cmp(b) {
        Some(o) => o,
        None => {
            #[allow(clippy::eq_op)]
            let (an, bn) = (a != a, b != b);
            an.cmp(&bn)
        }
    }
}

// ---------------------------------------------------------------------------------------
// TopK

struct TopKKernel {
    axis: i64,
    largest: bool,
    /// `k` attribute (opset 1).
    attr_k: Option<i64>,
}

pub(crate) fn build_topk(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let a = cx.attrs();
    let attr_k = if cx.opset < 10 { Some(a.int("k", -1)?) } else { None };
    if attr_k.is_some() {
        cx.require_inputs(1, 1)?;
    } else {
        cx.require_inputs(2, 2)?;
    }
    Ok(Box::new(TopKKernel { axis: a.int("axis", -1)?, largest: a.int("largest", 1)? != 0, attr_k }))
}

fn topk<T: Elem + PartialOrd>(x: &Tensor, ax: usize, k: usize, largest: bool) -> Result<(Tensor, Tensor)> {
    let (outer, dim, inner) = split3(x.shape(), ax);
    let xv = x.as_slice::<T>()?;
    let mut oshape = x.shape().to_vec();
    oshape[ax] = k;
    let n = numel(&oshape);
    let Some(&fill) = xv.first() else {
        // an empty input: the output is empty too
        return Ok((Tensor::from_vec(oshape.clone(), Vec::<T>::new()), Tensor::from_vec(oshape, Vec::<i64>::new())));
    };
    let (mut vals, mut idxs) = (vec![fill; n], vec![0i64; n]);
    let mut order: Vec<usize> = Vec::with_capacity(dim);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| xv[(o * dim + j) * inner + i];
            order.clear();
            order.extend(0..dim);
            // stable sort: ties keep the lower index first
            if largest {
                order.sort_by(|&p, &q| cmp_nan_last(&at(q), &at(p)));
            } else {
                order.sort_by(|&p, &q| cmp_nan_last(&at(p), &at(q)));
            }
            for (r, &j) in order[..k].iter().enumerate() {
                let dst = (o * k + r) * inner + i;
                vals[dst] = at(j);
                idxs[dst] = j as i64;
            }
        }
    }
    Ok((Tensor::from_vec(oshape.clone(), vals), Tensor::from_vec(oshape, idxs)))
}

impl Kernel for TopKKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let k = match self.attr_k {
            Some(k) => k,
            None => int_scalar(input(inputs, 1)?, "TopK K")?,
        };
        if x.rank() == 0 {
            return Err(Error::user("TopK input must have rank >= 1"));
        }
        let ax = norm_axis(self.axis, x.rank())?;
        if k < 0 || k as usize > x.shape()[ax] {
            return Err(Error::user(format!("TopK K = {k} is out of range for axis {ax} of size {}", x.shape()[ax])));
        }
        let (v, i) = with_dtype!(x.dtype(), T, topk::<T>(x, ax, k as usize, self.largest))?;
        Ok(vec![v, i])
    }
}

// ---------------------------------------------------------------------------------------
// ArgMax / ArgMin

struct ArgKernel {
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
}

pub(crate) fn build_arg(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let a = cx.attrs();
    Ok(Box::new(ArgKernel {
        max: cx.node.op_type == "ArgMax",
        axis: a.int("axis", 0)?,
        keepdims: a.int("keepdims", 1)? != 0,
        last: a.int("select_last_index", 0)? != 0,
    }))
}

fn arg<T: Elem + PartialOrd>(x: &Tensor, ax: usize, max: bool, last: bool) -> Result<Vec<i64>> {
    let (outer, dim, inner) = split3(x.shape(), ax);
    if dim == 0 {
        return Err(Error::user(format!("cannot take ArgMax/ArgMin over an empty axis {ax}")));
    }
    let xv = x.as_slice::<T>()?;
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| xv[(o * dim + j) * inner + i];
            let mut best = 0;
            for j in 1..dim {
                let c = cmp_nan_last(&at(j), &at(best));
                let better = if max { c == Ordering::Greater } else { c == Ordering::Less };
                if better || (last && c == Ordering::Equal) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    Ok(out)
}

impl Kernel for ArgKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let ax = norm_axis(self.axis, x.rank())?;
        let v = with_dtype!(x.dtype(), T, arg::<T>(x, ax, self.max, self.last))?;
        let mut shape = x.shape().to_vec();
        if self.keepdims {
            shape[ax] = 1;
        } else {
            shape.remove(ax);
        }
        Ok(vec![Tensor::from_vec(shape, v)])
    }
}

// ---------------------------------------------------------------------------------------
// CumSum

struct CumSumKernel {
    exclusive: bool,
    reverse: bool,
}

pub(crate) fn build_cumsum(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    let a = cx.attrs();
    Ok(Box::new(CumSumKernel { exclusive: a.int("exclusive", 0)? != 0, reverse: a.int("reverse", 0)? != 0 }))
}

fn cumsum<T: Num>(x: &Tensor, ax: usize, exclusive: bool, reverse: bool) -> Result<Tensor> {
    let (outer, dim, inner) = split3(x.shape(), ax);
    let xv = x.as_slice::<T>()?;
    let mut y = vec![T::ZERO; xv.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = T::ZERO;
            for s in 0..dim {
                let j = if reverse { dim - 1 - s } else { s };
                let p = (o * dim + j) * inner + i;
                if exclusive {
                    y[p] = acc;
                    acc = acc.add(xv[p]);
                } else {
                    acc = acc.add(xv[p]);
                    y[p] = acc;
                }
            }
        }
    }
    Ok(Tensor::from_vec(x.shape().to_vec(), y))
}

impl Kernel for CumSumKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let ax = norm_axis(int_scalar(input(inputs, 1)?, "CumSum axis")?, x.rank())?;
        Ok(vec![with_num!(x.dtype(), "CumSum", T, cumsum::<T>(x, ax, self.exclusive, self.reverse))?])
    }
}

// ---------------------------------------------------------------------------------------
// Trilu

struct TriluKernel {
    upper: bool,
}

pub(crate) fn build_trilu(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 2)?;
    Ok(Box::new(TriluKernel { upper: cx.attrs().int("upper", 1)? != 0 }))
}

fn trilu<T: Elem + Default>(x: &Tensor, k: i64, upper: bool) -> Result<Tensor> {
    let r = x.rank();
    if r < 2 {
        return Err(Error::user(format!("Trilu input must have rank >= 2, got {:?}", x.shape())));
    }
    let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
    let mut y = x.as_slice::<T>()?.to_vec();
    if rows * cols > 0 {
        for m in y.chunks_mut(rows * cols) {
            for i in 0..rows {
                for j in 0..cols {
                    let d = j as i64 - i as i64;
                    let keep = if upper { d >= k } else { d <= k };
                    if !keep {
                        m[i * cols + j] = T::default();
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(x.shape().to_vec(), y))
}

impl Kernel for TriluKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let k = opt_input(inputs, 1).map(|t| int_scalar(t, "Trilu k")).transpose()?.unwrap_or(0);
        Ok(vec![with_dtype!(x.dtype(), T, trilu::<T>(x, k, self.upper))?])
    }
}

// ---------------------------------------------------------------------------------------
// Tile

struct TileKernel;

pub(crate) fn build_tile(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    Ok(Box::new(TileKernel))
}

/// Copies of `x` tiled `reps[d]` times along each axis.
pub(crate) fn tile<T: Elem>(x: &Tensor, reps: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    let out_shape: Vec<usize> = shape.iter().zip(reps).map(|(a, b)| a * b).collect();
    let src = x.as_slice::<T>()?;
    let n = numel(&out_shape);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(Tensor::from_vec(out_shape, out));
    }
    let r = shape.len();
    if r == 0 {
        out.push(src[0]);
        return Ok(Tensor::from_vec(out_shape, out));
    }
    let st = strides(shape);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let off: usize = (0..r).map(|d| (idx[d] % shape[d]) * st[d]).sum();
        out.push(src[off]);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Tensor::from_vec(out_shape, out))
}

impl Kernel for TileKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let reps = input(inputs, 1)?.to_i64_vec().map_err(|e| e.context("Tile repeats"))?;
        if reps.len() != x.rank() || reps.iter().any(|&r| r < 0) {
            return Err(Error::user(format!("Tile repeats {reps:?} do not fit an input of shape {:?}", x.shape())));
        }
        let reps: Vec<usize> = reps.iter().map(|&r| r as usize).collect();
        Ok(vec![with_dtype!(x.dtype(), T, tile::<T>(x, &reps))?])
    }
}

// ---------------------------------------------------------------------------------------
// GatherElements

struct GatherElementsKernel {
    axis: i64,
}

pub(crate) fn build_gather_elements(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    Ok(Box::new(GatherElementsKernel { axis: cx.attrs().int("axis", 0)? }))
}

fn gather_elements<T: Elem>(x: &Tensor, idx: &Tensor, ax: usize) -> Result<Tensor> {
    let (xs, is) = (x.shape(), idx.shape());
    if xs.len() != is.len() {
        return Err(Error::user(format!("GatherElements data {xs:?} and indices {is:?} differ in rank")));
    }
    let iv = idx.to_i64_vec()?;
    let src = x.as_slice::<T>()?;
    let xst = strides(xs);
    let r = is.len();
    let mut out = Vec::with_capacity(iv.len());
    let mut pos = vec![0usize; r];
    for &i in &iv {
        let j = fix_index(i, xs[ax], "GatherElements")?;
        let mut off = 0;
        for d in 0..r {
            let p = if d == ax { j } else { pos[d] };
            if p >= xs[d] {
                return Err(Error::user(format!("GatherElements indices {is:?} exceed data {xs:?} off the axis")));
            }
            off += p * xst[d];
        }
        out.push(src[off]);
        for d in (0..r).rev() {
            pos[d] += 1;
            if pos[d] < is[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    Ok(Tensor::from_vec(is.to_vec(), out))
}

impl Kernel for GatherElementsKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (x, idx) = (input(inputs, 0)?, input(inputs, 1)?);
        let ax = norm_axis(self.axis, x.rank())?;
        Ok(vec![with_dtype!(x.dtype(), T, gather_elements::<T>(x, idx, ax))?])
    }
}

// ---------------------------------------------------------------------------------------
// GatherND / ScatterND

/// For indices of shape `[..., k]` into `data` (after `b` batch dims), the flat element
/// offset of every addressed slice and the slice length. Batch dims must agree.
fn nd_offsets(data: &[usize], idx_shape: &[usize], iv: &[i64], b: usize, what: &str) -> Result<(Vec<usize>, usize)> {
    let q = idx_shape.len();
    if q < 1 || q <= b || data.len() <= b {
        return Err(Error::user(format!("{what}: indices {idx_shape:?} and data {data:?} do not fit batch_dims {b}")));
    }
    let k = idx_shape[q - 1];
    if b + k > data.len() {
        return Err(Error::user(format!("{what}: index tuples of length {k} exceed data rank {}", data.len())));
    }
    for d in 0..b {
        if idx_shape[d] != data[d] {
            return Err(Error::user(format!("{what}: batch dims of indices {idx_shape:?} and data {data:?} differ")));
        }
    }
    let dst = strides(data);
    let slice = numel(&data[b + k..]);
    let batch_elems = numel(&data[b..]);
    let per_batch = numel(&idx_shape[b..q - 1]);
    let tuples = numel(&idx_shape[..q - 1]);
    let mut offs = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let bi = if per_batch == 0 { 0 } else { t / per_batch };
        let mut off = bi * batch_elems;
        for j in 0..k {
            let p = fix_index(iv[t * k + j], data[b + j], what)?;
            off += p * dst[b + j];
        }
        offs.push(off);
    }
    Ok((offs, slice))
}

struct GatherNdKernel {
    batch_dims: usize,
}

pub(crate) fn build_gather_nd(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    let b = cx.attrs().int("batch_dims", 0)?;
    if b < 0 {
        return Err(Error::user(format!("GatherND attribute 'batch_dims' must be >= 0, got {b}")));
    }
    Ok(Box::new(GatherNdKernel { batch_dims: b as usize }))
}

fn gather_nd<T: Elem>(x: &Tensor, idx: &Tensor, b: usize) -> Result<Tensor> {
    let iv = idx.to_i64_vec()?;
    let (offs, slice) = nd_offsets(x.shape(), idx.shape(), &iv, b, "GatherND")?;
    let q = idx.rank();
    let k = idx.shape()[q - 1];
    let mut out_shape = idx.shape()[..q - 1].to_vec();
    out_shape.extend_from_slice(&x.shape()[b + k..]);
    let src = x.as_slice::<T>()?;
    let mut out = Vec::with_capacity(offs.len() * slice);
    for o in offs {
        out.extend_from_slice(&src[o..o + slice]);
    }
    Ok(Tensor::from_vec(out_shape, out))
}

impl Kernel for GatherNdKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (x, idx) = (input(inputs, 0)?, input(inputs, 1)?);
        Ok(vec![with_dtype!(x.dtype(), T, gather_nd::<T>(x, idx, self.batch_dims))?])
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ScatterReduce {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn parse_reduction(cx: &NodeCtx, op: &str) -> Result<ScatterReduce> {
    Ok(match cx.attrs().string("reduction", "none")?.as_str() {
        "none" => ScatterReduce::None,
        "add" => ScatterReduce::Add,
        "mul" => ScatterReduce::Mul,
        "max" => ScatterReduce::Max,
        "min" => ScatterReduce::Min,
        other => {
            return Err(Error::user(format!(
                "{op} attribute 'reduction' = '{other}' is not supported (none, add, mul, max, min are)"
            )))
        }
    })
}

struct ScatterNdKernel {
    reduction: ScatterReduce,
}

pub(crate) fn build_scatter_nd(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(3, 3)?;
    Ok(Box::new(ScatterNdKernel { reduction: parse_reduction(cx, "ScatterND")? }))
}

fn combine<T: Num>(r: ScatterReduce, old: T, new: T) -> T {
    match r {
        ScatterReduce::None => new,
        ScatterReduce::Add => old.add(new),
        ScatterReduce::Mul => old.mul(new),
        ScatterReduce::Max => {
            if new > old {
                new
            } else {
                old
            }
        }
        ScatterReduce::Min => {
            if new < old {
                new
            } else {
                old
            }
        }
    }
}

fn scatter_nd<T: Num>(x: &Tensor, idx: &Tensor, upd: &Tensor, r: ScatterReduce) -> Result<Tensor> {
    let iv = idx.to_i64_vec()?;
    let (offs, slice) = nd_offsets(x.shape(), idx.shape(), &iv, 0, "ScatterND")?;
    let q = idx.rank();
    let k = idx.shape()[q - 1];
    let mut ushape = idx.shape()[..q - 1].to_vec();
    ushape.extend_from_slice(&x.shape()[k..]);
    if upd.shape() != ushape.as_slice() {
        return Err(Error::user(format!("ScatterND updates have shape {:?}, expected {ushape:?}", upd.shape())));
    }
    let mut y = x.as_slice::<T>()?.to_vec();
    let uv = upd.as_slice::<T>()?;
    for (t, o) in offs.into_iter().enumerate() {
        for j in 0..slice {
            y[o + j] = combine(r, y[o + j], uv[t * slice + j]);
        }
    }
    Ok(Tensor::from_vec(x.shape().to_vec(), y))
}

fn scatter_nd_any<T: Elem>(x: &Tensor, idx: &Tensor, upd: &Tensor) -> Result<Tensor> {
    let iv = idx.to_i64_vec()?;
    let (offs, slice) = nd_offsets(x.shape(), idx.shape(), &iv, 0, "ScatterND")?;
    let uv = upd.as_slice::<T>()?;
    if uv.len() != offs.len() * slice {
        return Err(Error::user(format!("ScatterND updates of shape {:?} do not fit the indices", upd.shape())));
    }
    let mut y = x.as_slice::<T>()?.to_vec();
    for (t, o) in offs.into_iter().enumerate() {
        y[o..o + slice].copy_from_slice(&uv[t * slice..(t + 1) * slice]);
    }
    Ok(Tensor::from_vec(x.shape().to_vec(), y))
}

impl Kernel for ScatterNdKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (x, idx, upd) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        if upd.dtype() != x.dtype() {
            return Err(Error::user(format!("ScatterND updates are {}, data is {}", upd.dtype(), x.dtype())));
        }
        let y = if self.reduction == ScatterReduce::None {
            with_dtype!(x.dtype(), T, scatter_nd_any::<T>(x, idx, upd))?
        } else {
            with_num!(x.dtype(), "ScatterND with a reduction", T, scatter_nd::<T>(x, idx, upd, self.reduction))?
        };
        Ok(vec![y])
    }
}

// ---------------------------------------------------------------------------------------
// OneHot

struct OneHotKernel {
    axis: i64,
}

pub(crate) fn build_one_hot(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(3, 3)?;
    Ok(Box::new(OneHotKernel { axis: cx.attrs().int("axis", -1)? }))
}

fn one_hot<T: Elem>(idx: &[f64], ishape: &[usize], depth: usize, values: &Tensor, axis: i64) -> Result<Tensor> {
    let vv = values.as_slice::<T>()?;
    if vv.len() != 2 {
        return Err(Error::user(format!("OneHot values must hold [off, on], got shape {:?}", values.shape())));
    }
    let r = ishape.len() + 1;
    let ax = norm_axis(axis, r)?;
    let mut oshape = ishape.to_vec();
    oshape.insert(ax, depth);
    let (outer, inner) = (numel(&ishape[..ax]), numel(&ishape[ax..]));
    let mut out = vec![vv[0]; numel(&oshape)];
    for o in 0..outer {
        for i in 0..inner {
            let v = idx[o * inner + i];
            let v = if v < 0.0 { v + depth as f64 } else { v };
            if v >= 0.0 && v < depth as f64 {
                let d = v as usize;
                out[(o * depth + d) * inner + i] = vv[1];
            }
        }
    }
    Ok(Tensor::from_vec(oshape, out))
}

impl Kernel for OneHotKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (idx, depth, values) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        let dv = depth.to_f64_vec();
        let d = match dv.as_slice() {
            [d] if *d >= 1.0 => *d as usize,
            _ => return Err(Error::user(format!("OneHot depth must be one value >= 1, got {dv:?}"))),
        };
        // indices of any numeric type; float indices are truncated toward zero
        let iv: Vec<f64> = idx.to_f64_vec().into_iter().map(f64::trunc).collect();
        Ok(vec![with_dtype!(values.dtype(), T, one_hot::<T>(&iv, idx.shape(), d, values, self.axis))?])
    }
}

// ---------------------------------------------------------------------------------------
// NonZero

struct NonZeroKernel;

pub(crate) fn build_nonzero(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    Ok(Box::new(NonZeroKernel))
}

impl Kernel for NonZeroKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let nz: Vec<usize> = x.to_f64_vec().iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(i, _)| i).collect();
        let r = x.rank();
        // a scalar counts as shape [1] (onnxruntime and numpy's legacy behaviour give [1, nnz])
        let (shape, r_eff) = if r == 0 { (vec![1], 1) } else { (x.shape().to_vec(), r) };
        let st = strides(&shape);
        let mut out = vec![0i64; r_eff * nz.len()];
        for (j, &flat) in nz.iter().enumerate() {
            for d in 0..r_eff {
                out[d * nz.len() + j] = ((flat / st[d]) % shape[d]) as i64;
            }
        }
        Ok(vec![Tensor::from_vec(vec![r_eff, nz.len()], out)])
    }
}

// ---------------------------------------------------------------------------------------
// DepthToSpace / SpaceToDepth

struct DepthSpaceKernel {
    to_space: bool,
    block: usize,
    crd: bool,
}

pub(crate) fn build_depth_space(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let a = cx.attrs();
    let op = cx.node.op_type.as_str();
    if !a.has("blocksize") {
        return Err(Error::user(format!("{op} attribute 'blocksize' is required")));
    }
    let b = a.int("blocksize", 0)?;
    if b <= 0 {
        return Err(Error::user(format!("{op} attribute 'blocksize' must be positive, got {b}")));
    }
    let to_space = op == "DepthToSpace";
    let crd = match (to_space, a.string("mode", "DCR")?.as_str()) {
        (true, "DCR") | (false, _) => false,
        (true, "CRD") => true,
        (true, other) => return Err(Error::user(format!("DepthToSpace attribute 'mode' = '{other}' is not supported (DCR, CRD are)"))),
    };
    Ok(Box::new(DepthSpaceKernel { to_space, block: b as usize, crd }))
}

impl Kernel for DepthSpaceKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::user(format!("input must be 4-D (N, C, H, W), got {:?}", x.shape())));
        };
        let b = self.block;
        let y = if self.to_space {
            if c % (b * b) != 0 {
                return Err(Error::user(format!("DepthToSpace: {c} channels are not divisible by blocksize² = {}", b * b)));
            }
            let c2 = c / (b * b);
            let t = if self.crd {
                transpose(&x.reshaped(vec![n, c2, b, b, h, w])?, &[0, 1, 4, 2, 5, 3])?
            } else {
                transpose(&x.reshaped(vec![n, b, b, c2, h, w])?, &[0, 3, 4, 1, 5, 2])?
            };
            t.reshaped(vec![n, c2, h * b, w * b])?
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(Error::user(format!("SpaceToDepth: {h}x{w} is not divisible by blocksize {b}")));
            }
            let t = transpose(&x.reshaped(vec![n, c, h / b, b, w / b, b])?, &[0, 3, 5, 1, 2, 4])?;
            t.reshaped(vec![n, c * b * b, h / b, w / b])?
        };
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn topk_ties_take_lower_index() {
        let x = i64t(&[1, 5], &[3, 7, 7, 1, 3]);
        let (v, i) = topk::<i64>(&x, 1, 3, true).unwrap();
        assert_eq!(v.as_i64().unwrap(), &[7, 7, 3]);
        assert_eq!(i.as_i64().unwrap(), &[1, 2, 0]);
        let (v, i) = topk::<i64>(&x, 1, 2, false).unwrap();
        assert_eq!((v.as_i64().unwrap(), i.as_i64().unwrap()), (&[1i64, 3][..], &[3i64, 0][..]));
    }

    #[test]
    fn argmax_last_index_and_cumsum() {
        let x = i64t(&[2, 3], &[1, 5, 5, 2, 2, 0]);
        assert_eq!(arg::<i64>(&x, 1, true, false).unwrap(), vec![1, 0]);
        assert_eq!(arg::<i64>(&x, 1, true, true).unwrap(), vec![2, 1]);
        assert_eq!(arg::<i64>(&x, 0, false, false).unwrap(), vec![0, 1, 1]);
        let c = cumsum::<i64>(&x, 1, true, true).unwrap();
        assert_eq!(c.as_i64().unwrap(), &[10, 5, 0, 2, 0, 0]);
        let c = cumsum::<i64>(&x, 0, false, false).unwrap();
        assert_eq!(c.as_i64().unwrap(), &[1, 5, 5, 3, 7, 5]);
    }

    #[test]
    fn trilu_and_tile() {
        let x = i64t(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(trilu::<i64>(&x, 0, true).unwrap().as_i64().unwrap(), &[1, 2, 3, 0, 5, 6, 0, 0, 9]);
        assert_eq!(trilu::<i64>(&x, -1, false).unwrap().as_i64().unwrap(), &[0, 0, 0, 4, 0, 0, 7, 8, 0]);
        let t = tile::<i64>(&i64t(&[2, 1], &[1, 2]), &[2, 3]).unwrap();
        assert_eq!(t.shape(), &[4, 3]);
        assert_eq!(t.as_i64().unwrap(), &[1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn gather_scatter_nd() {
        // data [2, 2, 2]; batch_dims 1, index tuples of length 1
        let x = i64t(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let g = gather_nd::<i64>(&x, &i64t(&[2, 1], &[1, 0]), 1).unwrap();
        assert_eq!(g.shape(), &[2, 2]);
        assert_eq!(g.as_i64().unwrap(), &[2, 3, 4, 5]);
        let s = scatter_nd::<i64>(&x, &i64t(&[2, 1], &[0, 0]), &i64t(&[2, 2, 2], &[1; 8]), ScatterReduce::Add).unwrap();
        assert_eq!(s.as_i64().unwrap(), &[2, 3, 4, 5, 4, 5, 6, 7]);
        assert!(gather_nd::<i64>(&x, &i64t(&[1, 1], &[2]), 0).is_err());
        let e = gather_elements::<i64>(&i64t(&[2, 2], &[1, 2, 3, 4]), &i64t(&[2, 2], &[0, 0, 1, -2]), 1).unwrap();
        assert_eq!(e.as_i64().unwrap(), &[1, 1, 4, 3]);
    }
}
