#!/usr/bin/env python3
"""Anchor: onnxsim (onnx-simplifier) end to end: load, simplify (BN folded into Conv by
its fuse_bn_into_conv pass, constant folding, shape inference), save.

  onnxsim_run.py IN.onnx OUT.onnx [--external] [--no-check]

Prints a BENCH line (wall_s, peak_rss_mib, work_s = load+simplify+save, node and
BatchNormalization counts before/after).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def child(args) -> int:
    import onnx
    import onnxsim

    t0 = time.perf_counter()
    model = onnx.load(args.inp)
    n0 = len(model.graph.node)
    bn0 = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    t1 = time.perf_counter()
    simp, ok = onnxsim.simplify(model, check_n=0 if args.no_check else 1)
    t2 = time.perf_counter()
    out = Path(args.out)
    size = sum(len(t.raw_data) for t in simp.graph.initializer)
    if args.external or size > (2**31 - 2**24):
        data = out.parent / (out.name + ".data")
        if data.exists():
            data.unlink()
        onnx.save(simp, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    else:
        onnx.save(simp, str(out))
    t3 = time.perf_counter()
    bn1 = sum(n.op_type == "BatchNormalization" for n in simp.graph.node)
    benchlib.child_kv(load_s=f"{t1 - t0:.3f}", simplify_s=f"{t2 - t1:.3f}", save_s=f"{t3 - t2:.3f}",
                      work_s=f"{t3 - t0:.3f}", nodes_in=n0, nodes_out=len(simp.graph.node),
                      bn_in=bn0, bn_out=bn1, check_ok=int(bool(ok)))
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--external", action="store_true")
    ap.add_argument("--no-check", action="store_true", help="skip onnxsim's random-input output check")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return child(args)
    cmd = [sys.executable, __file__, args.inp, args.out, "--_child"]
    cmd += ["--external"] if args.external else []
    cmd += ["--no-check"] if args.no_check else []
    res = benchlib.measure(cmd, "onnxsim", {"model": Path(args.inp).name})
    return int(res["rc"])


if __name__ == "__main__":
    sys.exit(main())
