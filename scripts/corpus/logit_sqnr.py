#!/usr/bin/env python3
"""SQNR of a corpus model's logits: the input of its last Sigmoid or Softmax, where the output
itself is a probability (docs/coverage.md, "Models under 20 dB whose weights are real").

    .venv/bin/python scripts/corpus/logit_sqnr.py NAME [--op Sigmoid|Softmax]

Runs the float model (target/corpus/models/NAME.onnx) and the outputs of corpus.py
(target/corpus/out/NAME.{dense,default}.onnx) in onnxruntime on corpus.py's held-out inputs
and prints the logits' range and the SQNR of logits and outputs against the float model.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402


def sqnr(ref, got):
    return 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--op", default="Sigmoid")
    a = ap.parse_args()
    base = os.path.join(corpus.ROOT, "target", "corpus")
    model = os.path.join(base, "models", a.name + ".onnx")
    f = onnx.load(model)
    last = [n for n in f.graph.node if n.op_type == a.op][-1]
    x = last.input[0]
    feeds = corpus.make_inputs(f, corpus.spec_for(a.name), corpus.N_HELD, 2)

    def run(path):
        m = onnx.load(path)
        m.graph.output.append(helper.ValueInfoProto(name=x))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(m.SerializeToString(), so)
        r = [s.run(None, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(corpus.N_HELD)]
        logits = np.concatenate([o[-1].ravel() for o in r]).astype(np.float64)
        out = np.concatenate([o[0].ravel() for o in r]).astype(np.float64)
        return logits, out

    lf, of = run(model)
    print(f"float: logits {lf.min():.3g} .. {lf.max():.3g}, output max {of.max():.3g}")
    for mode in ("dense", "default"):
        l, o = run(os.path.join(base, "out", f"{a.name}.{mode}.onnx"))
        print(f"{mode}: logit SQNR {sqnr(lf, l):.1f} dB, output SQNR {sqnr(of, o):.1f} dB")


if __name__ == "__main__":
    main()
