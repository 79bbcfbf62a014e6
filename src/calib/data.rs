//! Calibration data: where the samples come from and how images become tensors.
//!
//! A [`CalibSource`] hands out samples one at a time by index (so memory stays bounded and
//! workers can load samples in parallel, in any order, with identical results). A sample is
//! one tensor per model input ([`InputTensor`]). Sources:
//!
//! * [`ImageFolder`]: `.jpg`/`.jpeg`/`.png` files (any case) found recursively under a
//!   folder, sorted by path component by component (like Python's
//!   `sorted(Path(dir).rglob(...))`), handed out in [`spread_order`] (so that any run of
//!   consecutive samples covers every class of a class-sorted folder), turned into
//!   `[1, 3, H, W]` (or `[1, H, W, 3]`) f32 tensors by a [`Preprocess`] spec. Only for
//!   single-input models.
//! * [`NpySource`]: ready tensors in an `.npz` archive, a single `.npy` file or a folder of
//!   `<input name>.npy` files. The **first axis of every array counts the samples**; sample `i`
//!   is row `spread_order(n)[i]` kept as a batch of one (`[N, C, H, W]` gives samples `[1, C, H, W]`). Arrays are
//!   matched to model inputs by name; a single array feeding a single-input model is matched
//!   whatever its name. Extra arrays (e.g. labels) are ignored by [`open_source`].
//!
//! [`open_source`] picks the source kind from the path, binds it to the model's inputs and
//! checks names, ranks, static dimensions and image sizes *before* any sample is loaded
//! ([`validate`]), so mistakes surface at once with messages naming the file.
//!
//! # Image preprocessing and how it matches Python
//!
//! The spec string (see [`Preprocess`]) follows the usual torchvision / PIL pipeline:
//! decode to RGB 8-bit (alpha dropped, grey replicated; like PIL's `convert("RGB")`) → resize
//! (`resize=N`: shorter side to N, the other `int(N * long / short)`, torchvision's rule;
//! `resize=HxW`: exact) with Pillow's bilinear filter, reproduced bit for bit (see
//! [`crate::calib::resize`]) → center crop (torchvision's offsets `round((h - ch) / 2)`, half to
//! even) → `x * scale` (default 1/255) → `(x - mean[c]) / std[c]` with `c` the channel index in
//! the tensor's order (after `order=BGR`, if given) → NCHW or NHWC. Arithmetic is done in f64
//! and rounded once to f32, so results agree with numpy/torch float32 pipelines to about one
//! ulp.
//!
//! Decoding gives Pillow's pixels exactly. The format is told by content (JPEG files start
//! `FF D8 FF`), as Pillow does, not by extension. JPEG goes through [`crate::calib::jpeg`]:
//! libjpeg-turbo's decoder (MozJPEG's libjpeg, vendored by the `mozjpeg-sys` crate and built
//! with `cc`, no nasm) set up as Pillow sets it up (ISLOW IDCT, fancy upsampling), with
//! Pillow's grey → RGB and CMYK → RGB conversions. Measured against Pillow 13 (libjpeg-turbo
//! 3.2): bit-identical on 699 synthetic files (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1 and mixed
//! sampling; baseline, progressive, arithmetic-coded, restart markers; grey, CMYK; 1x1 to
//! 255x250) and on 2,200 real CIFAR-10 and ImageNet JPEGs (4:2:0, 4:4:4, 4:2:2, 4:4:0, grey):
//! 0 differing values in 645 million. With MobileNetV2's `resize=256,crop=224` the tensors of
//! 250 ImageNet images equal a PIL + numpy pipeline's to 5e-7. (The `image` crate's
//! zune-jpeg, used before, differs on 12-26 % of the values of 4:2:0 files, by up to 4-7
//! levels, mostly from chroma-upsampling rounding; `jpeg-decoder` on 6-9 %, by up to 4.)
//! Truncated JPEGs are refused, as by Pillow. PNG goes through the `image` crate, also exact
//! for 8-bit files; 16-bit PNGs are reduced to 8 bits by the `image` crate (rounding
//! `v / 257`), which Pillow does differently.
//! EXIF orientation is ignored, as Pillow's `Image.open` does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::calib::jpeg;
use crate::calib::npy::NpyArray;
use crate::calib::resize::resize_bilinear_window;
use crate::error::{Error, Result, ResultExt};

/// A model input as the validator sees it: name and dims (`None` = dynamic).
pub type ModelInput = (String, Vec<Option<usize>>);

/// One input tensor of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    /// The model input it feeds.
    pub name: String,
    /// Its shape (batch of 1 first).
    pub shape: Vec<usize>,
    /// Row-major values, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

/// One calibration sample: a tensor per model input.
pub type Sample = Vec<InputTensor>;

/// What a source provides for one input, known before loading any sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInput {
    /// Input name.
    pub name: String,
    /// Per-sample shape; `None` where it varies between samples (images of different sizes).
    pub shape: Vec<Option<usize>>,
    /// Element type in the source (`uint8` for images, the array's dtype for npy).
    pub dtype: String,
}

impl fmt::Display for SourceInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' {} {}",
            self.name,
            fmt_dims(&self.shape),
            self.dtype
        )
    }
}

fn fmt_dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|x| x.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(","))
}

/// The order in which a source hands out its `n` stored samples: sample `i` is stored item
/// `(i · s) mod n`, with `s` the integer nearest `0.618 · n` that is coprime with `n`.
///
/// Calibration folders are usually sorted by class (`airplane/…`, `automobile/…`, or
/// ImageNet's `n01440764_…` names), and every consumer takes runs of consecutive samples: the
/// first `--calib-limit` or `samples=N`, a held-out tail. In stored order such a run would be
/// a few classes only (the first 256 of CIFAR-10's sorted 1,000 are airplanes, automobiles
/// and birds). Stepping by the golden ratio of `n` makes every run of consecutive samples
/// spread evenly over the whole set (the three-distance theorem), deterministically. All
/// samples are still visited exactly once, so statistics over the whole set do not change.
pub fn spread_order(n: usize) -> Vec<usize> {
    if n <= 2 {
        return (0..n).collect();
    }
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut s = ((n as f64) * 0.618_033_988_749_895).round().max(1.0) as usize;
    while gcd(s, n) != 1 {
        s += 1;
    }
    (0..n).map(|i| ((i as u128 * s as u128) % n as u128) as usize).collect()
}

/// A source of calibration samples.
pub trait CalibSource: Send + Sync + fmt::Debug {
    /// A short description for messages (kind and path).
    fn describe(&self) -> String;
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The inputs every sample provides.
    fn inputs(&self) -> Vec<SourceInput>;
    /// Loads sample `index` (`0..len()`).
    fn sample(&self, index: usize) -> Result<Sample>;
    /// Source-specific checks against the model beyond names and static dims (e.g. every
    /// image's size), run by [`validate`] before any sample is loaded.
    fn check(&self, _model_inputs: &[ModelInput]) -> Result<()> {
        Ok(())
    }
}

/// Iterates over all samples of a source in index order.
pub fn samples(source: &dyn CalibSource) -> impl Iterator<Item = Result<Sample>> + '_ {
    (0..source.len()).map(move |i| source.sample(i))
}

