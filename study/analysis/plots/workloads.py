"""Each workload's own figures: its panel (its calls along its main knob) and, where it declares
one, its strict-share prediction against the dirty ratio.  What a workload's figures show comes
from its description in the sweep's manifest (study.workloads.spec: PANEL,
PREDICTED_STRICT_SHARE)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from study.analysis import figures, grid, schema
from study.analysis.plots.common import Plot, held_knobs, legend_below, lines_with_ci, long_metrics, machines_note, new_figure, skip
from study.analysis.results import Results
from study.analysis.series import FIGURES
from study.results import metrics

DIRTY, PAGES = "workload.dirty_ratio", "workload.pages"
DIRTY_NAME = "dirty_ratio"


def predicted_strict_share(dirty_ratio, pages):
    """Under relaxed, a write-protect goes strict iff one of its k pages is dirty: 1-(1-d)^k."""
    return 1.0 - (1.0 - np.asarray(dirty_ratio, float)) ** np.asarray(pages, float)


def _predicting(results: Results):
    """(workload, label, its relaxed cells) of the first workload that declares a strict-share
    prediction and varies the dirty ratio under relaxed, or None."""
    cells = results.cells
    for name, desc in sorted(results.sweep.meaning.workloads.items()):
        label = desc.get("predicted_strict_share")
        if not label:
            continue
        share = metrics.strict_share(label)
        rows = cells[(cells["workload"] == name) & (cells["role"] == schema.ROLE_RELAXED)]
        if not rows.empty and rows[DIRTY].nunique() >= 2 and f"{share}.mean" in rows.columns:
            # one machine and kernel: the points of two would sit on each other
            return name, label, grid.slice_for(rows, [DIRTY, PAGES], hold=("machine_label",))
    return None


def dirty_ratio_data(results: Results) -> pd.DataFrame:
    """Observed strict share of the relaxed write-protect vs the 1-(1-d)^k prediction."""
    found = _predicting(results)
    if found is None:
        return pd.DataFrame()
    workload, label, part = found
    data = long_metrics(part, [metrics.strict_share(label)], ["cell_id", "pair_id", "machine_label", "workload", "role",
                                                             DIRTY, PAGES])
    data = data.rename(columns={"mean": "share"})
    data["kind"] = "observed"
    data["predicted"] = predicted_strict_share(data[DIRTY], data[PAGES])
    curve = []
    for k in sorted(data[PAGES].unique()):
        d = np.linspace(0.0, 1.0, 51)
        curve.append(pd.DataFrame({DIRTY: d, PAGES: k, "share": predicted_strict_share(d, k), "kind": "predicted",
                                   "predicted": predicted_strict_share(d, k), "role": schema.ROLE_RELAXED,
                                   "workload": workload, "machine_label": data["machine_label"].iloc[0]}))
    data = pd.concat([data] + curve, ignore_index=True)
    return data.sort_values(["kind", PAGES, DIRTY], kind="stable", ignore_index=True)


def dirty_ratio(results: Results) -> Plot:
    name, title = DIRTY_NAME, FIGURES[DIRTY_NAME].title
    data = dirty_ratio_data(results)
    if data.empty:
        return skip(name, title, "no workload with a strict-share prediction varies workload.dirty_ratio under relaxed")
    workload, label, part = _predicting(results)
    meaning = results.sweep.meaning
    title = f"{meaning.workloads[workload].get('title') or workload}: strict write-protects vs dirty ratio"
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
    ax.set_xlabel(f"dirty ratio d ({meaning.knob(DIRTY, workload).get('doc', 'the share of dirty pages')})"[:90])
    ax.set_ylabel("share of write-protects that were strict")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="lower right")
    obs = data[data["kind"] == "observed"]
    worst = float((obs["share"] - obs["predicted"]).abs().max())
    caption = (f"Share of {meaning.call_text(label)} calls of {workload} that needed a strict shootdown under "
               "relaxed, against the dirty ratio; points: model with 95% CI, dashed: the prediction 1-(1-d)^k for a "
               f"range of k pages (largest gap {worst:.3f}). Held fixed: {held_knobs(part, [DIRTY, PAGES])}; "
               f"{machines_note(obs)}.")
    return Plot(name, title, caption, data, fig)


def workload_panel(results: Results, workload: str, panel: dict) -> Plot:
    """Latencies and total cycles of one workload along its main knob, strict vs relaxed,
    with the ablation of the idea that matters most for it (its PANEL)."""
    name, title = f"{workload}_panel", f"{workload}: latencies and cycles per round"
    x_pref, wanted, idea = tuple(panel["x"]), tuple(panel["metrics"]), panel["idea"]
    roles = [schema.ROLE_STRICT, schema.ROLE_RELAXED, schema.ablation_role(idea)]
    cells = results.cells
    cells = cells[(cells["workload"] == workload) & cells["role"].isin(roles)]
    varied = schema.varied_knobs(cells)
    x = next((k for k in x_pref if k in varied), None)
    if cells.empty or x is None:
        return skip(name, title, f"the sweep does not vary {' or '.join(x_pref)} for {workload}")
    part = grid.slice_for(cells, [x])
    present = [m for m in wanted if f"{m}.mean" in part.columns and part[f"{m}.mean"].notna().any()]
    data = long_metrics(part, present, ["cell_id", "pair_id", "machine_label", "workload", "role", x])
    fig, axes = new_figure(len(present), height=2.8)
    colours = figures.role_colors(results.sweep.meaning.ideas)
    for ax, metric in zip(axes[0], present):
        lines_with_ci(ax, data[data["metric"] == metric], x, "role", colours, order=roles)
        ax.set_title(metric)
        ax.set_xlabel(x.split(".", 1)[1])
        ax.set_ylabel("cycles")
    legend_below(fig, axes, "policy")
    fixed = grid.setting_text(part.iloc[0], [k for k in schema.knob_columns(part) if k != x])
    caption = (f"{workload} along {x.split('.', 1)[1]} ({fixed}): mean cycles per call and per round with 95% CIs, "
               f"strict, relaxed and relaxed without {idea}; {machines_note(data)}.")
    data = data.rename(columns={x: "x_value"}).assign(x=x)
    return Plot(name, title, caption, data.sort_values(["metric", "role", "x_value"], kind="stable"), fig)


def panels(results: Results) -> list[Plot]:
    """One panel per workload of the sweep that declares one."""
    return [workload_panel(results, name, desc["panel"])
            for name, desc in sorted(results.sweep.meaning.workloads.items()) if desc.get("panel")]
