"""Measurement helpers for the benchmark anchors.

Every benchmark runs its work in a child process and reports, in one machine-readable line,

  BENCH tool=<name> wall_s=<s> cpu_s=<s> peak_rss_mib=<MiB> rc=<exit> [key=value ...]

wall_s is the child's whole wall time (interpreter start, imports, load, work, save), the
figure comparable with running a compiled CLI end to end; peak_rss_mib is the child's own
maximum resident set size and cpu_s its user+system CPU time (less sensitive than wall_s to
other load on the machine), both from wait4()'s rusage of the child; on Linux that includes the
child's own waited-for descendants (CPU summed, peak RSS as the largest single process). Extra
keys (e.g. work_s, the timed part measured inside the child) come from lines
`BENCHKV key=value ...` that the child prints.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time


def measure(cmd: list[str], tool: str, extra: dict | None = None, echo: bool = True) -> dict:
    """Run cmd, return {'wall_s', 'peak_rss_mib', 'rc', ...child BENCHKV pairs}; print the BENCH line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    kv: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("BENCHKV "):
            for tok in shlex.split(line[len("BENCHKV "):]):
                k, _, v = tok.partition("=")
                kv[k] = v
        elif echo:
            sys.stderr.write(line)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    res = {"tool": tool, "wall_s": f"{wall:.3f}", "cpu_s": f"{ru.ru_utime + ru.ru_stime:.3f}",
           "peak_rss_mib": f"{ru.ru_maxrss / 1024.0:.1f}", "rc": str(proc.returncode)}
    res.update(kv)
    if extra:
        res.update({k: str(v) for k, v in extra.items()})
    print("BENCH " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in res.items()), flush=True)
    return res


def child_kv(**kv) -> None:
    """Called inside the child: report extra key=value pairs to the parent."""
    print("BENCHKV " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in kv.items()), flush=True)
