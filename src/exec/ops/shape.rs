//! Data-movement and shape ops: Identity/Dropout, Constant, Shape, Size, Reshape, Flatten,
//! Transpose, Squeeze/Unsqueeze, Concat, Split, Slice, Gather, Pad, ConstantOfShape, Expand,
//! Range.

use crate::error::{Error, Result};

use super::super::program::constant_attr_value;
use super::super::tensor::{numel, DType, Elem, Tensor};
use super::elementwise::{broadcast_shapes, broadcast_strides};
use super::{input, norm_axis, opt_input, take, Kernel, NodeCtx, Num};

/// Contiguous row-major strides.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// A 1-D int tensor's values (shape/axes/pads inputs).
fn int_list(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    if t.rank() > 1 {
        return Err(Error::user(format!("{what} must be 1-D, got shape {:?}", t.shape())));
    }
    t.to_i64_vec().map_err(|e| e.context(what.to_string()))
}

// ---------------------------------------------------------------------------------------

struct IdentityKernel {
    mask: bool,
}

pub(crate) fn build_identity(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 3)?;
    let dropout = cx.node.op_type == "Dropout";
    if dropout {
        if cx.attrs().int("is_test", 1)? == 0 && cx.opset < 7 {
            return Err(Error::user("Dropout in training mode (is_test = 0) is not supported"));
        }
        if let Some(t) = cx.const_input(2) {
            if t.to_f64_vec().first().copied().unwrap_or(0.0) != 0.0 {
                return Err(Error::user("Dropout in training mode (training_mode = true) is not supported"));
            }
        }
    } else if cx.node.inputs.len() != 1 {
        return Err(Error::user("Identity takes one input"));
    }
    let mask = dropout && cx.node.outputs.get(1).is_some_and(|o| o.is_some());
    Ok(Box::new(IdentityKernel { mask }))
}

impl Kernel for IdentityKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        if let Some(t) = opt_input(inputs, 2) {
            if t.to_f64_vec().first().copied().unwrap_or(0.0) != 0.0 {
                return Err(Error::user("Dropout in training mode (training_mode = true) is not supported"));
            }
        }
        let x = take(inputs, 0)?;
        if self.mask {
            let m = Tensor::from_vec(x.shape().to_vec(), vec![true; x.len()]);
            return Ok(vec![x, m]);
        }
        Ok(vec![x])
    }
}

struct ConstantKernel(Tensor);

pub(crate) fn build_constant(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(0, 0)?;
    Ok(Box::new(ConstantKernel(constant_attr_value(&cx.node.attrs)?)))
}

impl Kernel for ConstantKernel {
    fn run(&self, _inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.0.clone()])
    }
}

// ---------------------------------------------------------------------------------------

struct ShapeKernel {
    start: i64,
    end: Option<i64>,
}

pub(crate) fn build_shape(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let a = cx.attrs();
    let end = if a.has("end") { Some(a.int("end", 0)?) } else { None };
    Ok(Box::new(ShapeKernel { start: a.int("start", 0)?, end }))
}

impl Kernel for ShapeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let r = x.rank() as i64;
        let clamp = |v: i64| -> usize { (if v < 0 { v + r } else { v }).clamp(0, r) as usize };
        let s = clamp(self.start);
        let e = clamp(self.end.unwrap_or(r));
        let dims: Vec<i64> = if s < e { x.shape()[s..e].iter().map(|&d| d as i64).collect() } else { Vec::new() };
        Ok(vec![Tensor::from_vec(vec![dims.len()], dims)])
    }
}

struct SizeKernel;

pub(crate) fn build_size(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    Ok(Box::new(SizeKernel))
}

impl Kernel for SizeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![Tensor::scalar(input(inputs, 0)?.len() as i64)])
    }
}

// ---------------------------------------------------------------------------------------

struct ReshapeKernel {
    allowzero: bool,
    /// Target shape from the attribute (opset < 5).
    attr_shape: Option<Vec<i64>>,
}

pub(crate) fn build_reshape(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let attr_shape = cx.attrs().ints("shape")?;
    if attr_shape.is_some() {
        cx.require_inputs(1, 1)?;
    } else {
        cx.require_inputs(2, 2)?;
    }
    Ok(Box::new(ReshapeKernel { allowzero: cx.attrs().int("allowzero", 0)? != 0, attr_shape }))
}

