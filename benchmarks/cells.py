"""Seconds per default cell by workload, and the cost of an ensemble of cost sets.

    python benchmarks/cells.py                 # per-workload seconds per default-run cell
    python benchmarks/cells.py --ensemble 64   # also: 64 cost sets in one lockstep run vs one set,
                                               # at the ensemble's replicates per member

A "default cell" is the workload's conf/workload defaults on haswell_2s under the run settings
of conf/config.yaml (run.replicates, run.rounds, run.warmup_rounds where the code has it), at
the thread counts given.  Prints the load average: the machine may be shared.  Runs on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from study.config import compose  # noqa: E402
from study.policies.kernel import KERNELS  # noqa: E402
from study.engine.machine import Machine  # noqa: E402
from study.policies import RELAXED, STRICT  # noqa: E402
from study import workloads as W  # noqa: E402
from study.runner.ensemble import EnsembleRun  # noqa: E402


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def parts(workload: str, threads: int):
    cfg = OmegaConf.to_container(compose([f"workload={workload}", f"workload.threads={threads}"]), resolve=True)
    machine = Machine.from_dict(cfg["machine"])
    spec = W.workload_from_dict(cfg["workload"], machine)
    return machine, spec, cfg["run"]


def run_kwargs(run: dict) -> dict:
    kw = dict(replicates=run["replicates"], rounds=run["rounds"])
    if "warmup_rounds" in inspect.signature(W.simulate_cell).parameters:
        kw["warmup_rounds"] = run.get("warmup_rounds", 0)
    return kw


def time_cell(workload: str, threads: int, policy, repeat: int) -> tuple[float, float]:
    machine, spec, run = parts(workload, threads)
    best, hw = float("inf"), float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        res = W.simulate_cell(machine, spec, policy, seed=np.random.SeedSequence(7), kernel=KERNELS["rfc_base"],
                              **run_kwargs(run))
        best = min(best, time.perf_counter() - start)
        v = res.metrics["total_cycles_per_round"]
        hw = 1.96 * v.std(ddof=1) / np.sqrt(v.size) / abs(v.mean())
    return best, hw


def ensemble(workload: str, threads: int, n: int, repeat: int, replicates: int | None) -> None:
    machine, spec, run = parts(workload, threads)
    if not hasattr(W, "simulate_lanes"):
        print("  (no simulate_lanes in this tree)")
        return
    rng = np.random.default_rng(3)
    sets = []
    for _ in range(n):
        scale = {f.name: float(getattr(machine.costs, f.name)) * rng.uniform(0.8, 1.2)
                 for f in dataclasses.fields(machine.costs) if isinstance(getattr(machine.costs, f.name), float)}
        sets.append((RELAXED, dataclasses.replace(machine.costs, **scale)))
    # as study.runner.ensemble.run_members runs its members: no latency samples kept
    kw = dict(run_kwargs(run), seed=np.random.SeedSequence(7), kernel=KERNELS["rfc_base"], max_samples=0)
    if replicates:
        kw["replicates"] = replicates
    one = many = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        W.simulate_lanes(machine, spec, sets[:1], **kw)
        one = min(one, time.perf_counter() - start)
        start = time.perf_counter()
        W.simulate_lanes(machine, spec, sets, **kw)
        many = min(many, time.perf_counter() - start)
    print(f"  ensemble {workload} threads={threads} replicates/set={kw['replicates']}: 1 set {one:.3f} s, "
          f"{n} sets {many:.3f} s "
          f"({many / one:.2f}x one set; target <= 2x)   [{load()}]")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[2, 16])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--ensemble", type=int, default=0)
    p.add_argument("--ensemble-replicates", type=int, nargs="+", default=[EnsembleRun().replicates],
                   help="replicates per set (default: the ensemble's, study.runner.ensemble.EnsembleRun; "
                        "0: the run's)")
    p.add_argument("--skip-cells", action="store_true")
    a = p.parse_args()
    for workload in ("mprotect_toggle", "madv_free", "uffd_wp") if not a.skip_cells else ():
        for threads in a.threads:
            for policy in (STRICT, RELAXED):
                s, hw = time_cell(workload, threads, policy, a.repeat)
                _, spec, run = parts(workload, threads)
                print(f"{workload:16s} threads={threads:2d} {policy.name:8s} {s:7.3f} s/cell "
                      f"({run_kwargs(run)})  CI half-width {100 * hw:.3f}%   [{load()}]", flush=True)
            if hasattr(W, "simulate_lanes"):
                machine, spec, run = parts(workload, threads)
                best = float("inf")
                for _ in range(a.repeat):
                    start = time.perf_counter()
                    W.simulate_lanes(machine, spec, [(STRICT, machine.costs), (RELAXED, machine.costs)],
                                     seed=np.random.SeedSequence(7), kernel=KERNELS["rfc_base"], **run_kwargs(run))
                    best = min(best, time.perf_counter() - start)
                print(f"{workload:16s} threads={threads:2d} strict+relaxed as 2 lanes {best / 2:7.3f} s/cell   [{load()}]",
                      flush=True)
                if "dirty_ratio" in getattr(type(spec), "LANE_FIELDS", ()):
                    # the sweep's lane group: strict and relaxed at dirty ratios 0 and 1, each
                    # setting on its own seed (study.runner.lanes)
                    lanes = [(p, machine.costs, dataclasses.replace(spec, dirty_ratio=d), np.random.SeedSequence(7 + i))
                             for i, d in enumerate((0.0, 1.0)) for p in (STRICT, RELAXED)]
                    best4 = float("inf")
                    for _ in range(a.repeat):
                        start = time.perf_counter()
                        W.simulate_lanes(machine, spec, lanes, seed=np.random.SeedSequence(7),
                                         kernel=KERNELS["rfc_base"], **run_kwargs(run))
                        best4 = min(best4, time.perf_counter() - start)
                    print(f"{workload:16s} threads={threads:2d} strict+relaxed x dirty 0, 1 as 4 lanes "
                          f"{best4 / 4:7.3f} s/cell ({best4 / best:.2f}x the 2-lane pass)   [{load()}]", flush=True)
    if a.ensemble:
        for reps in a.ensemble_replicates:
            for workload, threads in (("mprotect_toggle", 2), ("uffd_wp", 16), ("uffd_wp", 48)):
                ensemble(workload, threads, a.ensemble, a.repeat, reps or None)


if __name__ == "__main__":
    main()
