"""This machine: a measurement directory (``python -m study measure``) beside its fitted model.

``write(measure_dir, out)`` checks that the measured cells table reads in the sweep's
format (the columns of study/analysis/schema.py), and writes into ``<out>/analysis/``:

* ``this_machine_cells.csv``: every measured cell, its calls' mean cycles with CI, median,
  p99, and TLB shootdowns / function-call IPIs per flushing call (the measured table), and
  when the measurement traced the kernel's events, each ``trace_<role>_<kind>`` (events per
  flushing call, the mean over trials) and ``measure_trace`` (``ok`` or the trials that lost events);
* ``this_machine.csv``: measured against predicted per (cell, call), fit or held-out,
  shootdowns per call measured against modelled, and the relaxed policy's predicted change
  (copied from ``calibrate --from``'s output; absent until the machine is calibrated);
* ``this_machine_mechanism.csv``: the kernel's own account of each traced cell, event kind
  by event kind, against the engine's prediction under strict (copied from ``calibrate
  --from``'s ``mechanism.csv``: study.calibration.mechanism; absent until calibrated);
* ``this_machine_refill.{csv,svg}``: the refill curve (cycles a received flush costs a thread
  against the N pages it keeps hot, partial and full shootdowns) with the lines fitted to it
  (study.calibration.refill; absent until calibrated or without refill cells);
* ``this_machine.json``: the host's facts, the load average, the calibration's summary and
  identifiability.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from study.analysis import schema
from study.analysis.load import _require, prepare_cells
from study.errors import ConfigError
from study.results import tables
from study.results.files import DirLock, recover_swap, sha256_file, swap_directory
STAT_COLUMNS = ("mean", "ci_low", "ci_high", "median", "p99")
HOST_KEYS = ("host", "kernel_release", "cpu_model", "sockets", "cores_per_socket", "smt", "pti", "pti_on",
             "hypervisor", "hypervisor_vendor", "x2apic", "pv_tlb_flush", "pv_ipi", "apic_routing", "tsc_hz",
             "dmesg_readable")


def load_cells(measure_dir: Path) -> tuple[pd.DataFrame, dict]:
    """The measured cells (checked against the sweep's input contract) and the manifest."""
    measure_dir = Path(measure_dir)
    found = tables.read(measure_dir, "--measure", "run `python -m study measure`")
    _require(found.cells, schema.CELL_REQUIRED + ("measure_cell",), measure_dir / "cells.parquet")
    return prepare_cells(found.cells, found.roles()), found.manifest


def flush_labels(manifest: dict) -> list[str]:
    """The flushing calls of the measured workloads (the measurement's manifest), first-seen order."""
    calls = schema.Meaning(manifest.get("meaning", {})).calls()
    return [label for label, call in calls.items() if call.get("flushes")]


def cells_frame(cells: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One row per (cell, call) with the measured statistics."""
    rows = []
    traced = [c[:-len(".mean")] for c in cells.columns if c.startswith("trace_") and c.endswith(".mean")]
    for _, row in cells.iterrows():
        for label in labels:
            if f"lat_{label}.mean" not in row or pd.isna(row[f"lat_{label}.mean"]):
                continue
            rows.append({"cell": row["measure_cell"], "workload": row["workload"], "threads": row["workload.threads"],
                         "others": row.get("measure_others"), "pages": row["workload.pages"], "label": label,
                         **{s: row[f"lat_{label}.{s}"] for s in STAT_COLUMNS},
                         "trials": row[f"lat_{label}.n"],
                         "tlb_per_call": row.get("tlb_per_call.mean"), "cal_per_call": row.get("cal_per_call.mean"),
                         "outlier_share": row.get("outlier_share.mean"),
                         **({"measure_trace": row.get("measure_trace")} if "measure_trace" in row else {}),
                         **{name: row[f"{name}.mean"] for name in traced}})
    return pd.DataFrame(rows)


def write_into(measure_dir: Path, target: Path) -> Path:
    """Write the this-machine tables into the analysis directory being built, ``target``
    (inside the analysis's whole-set swap, so they are hashed with the rest); returns the
    JSON's path."""
    measure_dir = Path(measure_dir)
    cells, manifest = load_cells(measure_dir)
    cells_frame(cells, flush_labels(manifest)).to_csv(target / "this_machine_cells.csv", index=False)
    calibration_path = measure_dir / "calibration.json"
    calibration = json.loads(calibration_path.read_text()) if calibration_path.is_file() else None
    for name, copy in (("this_machine.csv", "this_machine.csv"), ("mechanism.csv", "this_machine_mechanism.csv")):
        source = measure_dir / name
        if source.is_file() and calibration is not None:
            pd.read_csv(source).to_csv(target / copy, index=False)
        else:
            (target / copy).unlink(missing_ok=True)
    refill = (calibration or {}).get("refill")
    if refill and refill.get("points"):
        refill_figure(refill, target)
    else:
        for name in ("this_machine_refill.csv", "this_machine_refill.svg"):
            (target / name).unlink(missing_ok=True)
    host = manifest.get("host", {})
    summary = {
        "measurement": str(measure_dir),
        "host": {k: host.get(k) for k in HOST_KEYS},
        "online_cpus": len(host.get("cpus", [])),
        "loadavg_before": manifest.get("loadavg_before"), "loadavg_after": manifest.get("loadavg_after"),
        "busy_warning": manifest.get("busy_warning"), "wall_seconds": manifest.get("wall_seconds"),
        "timer_overhead_cycles": manifest.get("timer_overhead_cycles"),
        "userfaultfd": manifest.get("userfaultfd"), "skipped": manifest.get("skipped", {}),
        "measure": {k: manifest.get("measure", {}).get(k) for k in ("name", "trials", "rounds", "nice", "outlier_us")},
        "cells": int(len(cells)),
        "calls": {label: schema.Meaning(manifest.get("meaning", {})).call_text(label) for label in flush_labels(manifest)},
        "calibration": None if calibration is None else {
            k: calibration.get(k) for k in ("machine_file", "values", "flagged_at_bound", "train", "summary",
                                            "identifiability", "unmodelled_facts", "kernel", "refill",
                                            "pinned_by_refill")},
    }
    path = target / "this_machine.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return path


def refill_figure(refill: dict, target: Path) -> None:
    """The refill curve: per flush kind, the cycles lost per received flush (95% CI) against the
    hot entries N, with the line fitted below the STLB's reach; the data beside it as CSV."""
    import matplotlib.pyplot as plt
    import numpy as np

    from study.analysis import figures

    data = pd.DataFrame(refill["points"])
    figures.save_csv(data, target / "this_machine_refill.csv")
    with figures.style():
        fig, ax = plt.subplots(figsize=(figures.WIDTH * 0.7, 2.8))
        colours = {"partial": "#4575b4", "full": "#d73027"}
        for kind, part in data.groupby("flush", sort=True):
            err = np.vstack([part["lost"] - part["lost_low"], part["lost_high"] - part["lost"]]).astype(float)
            label = "1-page (partial) shootdown" if kind == "partial" else "64-page (full) shootdown"
            ax.errorbar(part["entries"], part["lost"], yerr=np.clip(np.nan_to_num(err), 0, None), fmt="o",
                        color=colours.get(kind, "0.4"), capsize=3, ms=4, label=label)
            fitted = refill.get(kind)
            if fitted:
                used = part["entries"][part["entries"] <= refill["stlb_entries"]]
                xs = np.geomspace(used.min(), used.max(), 50)   # a line, drawn on a log axis
                ax.plot(xs, fitted["intercept"] + fitted["slope"] * xs, color=colours.get(kind, "0.4"), lw=1,
                        ls="--", label=f"fit: {fitted['slope']:.1f} cycles per entry")
        ax.axvline(refill["stlb_entries"], color="0.5", lw=0.8, ls=":", label="stlb_entries")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("pages the other thread keeps hot (N)")
        ax.set_ylabel("cycles lost per flush received")
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        figures.save_svg(fig, target / "this_machine_refill.svg")
        plt.close(fig)


def write_alone(measure_dir: Path, out: Path) -> Path:
    """An analysis of the measurement only (no sweep): ``analysis.json`` with no sweep tables.

    The report then renders every section, the sweep's saying that it has no cells, and the
    "This machine" section in full.  The analysis directory is swapped in whole, as
    ``analyze`` does.
    """
    target = Path(out) / "analysis"
    load_cells(measure_dir)            # fail before touching anything

    def build(staging: Path) -> None:
        (staging / "plots").mkdir(parents=True)
        write_into(measure_dir, staging)
        summary = {"format_version": 1, "sweep": None, "manifest": {}, "method": {}, "machines": [],
                   "overview": {}, "plots": [], "tables": {}, "where": {}, "metrics": {},
                   "note": f"no sweep analyzed; the measurement {measure_dir} only"}
        summary["files"] = {p.relative_to(staging).as_posix(): sha256_file(p)
                            for p in sorted(staging.rglob("*")) if p.is_file()}
        (staging / "analysis.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    with DirLock(target, "--out"):
        recover_swap(target)
        swap_directory(target, build)
    return target
