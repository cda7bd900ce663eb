"""Workloads: the programs whose TLB flushing the engine simulates, and one cell's run.

Every module of this package but the machinery (spec, driver, result) defines one workload
class (study.workloads.spec); importing the package imports them all, which registers them.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import numpy as np

from study.policies import RFC_BASE, Kernel, behaviour
from study.engine.machine import Machine, placement_cpus
from study.engine.ops import OP_SWITCH_MM
from study.engine.vector import VectorEngine
from study.workloads.driver import Driver, LaneJitter, TiledWork
from study.workloads.result import CellResult
from study.workloads.spec import WORKLOADS, WorkloadSpec, labels, problems, workload_from_dict

_MACHINERY = {"spec", "driver", "result"}
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _MACHINERY):
    importlib.import_module(f"{__name__}.{_module}")
for _cls in WORKLOADS.values():
    if problems(_cls):   # an incomplete workload fails here, not half-way through a sweep
        raise TypeError(f"workload {_cls.__name__} ({_cls.__module__}): " + "; ".join(problems(_cls)))
LABELS = labels()

__all__ = ["simulate_cell", "simulate_lanes", "CellResult", "LABELS", "WORKLOADS", "WorkloadSpec", "workload_from_dict",
           "lazy_cpus", "run_workload"]


def lazy_cpus(spec: WorkloadSpec) -> np.ndarray:
    """Which CPU slots sleep with the mm loaded (WorkloadSpec.sleepers())."""
    return np.array(spec.sleepers(), bool)


def run_workload(engine, spec: WorkloadSpec, *, rounds: int, seed: np.random.SeedSequence,
                 max_samples: int = 2048, label_counters: bool = False, warmup_rounds: int = 0,
                 lanes: int = 1, settings=None):
    """Drive ``engine`` (vectorized or the scalar batch) through ``rounds`` rounds of ``spec``.

    ``warmup_rounds`` rounds run first and are not booked: the measured rounds start from
    the steady state, not from the cold start (every TLB empty, every CPU's working set
    still hot, the tlb_gen line on CPU 0), whose transient would otherwise bias the means.
    ``lanes`` > 1: the engine carries that many lanes (see simulate_lanes); returns a list
    of CellResults, one per lane, instead of one CellResult.  An engine with K cost sets:
    a list of K * lanes CellResults, set-major.  ``settings``: lanes of different settings,
    [(workload, seed)] per lane (differing only in ``spec``'s LANE_FIELDS): each setting
    has its own work and jitter streams, from its own seed (``seed`` is then unused).
    """
    if lanes == 1:
        work_seed, jitter_seed = seed.spawn(2)
        work = np.random.default_rng(work_seed)
        driver = Driver(engine, np.random.default_rng(jitter_seed), max_samples, label_counters)
    else:
        R = engine.R // lanes
        # one stream pair per setting, shared by that setting's lanes
        by_seed: dict = {}   # SeedSequences compare and hash by identity: one object per setting
        for lane, (_, lane_seed) in enumerate(settings or [(spec, seed)] * lanes):
            by_seed.setdefault(lane_seed, []).append(lane)
        works, jitters = [], []
        for lane_seed, members in by_seed.items():
            work_seed, jitter_seed = lane_seed.spawn(2)
            works.append((np.random.default_rng(work_seed), members))
            jitters.append((jitter_seed, members))
        work = TiledWork(works, lanes, R)
        lane_specs = [w for w, _ in settings] if settings is not None else None
        driver = Driver(engine, LaneJitter(jitters, lanes, R, engine.C), max_samples, label_counters,
                        lanes=lanes, lane_specs=lane_specs)
    running = ~lazy_cpus(spec)
    running[0] = False   # thread 0 is the initiator / monitor / allocator
    spec.setup(driver, work)
    sleeping = np.flatnonzero(lazy_cpus(spec)) if spec.lazy_wake_rate > 0 else ()

    def one_round():
        spec.run_round(driver, work, running)
        for cpu in sleeping:
            _wake_up(spec, driver, work, cpu)

    for _ in range(warmup_rounds):
        one_round()
    driver.start_measuring()
    for _ in range(rounds):
        one_round()
    if lanes != 1 or driver.sets is not None:
        return driver.results(rounds, spec.flush_labels())
    result = driver.result(rounds, spec.flush_labels())
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
                  label_counters: bool = False, kernel: Kernel | None = None,
                  warmup_rounds: int = 0) -> CellResult:
    """Simulate ``replicates`` independent runs of one cell with the vectorized engine.

    ``kernel`` is the strict baseline the policy applies to (default: the RFC's base).

    The same ``seed`` gives the same result; give the strict and relaxed cells of one
    setting the same seed and replicate r of each sees the same workload and jitter draws.
    """
    if replicates < 1 or rounds < 1 or warmup_rounds < 0:
        raise ValueError("replicates and rounds must be >= 1, warmup_rounds >= 0")
    kernel = kernel or RFC_BASE
    workload.check_kernel(kernel)   # nothing runs a uAPI the kernel lacks
    cpus = placement_cpus(machine, workload.threads, workload.placement)
    engine = VectorEngine(machine, behaviour(kernel, policy), cpus, workload.pages, replicates,
                          working_set=workload.working_sets(), lazy=lazy_cpus(workload),
                          on_cpu_share=workload.on_cpu_share)
    return run_workload(engine, workload, rounds=rounds, seed=seed, max_samples=max_samples,
                        label_counters=label_counters, warmup_rounds=warmup_rounds)


def simulate_lanes(machine: Machine, workload: WorkloadSpec, lanes, *, replicates: int, rounds: int,
                   seed: np.random.SeedSequence, kernel: Kernel | None = None, max_samples: int = 2048,
                   warmup_rounds: int = 0) -> list[CellResult]:
    """One lockstep run of several policies and/or cost sets ("lanes") of one setting.

    ``lanes`` is a sequence of (Policy, Costs or Machine), or of (Policy, Costs or Machine,
    WorkloadSpec, SeedSequence) for lanes of other settings; a Machine must differ from
    ``machine`` in its costs only (it supplies them), a workload from ``workload`` only in
    the knobs its class lists in LANE_FIELDS (the dirty ratio: it changes which replicates act
    in the workload's MADV_FREE and writes, never which steps there are), and a lane without
    them runs ``workload`` with ``seed``.  Each lane gets ``replicates``
    replicates.  The distinct policies run side by side in one lockstep pass (P policies:
    P * replicates replicates of state), and the distinct cost sets price that one state each
    (the engine's cost-set axis), so the cost per step is paid once for all lanes, and an
    ensemble's members cost little more than one of them.

    Contract: lane i's CellResult is identical (every metric, counter and sample) to
    ``simulate_cell(machine with lane i's costs, lane i's workload, lane i's policy,
    replicates=..., rounds=..., seed=lane i's seed, kernel=kernel, max_samples=...,
    warmup_rounds=...)``.  Lanes of one setting (workload and seed) share its streams; each
    setting has its own, drawn once for all its lanes.  It holds
    always: the work draws never depend on the engine, so every lane sees the same ones; and
    the jitter stream is per lane (study.workloads.driver.LaneJitter): while every lane acts
    in the same steps they share one draw; where a lane's run alone would skip a step (nobody
    of that lane acts, e.g. no uffd-wp fault pending in that lane but one in another -- a
    policy whose demotion leaves no stale entry behind, or the unsafe control), that lane
    skips its draw and its stream continues on its own from then on.
    """
    if replicates < 1 or rounds < 1 or warmup_rounds < 0:
        raise ValueError("replicates and rounds must be >= 1, warmup_rounds >= 0")
    lanes = list(lanes)
    if not lanes:
        raise ValueError("simulate_lanes needs at least one lane")
    # Distinct policies are lanes of replicates (their state differs); distinct cost sets
    # price one state K ways (study.engine.vector: costs never steer the state), so the run
    # carries every (cost set, policy) pair and each lane asked for picks its own.
    # Lanes of replicates: the distinct (policy, setting) pairs, a setting being a workload and
    # a seed (lanes of one setting share its streams: one SeedSequence object per stream key).
    runs, sets, where, seen, seeds = [], [], [], {}, {}
    for lane in lanes:
        policy, costs = lane[:2]
        lane_workload, lane_seed = lane[2:] if len(lane) > 2 else (workload, seed)
        _check_setting(workload, lane_workload)
        lane_workload.check_kernel(kernel or RFC_BASE)
        lane_seed = seeds.setdefault((str(lane_seed.entropy), tuple(lane_seed.spawn_key)), lane_seed)
        lane_machine = costs if isinstance(costs, Machine) else dataclasses.replace(machine, costs=costs)
        key = (policy, lane_workload, lane_seed)
        if key not in runs:
            runs.append(key)
        k = seen.setdefault(lane_machine.costs, len(seen))
        if k == len(sets):
            sets.append(lane_machine)
        where.append((k, runs.index(key)))
    R, L = replicates, len(runs)
    rules = {p: behaviour(kernel or RFC_BASE, p) for p, _, _ in runs}
    per_policy = [rules[p] for p, _, _ in runs for _ in range(R)] if L > 1 else rules[runs[0][0]]
    settings = [(w, s) for _, w, s in runs]
    cpus = placement_cpus(machine, workload.threads, workload.placement)
    engine = VectorEngine(sets if len(sets) > 1 else sets[0], per_policy, cpus, workload.pages, L * R,
                          working_set=workload.working_sets(), lazy=lazy_cpus(workload),
                          on_cpu_share=workload.on_cpu_share)
    out = run_workload(engine, settings[0][0], rounds=rounds, seed=settings[0][1], max_samples=max_samples,
                       warmup_rounds=warmup_rounds, lanes=L, settings=settings if L > 1 else None)
    out = out if isinstance(out, list) else [out]
    return [out[k * L + p] for k, p in where]


def _check_setting(workload: WorkloadSpec, other: WorkloadSpec) -> None:
    """Lanes of one run share the workload but for its LANE_FIELDS (one-line error if not)."""
    if other == workload:
        return
    if type(other) is not type(workload):
        raise ValueError(f"lanes of one run share the workload: {other.name} beside {workload.name}")
    free = type(workload).LANE_FIELDS
    differ = [f.name for f in dataclasses.fields(workload)
              if f.name not in free and getattr(other, f.name) != getattr(workload, f.name)]
    if differ:
        allowed = ", ".join(free) if free else "nothing"
        raise ValueError(f"workload.{differ[0]}: the lanes of one run must share it "
                         f"(lanes of {workload.name} may differ in {allowed})")
