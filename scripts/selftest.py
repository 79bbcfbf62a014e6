#!/usr/bin/env python3
"""Quick self-test of the Python side on testdata/ only (no ../shared): a few seconds.

  .venv/bin/python scripts/selftest.py

Checks that the test models pass the ONNX checker, that onnxruntime reproduces the logits
and input tensor recorded in testdata/cifar10-mini.expected.json, that compare_outputs.py
sees the BN and folded ResNet-20 agree, and that gen_resnet50.py builds a valid model.
Ends with the line `N passed, N failed`; exit code 1 on any failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TD = ROOT / "testdata"
sys.path.insert(0, str(HERE))
import sqc_data  # noqa: E402

PY = sys.executable
results: list[tuple[str, bool, str]] = []


def case(fn):
    try:
        fn()
        results.append((fn.__name__, True, ""))
    except Exception as e:  # noqa: BLE001
        results.append((fn.__name__, False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=2)}"))
    return fn


def _run(*args):
    p = subprocess.run([PY, *map(str, args)], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


@case
def test_check_models():
    rc, out = _run(HERE / "check_model.py", TD / "models" / "resnet20_bn.onnx", TD / "models" / "resnet20_folded.onnx")
    assert rc == 0, out


@case
def test_input_tensor_matches_expected():
    exp = json.loads((TD / "cifar10-mini.expected.json").read_text())
    paths, labels = sqc_data.cifar_split(TD / "cifar10-mini")
    assert [p.relative_to(TD / "cifar10-mini").as_posix() for p in paths] == exp["images"]
    assert labels == exp["labels"]
    x = sqc_data.load_batch(paths, "cifar")
    ref = np.load(TD / "cifar10-mini.input.npy")
    assert x.shape == ref.shape == (32, 3, 32, 32)
    assert np.array_equal(x, ref), "preprocessing changed"


@case
def test_logits_match_expected():
    exp = json.loads((TD / "cifar10-mini.expected.json").read_text())
    x = np.load(TD / "cifar10-mini.input.npy")
    for name, ref in exp["logits"].items():
        s = sqc_data.ort_session(TD / "models" / name, threads=1, optimize=False)
        y = s.run(None, {s.get_inputs()[0].name: x})[0]
        ref = np.asarray(ref, dtype=np.float32)
        rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
        assert rel < 1e-5, f"{name}: rel L2 {rel:.3e}"


@case
def test_compare_bn_vs_folded():
    rc, out = _run(HERE / "compare_outputs.py", TD / "models" / "resnet20_bn.onnx",
                   TD / "models" / "resnet20_folded.onnx", "--images", TD / "cifar10-mini", "--no-ort-opt",
                   "--tol", "1e-4")
    assert rc == 0 and "PASS" in out, out


@case
def test_compare_detects_difference():
    with tempfile.TemporaryDirectory() as tmp:
        import onnx
        from onnx import numpy_helper

        m = onnx.load(TD / "models" / "resnet20_folded.onnx")
        init = m.graph.initializer[0]
        arr = numpy_helper.to_array(init).copy()
        arr *= 1.5
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
        bad = Path(tmp) / "bad.onnx"
        onnx.save(m, bad)
        rc, out = _run(HERE / "compare_outputs.py", TD / "models" / "resnet20_folded.onnx", bad, "--random", "4")
        assert rc == 1 and "FAIL" in out, out


@case
def test_gen_resnet50_small_external():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r50w.onnx"
        rc, log = _run(HERE / "gen_resnet50.py", out, "--width-mult", "0.25", "--external")
        assert rc == 0, log
        assert (Path(tmp) / "r50w.onnx.data").exists()
        rc, log = _run(HERE / "check_model.py", out)
        assert rc == 0, log
        s = sqc_data.ort_session(out, threads=1)
        y = s.run(None, {"input": np.zeros((1, 3, 224, 224), np.float32)})[0]
        assert y.shape == (1, 1000) and np.isfinite(y).all()


def main() -> int:
    failed = [r for r in results if not r[1]]
    for name, ok, msg in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            print("     " + msg.replace("\n", "\n     "))
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
