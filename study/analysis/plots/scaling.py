"""Scaling with threads and placement: latencies, speedups, where the cycles go, distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from study.analysis import figures, grid, schema
from study.analysis.plots.common import (MAIN_ROLES, Plot, held_knobs, legend_below, lines_with_ci, long_metrics,
                                         machines_note, new_figure, representative_pair, skip)
from study.analysis.results import Results
from study.analysis.series import FIGURES
from study.results import metrics
from study.seed import SEED_WORKLOAD

THREADS, PLACEMENT = "workload.threads", "workload.placement"
PLACEMENT_ORDER = ("smt", "core", "socket")
PART_NAMES = {"initiator_cycles_per_round": "initiator", "other_cycles_per_round": "other threads",
              "stolen_cycles_per_round": "stolen by flush handlers"}


def latency_threads(results: Results) -> Plot:
    """The flushing calls of the seed's workload against threads, one column per placement."""
    name = "latency_threads"
    title = FIGURES[name].title
    workload = SEED_WORKLOAD["name"]
    meaning = results.sweep.meaning
    calls = meaning.workloads.get(workload, {}).get("calls", {})
    labels = [label for label, call in calls.items() if call.get("flushes")]
    cells = results.cells
    cells = cells[(cells["workload"] == workload) & cells["role"].isin(MAIN_ROLES)]
    if cells.empty or cells[THREADS].nunique() < 2 or not labels:
        return skip(name, title, f"the sweep does not vary workload.threads for {workload}")
    part = grid.slice_for(cells, [THREADS, PLACEMENT])
    keep = ["cell_id", "pair_id", "machine_label", "role", THREADS, PLACEMENT]
    wanted = [metrics.latency(label) for label in labels]
    data = long_metrics(part, wanted, keep)
    placements = [p for p in PLACEMENT_ORDER if p in set(data[PLACEMENT])]
    fig, axes = new_figure(len(placements), nrows=len(wanted), height=2.3, sharey="row")
    for r, (label, metric) in enumerate(zip(labels, wanted)):
        for c, placement in enumerate(placements):
            ax = axes[r][c]
            sel = data[(data["metric"] == metric) & (data[PLACEMENT] == placement)]
            lines_with_ci(ax, sel, THREADS, "role", figures.ROLE_COLORS, order=list(MAIN_ROLES))
            ax.set_title(f"placement {placement}" if r == 0 else "")
            ax.set_xlabel("threads")
            ax.set_ylabel(f"{meaning.call_text(label)}\ncycles per call" if c == 0 else "")
    legend_below(fig, axes, "policy")
    caption = (f"Mean cycles per call of {workload}'s flushing calls against the threads of the mm, one column per "
               f"placement of the other threads (bands: 95% CI). Held fixed: {held_knobs(part, [THREADS, PLACEMENT])}; "
               f"{machines_note(data)}.")
    return Plot(name, title, caption, data.sort_values(["metric", PLACEMENT, "role", THREADS], kind="stable"), fig)


def speedup_threads(results: Results) -> Plot:
    name = "speedup_threads"
    title = FIGURES[name].title
    paired = results.paired_main
    if paired.empty or paired[THREADS].nunique() < 2:
        return skip(name, title, "no workload with strict and relaxed cells at more than one thread count")
    frames = []
    for workload, group in paired.groupby("workload", sort=True):
        if group[THREADS].nunique() < 2:
            continue
        frames.append(grid.slice_for(group, [THREADS, PLACEMENT]))
    if not frames:
        return skip(name, title, "no workload varies workload.threads")
    cols = ["pair_id", "machine_label", "workload", THREADS, PLACEMENT, "speedup", "speedup_low", "speedup_high",
            "p_holm", "d_z", "verdict"]
    data = pd.concat(frames, ignore_index=True)[cols]
    workloads = sorted(data["workload"].unique())
    fig, axes = new_figure(len(workloads), height=2.8)
    colors = dict(zip(PLACEMENT_ORDER, sns.color_palette("colorblind", 3)))
    for ax, workload in zip(axes[0], workloads):
        sel = data[data["workload"] == workload]
        lines_with_ci(ax, sel, THREADS, PLACEMENT, colors, y="speedup", low="speedup_low", high="speedup_high",
                      order=list(PLACEMENT_ORDER))
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_title(workload)
        ax.set_xlabel("threads")
        ax.set_ylabel("strict / relaxed, total cycles per round")
    legend_below(fig, axes, "placement")
    held = "; ".join(f"{f['workload'].iloc[0]}: {held_knobs(f, [THREADS, PLACEMENT])}" for f in frames)
    caption = ("Speedup of relaxed over strict (strict/relaxed total cycles per loop iteration, all CPUs; "
               "> 1: relaxed faster) with paired-bootstrap 95% CIs; the dashed line is parity. Held fixed: "
               f"{held}; {machines_note(data)}.")
    return Plot(name, title, caption, data.sort_values(["workload", PLACEMENT, THREADS], kind="stable"), fig)


