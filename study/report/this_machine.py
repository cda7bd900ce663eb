"""The report's "This machine" section: the host's measurement beside the model fitted to it.

Reads ``<out>/analysis/this_machine*.{json,csv}`` (``python -m study analyze --measure DIR``);
says so when no measurement was given or the machine was not calibrated yet.
"""

from __future__ import annotations

import json

import pandas as pd

from study.report import numbers as fmt
from study.report.doc import Block, Items, Note, Para, Table
from study.report.inputs import Inputs, _read_csv



def _load(inputs: Inputs):
    path = inputs.path / "this_machine.json"
    if not path.is_file():
        return None, pd.DataFrame(), pd.DataFrame()
    summary = json.loads(path.read_text())
    cells = _read_csv(inputs.path / "this_machine_cells.csv")
    pred_path = inputs.path / "this_machine.csv"
    pred = _read_csv(pred_path) if pred_path.is_file() else pd.DataFrame()
    return summary, cells, pred


def _host_text(s: dict) -> str:
    h = s["host"]
    virt = (f"a virtual machine ({h.get('hypervisor_vendor') or 'hypervisor flag set'}"
            f"{', paravirtual remote TLB flush' if h.get('pv_tlb_flush') else ''}"
            f"{', paravirtual IPIs' if h.get('pv_ipi') else ''})") if h.get("hypervisor") else "bare metal"
    apic = h.get("apic_routing") or ("x2APIC" if h.get("x2apic") else "xAPIC")
    return (f"Host `{h.get('host')}`: {h.get('cpu_model')}, kernel {h.get('kernel_release')}, "
            f"{s.get('online_cpus')} online CPUs ({h.get('sockets')} socket(s) \u00d7 {h.get('cores_per_socket')} "
            f"core(s) \u00d7 {h.get('smt')} SMT), {virt}; APIC {apic}; PTI {'on' if h.get('pti_on') else 'off'} "
            f"(meltdown: {h.get('pti')}); TSC {fmt.num((h.get('tsc_hz') or 0) / 1e6)} MHz. Load average before "
            f"{s.get('loadavg_before')} and after {s.get('loadavg_after')}; {s.get('cells')} cells, "
            f"{s['measure'].get('trials')} trials of {s['measure'].get('rounds')} rounds each.")


