"""One file per series of each figure, for ``dvc plots show`` / ``dvc plots diff``.

The report's figures draw several series from one long CSV (``plots/<name>.csv``), split by
a column the seaborn call uses as hue or facet.  DVC's templates draw one line per file and
per revision, so the long CSV given to DVC draws unrelated series as one zig-zag line.  Here
each figure's data is split by the columns that tell its series apart and each series is
written sorted along its x axis to ``series/<name>/<series>.csv``; dvc.yaml declares each
``series/<name>`` directory as a plot with the same x and y for every file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Series:
    x: str
    y: tuple[str, ...]
    by: tuple[str, ...]
    # bar charts: x is the value, y the category (dvc's bar_horizontal template)
    bars: bool = False


SERIES: dict[str, Series] = {
    "seed_table": Series("threads", ("model_cycles", "seed_cycles"), ("machine_label", "call", "policy")),
    "speedup_threads": Series("threads", ("speedup",), ("machine_label", "workload", "placement")),
    "latency_threads": Series("threads", ("mean",), ("machine_label", "metric", "placement", "role")),
    "cycle_breakdown": Series("mean", ("role",), ("machine_label", "workload", "setting", "metric"), bars=True),
    "latency_ecdf": Series("latency", ("quantile",), ("machine_label", "workload", "label", "role")),
    "dirty_ratio": Series("dirty_ratio", ("share",), ("machine_label", "pages", "metric", "role", "kind")),
    "madv_free_panel": Series("dirty_ratio", ("mean",), ("machine_label", "workload", "metric", "role")),
    "uffd_wp_panel": Series("threads", ("mean",), ("machine_label", "workload", "metric", "role")),
    "crossover": Series("x_value", ("speedup",), ("machine_label", "workload", "x", "y", "y_value")),
    "attribution": Series("share", ("idea",), ("machine_label", "workload"), bars=True),
    "verdict_map": Series("threads", ("speedup",), ("machine_label", "row")),
    "sensitivity": Series("first_order", ("parameter",), ("quantity",), bars=True),
}


def slug(values) -> str:
    text = "__".join(str(v) for v in values)
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:150] or "all"


def write_series(plots_dir: Path, target: Path) -> list[str]:
    """Split every ``plots_dir/<name>.csv`` of SERIES into ``target/<name>/<series>.csv``."""
    written = []
    for name, spec in SERIES.items():
        path = plots_dir / f"{name}.csv"
        frame = pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()
        if frame.empty or spec.x not in frame or not set(spec.y) <= set(frame.columns):
            # a figure this sweep cannot draw: an empty series, so that dvc.yaml's plot still
            # names a directory of CSVs (dvc reports a missing one as an error)
            (target / name).mkdir(parents=True, exist_ok=True)
            pd.DataFrame(columns=[spec.x, *spec.y]).to_csv(target / name / "none.csv", index=False)
            written.append(f"{name}/none.csv")
            continue
        by = [c for c in spec.by if c in frame.columns]
        extra = [c for c in frame.columns if c.endswith(("_low", "_high")) or c in ("ci_low", "ci_high")]
        keep = list(dict.fromkeys([spec.x, *spec.y, *extra]))
        directory = target / name
        directory.mkdir(parents=True, exist_ok=True)
        groups = frame.groupby(by, sort=True, dropna=False) if by else [((), frame)]
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            part = part[keep].sort_values(spec.x if not spec.bars else list(spec.y), kind="stable")
            file = directory / f"{slug(key)}.csv"
            part.to_csv(file, index=False)
            written.append(file.relative_to(target).as_posix())
    return written
