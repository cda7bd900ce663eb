"""Tables of the report built from the analysis CSVs: comparisons, seed cells, key-value lists."""

from __future__ import annotations

import pandas as pd

from study.analysis import schema
from study.report import numbers as fmt
from study.report.doc import Table

def knob_title(column: str) -> str:
    """A knob's short column title: ``workload.dirty_ratio`` -> ``dirty ratio`` (spaces, not
    underscores, so that a narrow PDF column can wrap it instead of overprinting); another
    column as it is."""
    if isinstance(column, str) and column.startswith(schema.KNOB_PREFIX):
        return column.split(".", 1)[1].replace("_", " ")
    return str(column)


def varying(frame: pd.DataFrame) -> list[str]:
    """Knob columns with more than one value among the rows of ``frame``, in the writer's
    order; a knob that merely does not apply to some rows' workload (NaN) does not count."""
    return [k for k in schema.knob_columns(frame) if frame[k].nunique(dropna=True) > 1]


def comparisons(frame: pd.DataFrame, caption: str, with_workload: bool = False, with_metric: bool = False,
                limit: int | None = None, sort: bool = True) -> Table:
    """Speedup strict/relaxed with its CI and model interval, and the verdict, one row per setting
    (the tests' p and d_z decide nothing and stay in paired.csv),
    ordered by workload, metric and the knobs shown unless ``sort`` is False."""
    knobs = varying(frame)
    # every comparison is of one kernel's strict against that kernel with the RFC: name it
    with_kernel = "kernel" in frame.columns
    if sort:
        keys = [c for c in ("workload", "metric", "kernel") if c in frame.columns] + knobs
        frame = frame.sort_values(keys, kind="stable") if keys else frame
    header = (["workload"] if with_workload else []) + (["metric"] if with_metric else []) \
        + (["kernel"] if with_kernel else []) + [knob_title(k) for k in knobs] \
        + ["speedup [95% CI]", "model [5\u201395%]", "verdict"]
    rows = []
    for _, row in frame.iterrows():
        cells = ([row["workload"]] if with_workload else []) + ([row["metric"]] if with_metric else [])
        cells += [str(row["kernel"])] if with_kernel else []
        cells += [fmt.plain(row[k]) for k in knobs]
        cells += [fmt.ratio(row["speedup"], row["speedup_low"], row["speedup_high"]),
                  fmt.interval(row.get("model_low"), row.get("model_high"), 3).replace("[CI n/a]", "not run"),
                  row["verdict"]]
        rows.append(cells)
    full = []
    if limit is not None and len(rows) > limit:
        caption += f" The PDF shows the first {limit} of {len(rows)} rows; the HTML and paired.csv hold all."
        rows, full = rows[:limit], rows
    align = ["l"] * (int(with_workload) + int(with_metric) + int(with_kernel)) + ["r"] * len(knobs) \
        + ["r", "r", "l"]
    return Table(header=header, rows=rows, caption=caption, align=align, full_rows=full)


def seed_table(frame: pd.DataFrame, caption: str) -> Table:
    header = ["call", "threads", "policy", "seed", "model mean", "95% CI", "rel. error", "seed in CI"]
    rows = [[f"mprotect({r.call})", str(r.threads), r.policy, fmt.num(r.seed_cycles), fmt.num(r.model_cycles),
             fmt.interval(r.ci_low, r.ci_high), fmt.percent(r.rel_error, digits=2, signed=True),
             "yes" if bool(r.seed_in_ci) else "no"]
            for r in frame.itertuples(index=False)]
    return Table(header=header, rows=rows, caption=caption, align=["l", "r", "l", "r", "r", "r", "r", "l"])


def key_values(pairs: list[tuple[str, str]], caption: str = "") -> Table:
    return Table(header=["item", "value"], rows=[[k, v] for k, v in pairs], caption=caption, align=["l", "l"])


def setting_knobs(row: pd.Series, frame: pd.DataFrame) -> str:
    """The knobs of ``row`` that vary within ``frame``, as ``threads=4 placement=core``."""
    return " ".join(f"{knob_title(k)}={fmt.plain(row[k])}" for k in varying(frame) if not pd.isna(row[k])) or "\u2014"
