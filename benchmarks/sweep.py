"""Wall time of ``python -m study sweep`` and its Ray speedup from 1 to 2 CPUs.

    python benchmarks/sweep.py                 # sweep=default, 2 CPUs then 1 CPU (~8 min)
    python benchmarks/sweep.py --sweep quick --cpus 1 2

Each measurement is a fresh ``python -m study sweep`` process (Ray start included) writing
to a fresh output directory, so nothing is reused.  Targets (on a quiet machine): default
within 60 s on 2 CPUs, speedup >= 1.7x, peak RSS of the whole process tree (the sweep, Ray's
processes and workers) <= 2 GiB.  Prints the load average before and after each run: the
machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0
TARGET_RSS = 2 * 1024 ** 3
TARGET_SPEEDUP = 1.7


def measure(sweep: str, cpus: int, extra: list[str]) -> dict:
    """One sweep in a fresh process and a fresh output directory."""
    out = Path(tempfile.mkdtemp(prefix=f"bench-{sweep}-{cpus}cpu-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    args = [sys.executable, "-m", "study", "sweep", f"sweep={sweep}", f"ray.num_cpus={cpus}",
            f"run.output_dir={out}", *extra]
    try:
        load_before = os.getloadavg()
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = peak_pss = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            peak_pss = max(peak_pss, tree_rss(proc.pid, pss=True))
            time.sleep(0.5)
        wall = time.perf_counter() - start
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"sweep failed ({proc.returncode}):\n{stderr[-3000:]}")
        manifest = json.loads((out / "sweep" / sweep / "manifest.json").read_text())
        info = json.loads((out / "sweep" / sweep / "run_info.json").read_text())   # timings live here
        return {"cpus": cpus, "wall_s": wall, "compute_s": info["timings"]["compute_s"], "timings": info["timings"],
                "cells": len(manifest["cells"]), "computed": info["cells_computed"], "peak_rss": peak,
                "peak_pss": peak_pss,
                "load": (load_before, os.getloadavg())}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def tree_rss(root: int, pss: bool = False) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc; 0 where unreadable).

    ``pss``: proportional set size instead (smaps_rollup), which counts a page shared by n
    processes (Ray's object store, shared libraries) as 1/n in each: RSS counts it n times."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if pss:
                with open(f"/proc/{entry}/smaps_rollup") as f:
                    rss[int(entry)] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            else:
                with open(f"/proc/{entry}/statm") as f:
                    rss[int(entry)] = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError, StopIteration):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def phases(timings: dict, wall: float) -> str:
    """Where the wall time went, from run_info.json's timings (the executor's start is part of
    computing; its stop overlaps the tables, and the part not hidden is the wait)."""
    named = [("planning", "expand_s"), ("Ray start", "executor_start_s"), ("computing", "compute_s"),
             ("tables", "tables_s"), ("wait for Ray's stop", "executor_stop_wait_s")]
    parts = [f"{label} {timings[key]:.1f} s" for label, key in named if key in timings]
    rest = wall - timings.get("total_s", 0.0)
    return "phases: " + ", ".join(parts) + f" (Ray start included in computing); imports and exit {rest:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="default")
    parser.add_argument("--cpus", type=int, nargs="+", default=[2, 1], help="num_cpus to measure, in order")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args(argv)

    results = {}
    for cpus in args.cpus:
        r = measure(args.sweep, cpus, args.overrides)
        results[cpus] = r
        print(f"sweep={args.sweep} ray.num_cpus={cpus}: {r['wall_s']:.1f} s wall, {r['compute_s']:.1f} s computing "
              f"{r['computed']} cells ({r['cells'] / r['wall_s']:.2f} cells/s), peak RSS of the process tree "
              f"{r['peak_rss'] / 2 ** 30:.2f} GiB (PSS {r['peak_pss'] / 2 ** 30:.2f} GiB); load average before {r['load'][0]}, after {r['load'][1]}",
              flush=True)
        print("  " + phases(r["timings"], r["wall_s"]), flush=True)
        if r["peak_rss"] > TARGET_RSS:
            print("MISSED: peak RSS above 2 GiB")
    code = 0
    if 2 in results and results[2]["wall_s"] > TARGET_SECONDS and args.sweep == "default":
        print(f"MISSED: default sweep took more than {TARGET_SECONDS:.0f} s on 2 CPUs")
        code = 1
    if 1 in results and 2 in results:
        wall = results[1]["wall_s"] / results[2]["wall_s"]
        compute = results[1]["compute_s"] / results[2]["compute_s"]
        print(f"speedup 1 -> 2 CPUs: {wall:.2f}x wall, {compute:.2f}x computing (target >= {TARGET_SPEEDUP}x)")
        if wall < TARGET_SPEEDUP:
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
