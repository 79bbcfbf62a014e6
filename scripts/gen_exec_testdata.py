"""Generates the onnxruntime cross-check cases of the reference interpreter (src/exec).

Each case is a folder testdata/exec/<name>/ with model.onnx, input_<i>.pb and output_<i>.pb
(serialized TensorProto, named after the graph's inputs/outputs), the outputs computed by
onnxruntime. Run from the repository root:  python scripts/gen_exec_testdata.py [GROUP ...]
(without arguments: every group, after emptying testdata/exec; with group names such as
`issue18`: only those groups' cases are rewritten). Requires onnx, onnxruntime and numpy.
"""
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "exec")
rng = np.random.default_rng(1234)


def rnd(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def case(name, nodes, inputs, outputs, inits=(), opset=13):
    """inputs: list of (name, ndarray); outputs: list of (name, elem type)."""
    graph = h.make_graph(
        nodes,
        name,
        [vi(n, nh.from_array(a).data_type, list(a.shape)) for n, a in inputs],
        [vi(n, t, None) for n, t in outputs],
        initializer=[nh.from_array(a, n) for n, a in inits],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8
    # (no onnx.checker: outputs are declared without shapes; onnxruntime validates the model)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    res = sess.run(None, {n: a for n, a in inputs})
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    for i, (n, a) in enumerate(inputs):
        with open(os.path.join(d, f"input_{i}.pb"), "wb") as f:
            f.write(nh.from_array(a, n).SerializeToString())
    for i, ((n, _), r) in enumerate(zip(outputs, res)):
        with open(os.path.join(d, f"output_{i}.pb"), "wb") as f:
            f.write(nh.from_array(np.asarray(r), n).SerializeToString())


F = TP.FLOAT


def conv_cases():
    x = rnd(2, 4, 9, 8)
    w = rnd(6, 4, 3, 3)
    b = rnd(6)
    case("conv_asym_pads_strides", [h.make_node("Conv", ["x", "w", "b"], ["y"], pads=[0, 1, 2, 0], strides=[2, 1])],
         [("x", x)], [("y", F)], [("w", w), ("b", b)])
    case("conv_group_dilation", [h.make_node("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 1], pads=[1, 1, 1, 1])],
         [("x", x)], [("y", F)], [("w", rnd(6, 2, 3, 3))])
    for ap in ["SAME_UPPER", "SAME_LOWER", "VALID"]:
        case(f"conv_autopad_{ap.lower()}", [h.make_node("Conv", ["x", "w"], ["y"], auto_pad=ap, strides=[2, 2])],
             [("x", rnd(1, 3, 7, 8))], [("y", F)], [("w", rnd(5, 3, 4, 2))])
    case("conv_depthwise", [
        h.make_node("Conv", ["x", "w1", "b1"], ["t"], group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("Conv", ["t", "w2"], ["y"], group=8, pads=[1, 1, 1, 1]),
    ], [("x", rnd(2, 8, 11, 10))], [("y", F)], [("w1", rnd(8, 1, 3, 3)), ("b1", rnd(8)), ("w2", rnd(8, 1, 3, 3))])
    case("conv_weight_as_input", [h.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0, 1, 0])],
         [("x", rnd(1, 3, 6, 6)), ("w", rnd(4, 3, 3, 3))], [("y", F)])
    case("conv_1x1_and_1d", [
        h.make_node("Conv", ["x", "w"], ["y"], pads=[2, 1], strides=[2], dilations=[2]),
        h.make_node("Conv", ["x", "w1"], ["z"]),
    ], [("x", rnd(2, 5, 17))], [("y", F), ("z", F)], [("w", rnd(7, 5, 3)), ("w1", rnd(20, 5, 1))])
    case("conv_3d", [h.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 1, 0, 1, 1], strides=[1, 2, 1])],
         [("x", rnd(1, 2, 5, 6, 5))], [("y", F)], [("w", rnd(3, 2, 3, 3, 2)), ("b", rnd(3))])
    case("conv_transpose", [
        h.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 0]),
        h.make_node("ConvTranspose", ["x", "wg"], ["z"], group=2, strides=[1, 2], dilations=[2, 1]),
    ], [("x", rnd(1, 4, 5, 4))], [("y", F), ("z", F)], [("w", rnd(4, 3, 3, 3)), ("b", rnd(3)), ("wg", rnd(4, 2, 2, 3))])
    case("conv_transpose_output_shape", [
        h.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[9, 10]),
    ], [("x", rnd(1, 2, 4, 4))], [("y", F)], [("w", rnd(2, 3, 3, 3))])


