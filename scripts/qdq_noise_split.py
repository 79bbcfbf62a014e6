#!/usr/bin/env python3
"""Where a Q/DQ model's noise comes from: weights or activations (onnxruntime, CPU).

  qdq_noise_split.py QDQ.onnx FLOAT.onnx --dataset cifar10|imagenet [--split S] [--limit N]

FLOAT.onnx is the float model the Q/DQ model was made from (e.g. sparseqc's
`--passes fold-bn,cleanup` output). Runs three variants of QDQ.onnx (all Q/DQ pairs; only
the pairs whose input is an initializer, i.e. weights; only the others, i.e. activations) and
prints the SQNR of each one's logits against FLOAT.onnx and the top-1 agreement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402
from fidelity_eval import logits  # noqa: E402


def keep_only(model: onnx.ModelProto, kind: str) -> bytes:
    """`model` with the Q→DQ pairs of the other kind bypassed ('all' keeps every pair)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    rename, keep = {}, []
    for n in g.node:
        q = producer.get(n.input[0]) if n.op_type == "DequantizeLinear" and n.input else None
        if q is not None and q.op_type == "QuantizeLinear":
            is_weight = q.input[0] in inits
            if (kind == "weights" and not is_weight) or (kind == "activations" and is_weight):
                rename[n.output[0]] = q.input[0]
                continue
        keep.append(n)
    for n in keep:
        for i, x in enumerate(n.input):
            n.input[i] = rename.get(x, x)
    for o in g.output:
        o.name = rename.get(o.name, o.name)
    del g.node[:]
    g.node.extend(keep)
    return m.SerializeToString()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qdq")
    ap.add_argument("float")
    ap.add_argument("--dataset", choices=["cifar10", "imagenet"], required=True)
    ap.add_argument("--split", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    a = ap.parse_args()
    split = a.split or ("test" if a.dataset == "cifar10" else "eval")
    paths, _, pre = sqc_data.dataset_split(a.data, a.dataset, split)
    x = sqc_data.load_batch(paths[:a.limit] if a.limit else paths, pre)
    ref = logits(a.float, x)
    q = onnx.load(a.qdq)
    for kind in ["all", "weights", "activations"]:
        z = logits(keep_only(q, kind), x)
        sqnr = 10 * np.log10((ref ** 2).sum() / ((ref - z) ** 2).sum())
        print(f"Q/DQ on {kind:11}: logit SQNR {sqnr:.2f} dB, agreement {100 * (z.argmax(1) == ref.argmax(1)).mean():.2f} % ({len(x)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
