"""Page 1's figures: the win / lose / no-difference map, and what drives each headline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle

from study.analysis import figures, grid, verdict
from study.analysis.plots.common import Plot, held_knobs, machines_note, new_figure, skip
from study.analysis.series import FIGURES

MAP_NAME, SENS_NAME = "verdict_map", "sensitivity"
MAP_TITLE, SENS_TITLE = FIGURES[MAP_NAME].title, FIGURES[SENS_NAME].title

CATEGORIES = ("wins", "none", "loses", "depends", "unresolved")
CATEGORY_TEXT = {"wins": "relaxed wins", "none": "no practical difference", "loses": "relaxed loses",
                 "depends": "depends on the costs", "unresolved": "unresolved (noise)"}
COLOURS = {"wins": "#4575b4", "none": "#e0e0e0", "loses": "#d73027", "depends": "#fdae61", "unresolved": "#ffffff"}
NOT_RUN_EDGE = "0.75"  # hatching of a setting the sweep did not run
ROWS = ["workload.dirty_ratio"]
COLUMN = "workload.threads"


def _short(speedup: float) -> str:
    """A speedup in at most four characters: 41, 2.7, 0.91."""
    if not np.isfinite(speedup):
        return ""
    return f"{speedup:.0f}" if speedup >= 10 else f"{speedup:.2g}" if speedup >= 1 else f"{speedup:.2f}"


def verdict_map(results) -> Plot:
    main = results.paired_main
    if main.empty or COLUMN not in main:
        return skip(MAP_NAME, MAP_TITLE, "the sweep has no strict/relaxed pairs over threads")
    frames, held = [], []
    kernels = sorted(main["kernel"].unique()) if "kernel" in main else [None]
    for kernel in kernels:
        part_k = main[main["kernel"] == kernel] if kernel is not None else main
        for workload, group in part_k.groupby("workload", sort=True):
            vary = [COLUMN] + [r for r in ROWS if r in group and group[r].nunique() > 1]
            part = grid.slice_for(group, vary)
            if part.empty:
                continue
            part = part.copy()
            part["row"] = [f"{workload}" + (f" d={grid.format_value(v)}" if "workload.dirty_ratio" in vary else "")
                           for v in part.get("workload.dirty_ratio", pd.Series([np.nan] * len(part)))]
            part["category"] = part["verdict"].map(verdict.category)
            frames.append(part)
            held.append(f"{workload} on {kernel}: {held_knobs(part, vary) or 'defaults'}")
    if not frames:
        return skip(MAP_NAME, MAP_TITLE, "no workload varies threads")
    data = pd.concat(frames, ignore_index=True)
    keep = ["pair_id", "machine_label", "kernel", "workload", "row", COLUMN, "workload.dirty_ratio", "speedup",
            "speedup_low", "speedup_high", "model_low", "model_high", "model_checked", "verdict", "category"]
    data = data[[c for c in keep if c in data]]
    panels = list(dict.fromkeys(data["kernel"])) if "kernel" in data else [None]
    rows_all = sorted(data["row"].unique())
    # each panel only the thread counts its kernel ran; widths in proportion, so cells keep one size
    cols = {k: sorted((data[data["kernel"] == k] if k is not None else data)[COLUMN].unique()) for k in panels}
    fig, axes = plt.subplots(1, len(panels), squeeze=False, sharey=True,
                             figsize=(figures.WIDTH, 0.3 * len(rows_all) + 1.4),
                             gridspec_kw={"width_ratios": [max(len(cols[k]), 2) for k in panels]})
    cmap = ListedColormap([COLOURS[c] for c in CATEGORIES])
    for ax, kernel in zip(axes[0], panels):
        sel = data[data["kernel"] == kernel] if kernel is not None else data
        columns = cols[kernel]
        z = np.full((len(rows_all), len(columns)), np.nan)
        records = sel.to_dict("records")
        for r in records:
            z[rows_all.index(r["row"]), columns.index(r[COLUMN])] = CATEGORIES.index(r["category"])
        ax.imshow(np.ma.masked_invalid(z), cmap=cmap, vmin=-0.5, vmax=len(CATEGORIES) - 0.5, aspect="auto")
        for i, j in zip(*np.nonzero(np.isnan(z))):   # not in the sweep: hatched, never a verdict's colour
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor=NOT_RUN_EDGE,
                                   hatch="////", linewidth=0))
        for r in records:
            i, j = rows_all.index(r["row"]), columns.index(r[COLUMN])
            ax.text(j, i, _short(r["speedup"]), ha="center", va="center", fontsize=6)
            if r["model_checked"]:   # outlined: the verdict was checked across the ensemble
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        ax.set_xticks(range(len(columns)), [grid.format_value(c) for c in columns], fontsize=7)
        ax.set_yticks(range(len(rows_all)), rows_all, fontsize=7)
        ax.grid(False)   # the style's grid lines would strike through the numbers
        ax.set_xlabel("threads", fontsize=8)
        ax.set_title(f"kernel {kernel}" if kernel else "", fontsize=8)
    handles = [Patch(facecolor=COLOURS[c], edgecolor="0.5", label=CATEGORY_TEXT[c]) for c in CATEGORIES]
    handles.append(Patch(facecolor="white", edgecolor=NOT_RUN_EDGE, hatch="////", label="not run"))
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=3, frameon=False, fontsize=7)
    caption = (f"Verdict per setting (colour) and speedup strict/relaxed of total cycles per round (number); rows: "
               f"workload and dirty ratio d, columns: threads. A verdict needs the Monte Carlo CI and the "
               f"ensemble's interval beyond the {verdict.THRESHOLD:.0%} practical threshold; outlined cells were re-run "
               f"over the ensemble, the others are judged at the fitted costs only; hatched: not in the sweep. Held fixed: " + "; ".join(held)
               + f"; {machines_note(data)}.")
    return Plot(MAP_NAME, MAP_TITLE, caption, data, fig)


def _label(quantity: str) -> str:
    """A headline's short name: ``speedup uffd_wp_rfc_base_most_threads`` -> ``uffd_wp rfc_base, most threads``."""
    text = quantity.removeprefix("speedup ").replace("_most_threads", ", most threads")
    for kernel in ("rfc_base", "mainline"):
        text = text.replace(f"_{kernel}", f" {kernel}")
    return (text.replace("_remote_write_share_working_set=", ": boundary at working set ")
            .replace("_threads_working_set=", ": boundary at working set ").replace("seed_setting", "seed setting"))