def section(inputs: Inputs) -> list[Block]:
    summary, cells, pred = _load(inputs)
    if summary is None:
        return [Para("No measurement of a real machine was given. `python -m study measure` runs the workloads on "
                     "the running kernel, `python -m study calibrate --from outputs/measure/<host>` fits a machine "
                     "to it, and `python -m study analyze --measure outputs/measure/<host>` brings it here.")]
    calls = summary.get("calls", {})   # label -> the call in words (the measured workloads' own)
    blocks: list[Block] = [Para(_host_text(summary))]
    if summary["host"].get("hypervisor"):
        blocks.append(Note("This is a virtual machine: an IPI is a VM exit on the sender and an injected interrupt "
                           "on the target, so a shootdown costs far more than on bare metal; with the paravirtual "
                           "remote flush a preempted vCPU gets a flag instead of an IPI. Its costs are its own and "
                           "say nothing about the hardware underneath."))
    if summary.get("busy_warning"):
        blocks.append(Note("The machine was busy while measuring (load average above the configured bound): other "
                           "processes took CPUs from the benchmark's threads, which lowers the measured shootdowns "
                           "per call of the busy cells and adds outliers."))
    if pred.empty:
        rows = [[r.cell, calls.get(r.label, r.label), fmt.num(r.mean), fmt.interval(r.ci_low, r.ci_high),
                 fmt.num(r.median), fmt.num(r.p99), fmt.num(r.tlb_per_call, 3)] for r in cells.itertuples()]
        blocks.append(Table(["cell", "call", "cycles/call", "95% CI", "median", "p99", "shootdowns/call"], rows,
                            caption="Measured cells (the machine is not calibrated yet: run "
                                    "`python -m study calibrate --from` for predictions).",
                            align=["l", "l", "r", "r", "r", "r", "r"]))
        return blocks

    cal = summary.get("calibration") or {}
    rows = [[r.cell, calls.get(r.label, r.label), r.role, fmt.num(r.measured),
             fmt.interval(r.measured_ci_low, r.measured_ci_high), fmt.num(r.predicted),
             fmt.percent(r.error, signed=True), fmt.percent(r.error_all_busy, signed=True)]
            for r in pred.itertuples()]
    blocks.append(Table(["cell", "call", "role", "measured", "95% CI", "predicted", "error", "error, always on CPU"],
                        rows,
                        caption="Mean cycles per call, measured against the fitted machine (strict policy: the host "
                                "runs mainline). `fit` cells trained the costs; `held-out` cells did not. A cell "
                                "with busy other threads runs with their on-CPU share measured at the flushes "
                                "(the workload's on_cpu_share); \u201cerror, always on CPU\u201d is the same "
                                "machine with them always on their CPUs.",
                        align=["l", "l", "l", "r", "r", "r", "r", "r"]))
    items = []
    for role, text in (("fit", "Training cells"), ("held-out", "Held-out cells")):
        s = (cal.get("summary") or {}).get(role)
        if s:
            items.append(f"{text}: {s['targets']} calls, median |error| {fmt.percent(s['median_abs_error'])}, "
                         f"worst {fmt.percent(s['worst_abs_error'])}.")
    met = (cal.get("summary") or {}).get("held_out_target_met")
    if met is not None:
        items.append(f"Held-out target (median \u2264 10%, worst \u2264 25%): {'met' if met else 'not met'}.")
    if items:
        blocks.append(Items(items))

    per_cell = pred.drop_duplicates("cell")
    rows = [[r.cell, fmt.num(getattr(r, "on_cpu_measured", float("nan")), 3), fmt.num(r.shootdowns_measured, 3),
             fmt.num(r.shootdowns_model, 3), fmt.num(r.relaxed_shootdowns_model, 3)] for r in per_cell.itertuples()]
    blocks.append(Table(["cell", "on-CPU share (measured)", "measured", "modelled (strict)", "modelled (relaxed)"],
                        rows,
                        caption="Shootdowns per flushing call: measured from the TLB row of /proc/interrupts, "
                                "predicted by the engine (IPIs sent per call) given the other threads' on-CPU "
                                "share at the flushes (measured by the benchmark's heartbeat, never from the TLB "
                                "row): a thread off its CPU has another mm loaded, and should_flush_tlb() skips it.",
                        align=["l", "r", "r", "r", "r"]))

    rows = [[r.cell, calls.get(r.label, r.label), fmt.num(r.predicted), fmt.num(r.relaxed_predicted),
             fmt.percent(r.relaxed_change, r.relaxed_change_ci_low, r.relaxed_change_ci_high, signed=True),
             fmt.percent(getattr(r, "relaxed_change_fit_sd", float("nan")))]
            for r in pred.itertuples()]
    blocks.append(Table(["cell", "call", "strict (predicted)", "relaxed (predicted)", "change [95% CI]",
                         "\u00b1 fit sd"], rows,
                        caption="What the RFC would change on this machine: the relaxed policy on the fitted "
                                "machine, paired with the strict run over common random numbers. The CI is over "
                                "model replicates; \u201cfit sd\u201d is the fitted costs' own uncertainty (their "
                                "posterior covariance, costs only priors set included) carried to the change.",
                        align=["l", "l", "r", "r", "r", "r"]))
    ident = cal.get("identifiability") or {}
    if ident:
        blocks.append(Para(f"Identifiability: the measurement pins {', '.join(f'`{p}`' for p in ident['pinned']) or 'nothing'}; "
                           f"only the priors set {', '.join(f'`{p}`' for p in ident['prior_only']) or 'nothing'} "
                           f"(posterior/prior sd \u2265 0.5 at {fmt.percent(ident['sigma'], digits=0)} data noise)."))
    flagged = cal.get("flagged_at_bound") or []
    if flagged:
        blocks.append(Note(f"Fitted costs at a bound of their prior range: {', '.join(f'`{p}`' for p in flagged)}."))
    unmodelled = cal.get("unmodelled_facts") or {}
    if unmodelled:
        blocks.append(Para("Host facts recorded but not modelled by the engine yet: "
                           + ", ".join(f"`{k}`={v}" for k, v in unmodelled.items()) + "."))
    return blocks
