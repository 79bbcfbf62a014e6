#!/usr/bin/env python3
"""Top-1 of a CIFAR-10 ONNX classifier with onnxruntime (CPU) on a JPEG folder.

Usage: eval_vit.py MODEL.onnx DATA_DIR [--batch 500] [--threads 2] [--no-ort-opt] [--ops]

DATA_DIR holds one sub-folder of images per class; class index = position of the folder name
in sorted order (airplane=0 ... truck=9). Preprocessing, exactly as in training: Pillow decode,
RGB, x/255, minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225), NCHW
float32, 32x32, no resize. Prints `top1=XX.XX% (n=N)`; --ops also prints the graph's op
histogram, opset and input/output shapes.
"""
import argparse
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def list_images(root):
    if not os.path.isdir(root):
        sys.exit(f"error: {root} is not a folder")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        sys.exit(f"error: no class folders in {root}")
    items = []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                items.append((os.path.join(root, c, f), ci))
    return items


def load_batch(paths):
    x = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8)
        if a.shape != (32, 32, 3):
            sys.exit(f"error: {p}: image of shape {a.shape}, expected 32x32x3")
        x[i] = a
    x = x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return ((x - MEAN) / STD).astype(np.float32)


def describe(path):
    m = onnx.load(path)
    hist = {}
    for n in m.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    print("opset:", ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in m.opset_import))
    print("inputs:", [(v.name, shape(v)) for v in m.graph.input])
    print("outputs:", [(v.name, shape(v)) for v in m.graph.output])
    print(f"nodes: {len(m.graph.node)}, initializers: {len(m.graph.initializer)}, "
          f"parameters: {sum(int(np.prod(t.dims)) for t in m.graph.initializer)}")
    for k in sorted(hist):
        print(f"  {k}: {hist[k]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ort-opt", action="store_true", help="disable onnxruntime graph optimisations")
    ap.add_argument("--ops", action="store_true", help="print op histogram, opset, input/output shapes")
    a = ap.parse_args()
    if not os.path.isfile(a.model):
        sys.exit(f"error: {a.model} does not exist")
    if a.ops:
        describe(a.model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    if a.no_ort_opt:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    items = list_images(a.data)
    t = time.time()
    correct = 0
    for s in range(0, len(items), a.batch):
        chunk = items[s:s + a.batch]
        x = load_batch([p for p, _ in chunk])
        logits = sess.run(None, {in_name: x})[0]
        correct += int((logits.argmax(1) == np.array([c for _, c in chunk])).sum())
    print(f"top1={100.0 * correct / len(items):.2f}% (n={len(items)}) in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
