//! `--preprocess resize=HxW` is bit-exact with Pillow's `Image.resize((W, H), BILINEAR)`, also
//! when the two axes are scaled by different factors (each axis has its own filter support).
//! The expected pixels come from Pillow in the repo's venv at test time.

mod common;
use common::*;

const PIL: &str = r#"
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(21)
h, w = 47, 61
# a smooth picture plus noise: gradients exercise the weights, noise the rounding
yy, xx = np.mgrid[0:h, 0:w]
base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256
src = ((base + rng.integers(0, 64, (h, w, 3))) % 256).astype(np.uint8)
print(w, h, src.tobytes().hex())
im = Image.fromarray(src, "RGB")
for arg in sys.argv[1:]:
    ow, oh = map(int, arg.split("x"))
    out = np.asarray(im.resize((ow, oh), Image.BILINEAR))
    print(ow, oh, out.tobytes().hex())
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn resize_with_unequal_scale_factors_matches_pillow() {
    // (W, H): one axis shrunk, the other grown or kept, both shrunk by different factors; Pillow
    // runs the vertical pass first in 50x9, 100x20, 224x11, 55x30, 60x44 (the height shrinks by
    // more than twice as many pixels as the width) and the horizontal pass first in the others
    let sizes = ["20x12", "50x9", "9x40", "13x31", "61x12", "16x47", "100x20", "7x90", "33x29", "224x11", "55x30", "55x35", "60x44", "60x45"];
    let out = run_python(PIL, &sizes);
    let mut lines = out.lines();
    let first: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let (w, h): (usize, usize) = (first[0].parse().unwrap(), first[1].parse().unwrap());
    let src = unhex(first[2]);
    let mut bad = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        let (ow, oh): (usize, usize) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let want = unhex(f[2]);
        let got = sparseqc::calib::resize::resize_bilinear(&src, w, h, 3, ow, oh);
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        if diff > 0 || got.len() != want.len() {
            bad.push(format!("{ow}x{oh}: {diff} of {} values differ", want.len()));
        }
        // a center window (what resize + crop computes) is the crop of the whole
        let (cw, chh) = (ow.div_ceil(2), oh.div_ceil(2));
        let (l, t) = ((ow - cw) / 2, (oh - chh) / 2);
        let win = sparseqc::calib::resize::resize_bilinear_window(&src, w, h, 3, (ow, oh), (l, t), (cw, chh));
        let crop: Vec<u8> = (t..t + chh).flat_map(|y| want[(y * ow + l) * 3..(y * ow + l + cw) * 3].to_vec()).collect();
        if win != crop {
            bad.push(format!("{ow}x{oh}: window {l},{t} {cw}x{chh} differs from Pillow's crop"));
        }
    }
    assert!(bad.is_empty(), "not bit-exact with Pillow: {}", bad.join("; "));
}

/// The whole `--preprocess` path (decode, resize=HxW, crop) against Pillow + the torchvision
/// center-crop rule, on a PNG with unequal scale factors.
#[test]
fn preprocess_exact_resize_and_crop_match_pillow() {
    let d = tmpdir();
    let png = d.path().join("p.png");
    let code = r#"
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(7)
src = rng.integers(0, 256, (53, 71, 3), dtype=np.uint8)
Image.fromarray(src, "RGB").save(sys.argv[1])
im = Image.open(sys.argv[1]).convert("RGB").resize((40, 19), Image.BILINEAR)
a = np.asarray(im)
top, left = int(round((19 - 15) / 2.0)), int(round((40 - 30) / 2.0))
print(a[top:top + 15, left:left + 30].tobytes().hex())
"#;
    let want = unhex(run_python(code, &[path_str(&png)]).trim());
    let pre: sparseqc::calib::Preprocess = "resize=19x40,crop=15x30,layout=NHWC,scale=1".parse().unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let t = sparseqc::calib::data::load_image_bytes(&pre, &bytes, "p.png", |_, _| Ok(())).unwrap();
    assert_eq!(t.shape, vec![1, 15, 30, 3]);
    let got: Vec<u8> = t.data.iter().map(|&v| v as u8).collect();
    assert_eq!(got, want);
}
