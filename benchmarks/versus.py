"""One cell as another revision's code and defaults run it, against this tree's.

    python benchmarks/versus.py REV [overrides ...]
    python benchmarks/versus.py 0c3a70b workload=uffd_wp workload.threads=16

REV's files come from ``git archive`` into a temporary directory.  Each tree composes the
cell from its own config (run.replicates, run.rounds and, where it has them, the warm-up
rounds) and runs it with its own engine (simulate_cell), both policies, best of
``--repeat``, in a fresh process on one core.  Prints seconds, the mean and the 95% CI
half-width of total_cycles_per_round, and the speed-up at the CI width each tree gets.
The two trees' means may differ where the model changed in between; what compares is the
time and the width.  Prints the load average: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs inside the tree given as argv[1], with the overrides after it; one JSON line per policy.
CHILD = r"""
import inspect, json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from omegaconf import OmegaConf
from study.config import compose
from study.policies.kernel import Kernel
from study.engine.machine import Machine
from study.policies import RELAXED, STRICT
from study.results.summary import t_interval
from study.workloads import simulate_cell, workload_from_dict

repeat, overrides = int(sys.argv[2]), sys.argv[3:]
cfg = OmegaConf.to_container(compose(overrides), resolve=True)
machine, kernel = Machine.from_dict(cfg["machine"]), Kernel.from_dict(cfg["kernel"])
spec = workload_from_dict(cfg["workload"], machine)
run = cfg["run"]
extra = {}
if "warmup_rounds" in inspect.signature(simulate_cell).parameters:
    extra["warmup_rounds"] = run.get("warmup_rounds", 0)
for policy in (STRICT, RELAXED):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = simulate_cell(machine, spec, policy, replicates=run["replicates"], rounds=run["rounds"],
                               seed=np.random.SeedSequence(3), kernel=kernel, **extra)
        best = min(best, time.perf_counter() - start)
    mean, low, high, _ = t_interval(result.metrics["total_cycles_per_round"])
    print(json.dumps({"policy": policy.name, "seconds": best, "mean": mean, "half": (high - low) / 2,
                      "replicates": run["replicates"], "rounds": run["rounds"],
                      "warmup_rounds": extra.get("warmup_rounds", 0)}))
"""


def run_tree(tree: Path, overrides: list[str], repeat: int) -> dict[str, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(repeat), *overrides], cwd=tree, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{tree}: the cell failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {row["policy"]: row for row in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the other revision (a commit, tag or branch of this repository)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides selecting the cell, for both trees")
    parser.add_argument("--repeat", type=int, default=3, help="runs per policy and tree; the best counts")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="versus-") as tmp:
        then = Path(tmp)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.rev], capture_output=True)
        if archive.returncode != 0:
            sys.exit(f"git archive {args.rev}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(then)], input=archive.stdout, check=True)
        print(f"cell: {' '.join(args.overrides) or '(defaults)'}; load average {os.getloadavg()}")
        before = run_tree(then, args.overrides, args.repeat)
        now = run_tree(REPO, args.overrides, args.repeat)
    for policy in before:
        a, b = before[policy], now[policy]
        for label, row in ((args.rev, a), ("this tree", b)):
            print(f"  {policy:8s} {label:>12s}: {row['rounds']:4d} rounds x {row['replicates']:5d} replicates "
                  f"after {row['warmup_rounds']} warm-up  {row['seconds']:7.3f} s   mean {row['mean']:12.0f}"
                  f"  CI +-{100 * row['half'] / row['mean']:.3f}%")
        width = (b["half"] / b["mean"]) / (a["half"] / a["mean"])
        print(f"  {policy:8s} speed-up {a['seconds'] / b['seconds']:.1f}x, CI width (relative) {width:.2f}x "
              f"of {args.rev}'s")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
