"""A sweep from overrides to tables: plan (compose, validate, expand), reuse, compute, write.

Nothing is written before the whole plan validates.  Finished cells are cached one file per
cell as their chunk comes back, so a killed sweep resumes where it stopped; the tables are
rebuilt in grid order from the cache, so they are the same whoever computed which cell.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from study.config import ConfigError, Settings, compose, validate
from study.runner import provenance
from study.runner.executor import RayExecutor
from study.runner.grid import GridCell, expand
from study.runner.replicate import Simulate, default_simulate
from study.runner.store import CellStore, atomic_write_text, code_fingerprint
from study.runner.tables import FORMAT_VERSION, calls_table, cells_table, replicates_table, write_csv, write_parquet

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Plan:
    """A validated sweep: its config, settings and cells, nothing run or written yet."""

    overrides: list[str]
    config: DictConfig
    settings: Settings
    cells: list[GridCell]
    duplicates: int
    expand_seconds: float

    @property
    def name(self) -> str:
        return self.settings.sweep.name

    @property
    def directory(self) -> Path:
        return Path(self.settings.run.output_dir) / "sweep" / self.name


@dataclass
class Outcome:
    """What a finished sweep did and where it put it."""

    directory: Path
    cells: int
    reused: int
    computed: int
    timings: dict[str, float] = field(default_factory=dict)


def plan(overrides: list[str], conf_dir: Path | str | None = None) -> Plan:
    """Compose, validate and expand; raises ConfigError on the first bad key of any cell."""
    start = time.perf_counter()
    cfg = compose(overrides, conf_dir)
    settings = validate(cfg)
    if settings.sweep is None:
        raise ConfigError("sweep", "no sweep selected; choose one, e.g. sweep=quick")
    cells, duplicates = expand(settings.sweep, list(overrides), conf_dir)
    return Plan(list(overrides), cfg, settings, cells, duplicates, time.perf_counter() - start)


def run(plan: Plan, executor=None, simulate: Simulate | None = None, log: Log = _stderr,
        progress: bool = True) -> Outcome:
    """Run the cells a previous run has not finished, then write the tables and manifest.

    ``executor`` defaults to a RayExecutor built from the ``ray`` settings; ``simulate``
    defaults to the executor's, else the engine's simulate_cell.
    """
    start = time.perf_counter()
    out = plan.directory
    simulate = simulate or getattr(executor, "simulate", None)
    fingerprint = code_fingerprint(simulate or default_simulate())
    store = CellStore(out / "cells", fingerprint)
    for directory in (out, store.directory):
        for stale in directory.glob(".*.tmp") if directory.is_dir() else ():
            stale.unlink(missing_ok=True)  # torn writes of a killed run

    results = {gc.cell.cell_id: cached for gc in plan.cells if (cached := store.load(gc.cell.cell_id)) is not None}
    todo = [gc.cell for gc in plan.cells if gc.cell.cell_id not in results]
    reused = len(results)
    log(f"sweep {plan.name}: {len(plan.cells)} cells"
        + (f" ({plan.duplicates} duplicate grid points dropped)" if plan.duplicates else "")
        + f"; reused {reused} cells, computing {len(todo)}")

    compute_start = time.perf_counter()
    executor_info, seconds = {"executor": None}, {}
    if todo:
        if executor is None:
            executor = RayExecutor(plan.settings.ray.address, plan.settings.ray.num_cpus, simulate)
        executor_info, seconds = _compute(plan, todo, executor, store, results, progress)
    compute_seconds = time.perf_counter() - compute_start

    write_start = time.perf_counter()
    rows = [(gc, results[gc.cell.cell_id]) for gc in plan.cells]
    meta = table_meta(plan, fingerprint)
    cells_frame = cells_table(plan.name, rows)
    write_parquet(cells_frame, out / "cells.parquet", meta)
    write_csv(cells_frame, out / "cells.csv")
    write_parquet(replicates_table(rows), out / "replicates.parquet", meta)
    write_parquet(calls_table(rows), out / "calls.parquet", meta)
    timings = {"expand_s": plan.expand_seconds, "compute_s": compute_seconds,
               "write_s": time.perf_counter() - write_start,
               "total_s": plan.expand_seconds + time.perf_counter() - start}
    manifest = {
        **meta,
        "description": plan.settings.sweep.description,
        "overrides": plan.overrides,
        "duplicates_dropped": plan.duplicates,
        "cells": [{"cell_id": gc.cell.cell_id, "pair_id": gc.cell.pair_id, "grid": gc.grid,
                   "point": dict(gc.point), "machine": gc.cell.machine.name, "kernel": gc.cell.kernel.name,
                   "workload": gc.cell.workload.name, "policy": gc.cell.policy.name,
                   "replicates": results[gc.cell.cell_id].replicates,
                   "compute_s": seconds.get(gc.cell.cell_id)} for gc in plan.cells],
        "cells_reused": reused,
        "cells_computed": len(todo),
        "executor": executor_info,
        "host": provenance.host(),
        "timings": timings,
        "tables": {"cells": "cells.parquet", "cells_csv": "cells.csv", "replicates": "replicates.parquet",
                   "calls": "calls.parquet", "cache": "cells/<cell_id>.npz"},
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    log(f"sweep {plan.name}: wrote {out} ({len(todo)} computed, {reused} reused, {timings['total_s']:.1f} s)")
    return Outcome(out, len(plan.cells), reused, len(todo), timings)


def _compute(plan: Plan, todo, executor, store: CellStore, results: dict, progress: bool):
    """Run ``todo`` in chunks, caching each cell as its chunk returns; (executor info, seconds)."""
    seconds: dict[str, float] = {}
    chunks = make_chunks(todo, plan.settings.ray.cells_per_task)
    with executor, tqdm(total=len(todo), unit="cell", desc=f"sweep {plan.name}", file=sys.stderr,
                        mininterval=0.5, smoothing=0.1, disable=not progress) as bar:
        info = executor.describe()
        for _, chunk in executor.run(chunks):
            for cell_id, result, elapsed in chunk:
                store.save(cell_id, result)
                results[cell_id] = result
                seconds[cell_id] = elapsed
            bar.update(len(chunk))
    return info, seconds


def table_meta(plan: Plan, fingerprint: str) -> dict:
    """What every table carries about how it was made (no timings: tables are reproducible)."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": "study.sweep",
        "sweep": plan.name,
        "root_seed": plan.settings.run.seed,
        "config": OmegaConf.to_container(plan.config, resolve=True),
        "code_fingerprint": fingerprint,
        "versions": provenance.versions(),
        "git_revision": provenance.git_revision(),
    }


def make_chunks(cells, per_task: int):
    """Chunks of about ``per_task`` average cells' estimated cost, a setting's cells together, the
    costliest first so that the tail of the run is short (study.runner.lanes.chunk_by_cost).

    The cost estimate only shapes the work; results do not depend on it.
    """
    from study.runner.lanes import chunk_by_cost

    return chunk_by_cost(cells, per_task)
