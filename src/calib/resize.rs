//! Bilinear resizing of 8-bit images that reproduces Pillow's `Image.resize(size, BILINEAR)`
//! (and so torchvision's `Resize` on PIL images).
//!
//! Pillow's resampler, as its documentation and behaviour show: a separable convolution, first
//! along rows (when the width changes) into an 8-bit intermediate image, then along columns
//! (when the height changes); since Pillow 13 the other way round when the height shrinks by
//! more than twice as many pixels as the width (see [`vertical_first`]; the order changes the
//! rounding of the intermediate image, so it must be the same). For an output index `o` the source centre is
//! `c = (o + 0.5) * in / out`; when downscaling, the triangle filter `max(0, 1 - |t|)` is
//! stretched by the factor `s = in / out` (antialiasing), so the taps run over
//! `[c - s, c + s]`, each tap `j` weighted by `filter((j + 0.5 - c) / s)`, weights normalised to
//! sum 1. Weights are turned into 22-bit fixed point (rounded half away from zero), sums start
//! at half a unit, and each result is shifted back and clamped to `0..=255`. Doing the same
//! integer arithmetic here gives bit-identical pixels (see the tests in
//! [`crate::calib::data`], which compare with Pillow's output).

/// Fractional bits of the fixed-point weights.
const PRECISION_BITS: u32 = 22;

/// Filter taps for every output index along one axis.
struct Taps {
    /// For each output index: first source index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output index.
    weights: Vec<i32>,
    ksize: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let inv = 1.0 / filter_scale;
    let mut w = vec![0f64; ksize];
    for o in 0..out_size {
        let center = (o as f64 + 0.5) * scale;
        // Truncation toward zero, then clamping, as in C's (int) cast.
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64)
            .min(in_size as i64)
            .max(lo as i64) as usize;
        let n = (hi - lo).min(ksize);
        let mut sum = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = triangle((x as f64 + lo as f64 - center + 0.5) * inv);
            sum += *wx;
        }
        for x in 0..n {
            let k = if sum != 0.0 { w[x] / sum } else { w[x] };
            let f = k * (1u32 << PRECISION_BITS) as f64;
            weights[o * ksize + x] = if k < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((lo, n));
    }
    Taps {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output pixel: the fixed-point weighted sum of the source pixels `px(0..k.len())`,
/// rounded and clamped as Pillow does.
#[inline(always)]
fn apply_taps(k: &[i32], px: impl Fn(usize) -> u8) -> u8 {
    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
    for (j, &kj) in k.iter().enumerate() {
        acc += px(j) as i32 * kj;
    }
    clip8(acc)
}

/// Resizes an interleaved 8-bit image (`ch` channels, row-major `h x w x ch`) to
/// `out_w x out_h` like Pillow's bilinear `resize`. Sizes must be nonzero.
pub fn resize_bilinear(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    resize_bilinear_window(src, w, h, ch, (out_w, out_h), (0, 0), (out_w, out_h))
}

/// The window `[top, top + win_h) x [left, left + win_w)` (rows x columns) of
/// `resize_bilinear(src, w, h, ch, out_w, out_h)`, computing only its pixels (and the rows
/// of the horizontal pass its vertical taps read): a center crop after a resize costs the
/// crop's size, not the resized image's. Bit-identical to resizing then cropping.
#[allow(clippy::too_many_arguments)]
pub fn resize_bilinear_window(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    (out_w, out_h): (usize, usize),
    (left, top): (usize, usize),
    (win_w, win_h): (usize, usize),
) -> Vec<u8> {
    debug_assert_eq!(src.len(), w * h * ch);
    debug_assert!(left + win_w <= out_w && top + win_h <= out_h);
    if out_w != w && vertical_first(w, h, out_w, out_h) {
        return window_vertical_first(src, w, h, ch, (out_w, out_h), (left, top), (win_w, win_h));
    }
    // source rows the vertical pass reads for the window's rows
    let vt = (out_h != h).then(|| taps(h, out_h));
    let (r0, r1) = match &vt {
        Some(t) => {
            let rows = &t.bounds[top..top + win_h];
            let lo = rows.iter().map(|b| b.0).min().unwrap_or(0);
            let hi = rows.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
            (lo, hi.max(lo))
        }
        None => (top, top + win_h),
    };
    // horizontal pass over rows r0..r1, window columns only
    let mut mid = vec![0u8; (r1 - r0) * win_w * ch];
    if out_w != w {
        let t = taps(w, out_w);
        for y in r0..r1 {
            let row = &src[y * w * ch..(y + 1) * w * ch];
            for o in left..left + win_w {
                let (lo, n) = t.bounds[o];
                let k = &t.weights[o * t.ksize..o * t.ksize + n];
                for c in 0..ch {
                    mid[((y - r0) * win_w + o - left) * ch + c] = apply_taps(k, |x| row[(lo + x) * ch + c]);
                }
            }
        }
    } else {
        for y in r0..r1 {
            mid[(y - r0) * win_w * ch..(y - r0 + 1) * win_w * ch].copy_from_slice(&src[(y * w + left) * ch..(y * w + left + win_w) * ch]);
        }
    }
    let Some(t) = vt else { return mid };
    let stride = win_w * ch;
    let mut out = vec![0u8; stride * win_h];
    for o in top..top + win_h {
        let (lo, n) = t.bounds[o];
        let k = &t.weights[o * t.ksize..o * t.ksize + n];
        for i in 0..stride {
            out[(o - top) * stride + i] = apply_taps(k, |y| mid[(lo + y - r0) * stride + i]);
        }
    }
    out
}

/// Pillow's pass order (13.0, `ImagingResampleInner`): the vertical pass runs first when the
/// height shrinks by more than twice as many pixels as the width does; otherwise horizontal
/// first. The 8-bit rounding between the passes makes the order visible in the pixels.
fn vertical_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    out_h < h && (h - out_h) as i64 > 2 * (w as i64 - out_w as i64)
}

