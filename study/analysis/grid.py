"""Choosing slices of a sweep grid: which knobs to put on the axes and where to hold the rest.

A sweep is usually a union of sub-grids (a thread-scaling grid, a crossover grid, a
dirty-ratio grid) that share a baseline.  A plot over two knobs wants the sub-grid that
covers those two knobs best, with every other knob held at one value; ``slice_for``
finds it greedily, knob by knob, in a fixed order so the answer never depends on row order.
"""

from __future__ import annotations

import pandas as pd

from study.analysis import schema

def equal(column: pd.Series, value) -> pd.Series:
    """Elementwise ``column == value`` where NaN equals NaN (a knob that does not apply)."""
    if pd.isna(value):
        return column.isna()
    return column == value


def slice_for(frame: pd.DataFrame, vary: list[str], hold: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows of ``frame`` where every knob outside ``vary``, and every column of ``hold`` (e.g.
    ``machine_label``, for a figure that cannot tell two kernels apart), is held at one value.

    For each such knob, the value kept is the one whose rows cover the most distinct
    combinations of ``vary`` (ties: more rows, then the smaller value).
    """
    held = [c for c in hold if c in frame and frame[c].nunique(dropna=False) > 1]
    for knob in held + schema.varied_knobs(frame):
        if knob in vary:
            continue
        best, best_key = None, None
        for value in _sorted_unique(frame[knob]):
            rows = frame[equal(frame[knob], value)]
            key = (_combos(rows, vary), len(rows))
            if best_key is None or key > best_key:
                best, best_key = value, key
        frame = frame[equal(frame[knob], best)]
    return frame


def _combos(frame: pd.DataFrame, vary: list[str]) -> int:
    if not vary:
        return 1
    return len(frame[list(vary)].drop_duplicates())


def _sorted_unique(column: pd.Series) -> list:
    values = list(column.drop_duplicates())
    return sorted(values, key=lambda v: (pd.isna(v), str(type(v)), v if not pd.isna(v) else 0))


def crossover_axes(frame: pd.DataFrame, prefer_x, prefer_y) -> tuple[str | None, str | None]:
    """The (x, y) knobs a crossover over ``frame`` should use: the first of ``prefer_x`` (the
    workload's CROSSOVER, from the sweep's manifest) that the frame varies, and the first of
    ``prefer_y`` beside it; y is None for a 1-D sweep."""
    varied = schema.varied_knobs(frame)
    x = next((k for k in prefer_x if k in varied), None)
    if x is None:
        return None, None
    y = next((k for k in prefer_y if k in varied and k != x), None)
    return x, y


def setting_text(row: pd.Series, knobs: list[str] | None = None) -> str:
    """A setting in one line, e.g. ``mprotect_toggle threads=2 placement=core``."""
    knobs = [k for k in row.index if isinstance(k, str) and k.startswith(schema.KNOB_PREFIX)] if knobs is None else knobs
    parts = [str(row["workload"])]
    for knob in knobs:
        value = row.get(knob)
        if value is None or pd.isna(value):
            continue
        parts.append(f"{knob.split('.', 1)[1]}={format_value(value)}")
    return " ".join(parts)


def format_value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
