"""The seed's table reproduced from the sweep: the model's eight cells beside the published ones.

The seed cells are part of every sweep that includes the seed's benchmark (machine
haswell_2s, the mprotect toggle on one page, one or two threads on separate cores, the
second thread idle in the mm).  If a sweep lacks them, ``python -m study seed-table``'s
``outputs/seed_table.json`` can stand in (``python -m study analyze --seed-table FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from study.analysis import schema
from study.analysis.grid import equal
from study.seed import SEED_KERNEL, SEED_MACHINE, SEED_TABLE, SEED_WORKLOAD

COLUMNS = ("call", "threads", "policy", "seed_cycles", "model_cycles", "ci_low", "ci_high", "rel_error",
           "seed_in_ci", "machine_label", "source")
# the seed's reported reductions at 2 threads (relaxed vs strict), for the headline
SEED_REDUCTIONS = {"mprotect_ro": 4363 / 4655 - 1, "mprotect_rw": 2615 / 4675 - 1}


def seed_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of the seed's benchmark, any thread count, strict and relaxed only."""
    mask = (cells["machine"] == SEED_MACHINE) & (cells["workload"] == SEED_WORKLOAD["name"])
    if "kernel" in cells.columns:
        mask &= cells["kernel"] == SEED_KERNEL
    mask &= cells["role"].isin([schema.ROLE_STRICT, schema.ROLE_RELAXED])
    for key, value in SEED_WORKLOAD.items():
        if key == "name":
            continue
        column = f"workload.{key}"
        if column in cells.columns:
            mask &= equal(cells[column], value)
    return cells[mask]


def from_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per seed cell found in the sweep (fewer than eight if some are missing)."""
    found = seed_cells(cells)
    rows = []
    for seed in SEED_TABLE:
        match = found[(found["workload.threads"] == seed.threads) & (found["role"] == seed.policy)]
        if match.empty:
            continue
        cell = match.sort_values(["replicates", "cell_id"], ascending=[False, True], kind="stable").iloc[0]
        metric = f"lat_{seed.label}"
        rows.append(_row(seed, cell[f"{metric}.mean"], cell[f"{metric}.ci_low"], cell[f"{metric}.ci_high"],
                         cell["machine_label"], f"sweep cell {cell['cell_id']}"))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def from_json(path: Path, calibrated: bool = False) -> pd.DataFrame:
    """The table ``python -m study seed-table`` wrote; it carries no calibration flag of its own."""
    records = json.loads(Path(path).read_text())
    by_key = {(s.call, s.threads, s.policy): s for s in SEED_TABLE}
    rows = []
    for rec in records:
        seed = by_key.get((rec["call"], int(rec["threads"]), rec["policy"]))
        if seed is not None:
            rows.append(_row(seed, rec["model_cycles"], rec["ci_low"], rec["ci_high"],
                             schema.machine_label(SEED_MACHINE, calibrated, SEED_KERNEL), str(path)))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(seed, mean, low, high, machine_label, source) -> dict:
    mean, low, high = float(mean), float(low), float(high)
    return dict(call=seed.call, threads=seed.threads, policy=seed.policy, seed_cycles=float(seed.cycles),
                model_cycles=mean, ci_low=low, ci_high=high, rel_error=mean / seed.cycles - 1,
                seed_in_ci=bool(low <= seed.cycles <= high) if np.isfinite(low) else False,
                machine_label=machine_label, source=source)


def build(cells: pd.DataFrame, fallback: Path | None) -> pd.DataFrame:
    """The seed table from the sweep, else from ``fallback`` when that file exists."""
    table = from_cells(cells)
    if len(table) < len(SEED_TABLE) and fallback is not None and Path(fallback).exists():
        known = cells.loc[cells["machine"] == SEED_MACHINE, "machine_calibrated"]
        other = from_json(fallback, calibrated=bool(known.all()) if len(known) else False)
        if len(other) > len(table):
            return other
    return table
