#!/usr/bin/env python3
"""Bias correction diagnostic on a Q/DQ model, with onnxruntime (docs/accuracy.md).

For every Conv/Gemm in network order, measures the per-sample difference of channel means
between the float form (Q/DQ bypassed) and the quantized model on estimation samples, folds
the mean or the median of it into the bias, and prints the output SQNR against the float
form on held-out samples. Samples follow sparseqc's spread order (the first --est estimate,
the last --held score).

usage: bias_shift_diag.py QDQ.onnx --dataset imagenet|cifar10 [--estimator mean|median]
       [--est 64] [--held 64] [--data ../shared/data] [--show-layer N]
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402


def spread_order(n):
    if n <= 2:
        return list(range(n))
    s = max(1, round(n * 0.618033988749895))
    while math.gcd(s, n) != 1:
        s += 1
    return [(i * s) % n for i in range(n)]


def float_form(m):
    m = onnx.ModelProto.FromString(m.SerializeToString())
    made_by = {o: n for n in m.graph.node for o in n.output}
    bypass = {}
    for n in m.graph.node:
        q = made_by.get(n.input[0])
        if n.op_type == "DequantizeLinear" and q is not None and q.op_type == "QuantizeLinear":
            bypass[n.output[0]] = q.input[0]
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            n.input[i] = bypass.get(x, x)
    for o in m.graph.output:
        o.name = bypass.get(o.name, o.name)
    return m


def session(m, extra_outputs):
    m = onnx.ModelProto.FromString(m.SerializeToString())
    have = {o.name for o in m.graph.output}
    for name in extra_outputs:
        if name not in have:
            m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(sess, x, names):
    feed = sess.get_inputs()[0].name
    parts = [sess.run(names, {feed: x[i:i + 16]}) for i in range(0, len(x), 16)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]


def channel_means(v):
    return v.reshape(v.shape[0], v.shape[1], -1).mean(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--dataset", required=True, choices=["imagenet", "cifar10"])
    ap.add_argument("--estimator", default="median", choices=["mean", "median"])
    ap.add_argument("--est", type=int, default=64)
    ap.add_argument("--held", type=int, default=64)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    ap.add_argument("--show-layer", type=int, default=-1, help="print the 5 largest channel shifts of this layer")
    a = ap.parse_args()

    paths, _, prep = sqc_data.dataset_split(a.data, a.dataset, "calib")
    order = spread_order(len(paths))
    est = sqc_data.load_batch([paths[i] for i in order[:a.est]], prep)
    held = sqc_data.load_batch([paths[i] for i in order[-a.held:]], prep)

    q = onnx.load(a.model)
    f = float_form(q)
    layers = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]
    outs = [n.output[0] for n in layers]
    ref = [channel_means(v) for v in run(session(f, outs), est, outs)]
    out = q.graph.output[0].name
    f_held = run(session(f, []), held, [out])[0]

    def sqnr():
        y = run(session(q, []), held, [out])[0]
        return 10 * math.log10(float((f_held ** 2).sum() / ((y - f_held) ** 2).sum()))

    print(f"before: output SQNR {sqnr():.2f} dB on {len(held)} held-out samples")
    inits = {i.name: i for i in q.graph.initializer}
    for li, n in enumerate(layers):
        d = ref[li] - channel_means(run(session(q, [outs[li]]), est, [outs[li]])[0])
        shift = np.median(d, 0) if a.estimator == "median" else d.mean(0)
        if li == a.show_layer:
            for j in np.argsort(-np.abs(d.mean(0)))[:5]:
                lo, hi = np.percentile(d[:, j], [5, 95])
                print(f"  {n.name} channel {j}: mean {d[:, j].mean():+.4f} median {np.median(d[:, j]):+.4f} p5 {lo:+.3f} p95 {hi:+.3f}")
        b = numpy_helper.to_array(inits[n.input[2]]).copy() + shift.astype(np.float32)
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(b, n.input[2]))
    print(f"after ({a.estimator}): output SQNR {sqnr():.2f} dB")


if __name__ == "__main__":
    main()
