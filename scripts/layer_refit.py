#!/usr/bin/env python3
"""An experiment, not a tool: re-fit each quantized layer to the float network, layer by layer.

  layer_refit.py QDQ.onnx FLOAT.onnx OUT.onnx --dataset cifar10|imagenet [--n N] [--damp D]
                 [--min-rows-per-col R]

QDQ.onnx is sparseqc's output without bias-correct (`--passes 'fold-bn,cleanup,calibrate,insert-qdq'`)
and FLOAT.onnx the folded float model it came from (`--passes fold-bn,cleanup`); layer names
match. In topological order, for every Conv (group 1) and Gemm whose weight goes through
Q/DQ: run the Q/DQ model as re-fitted so far to get the layer's (quantized) input X~, run the
float model to get the float layer's input X, and solve the ridge least squares
[W' b'] = argmin ||W' im2col(X~) + b' - (W im2col(X) + b)||^2 + d*mean(diag H)*||[W' b'] - [W b]||^2,
i.e. the layer reproduces the float network's output from the quantized network's input and
so absorbs the activation rounding upstream (as the OBS pass does for pruning). W' is stored
as the float weight with a new per-channel scale max|W'|/127. Layers with fewer than R rows
(samples x output positions) per column are left as they are.

Fitted on calibration images 0, s, 2s, ... (s = 4 on CIFAR-10, 2 on the 250 ImageNet images);
the output SQNR against FLOAT before and after is printed on 128 of the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402


def attr(n: onnx.NodeProto, key: str, default):
    for x in n.attribute:
        if x.name == key:
            return list(x.ints) if x.ints else x.i
    return default


def im2col(x: np.ndarray, n: onnx.NodeProto) -> np.ndarray:
    if n.op_type == "Gemm":
        return x.reshape(x.shape[0], -1).astype(np.float64)
    kh, kw = attr(n, "kernel_shape", [1, 1])
    st = attr(n, "strides", [1, 1])
    p = attr(n, "pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    v = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::st[0], ::st[1]]
    return v.transpose(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * kh * kw).astype(np.float64)


class Runner:
    def __init__(self) -> None:
        self.so = ort.SessionOptions()
        self.so.intra_op_num_threads = 2
        self.so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def __call__(self, m: onnx.ModelProto, name: str, x: np.ndarray, bs: int = 32) -> np.ndarray:
        probe = onnx.ModelProto()
        probe.CopyFrom(m)
        if name not in {o.name for o in probe.graph.output}:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        s = ort.InferenceSession(probe.SerializeToString(), self.so, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0].name
        return np.concatenate([s.run([name], {inp: x[i:i + bs]})[0] for i in range(0, len(x), bs)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qdq")
    ap.add_argument("float")
    ap.add_argument("out")
    ap.add_argument("--dataset", choices=["cifar10", "imagenet"], required=True)
    ap.add_argument("--n", type=int, default=256, help="calibration images the layers are fitted on")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--min-rows-per-col", type=float, default=4.0)
    ap.add_argument("--data", default=str(sqc_data.DEFAULT_DATA))
    a = ap.parse_args()
    Q, F = onnx.load(a.qdq), onnx.load(a.float)
    paths, _, pre = sqc_data.dataset_split(a.data, a.dataset, "calib")
    step = 4 if a.dataset == "cifar10" else 2
    idx = np.arange(len(paths))
    xfit = sqc_data.load_batch([paths[i] for i in idx[0::step][:a.n]], pre)
    xhold = sqc_data.load_batch([paths[i] for i in idx[1::step][:128]], pre)
    run = Runner()
    qi = {i.name: i for i in Q.graph.initializer}
    qprod = {o: n for n in Q.graph.node for o in n.output}
    fnodes = {n.name: n for n in F.graph.node}
    ref = run(F, F.graph.output[0].name, xhold)

    def sqnr() -> float:
        y = run(Q, Q.graph.output[0].name, xhold)
        return 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())

    before = sqnr()
    t0 = time.time()
    for n in Q.graph.node:
        dq = qprod.get(n.input[1]) if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or attr(n, "group", 1) != 1 or len(n.input) < 3:
            continue
        if n.name not in fnodes:
            print(f"{n.name}: not in the float model, left alone")
            continue
        wq = qprod[dq.input[0]]
        wname, sname, bname = wq.input[0], wq.input[1], n.input[2]
        w0 = numpy_helper.to_array(qi[wname]).astype(np.float64)
        b0 = numpy_helper.to_array(qi[bname]).astype(np.float64)
        rows_major = n.op_type == "Conv" or attr(n, "transB", 0) == 1
        wm = w0.reshape(w0.shape[0], -1) if rows_major else w0.T
        aq = im2col(run(Q, n.input[0], xfit), n)
        af = im2col(run(F, fnodes[n.name].input[0], xfit), n)
        if len(aq) < a.min_rows_per_col * (aq.shape[1] + 1):
            print(f"{n.name}: {len(aq)} rows for {aq.shape[1] + 1} columns, left alone")
            continue
        ones = np.ones((len(aq), 1))
        aq1, af1 = np.hstack([aq, ones]), np.hstack([af, ones])
        t_old = np.hstack([wm, b0[:, None]])
        target = af1 @ t_old.T
        h = aq1.T @ aq1
        lam = a.damp * np.mean(np.diag(h))
        t_new = np.linalg.solve(h + lam * np.eye(len(h)), aq1.T @ target + lam * t_old.T).T
        e0 = np.linalg.norm(aq1 @ t_old.T - target)
        e1 = np.linalg.norm(aq1 @ t_new.T - target)
        w1 = t_new[:, :-1].reshape(w0.shape) if rows_major else t_new[:, :-1].T
        axis = 0 if rows_major else 1
        amax = np.abs(w1).max(axis=tuple(i for i in range(w1.ndim) if i != axis))
        qi[wname].CopyFrom(numpy_helper.from_array(w1.astype(np.float32), wname))
        qi[bname].CopyFrom(numpy_helper.from_array(t_new[:, -1].astype(np.float32), bname))
        qi[sname].CopyFrom(numpy_helper.from_array((amax / 127).astype(np.float32), sname))
        print(f"{n.name}: {len(aq)} rows x {aq.shape[1]} cols, error against the float output {e0:.4g} -> {e1:.4g} "
              f"({time.time() - t0:.0f} s)", flush=True)
    print(f"output SQNR against the float model on 128 held-out calibration images: {before:.2f} -> {sqnr():.2f} dB")
    onnx.save(Q, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
