"""Where relaxed stops winning: the boundary along a knob at which the speedup crosses 1.

Along x (remote write share first, see study.analysis.grid) at each y (working set
first), the boundary is the smallest x at which strict/relaxed on total cycles per round
reaches 1, with log(speedup) interpolated linearly between the two grid points around
it.  Its CI comes from the same paired bootstrap draws as the speedups: each draw gives
a boundary, and the percentile interval of those is reported (+inf when a draw never
crosses inside the grid, -inf when it is already at or below 1 at the smallest x).

The interpolated value means something only where the two grid points around it are close:
``below`` and ``above`` are those points, and ``interpolated`` is False when they are more
than ``MAX_STEP`` times apart (or, at x = 0, more than a quarter of the range), in which case
the report says "between ``below`` and ``above``" instead of a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from study.analysis import grid, stats

WINS_THROUGHOUT = "relaxed wins over the whole range"
LOSES_THROUGHOUT = "relaxed loses from the smallest value"
CROSSES = "crosses"
MAX_STEP = 2.0


def bracket(x: np.ndarray, ratio: np.ndarray) -> tuple[float, float]:
    """The grid points on either side of the first crossing of ``ratio`` (x ascending), or NaNs."""
    with np.errstate(divide="ignore", invalid="ignore"):
        below = np.log(np.asarray(ratio, float)) <= 0
    if not below.any() or below[0]:
        return np.nan, np.nan
    j = int(np.argmax(below))
    return float(x[j - 1]), float(x[j])


def close(lo: float, hi: float, span: float) -> bool:
    """Whether two neighbouring grid points are near enough to interpolate between."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return False
    if lo > 0:
        return hi / lo <= MAX_STEP
    return (hi - lo) <= 0.25 * span


@dataclass
class Crossover:
    boundary: pd.DataFrame
    # (machine_label, workload) -> (x knob, y knob or None, slice of the paired table)
    grids: dict = field(default_factory=dict)


def first_crossing(x: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Boundary of each row of ``ratio`` (shape (..., len(x)), x ascending); see the module doc."""
    ratio = np.atleast_2d(np.asarray(ratio, float))
    x = np.asarray(x, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(ratio)
    below = logs <= 0
    out = np.full(ratio.shape[0], np.inf)
    any_below = below.any(axis=1)
    j = np.argmax(below, axis=1)
    out[any_below & (j == 0)] = -np.inf
    inner = any_below & (j > 0)
    rows = np.flatnonzero(inner)
    if rows.size:
        j1 = j[rows]
        l0, l1 = logs[rows, j1 - 1], logs[rows, j1]
        x0, x1 = x[j1 - 1], x[j1]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(l0 - l1 > 0, l0 / (l0 - l1), 1.0)
        out[rows] = x0 + (x1 - x0) * frac
    return out


def status_of(value: float) -> str:
    if value == np.inf:
        return WINS_THROUGHOUT
    if value == -np.inf:
        return LOSES_THROUGHOUT
    return CROSSES


def find(paired_main: pd.DataFrame, boot: dict, meaning, level: float = stats.LEVEL) -> Crossover:
    """Boundaries for every (machine, workload) whose grid varies one of the workload's
    crossover knobs (``meaning``: the sweep's, study.analysis.schema.Meaning)."""
    rows, grids = [], {}
    if paired_main.empty:
        return Crossover(pd.DataFrame(), grids)
    for (machine, workload), group in paired_main.groupby(["machine_label", "workload"], sort=True):
        x, y = grid.crossover_axes(group, *meaning.crossover(workload))
        if x is None:
            continue
        part = grid.slice_for(group, [x] + ([y] if y else []))
        if part[x].nunique() < 2:
            continue
        grids[(machine, workload)] = (x, y, part.reset_index(drop=True))
        for y_value, line in (part.groupby(y, sort=True, dropna=False) if y else [(None, part)]):
            line = line.sort_values(x, kind="stable")
            if len(line) < 2:
                continue
            xs = line[x].to_numpy(float)
            point = first_crossing(xs, line["speedup"].to_numpy())[0]
            pairs = list(line["pair_id"])
            draws = np.column_stack([boot[p] for p in pairs]) if all(p in boot for p in pairs) else None
            low = high = np.nan
            if draws is not None:
                per_draw = first_crossing(xs, draws)
                alpha = (1 - level) / 2
                low, high = np.quantile(per_draw, [alpha, 1 - alpha], method="inverted_cdf")
            lo_x, hi_x = bracket(xs, line["speedup"].to_numpy())
            rows.append(dict(machine_label=machine, workload=workload, x=x, y=y, y_value=y_value,
                             boundary=point, boundary_low=float(low), boundary_high=float(high),
                             status=status_of(point), x_min=xs.min(), x_max=xs.max(), points=len(line),
                             below=lo_x, above=hi_x,
                             interpolated=bool(close(lo_x, hi_x, xs.max() - xs.min()))))
    return Crossover(pd.DataFrame(rows), grids)
