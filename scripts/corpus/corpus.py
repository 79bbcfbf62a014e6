#!/usr/bin/env python3
"""Runs the corpus of scripts/corpus/fetch.sh through sparseqc and measures the results.

    .venv/bin/python scripts/corpus/corpus.py [--models DIR] [--only NAME,...] [--timeout S]

For each model: calibration and held-out .npz inputs made here (random but valid: smooth
images in the range the model's preprocessing produces, token ids below the vocabulary,
int64 masks with padding; the held-out set is drawn separately and calibration never sees
it), then `sparseqc --dense` and the default pipeline, each with a timeout. Every output is
checked with onnx.checker and run in onnxruntime on the held-out inputs; fidelity is the
output SQNR (dB) against the float model in onnxruntime over all outputs and held-out
samples, and the top-1 agreement where the single output is a [batch, classes] classifier.
Prints a Markdown table (also written to DIR/../results.md).
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
N_CALIB, N_HELD = 16, 8

# per model: how its inputs are made. kind image: (C, H, W) for dynamic dims, value range
# (lo, hi) of the preprocessed image; kind tokens: vocabulary, sequence length.
SPECS = {
    "light_": dict(kind="image", range=(-120.0, 135.0), real=False, note="weights are ConstantOfShape fills (onnx backend test data)"),
    "ch_PP-OCRv4_det_infer": dict(kind="image", hw=(160, 160), range=(-2.1, 2.6), real=True, note="PaddleOCR v4 detector (rapidocr wheel)"),
    "ch_PP-OCRv4_rec_infer": dict(kind="image", hw=(48, 160), range=(-1.0, 1.0), real=True, note="PaddleOCR v4 recognizer (rapidocr wheel)"),
    "ch_ppocr_mobile_v2.0_cls_infer": dict(kind="image", hw=(48, 192), range=(-1.0, 1.0), real=True, note="PaddleOCR v2 text-direction classifier (rapidocr wheel)"),
    "bert_tiny": dict(kind="tokens", vocab=1000, seq=16, real=False, note="BERT-shaped, torch export, random weights"),
    "vit_tiny": dict(kind="image", range=(-2.0, 2.0), real=False, note="ViT-shaped, torch export, random weights"),
}


def spec_for(name):
    for k, v in SPECS.items():
        if name == k or (k.endswith("_") and name.startswith(k)):
            return v
    raise SystemExit(f"no input spec for {name}")


def smooth_images(rng, n, c, h, w, lo, hi):
    """Low-frequency random fields plus a little noise: image-like statistics, in [lo, hi]."""
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        coarse = rng.random((c, max(2, h // 16), max(2, w // 16))).astype(np.float32)
        up = np.kron(coarse, np.ones((16, 16), np.float32))[:, :h, :w]
        if up.shape[1] < h or up.shape[2] < w:
            up = np.pad(up, ((0, 0), (0, h - up.shape[1]), (0, w - up.shape[2])), mode="edge")
        x = np.clip(0.85 * up + 0.15 * rng.random((c, h, w), dtype=np.float32), 0, 1)
        out[i] = lo + (hi - lo) * x
    return out


def dims_of(vi):
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in vi.type.tensor_type.shape.dim]


def make_inputs(model, spec, n, seed):
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feeds = collections.OrderedDict()
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        d = dims_of(vi)
        et = vi.type.tensor_type.elem_type
        if spec["kind"] == "image":
            c = d[1] or 3
            h = d[2] or spec.get("hw", (224, 224))[0]
            w = d[3] or spec.get("hw", (224, 224))[1]
            lo, hi = spec["range"]
            feeds[vi.name] = smooth_images(rng, n, c, h, w, lo, hi)
        elif vi.name in ("input_ids",):
            feeds[vi.name] = rng.integers(0, spec["vocab"], (n, spec["seq"])).astype(np.int64)
        elif "mask" in vi.name:
            m = np.ones((n, spec["seq"]), np.int64)
            for i in range(n):
                m[i, rng.integers(spec["seq"] // 2, spec["seq"] + 1):] = 0
            feeds[vi.name] = m.astype(onnx.helper.tensor_dtype_to_np_dtype(et))
        else:
            raise SystemExit(f"no recipe for input {vi.name}")
    return feeds


def ort_outputs(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    outs = []
    for i in range(n):
        outs.append(s.run(None, {k: v[i:i + 1] for k, v in feeds.items()}))
    return outs


def fidelity(ref, got):
    num = den = 0.0
    agree = []
    for r, g in zip(ref, got):
        for a, b in zip(r, g):
            a = np.asarray(a, np.float64)
            b = np.asarray(b, np.float64)
            num += float((a * a).sum())
            den += float(((a - b) ** 2).sum())
        if len(r) == 1 and np.asarray(r[0]).ndim == 2 and np.asarray(r[0]).shape[1] > 1:
            agree.append(int(np.argmax(r[0][0]) == np.argmax(g[0][0])))
    sqnr = float("inf") if den == 0 else 10 * np.log10(num / den) if num > 0 else float("nan")
    return sqnr, (float(np.mean(agree)) if agree else None)


def run_one(path, name, out_dir, timeout, binary):
    spec = spec_for(name)
    model = onnx.load(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    row = dict(model=name, opset=opset, ops=len(model.graph.node), real=spec["real"], note=spec["note"])
    calib = make_inputs(model, spec, N_CALIB, 1)
    held = make_inputs(model, spec, N_HELD, 2)
    cpath = os.path.join(out_dir, name + ".calib.npz")
    np.savez(cpath, **calib)
    ref = ort_outputs(path, held)
    for mode, extra in (("dense", ["--dense"]), ("default", [])):
        out = os.path.join(out_dir, f"{name}.{mode}.onnx")
        if os.path.exists(out):
            os.remove(out)
        cmd = [binary, path, "-o", out, "--calib", cpath, "-q"] + extra
        t0 = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            secs = time.time() - t0
            ok = p.returncode == 0
            err = (p.stderr.strip().splitlines() or [""])
            err = " ".join(err)[:300]
        except subprocess.TimeoutExpired:
            secs, ok, err = time.time() - t0, False, f"timeout after {timeout} s"
        res = dict(secs=secs, ok=ok, err=None if ok else err)
        if ok:
            try:
                onnx.checker.check_model(onnx.load(out))
                got = ort_outputs(out, held)
                res["sqnr"], res["top1"] = fidelity(ref, got)
            except Exception as e:  # noqa: BLE001 - reported in the table
                res["ok"] = False
                res["err"] = f"output check: {str(e).splitlines()[0][:300]}"
        row[mode] = res
        print(f"  {name} {mode}: {'ok' if res['ok'] else 'FAIL'} {secs:.1f} s "
              f"{('SQNR %.1f dB' % res['sqnr']) if res['ok'] else ''} {res.get('err') or ''}", flush=True)
    return row


def fmt(res):
    if res["ok"]:
        top = f", top-1 {100 * res['top1']:.0f} %" if res.get("top1") is not None else ""
        return f"ok ({res['secs']:.1f} s)", f"{res['sqnr']:.1f} dB{top}"
    return f"FAIL ({res['secs']:.1f} s)", res["err"].replace("|", "/")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.join(ROOT, "target", "corpus", "models"))
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "sparseqc"))
    a = ap.parse_args()
    out_dir = os.path.join(os.path.dirname(os.path.abspath(a.models)), "out")
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(f[:-5] for f in os.listdir(a.models) if f.endswith(".onnx"))
    if a.only:
        keep = a.only.split(",")
        names = [n for n in names if any(n.startswith(k) for k in keep)]
    rows = []
    for n in names:
        print(f"{n}:", flush=True)
        rows.append(run_one(os.path.join(a.models, n + ".onnx"), n, out_dir, a.timeout, a.binary))
    lines = ["| model | opset | ops | --dense | default | SQNR held-out (--dense) | SQNR held-out (default) | weights |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d_res, d_f = fmt(r["dense"])
        p_res, p_f = fmt(r["default"])
        lines.append(f"| {r['model']} | {r['opset']} | {r['ops']} | {d_res} | {p_res} | {d_f} | {p_f} | {'real' if r['real'] else 'not real: ' + r['note']} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(os.path.dirname(out_dir), "results.md"), "w") as f:
        f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
