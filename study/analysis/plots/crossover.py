"""The crossover heatmap: speedup over a two-knob grid with its 1.0 contour."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import seaborn as sns

from study.analysis import grid
from study.analysis.plots.common import Plot, machines_note, new_figure, skip
from study.analysis.results import Results

NAME, TITLE = "crossover", "Where relaxed stops winning"


def plot(results: Results) -> Plot:
    grids = {key: value for key, value in sorted(results.crossover.grids.items()) if value[1] is not None}
    if not grids:
        return skip(NAME, TITLE, "no workload varies two crossover knobs (e.g. remote_write_share x working_set)")
    frames = []
    for (machine, workload), (x, y, part) in grids.items():
        frame = part[["pair_id", "machine_label", "workload", x, y, "speedup", "speedup_low", "speedup_high",
                      "p_holm", "verdict"]].rename(columns={x: "x_value", y: "y_value"})
        frame.insert(3, "x", x)
        frame.insert(4, "y", y)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    fig, axes = new_figure(len(grids), height=3.4)
    for ax, ((machine, workload), (x, y, _)) in zip(axes[0], grids.items()):
        sel = data[(data["workload"] == workload) & (data["machine_label"] == machine)]
        table = sel.pivot_table(index="y_value", columns="x_value", values="speedup", aggfunc="first", dropna=False)
        table = table.sort_index(ascending=False)
        signif = sel.pivot_table(index="y_value", columns="x_value", values="p_holm", aggfunc="first",
                                 dropna=False).reindex_like(table)
        annot = np.vectorize(lambda s, p: "" if not np.isfinite(s) else f"{s:.2f}" + ("" if p < 0.05 else "*"))(
            table.to_numpy(float), signif.to_numpy(float))
        logs = np.log2(table.astype(float))
        span = max(float(np.nanmax(np.abs(logs.to_numpy()))), 0.05)
        with warnings.catch_warnings():  # seaborn's own use of a deprecated colormap call
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            sns.heatmap(logs, ax=ax, cmap="RdBu", center=0.0, vmin=-span, vmax=span, annot=annot, fmt="",
                        annot_kws={"fontsize": 7}, cbar_kws={"label": "log2(strict / relaxed)"},
                        xticklabels=[grid.format_value(v) for v in table.columns],
                        yticklabels=[grid.format_value(v) for v in table.index])
        z = np.ma.masked_invalid(logs.to_numpy(float))
        if min(z.shape) >= 2 and z.min() < 0 < z.max():
            gx, gy = np.meshgrid(np.arange(z.shape[1]) + 0.5, np.arange(z.shape[0]) + 0.5)
            ax.contour(gx, gy, z, levels=[0.0], colors="k", linewidths=1.5)
        ax.set_xlabel(x.split(".", 1)[1])
        ax.set_ylabel(y.split(".", 1)[1])
        ax.set_title(workload)
    caption = ("Speedup strict/relaxed of total cycles per round over the crossover grid (blue: relaxed faster, "
               "red: slower); the black line is the 1.0 contour; * marks settings not significant after Holm's "
               f"correction; other knobs held at one value; {machines_note(data)}.")
    return Plot(NAME, TITLE, caption, data, fig)
