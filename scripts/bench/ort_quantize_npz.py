#!/usr/bin/env python3
"""Anchor for transformers: onnxruntime.quantization static INT8 (QDQ) calibrated on an .npz.

  ort_quantize_npz.py MODEL CALIB.npz OUT.onnx [--no-preprocess] [--batch 1]

The .npz holds one array per model input, the first axis counting samples (the layout
sparseqc's --calib reads). Same settings as ort_quantize.py (the CNN variant): quant_pre_process
(unless --no-preprocess), then quantize_static with QuantFormat.QDQ, per_channel=True, INT8
weights and activations, MinMax calibration, ActivationSymmetric, WeightSymmetric and
CalibTensorRangeSymmetric. Prints the phase times; time the whole process with /usr/bin/time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("out")
    ap.add_argument("--no-preprocess", action="store_true")
    ap.add_argument("--batch", type=int, default=1, help="samples per calibration batch (the model's batch size)")
    a = ap.parse_args()
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="sqc-ortq-")
    model = a.model
    if not a.no_preprocess:
        model = os.path.join(tmp.name, "pre.onnx")
        quant_pre_process(a.model, model, skip_symbolic_shape=True)
    t1 = time.perf_counter()
    data = dict(np.load(a.calib))
    n = min(v.shape[0] for v in data.values())

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            s = {k: np.ascontiguousarray(v[self.i: self.i + a.batch]) for k, v in data.items()}
            self.i += a.batch
            return s

        def rewind(self):
            self.i = 0

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True}
    quantize_static(model, a.out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    t2 = time.perf_counter()
    print(f"ort_quantize_npz samples={n} preprocess_s={t1 - t0:.2f} quantize_s={t2 - t1:.2f} total_s={t2 - t0:.2f}")


if __name__ == "__main__":
    main()