/// [`resize_bilinear_window`] with the vertical pass first: the window's rows over the source
/// columns its horizontal taps read, then the horizontal pass over those.
fn window_vertical_first(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    (out_w, out_h): (usize, usize),
    (left, top): (usize, usize),
    (win_w, win_h): (usize, usize),
) -> Vec<u8> {
    let vt = taps(h, out_h);
    let ht = taps(w, out_w);
    let cols = &ht.bounds[left..left + win_w];
    let c0 = cols.iter().map(|b| b.0).min().unwrap_or(0);
    let c1 = cols.iter().map(|b| b.0 + b.1).max().unwrap_or(0).max(c0);
    let mw = c1 - c0;
    let mut mid = vec![0u8; win_h * mw * ch];
    for o in top..top + win_h {
        let (lo, n) = vt.bounds[o];
        let k = &vt.weights[o * vt.ksize..o * vt.ksize + n];
        for x in c0..c1 {
            for c in 0..ch {
                mid[((o - top) * mw + x - c0) * ch + c] = apply_taps(k, |y| src[((lo + y) * w + x) * ch + c]);
            }
        }
    }
    let mut out = vec![0u8; win_h * win_w * ch];
    for y in 0..win_h {
        let row = &mid[y * mw * ch..(y + 1) * mw * ch];
        for o in left..left + win_w {
            let (lo, n) = ht.bounds[o];
            let k = &ht.weights[o * ht.ksize..o * ht.ksize + n];
            for c in 0..ch {
                out[(y * win_w + o - left) * ch + c] = apply_taps(k, |x| row[(lo + x - c0) * ch + c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_equals_the_crop_of_the_whole_resize() {
        let (w, h) = (37usize, 23usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        for (ow, oh) in [(20, 12), (37, 12), (20, 23), (37, 23), (50, 31), (9, 40), (36, 5), (50, 9)] {
            let full = resize_bilinear(&src, w, h, 3, ow, oh);
            for (l, t, cw, chh) in [(0, 0, ow, oh), (3, 2, ow / 2, oh / 2), (ow - 1, oh - 1, 1, 1), (1, 0, ow - 2, oh)] {
                let win = resize_bilinear_window(&src, w, h, 3, (ow, oh), (l, t), (cw, chh));
                let mut crop = Vec::new();
                for y in t..t + chh {
                    crop.extend_from_slice(&full[(y * ow + l) * 3..(y * ow + l + cw) * 3]);
                }
                assert_eq!(win, crop, "{ow}x{oh} window {l},{t} {cw}x{chh}");
            }
        }
    }

    #[test]
    fn identity_and_constant() {
        let img: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bilinear(&img, 4, 3, 3, 4, 3), img);
        let flat = vec![200u8; 10 * 8];
        for (ow, oh) in [(3, 5), (17, 2), (10, 1), (25, 19)] {
            assert!(resize_bilinear(&flat, 10, 8, 1, ow, oh)
                .iter()
                .all(|&v| v == 200));
        }
    }

    #[test]
    fn halving_averages_pairs() {
        // Downscaling by 2: the stretched triangle covers 4 taps with weights 1/8, 3/8, 3/8, 1/8
        // (2 taps at the border, renormalised).
        let row = [0u8, 80, 160, 240, 0, 80];
        let out = resize_bilinear(&row, 6, 1, 1, 3, 1);
        // o=1: centre 3, taps 1..5 weights (1,3,3,1)/8 over 80,160,240,0 -> 10+60+90+0
        assert_eq!(out[1], 160);
        // o=0: centre 1, taps 0..3 with weights (0.75, 0.75, 0.25) / 1.75 -> 57.14
        assert_eq!(out[0], 57);
        // Same values as Pillow: Image.fromarray(row, "L").resize((3, 1), BILINEAR).
        assert_eq!(out, [57, 160, 69]);
        assert_eq!(out.len(), 3);
    }
}
