#!/usr/bin/env python3
"""Validate ONNX models with onnx.checker.check_model(full_check=True).

  check_model.py MODEL [MODEL ...]

Models with external data are checked by path (the checker then reads the data next
to the model), so files over 2 GB work. Exits 1 if any model fails.
"""

from __future__ import annotations

import sys

import onnx


def check(path: str) -> str | None:
    try:
        # Checking by path handles >2 GB models and external data; full_check adds
        # strict shape inference.
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # noqa: BLE001 - report any failure with its message
        return f"{type(e).__name__}: {e}"
    return None


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    failed = 0
    for path in argv:
        err = check(path)
        if err is None:
            print(f"OK   {path}")
        else:
            failed += 1
            print(f"FAIL {path}: {err}")
    if len(argv) > 1:
        print(f"{len(argv) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
