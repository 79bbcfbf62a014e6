#!/usr/bin/env python3
"""Check compiled BERT-base models (scripts/bench/bert_vs_ort.sh) outside sparseqc.

  bert_check_outputs.py ORIGINAL.onnx COMPILED.onnx [COMPILED.onnx ...]

Every compiled model must pass onnx.checker.check_model(full_check=True) (by path) and run
in onnxruntime (CPU); its output is compared with the original model's on 8 fresh samples
drawn the way scripts/make_bert_base.py draws its calibration samples but from another seed
(1234), so no compile has seen them. Prints, per model: checker result, Q/DQ node counts,
and the output SQNR in dB over those samples. Exits 1 if a model fails the checker or does
not run.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort


def run(path: str, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


def fresh_samples(n: int, seq: int = 128, vocab: int = 30522, seed: int = 1234) -> list[dict[str, np.ndarray]]:
    """[CLS] tokens, two segments, padding: as make_bert_base.py, another seed."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(seq // 4, seq + 1, size=n)
    valid = np.arange(seq)[None, :] < lengths[:, None]
    ids = rng.integers(1000, vocab, size=(n, seq)).astype(np.int64)
    ids[:, 0] = 101
    split = (lengths * rng.uniform(0.3, 0.7, size=n)).astype(np.int64)
    types = (np.arange(seq)[None, :] >= split[:, None]) & valid
    ids[~valid] = 0
    return [
        {"input_ids": ids[i : i + 1], "token_type_ids": types[i : i + 1].astype(np.int64), "attention_mask": valid[i : i + 1].astype(np.int64)}
        for i in range(n)
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip())
        return 2
    orig, compiled = argv[0], argv[1:]
    feeds = fresh_samples(8)
    ref = run(orig, feeds)
    bad = 0
    for path in compiled:
        try:
            onnx.checker.check_model(path, full_check=True)
            checked = "onnx.checker ok"
        except Exception as e:  # noqa: BLE001 - report any failure
            print(f"{path}: onnx.checker FAILED: {type(e).__name__}: {e}")
            bad += 1
            continue
        m = onnx.load(path, load_external_data=False)
        ops = [nd.op_type for nd in m.graph.node]
        try:
            got = run(path, feeds)
        except Exception as e:  # noqa: BLE001
            print(f"{path}: {checked}; onnxruntime FAILED: {e}")
            bad += 1
            continue
        sig = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in ref)
        noise = sum(float(np.sum((r.astype(np.float64) - g) ** 2)) for r, g in zip(ref, got))
        sqnr = 10 * np.log10(sig / noise) if noise > 0 else float("inf")
        print(
            f"{path}: {checked}; onnxruntime ran {len(feeds)} samples; "
            f"QuantizeLinear {ops.count('QuantizeLinear')}, DequantizeLinear {ops.count('DequantizeLinear')}; "
            f"output SQNR vs original {sqnr:.1f} dB"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