def linalg_cases():
    a = rnd(3, 5)
    case("gemm_variants", [
        h.make_node("Gemm", ["a", "b", "c"], ["y1"], alpha=0.5, beta=2.0, transB=1),
        h.make_node("Gemm", ["at", "b2"], ["y2"], transA=1),
        h.make_node("Gemm", ["a", "bin", "c2"], ["y3"], alpha=1.5, beta=-1.0),
    ], [("a", a), ("at", rnd(5, 3)), ("bin", rnd(5, 4))], [("y1", F), ("y2", F), ("y3", F)],
        [("b", rnd(7, 5)), ("c", rnd(7)), ("b2", rnd(5, 6)), ("c2", rnd(3, 1))])
    case("matmul_broadcast", [
        h.make_node("MatMul", ["a", "b"], ["y"]),
        h.make_node("MatMul", ["v", "b"], ["z"]),
        h.make_node("MatMul", ["a", "v2"], ["u"]),
    ], [("a", rnd(2, 1, 3, 4)), ("b", rnd(3, 4, 5)), ("v", rnd(4)), ("v2", rnd(4))], [("y", F), ("z", F), ("u", F)])


def nn_cases():
    x = rnd(2, 3, 5, 4)
    case("bn_relu_clip", [
        h.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["t"], epsilon=1e-3),
        h.make_node("Relu", ["t"], ["r"]),
        h.make_node("Clip", ["t", "lo", "hi"], ["c"]),
        h.make_node("Clip", ["t", "", "hi"], ["c2"]),
        h.make_node("Sigmoid", ["t"], ["sg"]),
    ], [("x", x)], [("r", F), ("c", F), ("c2", F), ("sg", F)],
        [("s", rnd(3)), ("bb", rnd(3)), ("m", rnd(3)), ("v", np.abs(rnd(3)) + 0.1),
         ("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.7, np.float32))])
    case("clip_opset6", [h.make_node("Clip", ["x"], ["y"], min=-0.3, max=0.4)], [("x", x)], [("y", F)], opset=6)
    xp = rnd(1, 2, 7, 6)
    case("pools", [
        h.make_node("MaxPool", ["x"], ["m1"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1]),
        h.make_node("MaxPool", ["x"], ["m2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        h.make_node("MaxPool", ["x"], ["m3"], kernel_shape=[2, 2], dilations=[2, 2]),
        h.make_node("AveragePool", ["x"], ["a1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        h.make_node("AveragePool", ["x"], ["a2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        h.make_node("AveragePool", ["x"], ["a3"], kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1),
        h.make_node("AveragePool", ["x"], ["a4"], kernel_shape=[3, 2], auto_pad="SAME_UPPER", count_include_pad=1),
        h.make_node("GlobalAveragePool", ["x"], ["g"]),
        h.make_node("GlobalMaxPool", ["x"], ["gm"]),
    ], [("x", xp)], [(n, F) for n in ["m1", "m2", "m3", "a1", "a2", "a3", "a4", "g", "gm"]])
    case("softmax", [
        h.make_node("Softmax", ["x"], ["s1"], axis=1),
        h.make_node("Softmax", ["x"], ["s2"]),
        h.make_node("LogSoftmax", ["x"], ["s3"], axis=2),
    ], [("x", x)], [("s1", F), ("s2", F), ("s3", F)])
    case("softmax_opset11", [h.make_node("Softmax", ["x"], ["s"], axis=1)], [("x", x)], [("s", F)], opset=11)
    # values on .5 boundaries for round-half-to-even, and out-of-range values for saturation
    q = (np.arange(-40, 40, dtype=np.float32) * 0.25).reshape(2, 4, 10)
    case("qdq", [
        h.make_node("QuantizeLinear", ["x", "s", "zu"], ["qu"]),
        h.make_node("DequantizeLinear", ["qu", "s", "zu"], ["du"]),
        h.make_node("QuantizeLinear", ["x", "sc", "zc"], ["qc"], axis=1),
        h.make_node("DequantizeLinear", ["qc", "sc", "zc"], ["dc"], axis=1),
        h.make_node("QuantizeLinear", ["x", "s2"], ["qn"]),
    ], [("x", q)], [("qu", TP.UINT8), ("du", F), ("qc", TP.INT8), ("dc", F), ("qn", TP.UINT8)],
        [("s", np.array(0.5, np.float32)), ("zu", np.array(3, np.uint8)),
         ("sc", np.array([0.5, 0.25, 0.05, 1.0], np.float32)), ("zc", np.array([0, -2, 5, 0], np.int8)),
         ("s2", np.array(0.01, np.float32))])


def shape_cases():
    x = rnd(2, 3, 4, 5)
    i64 = lambda *v: np.array(v, np.int64)
    case("shape_chain", [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Shape", ["x"], ["s13"], start=1, end=-1),
        h.make_node("Gather", ["s", "i0"], ["n"]),
        h.make_node("Unsqueeze", ["n", "ax0"], ["nu"]),
        h.make_node("Concat", ["nu", "m1"], ["shp"], axis=0),
        h.make_node("Reshape", ["x", "shp"], ["r1"]),
        h.make_node("Reshape", ["x", "r0"], ["r2"]),
        h.make_node("Cast", ["s13"], ["sf"], to=TP.FLOAT),
        h.make_node("ConstantOfShape", ["s13"], ["cz"], value=nh.from_array(np.array([2.5], np.float32))),
        h.make_node("Mul", ["s", "s"], ["ss"]),
        h.make_node("Sub", ["ss", "i0"], ["sm"]),
        h.make_node("Div", ["sm", "two"], ["sd"]),
    ], [("x", x)], [("r1", F), ("r2", F), ("sf", F), ("cz", F), ("sd", TP.INT64), ("s13", TP.INT64)],
        [("i0", np.array(0, np.int64)), ("ax0", i64(0)), ("m1", i64(-1)), ("r0", i64(0, -1, 5)), ("two", i64(2))], opset=15)
    case("slice_variants", [
        h.make_node("Slice", ["x", "st1", "en1", "ax1", "sp1"], ["a"]),
        h.make_node("Slice", ["x", "st2", "en2", "ax2", "sp2"], ["b"]),
        h.make_node("Slice", ["x", "st3", "en3"], ["c"]),
        h.make_node("Slice", ["x", "st4", "en4", "ax4", "sp4"], ["d"]),
    ], [("x", x)], [("a", F), ("b", F), ("c", F), ("d", F)],
        [("st1", i64(-1, 0)), ("en1", i64(-1000, 5)), ("ax1", i64(3, 1)), ("sp1", i64(-2, 2)),
         ("st2", i64(10)), ("en2", i64(-10)), ("ax2", i64(2)), ("sp2", i64(-1)),
         ("st3", i64(0, 1)), ("en3", i64(1, 100)),
         ("st4", i64(0, 0)), ("en4", i64(9223372036854775807, 4)), ("ax4", i64(2, 3)), ("sp4", i64(2, 3))])
    case("pad_transpose_etc", [
        h.make_node("Pad", ["x", "p"], ["p1"]),
        h.make_node("Pad", ["x", "p", "cv"], ["p2"]),
        h.make_node("Pad", ["x", "pr"], ["p3"], mode="reflect"),
        h.make_node("Pad", ["x", "pr"], ["p4"], mode="edge"),
        h.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
        h.make_node("Transpose", ["x"], ["t2"]),
        h.make_node("Flatten", ["x"], ["f1"], axis=2),
        h.make_node("Flatten", ["x"], ["f2"], axis=0),
        h.make_node("Unsqueeze", ["x", "ua"], ["u"]),
        h.make_node("Squeeze", ["u", "ua"], ["sq"]),
        h.make_node("Expand", ["e", "es"], ["ex"]),
        h.make_node("Concat", ["x", "x"], ["cc"], axis=-1),
        h.make_node("Gather", ["x", "gi"], ["g2"], axis=2),
    ], [("x", x), ("e", rnd(3, 1))], [(n, F) for n in ["p1", "p2", "p3", "p4", "t1", "t2", "f1", "f2", "sq", "ex", "cc", "g2"]],
        [("p", i64(0, 1, 2, 0, 1, 0, 1, 3)), ("cv", np.array(1.5, np.float32)), ("pr", i64(0, 0, 2, 1, 0, 0, 3, 4)),
         ("ua", i64(0, -1)), ("es", i64(2, 1, 4)), ("gi", np.array([[3, -1], [0, 0]], np.int64))])
    case("broadcast_arith", [
        h.make_node("Add", ["a", "b"], ["y1"]),
        h.make_node("Sub", ["b", "a"], ["y2"]),
        h.make_node("Mul", ["a", "c"], ["y3"]),
        h.make_node("Div", ["a", "d"], ["y4"]),
        h.make_node("Sum", ["a", "b", "c"], ["y5"]),
        h.make_node("Mean", ["a", "c"], ["y6"]),
    ], [("a", rnd(2, 3, 4)), ("b", rnd(3, 1)), ("c", rnd(4)), ("d", np.abs(rnd(2, 1, 1)) + 0.5)],
        [(n, F) for n in ["y1", "y2", "y3", "y4", "y5", "y6"]])


def resnet_block():
    # a small residual block with the option-A shortcut that the CIFAR ResNets use
    x = rnd(2, 4, 8, 8)
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"]),
        h.make_node("Relu", ["n1"], ["r1"]),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        h.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["xs"]),
        h.make_node("Pad", ["xs", "pp"], ["xp"]),
        h.make_node("Add", ["c2", "xp"], ["sum"]),
        h.make_node("Relu", ["sum"], ["r2"]),
        h.make_node("AveragePool", ["r2"], ["ap"], kernel_shape=[4, 4]),
        h.make_node("Flatten", ["ap"], ["fl"]),
        h.make_node("Gemm", ["fl", "fw", "fb"], ["logits"], transB=1),
    ]
    i64 = lambda *v: np.array(v, np.int64)
    case("resnet_block", nodes, [("x", x)], [("logits", F), ("c1", F)],
         [("w1", rnd(8, 4, 3, 3)), ("s", rnd(8)), ("b", rnd(8)), ("m", rnd(8)), ("v", np.abs(rnd(8)) + 0.5),
          ("w2", rnd(8, 8, 3, 3)), ("b2", rnd(8)), ("st", i64(0, 0)), ("en", i64(8, 8)), ("ax", i64(2, 3)),
          ("sp", i64(2, 2)), ("pp", i64(0, 2, 0, 0, 0, 2, 0, 0)), ("fw", rnd(10, 8)), ("fb", rnd(10))])


def issue18_cases():
    """Issue 18's ops checked against onnxruntime: Upsample and Resize of the older opsets
    (onnxruntime's nearest rounding for them), Resize modes with sizes, a BERT-style block
    (LayerNormalization, attention with an int64 mask through Cast/Not/Where, batched
    MatMul, Erf-based GELU), Gelu-20, float32 Einsum, integer reductions, Mod and PRelu."""
    r = np.random.default_rng(18)

    def rn(*shape):
        return r.standard_normal(shape).astype(np.float32)

    def f32(*v):
        return np.array(v, dtype=np.float32)

    def i64(*v):
        return np.array(v, dtype=np.int64)

    x = rn(1, 2, 3, 4)
    case("upsample9_linear", [h.make_node("Upsample", ["x", "s"], ["y"], mode="linear")], [("x", x)], [("y", F)],
         [("s", f32(1, 1, 2, 3))], opset=9)
    case("upsample7_nearest", [h.make_node("Upsample", ["x"], ["y"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0])],
         [("x", x)], [("y", F)], opset=7)
    x = rn(1, 1, 5, 8)
    case("resize10_nearest_down", [h.make_node("Resize", ["x", "s"], ["y"], mode="nearest")], [("x", x)], [("y", F)],
         [("s", f32(1, 1, 0.6, 0.5))], opset=10)
    case("resize10_linear", [h.make_node("Resize", ["x", "s"], ["y"], mode="linear")], [("x", x)], [("y", F)],
         [("s", f32(1, 1, 1.5, 0.75))], opset=10)
    case("resize13_modes", [
        h.make_node("Resize", ["x", "", "", "sz"], ["a"], mode="linear", coordinate_transformation_mode="align_corners"),
        h.make_node("Resize", ["x", "", "s"], ["b"], mode="cubic"),
        h.make_node("Resize", ["x", "", "s"], ["c"], mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn"),
        h.make_node("Resize", ["x", "", "", "sz"], ["d"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    ], [("x", x)], [("a", F), ("b", F), ("c", F), ("d", F)], [("sz", i64(1, 1, 7, 3)), ("s", f32(1, 1, 1.7, 0.8))])
    # BERT-style block, opset 17
    B, S, D, H = 2, 5, 16, 4
    nodes = [
        h.make_node("Cast", ["ids"], ["idb"], to=TP.BOOL),
        h.make_node("Not", ["idb"], ["pad"]),
        h.make_node("Cast", ["pad"], ["padf"], to=TP.FLOAT),
        h.make_node("Mul", ["padf", "neg"], ["madd"]),
        h.make_node("Unsqueeze", ["madd", "ax12"], ["mask"]),
        h.make_node("LayerNormalization", ["x", "g", "be"], ["ln", "mean", "istd"], axis=-1, epsilon=1e-5),
        h.make_node("MatMul", ["ln", "wq"], ["q0"]),
        h.make_node("MatMul", ["ln", "wk"], ["k0"]),
        h.make_node("MatMul", ["ln", "wv"], ["v0"]),
        h.make_node("Reshape", ["q0", "hs"], ["q1"]),
        h.make_node("Reshape", ["k0", "hs"], ["k1"]),
        h.make_node("Reshape", ["v0", "hs"], ["v1"]),
        h.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
        h.make_node("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
        h.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
        h.make_node("MatMul", ["q", "kt"], ["sc0"]),
        h.make_node("Div", ["sc0", "sq"], ["sc1"]),
        h.make_node("Add", ["sc1", "mask"], ["sc"]),
        h.make_node("Softmax", ["sc"], ["p"], axis=-1),
        h.make_node("MatMul", ["p", "v"], ["c0"]),
        h.make_node("Transpose", ["c0"], ["c1"], perm=[0, 2, 1, 3]),
        h.make_node("Reshape", ["c1", "bsd"], ["c"]),
        h.make_node("Div", ["c", "rt2"], ["e0"]),
        h.make_node("Erf", ["e0"], ["e1"]),
        h.make_node("Add", ["e1", "one"], ["e2"]),
        h.make_node("Mul", ["c", "e2"], ["e3"]),
        h.make_node("Mul", ["e3", "half"], ["gelu"]),
        h.make_node("Equal", ["ids", "zero"], ["iszero"]),
        h.make_node("Unsqueeze", ["iszero", "ax2"], ["iz3"]),
        h.make_node("Where", ["iz3", "zf", "gelu"], ["y"]),
    ]
    ids = i64(101, 7, 9, 0, 0, 101, 3, 4, 5, 0).reshape(B, S)
    case("bert_block", nodes, [("x", rn(B, S, D)), ("ids", ids)], [("y", F), ("mean", F), ("istd", F)],
         [("neg", f32(-1e4)), ("ax12", i64(1, 2)), ("g", rn(D)), ("be", rn(D)), ("wq", rn(D, D)), ("wk", rn(D, D)),
          ("wv", rn(D, D)), ("hs", i64(B, S, H, D // H)), ("sq", f32(2.0)), ("bsd", i64(B, S, D)),
          ("rt2", f32(np.sqrt(2.0))), ("one", f32(1.0)), ("half", f32(0.5)), ("zero", np.array(0, dtype=np.int64)),
          ("ax2", i64(2)), ("zf", f32(0.0))], opset=17)
    x = rn(3, 7) * 3
    case("gelu20", [h.make_node("Gelu", ["x"], ["a"]), h.make_node("Gelu", ["x"], ["b"], approximate="tanh")],
         [("x", x)], [("a", F), ("b", F)], opset=20)
    case("einsum_f32", [h.make_node("Einsum", ["q", "k"], ["y"], equation="bhid,bhjd->bhij"),
                        h.make_node("Einsum", ["q"], ["t"], equation="bhid->bd")],
         [("q", rn(2, 3, 4, 5)), ("k", rn(2, 3, 6, 5))], [("y", F), ("t", F)])
    xi = r.integers(-5, 6, size=(3, 4)).astype(np.int32)
    case("int_reduce_mod_prelu", [
        h.make_node("ReduceSum", ["xi", "ax1"], ["s"], keepdims=0),
        h.make_node("ReduceProd", ["xl"], ["p"], axes=[0]),
        h.make_node("ReduceMax", ["xi"], ["m"], axes=[1]),
        h.make_node("Mod", ["xl", "dl"], ["md"]),
        h.make_node("Mod", ["xl", "dl"], ["mf"], fmod=1),
        h.make_node("PRelu", ["xf", "slope"], ["pr"]),
    ], [("xi", xi), ("xl", xi.astype(np.int64)), ("xf", rn(2, 3, 2, 2))],
        [("s", TP.INT32), ("p", TP.INT64), ("m", TP.INT32), ("md", TP.INT64), ("mf", TP.INT64), ("pr", F)],
        [("ax1", i64(1)), ("dl", i64(3, -3, 4, -2)), ("slope", rn(3, 1, 1))])


GROUPS = {"conv": conv_cases, "linalg": linalg_cases, "nn": nn_cases, "shape": shape_cases,
          "resnet_block": resnet_block, "issue18": issue18_cases}

if __name__ == "__main__":
    import sys
    names = sys.argv[1:] or list(GROUPS)
    if not sys.argv[1:]:
        shutil.rmtree(ROOT, ignore_errors=True)
    for n in names:
        GROUPS[n]()
    print("wrote", sorted(os.listdir(ROOT)))
