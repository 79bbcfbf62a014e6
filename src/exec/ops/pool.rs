//! MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (float32, 1-D to 3-D).

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::super::tensor::{pool, Tensor};
use super::conv::{Geom, SpatialAttrs};
use super::{input, Kernel, NodeCtx, PAR_CHUNK};

struct PoolKernel {
    max: bool,
    attrs: SpatialAttrs,
    kernel: Vec<usize>,
    ceil_mode: bool,
    count_include_pad: bool,
}

pub(crate) fn build_pool(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let max = cx.node.op_type == "MaxPool";
    if max && cx.node.outputs.get(1).is_some_and(|o| o.is_some()) {
        return Err(Error::user("MaxPool's Indices output is not supported"));
    }
    let a = cx.attrs();
    let attrs = SpatialAttrs::parse(&a)?;
    let kernel = attrs.kernel_shape.clone().ok_or_else(|| Error::user("attribute 'kernel_shape' is required"))?;
    if !max && attrs.dilations.as_ref().is_some_and(|d| d.iter().any(|&x| x != 1)) && cx.opset < 19 {
        return Err(Error::user("AveragePool dilations need opset 19"));
    }
    Ok(Box::new(PoolKernel {
        max,
        attrs,
        kernel,
        ceil_mode: a.int("ceil_mode", 0)? != 0,
        count_include_pad: a.int("count_include_pad", 0)? != 0,
    }))
}

/// Window taps along axis `a` for output `o`: (first tap index, tap count inside the input,
/// tap count inside the padded extent [-pb, in + pe)).
#[inline]
fn taps(g: &Geom, a: usize, o: usize) -> (usize, usize, usize, usize) {
    let start = (o * g.s[a]) as isize - g.pb[a] as isize;
    let (d, k) = (g.d[a] as isize, g.k[a] as isize);
    let inp = g.inp[a] as isize;
    let lim_pad = inp + g.pe[a] as isize;
    let mut first = None;
    let mut inside = 0;
    let mut in_pad = 0;
    for t in 0..k {
        let p = start + t * d;
        if p < lim_pad {
            in_pad += 1;
        }
        if p >= 0 && p < inp {
            if first.is_none() {
                first = Some(t as usize);
            }
            inside += 1;
        }
    }
    let f = first.unwrap_or(0);
    let first_pos = (start + f as isize * d).max(0) as usize;
    (f, first_pos, inside, in_pad)
}

fn pool_plane(x: &[f32], g: &Geom, max: bool, include_pad: bool, out: &mut [f32]) {
    let [od_n, oh_n, ow_n] = g.out;
    let [_, h_n, w_n] = g.inp;
    let wt: Vec<(usize, usize, usize, usize)> = (0..ow_n).map(|o| taps(g, 2, o)).collect();
    for od in 0..od_n {
        let (_, dpos, dcnt, dpad) = taps(g, 0, od);
        for oh in 0..oh_n {
            let (_, hpos, hcnt, hpad) = taps(g, 1, oh);
            for ow in 0..ow_n {
                let (_, wpos, wcnt, wpad) = wt[ow];
                let v = if max {
                    let mut m = f32::NEG_INFINITY;
                    for i in 0..dcnt {
                        for j in 0..hcnt {
                            let row = &x[((dpos + i * g.d[0]) * h_n + hpos + j * g.d[1]) * w_n..][..w_n];
                            for l in 0..wcnt {
                                let v = row[wpos + l * g.d[2]];
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                    }
                    m
                } else {
                    let mut s = 0f32;
                    for i in 0..dcnt {
                        for j in 0..hcnt {
                            let row = &x[((dpos + i * g.d[0]) * h_n + hpos + j * g.d[1]) * w_n..][..w_n];
                            for l in 0..wcnt {
                                s += row[wpos + l * g.d[2]];
                            }
                        }
                    }
                    let cnt = if include_pad { dpad * hpad * wpad } else { dcnt * hcnt * wcnt };
                    if cnt == 0 {
                        0.0
                    } else {
                        s / cnt as f32
                    }
                };
                out[(od * oh_n + oh) * ow_n + ow] = v;
            }
        }
    }
}

impl Kernel for PoolKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let xs = x.shape();
        if xs.len() < 3 || xs.len() > 5 {
            return Err(Error::user(format!("pooling input {xs:?} must have rank 3 to 5")));
        }
        let g = self.attrs.geometry(&xs[2..], &self.kernel, self.ceil_mode)?;
        let sp = xs.len() - 2;
        let mut out_shape = xs[..2].to_vec();
        out_shape.extend_from_slice(&g.out[3 - sp..]);
        let (isz, osz) = (g.in_size(), g.out_size());
        let xv = x.as_f32()?;
        let mut y = pool::scratch(xs[0] * xs[1] * osz); // pool_plane writes every element
        if y.is_empty() {
            return Ok(vec![Tensor::from_vec(out_shape, y)]);
        }
        let task = |(i, o): (usize, &mut [f32])| pool_plane(&xv[i * isz..][..isz], &g, self.max, self.count_include_pad, o);
        if y.len() >= PAR_CHUNK {
            y.par_chunks_mut(osz).enumerate().for_each(task);
        } else {
            y.chunks_mut(osz).enumerate().for_each(task);
        }
        Ok(vec![Tensor::from_vec(out_shape, y)])
    }
}

