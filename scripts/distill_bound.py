#!/usr/bin/env python3
"""How far can training on the calibration images take a 2:4 model? (an upper-bound experiment)

  distill_bound.py STUDENT.onnx TEACHER.onnx --dataset imagenet|cifar10
                   [--epochs 8] [--lr 1e-5] [--batch 25] [--aug center|crop|rrc] [--mixup A]
                   [--train all|pruned] [--out TUNED.onnx]

STUDENT is a float model with 2:4 weights (e.g. `sparseqc M -o S.onnx --passes
'fold-bn,cleanup,prune-2of4{method=obs,include=...}' --calib ...`), TEACHER the float model it
came from (`--passes fold-bn,cleanup`). The script fine-tunes the student on the calibration
split only, with the teacher's outputs as targets (KL divergence of the softmaxes), keeping
every pruned weight at zero, and reports top-1 and agreement with the teacher on the
evaluation split before training and every few epochs.

This is not part of sparseqc (which has no training loop): it measures what gradient-based
recovery could add on the same 250 or 1,000 calibration images that sparseqc's one-shot
reconstruction sees, to tell a limit of the method from a limit of the data
(docs/accuracy.md). Needs PyTorch (`pip install torch`), which the other scripts do not.
Supports the ops of the folded MobileNetV2 (Conv, Relu, Clip, Add, GlobalAveragePool,
Flatten, Gemm) and stops with the node's name on any other.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402


def build(torch, F):
    class OnnxNet(torch.nn.Module):
        """Runs a folded ONNX graph node by node with torch ops; weights as parameters."""

        def __init__(self, path: str, trainable: bool):
            super().__init__()
            g = onnx.load(path).graph
            self.path, self.nodes = path, list(g.node)
            self.inp, self.out = g.input[0].name, g.output[0].name
            self.params = torch.nn.ParameterDict()
            self.key, self.consts = {}, {}
            for i, init in enumerate(g.initializer):
                t = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
                if trainable and t.numel() > 1:
                    self.key[init.name] = f"p{i}"
                    self.params[f"p{i}"] = torch.nn.Parameter(t)
                else:
                    self.consts[init.name] = t

        def value(self, env, name):
            if name in env:
                return env[name]
            return self.params[self.key[name]] if name in self.key else self.consts[name]

        def forward(self, x):
            env = {self.inp: x}
            for n in self.nodes:
                at = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                v = [self.value(env, i) if i else None for i in n.input]
                if n.op_type == "Conv":
                    p = at.get("pads", [0, 0, 0, 0])
                    if p[0] != p[2] or p[1] != p[3]:
                        raise SystemExit(f"{self.path}: node {n.name}: asymmetric pads {p} not supported")
                    y = F.conv2d(v[0], v[1], v[2] if len(v) > 2 else None, stride=at.get("strides", [1, 1]),
                                 padding=(p[0], p[1]), dilation=at.get("dilations", [1, 1]), groups=at.get("group", 1))
                elif n.op_type == "Clip":
                    y = torch.clamp(v[0], float(v[1]), float(v[2]))
                elif n.op_type == "Relu":
                    y = F.relu(v[0])
                elif n.op_type == "Add":
                    y = v[0] + v[1]
                elif n.op_type == "GlobalAveragePool":
                    y = v[0].mean((2, 3), keepdim=True)
                elif n.op_type == "Flatten":
                    y = v[0].flatten(at.get("axis", 1))
                elif n.op_type == "Gemm":
                    w = v[1] if at.get("transB", 0) else v[1].t()
                    y = F.linear(v[0], w, v[2] if len(v) > 2 else None)
                else:
                    raise SystemExit(f"{self.path}: node {n.name}: op {n.op_type} not supported by this script")
                env[n.output[0]] = y
            return env[self.out]

        def save(self, out: str):
            m = onnx.load(self.path)
            for init in m.graph.initializer:
                if init.name in self.key:
                    arr = self.params[self.key[init.name]].detach().numpy().astype(np.float32)
                    init.CopyFrom(numpy_helper.from_array(arr, init.name))
            onnx.save(m, out)

    return OnnxNet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("student")
    ap.add_argument("teacher")
    ap.add_argument("--dataset", choices=["cifar10", "imagenet"], required=True)
    ap.add_argument("--data", default=str(sqc_data.DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--aug", choices=["center", "crop", "rrc"], default="rrc",
                    help="center: the eval transform; crop: random crop + flip; rrc: random resized crop (25-100 %%) + flip")
    ap.add_argument("--mixup", type=float, default=0.4, help="Beta(A, A) mixup of batch pairs; 0 = off")
    ap.add_argument("--train", choices=["all", "pruned"], default="all", help="which weights train (biases always)")
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("distill_bound.py needs PyTorch: pip install torch", file=sys.stderr)
        return 2
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    OnnxNet = build(torch, F)

    imagenet = a.dataset == "imagenet"
    calib_paths, _, _ = sqc_data.dataset_split(a.data, a.dataset, "calib")
    eval_paths, eval_labels, pre = sqc_data.dataset_split(a.data, a.dataset, "eval" if imagenet else "test")
    size = 224 if imagenet else 32

    def load(p):  # uint8 HWC, shorter side 256 for ImageNet (the crop comes later)
        with Image.open(p) as im:
            im = im.convert("RGB")
            return np.asarray(sqc_data._resize_shorter(im, 256) if imagenet else im, dtype=np.uint8)

    raw = [load(p) for p in calib_paths]
    x_eval = torch.from_numpy(sqc_data.load_batch(eval_paths, pre))
    y_eval = torch.tensor(eval_labels)

    def augment(arr):
        h, w = arr.shape[:2]
        if a.aug == "center" or (not imagenet and a.aug == "crop"):
            t, l = int(round((h - size) / 2)), int(round((w - size) / 2))
            c = arr[t:t + size, l:l + size]
        elif a.aug == "crop":
            t, l = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            c = arr[t:t + size, l:l + size]
        else:
            ch = cw = min(h, w)
            for _ in range(10):
                area = rng.uniform(0.25, 1.0) * h * w
                r = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
                cw_, ch_ = int(round(np.sqrt(area * r))), int(round(np.sqrt(area / r)))
                if cw_ <= w and ch_ <= h:
                    ch, cw = ch_, cw_
                    break
            t, l = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            c = np.asarray(Image.fromarray(arr[t:t + ch, l:l + cw]).resize((size, size), Image.BILINEAR))
        if a.aug != "center" and rng.random() < 0.5:
            c = c[:, ::-1]
        return torch.from_numpy(sqc_data._normalize(np.ascontiguousarray(c)))

    teacher = OnnxNet(a.teacher, False).eval()
    student = OnnxNet(a.student, True)
    masks = {}
    for k, p in student.params.items():  # 2:4 weights: half zeros along the input channels
        if p.ndim in (2, 4) and p.shape[1] % 4 == 0 and (p.data == 0).float().mean() >= 0.49:
            masks[k] = (p.data != 0).float()
        if a.train == "pruned" and p.ndim > 1 and k not in masks:
            p.requires_grad_(False)
    print(f"{len(masks)} pruned weight tensors; {len(raw)} calibration images, {len(x_eval)} eval images", flush=True)

    @torch.no_grad()
    def evaluate(net, ref=None):
        net.eval()
        z = torch.cat([net(x_eval[i:i + 50]) for i in range(0, len(x_eval), 50)])
        top1 = (z.argmax(1) == y_eval).float().mean().item() * 100
        agree = (z.argmax(1) == ref.argmax(1)).float().mean().item() * 100 if ref is not None else 100.0
        return top1, agree, z

    t_top1, _, t_logits = evaluate(teacher)
    s_top1, s_agree, _ = evaluate(student, t_logits)
    print(f"teacher top-1 {t_top1:.2f} %; student before training {s_top1:.2f} %, agreement {s_agree:.2f} %", flush=True)
    opt = torch.optim.Adam([p for p in student.params.values() if p.requires_grad], lr=a.lr)
    steps = a.epochs * -(-len(raw) // a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for ep in range(a.epochs):
        student.train()
        t0, total = time.time(), 0.0
        order = rng.permutation(len(raw))
        for b in range(0, len(order), a.batch):
            x = torch.stack([augment(raw[j]) for j in order[b:b + a.batch]])
            if a.mixup > 0:
                lam = torch.from_numpy(rng.beta(a.mixup, a.mixup, size=(len(x), 1, 1, 1)).astype(np.float32))
                x = lam * x + (1 - lam) * x.flip(0)
            with torch.no_grad():
                target = F.log_softmax(teacher(x), 1)
            loss = F.kl_div(F.log_softmax(student(x), 1), target, log_target=True, reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for k, m in masks.items():
                    student.params[k].mul_(m)
            total += loss.item() * len(x)
        line = f"epoch {ep + 1}: loss {total / len(order):.4f} ({time.time() - t0:.0f} s)"
        if (ep + 1) % a.eval_every == 0 or ep + 1 == a.epochs:
            s_top1, s_agree, _ = evaluate(student, t_logits)
            line += f"; eval top-1 {s_top1:.2f} %, agreement {s_agree:.2f} %"
        print(line, flush=True)
    if a.out:
        student.save(a.out)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