/// Resolves an ONNX Reshape target (0 copies the input dim unless `allowzero`, -1 infers).
pub(crate) fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 => {
                if infer.is_some() {
                    return Err(Error::user(format!("Reshape target {target:?} has more than one -1")));
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                let v = input.get(i).copied().ok_or_else(|| {
                    Error::user(format!("Reshape target {target:?} copies dim {i} of a rank-{} input", input.len()))
                })?;
                out.push(v);
            }
            d if d < 0 => return Err(Error::user(format!("invalid Reshape target dimension {d}"))),
            d => out.push(d as usize),
        }
    }
    let n = numel(input);
    // the target's dims come from data: their product may not fit a usize
    let too_big = || Error::user(format!("Reshape target {target:?} has more elements than fit in memory"));
    if let Some(i) = infer {
        let rest = out
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .try_fold(1usize, |a, (_, &d)| a.checked_mul(d))
            .ok_or_else(too_big)?;
        if rest == 0 || !n.is_multiple_of(rest) {
            return Err(Error::user(format!("cannot reshape {input:?} to {target:?}")));
        }
        out[i] = n / rest;
    }
    if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(too_big)? != n {
        return Err(Error::user(format!("cannot reshape {input:?} ({n} elements) to {target:?}")));
    }
    Ok(out)
}

impl Kernel for ReshapeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let target = match &self.attr_shape {
            Some(s) => s.clone(),
            None => int_list(input(inputs, 1)?, "shape")?,
        };
        let mut x = take(inputs, 0)?;
        let shape = reshape_target(x.shape(), &target, self.allowzero)?;
        x.set_shape(shape);
        Ok(vec![x])
    }
}

struct FlattenKernel {
    axis: i64,
}

pub(crate) fn build_flatten(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    Ok(Box::new(FlattenKernel { axis: cx.attrs().int("axis", 1)? }))
}

impl Kernel for FlattenKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let mut x = take(inputs, 0)?;
        let r = x.rank() as i64;
        let a = if self.axis < 0 { self.axis + r } else { self.axis };
        if a < 0 || a > r {
            return Err(Error::user(format!("Flatten axis {} out of range for rank {r}", self.axis)));
        }
        let a = a as usize;
        let outer = numel(&x.shape()[..a]);
        let inner = numel(&x.shape()[a..]);
        x.set_shape(vec![outer, inner]);
        Ok(vec![x])
    }
}

// ---------------------------------------------------------------------------------------

struct TransposeKernel {
    perm: Option<Vec<i64>>,
}

pub(crate) fn build_transpose(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    Ok(Box::new(TransposeKernel { perm: cx.attrs().ints("perm")? }))
}

/// Permutes the axes of `x`: output axis `i` is input axis `perm[i]`.
pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let r = x.rank();
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
        return Err(Error::user(format!("invalid permutation {perm:?} for rank {r}")));
    }
    let in_st = strides(x.shape());
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| in_st[p]).collect();
    with_dtype!(x.dtype(), T, {
        let src = x.as_slice::<T>()?;
        Ok(Tensor::from_vec(out_shape.clone(), gather_strided::<T>(src, &out_shape, &st, 0)))
    })
}

/// Copies the elements of `src` at `offset + sum(i_d * st[d])` for every index of `shape`,
/// in row-major order.
pub(crate) fn gather_strided<T: Copy>(src: &[T], shape: &[usize], st: &[usize], offset: usize) -> Vec<T> {
    let n = numel(shape);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let r = shape.len();
    if r == 0 {
        out.push(src[offset]);
        return out;
    }
    let inner = shape[r - 1];
    let ist = st[r - 1];
    let mut idx = vec![0usize; r - 1];
    let mut base = offset;
    loop {
        if ist == 1 {
            out.extend_from_slice(&src[base..base + inner]);
        } else {
            out.extend((0..inner).map(|i| src[base + i * ist]));
        }
        let mut d = r - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            base += st[d];
            if idx[d] < shape[d] {
                break;
            }
            base -= st[d] * shape[d];
            idx[d] = 0;
        }
    }
}

