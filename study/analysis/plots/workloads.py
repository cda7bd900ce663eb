"""MADV_FREE's dirty-ratio curve and the per-workload panels of uffd_wp and madv_free."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from study.analysis import figures, grid, schema
from study.analysis.plots.common import Plot, held_knobs, legend_below, lines_with_ci, long_metrics, machines_note, new_figure, skip
from study.analysis.results import Results

DIRTY, PAGES, THREADS = "workload.dirty_ratio", "workload.pages", "workload.threads"
SHARE = "strict_share_mprotect_ro"


def predicted_strict_share(dirty_ratio, pages):
    """Under relaxed, a write-protect goes strict iff one of its k pages is dirty: 1-(1-d)^k."""
    return 1.0 - (1.0 - np.asarray(dirty_ratio, float)) ** np.asarray(pages, float)


def dirty_ratio_data(results: Results) -> pd.DataFrame:
    """Observed strict share of the relaxed write-protect vs the 1-(1-d)^k prediction."""
    cells = results.cells
    cells = cells[(cells["workload"] == "madv_free") & (cells["role"] == schema.ROLE_RELAXED)]
    if cells.empty or cells[DIRTY].nunique() < 2 or f"{SHARE}.mean" not in cells.columns:
        return pd.DataFrame()
    part = grid.slice_for(cells, [DIRTY, PAGES])
    data = long_metrics(part, [SHARE], ["cell_id", "pair_id", "machine_label", "role", DIRTY, PAGES])
    data = data.rename(columns={"mean": "share"})
    data["kind"] = "observed"
    data["predicted"] = predicted_strict_share(data[DIRTY], data[PAGES])
    curve = []
    for k in sorted(data[PAGES].unique()):
        d = np.linspace(0.0, 1.0, 51)
        curve.append(pd.DataFrame({DIRTY: d, PAGES: k, "share": predicted_strict_share(d, k), "kind": "predicted",
                                   "predicted": predicted_strict_share(d, k), "role": schema.ROLE_RELAXED,
                                   "machine_label": data["machine_label"].iloc[0]}))
    data = pd.concat([data] + curve, ignore_index=True)
    return data.sort_values(["kind", PAGES, DIRTY], kind="stable", ignore_index=True)


def _relaxed_madv_slice(results: Results) -> pd.DataFrame:
    cells = results.cells
    cells = cells[(cells["workload"] == "madv_free") & (cells["role"] == schema.ROLE_RELAXED)]
    return grid.slice_for(cells, [DIRTY, PAGES])


def dirty_ratio(results: Results) -> Plot:
    name, title = "dirty_ratio", "MADV_FREE: strict write-protects vs dirty ratio"
    data = dirty_ratio_data(results)
    if data.empty:
        return skip(name, title, "the sweep does not vary workload.dirty_ratio for madv_free under relaxed")
    fig, axes = new_figure(1, height=3.0)
    ax = axes[0][0]
    colors = dict(zip(sorted(data[PAGES].unique()), sns.color_palette("colorblind", 8)))
    for k, color in colors.items():
        pred = data[(data["kind"] == "predicted") & (data[PAGES] == k)]
        obs = data[(data["kind"] == "observed") & (data[PAGES] == k)]
        ax.plot(pred[DIRTY], pred["share"], ls="--", color=color, lw=1, label=f"1-(1-d)^{grid.format_value(k)}")
        err = np.vstack([obs["share"] - obs["ci_low"], obs["ci_high"] - obs["share"]]).astype(float)
        ax.errorbar(obs[DIRTY], obs["share"], yerr=np.clip(np.nan_to_num(err), 0, None), fmt="o", color=color,
                    capsize=3, ms=4, label=f"model, {grid.format_value(k)} pages")
    ax.set_xlabel("dirty ratio d (chance a page is rewritten after MADV_FREE)")
    ax.set_ylabel("share of write-protects that were strict")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="lower right")
    obs = data[data["kind"] == "observed"]
    worst = float((obs["share"] - obs["predicted"]).abs().max())
    caption = ("Share of mprotect(PROT_READ) calls that needed a strict shootdown under relaxed, against the "
               "dirty ratio; points: model with 95% CI, dashed: the prediction 1-(1-d)^k for a range of k pages "
               f"(largest gap {worst:.3f}). Held fixed: {held_knobs(_relaxed_madv_slice(results), [DIRTY, PAGES])}; "
               f"{machines_note(obs)}.")
    return Plot(name, title, caption, data, fig)


def workload_panel(results: Results, workload: str, x_pref: tuple[str, ...], metrics: tuple[str, ...],
                   idea: str) -> Plot:
    """Latencies and total cycles of one workload along its main knob, strict vs relaxed,
    with the ablation of the idea that matters most for it."""
    name, title = f"{workload}_panel", f"{workload}: latencies and cycles per round"
    roles = [schema.ROLE_STRICT, schema.ROLE_RELAXED, schema.ablation_role(idea)]
    cells = results.cells
    cells = cells[(cells["workload"] == workload) & cells["role"].isin(roles)]
    varied = schema.varied_knobs(cells)
    x = next((k for k in x_pref if k in varied), None)
    if cells.empty or x is None:
        return skip(name, title, f"the sweep does not vary {' or '.join(x_pref)} for {workload}")
    part = grid.slice_for(cells, [x])
    present = [m for m in metrics if f"{m}.mean" in part.columns and part[f"{m}.mean"].notna().any()]
    data = long_metrics(part, present, ["cell_id", "pair_id", "machine_label", "workload", "role", x])
    fig, axes = new_figure(len(present), height=2.8)
    for ax, metric in zip(axes[0], present):
        lines_with_ci(ax, data[data["metric"] == metric], x, "role", figures.ROLE_COLORS, order=roles)
        ax.set_title(metric)
        ax.set_xlabel(x.split(".", 1)[1])
        ax.set_ylabel("cycles")
    legend_below(fig, axes, "policy")
    fixed = grid.setting_text(part.iloc[0], [k for k in schema.WORKLOAD_KNOBS if k != x])
    caption = (f"{workload} along {x.split('.', 1)[1]} ({fixed}): mean cycles per call and per round with 95% CIs, "
               f"strict, relaxed and relaxed without {idea}; {machines_note(data)}.")
    return Plot(name, title, caption, data.sort_values(["metric", "role", x], kind="stable"), fig)


def uffd_wp(results: Results) -> Plot:
    return workload_panel(results, "uffd_wp", (THREADS, "workload.write_rate", "workload.writes_per_round", PAGES),
                          ("lat_uffd_protect", "lat_uffd_resolve", schema.MAIN_METRIC), "uffd_unprotect_mkdirty")


def madv_free(results: Results) -> Plot:
    return workload_panel(results, "madv_free", (DIRTY, PAGES, THREADS),
                          ("lat_madv_free", "lat_mprotect_ro", schema.MAIN_METRIC), "no_flush_clean_wrprotect")