struct GlobalPoolKernel {
    max: bool,
}

pub(crate) fn build_global_pool(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    Ok(Box::new(GlobalPoolKernel { max: cx.node.op_type == "GlobalMaxPool" }))
}

impl Kernel for GlobalPoolKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let xs = x.shape();
        if xs.len() < 2 {
            return Err(Error::user(format!("global pooling input {xs:?} must have rank >= 2")));
        }
        let plane: usize = xs[2..].iter().product();
        let xv = x.as_f32()?;
        let planes = xs[0] * xs[1];
        let y: Vec<f32> = (0..planes)
            .map(|i| {
                let p = &xv[i * plane..(i + 1) * plane];
                if self.max {
                    p.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m || v.is_nan() { v } else { m })
                } else {
                    p.iter().sum::<f32>() / plane as f32
                }
            })
            .collect();
        let mut out_shape = xs[..2].to_vec();
        out_shape.extend(std::iter::repeat_n(1, xs.len() - 2));
        Ok(vec![Tensor::from_vec(out_shape, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::AutoPad;
    use super::*;

    fn sa(k: &[usize], s: &[usize], pads: &[usize]) -> SpatialAttrs {
        SpatialAttrs {
            kernel_shape: Some(k.to_vec()),
            strides: Some(s.to_vec()),
            dilations: None,
            pads: Some(pads.to_vec()),
            auto_pad: AutoPad::NotSet,
        }
    }

    #[test]
    fn avg_pool_pad_counting() {
        // 1-D input [1,2,3,4], kernel 3, stride 1, pads 1/1
        let x = [1f32, 2., 3., 4.];
        let a = sa(&[3], &[1], &[1, 1]);
        let g = a.geometry(&[4], &[3], false).unwrap();
        let mut out = vec![0f32; 4];
        pool_plane(&x, &g, false, false, &mut out);
        assert_eq!(out, vec![1.5, 2., 3., 3.5]);
        pool_plane(&x, &g, false, true, &mut out);
        assert_eq!(out, vec![1., 2., 3., 7. / 3.]);
        pool_plane(&x, &g, true, false, &mut out);
        assert_eq!(out, vec![2., 3., 4., 4.]);
    }

    #[test]
    fn ceil_mode_drops_window_starting_in_padding() {
        let a = sa(&[2], &[2], &[0, 0]);
        let g = a.geometry(&[5], &[2], true).unwrap();
        assert_eq!(g.out[2], 3); // windows at 0, 2, 4 (last one partial)
        let x = [1f32, 2., 3., 4., 5.];
        let mut out = vec![0f32; 3];
        pool_plane(&x, &g, false, false, &mut out);
        assert_eq!(out, vec![1.5, 3.5, 5.]);
        let a = sa(&[2], &[2], &[1, 1]);
        let g = a.geometry(&[4], &[2], true).unwrap();
        // span 6 -> ceil((6-2)/2)+1 = 3; last start 4-1 = 3 < 4 + 1, keep
        assert_eq!(g.out[2], 3);
    }
}