impl Kernel for TransposeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let perm: Vec<usize> = match &self.perm {
            Some(p) => p.iter().map(|&v| norm_axis(v, x.rank())).collect::<Result<_>>()?,
            None => (0..x.rank()).rev().collect(),
        };
        Ok(vec![transpose(x, &perm)?])
    }
}

// ---------------------------------------------------------------------------------------

struct SqueezeKernel {
    unsqueeze: bool,
    attr_axes: Option<Vec<i64>>,
}

pub(crate) fn build_squeeze(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let unsqueeze = cx.node.op_type == "Unsqueeze";
    let attr_axes = cx.attrs().ints("axes")?;
    cx.require_inputs(1, 2)?;
    if unsqueeze && attr_axes.is_none() && !cx.has_input(1) {
        return Err(Error::user("Unsqueeze needs axes (attribute before opset 13, input from 13)"));
    }
    Ok(Box::new(SqueezeKernel { unsqueeze, attr_axes }))
}

impl Kernel for SqueezeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let axes = match (&self.attr_axes, opt_input(inputs, 1)) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(t)) => Some(int_list(t, "axes")?),
            (None, None) => None,
        };
        let mut x = take(inputs, 0)?;
        let shape = x.shape().to_vec();
        let new_shape = if self.unsqueeze {
            let axes = axes.unwrap_or_default();
            let r = shape.len() + axes.len();
            let mut ins = vec![false; r];
            for &a in &axes {
                let a = norm_axis(a, r)?;
                if ins[a] {
                    return Err(Error::user(format!("Unsqueeze axes {axes:?} repeat an axis")));
                }
                ins[a] = true;
            }
            let mut it = shape.iter();
            ins.iter().map(|&b| if b { 1 } else { *it.next().unwrap_or(&1) }).collect()
        } else {
            match axes {
                None => shape.iter().copied().filter(|&d| d != 1).collect(),
                Some(axes) => {
                    let mut drop = vec![false; shape.len()];
                    for &a in &axes {
                        let a = norm_axis(a, shape.len())?;
                        if shape[a] != 1 {
                            return Err(Error::user(format!("cannot squeeze axis {a} of size {}", shape[a])));
                        }
                        drop[a] = true;
                    }
                    shape.iter().zip(&drop).filter(|(_, &d)| !d).map(|(&s, _)| s).collect()
                }
            }
        };
        x.set_shape(new_shape);
        Ok(vec![x])
    }
}

// ---------------------------------------------------------------------------------------

struct ConcatKernel {
    axis: i64,
}

pub(crate) fn build_concat(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, usize::MAX)?;
    let a = cx.attrs();
    if !a.has("axis") && cx.opset >= 4 {
        return Err(Error::user("attribute 'axis' is required"));
    }
    Ok(Box::new(ConcatKernel { axis: a.int("axis", 1)? }))
}

/// Concatenates tensors of one type along `axis`.
pub(crate) fn concat(parts: &[&Tensor], axis: i64) -> Result<Tensor> {
    let first = parts.first().ok_or_else(|| Error::user("Concat needs at least one input"))?;
    let r = first.rank();
    let ax = norm_axis(axis, r)?;
    let mut out_shape = first.shape().to_vec();
    out_shape[ax] = 0;
    for p in parts {
        if p.rank() != r || p.dtype() != first.dtype() {
            return Err(Error::user(format!(
                "Concat inputs differ in rank or type: {:?} {} vs {:?} {}",
                first.shape(),
                first.dtype(),
                p.shape(),
                p.dtype()
            )));
        }
        for d in 0..r {
            if d != ax && p.shape()[d] != first.shape()[d] {
                return Err(Error::user(format!("Concat inputs {:?} and {:?} differ off axis {ax}", first.shape(), p.shape())));
            }
        }
        out_shape[ax] += p.shape()[ax];
    }
    let outer = numel(&out_shape[..ax]);
    let inner = numel(&out_shape[ax + 1..]);
    with_dtype!(first.dtype(), T, {
        let mut out: Vec<T> = Vec::with_capacity(numel(&out_shape));
        let slices: Vec<&[T]> = parts.iter().map(|p| p.as_slice::<T>()).collect::<Result<_>>()?;
        for o in 0..outer {
            for (p, s) in parts.iter().zip(&slices) {
                let blk = p.shape()[ax] * inner;
                out.extend_from_slice(&s[o * blk..(o + 1) * blk]);
            }
        }
        Ok(Tensor::from_vec(out_shape, out))
    })
}

