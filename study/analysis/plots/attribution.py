"""Per-patch attribution: each RFC patch's share of relaxed's gain, with CIs."""

from __future__ import annotations

import numpy as np

from study.analysis import figures, schema
from study.analysis.plots.common import Plot, machines_note, new_figure, skip
from study.analysis.results import Results
from study.analysis.series import FIGURES

NAME = "attribution"
TITLE = FIGURES[NAME].title


def plot(results: Results) -> Plot:
    data = results.attribution
    if data.empty:
        return skip(NAME, TITLE, "the sweep has no ablations of relaxed (one RFC switch off) where relaxed wins")
    idle = data[~data["acts"].astype(bool)] if "acts" in data else data.iloc[0:0]
    data = data[data["acts"].astype(bool)] if "acts" in data else data
    if data.empty:
        return skip(NAME, TITLE, "no RFC patch switch changes anything in the ablated settings where relaxed wins")
    data = data.sort_values(["workload", "machine_label"], kind="stable").reset_index(drop=True)
    keys = list(data[["machine_label", "workload"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes = new_figure(len(keys), height=2.8, sharey=True)
    meaning = results.sweep.meaning
    order = list(meaning.ideas) + [d for d in data["idea"].unique() if d not in meaning.ideas]
    colours = figures.role_colors(meaning.ideas)
    for ax, (machine, workload) in zip(axes[0], keys):
        sel = data[(data["machine_label"] == machine) & (data["workload"] == workload)].set_index("idea")
        ideas = [i for i in order if i in sel.index]
        y = np.arange(len(ideas))
        share = sel.loc[ideas, "share"].to_numpy(float)
        err = np.vstack([share - sel.loc[ideas, "share_low"].to_numpy(float),
                         sel.loc[ideas, "share_high"].to_numpy(float) - share])
        colors = [colours.get(schema.ablation_role(i), "0.6") for i in ideas]
        ax.barh(y, share, xerr=np.clip(np.nan_to_num(err), 0, None), color=colors, capsize=3)
        ax.set_yticks(y, [f"{meaning.patch_label(i)}, {int(sel.loc[i, 'settings'])} settings"
                          if meaning.switch(i) else i for i in ideas], fontsize=6.5)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.invert_yaxis()
        ax.set_title(f"{workload}", fontsize=8)
        ax.set_xlabel("share of the gain")
    none = "; ".join(f"{w}: " + ", ".join(meaning.patch_label(i) for i in g["idea"])
                     for w, g in idle.groupby("workload", sort=True))
    caption = ("What switching each RFC patch off gives back, as a share of strict minus relaxed total cycles per "
               "round, pooled for each patch over the settings where relaxed wins AND the patch can act (switching "
               "it off changes the run: not merged in the kernel, and reached by the workload; the count is beside "
               "each patch); bars: 95% paired-bootstrap CIs. "
               + (f"Patches that act in none of those settings (not shown): {none}. " if none else "")
               + f"{machines_note(data)}.")
    return Plot(NAME, TITLE, caption, data, fig)
