"""Replicates instead of rounds: the same cells run as R x N (rounds) three ways, with timings.

    python benchmarks/rounds.py

For a sample of default-sweep cells (both policies), prints the mean and 95% CI half-width of
total_cycles_per_round and the seconds taken, for
  old    100 rounds x 64 replicates, no warm-up (the defaults before the warm start),
  old+w  100 rounds x 64 replicates after the warm-up (isolates rounds vs replicates),
  new    the defaults of conf/config.yaml (run.rounds x run.replicates after run.warmup_rounds),
and whether new agrees with old+w within the CIs, and the width ratio new / old+w.
The seeds differ between the three (different streams): agreement is statistical.
Prints the load average: the machine may be shared.  Runs on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from study.config import compose  # noqa: E402
from study.engine.machine import Machine  # noqa: E402
from study.policies import RELAXED, STRICT  # noqa: E402
from study.results.summary import t_interval  # noqa: E402
from study.workloads import simulate_cell, simulate_lanes, workload_from_dict  # noqa: E402

CELLS = [
    ["workload=mprotect_toggle", "workload.threads=2", "workload.working_set=0"],
    ["workload=mprotect_toggle", "workload.threads=16", "workload.dirty_ratio=0.5"],
    ["workload=mprotect_toggle", "workload.threads=8", "workload.pages=4", "workload.remote_access_rate=1.0",
     "workload.remote_write_share=0.25", "workload.working_set=256"],
    ["workload=madv_free", "workload.threads=2"],
    ["workload=madv_free", "workload.threads=16", "workload.dirty_ratio=0.0"],
    ["workload=uffd_wp", "workload.threads=2"],
    ["workload=uffd_wp", "workload.threads=16"],
    ["kernel=mainline", "workload=uffd_wp", "workload.threads=16", "workload.dirty_ratio=0.0"],
]


def run(overrides, policy, replicates, rounds, warmup, seed):
    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    machine = Machine.from_dict(cfg["machine"])
    from study.policies.kernel import Kernel

    spec = workload_from_dict(cfg["workload"], machine)
    start = time.perf_counter()
    res = simulate_cell(machine, spec, policy, replicates=replicates, rounds=rounds, warmup_rounds=warmup,
                        seed=np.random.SeedSequence(seed), kernel=Kernel.from_dict(cfg["kernel"]))
    seconds = time.perf_counter() - start
    mean, low, high, _ = t_interval(res.metrics["total_cycles_per_round"])
    return mean, (high - low) / 2, seconds, cfg["run"]


def lane_pass(overrides, d) -> float | None:
    """Seconds per cell of the pass the sweep runs a uffd_wp cell in (study.runner.lanes): strict
    and relaxed at dirty ratios 0 and 1 as 4 lanes, each setting on its own seed; None for a
    workload whose dirty ratios do not share a pass."""
    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    machine = Machine.from_dict(cfg["machine"])
    from study.policies.kernel import Kernel

    spec = workload_from_dict(cfg["workload"], machine)
    if "dirty_ratio" not in type(spec).LANE_FIELDS:
        return None
    lanes = [(p, machine.costs, dataclasses.replace(spec, dirty_ratio=r), np.random.SeedSequence(4 + i))
             for i, r in enumerate((0.0, 1.0)) for p in (STRICT, RELAXED)]
    start = time.perf_counter()
    simulate_lanes(machine, spec, lanes, replicates=d["replicates"], rounds=d["rounds"],
                   warmup_rounds=d["warmup_rounds"], seed=np.random.SeedSequence(4),
                   kernel=Kernel.from_dict(cfg["kernel"]))
    return (time.perf_counter() - start) / len(lanes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="only the cells whose overrides contain this text")
    only = parser.parse_args().only
    d = OmegaConf.to_container(compose([]), resolve=True)["run"]
    print(f"new = {d['rounds']} rounds x {d['replicates']} replicates after {d['warmup_rounds']} warm-up rounds; "
          f"load average {os.getloadavg()}")
    for overrides in CELLS:
        if only not in " ".join(overrides):
            continue
        for policy in (STRICT, RELAXED):
            o = run(overrides, policy, 64, 100, 0, 1)
            w = run(overrides, policy, 64, 100, d["warmup_rounds"], 2)
            n = run(overrides, policy, d["replicates"], d["rounds"], d["warmup_rounds"], 3)
            agree = abs(n[0] - w[0]) <= n[1] + w[1]
            print(f"{' '.join(overrides):95s} {policy.name:7s} "
                  f"old {o[0]:10.0f}±{100 * o[1] / o[0]:.3f}% {o[2]:6.2f}s | "
                  f"old+w {w[0]:10.0f}±{100 * w[1] / w[0]:.3f}% {w[2]:6.2f}s | "
                  f"new {n[0]:10.0f}±{100 * n[1] / n[0]:.3f}% {n[2]:6.2f}s | "
                  f"{'agree' if agree else 'DIFFER'} width new/old+w {n[1] / w[1]:.2f} "
                  f"speed-up vs old {o[2] / n[2]:.1f}x   load {os.getloadavg()[0]:.2f}", flush=True)
            if policy is RELAXED:
                share = lane_pass(overrides, d)
                if share is not None:
                    print(f"{'':95s} as the sweep runs it (4-lane pass: strict, relaxed x dirty 0, 1): "
                          f"{share:6.2f}s a cell, {o[2] / share:.1f}x the old relaxed cell", flush=True)


if __name__ == "__main__":
    main()