impl Kernel for ConcatKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().collect();
        Ok(vec![concat(&parts, self.axis)?])
    }
}

struct SplitKernel {
    axis: i64,
    attr_split: Option<Vec<i64>>,
    outputs: usize,
}

pub(crate) fn build_split(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 2)?;
    let a = cx.attrs();
    Ok(Box::new(SplitKernel { axis: a.int("axis", 0)?, attr_split: a.ints("split")?, outputs: cx.node.outputs.len() }))
}

impl Kernel for SplitKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let ax = norm_axis(self.axis, x.rank())?;
        let dim = x.shape()[ax];
        let sizes: Vec<usize> = match (&self.attr_split, opt_input(inputs, 1)) {
            (Some(s), _) => s.iter().map(|&v| v.max(0) as usize).collect(),
            (None, Some(t)) => int_list(t, "split")?.iter().map(|&v| v.max(0) as usize).collect(),
            (None, None) => {
                let n = self.outputs.max(1);
                let chunk = dim.div_ceil(n);
                (0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
            }
        };
        if sizes.iter().sum::<usize>() != dim || sizes.len() != self.outputs {
            return Err(Error::user(format!("Split sizes {sizes:?} do not match dim {dim} / {} outputs", self.outputs)));
        }
        let mut outs = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for s in sizes {
            let starts: Vec<usize> = (0..x.rank()).map(|d| if d == ax { start } else { 0 }).collect();
            let lens: Vec<usize> = (0..x.rank()).map(|d| if d == ax { s } else { x.shape()[d] }).collect();
            outs.push(slice_box(x, &starts, &lens)?);
            start += s;
        }
        Ok(outs)
    }
}

fn slice_box(x: &Tensor, starts: &[usize], lens: &[usize]) -> Result<Tensor> {
    let st = strides(x.shape());
    let off: usize = starts.iter().zip(&st).map(|(a, b)| a * b).sum();
    with_dtype!(x.dtype(), T, {
        let src = x.as_slice::<T>()?;
        Ok(Tensor::from_vec(lens.to_vec(), gather_strided::<T>(src, lens, &st, off)))
    })
}

// ---------------------------------------------------------------------------------------

/// Slice attributes of opset < 10: starts, ends, axes.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

struct SliceKernel {
    attr: Option<SliceAttrs>,
}

pub(crate) fn build_slice(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let a = cx.attrs();
    if cx.opset < 10 || a.has("starts") {
        cx.require_inputs(1, 1)?;
        let starts = a.ints("starts")?.ok_or_else(|| Error::user("attribute 'starts' is required"))?;
        let ends = a.ints("ends")?.ok_or_else(|| Error::user("attribute 'ends' is required"))?;
        return Ok(Box::new(SliceKernel { attr: Some((starts, ends, a.ints("axes")?)) }));
    }
    cx.require_inputs(3, 5)?;
    Ok(Box::new(SliceKernel { attr: None }))
}

