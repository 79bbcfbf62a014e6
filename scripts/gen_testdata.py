#!/usr/bin/env python3
"""(Re)build sparseqc's small test data in testdata/ and its onnxruntime reference values.

  gen_testdata.py [--shared ../shared] [--copy]

--copy copies from shared/ (a developer's checkout; tests never read shared/):
  shared/models/cifar10_resnet20_bn.onnx      -> testdata/models/resnet20_bn.onnx
  shared/models/cifar10_resnet20_folded.onnx  -> testdata/models/resnet20_folded.onnx
  shared/data/cifar10/test/<class>/NNNN.jpg   -> testdata/cifar10-mini/<class>/NNNN.jpg
      (the first 3 images of each of the 10 classes, plus the 4th of airplane and automobile:
       32 images, so batch sizes 1/2/4/8/16/32 all divide the set)

Then, from testdata/ only, writes:
  testdata/cifar10-mini.input.npy     float32 [32,3,32,32], the preprocessed batch (order below)
  testdata/cifar10-mini.expected.json labels, decoded-pixel hashes, onnxruntime logits of
                                      resnet20_bn and resnet20_folded, and onnxruntime's MinMax
                                      symmetric amax per tensor (via bench/ort_quantize.py --dump-amax)
Image order everywhere: sorted by relative path "<class>/<file>".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sqc_data  # noqa: E402

ROOT = HERE.parent
TD = ROOT / "testdata"
MINI = TD / "cifar10-mini"
MODELS = TD / "models"


def copy_from_shared(shared: Path) -> None:
    MODELS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "models" / "cifar10_resnet20_bn.onnx", MODELS / "resnet20_bn.onnx")
    shutil.copyfile(shared / "models" / "cifar10_resnet20_folded.onnx", MODELS / "resnet20_folded.onnx")
    src = shared / "data" / "cifar10" / "test"
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    if MINI.exists():
        shutil.rmtree(MINI)
    for ci, c in enumerate(classes):
        files = sorted((src / c).glob("*.jpg"))[: 4 if ci < 2 else 3]
        (MINI / c).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, MINI / c / f.name)


def run_logits(model: Path, x: np.ndarray) -> list[list[float]]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
    y = s.run(None, {s.get_inputs()[0].name: x})[0]
    return [[float(v) for v in row] for row in y]


def dump_amax(model: Path, preprocess: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "amax.json"
        cmd = [sys.executable, str(HERE / "bench" / "ort_quantize.py"), str(model), "--calib", str(MINI),
               "--dataset", "cifar10", "--dump-amax", str(out), "--batch", "8"]
        if not preprocess:
            cmd.append("--no-preprocess")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--copy", action="store_true", help="(re)copy models and images from shared/")
    args = ap.parse_args(argv)
    if args.copy:
        copy_from_shared(Path(args.shared))

    paths, labels = sqc_data.cifar_split(MINI)
    rel = [p.relative_to(MINI).as_posix() for p in paths]
    x = sqc_data.load_batch(paths, "cifar")
    np.save(TD / "cifar10-mini.input.npy", x)

    pixel_sha = []
    for p in paths:
        with Image.open(p) as im:
            pixel_sha.append(hashlib.sha256(np.asarray(im.convert("RGB"), dtype=np.uint8).tobytes()).hexdigest())

    logits = {m: run_logits(MODELS / m, x) for m in ("resnet20_bn.onnx", "resnet20_folded.onnx")}
    preds = [int(np.argmax(r)) for r in logits["resnet20_bn.onnx"]]

    amax_folded = dump_amax(MODELS / "resnet20_folded.onnx", preprocess=False)
    amax_bnpre = dump_amax(MODELS / "resnet20_bn.onnx", preprocess=True)

    doc = {
        "generator": "scripts/gen_testdata.py",
        "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__,
                     "pillow": Image.__version__},
        "images": rel,
        "labels": labels,
        "classes": sorted(p.name for p in MINI.iterdir() if p.is_dir()),
        "preprocess": "Pillow decode, convert('RGB'), /255, subtract mean (0.485,0.456,0.406), divide by std "
                      "(0.229,0.224,0.225), NCHW float32, no resize",
        "input_npy": "cifar10-mini.input.npy (float32 [32,3,32,32], same order as images)",
        "decoded_rgb_sha256": pixel_sha,
        "logits_note": "onnxruntime CPU, graph optimisations disabled (ORT_DISABLE_ALL), input = input_npy",
        "logits": logits,
        "pred_resnet20_bn": preds,
        "correct_resnet20_bn": int(sum(int(a == b) for a, b in zip(preds, labels))),
        "amax_note": "onnxruntime MinMaxCalibrater(symmetric=True) over all 32 images, every float tensor; "
                     "amax = max(|min|,|max|). Keys are tensor names of the model named in each entry.",
        "amax": {
            "resnet20_folded.onnx": {
                "model": "testdata/models/resnet20_folded.onnx as is (PyTorch's BN-folded export; tensor "
                         "names /conv1/Conv_output_0 ...)",
                "amax": amax_folded["amax"],
            },
            "resnet20_bn.onnx+quant_pre_process": {
                "model": "testdata/models/resnet20_bn.onnx after onnxruntime quant_pre_process, which folds BN "
                         "into Conv and keeps the BatchNormalization output names "
                         "(/bn1/BatchNormalization_output_0 ...) on the fused Conv outputs",
                "amax": amax_bnpre["amax"],
            },
        },
    }
    (TD / "cifar10-mini.expected.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {TD / 'cifar10-mini.expected.json'}: {len(rel)} images, "
          f"resnet20_bn correct {doc['correct_resnet20_bn']}/{len(rel)}, "
          f"amax tensors {len(amax_folded['amax'])} (folded) / {len(amax_bnpre['amax'])} (bn+pre)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
