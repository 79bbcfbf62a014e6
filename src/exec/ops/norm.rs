//! Normalizations: LayerNormalization, GroupNormalization, InstanceNormalization, LRN.
//! Float32 and float64; statistics are computed in f64 whatever the input precision.

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::super::tensor::{numel, DType, Tensor};
use super::shape::expand;
use super::{input, norm_axis, opt_input, Float, Kernel, NodeCtx, PAR_CHUNK};

/// Broadcasts a parameter tensor (scale or bias) to `shape` and returns it in the input's
/// type; errors when it does not broadcast unidirectionally.
fn param_as<T: Float>(p: &Tensor, shape: &[usize], what: &str) -> Result<Vec<T>> {
    if p.dtype() != T::DTYPE {
        return Err(Error::user(format!("{what} is {}, the input is {}", p.dtype(), T::DTYPE)));
    }
    let e = expand(p, shape)?;
    if e.shape() != shape {
        return Err(Error::user(format!("{what} of shape {:?} does not broadcast to {shape:?}", p.shape())));
    }
    Ok(e.as_slice::<T>()?.to_vec())
}

/// Mean and 1/sqrt(var + eps) of one row, in f64 (two passes).
#[inline]
fn row_stats<T: Float>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = row.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Runs `f(row index, row)` over the rows of `out` (each `d` long), in parallel when the
/// tensor is large (one task per row: results never depend on the thread count).
fn for_rows<T: Send>(out: &mut [T], d: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if d == 0 {
        return;
    }
    if out.len() >= PAR_CHUNK {
        out.par_chunks_mut(d).enumerate().for_each(|(r, row)| f(r, row));
    } else {
        out.chunks_mut(d).enumerate().for_each(|(r, row)| f(r, row));
    }
}

// ---------------------------------------------------------------------------------------
// LayerNormalization (opset 17)

struct LayerNormKernel {
    axis: i64,
    eps: f64,
    /// Type of the Mean / InvStdDev outputs (the stash type).
    stash: DType,
    /// Number of outputs requested (1 to 3).
    n_out: usize,
}

pub(crate) fn build_layer_norm(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(2, 3)?;
    let a = cx.attrs();
    let stash = match a.int("stash_type", 1)? {
        1 => DType::F32,
        11 => DType::F64,
        other => {
            return Err(Error::user(format!(
                "LayerNormalization attribute 'stash_type' = {other} is not supported (1 = float, 11 = double are)"
            )))
        }
    };
    Ok(Box::new(LayerNormKernel {
        axis: a.int("axis", -1)?,
        eps: a.float("epsilon", 1e-5)? as f64,
        stash,
        n_out: cx.node.outputs.len().clamp(1, 3),
    }))
}

fn layer_norm<T: Float>(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: usize,
    eps: f64,
) -> Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let xs = x.shape();
    let d = numel(&xs[axis..]);
    let rows = numel(&xs[..axis]);
    let sc = param_as::<T>(scale, &xs[axis..], "Scale")?;
    let b = bias.map(|b| param_as::<T>(b, &xs[axis..], "B")).transpose()?;
    let xv = x.as_slice::<T>()?;
    let mut y = vec![T::default(); xv.len()];
    let stats: Vec<(f64, f64)> = if d == 0 {
        vec![(f64::NAN, f64::NAN); rows]
    } else if xv.len() >= PAR_CHUNK {
        xv.par_chunks(d).map(|row| row_stats(row, eps)).collect()
    } else {
        xv.chunks(d).map(|row| row_stats(row, eps)).collect()
    };
    for_rows(&mut y, d, |r, out| {
        let row = &xv[r * d..(r + 1) * d];
        let (mean, inv) = stats[r];
        for j in 0..d {
            let mut v = (row[j].to_f64() - mean) * inv * sc[j].to_f64();
            if let Some(b) = &b {
                v += b[j].to_f64();
            }
            out[j] = T::from_f64(v);
        }
    });
    let (m, i) = stats.into_iter().unzip();
    Ok((Tensor::from_vec(xs.to_vec(), y), m, i))
}

fn stats_tensor(shape: Vec<usize>, v: Vec<f64>, dt: DType) -> Tensor {
    if dt == DType::F64 {
        Tensor::from_vec(shape, v)
    } else {
        Tensor::from_vec(shape, v.into_iter().map(|x| x as f32).collect::<Vec<f32>>())
    }
}