/// Resolves ONNX Slice parameters for one axis of size `dim` into (start, step, count).
pub(crate) fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> Result<(usize, i64, usize)> {
    if step == 0 {
        return Err(Error::user("Slice step cannot be 0"));
    }
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = if step > 0 {
        (norm(start).clamp(0, d), norm(end).clamp(0, d))
    } else {
        (norm(start).clamp(0, d - 1), norm(end).clamp(-1, d - 1))
    };
    let count = if step > 0 {
        if e > s {
            ((e - s) + step - 1) / step
        } else {
            0
        }
    } else if s > e {
        ((s - e) + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok((s.max(0) as usize, step, count as usize))
}

impl Kernel for SliceKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let r = x.rank();
        let (starts, ends, axes, steps) = match &self.attr {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                int_list(input(inputs, 1)?, "starts")?,
                int_list(input(inputs, 2)?, "ends")?,
                opt_input(inputs, 3).map(|t| int_list(t, "axes")).transpose()?,
                opt_input(inputs, 4).map(|t| int_list(t, "steps")).transpose()?,
            ),
        };
        if starts.len() != ends.len() {
            return Err(Error::user(format!("Slice starts {starts:?} and ends {ends:?} differ in length")));
        }
        let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(Error::user("Slice starts, ends, axes and steps differ in length"));
        }
        let mut first = vec![0usize; r];
        let mut step = vec![1i64; r];
        let mut count: Vec<usize> = x.shape().to_vec();
        let mut seen = vec![false; r];
        for i in 0..starts.len() {
            let ax = norm_axis(axes[i], r)?;
            if std::mem::replace(&mut seen[ax], true) {
                return Err(Error::user(format!("Slice axes {axes:?} repeat an axis")));
            }
            let (s, st, c) = slice_axis(x.shape()[ax], starts[i], ends[i], steps[i])?;
            first[ax] = s;
            step[ax] = st;
            count[ax] = c;
        }
        let in_st = strides(x.shape());
        if numel(&count) == 0 {
            return with_dtype!(x.dtype(), T, Ok(vec![Tensor::from_vec(count, Vec::<T>::new())]));
        }
        // Negative steps: walk backwards by starting at the first element and using a
        // negative stride, expressed through an offset and wrapping arithmetic.
        let offset: usize = first.iter().zip(&in_st).map(|(a, b)| a * b).sum();
        let st: Vec<isize> = step.iter().zip(&in_st).map(|(&s, &b)| s as isize * b as isize).collect();
        with_dtype!(x.dtype(), T, {
            let src = x.as_slice::<T>()?;
            let n = numel(&count);
            let mut out: Vec<T> = Vec::with_capacity(n);
            if r == 0 {
                out.push(src[0]);
                return Ok(vec![Tensor::from_vec(count, out)]);
            }
            // Walk the outer index; copy each inner run (contiguous when its step is 1).
            let inner = count[r - 1];
            let ist = st[r - 1];
            let mut idx = vec![0usize; r - 1];
            let mut base = offset as isize;
            for _ in 0..n / inner {
                if ist == 1 {
                    let b = base as usize;
                    out.extend_from_slice(&src[b..b + inner]);
                } else {
                    out.extend((0..inner).map(|i| src[(base + i as isize * ist) as usize]));
                }
                for d in (0..r - 1).rev() {
                    idx[d] += 1;
                    base += st[d];
                    if idx[d] < count[d] {
                        break;
                    }
                    base -= st[d] * count[d] as isize;
                    idx[d] = 0;
                }
            }
            Ok(vec![Tensor::from_vec(count, out)])
        })
    }
}

// ---------------------------------------------------------------------------------------

struct GatherKernel {
    axis: i64,
}

pub(crate) fn build_gather(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    Ok(Box::new(GatherKernel { axis: cx.attrs().int("axis", 0)? }))
}

impl Kernel for GatherKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let idx_t = input(inputs, 1)?;
        if !matches!(idx_t.dtype(), DType::I64 | DType::I32) {
            return Err(Error::user(format!("Gather indices must be int64 or int32, got {}", idx_t.dtype())));
        }
        let ax = norm_axis(self.axis, x.rank())?;
        let dim = x.shape()[ax] as i64;
        let idx: Vec<usize> = idx_t
            .to_i64_vec()?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + dim } else { i };
                if j < 0 || j >= dim {
                    Err(Error::user(format!("Gather index {i} is out of range for axis of size {dim}")))
                } else {
                    Ok(j as usize)
                }
            })
            .collect::<Result<_>>()?;
        let outer = numel(&x.shape()[..ax]);
        let inner = numel(&x.shape()[ax + 1..]);
        let mut out_shape = x.shape()[..ax].to_vec();
        out_shape.extend_from_slice(idx_t.shape());
        out_shape.extend_from_slice(&x.shape()[ax + 1..]);
        with_dtype!(x.dtype(), T, {
            let src = x.as_slice::<T>()?;
            let mut out: Vec<T> = Vec::with_capacity(numel(&out_shape));
            let d = dim as usize;
            for o in 0..outer {
                for &i in &idx {
                    let b = (o * d + i) * inner;
                    out.extend_from_slice(&src[b..b + inner]);
                }
            }
            Ok(vec![Tensor::from_vec(out_shape, out)])
        })
    }
}

// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
}

struct PadKernel {
    mode: PadMode,
    /// Attributes of opset < 11: pads and value.
    attr: Option<(Vec<i64>, f32)>,
}

pub(crate) fn build_pad(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let a = cx.attrs();
    let mode = match a.string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => return Err(Error::user(format!("Pad mode '{other}' is not supported (constant, reflect, edge are)"))),
    };
    let attr = if cx.opset < 11 || a.has("pads") {
        cx.require_inputs(1, 1)?;
        let pads = a.ints("pads")?.or(a.ints("paddings")?).ok_or_else(|| Error::user("attribute 'pads' is required"))?;
        Some((pads, a.float("value", 0.0)?))
    } else {
        cx.require_inputs(2, 4)?;
        None
    };
    Ok(Box::new(PadKernel { mode, attr }))
}

fn pad_typed<T: Elem>(x: &Tensor, pads: &[i64], value: T, mode: PadMode) -> Result<Tensor> {
    let r = x.rank();
    let shape = x.shape();
    let mut out_shape = Vec::with_capacity(r);
    // per-dim map from output index to input index (None = padding value)
    let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(r);
    for d in 0..r {
        let (b, e) = (pads[d], pads[d + r]);
        let n = shape[d] as i64 + b + e;
        if n < 0 {
            return Err(Error::user(format!("Pad {pads:?} removes more than dim {d} of size {}", shape[d])));
        }
        let dim = shape[d] as i64;
        if dim == 0 && n > 0 && mode != PadMode::Constant {
            return Err(Error::user("cannot reflect- or edge-pad an empty dimension"));
        }
        let map: Vec<Option<usize>> = (0..n)
            .map(|o| {
                let i = o - b;
                if (0..dim).contains(&i) {
                    Some(i as usize)
                } else {
                    match mode {
                        PadMode::Constant => None,
                        PadMode::Edge => Some(i.clamp(0, dim - 1) as usize),
                        PadMode::Reflect => {
                            if dim == 1 {
                                return Some(0);
                            }
                            let period = 2 * (dim - 1);
                            let mut j = i.rem_euclid(period);
                            if j >= dim {
                                j = period - j;
                            }
                            Some(j as usize)
                        }
                    }
                }
            })
            .collect();
        out_shape.push(n as usize);
        maps.push(map);
    }
    let src = x.as_slice::<T>()?;
    let st = strides(shape);
    let n = numel(&out_shape);
    let mut out: Vec<T> = Vec::with_capacity(n);
    if n == 0 {
        return Ok(Tensor::from_vec(out_shape, out));
    }
    if r == 0 {
        out.push(src[0]);
        return Ok(Tensor::from_vec(out_shape, out));
    }
    let inner = out_shape[r - 1];
    let outer = n / inner;
    let mut idx = vec![0usize; r - 1];
    for _ in 0..outer {
        let mut base = Some(0usize);
        for d in 0..r - 1 {
            base = match (base, maps[d][idx[d]]) {
                (Some(b), Some(i)) => Some(b + i * st[d]),
                _ => None,
            };
        }
        match base {
            None => out.extend(std::iter::repeat_n(value, inner)),
            Some(b) => out.extend(maps[r - 1].iter().map(|m| match m {
                Some(i) => src[b + i],
                None => value,
            })),
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Tensor::from_vec(out_shape, out))
}

impl Kernel for PadKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let r = x.rank();
        let (pads, value): (Vec<i64>, Option<f64>) = match &self.attr {
            Some((p, v)) => (p.clone(), Some(*v as f64)),
            None => {
                let p = int_list(input(inputs, 1)?, "pads")?;
                let v = match opt_input(inputs, 2) {
                    Some(t) if !t.is_empty() => Some(t.to_f64_vec()[0]),
                    _ => None,
                };
                let p = match opt_input(inputs, 3) {
                    None => p,
                    Some(axes_t) => {
                        let axes = int_list(axes_t, "axes")?;
                        if p.len() != 2 * axes.len() {
                            return Err(Error::user(format!("Pad has {} pads for {} axes", p.len(), axes.len())));
                        }
                        let mut full = vec![0i64; 2 * r];
                        for (i, &a) in axes.iter().enumerate() {
                            let a = norm_axis(a, r)?;
                            full[a] = p[i];
                            full[a + r] = p[i + axes.len()];
                        }
                        full
                    }
                };
                (p, v)
            }
        };
        if pads.len() != 2 * r {
            return Err(Error::user(format!("Pad needs {} pads for rank {r}, got {}", 2 * r, pads.len())));
        }
        let v = value.unwrap_or(0.0);
        let out = match x.dtype() {
            DType::Bool => pad_typed::<bool>(x, &pads, v != 0.0, self.mode)?,
            dt => with_num!(dt, "Pad", T, pad_typed::<T>(x, &pads, <T as Num>::of_f64(v), self.mode))?,
        };
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------

struct ConstantOfShapeKernel {
    value: Tensor,
}

pub(crate) fn build_constant_of_shape(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let value = match cx.attrs().tensor("value")? {
        Some(t) if t.len() == 1 => t,
        Some(t) => return Err(Error::user(format!("ConstantOfShape value must have one element, got {:?}", t.shape()))),
        None => Tensor::scalar(0f32),
    };
    Ok(Box::new(ConstantOfShapeKernel { value }))
}

impl Kernel for ConstantOfShapeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let dims = int_list(input(inputs, 0)?, "shape")?;
        if dims.iter().any(|&d| d < 0) {
            return Err(Error::user(format!("ConstantOfShape shape {dims:?} has a negative dimension")));
        }
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        let n = numel(&shape);
        with_dtype!(self.value.dtype(), T, {
            let v = self.value.as_slice::<T>()?[0];
            Ok(vec![Tensor::from_vec(shape, vec![v; n])])
        })
    }
}