def cycle_breakdown(results: Results) -> Plot:
    name = "cycle_breakdown"
    title = FIGURES[name].title
    cells = results.cells
    frames = []
    for workload in sorted(cells["workload"].unique()):
        pair = representative_pair(cells, workload)
        if pair is None:
            continue
        part = cells[cells["pair_id"] == pair]
        keep = ["pair_id", "machine_label", "workload", "policy", "role", THREADS, PLACEMENT]
        long = long_metrics(part, list(schema.CYCLE_PARTS), keep)
        long["setting"] = grid.setting_text(part.iloc[0], [THREADS, PLACEMENT])
        long["held"] = held_knobs(part, [])
        frames.append(long)
    if not frames:
        return skip(name, title, "no cells with a strict policy")
    data = pd.concat(frames, ignore_index=True)
    workloads = sorted(data["workload"].unique())
    fig, axes = new_figure(1, nrows=len(workloads), height=1.0 + 0.28 * data["role"].nunique())
    role_order = ([schema.ROLE_STRICT, schema.ROLE_RELAXED]
                  + [schema.ablation_role(i) for i in results.sweep.meaning.ideas] + [schema.ROLE_UNSAFE, schema.ROLE_OTHER])
    for ax, workload in zip(axes[:, 0], workloads):
        sel = data[data["workload"] == workload]
        roles = [r for r in role_order if r in set(sel["role"])]
        left = np.zeros(len(roles))
        for metric in schema.CYCLE_PARTS:
            values = [sel.loc[(sel["role"] == r) & (sel["metric"] == metric), "mean"].sum() for r in roles]
            ax.barh(roles, values, left=left, color=figures.PART_COLORS[metric], label=PART_NAMES[metric])
            left += np.asarray(values)
        ax.invert_yaxis()
        ax.set_title(sel["setting"].iloc[0])
        ax.set_xlabel("cycles per round, all CPUs")
    legend_below(fig, axes)
    caption = ("Cycles of one loop iteration on all CPUs, split into the calling thread's own, the other "
               "threads' own accesses (spurious faults, working-set refills) and the time remote "
               "flush_tlb_func handlers steal; one representative setting per workload, every policy the "
               "sweep ran there. Settings: " + "; ".join(f"{w}: {h}" for w, h in
                                                          data.drop_duplicates("workload")[["workload", "held"]]
                                                          .itertuples(index=False))
               + f"; {machines_note(data)}.")
    return Plot(name, title, caption, data.sort_values(["workload", "role", "metric"], kind="stable"), fig)


QUANTILES = np.linspace(0.0, 1.0, 101)


def latency_ecdf(results: Results) -> Plot:
    name = "latency_ecdf"
    title = FIGURES[name].title
    cells = results.cells
    chosen = []
    for workload in sorted(cells["workload"].unique()):
        pair = representative_pair(cells, workload)
        if pair is not None:
            chosen.append(cells[(cells["pair_id"] == pair) & cells["role"].isin(MAIN_ROLES)])
    if not chosen:
        return skip(name, title, "no cells with a strict policy")
    chosen = pd.concat(chosen, ignore_index=True)
    calls = results.sweep.calls(list(chosen["cell_id"]))
    if calls.empty:
        return skip(name, title, "the sweep stored no per-call samples (calls.parquet) for these cells")
    calls = calls.merge(chosen[["cell_id", "workload", "role", "machine_label"]], on="cell_id")
    rows = []
    for (workload, label, role), group in calls.groupby(["workload", "label", "role"], sort=True):
        q = np.quantile(group["latency"].to_numpy(float), QUANTILES)
        rows += [dict(workload=workload, label=label, role=role, machine_label=group["machine_label"].iloc[0],
                      quantile=p, latency=v, samples=len(group)) for p, v in zip(QUANTILES, q)]
    data = pd.DataFrame(rows)
    panels = list(data[["workload", "label"]].drop_duplicates().itertuples(index=False, name=None))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(ncols, nrows=nrows, height=2.2)
    for ax, (workload, label) in zip(axes.flat, panels):
        sel = data[(data["workload"] == workload) & (data["label"] == label)]
        order = [r for r in MAIN_ROLES if r in set(sel["role"])]
        # relaxed dashed: where both policies pay the same, strict must still show through
        sns.lineplot(data=sel, x="latency", y="quantile", hue="role", hue_order=order, style="role",
                     style_order=order, dashes={schema.ROLE_STRICT: "", schema.ROLE_RELAXED: (4, 2)},
                     palette={r: figures.ROLE_COLORS[r] for r in order}, drawstyle="steps-post", errorbar=None,
                     ax=ax, legend="brief")
        ax.set_title(f"{workload}: {label}")
        ax.set_xlabel("cycles")
        ax.set_ylabel("share of calls")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    legend_below(fig, axes, "policy")
    caption = ("Empirical distribution of the latency of each kind of call (percentiles 0..100 of the "
               "stored per-call samples) in one representative setting per workload; "
               f"{machines_note(data)}.")
    return Plot(name, title, caption, data, fig)
