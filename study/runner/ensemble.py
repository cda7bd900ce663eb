"""The ensemble of cost parameter sets run on a few cells of a sweep, on common random numbers.

``run_members(cell, members)`` is the one place a cell is simulated for many parameter sets:
the members ride on the engine's cost-set axis in one lockstep run (study.workloads.simulate_lanes:
one state, priced once per member) on the SAME random streams (the cell's own ``cell.seed(0)``), so that two members differ only by their
costs (common random numbers), exactly as if each were simulated alone.

``run_ensemble`` ships one task per cell to Ray (or runs serially), caches each cell's
member results atomically under ``<directory>/cells/<cell_id>.npz`` keyed by the code
fingerprint, the members' digest and the run settings, so a killed run resumes and a
changed ensemble never reuses stale numbers.  Results do not depend on worker count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.config.cell import Cell
from study.engine.machine import Machine
from study.runner.store import NpzStore, code_fingerprint
from study.runner.tasks import map_tasks
from study.workloads.result import CellResult

# what is kept per member (means over replicates; the replicate values of the main metric)
KEPT = ("total_cycles_per_round", "initiator_cycles_per_round", "other_cycles_per_round",
        "stolen_cycles_per_round")


@dataclass(frozen=True)
class EnsembleRun:
    """How each member runs a cell: replicates and rounds (the cell's seed, batch 0)."""

    replicates: int = 16
    rounds: int | None = None     # None: the cell's own rounds

    def identity(self) -> dict:
        return dataclasses.asdict(self)


def run_members(cell: Cell, members: list[Machine], run: EnsembleRun = EnsembleRun(),
                simulate=None) -> list[CellResult]:
    """``cell`` simulated once per member machine, every member on the cell's batch-0 streams
    and after the cell's warm-up rounds.

    By default the members ride on the cost-set axis of ONE lockstep run
    (study.workloads.simulate_lanes: member i's result is identical to simulating member i
    alone on the same seed, so this is only faster).  ``simulate`` (a simulate_cell-like function) runs them one by one instead.
    """
    rounds = run.rounds or cell.run.rounds
    warmup = getattr(cell.run, "warmup_rounds", 0)
    if simulate is None:
        from study.workloads import simulate_lanes

        return simulate_lanes(cell.machine, cell.workload, [(cell.policy, m) for m in members],
                              replicates=run.replicates, rounds=rounds, seed=cell.seed(0), kernel=cell.kernel,
                              max_samples=0, warmup_rounds=warmup)
    # a fresh SeedSequence per member: spawning children advances a SeedSequence's state
    return [simulate(machine, cell.workload, cell.policy, replicates=run.replicates, rounds=rounds,
                     seed=cell.seed(0), max_samples=0, kernel=cell.kernel, warmup_rounds=warmup)
            for machine in members]


def summarize(results: list[CellResult]) -> dict[str, np.ndarray]:
    """[members, replicates] arrays of the kept metrics (NaN where a metric is absent)."""
    out = {}
    for name in KEPT:
        out[name] = np.stack([r.metrics.get(name, np.full(r.replicates, np.nan)) for r in results])
    return out


def _task(cell: Cell, members: list[Machine], run: EnsembleRun):
    start = time.perf_counter()
    arrays = summarize(run_members(cell, members, run))
    return cell.cell_id, arrays, time.perf_counter() - start


class MemberStore(NpzStore):
    """Cached member results of one ensemble run directory, keyed by cell_id, tagged with the
    run's key (code, members, settings): [members, replicates] arrays per kept metric."""

    def save(self, cell_id: str, arrays: dict[str, np.ndarray]) -> None:
        self.write_arrays(cell_id, {f"metric.{k}": v for k, v in arrays.items()})

    def load(self, cell_id: str) -> dict[str, np.ndarray] | None:
        found = self.read_arrays(cell_id)
        if found is None:
            return None
        _, arrays = found
        if not all(k.startswith("metric.") for k in arrays):
            return None
        return {k.split(".", 1)[1]: v for k, v in arrays.items()}


def run_key(members_digest: str, run: EnsembleRun) -> str:
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]   # this module decides the streams
    data = {"code": code_fingerprint(), "runner": own, "members": members_digest, "run": run.identity(), "kept": KEPT}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_ensemble(jobs: list[tuple[Cell, list[Machine]]], members_digest: str, directory: Path,
                 run: EnsembleRun = EnsembleRun(), *, ray_address: str | None = None,
                 num_cpus: int | None = None, serial: bool = False, log=None) -> tuple[dict, dict]:
    """Each job's cell for each of its member machines: ({cell_id: {metric: [members, replicates]}}, timings).

    ``members_digest`` names the ensemble the machines come from (part of the cache key).
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    store = MemberStore(Path(directory) / "cells", run_key(members_digest, run))
    results = {c.cell_id: cached for c, _ in jobs if (cached := store.load(c.cell_id)) is not None}
    todo = [(c, m) for c, m in jobs if c.cell_id not in results]
    n_members = len(jobs[0][1]) if jobs else 0
    log(f"ensemble: {len(jobs)} cells x {n_members} members; reused {len(results)} cells, computing {len(todo)}")
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    # the costliest first, so that the tail of the run is short (order never changes results)
    todo.sort(key=lambda job: -(job[0].run.rounds * (4 + job[0].workload.threads)))
    jobs_todo = [(cell, members, run) for cell, members in todo]
    for _, (cell_id, arrays, elapsed) in map_tasks(_task, jobs_todo, label="ensemble cells", log=log,
                                                   ray_address=ray_address, num_cpus=num_cpus, serial=serial):
        store.save(cell_id, arrays)
        results[cell_id], seconds[cell_id] = arrays, elapsed
    timings = {"compute_s": time.perf_counter() - start, "cells_computed": len(todo),
               "cells_reused": len(jobs) - len(todo), "cell_seconds": seconds}
    return results, timings
