#!/usr/bin/env python3
"""Independent check of TensorRT's 2:4 rule on the layers a sparseqc report calls pruned.

  check_2of4.py MODEL.onnx REPORT.json

For every prune-2of4 item with action "pruned", the weight (by name, from the report) must have
at least two zeros in every four consecutive elements along the reported axis, separately for
every other index (for Conv K x C x R x S: four consecutive input channels per (k, r, s)).
Written with numpy only, sharing no code with sparseqc. Prints 'N passed, N failed'.
"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main() -> int:
    model = onnx.load(sys.argv[1])
    report = json.load(open(sys.argv[2]))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    passed = failed = 0
    for p in report["passes"]:
        if p["pass"] != "prune-2of4":
            continue
        for it in p["items"]:
            if it["action"] != "pruned":
                continue
            name, axis = it["details"]["weight"], it["details"]["axis"]
            w = np.moveaxis(weights[name], axis, -1)
            groups = w.reshape(-1, w.shape[-1] // 4, 4)
            ok = bool(((groups == 0).sum(axis=-1) >= 2).all())
            passed += ok
            failed += not ok
            if not ok:
                print(f"FAIL {it['node']}: {name} along axis {axis}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
