#!/usr/bin/env python3
"""Format BENCH lines (from stdin or files) as a Markdown table.

  table.py [FILE ...]
"""

from __future__ import annotations

import fileinput
import shlex
import sys

MAIN = ["tool", "model", "mode", "wall_s", "cpu_s", "peak_rss_mib", "rc"]


def main() -> int:
    rows = []
    for line in fileinput.input(sys.argv[1:]):
        if not line.startswith("BENCH "):
            continue
        kv = dict(tok.partition("=")[::2] for tok in shlex.split(line[6:]))
        rows.append(kv)
    if not rows:
        print("(no BENCH lines)")
        return 0
    print("| " + " | ".join(MAIN + ["details"]) + " |")
    print("|" + "---|" * (len(MAIN) + 1))
    for kv in rows:
        details = " ".join(f"{k}={v}" for k, v in kv.items() if k not in MAIN)
        print("| " + " | ".join(kv.get(k, "") for k in MAIN) + f" | {details} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