impl Kernel for LayerNormKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        if x.rank() == 0 {
            return Err(Error::user("LayerNormalization input must have rank >= 1"));
        }
        let axis = norm_axis(self.axis, x.rank())?;
        let (scale, bias) = (input(inputs, 1)?, opt_input(inputs, 2));
        let (y, mean, inv) =
            with_float!(x.dtype(), "LayerNormalization", T, layer_norm::<T>(x, scale, bias, axis, self.eps))?;
        let mut outs = vec![y];
        if self.n_out > 1 {
            let mut sshape = x.shape()[..axis].to_vec();
            sshape.resize(x.rank(), 1);
            outs.push(stats_tensor(sshape.clone(), mean, self.stash));
            outs.push(stats_tensor(sshape, inv, self.stash));
        }
        Ok(outs)
    }
}

// ---------------------------------------------------------------------------------------
// GroupNormalization (opset 18: scale/bias per group; opset 21: per channel)

struct GroupNormKernel {
    groups: usize,
    eps: f64,
    opset: i64,
}

pub(crate) fn build_group_norm(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(3, 3)?;
    let a = cx.attrs();
    if !a.has("num_groups") {
        return Err(Error::user("GroupNormalization attribute 'num_groups' is required"));
    }
    let g = a.int("num_groups", 0)?;
    if g <= 0 {
        return Err(Error::user(format!("GroupNormalization attribute 'num_groups' must be positive, got {g}")));
    }
    let stash = a.int("stash_type", 1)?;
    if !matches!(stash, 1 | 11) {
        return Err(Error::user(format!(
            "GroupNormalization attribute 'stash_type' = {stash} is not supported (1 = float, 11 = double are)"
        )));
    }
    Ok(Box::new(GroupNormKernel { groups: g as usize, eps: a.float("epsilon", 1e-5)? as f64, opset: cx.opset }))
}

fn group_norm<T: Float>(x: &Tensor, scale: &Tensor, bias: &Tensor, groups: usize, eps: f64, opset: i64) -> Result<Tensor> {
    let xs = x.shape();
    if xs.len() < 2 {
        return Err(Error::user(format!("GroupNormalization input must have rank >= 2, got {xs:?}")));
    }
    let c = xs[1];
    if !c.is_multiple_of(groups) {
        return Err(Error::user(format!("GroupNormalization: {c} channels are not divisible into {groups} groups")));
    }
    let per_group = opset < 21 && scale.len() == groups && groups != c;
    let plen = if per_group { groups } else { c };
    let sc = param_as::<T>(scale, &[plen], "scale")?;
    let bi = param_as::<T>(bias, &[plen], "bias")?;
    let spatial = numel(&xs[2..]);
    let cg = c / groups;
    let d = cg * spatial;
    let xv = x.as_slice::<T>()?;
    let mut y = vec![T::default(); xv.len()];
    for_rows(&mut y, d, |r, out| {
        let row = &xv[r * d..(r + 1) * d];
        let g = r % groups;
        let (mean, inv) = row_stats(row, eps);
        for (j, (o, v)) in out.iter_mut().zip(row).enumerate() {
            let p = if per_group { g } else { g * cg + j / spatial.max(1) };
            *o = T::from_f64((v.to_f64() - mean) * inv * sc[p].to_f64() + bi[p].to_f64());
        }
    });
    Ok(Tensor::from_vec(xs.to_vec(), y))
}

impl Kernel for GroupNormKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (x, s, b) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        let y = with_float!(x.dtype(), "GroupNormalization", T, group_norm::<T>(x, s, b, self.groups, self.eps, self.opset))?;
        Ok(vec![y])
    }
}

// ---------------------------------------------------------------------------------------
// InstanceNormalization

struct InstanceNormKernel {
    eps: f64,
}

pub(crate) fn build_instance_norm(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(3, 3)?;
    Ok(Box::new(InstanceNormKernel { eps: cx.attrs().float("epsilon", 1e-5)? as f64 }))
}

fn instance_norm<T: Float>(x: &Tensor, scale: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let xs = x.shape();
    if xs.len() < 2 {
        return Err(Error::user(format!("InstanceNormalization input must have rank >= 2, got {xs:?}")));
    }
    let c = xs[1];
    let sc = param_as::<T>(scale, &[c], "scale")?;
    let bi = param_as::<T>(bias, &[c], "B")?;
    let d = numel(&xs[2..]);
    let xv = x.as_slice::<T>()?;
    let mut y = vec![T::default(); xv.len()];
    for_rows(&mut y, d, |r, out| {
        let row = &xv[r * d..(r + 1) * d];
        let ch = r % c;
        let (mean, inv) = row_stats(row, eps);
        let (s, b) = (sc[ch].to_f64(), bi[ch].to_f64());
        for (o, v) in out.iter_mut().zip(row) {
            *o = T::from_f64((v.to_f64() - mean) * inv * s + b);
        }
    });
    Ok(Tensor::from_vec(xs.to_vec(), y))
}

