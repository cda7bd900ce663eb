"""Every figure of the report declared once: its name, title, axes and what tells its series apart.

The plot functions (study.analysis.plots) take their name and title from here; ``write_series``
splits each figure's data into one file per series for ``dvc plots show`` / ``dvc plots diff``
(DVC's templates draw one line per file and per revision: the long CSV given to DVC would draw
unrelated series as one zig-zag line); and the ``plots:`` section of dvc.yaml is generated from
these declarations (``python tools/dvc_yaml.py`` rewrites it; tests/test_pipeline_dvc.py fails
when it is stale).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Figure:
    title: str
    x: str
    y: tuple[str, ...]
    by: tuple[str, ...]        # the columns that tell its series apart
    bars: bool = False         # bar charts: x is the value, y the category (dvc's bar_horizontal)
    template: str = "linear"
    # a family of figures, one per workload that declares one (``<workload>_panel``): its data
    # files are ``plots/*<suffix>.csv``, one series directory for all of them
    suffix: str | None = None
    # the axis on which each series has one point per value (default x; bars: the category); an
    # ECDF's latencies may repeat, its quantiles do not
    position: str | None = None

    @property
    def unique_axis(self) -> str:
        return self.position or (self.y[0] if self.bars else self.x)

    def dvc(self, name: str) -> dict:
        return {f"outputs/analysis/series/{name}": {
            "x": self.x, "y": list(self.y) if len(self.y) > 1 else self.y[0],
            "template": "bar_horizontal" if self.bars else self.template, "title": self.title}}


FIGURES: dict[str, Figure] = {
    "verdict_map": Figure("Where relaxed wins, loses or makes no practical difference", "threads", ("speedup",),
                          ("machine_label", "row")),
    "sensitivity": Figure("What drives each headline across the ensemble", "first_order", ("parameter",),
                          ("quantity",), bars=True),
    "seed_table": Figure("The seed's table reproduced", "threads", ("model_cycles", "seed_cycles"),
                         ("machine_label", "call", "policy"), template="scatter"),
    "latency_threads": Figure("Latency of the seed's calls vs threads, per placement", "threads", ("mean",),
                              ("machine_label", "metric", "placement", "role")),
    "speedup_threads": Figure("Speedup of relaxed over strict vs threads", "threads", ("speedup",),
                              ("machine_label", "workload", "placement")),
    "cycle_breakdown": Figure("Where the cycles go", "mean", ("role",), ("machine_label", "workload", "setting", "metric"),
                              bars=True),
    "latency_ecdf": Figure("Per-call latency distributions", "latency", ("quantile",),
                           ("machine_label", "workload", "label", "role"), position="quantile"),
    "dirty_ratio": Figure("Strict write-protects vs dirty ratio", "dirty_ratio", ("share",),
                          ("machine_label", "workload", "pages", "metric", "role", "kind")),
    "workload_panel": Figure("Each workload's latencies and cycles per round along its main knob", "x_value",
                             ("mean",), ("machine_label", "workload", "x", "metric", "role"), suffix="_panel"),
    "crossover": Figure("Where relaxed stops winning", "x_value", ("speedup",),
                        ("machine_label", "workload", "x", "y", "y_value")),
    "attribution": Figure("Share of relaxed's gain per RFC patch", "share", ("idea",), ("machine_label", "workload"),
                          bars=True),
}
# kept for callers that name the series by their figure (dvc.yaml's directories)
SERIES = FIGURES


def slug(values) -> str:
    text = "__".join(str(v) for v in values)
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:150] or "all"


def _frame(plots_dir: Path, name: str, spec: Figure) -> pd.DataFrame:
    paths = sorted(plots_dir.glob(f"*{spec.suffix}.csv")) if spec.suffix else [plots_dir / f"{name}.csv"]
    frames = [pd.read_csv(p) for p in paths if p.exists() and p.stat().st_size]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_series(plots_dir: Path, target: Path) -> list[str]:
    """Split every figure's data (``plots_dir/<name>.csv``) into ``target/<name>/<series>.csv``."""
    written = []
    for name, spec in FIGURES.items():
        frame = _frame(plots_dir, name, spec)
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


# -------------------------------------------------------------------------- dvc.yaml

BEGIN = "# --- plots: generated from study/analysis/series.py FIGURES (python tools/dvc_yaml.py) ---"


def dvc_plots() -> list[dict]:
    """dvc.yaml's ``plots:`` list, from the declarations."""
    return [spec.dvc(name) for name, spec in FIGURES.items()]


def dvc_section() -> str:
    import yaml

    return BEGIN + "\n" + yaml.safe_dump({"plots": dvc_plots()}, sort_keys=False, width=120)
