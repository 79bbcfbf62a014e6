#!/usr/bin/env python3
"""Fraction of a model's MatMul/Gemm multiply-accumulates whose weight is 2:4-sparse.

  sparse_mac_fraction.py MODEL.onnx [--batch 1] [--per-layer]

For every MatMul and Gemm: MACs = (rows of A) × K × N at batch size --batch (shapes from ONNX
shape inference, symbolic dims set to --batch). A layer counts as sparse when its right-hand
operand is a constant (followed back through DequantizeLinear/QuantizeLinear/Cast/Identity/
Transpose) in which every group of 4 consecutive values along K (TensorRT's axis: MatMul B axis
-2, Gemm B axis 0, or 1 with transB=1) holds at most 2 non-zeros. Prints the fraction over the
MatMuls with a constant weight and over all MatMuls (the attention Q·Kᵀ and softmax·V, whose
operands are both activations, cannot be 2:4 in TensorRT).
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--per-layer", action="store_true")
    a = ap.parse_args()
    m = onnx.load(a.model)
    for vi in list(m.graph.input) + list(m.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param or not d.dim_value:
                d.dim_value = a.batch
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    consts = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value":
                    consts[n.output[0]] = at.t

    def weight(name):
        """The constant behind `name` and whether a Transpose sits between."""
        transposed = False
        for _ in range(8):
            if name in consts:
                return numpy_helper.to_array(consts[name]).astype(np.float32), transposed
            p = producer.get(name)
            if p is None or p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Cast", "Identity", "Transpose"):
                return None, transposed
            transposed ^= p.op_type == "Transpose"
            name = p.input[0]
        return None, transposed

    def is_2of4(w, axis):
        w = np.moveaxis(w, axis, -1)
        if w.shape[-1] % 4:
            return False
        g = (w.reshape(-1, 4) != 0).sum(axis=1)
        return bool((g <= 2).all())

    tot = {"weighted": [0, 0], "all": [0, 0]}
    for n in m.graph.node:
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        out = shapes.get(n.output[0])
        a_shape = shapes.get(n.input[0]) or (list(consts[n.input[0]].dims) if n.input[0] in consts else None)
        if not out or not a_shape:
            raise SystemExit(f"no shape for {n.name}")
        trans_a = any(x.name == "transA" and x.i for x in n.attribute)
        k = a_shape[-2] if (n.op_type == "Gemm" and trans_a) else a_shape[-1]
        macs = int(np.prod(out)) * k
        w, tr = weight(n.input[1])
        sparse = False
        if w is not None:
            trans_b = n.op_type == "Gemm" and any(x.name == "transB" and x.i for x in n.attribute)
            axis = (1 if trans_b else 0) if n.op_type == "Gemm" else w.ndim - 2
            if tr and w.ndim == 2:
                axis = 1 - axis
            sparse = is_2of4(w, axis)
            tot["weighted"][1] += macs
            tot["weighted"][0] += macs * sparse
        tot["all"][1] += macs
        tot["all"][0] += macs * sparse
        if a.per_layer:
            print(f"{n.name:50s} {n.op_type:6s} macs={macs:>12d} {'2:4' if sparse else ('dense' if w is not None else 'act x act')}")
    for key, (s, t) in tot.items():
        print(f"{key}: {s}/{t} MACs 2:4 = {100.0 * s / max(t, 1):.1f}%")


if __name__ == "__main__":
    main()
