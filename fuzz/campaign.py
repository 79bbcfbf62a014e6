#!/usr/bin/env python3
"""Runs a fuzzing campaign over every target, N at a time, niced, until each target has
accumulated the wanted CPU time or the deadline passes. CPU time is measured per run from
the kernel's rusage of the fuzzer (libFuzzer's -max_total_time is wall-clock, and on a shared
machine a niced fuzzer gets less than one core).

    python3 fuzz/campaign.py --cpu-min 30 --parallel 2 --deadline 18:58 [--slice-min 8]

Run from the repository root after `cargo +nightly fuzz build` and `fuzz/seed.sh`.
Writes fuzz/logs/<target>-<n>.log per run and fuzz/logs/campaign.json (the figures of
docs/reliability.md). A target that crashed is paused until its binary is rebuilt (the fix),
so the CPU is not spent finding the same bug again.
"""
import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

TARGETS = {
    # name: max_len
    "onnx_roundtrip": 65536,
    "text_roundtrip": 16384,
    "npy_read": 16384,
    "image_preprocess": 16384,
    "pass_pipeline": 65536,
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "fuzz/target/x86_64-unknown-linux-gnu/release")
LOGS = os.path.join(ROOT, "fuzz/logs")


def parse_log(path):
    """execs, cov, ft, exec/s and whether it crashed, from a libFuzzer log."""
    text = open(path, errors="replace").read()
    r = {"execs": 0, "cov": None, "ft": None, "crashed": False, "artifacts": [], "slow": []}
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    if m:
        r["execs"] = int(m[-1])
    else:
        m = re.findall(r"^#(\d+)\s", text, re.M)
        if m:
            r["execs"] = int(m[-1])
    for cov, ft in re.findall(r"cov: (\d+) ft: (\d+)", text):
        r["cov"], r["ft"] = int(cov), int(ft)
    units = re.findall(r"Test unit written to (\S+)", text)
    # a slow unit (libFuzzer's -report_slow_units) is written but the run goes on: not a crash
    r["slow"] = [u for u in units if os.path.basename(u).startswith("slow-unit-")]
    r["artifacts"] = [u for u in units if u not in r["slow"]]
    r["crashed"] = bool(r["artifacts"]) or "==ERROR:" in text or "deadly signal" in text
    return r


def print_table():
    state = json.load(open(os.path.join(LOGS, "campaign.json")))
    print("| Target | CPU-min | runs | executions | exec/CPU-s | coverage (cov / ft) | crashes | slow units |")
    print("|---|---|---|---|---|---|---|---|")
    for t, s in state.items():
        crashes = [c for c in s["crashes"] if not all(os.path.basename(x).startswith("slow-unit-") for x in c["artifacts"]) or not c["artifacts"]]
        slow = len(s.get("slow_units", [])) + sum(1 for c in s["crashes"] if c not in crashes)
        print(f"| `{t}` | {s['cpu_s'] / 60:.1f} | {s['runs']} | {s['execs']:,} | {s['execs'] / max(s['cpu_s'], 1):.0f} | "
              f"{s['cov']} / {s['ft']} | {len(crashes)} | {slow} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-min", type=float, default=30.0)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--deadline", help="HH:MM UTC: no run goes past it")
    ap.add_argument("--table", action="store_true", help="print fuzz/logs/campaign.json as the Markdown table of docs/reliability.md and exit")
    ap.add_argument("--slice-min", type=float, default=8.0)
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--targets", default=",".join(TARGETS))
    a = ap.parse_args()
    if a.table:
        return print_table()
    if not a.deadline:
        ap.error("--deadline is required")
    os.makedirs(LOGS, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    hh, mm = map(int, a.deadline.split(":"))
    deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    state_path = os.path.join(LOGS, "campaign.json")
    state = json.load(open(state_path)) if os.path.exists(state_path) else {}
    targets = a.targets.split(",")
    for t in targets:
        state.setdefault(t, {"cpu_s": 0.0, "wall_s": 0.0, "execs": 0, "runs": 0, "cov": None, "ft": None, "crashes": [], "paused_mtime": None})
    running = {}  # pid -> (target, log, t0)

    def save():
        json.dump(state, open(state_path, "w"), indent=1)

    def binary(t):
        return os.path.join(BIN, t)

    def eligible(t):
        s = state[t]
        if s["cpu_s"] >= a.cpu_min * 60 or any(r[0] == t for r in running.values()):
            return False
        if s["paused_mtime"] is not None and os.path.getmtime(binary(t)) <= s["paused_mtime"]:
            return False
        return True

    def start(t):
        s = state[t]
        s["paused_mtime"] = None
        left = a.cpu_min * 60 - s["cpu_s"]
        # a niced fuzzer gets part of a core: give it the wall time it needs, within the slice
        wall = int(min(a.slice_min * 60, max(60, left * 1.1), deadline - time.time() - 20))
        if wall < 30:
            return False
        corpus = os.path.join(ROOT, "fuzz/corpus", t)
        arts = os.path.join(ROOT, "fuzz/artifacts", t) + "/"
        os.makedirs(arts, exist_ok=True)
        log = os.path.join(LOGS, f"{t}-{s['runs']}.log")
        cmd = [
            "nice", "-n", str(a.nice), binary(t), corpus,
            f"-artifact_prefix={arts}", f"-max_total_time={wall}", f"-max_len={TARGETS[t]}",
            "-timeout=10", "-rss_limit_mb=2048", "-detect_leaks=0", "-print_final_stats=1",
        ]
        env = dict(os.environ, RAYON_NUM_THREADS="1")
        p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        running[p.pid] = (t, log, time.time())
        s["runs"] += 1
        print(f"{time.strftime('%H:%M:%S')} start {t} for {wall} s (cpu so far {s['cpu_s'] / 60:.1f} min) -> {log}", flush=True)
        return True

    def fill():
        for t in sorted(targets, key=lambda t: state[t]["cpu_s"]):
            if len(running) >= a.parallel:
                break
            if eligible(t):
                start(t)

    fill()
    while running:
        pid, status, ru = os.wait4(-1, 0)
        if pid not in running:
            continue
        t, log, t0 = running.pop(pid)
        s = state[t]
        cpu = ru.ru_utime + ru.ru_stime
        r = parse_log(log)
        s["cpu_s"] += cpu
        s["wall_s"] += time.time() - t0
        s["execs"] += r["execs"]
        if r["cov"] is not None:
            s["cov"], s["ft"] = r["cov"], r["ft"]
        if r["slow"]:
            s.setdefault("slow_units", []).extend(os.path.relpath(u, ROOT) for u in r["slow"])
        if r["crashed"]:
            s["crashes"].append({"log": os.path.relpath(log, ROOT), "artifacts": r["artifacts"]})
            s["paused_mtime"] = os.path.getmtime(binary(t))
        print(f"{time.strftime('%H:%M:%S')} end {t}: cpu {cpu:.0f} s, execs {r['execs']}, cov {r['cov']} ft {r['ft']}"
              f"{' CRASH ' + str(r['artifacts']) if r['crashed'] else ''}; total cpu {s['cpu_s'] / 60:.1f} min", flush=True)
        save()
        if time.time() < deadline - 50:
            fill()
        # paused targets wait for a rebuild: poll while others run
        while not running and time.time() < deadline - 50 and any(
            state[x]["cpu_s"] < a.cpu_min * 60 for x in targets
        ):
            time.sleep(20)
            fill()
    save()
    print("campaign done", flush=True)


if __name__ == "__main__":
    main()