/// Checks a source against the model inputs before any work: at least one sample; every model
/// input provided, no extra input; ranks and static dims equal; then the source's own
/// [`CalibSource::check`].
pub fn validate(source: &dyn CalibSource, model_inputs: &[ModelInput]) -> Result<()> {
    let desc = source.describe();
    if source.is_empty() {
        return Err(Error::user(format!("{desc}: no calibration samples")));
    }
    let provided = source.inputs();
    let listing = || {
        provided
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, dims) in model_inputs {
        let Some(s) = provided.iter().find(|s| &s.name == name) else {
            return Err(Error::user(format!(
                "model input '{name}' {} has no calibration data; {desc} holds: {}",
                fmt_dims(dims),
                listing()
            )));
        };
        check_dims(name, dims, &s.shape).ctx(desc.clone())?;
    }
    for s in &provided {
        if !model_inputs.iter().any(|(n, _)| n == &s.name) {
            let names: Vec<String> = model_inputs.iter().map(|(n, _)| format!("'{n}'")).collect();
            return Err(Error::user(format!(
                "{desc}: {s} is not a model input (model inputs: {})",
                names.join(", ")
            )));
        }
    }
    source.check(model_inputs)
}

fn check_dims(name: &str, model: &[Option<usize>], data: &[Option<usize>]) -> Result<()> {
    let mismatch = |why: String| {
        Error::user(format!(
            "input '{name}': samples have shape {} but the model expects {} ({why})",
            fmt_dims(data),
            fmt_dims(model)
        ))
    };
    if model.len() != data.len() {
        return Err(mismatch(format!("rank {} vs {}", data.len(), model.len())));
    }
    for (i, (m, d)) in model.iter().zip(data).enumerate() {
        if let (Some(m), Some(d)) = (m, d) {
            if m != d {
                return Err(mismatch(format!("dim {i}: {d} vs {m}")));
            }
        }
    }
    Ok(())
}

/// The numpy dtype name that feeds an ONNX element type exactly.
pub fn numpy_name(elem: i32) -> Option<&'static str> {
    Some(match elem {
        1 => "float32",
        11 => "float64",
        7 => "int64",
        6 => "int32",
        2 => "uint8",
        9 => "bool",
        10 => "float16",
        _ => return None,
    })
}

/// Array dtypes against the inputs' declared element types (images feed float inputs).
pub fn check_dtypes(source: &dyn CalibSource, inputs: &[(ModelInput, i32)]) -> Result<()> {
    let mut bad = Vec::new();
    for s in source.inputs() {
        let Some(((name, _), elem)) = inputs.iter().find(|((n, _), _)| n == &s.name) else { continue };
        let image = s.dtype == "uint8" && source.describe().starts_with("image folder");
        let want = numpy_name(*elem);
        let ok = match want {
            None => *elem == 0,
            Some(w) => w == s.dtype || (image && matches!(*elem, 1 | 10 | 11)),
        };
        if !ok {
            bad.push(format!(
                "array '{}' is {} but model input '{name}' is {}",
                s.name,
                s.dtype,
                want.unwrap_or(crate::ir::tensor::dtype_name(*elem))
            ));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::user(format!(
        "{}: {} (save the arrays with the input's dtype, e.g. arr.astype(np.int64))",
        source.describe(),
        bad.join("; ")
    )))
}

// ---------------------------------------------------------------------------------------------
// Preprocessing spec

/// How to resize an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Shorter side to this many pixels, aspect kept (torchvision `Resize(int)`).
    ShorterSide(usize),
    /// Exactly `height x width`.
    Exact(usize, usize),
}

/// Channel order of the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (Caffe/OpenCV-trained models).
    Bgr,
}

/// Memory layout of the image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, C, H, W]`
    Nchw,
    /// `[1, H, W, C]`
    Nhwc,
}

/// Image preprocessing, parsed from `key=value` pairs separated by commas, e.g.
/// `resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225`.
///
/// Keys: `resize` (N = shorter side, or HxW), `crop` (center crop, N or HxW), `scale` (pixel
/// multiplier, a number or a fraction like `1/255`; default 1/255), `mean` and `std` (one value
/// or three separated by `:`, in the tensor's channel order; defaults 0 and 1), `order`
/// (`RGB` default, or `BGR`), `layout` (`NCHW` default, or `NHWC`). The empty string gives the
/// defaults. The spec may start with a preset name ([`PRESETS`]: `imagenet`, `imagenet-norm`, `none`);
/// key=value pairs after it override the preset's values, e.g. `imagenet,crop=256`.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Resize, applied first.
    pub resize: Option<Resize>,
    /// Center crop `(height, width)`, applied after resizing.
    pub crop: Option<(usize, usize)>,
    /// Multiplier applied to 0..=255 pixel values.
    pub scale: f64,
    /// Per-channel mean (3 values, tensor channel order).
    pub mean: [f64; 3],
    /// Per-channel standard deviation (3 values, nonzero).
    pub std: [f64; 3],
    /// Channel order.
    pub order: ChannelOrder,
    /// Tensor layout.
    pub layout: Layout,
}

const VALID_KEYS: &str = "resize, crop, scale, mean, std, order, layout";

/// Named preprocessing specs, usable as the first item of `--preprocess`: (name, spec, what it is).
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "imagenet",
        "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225",
        "torchvision's ImageNet evaluation transform",
    ),
    (
        "imagenet-norm",
        "mean=0.485:0.456:0.406,std=0.229:0.224:0.225",
        "ImageNet mean/std only, images used at their own size",
    ),
    ("none", "scale=1/255", "pixels as x/255 only: no resize, crop or normalization"),
];

/// Whether `path` is calibration data read as images (a folder without .npy files), the
/// kind that needs a `--preprocess`.
pub fn is_image_folder(path: &Path) -> Result<bool> {
    Ok(path.is_dir() && npy_files(path)?.is_empty())
}

/// The presets, one per line: `  name  spec  (what it is)`.
pub fn presets_text() -> String {
    PRESETS.iter().map(|(n, spec, what)| format!("  {n:<14} {spec}  ({what})")).collect::<Vec<_>>().join("\n")
}

fn preset_names() -> String {
    PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            resize: None,
            crop: None,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            order: ChannelOrder::Rgb,
            layout: Layout::Nchw,
        }
    }
}

fn parse_size(key: &str, v: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::user(format!(
            "preprocessing: {key}='{v}' must be N or HxW with positive integers"
        ))
    };
    let num = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(bad)
    };
    match v.split_once(['x', 'X']) {
        Some((h, w)) => Ok((num(h)?, num(w)?)),
        None => {
            let n = num(v)?;
            Ok((n, n))
        }
    }
}

fn parse_number(key: &str, v: &str) -> Result<f64> {
    let bad = || Error::user(format!("preprocessing: {key}: '{v}' is not a number"));
    let x = match v.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| bad())?;
            let b: f64 = b.trim().parse().map_err(|_| bad())?;
            a / b
        }
        None => v.trim().parse().map_err(|_| bad())?,
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(bad())
    }
}

