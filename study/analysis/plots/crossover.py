"""The crossover heatmap: speedup over a two-knob grid with its 1.0 contour."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from study.analysis import grid
from study.analysis.plots.common import Plot, held_knobs, machines_note, new_figure, skip
from study.analysis.results import Results
from study.analysis.series import FIGURES

NAME = "crossover"
TITLE = FIGURES[NAME].title


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
    # one colour scale for every panel (symmetric in log2 around 1.0), one colour bar
    logs_all = np.log2(data["speedup"].astype(float))
    span = max(float(np.nanmax(np.abs(logs_all.to_numpy()))) if logs_all.notna().any() else 0.05, 0.05)
    # one panel per row: side by side, panels with many columns would run their numbers together
    fig, axes = new_figure(1, nrows=len(grids), height=2.3)
    held = []
    for ax, ((machine, workload), (x, y, part)) in zip(axes[:, 0], grids.items()):
        held.append(f"{workload}: {held_knobs(part, [x, y])}")
        sel = data[(data["workload"] == workload) & (data["machine_label"] == machine)]
        table = sel.pivot_table(index="y_value", columns="x_value", values="speedup", aggfunc="first", dropna=False)
        table = table.sort_index(ascending=False)
        signif = sel.pivot_table(index="y_value", columns="x_value", values="p_holm", aggfunc="first",
                                 dropna=False).reindex_like(table)
        annot = np.vectorize(lambda s, p: "" if not np.isfinite(s) else f"{s:.2f}" + ("" if p < 0.05 else "*"))(
            table.to_numpy(float), signif.to_numpy(float))
        logs = np.log2(table.astype(float))
        with warnings.catch_warnings():  # seaborn's own use of a deprecated colormap call
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            sns.heatmap(logs, ax=ax, cmap="RdBu", center=0.0, vmin=-span, vmax=span, annot=annot, fmt="",
                        annot_kws={"fontsize": 6.5}, cbar=False, linewidths=0.4, linecolor="white",
                        xticklabels=[grid.format_value(v) for v in table.columns],
                        yticklabels=[grid.format_value(v) for v in table.index])
        ax.grid(False)
        ax.tick_params(axis="x", labelrotation=0, labelsize=7)
        ax.tick_params(axis="y", labelrotation=0, labelsize=7)
        z = np.ma.masked_invalid(logs.to_numpy(float))
        if min(z.shape) >= 2 and z.min() < 0 < z.max():
            gx, gy = np.meshgrid(np.arange(z.shape[1]) + 0.5, np.arange(z.shape[0]) + 0.5)
            ax.contour(gx, gy, z, levels=[0.0], colors="k", linewidths=2.0, linestyles="--")
        ax.set_xlabel(x.split(".", 1)[1].replace("_", " "), fontsize=8)
        ax.set_ylabel(y.split(".", 1)[1].replace("_", " "), fontsize=8)
        ax.set_title(f"{workload} ({machine})", fontsize=8, loc="left")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(-span, span), cmap="RdBu")
    cax = fig.add_axes((0.92, 0.3, 0.015, 0.4))
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label("log2(strict / relaxed)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    caption = ("Speedup strict/relaxed of total cycles per round over the crossover grid (blue: relaxed faster, "
               "red: slower; one colour scale for all panels); the dashed black line is the 1.0 contour; * marks "
               "settings not significant after Holm's correction. Held fixed: " + "; ".join(held)
               + f"; {machines_note(data)}.")
    return Plot(NAME, TITLE, caption, data, fig, tight=False)
