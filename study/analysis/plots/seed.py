"""The seed table reproduced: the model's mean and CI beside each published number."""

from __future__ import annotations

import numpy as np

from study.analysis import figures
from study.analysis.plots.common import Plot, legend_below, machines_note, new_figure, skip
from study.analysis.results import Results
from study.analysis.series import FIGURES

NAME = "seed_table"
TITLE = FIGURES[NAME].title


def plot(results: Results) -> Plot:
    table = results.seed
    if table.empty:
        return skip(NAME, TITLE, "the sweep has none of the seed's cells (haswell_2s, mprotect_toggle, one page)")
    data = table.copy()
    fig, axes = new_figure(2, height=2.8)
    for ax, call in zip(axes[0], ("PROT_READ", "PROT_READ|PROT_WRITE")):
        part = data[data["call"] == call]
        for k, policy in enumerate(("strict", "relaxed")):
            rows = part[part["policy"] == policy].sort_values("threads")
            if rows.empty:
                continue
            x = rows["threads"].to_numpy(float) + (k - 0.5) * 0.12
            color = figures.ROLE_COLORS[policy]
            mean = rows["model_cycles"].to_numpy(float)
            err = np.vstack([mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean])
            ax.errorbar(x, mean, yerr=np.clip(err, 0, None), fmt="o", color=color, capsize=3, ms=5,
                        label=f"model, {policy} (95% CI)")
            ax.scatter(x, rows["seed_cycles"], marker="D", facecolors="none", edgecolors=color, s=40, zorder=3,
                       label=f"seed, {policy}")
        ax.set_title(f"mprotect({call})")
        ax.set_xticks([1, 2])
        ax.set_xlim(0.5, 2.5)
        ax.set_xlabel("threads in the mm")
        ax.set_ylabel("cycles per call")
        ax.set_ylim(bottom=0)
    legend_below(fig, axes)
    note = machines_note(data)
    caption = ("Model mean cycles per call with 95% CIs (filled) beside the seed's published numbers "
               f"(open diamonds); {note}.")
    return Plot(NAME, TITLE, caption, data, fig)
