#!/usr/bin/env python3
"""Train a small Vision Transformer on CIFAR-10 (JPEG folders) and export it to ONNX.

Data: DATA/train and DATA/test, each either a folder <class>/*.jpg or a file made by
pack_jpegs.py (DATA/train.npz, DATA/test.npz). Class index = position of the folder name in
sorted order. The images are decoded once with Pillow (process pool) into a uint8 tensor on the
GPU; training then runs entirely from GPU memory. The test split is only evaluated, never
trained on.

Preprocessing (the model's input contract, as for the CIFAR ResNets in ../shared):
RGB, x/255, minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225), NCHW float32,
32x32. Augmentation, training only: random crop with 4-pixel zero padding, horizontal flip,
and per batch either CutMix or Mixup (probability --mix-prob), label smoothing 0.1.

Model: patch 4 Conv (3->D, k4 s4), learned position embedding, DEPTH pre-norm blocks
(LayerNorm, hand-written multi-head attention with separate q/k/v nn.Linear, explicit
q @ k^T * scale, softmax, @ v, output projection; LayerNorm, Linear -> GELU(erf) -> Linear),
final LayerNorm, mean over tokens, Linear head.

Writes to --out: vit_cifar10.pt (state dict), vit_cifar10.onnx (opset 17, input `input`
[N,3,32,32], output `logits` [N,10]), train_log.txt, metrics.json.
"""
import argparse
import io
import json
import math
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

LOG = None


def log(msg):
    print(msg, flush=True)
    if LOG is not None:
        LOG.write(msg + "\n")
        LOG.flush()


# ----------------------------------------------------------------------------- data

def _decode(blob):
    from PIL import Image
    im = Image.open(io.BytesIO(blob)).convert("RGB")
    a = np.asarray(im, dtype=np.uint8)
    if a.shape != (32, 32, 3):
        raise ValueError(f"image of shape {a.shape}, expected 32x32x3")
    return a


def read_split(data_dir, split):
    """Returns (list of JPEG byte strings, labels int64 array, class names)."""
    npz = os.path.join(data_dir, split + ".npz")
    folder = os.path.join(data_dir, split)
    if os.path.isfile(npz):
        z = np.load(npz)
        data, off = z["data"], z["offsets"]
        blobs = [data[off[i]:off[i + 1]].tobytes() for i in range(len(off) - 1)]
        return blobs, z["labels"].astype(np.int64), [str(c) for c in z["classes"]]
    if os.path.isdir(folder):
        classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        blobs, labels = [], []
        for ci, c in enumerate(classes):
            for f in sorted(os.listdir(os.path.join(folder, c))):
                if f.lower().endswith((".jpg", ".jpeg", ".png")):
                    with open(os.path.join(folder, c, f), "rb") as fh:
                        blobs.append(fh.read())
                    labels.append(ci)
        return blobs, np.array(labels, dtype=np.int64), classes
    sys.exit(f"error: neither {npz} nor {folder} exists")


def load_split(data_dir, split, workers):
    t = time.time()
    blobs, labels, classes = read_split(data_dir, split)
    with Pool(workers) as p:
        imgs = p.map(_decode, blobs, chunksize=512)
    x = np.stack(imgs)  # N,32,32,3 uint8
    log(f"{split}: {len(labels)} images, classes {classes}, decoded in {time.time() - t:.1f}s")
    return x, labels, classes


# ----------------------------------------------------------------------------- model

class Attention(nn.Module):
    def __init__(self, dim, heads, tokens):
        super().__init__()
        self.dim, self.heads, self.tokens = dim, heads, tokens
        self.hd = dim // heads
        self.scale = self.hd ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, t):
        # [N, T, D] -> [N, H, T, hd]; the target shape is a constant (batch as -1)
        return t.reshape(-1, self.tokens, self.heads, self.hd).transpose(1, 2)

    def forward(self, x):
        q = self._split(self.q(x))
        k = self._split(self.k(x))
        v = self._split(self.v(x))
        a = (q @ k.transpose(-2, -1)) * self.scale
        a = a.softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(-1, self.tokens, self.dim)
        return self.proj(o)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, tokens, mlp_ratio, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.drop_path = drop_path

    def _dp(self, y):
        if not self.training or self.drop_path == 0.0:
            return y
        keep = 1.0 - self.drop_path
        m = torch.empty(y.shape[0], 1, 1, device=y.device, dtype=y.dtype).bernoulli_(keep)
        return y * m / keep

    def forward(self, x):
        x = x + self._dp(self.attn(self.norm1(x)))
        x = x + self._dp(self.mlp(self.norm2(x)))
        return x


