#!/usr/bin/env python3
"""Make the pre-sparse and pre-quantized test models the way NVIDIA's sparse-INT8 workflow does.

The workflow (ASP, then QAT with pytorch-quantization / ModelOpt) is reproduced on a small CNN with
torch only (no Apex, no pytorch-quantization), on synthetic data, deterministically:

1. train a small CNN (stem conv on 3 channels, a strided conv, one residual block, global average
   pool, linear) for a few steps, with BatchNorm, then fold the BNs into the convs;
2. ASP: 2:4 magnitude masks along the input channels, separately for every (k, r, s) of each
   Conv weight K x C x R x S and for every row of the Linear weight (groups of 4 consecutive input
   channels, the 2 largest |w| kept), for layers whose input channels are a multiple of 4 (the
   3-channel stem stays dense); fine-tune a few steps with the masks re-applied after each step;
3. export the masked float model: testdata/models/asp_cnn.onnx;
4. QAT: fake quantization with torch.fake_quantize_per_tensor_affine on the input of every
   Conv/Linear and on the residual skip input (symmetric INT8, amax from the largest |x| seen on
   a few batches) and torch.fake_quantize_per_channel_affine on every weight (per output channel,
   amax/127); fine-tune a few steps (straight-through gradients, masks kept); export with opset 13,
   where the fake quantizations become QuantizeLinear/DequantizeLinear:
   testdata/models/qat_cnn.onnx;
5. the same QAT model without the residual skip quantizer (pytorch-quantization's ResNet without
   `quantize_identity`), which breaks TensorRT's residual placement rule:
   testdata/models/qat_cnn_noskipq.onnx.

Run with a Python that has torch (e.g. Debian's python3-torch: /usr/bin/python3):
    python3 scripts/make_qat_asp_models.py [OUT_DIR]      (default testdata/models)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "testdata", "models")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(32)
        self.b1 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.b1_bn = nn.BatchNorm2d(32)
        self.b2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.b2_bn = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)
        self.folded = False
        # QAT: None (float) or a dict name -> amax for activations
        self.act_amax = None
        self.quantize_skip = True
        self.w_amax = None

    def conv(self, name, x):
        conv = getattr(self, name)
        if not self.folded:
            return getattr(self, name + "_bn")(conv(x))
        return conv(x)

    def q_act(self, name, x):
        if self.act_amax is None:
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.act_amax[name] / 127.0, 0, -128, 127)

    def q_weight(self, name, w):
        if self.act_amax is None:
            return w
        # frozen for export (a constant, like pytorch-quantization's amax buffers)
        amax = self.w_amax[name] if self.w_amax else w.detach().abs().flatten(1).max(dim=1).values.clamp(min=1e-8)
        zp = torch.zeros(w.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, amax / 127.0, zp, 0, -128, 127)

    def qconv(self, name, x):
        conv = getattr(self, name)
        x = self.q_act(name, x)
        if self.act_amax is None and not self.folded:
            return self.conv(name, x)
        return F.conv2d(x, self.q_weight(name, conv.weight), conv.bias, conv.stride, conv.padding)

    def forward(self, x):
        x = F.relu(self.qconv("stem", x))
        x = F.relu(self.qconv("down", x))
        y = F.relu(self.qconv("b1", x))
        y = self.qconv("b2", y)
        skip = self.q_act("skip", x) if self.quantize_skip else x
        x = F.relu(y + skip)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.q_act("fc", x)
        return F.linear(x, self.q_weight("fc", self.fc.weight), self.fc.bias)


def fold_bn(net):
    for name in ["stem", "down", "b1", "b2"]:
        conv, bn = getattr(net, name), getattr(net, name + "_bn")
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.data = conv.weight.data * s.reshape(-1, 1, 1, 1)
        conv.bias = nn.Parameter((bn.bias - bn.running_mean * s).detach())
    net.folded = True


def mask_2of4(w):
    """ASP-style mask: along dim 1 (input channels) in groups of 4, keep the 2 largest |w|,
    separately for every other index (k, r, s)."""
    if w.dim() == 4:
        k, c, r, s = w.shape
        g = w.detach().abs().permute(0, 2, 3, 1).reshape(k, r, s, c // 4, 4)
    else:
        k, c = w.shape
        g = w.detach().abs().reshape(k, c // 4, 4)
    idx = g.topk(2, dim=-1).indices
    m = torch.zeros_like(g).scatter_(-1, idx, 1.0)
    if w.dim() == 4:
        return m.reshape(k, r, s, c).permute(0, 3, 1, 2).contiguous()
    return m.reshape(k, c)


def data(n, teacher):
    x = torch.randn(n, 3, 32, 32)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    return x, y


def train(net, teacher, steps, masks=None, lr=0.05):
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    net.train()
    for _ in range(steps):
        x, y = data(32, teacher)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if masks:
            with torch.no_grad():
                for p, m in masks:
                    p.mul_(m)
    net.eval()
    return float(loss)


def export(net, path):
    net.eval()
    x = torch.randn(1, 3, 32, 32)
    torch.onnx.export(net, x, path, opset_version=13, input_names=["input"], output_names=["logits"],
                      do_constant_folding=True)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    os.makedirs(OUT, exist_ok=True)
    teacher = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10)).eval()
    net = Net()
    print("dense loss", train(net, teacher, 40))
    fold_bn(net)
    # ASP: masks on every layer whose input channels are a multiple of 4 (not the RGB stem)
    masks = []
    for name in ["down", "b1", "b2", "fc"]:
        p = getattr(net, name).weight
        m = mask_2of4(p)
        with torch.no_grad():
            p.mul_(m)
        masks.append((p, m))
    print("ASP fine-tune loss", train(net, teacher, 20, masks, lr=0.01))
    export(net, os.path.join(OUT, "asp_cnn.onnx"))
    # QAT: activation ranges from a few batches (max calibration), then fine-tune with masks
    amax = {}

    def record(name):
        def f(x):
            amax[name] = max(amax.get(name, 0.0), float(x.detach().abs().max()))
            return x
        return f

    net.act_amax = None
    # measure the inputs the quantizers will see, through the float model
    with torch.no_grad():
        for _ in range(4):
            x, _ = data(32, teacher)
            orig = net.q_act
            net.act_amax = None
            net.q_act = lambda name, t: record(name)(t)
            net(x)
            net.q_act = orig
    net.act_amax = amax
    print("QAT fine-tune loss", train(net, teacher, 10, masks, lr=0.002))
    net.w_amax = {n: getattr(net, n).weight.detach().abs().flatten(1).max(dim=1).values.clamp(min=1e-8)
                  for n in ["stem", "down", "b1", "b2", "fc"]}
    export(net, os.path.join(OUT, "qat_cnn.onnx"))
    net.quantize_skip = False
    export(net, os.path.join(OUT, "qat_cnn_noskipq.onnx"))


if __name__ == "__main__":
    main()