fn parse_triple(key: &str, v: &str) -> Result<[f64; 3]> {
    let vals: Vec<f64> = v
        .split(':')
        .map(|p| parse_number(key, p))
        .collect::<Result<_>>()?;
    match vals.as_slice() {
        [a] => Ok([*a; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err(Error::user(format!(
            "preprocessing: {key}='{v}' needs 1 or 3 values separated by ':', got {}",
            vals.len()
        ))),
    }
}

impl FromStr for Preprocess {
    type Err = Error;

    fn from_str(s: &str) -> Result<Preprocess> {
        let mut p = Preprocess::default();
        let mut seen: Vec<String> = Vec::new();
        for (i, item) in s.split(',').map(str::trim).filter(|i| !i.is_empty()).enumerate() {
            let Some((k, v)) = item.split_once('=') else {
                let Some(preset) = PRESETS.iter().find(|ps| ps.0.eq_ignore_ascii_case(item)) else {
                    return Err(Error::user(format!(
                        "preprocessing: '{item}' is neither key=value (valid keys: {VALID_KEYS}) nor a preset ({})",
                        preset_names()
                    )));
                };
                if i > 0 {
                    return Err(Error::user(format!(
                        "preprocessing: the preset '{item}' must come first; key=value pairs after it override it"
                    )));
                }
                p = preset.1.parse()?;
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if seen.contains(&k) {
                return Err(Error::user(format!("preprocessing: key '{k}' given twice")));
            }
            match k.as_str() {
                "resize" => {
                    p.resize = Some(if v.contains(['x', 'X']) {
                        let (h, w) = parse_size("resize", v)?;
                        Resize::Exact(h, w)
                    } else {
                        Resize::ShorterSide(parse_size("resize", v)?.0)
                    })
                }
                "crop" => p.crop = Some(parse_size("crop", v)?),
                "scale" => {
                    p.scale = parse_number("scale", v)?;
                    if p.scale == 0.0 {
                        return Err(Error::user("preprocessing: scale must not be 0"));
                    }
                }
                "mean" => p.mean = parse_triple("mean", v)?,
                "std" => {
                    p.std = parse_triple("std", v)?;
                    if p.std.contains(&0.0) {
                        return Err(Error::user(format!("preprocessing: std='{v}' contains 0")));
                    }
                }
                "order" => {
                    p.order = match v.to_ascii_lowercase().as_str() {
                        "rgb" => ChannelOrder::Rgb,
                        "bgr" => ChannelOrder::Bgr,
                        _ => {
                            return Err(Error::user(format!(
                                "preprocessing: order='{v}' must be RGB or BGR"
                            )))
                        }
                    }
                }
                "layout" => {
                    p.layout = match v.to_ascii_lowercase().as_str() {
                        "nchw" => Layout::Nchw,
                        "nhwc" => Layout::Nhwc,
                        _ => {
                            return Err(Error::user(format!(
                                "preprocessing: layout='{v}' must be NCHW or NHWC"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(Error::user(format!(
                        "preprocessing: unknown key '{k}'; valid keys: {VALID_KEYS}"
                    )))
                }
            }
            seen.push(k);
        }
        Ok(p)
    }
}

impl fmt::Display for Preprocess {
    /// The canonical spec string (all keys), which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match self.resize {
            Some(Resize::ShorterSide(n)) => parts.push(format!("resize={n}")),
            Some(Resize::Exact(h, w)) => parts.push(format!("resize={h}x{w}")),
            None => {}
        }
        if let Some((h, w)) = self.crop {
            parts.push(format!("crop={h}x{w}"));
        }
        let triple = |t: &[f64; 3]| format!("{}:{}:{}", t[0], t[1], t[2]);
        parts.push(format!("scale={}", self.scale));
        parts.push(format!("mean={}", triple(&self.mean)));
        parts.push(format!("std={}", triple(&self.std)));
        parts.push(format!(
            "order={}",
            if self.order == ChannelOrder::Rgb {
                "RGB"
            } else {
                "BGR"
            }
        ));
        parts.push(format!(
            "layout={}",
            if self.layout == Layout::Nchw {
                "NCHW"
            } else {
                "NHWC"
            }
        ));
        write!(f, "{}", parts.join(","))
    }
}

/// Offset of a centered window of `inner` in `outer` as torchvision computes it:
/// `round((outer - inner) / 2)` with Python's round-half-to-even.
fn center_offset(outer: usize, inner: usize) -> usize {
    let d = outer - inner;
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

impl Preprocess {
    /// Size `(h, w)` after resizing an image of `(h, w)`.
    pub fn resized_size(&self, h: usize, w: usize) -> (usize, usize) {
        match self.resize {
            None => (h, w),
            Some(Resize::Exact(rh, rw)) => (rh, rw),
            Some(Resize::ShorterSide(n)) => {
                if w <= h {
                    (n * h / w, n)
                } else {
                    (n, n * w / h)
                }
            }
        }
    }

    /// Final tensor size `(h, w)` for an image of `(h, w)`, or an error when the crop does not
    /// fit.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (rh, rw) = self.resized_size(h, w);
        if rh == 0 || rw == 0 {
            return Err(Error::user(format!(
                "image of {h}x{w} (HxW) resizes to nothing"
            )));
        }
        match self.crop {
            None => Ok((rh, rw)),
            Some((ch, cw)) => {
                if ch > rh || cw > rw {
                    Err(Error::user(format!(
                        "crop {ch}x{cw} does not fit the image, which is {rh}x{rw} (HxW) after resizing \
                         (from {h}x{w}); give a larger resize"
                    )))
                } else {
                    Ok((ch, cw))
                }
            }
        }
    }

    /// The output size when it is the same for every image (crop or exact resize given).
    pub fn fixed_output_size(&self) -> Option<(usize, usize)> {
        match (self.crop, self.resize) {
            (Some(c), _) => Some(c),
            (None, Some(Resize::Exact(h, w))) => Some((h, w)),
            _ => None,
        }
    }

    /// Tensor shape for an output of `(h, w)`.
    pub fn tensor_shape(&self, h: usize, w: usize) -> Vec<usize> {
        match self.layout {
            Layout::Nchw => vec![1, 3, h, w],
            Layout::Nhwc => vec![1, h, w, 3],
        }
    }

    /// Applies resize, crop and normalisation to an RGB 8-bit image (`h x w x 3`, row-major).
    pub fn apply_rgb8(&self, rgb: &[u8], h: usize, w: usize) -> Result<InputTensor> {
        if rgb.len() != h * w * 3 || h == 0 || w == 0 {
            return Err(Error::internal(format!(
                "RGB buffer of {} bytes for {h}x{w}",
                rgb.len()
            )));
        }
        let (oh, ow) = self.output_size(h, w)?;
        let (rh, rw) = self.resized_size(h, w);
        // only the crop's pixels of the resized image are computed
        let resized;
        let (img, top, left, rw) = if (rh, rw) != (h, w) {
            let (t, l) = (center_offset(rh, oh), center_offset(rw, ow));
            resized = resize_bilinear_window(rgb, w, h, 3, (rw, rh), (l, t), (ow, oh));
            (&resized[..], 0, 0, ow)
        } else {
            (rgb, center_offset(rh, oh), center_offset(rw, ow), rw)
        };
        let src_ch = match self.order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let mut data = vec![0f32; oh * ow * 3];
        for y in 0..oh {
            for x in 0..ow {
                let px = &img[((top + y) * rw + left + x) * 3..][..3];
                for c in 0..3 {
                    let v =
                        ((px[src_ch[c]] as f64 * self.scale - self.mean[c]) / self.std[c]) as f32;
                    let at = match self.layout {
                        Layout::Nchw => (c * oh + y) * ow + x,
                        Layout::Nhwc => (y * ow + x) * 3 + c,
                    };
                    data[at] = v;
                }
            }
        }
        Ok(InputTensor {
            name: String::new(),
            shape: self.tensor_shape(oh, ow),
            data,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Image folder

/// Extensions an [`ImageFolder`] picks up (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn has_image_ext(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_ctx(|| dir.display().to_string())?;
    for entry in rd {
        let entry = entry.with_ctx(|| dir.display().to_string())?;
        let path = entry.path();
        let ft = entry.file_type().with_ctx(|| path.display().to_string())?;
        // Real directories are walked; symlinked ones are not (no loops). Files and symlinks to
        // files count.
        if ft.is_dir() {
            collect_images(&path, out)?;
        } else if has_image_ext(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Images of a folder, decoded and preprocessed on demand.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    input: String,
    pre: Preprocess,
    expected_hw: Option<(usize, usize)>,
}

impl ImageFolder {
    /// Finds the images under `dir` (recursively, sorted, then in [`spread_order`], at most
    /// `limit`) for model input `input`. Errors when the folder is missing or holds no image.
    pub fn open(
        dir: &Path,
        input: &str,
        pre: Preprocess,
        limit: Option<usize>,
    ) -> Result<ImageFolder> {
        if !dir.is_dir() {
            return Err(Error::user(format!("'{}' is not a folder", dir.display())));
        }
        let mut files = Vec::new();
        collect_images(dir, &mut files)?;
        if files.is_empty() {
            return Err(Error::user(format!(
                "no images found under '{}' (searched recursively for {})",
                dir.display(),
                IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
            )));
        }
        files.sort();
        let order = spread_order(files.len());
        let mut files: Vec<PathBuf> = order.into_iter().map(|i| files[i].clone()).collect();
        if let Some(n) = limit {
            files.truncate(n);
        }
        Ok(ImageFolder {
            root: dir.to_path_buf(),
            files,
            input: input.to_string(),
            pre,
            expected_hw: None,
        })
    }

    /// Requires every preprocessed image to be `(h, w)`; [`open_source`] sets it from the
    /// model's static dims.
    pub fn with_expected_hw(mut self, hw: Option<(usize, usize)>) -> Self {
        self.expected_hw = hw;
        self
    }

    /// The image files, in sample order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The preprocessing spec.
    pub fn preprocess(&self) -> &Preprocess {
        &self.pre
    }

    fn size_error(
        &self,
        path: &Path,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        (eh, ew): (usize, usize),
    ) -> Error {
        let what = if (h, w) == (oh, ow) {
            format!("is {h}x{w} (HxW)")
        } else {
            format!("is {h}x{w} (HxW), {oh}x{ow} after preprocessing,")
        };
        let hint = if self.pre.resize.is_none() && self.pre.crop.is_none() {
            "; give resize= and/or crop= in the preprocessing spec"
        } else {
            ""
        };
        Error::user(format!(
            "image '{}' {what} but model input '{}' expects {eh}x{ew}{hint}",
            path.display(),
            self.input
        ))
    }

    /// Decodes and preprocesses one file.
    pub fn load(&self, path: &Path) -> Result<InputTensor> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).ctx(name.clone())?;
        let expected = self.expected_hw;
        let mut t = load_image_bytes(&self.pre, &bytes, &name, |hw, ohw| match expected {
            Some(e) if ohw != e => Err(self.size_error(path, hw, ohw, e)),
            _ => Ok(()),
        })?;
        t.name = self.input.clone();
        Ok(t)
    }
}

/// Decodes an image file's bytes and preprocesses them with `pre`: what [`ImageFolder`] does
/// for each file (`name` names it in errors). `check` sees the decoded `(h, w)` and the
/// preprocessed `(h, w)` before any pixel is resampled, and may refuse them.
pub fn load_image_bytes(
    pre: &Preprocess,
    bytes: &[u8],
    name: &str,
    check: impl FnOnce((usize, usize), (usize, usize)) -> Result<()>,
) -> Result<InputTensor> {
    let (w, h, rgb) = decode_rgb8(bytes).ctx(format!("cannot decode image '{name}'"))?;
    let (oh, ow) = pre.output_size(h, w).ctx(format!("image '{name}'"))?;
    check((h, w), (oh, ow))?;
    pre.apply_rgb8(&rgb, h, w)
}

/// Decodes an image file's bytes to 8-bit RGB: `(width, height, pixels)`. The format is told
/// by content, as Pillow does, not by extension: JPEG with [`jpeg::decode_rgb`] (Pillow's
/// pixels exactly), anything else (PNG) with the `image` crate.
fn decode_rgb8(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>)> {
    if jpeg::is_jpeg(bytes) {
        let img = jpeg::decode_rgb(bytes)?;
        return Ok((img.width, img.height, img.data));
    }
    use image::ImageDecoder;
    let decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()?
        .into_decoder()
        .map_err(|e| Error::user(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    check_pixels(w as usize, h as usize)?;
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::user(e.to_string()))?
        .to_rgb8();
    Ok((img.width() as usize, img.height() as usize, img.into_raw()))
}

/// Refuses an image above [`jpeg::MAX_PIXELS`] (Pillow's decompression-bomb limit) from its
/// header, before any pixel buffer is allocated.
fn check_pixels(w: usize, h: usize) -> Result<()> {
    if (w as u64) * (h as u64) > jpeg::MAX_PIXELS {
        return Err(Error::user(format!(
            "image of {w}x{h} pixels exceeds the limit of {} pixels (Pillow's decompression-bomb limit)",
            jpeg::MAX_PIXELS
        )));
    }
    Ok(())
}

/// `(width, height)` of an image file from its header.
fn image_size(path: &Path) -> Result<(usize, usize)> {
    let bytes = std::fs::read(path)?;
    let (w, h) = if jpeg::is_jpeg(&bytes) {
        jpeg::read_size(&bytes)?
    } else {
        let (w, h) = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()?
            .into_dimensions()
            .map_err(|e| Error::user(e.to_string()))?;
        (w as usize, h as usize)
    };
    check_pixels(w, h)?;
    Ok((w, h))
}

impl CalibSource for ImageFolder {
    fn describe(&self) -> String {
        format!("image folder '{}'", self.root.display())
    }

    fn len(&self) -> usize {
        self.files.len()
    }

    fn inputs(&self) -> Vec<SourceInput> {
        let (h, w) = match self.pre.fixed_output_size() {
            Some((h, w)) => (Some(h), Some(w)),
            None => (None, None),
        };
        let shape = match self.pre.layout {
            Layout::Nchw => vec![Some(1), Some(3), h, w],
            Layout::Nhwc => vec![Some(1), h, w, Some(3)],
        };
        vec![SourceInput {
            name: self.input.clone(),
            shape,
            dtype: "uint8".into(),
        }]
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let path = self.files.get(index).ok_or_else(|| {
            Error::internal(format!(
                "sample {index} out of range ({})",
                self.files.len()
            ))
        })?;
        Ok(vec![self.load(path)?])
    }

    /// Reads every image's header (not its pixels) and checks its preprocessed size against
    /// the model's static H and W.
    fn check(&self, model_inputs: &[ModelInput]) -> Result<()> {
        let expected = match self.expected_hw {
            Some(hw) => Some(hw),
            None => model_inputs
                .iter()
                .find(|(n, _)| n == &self.input)
                .and_then(|(_, d)| static_hw(d, self.pre.layout)),
        };
        for path in &self.files {
            let name = path.display().to_string();
            let (w, h) = image_size(path).ctx(format!("cannot read image '{name}'"))?;
            let (oh, ow) = self.pre.output_size(h, w).ctx(format!("image '{name}'"))?;
            if let Some((eh, ew)) = expected {
                if (oh, ow) != (eh, ew) {
                    return Err(self.size_error(path, (h, w), (oh, ow), (eh, ew)));
                }
            }
        }
        Ok(())
    }
}

/// Static `(H, W)` of a rank-4 image input with the given layout.
fn static_hw(dims: &[Option<usize>], layout: Layout) -> Option<(usize, usize)> {
    if dims.len() != 4 {
        return None;
    }
    let (h, w) = match layout {
        Layout::Nchw => (dims[2], dims[3]),
        Layout::Nhwc => (dims[1], dims[2]),
    };
    Some((h?, w?))
}

// ---------------------------------------------------------------------------------------------
// npy / npz

/// Ready tensors from `.npz` / `.npy` files; the first axis of every array counts samples.
#[derive(Debug)]
pub struct NpySource {
    desc: String,
    arrays: Vec<(String, NpyArray)>,
    /// Stored row of each sample ([`spread_order`]), truncated by [`NpySource::limit`].
    order: Vec<usize>,
}

impl NpySource {
    /// All `.npy` members of an `.npz` archive, named by member name without `.npy`.
    pub fn open_npz(path: &Path) -> Result<NpySource> {
        let arrays = NpyArray::open_npz(path)?;
        if arrays.is_empty() {
            return Err(Error::user(format!(
                "'{}' holds no .npy arrays",
                path.display()
            )));
        }
        NpySource::new(format!("'{}'", path.display()), arrays)
    }

    /// One `.npy` file, named by its file stem.
    pub fn open_npy(path: &Path) -> Result<NpySource> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("input")
            .to_string();
        let a = NpyArray::open(path)?;
        NpySource::new(format!("'{}'", path.display()), vec![(stem, a)])
    }

    /// Every `*.npy` file directly in `dir`, each named by its file stem (sorted by name).
    pub fn open_dir(dir: &Path) -> Result<NpySource> {
        let mut files = npy_files(dir)?;
        if files.is_empty() {
            return Err(Error::user(format!("no .npy files in '{}'", dir.display())));
        }
        files.sort();
        let mut arrays = Vec::new();
        for f in files {
            let stem = f
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            arrays.push((stem, NpyArray::open(&f)?));
        }
        NpySource::new(format!("folder '{}'", dir.display()), arrays)
    }

    fn new(desc: String, arrays: Vec<(String, NpyArray)>) -> Result<NpySource> {
        for (name, a) in &arrays {
            if a.shape.is_empty() {
                return Err(Error::user(format!(
                    "{desc}: array '{name}' is a scalar; the first axis must count the samples"
                )));
            }
            if a.rows() > 0 && a.row_len() == 0 {
                return Err(Error::user(format!(
                    "{desc}: array '{name}' has shape {:?}: its samples hold no values",
                    a.shape
                )));
            }
        }
        let len = arrays[0].1.rows();
        if let Some((name, a)) = arrays.iter().find(|(_, a)| a.rows() != len) {
            let all: Vec<String> = arrays
                .iter()
                .map(|(n, a)| format!("'{n}' {:?}", a.shape))
                .collect();
            return Err(Error::user(format!(
                "{desc}: arrays disagree on the number of samples (first axis): '{name}' has {}, '{}' has {len} ({})",
                a.rows(),
                arrays[0].0,
                all.join(", ")
            )));
        }
        Ok(NpySource { desc, arrays, order: spread_order(len) })
    }

    /// Keeps at most `n` samples (the first `n` in [`spread_order`]).
    pub fn limit(mut self, n: Option<usize>) -> Self {
        if let Some(n) = n {
            self.order.truncate(n);
        }
        self
    }

    /// Keeps only the arrays named in `mapping` (array name, model input name), renamed.
    /// Errors on an unknown array name.
    pub fn select(mut self, mapping: &[(String, String)]) -> Result<Self> {
        let mut kept = Vec::new();
        for (array, input) in mapping {
            let Some(pos) = self.arrays.iter().position(|(n, _)| n == array) else {
                return Err(Error::internal(format!(
                    "{}: no array '{array}'",
                    self.desc
                )));
            };
            let (_, a) = self.arrays.remove(pos);
            kept.push((input.clone(), a));
        }
        self.arrays = kept;
        Ok(self)
    }
}

fn npy_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_ctx(|| dir.display().to_string())? {
        let p = entry.with_ctx(|| dir.display().to_string())?.path();
        if p.is_file()
            && p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
        {
            files.push(p);
        }
    }
    Ok(files)
}

impl CalibSource for NpySource {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn inputs(&self) -> Vec<SourceInput> {
        self.arrays
            .iter()
            .map(|(n, a)| SourceInput {
                name: n.clone(),
                shape: std::iter::once(Some(1))
                    .chain(a.shape[1..].iter().map(|&d| Some(d)))
                    .collect(),
                dtype: a.dtype.name().to_string(),
            })
            .collect()
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let Some(&row) = self.order.get(index) else {
            return Err(Error::internal(format!(
                "sample {index} out of range ({})",
                self.order.len()
            )));
        };
        self.arrays
            .iter()
            .map(|(n, a)| {
                let mut shape = a.shape.clone();
                shape[0] = 1;
                Ok(InputTensor {
                    name: n.clone(),
                    shape,
                    data: a.read_rows(row, 1).ctx(self.desc.clone())?,
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Opening by path

/// Options for [`open_source`].
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Image preprocessing; `None` means the defaults for images, and is required for
    /// `.npy`/`.npz` data (which must already be tensors).
    pub preprocess: Option<Preprocess>,
    /// Use at most this many samples (the first ones in [`spread_order`]).
    pub limit: Option<usize>,
}

/// Opens calibration data at `path` for a model with `model_inputs`, and validates it before
/// returning (see [`validate`]):
///
/// * a `.npz` file, a `.npy` file, or a folder with `.npy` files directly in it → [`NpySource`];
/// * otherwise a folder → [`ImageFolder`] (single-input models only).
pub fn open_source(
    path: &Path,
    opts: &SourceOptions,
    model_inputs: &[ModelInput],
) -> Result<Box<dyn CalibSource>> {
    if model_inputs.is_empty() {
        return Err(Error::user("the model has no inputs to calibrate with"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    let npy = if path.is_file() {
        match ext.as_deref() {
            Some("npz") => Some(NpySource::open_npz(path)?),
            Some("npy") => Some(NpySource::open_npy(path)?),
            _ => {
                return Err(Error::user(format!(
                    "calibration data '{}': expected a folder of images, a .npz or .npy file, or a folder of .npy files",
                    path.display()
                )))
            }
        }
    } else if path.is_dir() {
        if npy_files(path)?.is_empty() {
            None
        } else {
            Some(NpySource::open_dir(path)?)
        }
    } else {
        return Err(Error::user(format!(
            "calibration data '{}' does not exist",
            path.display()
        )));
    };

    let source: Box<dyn CalibSource> = match npy {
        Some(src) => {
            if opts.preprocess.is_some() {
                return Err(Error::user(format!(
                    "{}: preprocessing applies to images only; .npy/.npz data must hold ready tensors",
                    src.describe()
                )));
            }
            let mapping = bind_arrays(&src, model_inputs)?;
            Box::new(src.select(&mapping)?.limit(opts.limit))
        }
        None => {
            if model_inputs.len() != 1 {
                let names: Vec<String> =
                    model_inputs.iter().map(|(n, _)| format!("'{n}'")).collect();
                return Err(Error::user(format!(
                    "an image folder can only feed a single-input model; this one has inputs {} (use .npz data)",
                    names.join(", ")
                )));
            }
            let (name, dims) = &model_inputs[0];
            let pre = opts.preprocess.clone().unwrap_or_default();
            if dims.len() != 4 {
                return Err(Error::user(format!(
                    "model input '{name}' has shape {}; images need a rank-4 input ({})",
                    fmt_dims(dims),
                    if pre.layout == Layout::Nchw {
                        "NCHW"
                    } else {
                        "NHWC"
                    }
                )));
            }
            let expected = static_hw(dims, pre.layout);
            Box::new(ImageFolder::open(path, name, pre, opts.limit)?.with_expected_hw(expected))
        }
    };
    validate(source.as_ref(), model_inputs)?;
    Ok(source)
}

/// Chooses which array feeds which model input: same name, or the only array for the only input.
fn bind_arrays(src: &NpySource, model_inputs: &[ModelInput]) -> Result<Vec<(String, String)>> {
    let arrays = src.inputs();
    if model_inputs.len() == 1 && arrays.len() == 1 {
        return Ok(vec![(arrays[0].name.clone(), model_inputs[0].0.clone())]);
    }
    let mut mapping = Vec::new();
    for (name, dims) in model_inputs {
        if !arrays.iter().any(|a| &a.name == name) {
            let listing: Vec<String> = src
                .arrays
                .iter()
                .map(|(n, a)| format!("'{n}' {:?} {}", a.shape, a.dtype.name()))
                .collect();
            return Err(Error::user(format!(
                "model input '{name}' {} has no array of that name; {} holds: {} (the first axis counts the samples)",
                fmt_dims(dims),
                src.describe(),
                listing.join(", ")
            )));
        }
        mapping.push((name.clone(), name.clone()));
    }
    Ok(mapping)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/calib-mini")
            .join(name)
    }

    fn input(name: &str, dims: &[Option<usize>]) -> ModelInput {
        (name.to_string(), dims.to_vec())
    }

    fn cifar_input() -> Vec<ModelInput> {
        vec![input("input", &[None, Some(3), Some(32), Some(32)])]
    }

    const CIFAR: &str = "mean=0.4914:0.4822:0.4465,std=0.2470:0.2435:0.2616";

    #[test]
    fn preprocess_parse() {
        let p: Preprocess = "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225"
            .parse()
            .unwrap();
        assert_eq!(p.resize, Some(Resize::ShorterSide(256)));
        assert_eq!(p.crop, Some((224, 224)));
        assert_eq!(p.mean, [0.485, 0.456, 0.406]);
        assert_eq!(p.scale, 1.0 / 255.0);
        assert_eq!(p.order, ChannelOrder::Rgb);
        assert_eq!(p.layout, Layout::Nchw);
        assert_eq!(p.to_string().parse::<Preprocess>().unwrap(), p);

        let q: Preprocess =
            "resize=20x30, crop=10x12, scale=1, mean=127.5, std=2, order=bgr, layout=NHWC"
                .parse()
                .unwrap();
        assert_eq!(q.resize, Some(Resize::Exact(20, 30)));
        assert_eq!(q.crop, Some((10, 12)));
        assert_eq!(q.mean, [127.5; 3]);
        assert_eq!(q.order, ChannelOrder::Bgr);
        assert_eq!(q.layout, Layout::Nhwc);
        assert_eq!(q.to_string().parse::<Preprocess>().unwrap(), q);
        assert_eq!("".parse::<Preprocess>().unwrap(), Preprocess::default());

        let e = "resize=256,flip=1"
            .parse::<Preprocess>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key 'flip'") && e.contains(VALID_KEYS),
            "{e}"
        );
        for bad in [
            "crop=0",
            "crop=axb",
            "mean=1:2",
            "std=1:0:1",
            "order=RGBA",
            "layout=CHW",
            "scale=x",
            "resize",
            "crop=3,crop=4",
        ] {
            assert!(bad.parse::<Preprocess>().is_err(), "{bad}");
        }
    }

    #[test]
    fn presets_expand_and_are_overridden_by_later_keys() {
        let full: Preprocess = "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225"
            .parse()
            .unwrap();
        assert_eq!("imagenet".parse::<Preprocess>().unwrap(), full);
        assert_eq!("ImageNet".parse::<Preprocess>().unwrap(), full);
        let cropped: Preprocess = "imagenet, crop=256".parse().unwrap();
        assert_eq!(cropped, Preprocess { crop: Some((256, 256)), ..full.clone() });
        let norm: Preprocess = "imagenet-norm".parse().unwrap();
        assert_eq!((norm.resize, norm.crop, norm.mean, norm.std), (None, None, full.mean, full.std));
        assert_eq!("none".parse::<Preprocess>().unwrap(), Preprocess::default());
        // Every preset's spec parses, and the name must come first.
        for (name, spec, _) in PRESETS {
            assert_eq!(name.parse::<Preprocess>().unwrap(), spec.parse::<Preprocess>().unwrap());
        }
        let e = "crop=200,imagenet".parse::<Preprocess>().unwrap_err().to_string();
        assert!(e.contains("must come first"), "{e}");
        let e = "imagenett".parse::<Preprocess>().unwrap_err().to_string();
        assert!(e.contains("nor a preset (imagenet, imagenet-norm, none)") && e.contains(VALID_KEYS), "{e}");
    }

    #[test]
    fn sizes_and_offsets() {
        let p: Preprocess = "resize=32".parse().unwrap();
        assert_eq!(p.resized_size(40, 48), (32, 38)); // int(32 * 48 / 40) = 38
        assert_eq!(p.resized_size(48, 40), (38, 32));
        assert_eq!(p.resized_size(100, 100), (32, 32));
        // torchvision: int(round((h - c) / 2)), Python rounding half to even.
        assert_eq!(center_offset(32, 24), 4);
        assert_eq!(center_offset(25, 24), 0); // round(0.5) = 0
        assert_eq!(center_offset(27, 24), 2); // round(1.5) = 2
        assert_eq!(center_offset(29, 24), 2); // round(2.5) = 2
        assert_eq!(center_offset(31, 24), 4); // round(3.5) = 4
        let c: Preprocess = "crop=40".parse().unwrap();
        let e = c.output_size(32, 32).unwrap_err().to_string();
        assert!(e.contains("crop 40x40 does not fit"), "{e}");
    }

    fn ref_array(name: &str) -> (Vec<usize>, Vec<f32>) {
        let a = NpyArray::open(&fixture(name)).unwrap();
        (a.shape.clone(), a.read_all().unwrap())
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn png_pixels_match_pil_exactly() {
        // d.png and g.png are files 3 and 6 in sorted order (the reference's rows); the
        // source hands them out in spread order.
        let pos = |i: usize| spread_order(8).iter().position(|&x| x == i).unwrap();
        let src = open_source(
            &fixture("img"),
            &SourceOptions {
                preprocess: Some(CIFAR.parse().unwrap()),
                limit: None,
            },
            &cifar_input(),
        )
        .unwrap();
        assert_eq!(src.len(), 8);
        let (shape, reference) = ref_array("ref_img.npy");
        assert_eq!(shape, vec![8, 3, 32, 32]);
        let n = 3 * 32 * 32;
        for i in [3, 6] {
            let s = src.sample(pos(i)).unwrap();
            assert_eq!(s[0].name, "input");
            assert_eq!(s[0].shape, vec![1, 3, 32, 32]);
            let d = max_diff(&s[0].data, &reference[i * n..(i + 1) * n]);
            assert!(d < 1e-6, "sample {i}: {d}");
        }
    }

    #[test]
    fn jpeg_pixels_match_pil_exactly() {
        let src =
            ImageFolder::open(&fixture("img"), "input", CIFAR.parse().unwrap(), None).unwrap();
        let names: Vec<String> = src
            .files()
            .iter()
            .map(|f| {
                f.strip_prefix(fixture("img"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        // sorted like Python's sorted(rglob), then handed out in spread order
        let sorted = ["a.jpg", "b.jpg", "c.JPEG", "d.png", "e.jpg", "f.jpg", "g.png", "sub/h.jpg"];
        let order = spread_order(8);
        assert_eq!(names, order.iter().map(|&i| sorted[i]).collect::<Vec<_>>());
        let (_, reference) = ref_array("ref_img.npy");
        let n = 3 * 32 * 32;
        for i in [0, 1, 2, 4, 5, 7] {
            let p = order.iter().position(|&x| x == i).unwrap();
            let s = src.sample(p).unwrap();
            // 1e-6 after normalisation is 1e-4 pixel levels: the decoded pixels are Pillow's.
            let d = max_diff(&s[0].data, &reference[i * n..(i + 1) * n]);
            assert!(d < 1e-6, "file {i} ({}): max diff {d}", sorted[i]);
        }
    }

    #[test]
    fn resize_and_crop_match_pil() {
        let cases = [
            ("resize=32", "ref_odd_resize.npy", vec![1, 3, 32, 38], CIFAR),
            (
                "resize=32,crop=24",
                "ref_odd_crop.npy",
                vec![1, 3, 24, 24],
                CIFAR,
            ),
            ("resize=15x18", "ref_odd_small.npy", vec![1, 3, 15, 18], ""),
        ];
        for (spec, reference, shape, norm) in cases {
            let full = if norm.is_empty() {
                spec.to_string()
            } else {
                format!("{spec},{norm}")
            };
            let folder =
                ImageFolder::open(&fixture("odd"), "x", full.parse().unwrap(), None).unwrap();
            let png = folder
                .files()
                .iter()
                .find(|f| f.extension().unwrap() == "png")
                .unwrap();
            let t = folder.load(png).unwrap();
            let (rshape, r) = ref_array(reference);
            assert_eq!(t.shape, shape, "{spec}");
            assert_eq!(rshape, shape, "{spec}");
            let d = max_diff(&t.data, &r);
            assert!(d < 1e-6, "{spec}: max diff {d}");
        }
        // Upscaling (no antialiasing stretch): 32x32 -> 45x70.
        let folder =
            ImageFolder::open(&fixture("img"), "x", "resize=45x70".parse().unwrap(), None).unwrap();
        let t = folder.load(&fixture("img/d.png")).unwrap();
        let (rshape, r) = ref_array("ref_up.npy");
        assert_eq!(t.shape, rshape);
        let d = max_diff(&t.data, &r);
        assert!(d < 1e-6, "upscale: max diff {d}");
        // JPEG through resize + crop.
        let folder = ImageFolder::open(
            &fixture("odd"),
            "x",
            format!("resize=32,crop=24,{CIFAR}").parse().unwrap(),
            None,
        )
        .unwrap();
        let jpg = folder
            .files()
            .iter()
            .find(|f| f.extension().unwrap() == "jpg")
            .unwrap();
        let t = folder.load(jpg).unwrap();
        let (_, r) = ref_array("ref_oddjpg_crop.npy");
        let d = max_diff(&t.data, &r);
        assert!(d < 1e-6, "JPEG resize + crop: max diff {d}");
    }

    #[test]
    fn layouts_and_bgr() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 10) as u8).collect(); // 2x3 image
        let p: Preprocess = "scale=1,layout=NHWC".parse().unwrap();
        let t = p.apply_rgb8(&rgb, 2, 3).unwrap();
        assert_eq!(t.shape, vec![1, 2, 3, 3]);
        assert_eq!(t.data, rgb.iter().map(|&v| v as f32).collect::<Vec<_>>());
        let p: Preprocess = "scale=1,order=BGR,mean=1:2:3".parse().unwrap();
        let t = p.apply_rgb8(&rgb, 2, 3).unwrap();
        assert_eq!(t.shape, vec![1, 3, 2, 3]);
        // channel 0 = blue (source channel 2) minus mean[0] = 1
        assert_eq!(t.data[0], 20.0 - 1.0);
        assert_eq!(t.data[6], 10.0 - 2.0); // green
        assert_eq!(t.data[12], 0.0 - 3.0); // red
        assert_eq!(t.data[12 + 5], 150.0 - 3.0); // red of pixel (1, 2)
    }

    #[test]
    fn image_folder_errors() {
        // Size mismatch without resize names the file and both sizes.
        let e = open_source(&fixture("odd"), &SourceOptions::default(), &cifar_input())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("odd")
                && e.contains("40x48")
                && e.contains("expects 32x32")
                && e.contains("resize="),
            "{e}"
        );
        // With resize but no crop the resized size is still wrong.
        let opts = SourceOptions {
            preprocess: Some("resize=32".parse().unwrap()),
            limit: None,
        };
        let e = open_source(&fixture("odd"), &opts, &cifar_input())
            .unwrap_err()
            .to_string();
        assert!(e.contains("32x38 after preprocessing"), "{e}");
        // Crop makes it fit.
        let opts = SourceOptions {
            preprocess: Some("resize=32,crop=32".parse().unwrap()),
            limit: None,
        };
        let src = open_source(&fixture("odd"), &opts, &cifar_input()).unwrap();
        assert_eq!(src.len(), 2);
        assert_eq!(src.sample(1).unwrap()[0].shape, vec![1, 3, 32, 32]);
        // Crop not matching the model's static size is caught by validation.
        let opts = SourceOptions {
            preprocess: Some("resize=32,crop=24".parse().unwrap()),
            limit: None,
        };
        let e = open_source(&fixture("odd"), &opts, &cifar_input())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dim 2: 24 vs 32"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let e = open_source(dir.path(), &SourceOptions::default(), &cifar_input())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&dir.path().display().to_string()) && e.contains(".jpg, .jpeg, .png"),
            "{e}"
        );

        std::fs::write(
            dir.path().join("broken.jpg"),
            b"\xff\xd8\xff\xe0 definitely not a jpeg",
        )
        .unwrap();
        let e = open_source(dir.path(), &SourceOptions::default(), &cifar_input())
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.jpg"), "{e}");
        // A header that reads but pixels that don't: the sample load names the file.
        let good = std::fs::read(fixture("img/d.png")).unwrap();
        std::fs::write(dir.path().join("broken.jpg"), &good[..good.len() / 2]).unwrap();
        let folder = ImageFolder::open(dir.path(), "input", Preprocess::default(), None).unwrap();
        let e = folder.sample(0).unwrap_err().to_string();
        assert!(e.contains("broken.jpg"), "{e}");
        // The same with a truncated JPEG: refused like Pillow does.
        let good = std::fs::read(fixture("img/a.jpg")).unwrap();
        std::fs::write(dir.path().join("broken.jpg"), &good[..good.len() - 100]).unwrap();
        let src = open_source(dir.path(), &SourceOptions::default(), &cifar_input()).unwrap();
        let e = src.sample(0).unwrap_err().to_string();
        assert!(
            e.contains("cannot decode image")
                && e.contains("broken.jpg")
                && e.contains("truncated"),
            "{e}"
        );

        let two = vec![
            input("a", &[None, Some(3), Some(32), Some(32)]),
            input("b", &[Some(1)]),
        ];
        let e = open_source(&fixture("img"), &SourceOptions::default(), &two)
            .unwrap_err()
            .to_string();
        assert!(e.contains("single-input"), "{e}");
        let e = open_source(
            &fixture("img"),
            &SourceOptions::default(),
            &[input("input", &[None, Some(3072)])],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rank-4"), "{e}");
        let e = open_source(
            &fixture("img"),
            &SourceOptions::default(),
            &[input("input", &[None, Some(1), Some(32), Some(32)])],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dim 1: 3 vs 1"), "{e}");
        let e = open_source(&fixture("nope"), &SourceOptions::default(), &cifar_input())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn spread_order_is_a_permutation_whose_runs_cover_every_class() {
        for n in [0usize, 1, 2, 3, 7, 10, 32, 250, 1000, 1024] {
            let o = spread_order(n);
            let mut seen = vec![false; n];
            o.iter().for_each(|&i| seen[i] = true);
            assert!(o.len() == n && seen.iter().all(|x| *x), "n={n}");
        }
        // 10 classes of 100, stored sorted by class: every run of 100 consecutive samples
        // (a limit, a held-out tail, a window in the middle) holds 7..=13 of each class; the
        // stored order would give one class.
        let o = spread_order(1000);
        for start in (0..=900).step_by(50) {
            let mut per = [0usize; 10];
            o[start..start + 100].iter().for_each(|&i| per[i / 100] += 1);
            assert!(per.iter().all(|&c| (7..=13).contains(&c)), "start {start}: {per:?}");
        }
        // ImageNet sample: 250 images of 250 classes; the first 64 reach all over the set
        let o = spread_order(250);
        let mut first: Vec<usize> = o[..64].to_vec();
        first.sort();
        assert!(first.windows(2).all(|w| w[1] - w[0] <= 6), "{first:?}");
    }

    #[test]
    fn image_folder_limit_and_dynamic_model() {
        let opts = SourceOptions {
            preprocess: None,
            limit: Some(3),
        };
        let dynamic = vec![input("img", &[None, Some(3), None, None])];
        let src = open_source(&fixture("img"), &opts, &dynamic).unwrap();
        assert_eq!(src.len(), 3);
        let all: Vec<Sample> = samples(src.as_ref()).collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0][0].data.iter().all(|v| (0.0..=1.0).contains(v)));
        // Dynamic H/W accept images of any size.
        let src = open_source(&fixture("odd"), &SourceOptions::default(), &dynamic).unwrap();
        assert_eq!(src.sample(0).unwrap()[0].shape, vec![1, 3, 40, 48]);
    }

    #[test]
    fn npz_sources() {
        let model = vec![input("x", &[None, Some(3), Some(4), Some(4)])];
        for f in ["arrays.npz", "arrays_z.npz"] {
            // 'y' (labels) is ignored.
            let src = open_source(&fixture(f), &SourceOptions::default(), &model).unwrap();
            assert_eq!(src.len(), 5);
            // row 2 of the arrays, handed out in spread order
            let s = src.sample(spread_order(5).iter().position(|&x| x == 2).unwrap()).unwrap();
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].name, "x");
            assert_eq!(s[0].shape, vec![1, 3, 4, 4]);
            assert_eq!(s[0].data[0], 96.0 / 7.0 - 3.0);
        }
        // Two inputs by name, with limit.
        let model2 = vec![
            input("x", &[Some(1), Some(3), Some(4), Some(4)]),
            input("y", &[None]),
        ];
        let src = open_source(
            &fixture("arrays.npz"),
            &SourceOptions {
                preprocess: None,
                limit: Some(2),
            },
            &model2,
        )
        .unwrap();
        // the limit keeps the first two in spread order: rows 0 and 3 (y = -4, 5)
        assert_eq!(spread_order(5)[..2], [0, 3]);
        assert_eq!(src.len(), 2);
        let s = src.sample(1).unwrap();
        assert_eq!(
            (s[1].name.as_str(), s[1].shape.clone(), s[1].data.clone()),
            ("y", vec![1], vec![5.0])
        );
        // Missing input: the message lists what the file holds.
        let bad = vec![
            input("x", &[None, Some(3), Some(4), Some(4)]),
            input("mask", &[None, Some(4)]),
        ];
        let e = open_source(&fixture("arrays.npz"), &SourceOptions::default(), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'mask'")
                && e.contains("'x' [5, 3, 4, 4] float32")
                && e.contains("'y' [5] int64"),
            "{e}"
        );
        // Shape mismatch.
        let wrong = vec![input("x", &[None, Some(3), Some(8), Some(8)])];
        let e = open_source(&fixture("arrays.npz"), &SourceOptions::default(), &wrong)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("arrays.npz") && e.contains("dim 2: 4 vs 8"),
            "{e}"
        );
        // Preprocessing is refused for ready tensors.
        let opts = SourceOptions {
            preprocess: Some(Preprocess::default()),
            limit: None,
        };
        assert!(open_source(&fixture("arrays.npz"), &opts, &model).is_err());
    }

    #[test]
    fn npy_file_and_folder() {
        // A single .npy feeds a single-input model whatever its name.
        let model = vec![input("data", &[None, Some(3)])];
        let src = open_source(&fixture("f64.npy"), &SourceOptions::default(), &model).unwrap();
        assert_eq!(src.len(), 2);
        assert_eq!(src.inputs()[0].name, "data");
        assert_eq!(src.sample(1).unwrap()[0].data, vec![0.2, 0.6, 1.0]);

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
            crate::calib::npy::write_npy_f32(&mut f, shape, &data).unwrap();
        };
        write("a.npy", &[4, 2]);
        write("b.npy", &[4, 3, 2]);
        let model = vec![
            input("a", &[None, Some(2)]),
            input("b", &[None, Some(3), Some(2)]),
        ];
        let src = open_source(dir.path(), &SourceOptions::default(), &model).unwrap();
        assert_eq!(src.len(), 4);
        // sample 1 in spread order (0, 3, 2, 1) is row 3
        assert_eq!(spread_order(4), [0, 3, 2, 1]);
        let s = src.sample(1).unwrap();
        assert_eq!(s[0].data, vec![6.0, 7.0]);
        assert_eq!(s[1].shape, vec![1, 3, 2]);
        assert_eq!(s[1].data[0], 18.0);

        write("c.npy", &[5, 2]);
        let e = open_source(dir.path(), &SourceOptions::default(), &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("number of samples") && e.contains("'c'"), "{e}");

        let e = open_source(&fixture("make.py"), &SourceOptions::default(), &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a folder of images"), "{e}");
    }

    #[test]
    fn validate_catches_extras_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("z.npy")).unwrap();
        crate::calib::npy::write_npy_f32(&mut f, &[0, 2], &[]).unwrap();
        drop(f);
        let src = NpySource::open_dir(dir.path()).unwrap();
        let e = validate(&src, &[input("z", &[None, Some(2)])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no calibration samples"), "{e}");
        let src = NpySource::open_npz(&fixture("arrays.npz")).unwrap();
        let e = validate(&src, &[input("x", &[None, Some(3), Some(4), Some(4)])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'y'") && e.contains("not a model input"), "{e}");
    }
}