class ViT(nn.Module):
    def __init__(self, dim=192, depth=6, heads=3, mlp_ratio=4, patch=4, img=32, classes=10,
                 drop_path=0.1):
        super().__init__()
        self.dim = dim
        self.tokens = (img // patch) ** 2
        self.patch = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, self.tokens, dim))
        dps = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, heads, self.tokens, mlp_ratio, d) for d in dps)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.pos, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.patch.weight, std=0.02)
        nn.init.zeros_(self.patch.bias)

    def forward(self, x):
        x = self.patch(x)                                   # N, D, 8, 8
        x = x.reshape(-1, self.dim, self.tokens).transpose(1, 2) + self.pos   # N, T, D
        for b in self.blocks:
            x = b(x)
        x = self.norm(x)
        x = x.mean(dim=1)
        return self.head(x)


# ----------------------------------------------------------------------------- training

def normalize(xu8, mean, std):
    """uint8 NHWC on GPU -> normalized float32 NCHW."""
    x = xu8.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def augment(x, gen):
    """Random crop (4-pixel zero padding) and horizontal flip, per sample, on the GPU.
    x is the raw [0,1] NCHW batch (padding is black, as for the usual CIFAR recipe)."""
    n = x.shape[0]
    dev = x.device
    xp = F.pad(x, (4, 4, 4, 4))
    oy = torch.randint(0, 9, (n,), device=dev, generator=gen)
    ox = torch.randint(0, 9, (n,), device=dev, generator=gen)
    i = torch.arange(32, device=dev)
    rows = (oy[:, None] + i)[:, None, :, None]
    cols = (ox[:, None] + i)[:, None, None, :]
    bidx = torch.arange(n, device=dev)[:, None, None, None]
    cidx = torch.arange(3, device=dev)[None, :, None, None]
    out = xp[bidx, cidx, rows, cols]
    flip = torch.rand(n, device=dev, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


def mix(x, y_onehot, gen, rng, mix_prob):
    """Per batch: with probability mix_prob either CutMix (alpha 1) or Mixup (alpha 0.8)."""
    if rng.random() >= mix_prob:
        return x, y_onehot
    n = x.shape[0]
    perm = torch.randperm(n, device=x.device, generator=gen)
    if rng.random() < 0.5:
        lam = rng.beta(1.0, 1.0)
        cut = math.sqrt(1.0 - lam)
        h = w = 32
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        lam = rng.beta(0.8, 0.8)
        x = lam * x + (1.0 - lam) * x[perm]
    return x, lam * y_onehot + (1.0 - lam) * y_onehot[perm]


@torch.no_grad()
def evaluate(model, xu8, labels, mean, std, bf16, bs=2000):
    model.eval()
    correct = 0
    for s in range(0, xu8.shape[0], bs):
        x = normalize(xu8[s:s + bs], mean, std)
        with torch.autocast(mean.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        correct += (out.argmax(1) == labels[s:s + bs]).sum().item()
    model.train()
    return 100.0 * correct / xu8.shape[0]


def lr_at(step, total, warmup, base, final_frac=0.01):
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(total - warmup, 1)
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def export_onnx(model, path, x_check):
    import onnx
    model = model.float().eval().cpu()
    dummy = torch.zeros(1, 3, 32, 32)
    tmp = path + ".tmp"
    try:
        torch.onnx.export(model, dummy, tmp, opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          do_constant_folding=True)
    except Exception as e:  # the TorchScript exporter is deprecated; fall back, and say so
        log(f"TorchScript ONNX export failed ({e!r}); trying dynamo=True")
        torch.onnx.export(model, (dummy,), tmp, opset_version=17, dynamo=True,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("N", min=1, max=4096)},),
                          external_data=False)
    os.replace(tmp, path)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    hist = {}
    for n in m.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    log(f"onnx: {path} {os.path.getsize(path)} bytes, opset "
        f"{[(o.domain, o.version) for o in m.opset_import]}, ops {dict(sorted(hist.items()))}")
    res = {"onnx_bytes": os.path.getsize(path), "onnx_ops": hist}
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        xo = x_check.cpu().numpy()
        got = sess.run(["logits"], {"input": xo})[0]
        with torch.no_grad():
            ref = model(x_check.cpu()).numpy()
        err = float(np.abs(got - ref).max())
        rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        log(f"onnxruntime vs torch on {xo.shape[0]} test images: max abs diff {err:.3e}, "
            f"rel L2 {rel:.3e}, argmax agreement {agree:.4f}")
        res.update(ort_max_abs_diff=err, ort_rel_l2=rel, ort_argmax_agree=agree)
    except ImportError:
        log("onnxruntime not installed: ONNX-vs-torch check skipped")
    return res


