"""Workloads: the programs whose TLB flushing the engine simulates, and one cell's run."""

from __future__ import annotations

import numpy as np

from study.engine.kernel import Kernel
from study.engine.machine import Machine, placement_cpus
from study.engine.ops import OP_SWITCH_MM
from study.engine.vector import VectorEngine
from study.workloads import madv_free, mprotect_toggle, uffd_wp
from study.workloads.driver import Driver
from study.workloads.result import LABELS, CellResult
from study.workloads.spec import WORKLOADS, WorkloadSpec, workload_from_dict

MODULES = {"mprotect_toggle": mprotect_toggle, "uffd_wp": uffd_wp, "madv_free": madv_free}

__all__ = ["simulate_cell", "CellResult", "LABELS", "WORKLOADS", "WorkloadSpec", "workload_from_dict",
           "lazy_cpus", "run_workload"]


def lazy_cpus(spec: WorkloadSpec) -> np.ndarray:
    """Which CPU slots sleep with the mm loaded: the last lazy_share of threads 1..T-1."""
    lazy = np.zeros(spec.threads, bool)
    n_lazy = int(round(spec.lazy_share * (spec.threads - 1)))
    if n_lazy:
        lazy[spec.threads - n_lazy:] = True
    return lazy


def run_workload(engine, spec: WorkloadSpec, *, rounds: int, seed: np.random.SeedSequence,
                 max_samples: int = 2048, label_counters: bool = False) -> CellResult:
    """Drive ``engine`` (vectorized or the scalar batch) through ``rounds`` rounds of ``spec``."""
    work_seed, jitter_seed = seed.spawn(2)
    work = np.random.default_rng(work_seed)
    driver = Driver(engine, np.random.default_rng(jitter_seed), max_samples, label_counters)
    module = MODULES[spec.name]
    running = ~lazy_cpus(spec)
    running[0] = False   # thread 0 is the initiator / monitor / allocator
    if hasattr(module, "setup"):
        module.setup(spec, driver, work)
        driver.start_measuring()
    sleeping = np.flatnonzero(lazy_cpus(spec)) if spec.lazy_wake_rate > 0 else ()
    for _ in range(rounds):
        module.run_round(spec, driver, work, running)
        for cpu in sleeping:
            _wake_up(spec, driver, work, cpu)
    result = driver.result(rounds, module.FLUSH_LABELS)
    if label_counters:
        result.label_counters = driver.label_counters
    return result


def _wake_up(spec: WorkloadSpec, driver: Driver, work: np.random.Generator, cpu: int) -> None:
    """A lazy CPU runs the mm's thread for a moment: switch_mm in, then back to idle."""
    act = work.random(driver.R) < spec.lazy_wake_rate
    lat, _, _ = driver.op(OP_SWITCH_MM, cpu, arg=0, active=act)
    driver.record("lazy_wakeup", lat, active=act)
    driver.op(OP_SWITCH_MM, cpu, arg=1, active=act)


def simulate_cell(machine: Machine, workload: WorkloadSpec, policy, *, replicates: int, rounds: int,
                  seed: np.random.SeedSequence, max_samples: int = 2048,
                  label_counters: bool = False, kernel: Kernel | None = None) -> CellResult:
    """Simulate ``replicates`` independent runs of one cell with the vectorized engine.

    ``kernel`` is the strict baseline the policy applies to (default: the RFC's base).

    The same ``seed`` gives the same result; give the strict and relaxed cells of one
    setting the same seed and replicate r of each sees the same workload and jitter draws.
    """
    if replicates < 1 or rounds < 1:
        raise ValueError("replicates and rounds must be >= 1")
    cpus = placement_cpus(machine, workload.threads, workload.placement)
    engine = VectorEngine(machine, policy, cpus, workload.pages, replicates,
                          working_set=workload.working_set, lazy=lazy_cpus(workload), kernel=kernel,
                          on_cpu_share=workload.on_cpu_share)
    return run_workload(engine, workload, rounds=rounds, seed=seed, max_samples=max_samples,
                        label_counters=label_counters)
