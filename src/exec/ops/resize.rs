//! Resize (opset 10 to 19+) and Upsample (opset 7 to 9).
//!
//! Every resized axis gets a list of taps per output index (input index, weight), computed
//! once from the mode, the coordinate transformation and the scale; the output is the
//! tensor product of those 1-D filters, applied one axis at a time (what ONNX's reference
//! computes recursively). Nearest mode only gathers, so it takes every element type;
//! linear and cubic take float32/float64 and accumulate in f64. `tf_crop_and_resize`
//! writes `extrapolation_value` wherever a coordinate of any axis falls outside the input.

use crate::error::{Error, Result};

use super::super::tensor::{numel, DType, Elem, Tensor};
use super::shape::strides;
use super::{input, norm_axis, opt_input, Float, Kernel, NodeCtx, Num};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    TfCropAndResize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Resize-10 and Upsample: floor when upsampling, ceil when downsampling (what
    /// onnxruntime does for these versions, which had no nearest_mode).
    Simple,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

struct ResizeKernel {
    mode: Mode,
    coord: Coord,
    nearest: Nearest,
    cubic_a: f64,
    exclude_outside: bool,
    extrapolation: f64,
    antialias: bool,
    axes: Option<Vec<i64>>,
    policy: AspectPolicy,
    /// Where the scales come from: Upsample-7's attribute, or the input slot holding them
    /// (1 for Resize-10 and Upsample-9, 2 for Resize-11+), and the sizes' slot if any.
    attr_scales: Option<Vec<f32>>,
    scales_slot: Option<usize>,
    sizes_slot: Option<usize>,
    roi_slot: Option<usize>,
}

fn parse_mode(op: &str, s: &str) -> Result<Mode> {
    Ok(match s {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" => Mode::Linear,
        "cubic" if op == "Resize" => Mode::Cubic,
        other => return Err(Error::user(format!("{op} attribute 'mode' = '{other}' is not supported (nearest, linear, cubic are)"))),
    })
}

pub(crate) fn build_resize(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let a = cx.attrs();
    let op = cx.node.op_type.as_str();
    let mode = parse_mode(op, &a.string("mode", "nearest")?)?;
    let mut k = ResizeKernel {
        mode,
        coord: Coord::Asymmetric,
        nearest: Nearest::Simple,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation: 0.0,
        antialias: false,
        axes: None,
        policy: AspectPolicy::Stretch,
        attr_scales: None,
        scales_slot: None,
        sizes_slot: None,
        roi_slot: None,
    };
    if op == "Upsample" {
        if cx.opset < 9 {
            cx.require_inputs(1, 1)?;
            let s = a.get("scales").map(|x| x.floats.clone()).ok_or_else(|| Error::user("Upsample attribute 'scales' is required"))?;
            k.attr_scales = Some(s);
        } else {
            cx.require_inputs(2, 2)?;
            k.scales_slot = Some(1);
        }
        return Ok(Box::new(k));
    }
    if cx.opset < 11 {
        cx.require_inputs(2, 2)?;
        k.scales_slot = Some(1);
        return Ok(Box::new(k));
    }
    cx.require_inputs(1, 4)?;
    k.coord = match a.string("coordinate_transformation_mode", "half_pixel")?.as_str() {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
        "tf_crop_and_resize" => Coord::TfCropAndResize,
        other => {
            return Err(Error::user(format!("Resize attribute 'coordinate_transformation_mode' = '{other}' is not supported")))
        }
    };
    k.nearest = match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(Error::user(format!("Resize attribute 'nearest_mode' = '{other}' is not supported"))),
    };
    k.policy = match a.string("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => AspectPolicy::Stretch,
        "not_larger" => AspectPolicy::NotLarger,
        "not_smaller" => AspectPolicy::NotSmaller,
        other => return Err(Error::user(format!("Resize attribute 'keep_aspect_ratio_policy' = '{other}' is not supported"))),
    };
    k.cubic_a = a.float("cubic_coeff_a", -0.75)? as f64;
    k.exclude_outside = a.int("exclude_outside", 0)? != 0;
    k.extrapolation = a.float("extrapolation_value", 0.0)? as f64;
    k.antialias = a.int("antialias", 0)? != 0;
    k.axes = a.ints("axes")?;
    k.roi_slot = Some(1);
    k.scales_slot = Some(2);
    k.sizes_slot = Some(3);
    Ok(Box::new(k))
}