def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with train/ and test/ (folders or .npz)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup-epochs", type=float, default=10)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--mlp-ratio", type=int, default=4)
    ap.add_argument("--drop-path", type=float, default=0.1)
    ap.add_argument("--mix-prob", type=float, default=0.5)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--compile", action="store_true", help="torch.compile the training model")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds for the training loop; if the measured epoch time says the "
                         "epochs will not fit, the epoch count (and cosine schedule) is cut once, "
                         "after epoch 3 (0 = no limit)")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--cache", default="", help="npz cache of decoded images (made if missing)")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--device", default="cuda", help="cuda (cpu only for a quick code check)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images of each split (code check)")
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    LOG = open(os.path.join(a.out, "train_log.txt"), "w")
    log("args: " + json.dumps(vars(a)))
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    rng = np.random.default_rng(a.seed)
    dev = torch.device(a.device)
    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    log(f"torch {torch.__version__}, "
        f"{torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'}")

    t0 = time.time()
    if a.cache and os.path.isfile(a.cache):
        z = np.load(a.cache)
        xtr, ytr, xte, yte = z["xtr"], z["ytr"], z["xte"], z["yte"]
        log(f"loaded decoded images from {a.cache}")
    else:
        xtr, ytr, _ = load_split(a.data, "train", a.workers)
        xte, yte, _ = load_split(a.data, "test", a.workers)
        if a.cache:
            np.savez(a.cache, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    if a.limit:
        perm0 = np.random.default_rng(0).permutation(len(ytr))[:a.limit]
        xtr, ytr, xte, yte = xtr[perm0], ytr[perm0], xte[:a.limit], yte[:a.limit]
    xtr = torch.from_numpy(xtr).to(dev)
    ytr = torch.from_numpy(ytr).to(dev)
    xte = torch.from_numpy(xte).to(dev)
    yte = torch.from_numpy(yte).to(dev)
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    log(f"data on GPU: train {tuple(xtr.shape)}, test {tuple(xte.shape)} ({time.time() - t0:.1f}s)")

    model = ViT(a.dim, a.depth, a.heads, a.mlp_ratio, drop_path=a.drop_path).to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    log(f"model: dim {a.dim}, depth {a.depth}, heads {a.heads}, mlp x{a.mlp_ratio}, "
        f"{nparam} parameters ({nparam * 4 / 1e6:.2f} MB fp32)")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "pos"]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or n == "pos"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), fused=dev.type == "cuda")
    fwd = torch.compile(model) if a.compile else model

    n = xtr.shape[0]
    steps_per_epoch = n // a.batch  # drop the last partial batch
    epochs = a.epochs
    total = epochs * steps_per_epoch
    warmup = int(a.warmup_epochs * steps_per_epoch)
    step = 0
    t_train = time.time()
    ep_times = []
    ep = 0
    while ep < epochs:
        te = time.time()
        perm = torch.randperm(n, device=dev, generator=gen)
        tot_loss = torch.zeros((), device=dev)
        for s in range(steps_per_epoch):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            x = xtr[idx].permute(0, 3, 1, 2).float().div_(255.0)
            x = augment(x, gen)
            x = (x - mean) / std
            y = F.one_hot(ytr[idx], 10).float()
            x, y = mix(x, y, gen, rng, a.mix_prob)
            y = y * (1.0 - a.smoothing) + a.smoothing / 10.0
            lr = lr_at(step, total, warmup, a.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                out = fwd(x)
            loss = torch.sum(-y * F.log_softmax(out.float(), dim=1), dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot_loss += loss.detach()
            step += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - te
        ep_times.append(dt)
        msg = f"epoch {ep + 1}/{epochs} loss {tot_loss.item() / steps_per_epoch:.4f} lr {lr:.2e} {dt:.2f}s"
        if (ep + 1) % a.eval_every == 0 or ep + 1 == epochs:
            msg += f" test_top1(bf16) {evaluate(model, xte, yte, mean, std, True):.2f}"
        log(msg)
        if a.time_budget > 0 and ep == 2:
            per = float(np.median(ep_times[1:]))
            elapsed = time.time() - t_train
            fit = int((a.time_budget - elapsed) / (per * 1.03)) + ep + 1
            if fit < epochs:
                log(f"time budget {a.time_budget:.0f}s at {per:.2f}s/epoch: epochs {epochs} -> {fit}")
                epochs = fit
                total = epochs * steps_per_epoch
        ep += 1
    train_s = time.time() - t_train
    acc_fp32 = evaluate(model, xte, yte, mean, std, False)
    acc_tr = evaluate(model, xtr[:10000], ytr[:10000], mean, std, False)
    log(f"done: {epochs} epochs in {train_s:.1f}s; test top-1 fp32 {acc_fp32:.2f}% "
        f"(train[:10000] {acc_tr:.2f}%)")
    pt = os.path.join(a.out, "vit_cifar10.pt")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, pt + ".tmp")
    os.replace(pt + ".tmp", pt)
    metrics = {"epochs": epochs, "train_seconds": train_s, "test_top1_torch_fp32": acc_fp32,
               "train10k_top1": acc_tr, "parameters": nparam,
               "median_epoch_seconds": float(np.median(ep_times)) if ep_times else None}
    if not a.no_export:
        xc = normalize(xte[:256], mean, std)
        metrics.update(export_onnx(model, os.path.join(a.out, "vit_cifar10.onnx"), xc))
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    log("metrics: " + json.dumps(metrics))


if __name__ == "__main__":
    main()
