#!/usr/bin/env python3
"""Build a BERT-base-shaped ONNX encoder with random weights, and calibration data for it.

  make_bert_base.py OUT_DIR [--layers 12] [--hidden 768] [--ffn 3072] [--heads 12] [--inputs ids|embeddings]
                    [--seq 128] [--samples 64] [--layernorm op|decomposed] [--seed 0]

Writes OUT_DIR/bert_base.onnx (436 MB at the defaults, so not committed) and
OUT_DIR/bert_base.calib.npz (the calibration samples). The model is what PyTorch exports for a
BERT encoder at opset 17:

  inputs:  input_ids       int64 [1, seq]   (token ids)
           token_type_ids  int64 [1, seq]   (segment A = 0, B = 1)
           attention_mask  int64 [1, seq]   (1 = token, 0 = padding)
  output:  last_hidden_state float32 [1, seq, hidden]

embeddings: Gather from the 30522×768 word table, + Gather from the 2×768 type table, + the
first seq rows of the 512×768 position table (Gather with constant position ids), LayerNorm;
per layer: Q/K/V projections (MatMul + bias Add), heads split by Reshape/Transpose,
Q·Kᵀ / sqrt(d) + (1 - mask)·-10000, Softmax, ·V, output projection (MatMul + bias Add),
residual Add, LayerNorm, FFN MatMul + Add, exact GELU (Div, Erf, Add, Mul, Mul), MatMul + Add,
residual Add, LayerNorm. 108.9 M parameters at the defaults (BERT-base without its pooler).

--inputs embeddings leaves the embedding tables out (85 M parameters): the input is then the
summed embeddings, float32 [1, seq, hidden], and the mask is float32.

Weights: normal(0, 0.02) like BERT's initialisation, biases normal(0, 0.02), LayerNorm gains
1 + normal(0, 0.1). Calibration samples: embeddings normal(0, 1); each sample has a random
length in [seq/4, seq] and the mask is 0 after it.

--layernorm decomposed writes each LayerNorm as ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div/
Mul/Add (what exporters before opset 17 emit) for interpreters without LayerNormalization.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--layernorm", choices=["op", "decomposed"], default="op")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inputs", choices=["ids", "embeddings"], default="ids")
    ap.add_argument("--vocab", type=int, default=30522)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    H, F, S, NH = a.hidden, a.ffn, a.seq, a.heads
    D = H // NH
    nodes, inits = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.02, size=shape).astype(np.float32)

    const("sqrt_d", np.array(np.sqrt(D), dtype=np.float32))
    const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    const("one", np.array(1.0, dtype=np.float32))
    const("half", np.array(0.5, dtype=np.float32))
    const("eps", np.array(1e-12, dtype=np.float32))
    const("neg_big", np.array(-10000.0, dtype=np.float32))
    const("heads_shape", np.array([1, S, NH, D], dtype=np.int64))
    const("merged_shape", np.array([1, S, H], dtype=np.int64))
    const("mask_shape", np.array([1, 1, 1, S], dtype=np.int64))

    def layernorm(x: str, p: str) -> str:
        g = const(f"{p}.weight", (1.0 + rng.normal(0.0, 0.1, size=H)).astype(np.float32))
        b = const(f"{p}.bias", w(H))
        if a.layernorm == "op":
            return node("LayerNormalization", [x, g, b], f"{p}/LayerNormalization", axis=-1, epsilon=1e-12)
        mu = node("ReduceMean", [x], f"{p}/mean", axes=[-1])
        d = node("Sub", [x, mu], f"{p}/sub")
        d2 = node("Mul", [d, d], f"{p}/sq")
        var = node("ReduceMean", [d2], f"{p}/var", axes=[-1])
        ve = node("Add", [var, "eps"], f"{p}/add_eps")
        sd = node("Sqrt", [ve], f"{p}/sqrt")
        n = node("Div", [d, sd], f"{p}/div")
        ng = node("Mul", [n, g], f"{p}/mul")
        return node("Add", [ng, b], f"{p}/add")

    def linear(x: str, p: str, n_in: int, n_out: int) -> str:
        mm = node("MatMul", [x, const(f"{p}.weight", w(n_in, n_out))], f"{p}/MatMul")
        return node("Add", [mm, const(f"{p}.bias", w(n_out))], f"{p}/Add")

    # additive mask: (1 - mask) * -10000, broadcast over heads and query positions
    if a.inputs == "ids":
        mf = node("Cast", ["attention_mask"], "mask/cast", to=TensorProto.FLOAT)
        const("position_ids", np.arange(S, dtype=np.int64)[None, :])
        we = node("Gather", [const("embeddings.word_embeddings.weight", w(a.vocab, H)), "input_ids"], "embeddings/word")
        te = node("Gather", [const("embeddings.token_type_embeddings.weight", w(2, H)), "token_type_ids"], "embeddings/type")
        pe = node("Gather", [const("embeddings.position_embeddings.weight", w(512, H)), "position_ids"], "embeddings/position")
        e = node("Add", [node("Add", [we, te], "embeddings/add_type"), pe], "embeddings/add_position")
    else:
        mf, e = "attention_mask", "embeddings"
    m0 = node("Sub", ["one", mf], "mask/sub")
    m1 = node("Mul", [m0, "neg_big"], "mask/mul")
    mask = node("Reshape", [m1, "mask_shape"], "mask/reshape")
    x = layernorm(e, "embeddings.LayerNorm")
    for i in range(a.layers):
        p = f"encoder.layer.{i}"
        heads = {}
        for nm, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            t = linear(x, f"{p}.attention.self.{nm}", H, H)
            t = node("Reshape", [t, "heads_shape"], f"{p}.attention.self.{nm}/Reshape")
            heads[nm] = node("Transpose", [t], f"{p}.attention.self.{nm}/Transpose", perm=perm)
        s = node("MatMul", [heads["query"], heads["key"]], f"{p}.attention.self/MatMul")
        s = node("Div", [s, "sqrt_d"], f"{p}.attention.self/Div")
        s = node("Add", [s, mask], f"{p}.attention.self/Add")
        s = node("Softmax", [s], f"{p}.attention.self/Softmax", axis=-1)
        c = node("MatMul", [s, heads["value"]], f"{p}.attention.self/MatMul_1")
        c = node("Transpose", [c], f"{p}.attention.self/Transpose", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, "merged_shape"], f"{p}.attention.self/Reshape")
        o = linear(c, f"{p}.attention.output.dense", H, H)
        o = node("Add", [o, x], f"{p}.attention.output/Add")
        x = layernorm(o, f"{p}.attention.output.LayerNorm")
        f = linear(x, f"{p}.intermediate.dense", H, F)
        g0 = node("Div", [f, "sqrt2"], f"{p}.intermediate/Div")
        g1 = node("Erf", [g0], f"{p}.intermediate/Erf")
        g2 = node("Add", [g1, "one"], f"{p}.intermediate/Add")
        g3 = node("Mul", [f, g2], f"{p}.intermediate/Mul")
        g = node("Mul", [g3, "half"], f"{p}.intermediate/Mul_1")
        o = linear(g, f"{p}.output.dense", F, H)
        o = node("Add", [o, x], f"{p}.output/Add")
        x = layernorm(o, f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        nodes,
        "bert_base",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, S]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, [1, S]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, S]),
        ]
        if a.inputs == "ids"
        else [
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [1, S, H]),
            helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, [1, S]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, S, H])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sparseqc make_bert_base.py")
    model.ir_version = 8
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "bert_base.onnx"
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    n_params = sum(int(np.prod(t.dims)) for t in inits)
    # the first axis counts samples; each sample is one row kept as a batch of one
    lengths = rng.integers(S // 4, S + 1, size=a.samples)
    valid = np.arange(S)[None, :] < lengths[:, None]
    if a.inputs == "ids":
        # [CLS] ... [SEP] ... [SEP] then padding (id 0); segment B starts at a random point
        ids = rng.integers(1000, a.vocab, size=(a.samples, S)).astype(np.int64)
        ids[:, 0] = 101
        split = (lengths * rng.uniform(0.3, 0.7, size=a.samples)).astype(np.int64)
        types = (np.arange(S)[None, :] >= split[:, None]) & valid
        ids[~valid] = 0
        np.savez(
            a.out / "bert_base.calib.npz",
            input_ids=ids,
            token_type_ids=types.astype(np.int64),
            attention_mask=valid.astype(np.int64),
        )
    else:
        emb = rng.normal(0.0, 1.0, size=(a.samples, S, H)).astype(np.float32)
        np.savez(a.out / "bert_base.calib.npz", embeddings=emb, attention_mask=valid.astype(np.float32))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB, {n_params / 1e6:.1f} M params) and {a.out / 'bert_base.calib.npz'}")


if __name__ == "__main__":
    main()
