#!/usr/bin/env python3
"""Run any command and print its wall time and peak RSS as one BENCH line.

  measure.py [--tool NAME] [--key k=v ...] -- CMD [ARGS...]

Exits with the command's exit code. See benchlib.py for the line format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    i = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=None)
    ap.add_argument("--key", action="append", default=[], help="extra k=v to print")
    args = ap.parse_args(argv[:i])
    cmd = argv[i + 1:]
    extra = dict(kv.split("=", 1) for kv in args.key)
    res = benchlib.measure(cmd, args.tool or Path(cmd[0]).name, extra)
    return int(res["rc"])


if __name__ == "__main__":
    sys.exit(main())
