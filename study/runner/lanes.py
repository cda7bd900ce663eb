"""Cells that share a step sequence run together, and chunks sized by estimated cost.

The strict, relaxed and one-patch-off cells of one setting (same machine, kernel, workload
and run settings: one ``pair_id``) draw the same random streams batch by batch.  The engine's
cost per step is nearly flat in replicates up to a few thousand, so they run as lanes of one
lockstep pass (study.workloads.simulate_lanes), and so do the settings that differ only in a
knob of the workload's LANE_FIELDS (the dirty ratio: one ``lane_key``), each setting
on its own streams.  The contract of a lane run is that each lane's numbers are identical to
the cell's run alone: the results never depend on the grouping or the chunking.
"""

from __future__ import annotations

import math
import time

from study.config.cell import Cell
from study.runner.replicate import Simulate, _batch, default_simulate, finish_cell, run_cell
from study.workloads.result import CellResult

# most lanes of one pass: 8 lanes at the default replicates stay within a few thousand
# replicates, where a step costs little more than a step of two lanes (benchmarks/cells.py)
MAX_LANES = 8


def groups(cells: list[Cell]) -> list[list[Cell]]:
    """Cells by lane_key (first-seen order), at most MAX_LANES per group."""
    by_pair: dict[str, list[Cell]] = {}
    for cell in cells:
        by_pair.setdefault(cell.lane_key, []).append(cell)
    out = []
    for members in by_pair.values():
        out += [members[i:i + MAX_LANES] for i in range(0, len(members), MAX_LANES)]
    return out


def run_cells(cells: list[Cell], simulate: Simulate | None = None) -> list[tuple[str, CellResult, float]]:
    """Every cell's result and its share of the seconds its group took.

    With the engine's simulate (the default), a group of cells of one lane_key runs its fixed
    batches as lanes; any other ``simulate`` (tests' stand-ins) runs cell by cell."""
    lanes = simulate is None or simulate is default_simulate()
    simulate = simulate or default_simulate()
    done = []
    for group in groups(cells):
        start = time.perf_counter()
        if lanes and len(group) > 1:
            results = _run_group(group, simulate)
        else:
            results = [run_cell(cell, simulate) for cell in group]
        seconds = (time.perf_counter() - start) / len(group)
        done += [(cell.cell_id, result, seconds) for cell, result in zip(group, results)]
    return done


def _run_group(group: list[Cell], simulate: Simulate) -> list[CellResult]:
    from study.workloads import simulate_lanes

    first = group[0]
    run = first.run
    batches: list[list[CellResult]] = [[] for _ in group]
    for b, size in enumerate(first.batch_sizes()):
        lanes = [(cell.policy, first.machine.costs, cell.workload, cell.seed(b)) for cell in group]
        results = simulate_lanes(first.machine, first.workload, lanes,
                                 replicates=size, rounds=run.rounds, seed=first.seed(b), kernel=first.kernel,
                                 max_samples=run.max_samples, warmup_rounds=run.warmup_rounds)
        for mine, result in zip(batches, results):
            mine.append(result)
    # adaptive batches beyond the fixed ones, cell by cell (each its own stopping point)
    return [finish_cell(cell, simulate, mine) for cell, mine in zip(group, batches)]


def estimated_cost(cell: Cell, lanes: int = 1) -> float:
    """Relative cost of a cell (or a group of ``lanes`` cells): steps x a per-step cost that
    grows slowly with the replicates carried and the CPUs and pages they touch."""
    run = cell.run
    w = cell.workload
    width = lanes * min(run.replicates, run.batch_replicates) * (1 + w.threads * w.pages / 64)
    per_step = 1.0 + width / 2000
    return w.steps_per_round() * (run.rounds + run.warmup_rounds) * len(cell.batch_sizes()) * per_step


def chunk_by_cost(cells: list[Cell], per_task: int) -> list[list[Cell]]:
    """Chunks of whole groups, costliest first, each near the cost of ``per_task`` average cells.

    The estimate only shapes the work; results do not depend on it."""
    gs = groups(cells)
    costs = [estimated_cost(g[0], len(g)) for g in gs]
    order = sorted(range(len(gs)), key=lambda i: -costs[i])
    target = sum(costs) / max(1, math.ceil(len(cells) / per_task))
    chunks: list[list[Cell]] = []
    current: list[Cell] = []
    spent = 0.0
    for i in order:
        if current and spent + costs[i] > target:
            chunks.append(current)
            current, spent = [], 0.0
        current += gs[i]
        spent += costs[i]
    if current:
        chunks.append(current)
    return chunks
