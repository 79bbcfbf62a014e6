#!/usr/bin/env python3
"""Anchor: onnxruntime.quantization static INT8 (QDQ) of a CNN, calibrated on images.

  ort_quantize.py MODEL --calib DIR --dataset cifar10|imagenet OUT.onnx
                  [--method minmax|entropy|percentile] [--limit N] [--batch B] [--no-preprocess]
  ort_quantize.py MODEL --calib DIR --dataset ... --calib-only [--method ...]
  ort_quantize.py MODEL --calib DIR --dataset ... --dump-amax AMAX.json [--no-preprocess]

Full mode: quant_pre_process (symbolic + ONNX shape inference and onnxruntime's basic graph
optimisations, which fold BatchNormalization into Conv) then quantize_static with
QuantFormat.QDQ, per_channel=True, INT8 weights and activations, extra options
ActivationSymmetric=True, WeightSymmetric=True, CalibTensorRangeSymmetric=True.

--calib-only: pre-process, then only run the chosen calibrator over the images (the data
reader serves preprocessed arrays from memory) and report calibration throughput
(calib_images_per_s; the image decoding/preprocessing time is reported apart as prep_s).

--dump-amax FILE: run the MinMax calibrator (symmetric) over every float tensor of the
(pre-processed, unless --no-preprocess) model and write {tensor: amax} to JSON, where
amax = max(|min|, |max|) over all calibration images, as onnxruntime computes it.

Images: every image under --calib (recursively, sorted by relative path), preprocessed as
in eval_top1.py (cifar10: 32x32 normalise; imagenet: resize 256, crop 224, normalise).
Prints a BENCH line with wall_s, peak_rss_mib and the phase times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import benchlib  # noqa: E402


def _load_images(args):
    import numpy as np
    import sqc_data

    prep = "cifar" if args.dataset == "cifar10" else "imagenet"
    paths = sqc_data.list_images(args.calib)
    if args.limit > 0:
        paths = paths[: args.limit]
    if not paths:
        raise SystemExit(f"no images under {args.calib}")
    arr = sqc_data.load_batch(paths, prep)
    # onnxruntime's histogram calibrators (entropy, percentile) stack the per-batch arrays and
    # fail on a ragged last batch, so use the largest batch size <= --batch that divides N.
    b = max(d for d in range(1, max(1, args.batch) + 1) if len(paths) % d == 0)
    return [np.ascontiguousarray(arr[i: i + b]) for i in range(0, len(arr), b)], len(paths)


def _reader(batches, input_name):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

        def rewind(self):
            self._it = iter(batches)

    return Reader()


def _method(name):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def child(args) -> int:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.shape_inference import quant_pre_process

    kv = {}
    tmp = tempfile.TemporaryDirectory(prefix="sqc-ortq-")
    t0 = time.perf_counter()
    model_path = args.model
    if not args.no_preprocess:
        pre = os.path.join(tmp.name, "pre.onnx")
        quant_pre_process(args.model, pre)
        model_path = pre
        if args.save_pre:
            import shutil
            shutil.copyfile(pre, args.save_pre)
    t1 = time.perf_counter()
    kv["preprocess_s"] = f"{t1 - t0:.3f}"
    m = onnx.load(model_path, load_external_data=False)
    kv["bn_after_pre"] = sum(n.op_type == "BatchNormalization" for n in m.graph.node)
    input_name = m.graph.input[0].name
    del m

    batches, n = _load_images(args)
    t2 = time.perf_counter()
    kv["images"] = n
    kv["prep_s"] = f"{t2 - t1:.3f}"

    if args.calib_only or args.dump_amax:
        method = "minmax" if args.dump_amax else args.method
        extra = {"symmetric": True}
        if method == "percentile":
            extra["percentile"] = args.percentile
        cal = create_calibrator(model_path, None, augmented_model_path=os.path.join(tmp.name, "aug.onnx"),
                                calibrate_method=_method(method), extra_options=extra)
        t3 = time.perf_counter()
        cal.collect_data(_reader(batches, input_name))
        t4 = time.perf_counter()
        ranges = cal.compute_data()
        t5 = time.perf_counter()
        kv.update(method=method, calib_setup_s=f"{t3 - t2:.3f}", calib_collect_s=f"{t4 - t3:.3f}",
                  calib_compute_s=f"{t5 - t4:.3f}", calib_s=f"{t5 - t2:.3f}",
                  calib_images_per_s=f"{n / (t5 - t2):.1f}", tensors=len(ranges.data))
        if args.dump_amax:
            import numpy as np
            amax = {}
            for name in sorted(ranges.data):
                lo, hi = ranges.data[name].range_value
                lo = np.asarray(lo, dtype=np.float64).reshape(-1)
                hi = np.asarray(hi, dtype=np.float64).reshape(-1)
                amax[name] = float(max(np.abs(lo).max(), np.abs(hi).max()))
            doc = {
                "generator": "scripts/bench/ort_quantize.py --dump-amax",
                "onnxruntime": __import__("onnxruntime").__version__,
                "model": str(args.model),
                "preprocessed_with_quant_pre_process": not args.no_preprocess,
                "calibrator": "onnxruntime.quantization MinMaxCalibrater(symmetric=True), all float tensors",
                "definition": "amax = max(|min|, |max|) over all calibration images (global, no averaging)",
                "images": n,
                "calib_dir": str(args.calib),
                "amax": amax,
            }
            Path(args.dump_amax).write_text(json.dumps(doc, indent=1) + "\n")
    else:
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True}
        if args.method == "percentile":
            extra["CalibPercentile"] = args.percentile
        t3 = time.perf_counter()
        quantize_static(model_path, args.out, _reader(batches, input_name),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=_method(args.method), extra_options=extra)
        t4 = time.perf_counter()
        q = onnx.load(args.out, load_external_data=False)
        kv.update(method=args.method, quantize_s=f"{t4 - t3:.3f}",
                  qdq_nodes=sum(nd.op_type in ("QuantizeLinear", "DequantizeLinear") for nd in q.graph.node))
    kv["work_s"] = f"{time.perf_counter() - t0:.3f}"
    benchlib.child_kv(**kv)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out", nargs="?", help="quantized model (full mode)")
    ap.add_argument("--calib", required=True, help="folder of calibration images")
    ap.add_argument("--dataset", required=True, choices=["cifar10", "imagenet"], help="selects the preprocessing")
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--percentile", type=float, default=99.999)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N calibration images")
    ap.add_argument("--batch", type=int, default=16,
                    help="calibration batch size (lowered to a divisor of the image count)")
    ap.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process (model already BN-folded)")
    ap.add_argument("--save-pre", help="also save the quant_pre_process output here")
    ap.add_argument("--calib-only", action="store_true")
    ap.add_argument("--dump-amax", metavar="FILE")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (args.calib_only or args.dump_amax) and not args.out:
        ap.error("OUT is required unless --calib-only or --dump-amax")
    if args._child:
        return child(args)
    cmd = [sys.executable, __file__] + [a for a in (argv if argv is not None else sys.argv[1:])] + ["--_child"]
    mode = "dump_amax" if args.dump_amax else ("calib_only" if args.calib_only else "quantize")
    res = benchlib.measure(cmd, "ort_quantize", {"model": Path(args.model).name, "mode": mode})
    return int(res["rc"])


if __name__ == "__main__":
    sys.exit(main())
