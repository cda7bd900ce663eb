"""Strict and relaxed along one knob from a sweep's setting: the runs behind each verdict's conditions.

A ``Scan`` is one setting (its strict and relaxed cells, one pair_id) and one of its workload's
``CONDITIONS`` (study.workloads.spec.Condition) with the values to run it at.  ``run_scan`` runs,
per value, that setting with the knob changed, strict and relaxed as the two policy lanes of one
lockstep run (study.workloads.simulate_lanes) on the setting's own batch-0 random streams: every
value and both policies see the same draws (common random numbers), so the speedup's curve along
the knob moves only with the knob.  It keeps, per policy and value, each replicate's total
cycles per round.

``run_scans`` ships one task per scan (study.runner.tasks), caching each under
``<directory>/scans/<scan key>.npz`` tagged by the code fingerprint and the run settings, so a
killed run resumes and a code change never reuses stale numbers.  Results do not depend on the
worker count or the order the tasks finish in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.config.cell import Cell
from study.runner.store import NpzStore, code_fingerprint
from study.runner.tasks import map_tasks

METRIC = "total_cycles_per_round"
POLICY_LANES = ("strict", "relaxed")


@dataclass(frozen=True)
class ScanRun:
    """How each value of a scan runs: replicates and rounds after the cell's own warm-up."""

    replicates: int = 128
    rounds: int = 10

    def identity(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scan:
    """One setting (``strict`` and ``relaxed``: its two cells) run along ``knob`` at ``values``."""

    strict: Cell
    relaxed: Cell
    knob: str
    values: tuple

    @property
    def pair_id(self) -> str:
        return self.strict.pair_id

    @property
    def key(self) -> str:
        data = {"strict": self.strict.cell_id, "relaxed": self.relaxed.cell_id, "knob": self.knob,
                "values": [repr(v) for v in self.values]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def weight(self) -> float:
        """A relative cost, to start the costliest first (it never changes a result)."""
        return len(self.values) * (4 + self.strict.workload.threads) * self.strict.workload.steps_per_round()


def run_scan(scan: Scan, run: ScanRun) -> dict[str, np.ndarray]:
    """{"strict": [values, replicates], "relaxed": [values, replicates]} of total cycles per round."""
    from study.workloads import simulate_lanes

    cell = scan.strict
    out = {lane: [] for lane in POLICY_LANES}
    for value in scan.values:
        workload = dataclasses.replace(cell.workload, **{scan.knob: value})
        lanes = [(scan.strict.policy, cell.machine), (scan.relaxed.policy, cell.machine)]
        results = simulate_lanes(cell.machine, workload, lanes, replicates=run.replicates, rounds=run.rounds,
                                 seed=cell.seed(0), kernel=cell.kernel, max_samples=0,
                                 warmup_rounds=getattr(cell.run, "warmup_rounds", 0))
        for lane, result in zip(POLICY_LANES, results):
            out[lane].append(result.metrics[METRIC])
    return {lane: np.stack(rows) for lane, rows in out.items()}


def _task(scan: Scan, run: ScanRun):
    return scan.key, run_scan(scan, run)


def run_key(run: ScanRun) -> str:
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]   # this module decides the streams
    data = {"code": code_fingerprint(), "runner": own, "run": run.identity(), "metric": METRIC}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ScanStore(NpzStore):
    """Cached scans of one directory, keyed by Scan.key, tagged with run_key()."""

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self.write_arrays(key, {f"lane.{k}": v for k, v in arrays.items()})

    def load(self, key: str, values: int) -> dict[str, np.ndarray] | None:
        found = self.read_arrays(key)
        if found is None:
            return None
        _, arrays = found
        out = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("lane.")}
        if set(out) != set(POLICY_LANES) or any(v.shape[0] != values for v in out.values()):
            return None
        return out


def run_scans(scans: list[Scan], directory: Path, run: ScanRun = ScanRun(), *, ray_address: str | None = None,
              num_cpus: int | None = None, serial: bool = False, log=None) -> tuple[dict, dict]:
    """({scan key: {"strict"|"relaxed": [values, replicates]}}, {"computed": n, "reused": n})."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    store = ScanStore(Path(directory) / "scans", run_key(run))
    results = {s.key: cached for s in scans if (cached := store.load(s.key, len(s.values))) is not None}
    todo = sorted({s.key: s for s in scans if s.key not in results}.values(), key=lambda s: -s.weight())
    for _, (key, arrays) in map_tasks(_task, [(s, run) for s in todo], label="conditions: scans", log=log,
                                      ray_address=ray_address, num_cpus=num_cpus, serial=serial, every=25):
        store.save(key, arrays)
        results[key] = arrays
    return results, {"computed": len(todo), "reused": len(scans) - len(todo)}
