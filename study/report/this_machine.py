"""The report's "This machine" section: the host's measurement beside the model fitted to it.

Reads ``<out>/analysis/this_machine*.{json,csv}`` (``python -m study analyze --measure DIR``);
says so when no measurement was given or the machine was not calibrated yet.
"""

from __future__ import annotations

import json

import pandas as pd

from study.report import numbers as fmt
from study.report.doc import Block, Figure, Items, Note, Para, Table
from study.report.inputs import Inputs, _read_csv



def _load(inputs: Inputs):
    path = inputs.path / "this_machine.json"
    if not path.is_file():
        return None, pd.DataFrame(), pd.DataFrame()
    summary = json.loads(path.read_text())
    cells = _read_csv(inputs.path / "this_machine_cells.csv")
    pred_path = inputs.path / "this_machine.csv"
    pred = _read_csv(pred_path) if pred_path.is_file() else pd.DataFrame()
    mech_path = inputs.path / "this_machine_mechanism.csv"
    summary["mechanism_table"] = _read_csv(mech_path) if mech_path.is_file() else pd.DataFrame()
    svg = inputs.path / "this_machine_refill.svg"
    summary["refill_svg"] = svg.read_text() if svg.is_file() else None
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
                        caption="Mean cycles per call, measured against the fitted machine (strict policy on "
                                f"{_kernel_text(cal)}). `fit` cells trained the costs; `held-out` cells did not. A cell "
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

    blocks += _mechanism(summary["mechanism_table"], cal)
    blocks += _refill(summary.get("refill_svg"), cal)

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
        refilled = [f"`{p}` (the refill curve)" for p in cal.get("pinned_by_refill") or []]
        pinned = [f"`{p}`" for p in ident["pinned"]] + refilled
        blocks.append(Para(f"Identifiability: the measurement pins {', '.join(pinned) or 'nothing'}; "
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


def _kernel_text(cal: dict) -> str:
    kernel = cal.get("kernel") or {}
    return kernel.get("note") or "mainline"


def _mechanism(table: pd.DataFrame, cal: dict) -> list[Block]:
    """The mechanism table: per traced cell, each event kind the kernel reported or the engine
    predicts (rates per flushing call), measured (95% CI over trials) against predicted."""
    line = ((cal.get("summary") or {}).get("mechanism") or {}).get("line")
    if table.empty:
        return [Para(line)] if line else []
    from study.calibration.mechanism import SEEN

    shown = table[(table["measured"].abs() > SEEN) | (table["predicted"].fillna(0).abs() > SEEN)]
    rows = [[r.cell, r.role, r.kind, fmt.num(r.measured, 3), fmt.interval(r.measured_ci_low, r.measured_ci_high, 3),
             fmt.num(r.predicted, 3) if r.modelled else "not modelled",
             ("yes" if r.within else "no") if r.modelled else "–"] for r in shown.itertuples()]
    blocks: list[Block] = [Table(
        ["cell", "CPUs", "event", "measured", "95% CI", "predicted", "match"], rows,
        caption=f"The kernel's own account of each cell (the tlb:tlb_flush and exceptions:page_fault_user "
                "tracepoints on the cell's CPUs, per flushing call) against the fitted engine's prediction of the "
                "same events under strict. CPUs: the caller's (initiator), the other threads' (others), or all "
                "(faults). A rate matches within 20% or 0.05 per call; rows where neither saw the event (both at most "
                f"{SEEN} per call) are left out.",
        align=["l", "l", "l", "r", "r", "r", "l"])]
    if line:
        blocks.append(Para(line + "."))
    return blocks


def _refill(svg: str | None, cal: dict) -> list[Block]:
    """The refill curve and what the fit took from it."""
    curve = cal.get("refill") or {}
    if not svg or not curve:
        return []
    from study.calibration.refill import sentence

    pinned = cal.get("pinned_by_refill") or []
    text = sentence(curve)[len("refill: "):]
    caption = ("What a received flush costs a thread that keeps N pages hot: its extra pass over them right "
               "after one of thread 0's mprotect() calls, over the flushes its CPU took (the trace's count), with "
               "95% CIs over trials; dashed: the weighted least-squares line up to stlb_entries. The engine "
               "charges page_walk cycles per hot entry after a full flush and nothing after a partial one.")
    blocks: list[Block] = [Figure(name="this_machine_refill", svg=svg, caption=caption),
                           Para(text[0].upper() + text[1:] + "."
                                + (f" Set from the curve: {', '.join(f'`{p}`' for p in pinned)}." if pinned else ""))]
    if "irq_loses_tlb" in pinned:
        blocks.append(Note("On this host a partial shootdown costs the receiving thread about as much as a full "
                           "one: it loses its hot entries although the handler invalidated one page (the vCPU "
                           "loses its TLB taking the interrupt). The fitted machine carries this as "
                           "`irq_loses_tlb: true`, so under `machine=` this host the engine refills a thread's "
                           "hot set after every shootdown it receives, partial or full."))
    return blocks