impl Kernel for InstanceNormKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (x, s, b) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        Ok(vec![with_float!(x.dtype(), "InstanceNormalization", T, instance_norm::<T>(x, s, b, self.eps))?])
    }
}

// ---------------------------------------------------------------------------------------
// LRN

struct LrnKernel {
    alpha: f64,
    beta: f64,
    bias: f64,
    size: usize,
}

pub(crate) fn build_lrn(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let a = cx.attrs();
    if !a.has("size") {
        return Err(Error::user("LRN attribute 'size' is required"));
    }
    let size = a.int("size", 0)?;
    if size <= 0 {
        return Err(Error::user(format!("LRN attribute 'size' must be positive, got {size}")));
    }
    Ok(Box::new(LrnKernel {
        alpha: a.float("alpha", 1e-4)? as f64,
        beta: a.float("beta", 0.75)? as f64,
        bias: a.float("bias", 1.0)? as f64,
        size: size as usize,
    }))
}

fn lrn<T: Float>(x: &Tensor, k: &LrnKernel) -> Result<Tensor> {
    let xs = x.shape();
    if xs.len() < 2 {
        return Err(Error::user(format!("LRN input must have rank >= 2, got {xs:?}")));
    }
    let c = xs[1];
    let sp = numel(&xs[2..]);
    let xv = x.as_slice::<T>()?;
    let mut y = vec![T::default(); xv.len()];
    // channels c - floor((size-1)/2) ..= c + ceil((size-1)/2)
    let (lo, hi) = ((k.size - 1) / 2, k.size / 2);
    for_rows(&mut y, c * sp, |n, out| {
        let img = &xv[n * c * sp..(n + 1) * c * sp];
        for ch in 0..c {
            let (a, b) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
            for s in 0..sp {
                let sq: f64 = (a..=b).map(|j| img[j * sp + s].to_f64().powi(2)).sum();
                let v = img[ch * sp + s].to_f64();
                out[ch * sp + s] = T::from_f64(v / (k.bias + k.alpha / k.size as f64 * sq).powf(k.beta));
            }
        }
    });
    Ok(Tensor::from_vec(xs.to_vec(), y))
}

impl Kernel for LrnKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        Ok(vec![with_float!(x.dtype(), "LRN", T, lrn::<T>(x, self))?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn layer_norm_rows_and_stats() {
        // rows [1,2,3] and [2,4,6]: mean 2 and 4, var 2/3 and 8/3
        let x = f(&[2, 3], &[1., 2., 3., 2., 4., 6.]);
        let s = f(&[3], &[1., 2., 1.]);
        let b = f(&[3], &[0., 0., 1.]);
        let (y, m, inv) = layer_norm::<f32>(&x, &s, Some(&b), 1, 0.0).unwrap();
        let r = (1.5f64).sqrt() as f32;
        let want = [-r, 0., r + 1., -r, 0., r + 1.];
        for (g, w) in y.as_f32().unwrap().iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert_eq!(m, vec![2.0, 4.0]);
        assert!((inv[1] - 1.0 / (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // axis 0 normalizes over everything; a scale that does not broadcast is an error
        let (y0, m0, _) = layer_norm::<f32>(&x, &f(&[1], &[1.]), None, 0, 1e-5).unwrap();
        assert_eq!(m0, vec![3.0]);
        assert!(y0.as_f32().unwrap().iter().sum::<f32>().abs() < 1e-5);
        assert!(layer_norm::<f32>(&x, &f(&[2], &[1., 1.]), None, 1, 1e-5).is_err());
    }

    #[test]
    fn instance_and_group_norm() {
        let x = f(&[1, 2, 2], &[1., 3., 10., 30.]);
        let y = instance_norm::<f32>(&x, &f(&[2], &[1., 2.]), &f(&[2], &[0., 5.]), 0.0).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[-1., 1., 3., 7.]);
        // one group over both channels, per-channel scale (opset 21)
        let g = group_norm::<f32>(&f(&[1, 2, 1], &[1., 3.]), &f(&[2], &[1., 2.]), &f(&[2], &[0., 1.]), 1, 0.0, 21).unwrap();
        assert_eq!(g.as_f32().unwrap(), &[-1., 3.]);
    }

    #[test]
    fn lrn_window() {
        // size 3: channel c sums squares of c-1..c+1
        let k = LrnKernel { alpha: 3.0, beta: 1.0, bias: 1.0, size: 3 };
        let y = lrn::<f32>(&f(&[1, 3, 1], &[1., 2., 3.]), &k).unwrap();
        // sums: 5, 14, 13 -> y = x / (1 + sum)
        assert_eq!(y.as_f32().unwrap(), &[1. / 6., 2. / 15., 3. / 14.]);
    }
}