def sensitivity(results) -> Plot:
    table = getattr(results, "sensitivity", pd.DataFrame())
    if table is None or table.empty:
        return skip(SENS_NAME, SENS_TITLE, "no ensemble runs (python -m study ensemble) to attribute the headlines to "
                                          "costs")
    top = (table[table["rank"] <= 3]["parameter"].value_counts().index.tolist())[:8]
    data = table[table["parameter"].isin(top)].copy()
    pivot = data.pivot_table(index="quantity", columns="parameter", values="spearman", aggfunc="first")
    pivot = pivot[[p for p in top if p in pivot.columns]]
    fig, axes = new_figure(1, height=0.3 * len(pivot) + 1.8)
    ax = axes[0][0]
    im = ax.imshow(pivot.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.grid(False)
    for i in range(pivot.shape[0]):
        for j in range(pivot.shape[1]):
            v = pivot.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(v) > 0.6 else "black")
    ax.set_xticks(range(pivot.shape[1]), pivot.columns, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(pivot.shape[0]), [_label(q) for q in pivot.index], fontsize=7)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="Spearman rho", shrink=0.8)
    members = results.members.members if results.members is not None else 0
    caption = (f"Rank correlation (Spearman) between each cost (log) and each headline over the {members} members "
               f"of the ensemble, for the costs among the top 3 of some headline (positive: a higher cost raises "
               f"the speedup or moves the boundary up). The first-order Sobol index of every cost for every headline, "
               f"estimated from the same members, is in sensitivity.csv.")
    return Plot(SENS_NAME, SENS_TITLE, caption, data, fig)
