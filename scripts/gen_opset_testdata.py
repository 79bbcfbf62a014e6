#!/usr/bin/env python3
"""Writes testdata/opset/: small models at default-domain opsets 7 to 12 built with
onnx.helper (random weights, seeded), each with a calibration .npz (key = input name,
first axis counts samples), for tests/opset_models.rs (upgrade-opset + the default pipeline).

    .venv/bin/python scripts/gen_opset_testdata.py

Each model uses the pre-13 forms that upgrade-opset rewrites (attributes that became
inputs, Upsample, Resize-10, Softmax's 2-D coercion, BatchNormalization's spatial,
Dropout's ratio) next to the layers the pipeline quantizes. The script checks each model
with onnx.checker and runs it in onnxruntime before writing it.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "opset")
rng = np.random.default_rng(20261204)


def w(name, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else np.sqrt(2.0 / fan_in)
    return numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)


def bn(prefix, c):
    return [
        numpy_helper.from_array((1 + 0.1 * rng.standard_normal(c)).astype(np.float32), prefix + ".s"),
        numpy_helper.from_array((0.1 * rng.standard_normal(c)).astype(np.float32), prefix + ".b"),
        numpy_helper.from_array((0.1 * rng.standard_normal(c)).astype(np.float32), prefix + ".m"),
        numpy_helper.from_array((0.5 + rng.random(c)).astype(np.float32), prefix + ".v"),
    ]


def bn_inputs(x, prefix):
    return [x, prefix + ".s", prefix + ".b", prefix + ".m", prefix + ".v"]


def save(name, opset, nodes, inputs, outputs, inits, calib):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="gen_opset_testdata")
    m.ir_version = 4 if opset < 11 else 7
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    first = {k: v[:1] for k, v in calib.items()}
    sess.run(None, first)
    onnx.save(m, os.path.join(OUT, name + ".onnx"))
    np.savez(os.path.join(OUT, name + ".npz"), **calib)
    print(f"{name}: opset {opset}, {len(nodes)} nodes, {os.path.getsize(os.path.join(OUT, name + '.onnx'))} bytes")


def images(n, c, h, wd):
    return rng.standard_normal((n, c, h, wd)).astype(np.float32)


def cnn_opset7():
    """Conv-BN(spatial)-Clip(attrs)-Pad(attrs)-Conv-Upsample(attr scales)-Dropout(ratio)-Gemm-Softmax."""
    inits = [w("c1.w", 8, 3, 3, 3), *bn("bn1", 8), w("c2.w", 8, 8, 3, 3), w("c2.b", 8, scale=0.1),
             w("fc.w", 10, 8 * 8 * 8, scale=0.05), w("fc.b", 10, scale=0.1),
             numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat")]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", bn_inputs("c1", "bn1"), ["b1"], name="bn1", spatial=1, epsilon=1e-5),
        helper.make_node("Clip", ["b1"], ["r1"], name="relu6", min=0.0, max=6.0),
        helper.make_node("Pad", ["r1"], ["p1"], name="pad", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0),
        helper.make_node("Conv", ["p1", "c2.w", "c2.b"], ["c2"], name="conv2"),
        helper.make_node("Upsample", ["c2"], ["u"], name="up", mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]),
        helper.make_node("Relu", ["u"], ["r2"], name="relu2"),
        helper.make_node("Dropout", ["r2"], ["d"], name="drop", ratio=0.25),
        helper.make_node("Reshape", ["d", "flat"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])
    save("cnn_opset7", 7, nodes, [x], [y], inits, {"x": images(24, 3, 8, 8)})


def cnn_opset9():
    """Dynamic batch (-1 in the file), BN spatial, Upsample-9 linear (scales input), Slice attrs, Softmax on 4-D."""
    inits = [w("c1.w", 8, 3, 3, 3), *bn("bn1", 8), w("c2.w", 4, 8, 1, 1), w("c2.b", 4, scale=0.1),
             numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", bn_inputs("c1", "bn1"), ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Upsample", ["r1", "scales"], ["u"], name="up", mode="linear"),
        helper.make_node("Slice", ["u"], ["s"], name="crop", starts=[1, 1], ends=[-1, -1], axes=[2, 3]),
        helper.make_node("Conv", ["s", "c2.w", "c2.b"], ["c2"], name="head"),
        helper.make_node("Softmax", ["c2"], ["prob"], name="softmax", axis=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 6, 6])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [-1, 4, 10, 10])
    save("cnn_opset9", 9, nodes, [x], [y], inits, {"x": images(24, 3, 6, 6)})


def seg_opset10():
    """Resize-10 (nearest up, linear), TopK-free; symbolic batch."""
    inits = [w("c1.w", 8, 3, 3, 3), w("c1.b", 8, scale=0.1), w("c2.w", 8, 8, 3, 3), w("c2.b", 8, scale=0.1),
             w("c3.w", 2, 8, 1, 1), numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "up2")]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Resize", ["r2", "up2"], ["u1"], name="up_nearest", mode="nearest"),
        helper.make_node("Resize", ["r2", "up2"], ["u2"], name="up_linear", mode="linear"),
        helper.make_node("Add", ["u1", "u2"], ["a"], name="add"),
        helper.make_node("Conv", ["a", "c3.w"], ["y"], name="head"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 8, 8])
    save("seg_opset10", 10, nodes, [x], [y], inits, {"x": images(24, 3, 8, 8)})


def mlp_opset11():
    """Axes attributes (Unsqueeze/Squeeze/ReduceSum/Split) and Softmax over the last of 3 axes."""
    inits = [w("fc1.w", 8, 16), w("fc1.b", 16, scale=0.1), w("fc2.w", 16, 8), w("fc2.b", 8, scale=0.1)]
    nodes = [
        helper.make_node("Unsqueeze", ["x"], ["x4"], name="unsq", axes=[0]),
        helper.make_node("Squeeze", ["x4"], ["x3"], name="sq", axes=[0]),
        helper.make_node("MatMul", ["x3", "fc1.w"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "fc1.b"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "fc2.w"], ["o0"], name="fc2"),
        helper.make_node("Add", ["o0", "fc2.b"], ["o"], name="fc2_bias"),
        helper.make_node("Split", ["o"], ["oa", "ob"], name="split", axis=2, split=[3, 5]),
        helper.make_node("Softmax", ["oa"], ["pa"], name="softmax", axis=2),
        helper.make_node("ReduceSum", ["ob"], ["sb"], name="rsum", axes=[1], keepdims=1),
        helper.make_node("Clip", ["sb", "lo", "hi"], ["cb"], name="clip"),
    ]
    inits += [numpy_helper.from_array(np.array(-2.0, dtype=np.float32), "lo"),
              numpy_helper.from_array(np.array(2.0, dtype=np.float32), "hi")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4, 8])
    ya = helper.make_tensor_value_info("pa", TensorProto.FLOAT, [-1, 4, 3])
    yb = helper.make_tensor_value_info("cb", TensorProto.FLOAT, [-1, 1, 5])
    save("mlp_opset11", 11, nodes, [x], [ya, yb], inits, {"x": rng.standard_normal((24, 4, 8)).astype(np.float32)})


def tokens_opset12():
    """int64 token ids (dynamic batch and length) through Gather, and an int64 mask: the
    calibration arrays keep their dtype."""
    vocab, d = 50, 16
    inits = [w("emb", vocab, d, scale=1.0), w("fc.w", d, d), w("fc.b", d, scale=0.1), w("cls.w", d, 3)]
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
        helper.make_node("Cast", ["mask"], ["mf"], name="mask_f", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mf"], ["m3"], name="mask_u", axes=[2]),
        helper.make_node("Mul", ["e", "m3"], ["em"], name="mask_mul"),
        helper.make_node("MatMul", ["em", "fc.w"], ["h0"], name="fc"),
        helper.make_node("Add", ["h0", "fc.b"], ["h1"], name="fc_bias"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("ReduceMean", ["h"], ["p"], name="pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["p", "cls.w"], ["logits"], name="cls"),
    ]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
    n, t = 24, 8
    m = np.ones((n, t), dtype=np.int64)
    for i in range(n):
        m[i, rng.integers(4, t + 1):] = 0
    save("tokens_opset12", 12, nodes, [ids, mask], [y], inits,
         {"ids": rng.integers(0, vocab, (n, t)).astype(np.int64), "mask": m})


def main():
    os.makedirs(OUT, exist_ok=True)
    cnn_opset7()
    cnn_opset9()
    seg_opset10()
    mlp_opset11()
    tokens_opset12()
    return 0


if __name__ == "__main__":
    sys.exit(main())
