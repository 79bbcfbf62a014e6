#!/usr/bin/env python3
"""Run two ONNX models in onnxruntime (CPU) on the same inputs and compare their outputs.

  compare_outputs.py A.onnx B.onnx (--images DIR | --random N) [--preprocess cifar|imagenet]
                     [--tol 1e-4] [--limit N] [--batch B] [--seed S] [--per-sample] [--json OUT]

For every output (paired by position) and every sample, the relative L2 error
||a - b||_2 / ||a||_2 is computed (A is the reference). Prints the max over samples
per output, the overall max, and the top-1 agreement of the first output.
Exits 1 when the overall max relative L2 exceeds --tol, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqc_data  # noqa: E402

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def _concrete_shape(shape, n):
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif i == 0:
            out.append(n)
        else:
            raise SystemExit(f"input has a symbolic non-batch dim {d!r}; use --images or a static model")
    return out


def _guess_preprocess(sess) -> str:
    shape = sess.get_inputs()[0].shape
    if len(shape) == 4 and shape[2] == 224:
        return "imagenet"
    return "cifar"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="reference model")
    ap.add_argument("b", help="model under test")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (searched recursively)")
    src.add_argument("--random", type=int, metavar="N", help="N random standard-normal inputs")
    ap.add_argument("--preprocess", choices=["cifar", "imagenet"],
                    help="image preprocessing (default: from the input size, 224 -> imagenet, else cifar)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max allowed relative L2 (default 1e-4)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-sample", action="store_true", help="print every sample's relative L2")
    ap.add_argument("--no-ort-opt", action="store_true", help="disable onnxruntime graph optimizations")
    ap.add_argument("--json", help="write per-sample and overall figures to this JSON file")
    args = ap.parse_args(argv)

    sa = sqc_data.ort_session(args.a, threads=args.threads, optimize=not args.no_ort_opt)
    sb = sqc_data.ort_session(args.b, threads=args.threads, optimize=not args.no_ort_opt)
    ins_a, ins_b = sa.get_inputs(), sb.get_inputs()
    if len(ins_a) != len(ins_b):
        raise SystemExit(f"input count differs: {len(ins_a)} vs {len(ins_b)}")
    outs_a, outs_b = sa.get_outputs(), sb.get_outputs()
    if len(outs_a) != len(outs_b):
        raise SystemExit(f"output count differs: {len(outs_a)} vs {len(outs_b)}")

    # Build the list of input batches (each a dict for model A; B gets the same arrays by position).
    batches = []
    if args.images:
        if len(ins_a) != 1:
            raise SystemExit("--images needs a single-input model")
        prep = args.preprocess or _guess_preprocess(sa)
        paths = sqc_data.list_images(args.images)
        if args.limit > 0:
            paths = paths[: args.limit]
        if not paths:
            raise SystemExit(f"no images under {args.images}")
        for i in range(0, len(paths), args.batch):
            batches.append([sqc_data.load_batch(paths[i: i + args.batch], prep)])
        names = [p.relative_to(args.images).as_posix() for p in paths]
    else:
        rng = np.random.default_rng(args.seed)
        n_total = args.random
        names = [f"random[{i}]" for i in range(n_total)]
        for i in range(0, n_total, args.batch):
            n = min(args.batch, n_total - i)
            arrs = []
            for inp in ins_a:
                dt = _ORT_TYPES.get(inp.type, np.float32)
                shape = _concrete_shape(inp.shape, n)
                if np.issubdtype(dt, np.floating):
                    arrs.append(rng.standard_normal(shape).astype(dt))
                else:
                    arrs.append(rng.integers(0, 2, size=shape).astype(dt))
            batches.append(arrs)

    per_sample = []  # list of per-output lists
    agree = total = 0
    for arrs in batches:
        ra = sa.run(None, {i.name: x for i, x in zip(ins_a, arrs)})
        rb = sb.run(None, {i.name: x for i, x in zip(ins_b, arrs)})
        n = arrs[0].shape[0]
        for s in range(n):
            row = []
            for oa, ob in zip(ra, rb):
                if oa.shape != ob.shape:
                    raise SystemExit(f"output shape differs: {oa.shape} vs {ob.shape}")
                va = oa[s].astype(np.float64).ravel() if oa.ndim and oa.shape[0] == n else oa.astype(np.float64).ravel()
                vb = ob[s].astype(np.float64).ravel() if ob.ndim and ob.shape[0] == n else ob.astype(np.float64).ravel()
                den = np.linalg.norm(va)
                num = np.linalg.norm(va - vb)
                row.append(float(num / den) if den > 0 else float(num))
            per_sample.append(row)
        la = ra[0].reshape(n, -1)
        lb = rb[0].reshape(n, -1)
        agree += int(np.sum(la.argmax(1) == lb.argmax(1)))
        total += n

    arr = np.array(per_sample)  # samples x outputs
    if args.per_sample:
        for name, row in zip(names, per_sample):
            print(f"sample {name}: " + " ".join(f"{r:.3e}" for r in row))
    for j, o in enumerate(outs_a):
        print(f"output {o.name}: max_rel_l2={arr[:, j].max():.6e} mean_rel_l2={arr[:, j].mean():.6e}")
    overall = float(arr.max())
    worst = names[int(arr.max(axis=1).argmax())]
    ok = overall <= args.tol
    print(f"max_rel_l2={overall:.6e} (n={total}, worst={worst}) top1_agree={agree}/{total} "
          f"tol={args.tol:g} {'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "a": args.a, "b": args.b, "n": total, "max_rel_l2": overall,
            "per_output_max": {o.name: float(arr[:, j].max()) for j, o in enumerate(outs_a)},
            "top1_agree": agree, "tol": args.tol, "pass": ok,
            "per_sample": dict(zip(names, per_sample)),
        }, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
