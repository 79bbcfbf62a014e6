#!/usr/bin/env python3
"""Score models against a reference model on a labelled split, with onnxruntime (CPU).

  fidelity_eval.py REF.onnx MODEL.onnx [MODEL.onnx ...] --dataset cifar10|imagenet
                   [--split test|eval] [--limit N] [--data DIR]

Prints, for the reference and then each model: top-1 on the labels, top-1 agreement with the
reference's predictions, and the SQNR of the logits against the reference's
(10·log10(Σref² / Σ(ref − model)²)), and the paired top-1 difference to the reference
with its 95 % interval, and how the changed answers split. Of the images exactly one of the two gets right, b are the
reference's and c the model's; the difference is (c − b)/n with standard error
√(b + c − (c − b)²/n)/n (each image a paired trial). A difference whose interval covers 0
cannot be told apart from the luck of this split. The reference's median margin between its two
highest logits, next to the models' logit errors, shows how easily its answers flip. Graph optimisations are off (onnxruntime would otherwise
fuse Q/DQ into integer kernels). Used in docs/accuracy.md to compare INT8 variants of one
float model by how well they reproduce it, next to their top-1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402


def logits(path: str, x: np.ndarray, batch: int = 50) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def paired_difference(ref_ok: np.ndarray, model_ok: np.ndarray) -> str:
    """Top-1 difference model - reference in points, with a 95 % normal interval over paired images."""
    n = len(ref_ok)
    b = int((ref_ok & ~model_ok).sum())  # only the reference right
    c = int((model_ok & ~ref_ok).sum())  # only the model right
    d = (c - b) / n
    se = np.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n
    return (f"vs reference {100 * d:+.2f} points (95 % interval {100 * (d - 1.96 * se):+.2f} .. {100 * (d + 1.96 * se):+.2f}; "
            f"{b} images only it gets right, {c} only this one)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--dataset", choices=["cifar10", "imagenet"], required=True)
    ap.add_argument("--split", default=None, help="default: test (cifar10), eval (imagenet)")
    ap.add_argument("--limit", type=int, default=None, help="first N images of the split")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    a = ap.parse_args()
    split = a.split or ("test" if a.dataset == "cifar10" else "eval")
    paths, labels, pre = sqc_data.dataset_split(a.data, a.dataset, split)
    if a.limit:
        paths, labels = paths[:a.limit], labels[:a.limit]
    x = sqc_data.load_batch(paths, pre)
    y = np.asarray(labels)
    ref = logits(a.reference, x)
    ref_ok = ref.argmax(1) == y
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    print(f"{a.reference}: top-1 {100 * ref_ok.mean():.2f} % on {len(y)} images; median margin between its two highest "
          f"logits {np.median(margin):.2f} ({np.median(margin[ref_ok]) if ref_ok.any() else float('nan'):.2f} on the images it gets right, "
          f"{np.median(margin[~ref_ok]) if (~ref_ok).any() else float('nan'):.2f} on the rest)")
    for m in a.models:
        z = logits(m, x)
        noise = ((ref - z) ** 2).sum()
        sqnr = 10 * np.log10((ref ** 2).sum() / noise) if noise > 0 else float("inf")
        print(f"{m}: top-1 {100 * (z.argmax(1) == y).mean():.2f} %, agreement {100 * (z.argmax(1) == ref.argmax(1)).mean():.2f} %, "
              f"logit SQNR {sqnr:.2f} dB; {paired_difference(ref_ok, z.argmax(1) == y)}")
        changed = z.argmax(1) != ref.argmax(1)
        print(f"    changed answers {int(changed.sum())}: {int((changed & ref_ok).sum())} where the reference was right (all lost), "
              f"{int((changed & ~ref_ok).sum())} where it was wrong, {int((changed & ~ref_ok & (z.argmax(1) == y)).sum())} of them now right; "
              f"median |logit error| {np.median(np.abs(ref - z).max(axis=1)):.2f} (largest per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
