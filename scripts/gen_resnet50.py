#!/usr/bin/env python3
"""Generate a ResNet-50-shaped ONNX model with random weights (benchmark input).

  gen_resnet50.py OUT.onnx [--external] [--seed 0]
  gen_resnet50.py OUT.onnx --size-gb 2.2        # widened, > 2 GB, always external data
  gen_resnet50.py OUT.onnx --width-mult 2.0     # explicit widening

Topology: torchvision ResNet-50 (v1.5: stride on the 3x3 conv of each bottleneck):
7x7/2 stem conv + BN + ReLU + 3x3/2 MaxPool, bottleneck stages [3, 4, 6, 3] with widths
64/128/256/512 and expansion 4 (1x1 -> 3x3 -> 1x1 convs, each followed by BatchNormalization,
1x1/stride downsample + BN on the first block of each stage), residual Add + ReLU,
GlobalAveragePool, Flatten, Gemm 2048 -> 1000. Convs have no bias; BatchNormalization
is left unfolded. Opset 13, float32, input `input` N x 3 x 224 x 224, output `logits`.
At width 1 there are 25,557,032 trainable parameters (plus BN running statistics), about
102 MB. Weights are random (He-normal convs, BN statistics near identity) from a fixed
seed, so every run writes the same bytes.

Initializers are stored as raw_data. With --external (or --size-gb/--width-mult > 1
when the model would exceed 2 GB) the tensors are streamed into OUT.onnx.data next to
the model (one file, 4096-byte aligned offsets), so memory stays low.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
EXPANSION = 4
NUM_CLASSES = 1000
ALIGN = 4096


def _ch(base: int, mult: float) -> int:
    """Widened channel count, rounded to a multiple of 8 (at least 8)."""
    if mult == 1.0:
        return base
    return max(8, int(round(base * mult / 8.0)) * 8)


def param_count(mult: float) -> int:
    """Floats stored in the ONNX model (conv/fc weights + fc bias + 4 per BN channel)."""
    total = 0
    stem = _ch(64, mult)
    total += stem * 3 * 7 * 7 + 4 * stem
    cin = stem
    for width, blocks, _stride in STAGES:
        w = _ch(width, mult)
        cout = w * EXPANSION
        for b in range(blocks):
            total += w * cin + 4 * w
            total += w * w * 9 + 4 * w
            total += cout * w + 4 * cout
            if b == 0:
                total += cout * cin + 4 * cout
            cin = cout
    total += NUM_CLASSES * cin + NUM_CLASSES
    return total


class Builder:
    def __init__(self, rng: np.random.Generator, sink):
        self.rng = rng
        self.sink = sink  # callable(name, np.ndarray) -> TensorProto
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.n_params = 0

    def _add_init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.sink(name, arr))
        self.n_params += arr.size
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int) -> str:
        std = math.sqrt(2.0 / (cin * k * k))
        w = self.rng.standard_normal((cout, cin, k, k), dtype=np.float32)
        w *= np.float32(std)
        wn = self._add_init(f"{name}.weight", w)
        y = f"{name}_out"
        p = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, wn], [y], name=name, kernel_shape=[k, k], strides=[stride, stride],
            pads=[p, p, p, p], dilations=[1, 1], group=1))
        return y

    def bn(self, x: str, name: str, c: int, gamma_scale: float = 1.0) -> str:
        r = self.rng
        gamma = (r.uniform(0.5, 1.0, c) * gamma_scale).astype(np.float32)
        beta = r.uniform(-0.1, 0.1, c).astype(np.float32)
        mean = r.uniform(-0.1, 0.1, c).astype(np.float32)
        var = r.uniform(0.5, 1.5, c).astype(np.float32)
        ins = [x]
        for suffix, arr in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
            ins.append(self._add_init(f"{name}.{suffix}", arr))
        y = f"{name}_out"
        self.nodes.append(helper.make_node("BatchNormalization", ins, [y], name=name, epsilon=1e-5, momentum=0.9))
        return y

    def relu(self, x: str, name: str) -> str:
        y = f"{name}_out"
        self.nodes.append(helper.make_node("Relu", [x], [y], name=name))
        return y


def build(mult: float, seed: int, sink) -> tuple[onnx.ModelProto, int]:
    b = Builder(np.random.default_rng(seed), sink)
    stem = _ch(64, mult)
    x = b.conv("input", "conv1", 3, stem, 7, 2)
    x = b.bn(x, "bn1", stem)
    x = b.relu(x, "relu")
    b.nodes.append(helper.make_node("MaxPool", [x], ["maxpool_out"], name="maxpool",
                                    kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x = "maxpool_out"
    cin = stem
    for si, (width, blocks, stride) in enumerate(STAGES, start=1):
        w = _ch(width, mult)
        cout = w * EXPANSION
        for bi in range(blocks):
            p = f"layer{si}.{bi}"
            s = stride if bi == 0 else 1
            identity = x
            y = b.conv(x, f"{p}.conv1", cin, w, 1, 1)
            y = b.bn(y, f"{p}.bn1", w)
            y = b.relu(y, f"{p}.relu1")
            y = b.conv(y, f"{p}.conv2", w, w, 3, s)
            y = b.bn(y, f"{p}.bn2", w)
            y = b.relu(y, f"{p}.relu2")
            y = b.conv(y, f"{p}.conv3", w, cout, 1, 1)
            # small last-BN gamma keeps the residual stream bounded with random weights
            y = b.bn(y, f"{p}.bn3", cout, gamma_scale=0.2)
            if bi == 0:
                identity = b.conv(x, f"{p}.downsample.0", cin, cout, 1, s)
                identity = b.bn(identity, f"{p}.downsample.1", cout)
            a = f"{p}.add_out"
            b.nodes.append(helper.make_node("Add", [y, identity], [a], name=f"{p}.add"))
            x = b.relu(a, f"{p}.relu3")
            cin = cout
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap_out"], name="avgpool"))
    b.nodes.append(helper.make_node("Flatten", ["gap_out"], ["flat_out"], name="flatten", axis=1))
    fc_w = b.rng.standard_normal((NUM_CLASSES, cin), dtype=np.float32) * np.float32(1.0 / math.sqrt(cin))
    fc_b = b.rng.uniform(-0.01, 0.01, NUM_CLASSES).astype(np.float32)
    b._add_init("fc.weight", fc_w)
    b._add_init("fc.bias", fc_b)
    b.nodes.append(helper.make_node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["logits"], name="fc",
                                    alpha=1.0, beta=1.0, transB=1))

    graph = helper.make_graph(
        b.nodes, "resnet50_shaped",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="sparseqc-gen_resnet50", producer_version="1")
    model.ir_version = 7
    model.doc_string = f"ResNet-50-shaped random-weight model, width_mult={mult}, seed={seed}"
    return model, b.n_params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--external", action="store_true", help="store initializers in OUT.onnx.data")
    ap.add_argument("--size-gb", type=float, help="widen until the weights reach this many GB (1e9 bytes); "
                                                  "implies --external")
    ap.add_argument("--width-mult", type=float, default=1.0, help="channel width multiplier")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    mult = args.width_mult
    if args.size_gb:
        target = args.size_gb * 1e9 / 4
        mult = 1.0
        while param_count(mult) < target:
            mult = round(mult + 0.05, 2)
    n_expected = param_count(mult)
    external = args.external or args.size_gb is not None or n_expected * 4 > 1.9e9

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data_name = out.name + ".data"
    data_path = out.parent / data_name

    if external:
        fh = open(data_path, "wb")
        state = {"off": 0}

        def sink(name, arr):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            pad = (-state["off"]) % ALIGN
            if pad:
                fh.write(b"\0" * pad)
                state["off"] += pad
            raw = arr.tobytes()
            fh.write(raw)
            t = TensorProto()
            t.name = name
            t.data_type = TensorProto.FLOAT
            t.dims.extend(arr.shape)
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(state["off"])), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            state["off"] += len(raw)
            return t
    else:
        fh = None

        def sink(name, arr):
            return numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)  # raw_data

    try:
        model, n = build(mult, args.seed, sink)
    finally:
        if fh:
            fh.close()
    assert n == n_expected, (n, n_expected)
    if not external and data_path.exists():
        os.remove(data_path)
    onnx.save(model, str(out))
    size = out.stat().st_size + (data_path.stat().st_size if external else 0)
    print(f"wrote {out}{' + ' + data_name if external else ''}: width_mult={mult} params={n:,} "
          f"bytes={size:,} nodes={len(model.graph.node)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
