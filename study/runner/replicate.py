"""Run one cell to its replicate count: fixed batches, or batches until the CI target is met.

Batch ``b`` of a cell always gets ``cell.seed(b)`` and ``run.batch_replicates`` replicates
(the last fixed batch may be shorter), so the numbers depend only on the cell, never on how
cells were chunked or which worker ran them; an adaptive run extends the fixed one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from study.config.cell import Cell
from study.results.summary import relative_half_width
from study.workloads.result import CellResult

Simulate = Callable[..., CellResult]


def default_simulate() -> Simulate:
    """The engine's simulate_cell (imported late: the config layer must not need the engine)."""
    from study.workloads import simulate_cell

    return simulate_cell


def run_cell(cell: Cell, simulate: Simulate | None = None) -> CellResult:
    """All batches of ``cell`` merged into one CellResult (replicates in batch order)."""
    simulate = simulate or default_simulate()
    batches = [_batch(cell, simulate, b, size) for b, size in enumerate(cell.batch_sizes())]
    return finish_cell(cell, simulate, batches)


def finish_cell(cell: Cell, simulate: Simulate, batches: list[CellResult]) -> CellResult:
    """The fixed batches of ``cell`` (however they were run) extended by the adaptive rule, merged."""
    run = cell.run
    if run.adaptive:
        done = sum(r.replicates for r in batches)
        while done < run.max_replicates:
            merged = merge(batches, run.max_samples)
            if relative_half_width(merged.metrics[CellResult.MAIN_METRIC]) < run.ci_target:
                break
            size = min(run.batch_replicates, run.max_replicates - done)
            batches.append(_batch(cell, simulate, len(batches), size))
            done += size
    return merge(batches, run.max_samples)


def _batch(cell: Cell, simulate: Simulate, index: int, size: int) -> CellResult:
    return simulate(cell.machine, cell.workload, cell.policy, replicates=size, rounds=cell.run.rounds,
                    seed=cell.seed(index), max_samples=cell.run.max_samples, kernel=cell.kernel,
                    warmup_rounds=cell.run.warmup_rounds)


def merge(batches: list[CellResult], max_samples: int) -> CellResult:
    """Concatenate batches; a metric a batch lacks is NaN there; samples keep a prefix."""
    if len(batches) == 1 and all(s.size <= max_samples for s in batches[0].samples.values()):
        return batches[0]
    metrics = {}
    for name in _union(b.metrics for b in batches):
        metrics[name] = np.concatenate([
            b.metrics[name] if name in b.metrics else np.full(b.replicates, np.nan) for b in batches])
    counters = {}
    for name in _union(b.counters for b in batches):
        counters[name] = np.concatenate([
            b.counters[name] if name in b.counters else np.zeros(b.replicates, np.int64) for b in batches])
    samples = {}
    for label in _union(b.samples for b in batches):
        parts = [b.samples[label] for b in batches if label in b.samples]
        samples[label] = np.concatenate(parts)[:max_samples]
    return CellResult(replicates=sum(b.replicates for b in batches), rounds=batches[0].rounds,
                      metrics=metrics, counters=counters, samples=samples)


def _union(dicts) -> list[str]:
    """Keys in first-seen order (a stable order for a given cell)."""
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)