/// One axis: for each output index, its taps (input index, weight) and whether the
/// coordinate fell outside the input (tf_crop_and_resize only).
struct AxisTaps {
    taps: Vec<Vec<(usize, f64)>>,
    outside: Vec<bool>,
}

impl ResizeKernel {
    /// Input coordinate of output index `x` along an axis.
    fn coordinate(&self, x: f64, scale: f64, len_in: usize, len_out: usize, roi: (f64, f64)) -> f64 {
        let (li, lo) = (len_in as f64, len_out as f64);
        match self.coord {
            Coord::HalfPixel => (x + 0.5) / scale - 0.5,
            Coord::HalfPixelSymmetric => {
                let adj = lo / (scale * li);
                let center = li / 2.0;
                center * (1.0 - adj) + (x + 0.5) / scale - 0.5
            }
            Coord::PytorchHalfPixel => {
                if len_out > 1 {
                    (x + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            Coord::AlignCorners => {
                if len_out == 1 {
                    0.0
                } else {
                    x * (li - 1.0) / (lo - 1.0)
                }
            }
            Coord::Asymmetric => x / scale,
            Coord::TfHalfPixelForNn => (x + 0.5) / scale,
            Coord::TfCropAndResize => {
                let (s, e) = roi;
                if len_out > 1 {
                    s * (li - 1.0) + x * (e - s) * (li - 1.0) / (lo - 1.0)
                } else {
                    0.5 * (s + e) * (li - 1.0)
                }
            }
        }
    }

    /// The 1-D filter weights around `x` (`ratio` = x - base in (0, 1]) and the offset of
    /// the first tap from `base`.
    fn weights(&self, ratio: f64, scale: f64) -> (Vec<f64>, i64) {
        let aa_scale = if self.antialias && scale < 1.0 { scale } else { 1.0 };
        match self.mode {
            Mode::Nearest => (vec![], 0),
            Mode::Linear => {
                let start = (-1.0 / aa_scale).floor() as i64 + 1;
                let n = 2 - 2 * start;
                let w: Vec<f64> =
                    (start..start + n).map(|i| (1.0 - ((i as f64 - ratio) * aa_scale).abs()).clamp(0.0, 1.0)).collect();
                (w, start)
            }
            Mode::Cubic => {
                let a = self.cubic_a;
                let cubic = |x: f64| {
                    let x = x.abs();
                    if x <= 1.0 {
                        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                    } else if x < 2.0 {
                        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let start = (-2.0 / aa_scale).floor() as i64 + 1;
                let n = 2 - 2 * start;
                let w: Vec<f64> = (start..start + n).map(|i| cubic((i as f64 - ratio) * aa_scale)).collect();
                (w, start)
            }
        }
    }

    fn nearest_index(&self, x: f64, scale: f64) -> i64 {
        let f = x.floor();
        let r = match self.nearest {
            Nearest::RoundPreferFloor => {
                if x - f == 0.5 {
                    f
                } else {
                    x.round()
                }
            }
            Nearest::RoundPreferCeil => {
                if x - f == 0.5 {
                    x.ceil()
                } else {
                    x.round()
                }
            }
            Nearest::Floor => f,
            Nearest::Ceil => x.ceil(),
            Nearest::Simple => {
                if scale < 1.0 {
                    x.ceil()
                } else {
                    f
                }
            }
        };
        r as i64
    }

    fn axis_taps(&self, len_in: usize, len_out: usize, scale: f64, roi: (f64, f64)) -> AxisTaps {
        let mut taps = Vec::with_capacity(len_out);
        let mut outside = Vec::with_capacity(len_out);
        let last = len_in as i64 - 1;
        let clamp = |i: i64| i.clamp(0, last.max(0)) as usize;
        for o in 0..len_out {
            let x = self.coordinate(o as f64, scale, len_in, len_out, roi);
            outside.push(self.coord == Coord::TfCropAndResize && (x < 0.0 || x > last as f64));
            if self.mode == Mode::Nearest {
                taps.push(vec![(clamp(self.nearest_index(x, scale)), 1.0)]);
                continue;
            }
            // base: the input index left of x (x itself when x is an integer: ratio 1)
            let base = x.ceil() as i64 - 1;
            let ratio = x - base as f64;
            let (mut w, start) = self.weights(ratio, scale);
            let idx: Vec<i64> = (0..w.len() as i64).map(|i| base + start + i).collect();
            if self.exclude_outside {
                for (wi, &i) in w.iter_mut().zip(&idx) {
                    if i < 0 || i > last {
                        *wi = 0.0;
                    }
                }
            }
            if self.antialias || self.exclude_outside {
                let s: f64 = w.iter().sum();
                if s != 0.0 {
                    w.iter_mut().for_each(|v| *v /= s);
                }
            }
            taps.push(idx.into_iter().zip(w).filter(|(_, w)| *w != 0.0).map(|(i, w)| (clamp(i), w)).collect());
        }
        AxisTaps { taps, outside }
    }
}

/// Applies one axis' taps: `[outer, len_in, inner]` to `[outer, len_out, inner]`.
fn apply_axis(src: &[f64], outer: usize, len_in: usize, inner: usize, t: &AxisTaps) -> Vec<f64> {
    let len_out = t.taps.len();
    let mut out = vec![0f64; outer * len_out * inner];
    for o in 0..outer {
        let s = &src[o * len_in * inner..(o + 1) * len_in * inner];
        let d = &mut out[o * len_out * inner..(o + 1) * len_out * inner];
        for (j, taps) in t.taps.iter().enumerate() {
            let row = &mut d[j * inner..(j + 1) * inner];
            for &(i, w) in taps {
                for (y, &x) in row.iter_mut().zip(&s[i * inner..(i + 1) * inner]) {
                    *y += w * x;
                }
            }
        }
    }
    out
}

fn interpolate<T: Float>(x: &Tensor, axes: &[(usize, AxisTaps)], out_shape: &[usize], extrap: f64) -> Result<Tensor> {
    let mut cur: Vec<f64> = x.as_slice::<T>()?.iter().map(|v| v.to_f64()).collect();
    let mut shape = x.shape().to_vec();
    for (ax, t) in axes {
        let (outer, inner) = (numel(&shape[..*ax]), numel(&shape[ax + 1..]));
        cur = apply_axis(&cur, outer, shape[*ax], inner, t);
        shape[*ax] = t.taps.len();
    }
    debug_assert_eq!(shape, out_shape);
    mark_outside(&mut cur, out_shape, axes, extrap);
    Ok(Tensor::from_vec(out_shape.to_vec(), cur.into_iter().map(T::from_f64).collect()))
}

/// Writes `value` wherever an axis coordinate fell outside the input.
fn mark_outside<T: Copy>(buf: &mut [T], shape: &[usize], axes: &[(usize, AxisTaps)], value: T) {
    let st = strides(shape);
    for (ax, t) in axes {
        if !t.outside.iter().any(|&b| b) {
            continue;
        }
        let (outer, len, inner) = (numel(&shape[..*ax]), shape[*ax], st[*ax]);
        for o in 0..outer {
            for (j, _) in t.outside.iter().enumerate().filter(|(_, &b)| b) {
                let b = (o * len + j) * inner;
                buf[b..b + inner].iter_mut().for_each(|v| *v = value);
            }
        }
    }
}

fn gather_nearest<T: Elem>(x: &Tensor, axes: &[(usize, AxisTaps)], out_shape: &[usize], extrap: T) -> Result<Tensor> {
    let r = out_shape.len();
    let src = x.as_slice::<T>()?;
    let ist = strides(x.shape());
    // per-axis map from output index to input offset
    let maps: Vec<Vec<usize>> = (0..r)
        .map(|d| match axes.iter().find(|(a, _)| *a == d) {
            Some((_, t)) => t.taps.iter().map(|tp| tp.first().map_or(0, |p| p.0) * ist[d]).collect(),
            None => (0..out_shape[d]).map(|i| i * ist[d]).collect(),
        })
        .collect();
    let n = numel(out_shape);
    let mut out = Vec::with_capacity(n);
    if n > 0 {
        if r == 0 {
            out.push(src[0]);
        } else {
            let mut idx = vec![0usize; r];
            for _ in 0..n {
                let off: usize = (0..r).map(|d| maps[d][idx[d]]).sum();
                out.push(src[off]);
                for d in (0..r).rev() {
                    idx[d] += 1;
                    if idx[d] < out_shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    mark_outside(&mut out, out_shape, axes, extrap);
    Ok(Tensor::from_vec(out_shape.to_vec(), out))
}

/// A float list from a scales/roi tensor (float32 or float64).
fn floats(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec()
}

impl Kernel for ResizeKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = input(inputs, 0)?;
        let r = x.rank();
        let xs = x.shape().to_vec();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => {
                let v: Vec<usize> = a.iter().map(|&i| norm_axis(i, r)).collect::<Result<_>>()?;
                let mut s = v.clone();
                s.sort_unstable();
                s.dedup();
                if s.len() != v.len() {
                    return Err(Error::user(format!("Resize attribute 'axes' {a:?} repeats an axis")));
                }
                v
            }
            None => (0..r).collect(),
        };
        let na = axes.len();
        let nonempty = |slot: Option<usize>, inputs: &[Option<Tensor>]| slot.and_then(|s| opt_input(inputs, s)).filter(|t| !t.is_empty()).cloned();
        let scales_t = nonempty(self.scales_slot, inputs);
        let sizes_t = nonempty(self.sizes_slot, inputs);
        let roi_t = nonempty(self.roi_slot, inputs);
        // per resized axis: (scale, output length)
        let mut scale = vec![1f64; r];
        let mut out_shape = xs.clone();
        let from_sizes = sizes_t.is_some() && self.attr_scales.is_none();
        match (&self.attr_scales, scales_t, sizes_t) {
            (_, Some(_), Some(_)) => return Err(Error::user("Resize takes scales or sizes, not both")),
            (Some(s), _, _) => {
                if s.len() != r {
                    return Err(Error::user(format!("Upsample has {} scales for a rank-{r} input", s.len())));
                }
                for d in 0..r {
                    scale[d] = s[d] as f64;
                }
            }
            (None, Some(s), None) => {
                let s = floats(&s);
                if s.len() != na {
                    return Err(Error::user(format!("{} scales given for {na} axes", s.len())));
                }
                for (i, &d) in axes.iter().enumerate() {
                    scale[d] = s[i];
                }
            }
            (None, None, Some(sz)) => {
                let sz = sz.to_i64_vec().map_err(|e| e.context("Resize sizes"))?;
                if sz.len() != na || sz.iter().any(|&v| v < 0) {
                    return Err(Error::user(format!("Resize sizes {sz:?} do not fit {na} axes")));
                }
                for (i, &d) in axes.iter().enumerate() {
                    scale[d] = sz[i] as f64 / xs[d] as f64;
                    out_shape[d] = sz[i] as usize;
                }
                if self.policy != AspectPolicy::Stretch {
                    let it = axes.iter().map(|&d| scale[d]);
                    let s = if self.policy == AspectPolicy::NotLarger { it.fold(f64::INFINITY, f64::min) } else { it.fold(f64::NEG_INFINITY, f64::max) };
                    for &d in &axes {
                        scale[d] = s;
                        out_shape[d] = (s * xs[d] as f64 + 0.5).floor() as usize;
                    }
                }
            }
            (None, None, None) => return Err(Error::user("Resize needs scales or sizes")),
        }
        if scale.iter().any(|&s| !(s > 0.0) || !s.is_finite()) {
            return Err(Error::user(format!("Resize scales {scale:?} must be positive")));
        }
        if !from_sizes {
            // scales given: output = floor(input * scale)
            for d in 0..r {
                out_shape[d] = (xs[d] as f64 * scale[d]).floor() as usize;
            }
        }
        let mut roi = vec![(0f64, 1f64); r];
        if self.coord == Coord::TfCropAndResize {
            if let Some(t) = roi_t {
                let v = floats(&t);
                if v.len() != 2 * na {
                    return Err(Error::user(format!("Resize roi has {} values, expected {}", v.len(), 2 * na)));
                }
                for (i, &d) in axes.iter().enumerate() {
                    roi[d] = (v[i], v[i + na]);
                }
            }
        }
        let mut taps: Vec<(usize, AxisTaps)> = Vec::new();
        for d in 0..r {
            let identity = out_shape[d] == xs[d] && scale[d] == 1.0 && self.coord != Coord::TfCropAndResize;
            if identity || xs[d] == 0 {
                continue;
            }
            taps.push((d, self.axis_taps(xs[d], out_shape[d], scale[d], roi[d])));
        }
        if numel(&out_shape) == 0 || numel(&xs) == 0 {
            return Ok(vec![with_dtype!(x.dtype(), T, Ok::<Tensor, Error>(Tensor::from_vec(out_shape.clone(), Vec::<T>::new())))?]);
        }
        let e = self.extrapolation;
        let y = if self.mode == Mode::Nearest {
            match x.dtype() {
                DType::Bool => gather_nearest::<bool>(x, &taps, &out_shape, e != 0.0)?,
                dt => with_num!(dt, "Resize", T, gather_nearest::<T>(x, &taps, &out_shape, <T as Num>::of_f64(e)))?,
            }
        } else {
            with_float!(x.dtype(), "Resize in linear or cubic mode", T, interpolate::<T>(x, &taps, &out_shape, e))?
        };
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(mode: Mode, coord: Coord) -> ResizeKernel {
        ResizeKernel {
            mode,
            coord,
            nearest: Nearest::RoundPreferFloor,
            cubic_a: -0.75,
            exclude_outside: false,
            extrapolation: 0.0,
            antialias: false,
            axes: None,
            policy: AspectPolicy::Stretch,
            attr_scales: None,
            scales_slot: Some(2),
            sizes_slot: Some(3),
            roi_slot: Some(1),
        }
    }

    fn run(k: &ResizeKernel, x: Tensor, scales: &[f32]) -> Vec<f32> {
        let s = Tensor::new(vec![scales.len()], scales.to_vec()).unwrap();
        let mut ins = vec![Some(x), None, Some(s), None];
        k.run(&mut ins).unwrap().remove(0).as_f32().unwrap().to_vec()
    }

    #[test]
    fn linear_half_pixel_and_align_corners() {
        let x = Tensor::new(vec![1, 2], vec![0f32, 10.]).unwrap();
        // half_pixel, x2: coordinates -0.25, 0.25, 0.75, 1.25 -> clamped at the edges
        assert_eq!(run(&kernel(Mode::Linear, Coord::HalfPixel), x.clone(), &[1., 2.]), vec![0., 2.5, 7.5, 10.]);
        // align_corners, 2 -> 3: 0, 5, 10
        let y = run(&kernel(Mode::Linear, Coord::AlignCorners), x, &[1., 1.5]);
        assert_eq!(y, vec![0., 5., 10.]);
    }

    #[test]
    fn nearest_modes_and_any_dtype() {
        let mut k = kernel(Mode::Nearest, Coord::Asymmetric);
        let x = Tensor::new(vec![4], vec![1i64, 2, 3, 4]).unwrap();
        let s = Tensor::new(vec![1], vec![0.5f32]).unwrap();
        // downsample by 2: coordinates 0, 2
        let mut ins = vec![Some(x.clone()), None, Some(s.clone()), None];
        assert_eq!(k.run(&mut ins).unwrap()[0].as_i64().unwrap(), &[1, 3]);
        // half_pixel x0.5: coordinates 0.5, 2.5 -> prefer floor 0, 2 / prefer ceil 1, 3
        k.coord = Coord::HalfPixel;
        let mut ins = vec![Some(x.clone()), None, Some(s.clone()), None];
        assert_eq!(k.run(&mut ins).unwrap()[0].as_i64().unwrap(), &[1, 3]);
        k.nearest = Nearest::RoundPreferCeil;
        let mut ins = vec![Some(x), None, Some(s), None];
        assert_eq!(k.run(&mut ins).unwrap()[0].as_i64().unwrap(), &[2, 4]);
    }

    #[test]
    fn cubic_weights_sum_to_one() {
        let k = kernel(Mode::Cubic, Coord::HalfPixel);
        for r in [0.1, 0.5, 0.9, 1.0] {
            let (w, start) = k.weights(r, 1.0);
            assert_eq!(start, -1);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // ratio 1: the sample at x itself
        let (w, _) = k.weights(1.0, 1.0);
        assert!(w[2] == 1.0 && w[0] == 0.0 && w[1] == 0.0 && w[3] == 0.0);
    }
}
