#!/usr/bin/env python3
"""Anchor: onnxoptimizer with BN folding and dead-code/identity clean-up, load to save.

  onnxoptimizer_run.py IN.onnx OUT.onnx [--passes p1,p2,...]

Default passes: fuse_bn_into_conv, eliminate_identity, eliminate_nop_dropout, eliminate_deadend,
eliminate_unused_initializer (the closest match to sparseqc's `fold-bn,cleanup`).
Prints a BENCH line (wall_s, cpu_s, peak_rss_mib, work_s, node/BN counts).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

DEFAULT = "fuse_bn_into_conv,eliminate_identity,eliminate_nop_dropout,eliminate_deadend,eliminate_unused_initializer"


def child(args) -> int:
    import onnx
    import onnxoptimizer

    t0 = time.perf_counter()
    model = onnx.load(args.inp)
    n0 = len(model.graph.node)
    bn0 = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    t1 = time.perf_counter()
    opt = onnxoptimizer.optimize(model, args.passes.split(","))
    t2 = time.perf_counter()
    out = Path(args.out)
    size = sum(len(t.raw_data) for t in opt.graph.initializer)
    if size > (2**31 - 2**24):
        data = out.parent / (out.name + ".data")
        if data.exists():
            data.unlink()
        onnx.save(opt, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    else:
        onnx.save(opt, str(out))
    t3 = time.perf_counter()
    benchlib.child_kv(load_s=f"{t1 - t0:.3f}", optimize_s=f"{t2 - t1:.3f}", save_s=f"{t3 - t2:.3f}",
                      work_s=f"{t3 - t0:.3f}", nodes_in=n0, nodes_out=len(opt.graph.node), bn_in=bn0,
                      bn_out=sum(n.op_type == "BatchNormalization" for n in opt.graph.node))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--passes", default=DEFAULT)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return child(args)
    cmd = [sys.executable, __file__, args.inp, args.out, "--passes", args.passes, "--_child"]
    res = benchlib.measure(cmd, "onnxoptimizer", {"model": Path(args.inp).name})
    return int(res["rc"])


if __name__ == "__main__":
    sys.exit(main())
