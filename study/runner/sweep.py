"""A sweep from overrides to tables: plan (compose, validate, expand), reuse, compute, write.

Nothing is written before the whole plan validates.  Finished cells are cached one file per
cell as their chunk comes back, so a killed sweep resumes where it stopped; the tables are
rebuilt in grid order from the cache, so they are the same whoever computed which cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from study.config import ConfigError, Settings, compose, validate
from study.runner import provenance
from study.runner.executor import ChunkFailure, RayExecutor, check_address
from study.runner.grid import GridCell, expand
from study.runner.replicate import Simulate, default_simulate
from study.results.summary import summarize
from study.results.files import DirLock, check_output_dir, recover, remove_stale_temps
from study.results.files import atomic_write_text
from study.runner.store import CellStore, code_fingerprint
from study.results import tables

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
    warnings: list[str] = field(default_factory=list)

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


def plan(overrides: list[str], conf_dir: Path | str | None = None, grid: dict[str, list] | list[dict] | None = None,
         name: str = "adhoc") -> Plan:
    """Compose, validate and expand; raises ConfigError on the first bad key of any cell.

    ``grid`` (``python -m study sweep -m key=a,b ...``) replaces the selected sweep's grids by
    this ad-hoc sub-grid (or list of sub-grids: ``python -m study ask``), named ``name``
    unless ``sweep.name=`` is overridden.
    """
    start = time.perf_counter()
    cfg = compose(overrides, conf_dir)
    if grid is not None:
        if cfg.get("sweep") is None:
            raise ConfigError("sweep", "-m needs a sweep to take run settings from; drop ~sweep")
        grids = [dict(g) for g in (grid if isinstance(grid, list) else [grid])]
        cfg.sweep.grids = grids
        if not any(o.split("=", 1)[0] == "sweep.name" for o in overrides):
            cfg.sweep.name = name
        cfg.sweep.description = "ad-hoc sub-grid: " + "; ".join(
            " ".join(f"{k}={','.join(map(str, v))}" for k, v in g.items()) for g in grids)
    settings = validate(cfg)
    if settings.sweep is None:
        raise ConfigError("sweep", "no sweep selected; choose one, e.g. sweep=quick")
    # where the tables go, before any work: a file in the way, a read-only or too long path
    check_output_dir(Path(settings.run.output_dir) / "sweep" / settings.sweep.name, "run.output_dir")
    if settings.ray.address:
        check_address(settings.ray.address)
    warnings: list[str] = []
    cells, duplicates = expand(settings.sweep, list(overrides), conf_dir, settings.limits, warnings)
    return Plan(list(overrides), cfg, settings, cells, duplicates, time.perf_counter() - start, warnings)


class SweepFailed(RuntimeError):
    """Some chunks failed for good; the others finished and are cached."""

    def __init__(self, failed_cells: int, kept: int, total: int, reason: str):
        self.failed_cells, self.kept, self.total, self.reason = failed_cells, kept, total, reason
        super().__init__(f"{failed_cells} of {total} cells failed ({reason}); {kept} finished cells are kept "
                         "and reused by the next run")


def run(plan: Plan, executor=None, simulate: Simulate | None = None, log: Log = _stderr,
        progress: bool = True) -> Outcome:
    """Run the cells a previous run has not finished, then write the tables and manifest.

    ``executor`` defaults to a RayExecutor built from the ``ray`` settings; ``simulate``
    defaults to the executor's, else the engine's simulate_cell.  The sweep directory is
    locked for the whole run (a second writer gets BusyError) and its tables are committed
    as one set (study.results.files.commit_files): after any crash the directory holds the previous
    complete set or the new one, and readers refuse anything else.
    """
    out = plan.directory
    check_output_dir(out, "run.output_dir")
    with DirLock(out, "run.output_dir"):
        return _run_locked(plan, executor, simulate, log, progress)


def _run_locked(plan: Plan, executor, simulate, log: Log, progress: bool) -> Outcome:
    start = time.perf_counter()
    out = plan.directory
    if executor is None:  # built now (Ray starts only when there is work): its engine names the cache
        ray_settings = plan.settings.ray
        executor = RayExecutor(ray_settings.address, ray_settings.num_cpus, simulate,
                               runtime_env=ray_settings.runtime_env, include_dashboard=ray_settings.include_dashboard)
    simulate = simulate or getattr(executor, "simulate", None)
    fingerprint = code_fingerprint(simulate or default_simulate())
    store = CellStore(out / "cells", fingerprint)
    note = recover(out)
    if note:
        log(f"sweep {plan.name}: {note} left by a killed run")
    for directory in (out, store.directory):
        remove_stale_temps(directory)  # torn writes of a killed run (their writer is gone)

    results, summaries = {}, {}
    for gc in plan.cells:
        cached = store.load(gc.cell.cell_id, expected_replicates(gc.cell))
        if cached is not None:
            results[gc.cell.cell_id] = cached
    todo = [gc.cell for gc in plan.cells if gc.cell.cell_id not in results]
    reused = len(results)
    log(f"sweep {plan.name}: {len(plan.cells)} cells"
        + (f" ({plan.duplicates} duplicate grid points dropped)" if plan.duplicates else "")
        + f"; reused {reused} cells, computing {len(todo)}")

    compute_start = time.perf_counter()
    executor_info, seconds = {"executor": None}, {}
    phases: dict[str, float] = {}  # finer timings, for run_info.json
    closing = None  # the executor's shutdown, left to finish while the tables are written
    try:
        if todo:
            executor_info, seconds, failures, closing = _compute(plan, todo, executor, store, results, summaries,
                                                                 progress, phases)
            if failures:
                failed = sum(n for n, _ in failures)
                raise SweepFailed(failed, len(results), len(plan.cells), failures[0][1])
        compute_seconds = time.perf_counter() - compute_start
        write_start = time.perf_counter()
        _write_tables(plan, fingerprint, results, summaries)
        phases["tables_s"] = time.perf_counter() - write_start
    finally:
        if closing is not None:
            waited = time.perf_counter()
            closing.join()
            phases["executor_stop_wait_s"] = time.perf_counter() - waited
    if closing is not None and closing.error is not None:
        raise closing.error  # the executor failed to stop, as it would have said when stopped in line
    total = plan.expand_seconds + time.perf_counter() - start
    # Not part of the set (its bytes differ on every run): no reader checks it against the manifest.
    atomic_write_text(out / RUN_INFO, json.dumps({
        "sweep": plan.name,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": provenance.git_revision(),
        "host": provenance.host(),
        "executor": executor_info,
        "cells_reused": reused,
        "cells_computed": len(todo),
        "timings": {"expand_s": plan.expand_seconds, "compute_s": compute_seconds,
                    "write_s": time.perf_counter() - write_start, "total_s": total, **phases},
        "cell_compute_s": {gc.cell.cell_id: seconds.get(gc.cell.cell_id) for gc in plan.cells},
    }, indent=2, sort_keys=True) + "\n")
    log(f"sweep {plan.name}: wrote {out} ({len(todo)} computed, {reused} reused, {total:.1f} s)")
    return Outcome(out, len(plan.cells), reused, len(todo),
                   {"expand_s": plan.expand_seconds, "compute_s": compute_seconds, "total_s": total})


def _write_tables(plan: Plan, fingerprint: str, results: dict, summaries: dict) -> None:
    """The tables and manifest of every cell of ``plan``, in grid order, committed as one set
    (``summaries``: the cells' summaries worked out already, by cell_id)."""
    rows = [(gc, results[gc.cell.cell_id]) for gc in plan.cells]
    resolved, keys = resolved_parts([gc.cell for gc in plan.cells])
    # Only what the inputs determine: the manifest is part of the hashed, reproducible set.
    # Timings, host, executor, git revision and reuse counts go to run_info.json.
    manifest = {"description": plan.settings.sweep.description, "overrides": plan.overrides,
                "duplicates_dropped": plan.duplicates, "resolved": resolved, "run_info": RUN_INFO,
                "cache": "cells/<cell_id>.npz"}
    entries = [{"grid": gc.grid, "point": dict(gc.point), "resolved": keys[gc.cell.cell_id]} for gc in plan.cells]
    tables.write(plan.directory, plan.name, rows, table_meta(plan, fingerprint), manifest, entries=entries,
                 summaries=summaries)


def expected_replicates(cell) -> tuple[int, int]:
    """How many replicates a finished cell may have: exactly run.replicates, or up to the adaptive cap."""
    run = cell.run
    return (run.replicates, max(run.replicates, run.max_replicates)) if run.adaptive else (run.replicates, run.replicates)


def _compute(plan: Plan, todo, executor, store: CellStore, results: dict, summaries: dict, progress: bool,
             phases: dict[str, float]):
    """Run ``todo`` in chunks, caching each cell as its chunk returns and summarizing it for
    the cells table (while the other chunks run, rather than after the last).

    Returns (executor info, seconds per cell, failures, the thread shutting the executor
    down); a failure is (cells in the chunk, reason) for a chunk that failed after its
    retries, while the other chunks went on.  ``phases`` gets the executor's start-up time.
    """
    seconds: dict[str, float] = {}
    failures: list[tuple[int, str]] = []
    from study.runner.lanes import estimated_cost

    chunks = make_chunks(todo, plan.settings.ray.cells_per_task)
    # the bar advances by each chunk's estimated cost, not its cells: the costliest chunks run
    # first, so a count of cells would promise a late finish at the start and an early one later
    cost = [sum(estimated_cost(c) for c in chunk) for chunk in chunks]
    scale = 100.0 / max(sum(cost), 1e-9)
    started = time.perf_counter()
    executor.__enter__()
    phases["executor_start_s"] = time.perf_counter() - started
    done_cells = 0
    try:
        with tqdm(total=100.0, desc=f"sweep {plan.name} 0/{len(todo)} cells", file=sys.stderr, mininterval=0.5, smoothing=0.1,
                  disable=not progress,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]") as bar:
            info = executor.describe()
            for index, chunk in executor.run(chunks):
                done_cells += len(chunks[index])
                bar.set_description_str(f"sweep {plan.name} {done_cells}/{len(todo)} cells", refresh=False)
                if isinstance(chunk, ChunkFailure):
                    failures.append((len(chunks[index]), chunk.reason))
                    bar.update(min(cost[index] * scale, 100.0 - bar.n))
                    continue
                for cell_id, result, elapsed in chunk:
                    store.save(cell_id, result)
                    results[cell_id] = result
                    seconds[cell_id] = elapsed
                    try:
                        summaries[cell_id] = summarize(result)
                    except Exception:  # the cell is cached: the table's build says what is wrong
                        pass
                bar.update(min(cost[index] * scale, 100.0 - bar.n))
    except BaseException:
        executor.__exit__(*sys.exc_info())
        raise
    # Every chunk is back: the executor shuts down (Ray's processes take a second or so to
    # stop, waiting, not computing) while the caller writes the tables; it joins the thread.
    closing = _Closing(executor)
    closing.start()
    return info, seconds, failures, closing


class _Closing(threading.Thread):
    """Leaves an executor's context in the background; ``error`` is what that raised, if anything."""

    def __init__(self, executor):
        super().__init__(name="executor-exit")
        self.executor, self.error = executor, None

    def run(self) -> None:
        try:
            self.executor.__exit__(None, None, None)
        except BaseException as err:  # handed to the caller, after its join
            self.error = err


def table_meta(plan: Plan, fingerprint: str) -> dict:
    """What every table carries about how it was made (no timings: tables are reproducible)."""
    return {
        "format_version": tables.FORMAT_VERSION,
        "kind": "study.sweep",
        "sweep": plan.name,
        "root_seed": plan.settings.run.seed,
        "config": OmegaConf.to_container(plan.config, resolve=True),
        "code_fingerprint": fingerprint,
        "versions": provenance.versions(),
    }


# Timings, host, executor, git revision and dates of the last run: beside the tables, never
# hashed by the manifest nor by DVC (.dvcignore), so the same inputs give the same bytes.
RUN_INFO = "run_info.json"


def _short_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def resolved_parts(cells) -> tuple[dict, dict]:
    """The machine (facts and costs), kernel, workload and policy each cell ran, resolved.

    Returns ``{group: {key: fields}}`` and ``{cell_id: {group: key}}``; a key is the part's
    name, or ``name#<hash>`` when cells of the sweep ran different variants of one name
    (``machine.costs.invlpg`` on a grid axis).
    """
    parts: dict[str, dict[str, dict]] = {g: {} for g in ("machine", "kernel", "workload", "policy")}
    variants: dict[tuple[str, str], set[str]] = {}
    raw = []
    for cell in cells:
        entry = {"machine": dataclasses.asdict(cell.machine), "kernel": dataclasses.asdict(cell.kernel),
                 "workload": dataclasses.asdict(cell.workload), "policy": dataclasses.asdict(cell.policy)}
        raw.append((cell.cell_id, entry))
        for group, data in entry.items():
            variants.setdefault((group, data["name"]), set()).add(_short_hash(data))
    keys: dict[str, dict[str, str]] = {}
    for cell_id, entry in raw:
        keys[cell_id] = {}
        for group, data in entry.items():
            name = data["name"]
            key = name if len(variants[(group, name)]) == 1 else f"{name}#{_short_hash(data)}"
            parts[group][key] = data
            keys[cell_id][group] = key
    return {g: dict(sorted(v.items())) for g, v in parts.items()}, keys


def make_chunks(cells, per_task: int):
    """Chunks of about ``per_task`` average cells' estimated cost, a setting's cells together, the
    costliest first so that the tail of the run is short (study.runner.lanes.chunk_by_cost).

    The cost estimate only shapes the work; results do not depend on it.
    """
    from study.runner.lanes import chunk_by_cost

    return chunk_by_cost(cells, per_task)
