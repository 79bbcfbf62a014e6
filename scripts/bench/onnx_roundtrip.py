#!/usr/bin/env python3
"""Anchor: onnx.load + onnx.save of a model (protobuf round trip with the onnx package).

  onnx_roundtrip.py IN.onnx OUT.onnx [--external]

External data of IN is loaded into memory; OUT is written with external data
(OUT.onnx.data, one file) when --external is given, when IN had external data, or when
the model is over 2 GB. Prints a BENCH line (wall_s, peak_rss_mib, work_s = load+save).
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
    from onnx.external_data_helper import uses_external_data

    t0 = time.perf_counter()
    model = onnx.load(args.inp)
    t1 = time.perf_counter()
    had_external = False
    size = 0
    for t in model.graph.initializer:
        size += len(t.raw_data)
        had_external = had_external or uses_external_data(t)
    external = args.external or had_external or size > (2**31 - 2**24)
    out = Path(args.out)
    if external:
        data = out.parent / (out.name + ".data")
        if data.exists():
            data.unlink()  # onnx appends to an existing data file
        onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data.name, size_threshold=1024)
    else:
        onnx.save(model, str(out))
    t2 = time.perf_counter()
    benchlib.child_kv(load_s=f"{t1 - t0:.3f}", save_s=f"{t2 - t1:.3f}", work_s=f"{t2 - t0:.3f}",
                      external=int(external), nodes=len(model.graph.node))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--external", action="store_true")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return child(args)
    cmd = [sys.executable, __file__, args.inp, args.out, "--_child"] + (["--external"] if args.external else [])
    res = benchlib.measure(cmd, "onnx_roundtrip", {"model": Path(args.inp).name})
    return int(res["rc"])


if __name__ == "__main__":
    sys.exit(main())
