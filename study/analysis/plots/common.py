"""What every plot shares: the Plot record, picking cells, lines with CI bands."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from study.analysis import figures, grid, schema, seedtable

MAIN_ROLES = (schema.ROLE_STRICT, schema.ROLE_RELAXED)


@dataclass
class Plot:
    """One figure: its data (always written as CSV) and, unless skipped, the figure."""

    name: str
    title: str
    caption: str
    data: pd.DataFrame
    fig: plt.Figure | None = None
    note: str = ""  # why the plot was skipped, or a caveat worth printing under it
    tight: bool = True  # False: the plot laid itself out (e.g. a shared colour bar axis)

    @property
    def skipped(self) -> bool:
        return self.fig is None


def skip(name: str, title: str, note: str) -> Plot:
    return Plot(name=name, title=title, caption="", data=pd.DataFrame(), note=note)


def held_knobs(part: pd.DataFrame, vary: list[str]) -> str:
    """Every knob of ``part`` held at one value (the kernel and the workload's knobs, the axes
    ``vary`` excluded), as ``name=value, ...``: a caption names what the figure does not vary."""
    out = []
    for knob in ["kernel"] + schema.knob_columns(part):
        if knob in vary or knob not in part:
            continue
        values = part[knob].dropna().unique()
        if len(values) == 1:
            out.append(f"{knob.split('.', 1)[-1]}={grid.format_value(values[0])}")
    return ", ".join(out) or "defaults"


def machines_note(frame: pd.DataFrame) -> str:
    """'machine X (uncalibrated preset), kernel K' for the machines and kernels a figure draws from."""
    labels = sorted(frame["machine_label"].dropna().unique()) if "machine_label" in frame else []
    return "machine " + ", ".join(labels) if labels else ""


def long_metrics(cells: pd.DataFrame, metrics: list[str], keep: list[str]) -> pd.DataFrame:
    """One row per cell and metric with mean, ci_low, ci_high (rows without a mean dropped)."""
    frames = []
    for metric in metrics:
        if f"{metric}.mean" not in cells.columns:
            continue
        part = cells[keep].copy()
        part["metric"] = metric
        for st in ("mean", "ci_low", "ci_high"):
            part[st] = cells[f"{metric}.{st}"].to_numpy()
        frames.append(part[part["mean"].notna()])
    if not frames:
        return pd.DataFrame(columns=keep + ["metric", "mean", "ci_low", "ci_high"])
    return pd.concat(frames, ignore_index=True)


def representative_pair(cells: pd.DataFrame, workload: str):
    """The pair a single-setting figure shows: the seed's 2-thread cell for the seed's
    workload when the sweep has it, otherwise the most threads of the best-covered slice."""
    rows = cells[(cells["workload"] == workload) & (cells["role"] == schema.ROLE_STRICT)]
    if rows.empty:
        return None
    seed = seedtable.seed_cells(cells)
    seed = seed[(seed["workload"] == workload) & (seed["workload.threads"] == 2) & (seed["role"] == schema.ROLE_STRICT)]
    if not seed.empty:
        return seed["pair_id"].iloc[0]
    part = grid.slice_for(rows, ["workload.threads"])
    return part.sort_values(["workload.threads", "pair_id"], kind="stable")["pair_id"].iloc[-1]


SERIES_STYLE = "machine_label"  # machine and kernel: a line never mixes two of them


def lines_with_ci(ax, frame: pd.DataFrame, x: str, hue: str, colors: dict, y="mean", low="ci_low", high="ci_high",
                  order=None, style: str = SERIES_STYLE) -> None:
    """Mean lines (seaborn) with their CI as a band, one per ``hue`` value and, where the frame
    holds more than one, per ``style`` value (the machine and kernel: solid, dashed, ...).

    One drawn point is one row of ``frame``: two rows sharing a line and an x would be averaged
    by seaborn into a point no cell has, so they are refused (a figure that pools kernels, or a
    slice that left a knob free, is a bug in the figure)."""
    style = style if style in frame and frame[style].nunique() > 1 else None
    series = [hue] + ([style] if style else [])
    pooled = frame.duplicated(series + [x], keep=False)
    if pooled.any():
        raise ValueError(f"lines_with_ci: {int(pooled.sum())} rows share {', '.join(series + [x])}; "
                         "each drawn point must be one cell")
    frame = frame.sort_values(series + [x], kind="stable")
    order = [h for h in (order or sorted(frame[hue].unique())) if h in set(frame[hue])]
    palette = {h: colors.get(h, "0.4") for h in order}
    styles = sorted(frame[style].unique()) if style else None
    sns.lineplot(data=frame, x=x, y=y, hue=hue, hue_order=order, palette=palette, style=style, style_order=styles,
                 marker="o", markersize=4, errorbar=None, estimator=None, ax=ax, legend="brief")
    for key, part in frame.groupby(series, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if key[0] not in palette:
            continue
        lo, hi = part[low].to_numpy(float), part[high].to_numpy(float)
        if np.isfinite(lo).all() and np.isfinite(hi).all():
            ax.fill_between(part[x].to_numpy(float), lo, hi, color=palette[key[0]], alpha=0.2, linewidth=0)


def legend_below(fig: plt.Figure, axes, title: str | None = None) -> None:
    """One legend for the whole figure, under it, instead of one per panel over the data."""
    handles, labels, seen = [], [], set()
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in seen:
                seen.add(label)
                handles.append(handle)
                labels.append(label)
        if ax.get_legend():
            ax.get_legend().remove()
    if handles:
        fig.tight_layout()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=min(len(labels), 4),
                   frameon=False, title=title)


def new_figure(ncols: int, nrows: int = 1, height: float = 2.6, sharey=False):
    """Subplots at the report's width; call inside ``figures.style()`` (the registry does)."""
    return plt.subplots(nrows, ncols, figsize=(figures.WIDTH, height * nrows), squeeze=False, sharey=sharey)
