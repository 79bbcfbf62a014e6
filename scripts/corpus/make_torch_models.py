#!/usr/bin/env python3
"""Exports a BERT-shaped and a ViT-shaped model with torch (RANDOM weights: shape and
operator coverage only, not accuracy), as a PyTorch user would export them.

    python3 scripts/corpus/make_torch_models.py OUT_DIR

Needs torch (Debian's python3-torch 1.13 works; torch.onnx.export needs no onnx package).
- bert_tiny.onnx: opset 12 (so upgrade-opset has work), int64 input_ids and attention_mask
  with dynamic batch and sequence axes, LayerNorm decomposed by the exporter, GELU as Erf.
- vit_tiny.onnx: opset 17 (LayerNormalization as one op), float image [batch, 3, 32, 32].
"""
import math
import os
import sys

import torch
from torch import nn

torch.manual_seed(20261204)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x, bias=None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.h, self.dk).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-1, -2) / math.sqrt(self.dk)
        if bias is not None:
            s = s + bias
        a = s.softmax(-1) @ v
        return self.out(a.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

    def forward(self, x, bias=None):
        x = x + self.att(self.ln1(x), bias)
        return x + self.mlp(self.ln2(x))


class BertTiny(nn.Module):
    """Embeddings (token + position + type) -> 4 post-norm-free blocks -> pooled CLS -> 2 classes."""

    def __init__(self, vocab=1000, d=128, layers=4, heads=4, maxlen=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(maxlen, d)
        self.ln = nn.LayerNorm(d)
        self.blocks = nn.ModuleList([Block(d, heads, 4 * d) for _ in range(layers)])
        self.pool = nn.Linear(d, d)
        self.cls = nn.Linear(d, 2)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.ln(self.tok(input_ids) + self.pos(pos))
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for b in self.blocks:
            x = b(x, bias)
        return self.cls(torch.tanh(self.pool(x[:, 0])))


class VitTiny(nn.Module):
    def __init__(self, d=96, layers=4, heads=3, patch=4, img=32, classes=10):
        super().__init__()
        self.embed = nn.Conv2d(3, d, patch, patch)
        n = (img // patch) ** 2
        self.cls_tok = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads, 4 * d) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_tok.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x)[:, 0])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    bert = BertTiny().eval()
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.int64)
    torch.onnx.export(
        bert, (ids, mask), os.path.join(out, "bert_tiny.onnx"), opset_version=12,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
        do_constant_folding=True,
    )
    vit = VitTiny().eval()
    torch.onnx.export(
        vit, torch.randn(1, 3, 32, 32), os.path.join(out, "vit_tiny.onnx"), opset_version=17,
        input_names=["pixels"], output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True,
    )
    print(f"torch {torch.__version__}: wrote bert_tiny.onnx (opset 12), vit_tiny.onnx (opset 17) to {out}")


if __name__ == "__main__":
    main()