struct ExpandKernel;

pub(crate) fn build_expand(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 2)?;
    Ok(Box::new(ExpandKernel))
}

/// Broadcasts `x` to `shape` (numpy rules, bidirectional as in ONNX Expand).
pub(crate) fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out_shape = broadcast_shapes(x.shape(), shape)?;
    let st = broadcast_strides(x.shape(), &out_shape);
    with_dtype!(x.dtype(), T, {
        let src = x.as_slice::<T>()?;
        Ok(Tensor::from_vec(out_shape.clone(), gather_strided::<T>(src, &out_shape, &st, 0)))
    })
}

impl Kernel for ExpandKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let dims = int_list(input(inputs, 1)?, "shape")?;
        if dims.iter().any(|&d| d < 0) {
            return Err(Error::user(format!("Expand shape {dims:?} has a negative dimension")));
        }
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        Ok(vec![expand(input(inputs, 0)?, &shape)?])
    }
}

struct RangeKernel;

pub(crate) fn build_range(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(3, 3)?;
    Ok(Box::new(RangeKernel))
}

impl Kernel for RangeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (s, l, d) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        if s.len() != 1 || l.len() != 1 || d.len() != 1 {
            return Err(Error::user("Range inputs must be scalars"));
        }
        let (sv, lv, dv) = (s.to_f64_vec()[0], l.to_f64_vec()[0], d.to_f64_vec()[0]);
        if dv == 0.0 {
            return Err(Error::user("Range delta cannot be 0"));
        }
        let n = ((lv - sv) / dv).ceil().max(0.0) as usize;
        Ok(vec![match s.dtype() {
            DType::F32 => {
                let (s0, d0) = (s.as_f32()?[0], d.as_f32()?[0]);
                Tensor::from_vec(vec![n], (0..n).map(|i| s0 + i as f32 * d0).collect::<Vec<f32>>())
            }
            DType::I64 => {
                let (s0, d0) = (s.as_i64()?[0], d.as_i64()?[0]);
                Tensor::from_vec(vec![n], (0..n).map(|i| s0 + i as i64 * d0).collect::<Vec<i64>>())
            }
            DType::I32 => {
                let (s0, d0) = (s.as_slice::<i32>()?[0], d.as_slice::<i32>()?[0]);
                Tensor::from_vec(vec![n], (0..n).map(|i| s0 + i as i32 * d0).collect::<Vec<i32>>())
            }
            DType::F64 => Tensor::from_vec(vec![n], (0..n).map(|i| sv + i as f64 * dv).collect::<Vec<f64>>()),
            dt => return Err(Error::user(format!("Range does not support {dt}"))),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), v).unwrap()
    }
    fn iota(shape: &[usize]) -> Tensor {
        f(shape, (0..numel(shape)).map(|x| x as f32).collect())
    }

    #[test]
    fn reshape_rules() {
        assert_eq!(reshape_target(&[2, 3, 4], &[0, -1], false).unwrap(), vec![2, 12]);
        assert_eq!(reshape_target(&[2, 3, 4], &[-1], false).unwrap(), vec![24]);
        assert_eq!(reshape_target(&[0, 3], &[0, 3], true).unwrap(), vec![0, 3]);
        assert!(reshape_target(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
    }

    #[test]
    fn transpose_3d() {
        let x = iota(&[2, 3, 4]);
        let y = transpose(&x, &[2, 0, 1]).unwrap();
        assert_eq!(y.shape(), &[4, 2, 3]);
        let v = y.as_f32().unwrap();
        // y[k, i, j] = x[i, j, k] = 12 i + 4 j + k
        assert_eq!(v[0..6], [0., 4., 8., 12., 16., 20.]);
        assert_eq!(v[6], 1.);
        assert!(transpose(&x, &[0, 0, 1]).is_err());
    }

    #[test]
    fn slice_clamping_negative_step() {
        assert_eq!(slice_axis(10, 0, i64::MAX, 1).unwrap(), (0, 1, 10));
        assert_eq!(slice_axis(10, -1, i64::MIN, -1).unwrap(), (9, -1, 10));
        assert_eq!(slice_axis(10, 8, 1, -3).unwrap(), (8, -3, 3)); // 8, 5, 2
        assert_eq!(slice_axis(10, 20, 30, 1).unwrap(), (10, 1, 0));
        assert_eq!(slice_axis(5, 0, 5, 2).unwrap(), (0, 2, 3));
        assert!(slice_axis(5, 0, 5, 0).is_err());
    }

    #[test]
    fn pad_modes() {
        let x = f(&[3], vec![1., 2., 3.]);
        let c = pad_typed::<f32>(&x, &[2, 1], 9.0, PadMode::Constant).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[9., 9., 1., 2., 3., 9.]);
        let r = pad_typed::<f32>(&x, &[2, 2], 0.0, PadMode::Reflect).unwrap();
        assert_eq!(r.as_f32().unwrap(), &[3., 2., 1., 2., 3., 2., 1.]);
        let e = pad_typed::<f32>(&x, &[1, 2], 0.0, PadMode::Edge).unwrap();
        assert_eq!(e.as_f32().unwrap(), &[1., 1., 2., 3., 3., 3.]);
        let crop = pad_typed::<f32>(&x, &[-1, 0], 0.0, PadMode::Constant).unwrap();
        assert_eq!(crop.as_f32().unwrap(), &[2., 3.]);
        let x2 = iota(&[2, 2]);
        let p2 = pad_typed::<f32>(&x2, &[1, 0, 0, 1], -1.0, PadMode::Constant).unwrap();
        assert_eq!(p2.shape(), &[3, 3]);
        assert_eq!(p2.as_f32().unwrap(), &[-1., -1., -1., 0., 1., -1., 2., 3., -1.]);
    }

    #[test]
    fn concat_and_expand() {
        let a = iota(&[2, 1]);
        let b = f(&[2, 2], vec![5., 6., 7., 8.]);
        let c = concat(&[&a, &b], 1).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[0., 5., 6., 1., 7., 8.]);
        assert!(concat(&[&a, &iota(&[3, 1])], 1).is_err());
        let e = expand(&a, &[2, 3]).unwrap();
        assert_eq!(e.as_f32().unwrap(), &[0., 0., 0., 1., 1., 1.]);
    }
}
