#!/usr/bin/env python3
"""Top-1 accuracy of an ONNX classifier with onnxruntime (CPU).

  eval_top1.py MODEL --dataset cifar10|imagenet --split calib|test|eval [--limit N]
               [--threads 2] [--batch B] [--data DIR] [--json OUT.json]

Prints `top1=XX.XX% (n=N)`. Data layout and preprocessing: shared/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--dataset", required=True, choices=["cifar10", "imagenet"])
    ap.add_argument("--split", required=True, help="calib | test (cifar10) | eval (imagenet)")
    ap.add_argument("--data", default=str(sqc_data.DEFAULT_DATA),
                    help="data root holding cifar10/ and imagenet-sample/ (default: ../shared/data from the repo root)")
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N images (0 = all)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default 500 cifar10, 25 imagenet)")
    ap.add_argument("--no-ort-opt", action="store_true",
                    help="disable onnxruntime graph optimisations (QDQ then runs as float fake-quant)")
    ap.add_argument("--json", help="write the result as JSON to this file")
    args = ap.parse_args(argv)

    paths, labels, prep = sqc_data.dataset_split(args.data, args.dataset, args.split)
    if not paths:
        print(f"no images found for {args.dataset}/{args.split} under {args.data}", file=sys.stderr)
        return 2
    if args.limit > 0:
        paths, labels = paths[: args.limit], labels[: args.limit]
    batch = args.batch or (500 if prep == "cifar" else 25)

    sess = sqc_data.ort_session(args.model, threads=args.threads, optimize=not args.no_ort_opt)
    inp = sess.get_inputs()[0].name
    out = sess.get_outputs()[0].name

    t0 = time.perf_counter()
    correct = 0
    preds = []
    for i in range(0, len(paths), batch):
        x = sqc_data.load_batch(paths[i: i + batch], prep)
        logits = sess.run([out], {inp: x})[0]
        p = np.argmax(logits.reshape(logits.shape[0], -1), axis=1)
        preds.extend(int(v) for v in p)
        correct += int(np.sum(p == np.asarray(labels[i: i + batch])))
    dt = time.perf_counter() - t0
    n = len(paths)
    top1 = 100.0 * correct / n
    print(f"top1={top1:.2f}% (n={n})")
    print(f"correct={correct} seconds={dt:.2f} model={args.model}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": str(args.model), "dataset": args.dataset, "split": args.split,
            "n": n, "correct": correct, "top1": round(top1, 4), "seconds": round(dt, 3),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
