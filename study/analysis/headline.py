"""The headline numbers, each with its 95% CI: ``outputs/metrics.json`` for ``dvc metrics``.

Only numbers go into metrics.json (dvc compares them across revisions); the settings they
were measured at are described in analysis.json beside them.  Non-finite values (an
interval a single replicate cannot bound, a boundary outside the grid) are written as
null: JSON has no infinity.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.analysis import conditions, grid, schema, seedtable, verdict
from study.analysis.results import Results


def clean(value):
    """JSON-safe: numpy scalars to Python, non-finite to None, recursively."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _estimate(value, low, high) -> dict:
    return {"value": value, "ci_low": low, "ci_high": high}


def _speedup(row: pd.Series) -> dict:
    out = _estimate(row["speedup"], row["speedup_low"], row["speedup_high"])
    out.update(model_low=row.get("model_low", np.nan), model_high=row.get("model_high", np.nan))
    return out


def seed_metrics(results: Results) -> dict:
    out = {}
    for row in results.seed.itertuples(index=False):
        key = f"{'ro' if row.call == 'PROT_READ' else 'rw'}_{row.threads}t_{row.policy}"
        out[key] = dict(model=row.model_cycles, ci_low=row.ci_low, ci_high=row.ci_high, seed=row.seed_cycles,
                        rel_error=row.rel_error)
    return out


def seed_reductions(results: Results) -> dict:
    """relaxed/strict - 1 at the seed's 2-thread setting per call, model (CI) and seed."""
    table = results.comparisons.table
    seed2 = seedtable.seed_cells(results.cells)
    seed2 = seed2[seed2["workload.threads"] == 2]
    if table.empty or seed2.empty:
        return {}
    pair = seed2["pair_id"].iloc[0]
    out = {}
    for label, seed_value in seedtable.SEED_REDUCTIONS.items():
        row = table[(table["pair_id"] == pair) & (table["metric"] == f"lat_{label}")]
        if row.empty:
            continue
        row = row.iloc[0]
        out[label] = dict(model=1 / row["speedup"] - 1, ci_low=1 / row["speedup_high"] - 1,
                          ci_high=1 / row["speedup_low"] - 1, seed=seed_value)
    return out


def speedups(results: Results) -> tuple[dict, dict]:
    """(numbers, where) for the seed setting, the best, the worst, and the most threads per workload."""
    main = results.paired_main
    numbers, where = {}, {}
    if main.empty:
        return numbers, where
    seed2 = seedtable.seed_cells(results.cells)
    seed2 = seed2[seed2["workload.threads"] == 2]
    picks = {}
    if not seed2.empty:
        picks["seed_setting"] = main[main["pair_id"] == seed2["pair_id"].iloc[0]]
    picks["best"] = main.loc[[main["speedup"].idxmax()]]
    picks["worst"] = main.loc[[main["speedup"].idxmin()]]
    by = ["workload", "kernel"] if "kernel" in main.columns else ["workload"]
    for keys, group in main.groupby(by, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        top = grid.slice_for(group, ["workload.threads"]).sort_values("workload.threads", kind="stable")
        picks[f"{'_'.join(map(str, keys))}_most_threads"] = top.tail(1)
    for key, rows in picks.items():
        if rows.empty:
            continue
        row = rows.iloc[0]
        numbers[key] = _speedup(row)
        # name only the knobs the sweep varies for that workload: the rest are its defaults
        knobs = schema.varied_knobs(main[main["workload"] == row["workload"]]) or ["workload.threads"]
        shown = {k.split(".", 1)[1]: grid.format_value(row[k]) for k in knobs if not pd.isna(row.get(k))}
        where[key] = dict(pair_id=row["pair_id"], setting=grid.setting_text(row, knobs), knobs=shown,
                          machine=row["machine_label"],
                          p_holm=row["p_holm"], verdict=row["verdict"], drivers=row.get("drivers", ""),
                          model_checked=bool(row.get("model_checked", False)), workload=row["workload"],
                          kernel=row.get("kernel", ""))
    return numbers, where


def crossover_metrics(results: Results) -> dict:
    out = {}
    for row in results.crossover.boundary.itertuples(index=False):
        if row.status != "crosses":
            continue
        key = crossover_key(row)
        out[key] = _estimate(row.boundary, row.boundary_low, row.boundary_high)
        out[key].update(model_low=getattr(row, "model_low", np.nan), model_high=getattr(row, "model_high", np.nan),
                        below=row.below, above=row.above, interpolated=bool(row.interpolated))
    return out


def crossover_key(row) -> str:
    y = f"_{row.y.split('.', 1)[1]}={grid.format_value(row.y_value)}" if isinstance(row.y, str) else ""
    return f"{row.workload}_{row.x.split('.', 1)[1]}{y}"


def attribution_metrics(results: Results) -> dict:
    """Per-patch shares, keyed ``<workload> on <machine label>`` (the label names the kernel)."""
    out: dict = {}
    for row in results.attribution.itertuples(index=False):
        if not getattr(row, "acts", True):
            continue   # the patch cannot act in these settings: no share to report
        key = f"{row.workload} on {row.machine_label}"
        out.setdefault(key, {})[row.idea] = _estimate(row.share, row.share_low, row.share_high)
    return out


def grid_counts(results: Results) -> dict:
    main = results.paired_main
    counts = {"settings_compared": len(main)}
    cats = main["verdict"].map(verdict.category) if not main.empty else pd.Series(dtype=str)
    for name, label in (("relaxed_wins", "wins"), ("relaxed_loses", "loses"), ("no_practical_difference", "none"),
                        ("depends_on_costs", "depends"), ("unresolved", "unresolved")):
        counts[name] = int((cats == label).sum())
    counts["checked_over_ensemble"] = int(main["model_checked"].sum()) if "model_checked" in main else 0
    summary = results.summary
    counts["cells"] = len(results.cells)
    counts["unstable_cells"] = int(summary.loc[summary["unstable"], "cell_id"].nunique()) if not summary.empty else 0
    return counts


def safety(results: Results) -> dict:
    """Writes that landed on a read-only or clean PTE, per round, by policy role: relaxed must be 0."""
    cells = results.cells
    column = next((c for c in ("count.violations", "count.violations.mean") if c in cells.columns), None)
    if column is None:
        return {}
    return {role: float(cells.loc[cells["role"] == role, column].max())
            for role in (schema.ROLE_STRICT, schema.ROLE_RELAXED, schema.ROLE_UNSAFE) if (cells["role"] == role).any()}


def headline(results: Results) -> tuple[dict, dict]:
    """(metrics.json content, descriptions of where each speedup was measured)."""
    speed, where = speedups(results)
    held, words = conditions.for_headlines(results.conditions, where)
    for key, text in words.items():
        where[key]["conditions"] = text
    mechanism = dict(zip(results.why["pair_id"], results.why["text"])) if not results.why.empty else {}
    for info in where.values():
        if info.get("pair_id") in mechanism:
            info["mechanism"] = mechanism[info["pair_id"]]
    metrics = dict(seed=seed_metrics(results), seed_reduction_2t=seed_reductions(results), speedup=speed,
                   conditions=held, crossover=crossover_metrics(results), attribution=attribution_metrics(results),
                   grid=grid_counts(results), violations_per_round_max=safety(results))
    return clean(metrics), clean(where)
