#!/usr/bin/env python3
"""An experiment, not a tool: equalize the channels of residual streams before INT8.

  stream_equalize.py FLOAT.onnx OUT.onnx --dataset cifar10|imagenet [--alpha A] [--limit N]
                     [--min-ratio R]

A residual stream is a set of tensors joined by Add and Relu (both commute with a positive
per-channel scale) whose every producer is a group-1 Conv with a bias and whose every
consumer is a group-1 Conv reading it as data, or another Add/Relu of the set. Dividing the
producers' output channels (weights and bias) by s_c and multiplying the consumers' input
channels by s_c leaves the network's function unchanged while each stream channel's range
becomes amax_c / s_c. s_c = amax_c^A / wmax_c^(1-A) (amax over N calibration images, wmax the
consumers' largest weight in that input channel), normalised to a geometric mean of 1;
A = 1 equalizes the activations fully, A = 0.5 shares the range between activations and
weights. Streams whose channel ranges are within R x of their median are left alone. A stream
that reaches anything else (Slice, Pad, pooling, a graph output) is not a region and is skipped.

Then quantize OUT.onnx and FLOAT.onnx the same way with sparseqc and compare them with
fidelity_eval.py (docs/accuracy.md, "More label-free attempts").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402


def group(n: onnx.NodeProto) -> int:
    return next((x.i for x in n.attribute if x.name == "group"), 1)


def regions(g: onnx.GraphProto, inits: dict) -> list[tuple[list[str], list, list]]:
    """Channel-linear regions grown from every Add: (tensors, producer convs, consumer convs)."""
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    seen: set[str] = set()
    found = []
    for start in g.node:
        if start.op_type != "Add" or start.output[0] in seen:
            continue
        tensors: set[str] = set()
        writers: dict[str, onnx.NodeProto] = {}
        readers: dict[str, onnx.NodeProto] = {}
        todo, ok = [start.output[0]], True
        while todo and ok:
            t = todo.pop()
            if t in tensors:
                continue
            tensors.add(t)
            p = prod.get(t)
            if t in outputs or p is None:
                ok = False
                break
            if p.op_type == "Conv" and group(p) == 1 and len(p.input) == 3:
                writers[p.name] = p
            elif p.op_type in ("Add", "Relu") and not any(i in inits for i in p.input):
                todo += list(p.input)
            else:
                ok = False
                break
            for c in cons.get(t, []):
                if c.op_type == "Conv" and group(c) == 1 and c.input[0] == t:
                    readers[c.name] = c
                elif c.op_type in ("Add", "Relu"):
                    todo += [c.output[0], *c.input]
                else:
                    ok = False
                    break
        seen |= tensors
        if ok:
            found.append((sorted(tensors), list(writers.values()), list(readers.values())))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--dataset", choices=["cifar10", "imagenet"], required=True)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=64, help="calibration images for the channel ranges")
    ap.add_argument("--min-ratio", type=float, default=2.0)
    ap.add_argument("--data", default=str(sqc_data.DEFAULT_DATA))
    a = ap.parse_args()
    m = onnx.load(a.model)
    inits = {i.name: i for i in m.graph.initializer}
    found = regions(m.graph, inits)
    print(f"{len(found)} residual-stream regions")
    if not found:
        onnx.save(m, a.out)
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    names = sorted({t for r in found for t in r[0]})
    for t in names:
        probe.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    paths, _, pre = sqc_data.dataset_split(a.data, a.dataset, "calib")
    x = sqc_data.load_batch(paths[:a.limit], pre)
    vals = dict(zip(names, s.run(names, {s.get_inputs()[0].name: x})))
    for tensors, writers, readers in found:
        amax = np.max([np.abs(vals[t]).max(axis=(0, 2, 3)) for t in tensors], axis=0).astype(np.float64)
        wmax = np.max([np.abs(numpy_helper.to_array(inits[r.input[1]])).max(axis=(0, 2, 3)) for r in readers], axis=0)
        ratio = amax.max() / np.median(amax)
        line = f"{len(tensors)} tensors, {len(writers)} producers, {len(readers)} consumers, C={len(amax)}: channel range max/median {ratio:.1f}"
        if ratio < a.min_ratio:
            print(line + " (left alone)")
            continue
        sc = np.maximum(amax, 1e-8) ** a.alpha / np.maximum(wmax, 1e-8) ** (1 - a.alpha)
        sc /= np.exp(np.mean(np.log(sc)))
        for w in writers:
            for k, shape in ((1, (-1, 1, 1, 1)), (2, (-1,))):
                arr = numpy_helper.to_array(inits[w.input[k]]).astype(np.float64) / sc.reshape(shape)
                inits[w.input[k]].CopyFrom(numpy_helper.from_array(arr.astype(np.float32), w.input[k]))
        for r in readers:
            arr = numpy_helper.to_array(inits[r.input[1]]).astype(np.float64) * sc.reshape(1, -1, 1, 1)
            inits[r.input[1]].CopyFrom(numpy_helper.from_array(arr.astype(np.float32), r.input[1]))
        after = amax / sc
        print(line + f" -> {after.max() / np.median(after):.1f}")
    onnx.save(m, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
