"""A numpy reference of the TensorRT layers sparseqc's lowering emits, run on a network dumped as
JSON by tests/lowering.rs, compared with onnxruntime on the ONNX model it was lowered from.

Usage: python trt_ref.py NETWORK.json MODEL.onnx BATCH
Prints one line per output: `name max_abs rel_l2`.

Layer semantics follow TensorRT's documentation (NvInfer.h): convolution with pre/post padding,
groups, dilation; Q/DQ with round-half-to-even and clamping to [-128, 127]; pooling with
averageCountExcludesPadding; shuffle = first transpose, reshape (0 = copy when zeroIsPlaceholder,
-1 = infer), second transpose; slice start/size/stride (optionally on `axes` only); padding of the
last two dims (negative = crop); reduce/softmax over axis bit masks.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def arr(values, dims, dtype):
    a = np.array(values, dtype=dtype)
    return a.reshape(dims) if dims is not None else a


DT = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
      "BOOL": np.bool_, "UINT8": np.uint8}


def weights(w):
    return np.array(w["values"], dtype=DT[w["dtype"]])


def per_axis(scale, axis, rank):
    if scale.ndim == 0 or axis is None:
        return scale
    shape = [1] * rank
    shape[axis] = scale.size
    return scale.reshape(shape)


def conv(x, w, b, p):
    n, c, h, wd = x.shape
    k, cpg, r, s = w.shape
    g = p["groups"]
    (pt, pl), (pb, pr) = p["pre"], p["post"]
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - ((r - 1) * dh + 1)) // sh + 1
    ow = (wd + pl + pr - ((s - 1) * dw + 1)) // sw + 1
    out = np.zeros((n, g, k // g, oh, ow), dtype=np.float64)
    wg = w.reshape(g, k // g, cpg, r, s).astype(np.float64)
    for i in range(r):
        for j in range(s):
            patch = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            patch = patch.reshape(n, g, cpg, oh, ow).astype(np.float64)
            out += np.einsum("ngchw,gkc->ngkhw", patch, wg[:, :, :, i, j])
    out = out.reshape(n, k, oh, ow)
    if b is not None:
        out += b.reshape(1, k, 1, 1)
    return out.astype(np.float32)


def pool(x, p):
    kh, kw = p["window"]
    (sh, sw), (pt, pl), (pb, pr) = p["stride"], p["pre"], p["post"]
    n, c, h, w = x.shape
    oh = (h + pt + pb - kh) // sh + 1
    ow = (w + pl + pr - kw) // sw + 1
    is_max = p["ptype"] == "kMAX"
    fill = -np.inf if is_max else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    ones = np.pad(np.ones((h, w)), ((pt, pb), (pl, pr)))
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh: i * sh + kh, j * sw: j * sw + kw]
            if is_max:
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = ones[i * sh: i * sh + kh, j * sw: j * sw + kw].sum() if p["excludes"] else kh * kw
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out.astype(np.float32)


def shuffle(x, p):
    if p["first"] is not None:
        x = np.transpose(x, p["first"][: x.ndim])
    if p["reshape"] is not None:
        dims = list(p["reshape"])
        for i, d in enumerate(dims):
            if d == 0 and p["zero_is_placeholder"]:
                dims[i] = x.shape[i]
        x = x.reshape(dims)
    if p["second"] is not None:
        x = np.transpose(x, p["second"][: x.ndim])
    return x


def slice_(x, p):
    axes = p["axes"] if p["axes"] is not None else list(range(x.ndim))
    idx = [slice(None)] * x.ndim
    for a, st, sz, sd in zip(axes, p["start"], p["size"], p["stride"]):
        idx[a] = [st + i * sd for i in range(sz)]
    out = x
    for a in range(x.ndim):
        if isinstance(idx[a], list):
            out = np.take(out, idx[a], axis=a)
    return out


def padding(x, p):
    for k, (pre, post) in enumerate(zip(p["pre"], p["post"])):
        a = x.ndim - 2 + k
        if pre < 0:
            x = np.take(x, range(-pre, x.shape[a]), axis=a)
            pre = 0
        if post < 0:
            x = np.take(x, range(0, x.shape[a] + post), axis=a)
            post = 0
        widths = [(0, 0)] * x.ndim
        widths[a] = (pre, post)
        x = np.pad(x, widths)
    return x


def mask_axes(mask, rank):
    return tuple(a for a in range(rank) if mask >> a & 1)


def run_network(net, feeds):
    t = dict(feeds)
    for layer in net["layers"]:
        k = layer["kind"]
        ins = [t[i] for i in layer["inputs"]]
        ty = k["type"]
        if ty == "const":
            y = weights(k["weights"]).reshape(k["dims"])
        elif ty == "conv":
            w = weights(k["kernel"]).reshape([k["k"], -1] + k["kernel_size"]) if k["kernel"] else ins[1]
            b = weights(k["bias"]) if k["bias"] else (ins[2] if len(ins) > 2 else None)
            y = conv(ins[0], w, b, k)
        elif ty == "q":
            s = per_axis(ins[1], k["axis"], ins[0].ndim)
            y = np.clip(np.round(ins[0] / s), -128, 127).astype(np.int8)
        elif ty == "dq":
            y = (ins[0].astype(np.float32) * per_axis(ins[1], k["axis"], ins[0].ndim)).astype(np.float32)
        elif ty == "matmul":
            a, b = ins
            if k["op0"] == "kTRANSPOSE":
                a = np.swapaxes(a, -1, -2)
            if k["op1"] == "kTRANSPOSE":
                b = np.swapaxes(b, -1, -2)
            y = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
        elif ty == "ew":
            a, b = ins
            assert a.ndim == b.ndim, layer["name"]
            y = {"kSUM": np.add, "kSUB": np.subtract, "kPROD": np.multiply, "kDIV": np.divide,
                 "kMAX": np.maximum, "kMIN": np.minimum}[k["op"]](a, b)
        elif ty == "act":
            x = ins[0]
            y = {"kRELU": lambda: np.maximum(x, 0),
                 "kSIGMOID": lambda: 1 / (1 + np.exp(-x)),
                 "kCLIP": lambda: np.clip(x, np.float32(k["alpha"]), np.float32(k["beta"]))}[k["act"]]()
        elif ty == "pool":
            y = pool(ins[0], k)
        elif ty == "shuffle":
            y = shuffle(ins[0], k)
        elif ty == "concat":
            y = np.concatenate(ins, axis=k["axis"])
        elif ty == "reduce":
            f = {"kAVG": np.mean, "kMAX": np.max, "kSUM": np.sum}[k["op"]]
            y = f(ins[0], axis=mask_axes(k["axes"], ins[0].ndim), keepdims=k["keep_dims"])
        elif ty == "softmax":
            ax = mask_axes(k["axes"], ins[0].ndim)
            e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
            y = e / e.sum(axis=ax, keepdims=True)
        elif ty == "slice":
            y = slice_(ins[0], k)
        elif ty == "padding":
            y = padding(ins[0], k)
        elif ty == "identity":
            y = ins[0]
        elif ty == "cast":
            y = ins[0].astype(DT[k["to"]])
        else:
            raise SystemExit(f"unknown layer type {ty}")
        t[layer["output"]] = np.asarray(y)
    return [t[o] for o in net["outputs"]]


def main():
    net = json.load(open(sys.argv[1]))
    batch = int(sys.argv[3])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in net["inputs"]:
        shape = [batch if d == -1 else d for d in i["dims"]]
        feeds[i["name"]] = rng.standard_normal(shape).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(sys.argv[2], so, providers=["CPUExecutionProvider"])
    want = sess.run(net["outputs"], feeds)
    got = run_network(net, feeds)
    for name, x, y in zip(net["outputs"], want, got):
        assert x.shape == y.shape, f"{name}: onnxruntime {x.shape} vs network {y.shape}"
        x, y = x.astype(np.float64), y.astype(np.float64)
        rel = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
        print(name, float(np.abs(x - y).max()), float(rel))


main()
