"""Regenerates the synthetic calibration fixtures in this folder (run from anywhere):

    python make.py          # everything
    python make.py jpeg     # only jpeg/ and ref_jpeg.npz (leaves the other files untouched)

Needs numpy and pillow. Everything is drawn from a fixed seed, so the files only change if
numpy's or PIL's encoders change. The reference tensors are what a typical onnxruntime/PIL
script computes:  np.asarray(img.convert("RGB"), np.float32) / 255, (x - mean) / std, HWC->CHW.

  img/            8 CIFAR-like 32x32 images: 6 JPEG (quality 75, 4:2:0) and 2 PNG, one in a
                  subfolder; file order = sorted by path.
  odd/odd.png     a 48x40 (WxH) PNG, for the resize tests and the size-mismatch error.
  odd/odd.jpg     the same picture as JPEG.
  ref_img.npy     [8,3,32,32] f32: img/ with CIFAR mean/std, no resize, in file order.
  ref_odd_resize.npy  [1,3,32,38] f32: odd.png, resize=32 (PIL bilinear, shorter side), no crop.
  ref_odd_crop.npy    [1,3,24,24] f32: odd.png, resize=32 then center crop 24 (torchvision rule).
  ref_odd_small.npy   [1,3,15,18] f32: odd.png resized to 18x15 (WxH) exactly, scale 1/255 only.
  ref_oddjpg_crop.npy [1,3,24,24] f32: odd.jpg, resize=32, crop=24.
  ref_up.npy      [1,3,45,70] f32: img/d.png upscaled to 70x45 (WxH), scale 1/255 only.
  jpeg/           JPEG variants for the decoder's exactness test, odd sizes so that chroma
                  upsampling meets image edges: 4:4:4 baseline (q90), 4:2:2 progressive, 4:2:0
                  progressive + optimized Huffman tables, 4:2:0 baseline q100, greyscale, CMYK
                  (Pillow writes Adobe-inverted CMYK).
  ref_jpeg.npz    uint8 [H,W,3] per jpeg/ file (member = file stem): Pillow's
                  np.asarray(Image.open(f).convert("RGB")), the decoder's exact target.
  arrays.npz      np.savez: x f32 [5,3,4,4], y i64 [5] (stored entries)
  arrays_z.npz    np.savez_compressed: same arrays (deflate)
  f64.npy, u8.npy, i64.npy, fortran.npy, be.npy  small arrays of those kinds
"""
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def picture(rng, w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi, 3)
    f = rng.uniform(0.05, 0.4, 3)
    img = np.stack([127 + 100 * np.sin(f[c] * x + a[c]) * np.cos(f[(c + 1) % 3] * y) for c in range(3)], -1)
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 12)
    disk = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    img[disk] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def norm(img, mean=MEAN, std=STD):
    x = np.asarray(img.convert("RGB"), np.float32) / 255.0
    x = (x - mean) / std
    return x.transpose(2, 0, 1)


def resize_shorter(img, size):
    w, h = img.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nh, nw = size, int(size * w / h)
    return img.resize((nw, nh), Image.BILINEAR)


def center_crop(img, size):
    w, h = img.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def main():
    rng = np.random.default_rng(20240601)
    os.makedirs(os.path.join(HERE, "img", "sub"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "odd"), exist_ok=True)
    names = ["a.jpg", "b.jpg", "c.JPEG", "d.png", "e.jpg", "f.jpg", "g.png", "sub/h.jpg"]
    for n in names:
        p = picture(rng, 32, 32)
        path = os.path.join(HERE, "img", n)
        if n.lower().endswith("png"):
            p.save(path)
        else:
            p.save(path, quality=75)
    files = sorted(names, key=lambda n: n.split("/"))
    ref = np.stack([norm(Image.open(os.path.join(HERE, "img", n))) for n in files])
    np.save(os.path.join(HERE, "ref_img.npy"), ref.astype(np.float32))

    odd = picture(rng, 48, 40)
    odd.save(os.path.join(HERE, "odd", "odd.png"))
    odd.save(os.path.join(HERE, "odd", "odd.jpg"), quality=90)
    o = Image.open(os.path.join(HERE, "odd", "odd.png"))
    np.save(os.path.join(HERE, "ref_odd_resize.npy"), norm(resize_shorter(o, 32))[None])
    np.save(os.path.join(HERE, "ref_odd_crop.npy"), norm(center_crop(resize_shorter(o, 32), 24))[None])
    small = o.resize((18, 15), Image.BILINEAR)
    np.save(os.path.join(HERE, "ref_odd_small.npy"), norm(small, np.zeros(3, np.float32), np.ones(3, np.float32))[None])
    up = Image.open(os.path.join(HERE, "img", "d.png")).resize((70, 45), Image.BILINEAR)
    np.save(os.path.join(HERE, "ref_up.npy"), norm(up, np.zeros(3, np.float32), np.ones(3, np.float32))[None])
    oj = Image.open(os.path.join(HERE, "odd", "odd.jpg"))
    np.save(os.path.join(HERE, "ref_oddjpg_crop.npy"), norm(center_crop(resize_shorter(oj, 32), 24))[None])

    x = np.arange(5 * 3 * 4 * 4, dtype=np.float32).reshape(5, 3, 4, 4) / 7.0 - 3.0
    y = np.arange(5, dtype=np.int64) * 3 - 4
    np.savez(os.path.join(HERE, "arrays.npz"), x=x, y=y)
    np.savez_compressed(os.path.join(HERE, "arrays_z.npz"), x=x, y=y)
    np.save(os.path.join(HERE, "f64.npy"), np.linspace(-1, 1, 6).reshape(2, 3))
    np.save(os.path.join(HERE, "u8.npy"), np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    np.save(os.path.join(HERE, "i64.npy"), np.array([[1, -2], [3, -4]], np.int64))
    np.save(os.path.join(HERE, "fortran.npy"), np.asfortranarray(np.ones((2, 3), np.float32)))
    np.save(os.path.join(HERE, "be.npy"), np.ones((2, 2), ">f4"))


def make_jpeg():
    rng = np.random.default_rng(20250301)
    os.makedirs(os.path.join(HERE, "jpeg"), exist_ok=True)
    variants = [
        ("s444", (23, 17), dict(quality=90, subsampling=0)),
        ("s422p", (30, 21), dict(quality=80, subsampling=1, progressive=True)),
        ("s420p", (27, 19), dict(quality=75, subsampling=2, progressive=True, optimize=True)),
        ("s420q100", (21, 26), dict(quality=100, subsampling=2)),
        ("gray", (19, 22), dict(quality=85)),
        ("cmyk", (18, 15), dict(quality=85)),
    ]
    refs = {}
    for name, (w, h), kw in variants:
        img = picture(rng, w, h)
        if name == "gray":
            img = img.convert("L")
        elif name == "cmyk":
            img = img.convert("CMYK")
        path = os.path.join(HERE, "jpeg", name + ".jpg")
        img.save(path, **kw)
        refs[name] = np.asarray(Image.open(path).convert("RGB"), np.uint8)
    np.savez(os.path.join(HERE, "ref_jpeg.npz"), **refs)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["jpeg"]:
        make_jpeg()
    else:
        main()
        make_jpeg()
