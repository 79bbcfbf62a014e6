"""Shared helpers for sparseqc's Python scripts: dataset listing, labels and
preprocessing that reproduce the models' training (see shared/README.md).

CIFAR ResNets: RGB, scale to [0,1], subtract mean, divide by std, NCHW, 32x32, no resize.
MobileNetV2 (ImageNet): RGB, resize shorter side to 256 (PIL bilinear), center crop 224,
then the same scale/mean/std, NCHW.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"


def _normalize(arr_uint8: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32, (x/255 - mean)/std."""
    x = arr_uint8.astype(np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_cifar(path: str | os.PathLike) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        arr = np.asarray(im, dtype=np.uint8)
    return _normalize(arr)


def _resize_shorter(im: Image.Image, size: int) -> Image.Image:
    # Same arithmetic as torchvision.transforms.Resize(int) on a PIL image:
    # the shorter side becomes `size`, the longer one int(size * long / short).
    w, h = im.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) == (w, h):
        return im
    return im.resize((nw, nh), Image.BILINEAR)


def _center_crop(im: Image.Image, size: int) -> Image.Image:
    # torchvision.transforms.functional.center_crop rounding.
    w, h = im.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def preprocess_imagenet(path: str | os.PathLike) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        im = _resize_shorter(im, 256)
        im = _center_crop(im, 224)
        arr = np.asarray(im, dtype=np.uint8)
    return _normalize(arr)


PREPROCESS = {"cifar": preprocess_cifar, "cifar10": preprocess_cifar,
              "imagenet": preprocess_imagenet}


def list_images(directory: str | os.PathLike) -> list[Path]:
    """All images under `directory` (recursively), sorted by relative path."""
    d = Path(directory)
    files = [p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=lambda p: p.relative_to(d).as_posix())


def cifar_split(split_dir: str | os.PathLike) -> tuple[list[Path], list[int]]:
    """Images of <split_dir>/<class>/*.jpg; label = index of class in sorted folder names."""
    d = Path(split_dir)
    classes = sorted(p.name for p in d.iterdir() if p.is_dir())
    paths, labels = [], []
    for ci, c in enumerate(classes):
        for p in sorted((d / c).iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                paths.append(p)
                labels.append(ci)
    return paths, labels


def imagenet_split(split_dir: str | os.PathLike, wnids_file: str | os.PathLike) -> tuple[list[Path], list[int]]:
    """Images <split_dir>/<wnid>_*.JPEG; label = 0-based line of the wnid in wnids.txt."""
    wnids = [l.strip() for l in Path(wnids_file).read_text().splitlines() if l.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    for p in list_images(split_dir):
        wnid = p.name.split("_", 1)[0]
        if wnid not in index:
            raise ValueError(f"{p}: WordNet id {wnid!r} not in {wnids_file}")
        paths.append(p)
        labels.append(index[wnid])
    return paths, labels


def dataset_split(data_root: str | os.PathLike, dataset: str, split: str) -> tuple[list[Path], list[int], str]:
    """(paths, labels, preprocess-name) for a dataset split under data_root."""
    root = Path(data_root)
    if dataset == "cifar10":
        paths, labels = cifar_split(root / "cifar10" / split)
        return paths, labels, "cifar"
    if dataset == "imagenet":
        base = root / "imagenet-sample"
        paths, labels = imagenet_split(base / split, base / "wnids.txt")
        return paths, labels, "imagenet"
    raise ValueError(f"unknown dataset {dataset!r}")


def load_batch(paths, preprocess: str) -> np.ndarray:
    fn = PREPROCESS[preprocess]
    return np.stack([fn(p) for p in paths]).astype(np.float32, copy=False)


def ort_session(model_path: str | os.PathLike, threads: int = 2, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])


def peak_rss_mib_self() -> float:
    """Peak resident set size of this process, MiB (Linux ru_maxrss is KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
