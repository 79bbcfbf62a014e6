#!/usr/bin/env python3
"""Rewrite every LayerNormalization of an ONNX model into ReduceMean/Sub/Mul/ReduceMean/Add/
Sqrt/Div/Mul/Add (the form exporters emit before opset 17), for interpreters without the op.

  decompose_layernorm.py IN.onnx OUT.onnx

Same function up to float rounding (mean and variance over the normalised axes, biased
variance, epsilon inside the square root). Only the first output (Y) may be used; opset < 18
(ReduceMean's axes as an attribute).
"""

import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def main() -> None:
    src, dst = sys.argv[1:3]
    m = onnx.load(src)
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset >= 18:
        raise SystemExit("opset >= 18: ReduceMean takes axes as an input; not handled")
    out = []
    for i, n in enumerate(m.graph.node):
        if n.op_type != "LayerNormalization":
            out.append(n)
            continue
        if len([o for o in n.output if o]) > 1:
            raise SystemExit(f"{n.name}: Mean/InvStdDev outputs are used")
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        if axis != -1:
            raise SystemExit(f"{n.name}: axis {axis} (only -1 handled)")
        x, scale = n.input[0], n.input[1]
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
        p = (n.name or f"LayerNormalization_{i}") + "/dec"
        e = p + "/eps"
        m.graph.initializer.append(numpy_helper.from_array(np.array(eps, dtype=np.float32), e))
        out += [
            helper.make_node("ReduceMean", [x], [p + "/mean"], name=p + "/mean", axes=[-1]),
            helper.make_node("Sub", [x, p + "/mean"], [p + "/d"], name=p + "/sub"),
            helper.make_node("Mul", [p + "/d", p + "/d"], [p + "/d2"], name=p + "/sq"),
            helper.make_node("ReduceMean", [p + "/d2"], [p + "/var"], name=p + "/var", axes=[-1]),
            helper.make_node("Add", [p + "/var", e], [p + "/ve"], name=p + "/add_eps"),
            helper.make_node("Sqrt", [p + "/ve"], [p + "/sd"], name=p + "/sqrt"),
            helper.make_node("Div", [p + "/d", p + "/sd"], [p + "/n"], name=p + "/div"),
        ]
        if bias:
            out.append(helper.make_node("Mul", [p + "/n", scale], [p + "/ns"], name=p + "/mul"))
            out.append(helper.make_node("Add", [p + "/ns", bias], [n.output[0]], name=p + "/add"))
        else:
            out.append(helper.make_node("Mul", [p + "/n", scale], [n.output[0]], name=p + "/mul"))
    del m.graph.node[:]
    m.graph.node.extend(out)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


if __name__ == "__main__":
    main()
