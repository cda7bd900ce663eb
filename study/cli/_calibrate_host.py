"""``python -m study calibrate --from outputs/measure/<host>``: fit a machine to this host's measurement.

Prints the machine built from the host's facts, the fitted costs against their priors, the
identifiability table, every measured cell beside its prediction (fit and held-out marked)
and the summary errors.  Writes the fitted machine to
``<user config dir>/machine/<host>.yaml`` (usable as ``machine=<host>`` by every command),
and ``calibration.json``, ``this_machine.csv`` and ``mechanism.csv`` (the kernel's own
account of each cell against the engine's prediction: study.calibration.mechanism) into the
measurement directory.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from study.calibration import mechanism, refill
from study.calibration.fit import with_costs
from study.calibration.host import HOST_PRIORS, TARGET_LABELS, fit_host, prediction_rows, relaxed_change_sd
from study.calibration.identify import print_table
from study.cli.common import write_json_atomic
from study.config.paths import config_dir, user_config_dir
from study.config.presets import load_machine, machine_yaml
from study.engine.machine import Machine
from study.errors import ConfigError
from study.measure.machine import machine_from_host, unmodelled
from study.measure.store import load_measurement
from study.results.files import atomic_write, atomic_write_text

# the targets for held-out cells
MEDIAN_TARGET, WORST_TARGET = 0.10, 0.25
PREDICT_REPLICATES, PREDICT_ROUNDS = 32, 40


def run(source: Path, *, dry_run: bool = False) -> int:
    meas = load_measurement(source)
    cal = meas.settings().get("calibrate", {})
    train = list(cal.get("train", []))
    if not train:
        raise ConfigError("measure.calibrate.train", "names no training cells")
    facts = meas.facts()
    print(f"host {meas.host}: {facts.cpu_model}, kernel {facts.kernel_release}, {facts.sockets} socket(s) x "
          f"{facts.cores_per_socket} core(s) x {facts.smt} SMT")
    base = machine_from_host(facts, name=meas.host)
    print(f"machine from host facts: sockets={base.sockets} cores_per_socket={base.cores_per_socket} "
          f"smt={base.smt} apic_mode={base.apic_mode} pti={base.pti} virt={base.virt} "
          f"pv_send_ipi={base.pv_send_ipi} pv_tlb_flush={base.pv_tlb_flush}")
    print("host facts recorded, not used by the model: "
          + ", ".join(f"{k}={v}" for k, v in unmodelled(facts).items()))
    started = time.monotonic()

    def progress(n):
        if n % 10 == 0:
            print(f"  ... {n} model evaluations ({time.monotonic() - started:.0f} s)", flush=True)

    preset = preset_machine(facts)
    print(f"priors: {preset.name} ({'a KVM guest' if facts.hypervisor else 'bare metal'}); fitted: "
          f"{', '.join(p.name for p in HOST_PRIORS)}; every other cost stays at the preset's prior")
    fit = fit_host(meas, preset=preset, train=train, replicates=int(cal.get("replicates", 8)), rounds=int(cal.get("rounds", 12)),
                   seed=int(cal.get("seed", 2022)), max_nfev=int(cal.get("max_nfev", 60)), progress=progress)
    print(f"strict baseline: {fit.kernel_note}")
    curve = refill.fit(meas.cells, ceiling=fit.machine.tlb_single_page_flush_ceiling,
                       stlb_entries=fit.machine.stlb_entries)
    refill_pinned = []
    if curve is not None:
        print(refill.sentence(curve))
        full = curve["full"]
        if full and np.isfinite(full["slope_low"]) and full["slope_low"] > 0:
            # the engine's refill is page_walk cycles per hot entry after a full flush: the slope
            fit.machine = with_costs(fit.machine, {"page_walk": float(np.rint(full["slope"]))})
            fit.values["page_walk"] = float(np.rint(full["slope"]))
            refill_pinned.append("page_walk")
        if fit.machine.virt == "kvm" and refill.partial_refills(curve):
            # the guest loses its TLB taking the IPI: the engine refills after partial shootdowns too
            fit.machine = dataclasses.replace(fit.machine, irq_loses_tlb=True)
            refill_pinned.append("irq_loses_tlb")
            print("irq_loses_tlb: true (a partial shootdown costs the receiving thread a refill too)")
    n_fit = sum(t.role == "fit" for t in fit.targets)
    print(f"\nfitted {len(HOST_PRIORS)} costs to {n_fit} training targets "
          f"({fit.evaluations} model evaluations, {time.monotonic() - started:.0f} s)")
    print(f"\n{'parameter':22s} {'fitted':>8s}  {'prior range':>16s}  {'centre':>7s}")
    flagged = []
    for p in HOST_PRIORS:
        value = fit.values[p.name]
        at_bound = value <= p.low * 1.02 or value >= p.high * 0.98
        if at_bound:
            flagged.append(p.name)
        print(f"{p.name:22s} {value:8.0f}  [{p.low:6.0f}, {p.high:6.0f}]  {p.centre:7.0f}"
              f"{'  AT PRIOR BOUND' if at_bound else ''}")
    print("\nidentifiability (Jacobian of log model/measured over the training targets, "
          "parameters in prior units):")
    print_table(fit.identifiability)
    for name in refill_pinned:
        print(f"{name}: set by the refill curve, not by the least-squares fit")

    predict = {"replicates": int(cal.get("predict_replicates", PREDICT_REPLICATES)),
               "rounds": int(cal.get("predict_rounds", PREDICT_ROUNDS))}
    print("propagating the fit's uncertainty to the relaxed policy's change ...", flush=True)
    change_sd = relaxed_change_sd(fit, meas)
    runs: dict = {}
    rows = prediction_rows(fit, meas, replicates=predict["replicates"], rounds=predict["rounds"], change_sd=change_sd,
                           seed=int(cal.get("seed", 2022)), runs=runs)
    print(f"\n{'cell':38s} {'call':13s} {'role':8s} {'measured':>9s} {'95% CI':>17s} {'predicted':>9s} "
          f"{'error':>7s} {'on-CPU err':>10s} {'relaxed':>8s} {'fit sd':>7s}")
    for r in rows:
        print(f"{r['cell']:38s} {r['label']:13s} {r['role']:8s} {r['measured']:9.0f} "
              f"[{r['measured_ci_low']:7.0f},{r['measured_ci_high']:7.0f}] {r['predicted']:9.0f} "
              f"{r['error'] * 100:+6.1f}% {r['error_all_busy'] * 100:+9.1f}% "
              f"{r['relaxed_change'] * 100:+7.1f}% {r['relaxed_change_fit_sd'] * 100:6.1f}%")
    print(f"\nshootdowns per flushing call (TLB row) against the engine's prediction from the measured on-CPU share:")
    print(f"{'cell':38s} {'on-CPU':>7s} {'knob':>6s} {'measured':>9s} {'predicted':>9s} {'always on':>9s}  "
          f"within 20% or 0.05")
    shoot_ok = {}
    for r in {r["cell"]: r for r in rows}.values():
        meas_s, pred_s = r["shootdowns_measured"], r["shootdowns_model"]
        ok = bool(abs(pred_s - meas_s) <= max(0.05, 0.2 * abs(meas_s)))
        shoot_ok[r["cell"]] = ok
        print(f"{r['cell']:38s} {r['on_cpu_measured']:7.3f} {r['on_cpu_share']:6.3f} {meas_s:9.3f} {pred_s:9.3f} "
              f"{r['shootdowns_model_all_busy']:9.3f}  {'yes' if ok else 'NO'}")
    summary = {}
    for role in ("fit", "held-out"):
        err = np.array([abs(r["error"]) for r in rows if r["role"] == role])
        if err.size:
            summary[role] = {"targets": int(err.size), "median_abs_error": float(np.median(err)),
                             "worst_abs_error": float(err.max())}
            print(f"{role:8s}: {err.size} targets, median |error| {np.median(err) * 100:.1f}%, "
                  f"worst {err.max() * 100:.1f}%")
    held = summary.get("held-out")
    if held:
        ok = held["median_abs_error"] <= MEDIAN_TARGET and held["worst_abs_error"] <= WORST_TARGET
        print(f"held-out target (median <= {MEDIAN_TARGET:.0%}, worst <= {WORST_TARGET:.0%}): "
              f"{'met' if ok else 'NOT met'}")
        summary["held_out_target_met"] = bool(ok)
    summary["shootdowns_within_target"] = shoot_ok
    specs = meas.workloads()
    runs.update(mechanism.simulate_rest(fit.machine, specs, runs, kernel=fit.kernel, replicates=predict["replicates"],
                                        rounds=predict["rounds"], seed=int(cal.get("seed", 2022))))
    mech = mechanism.rows(meas.cells, meas.replicates, runs, specs)
    mech_summary = mechanism.summary(mech)
    print_mechanism(mech, mech_summary)
    summary["mechanism"] = mech_summary
    print("\n'predicted' runs each busy cell with its other threads' on-CPU share measured at the flushes "
          "(heartbeat; the TLB row is only compared); 'on-CPU err' is the error with them always on their CPUs.")
    if dry_run:
        return 0
    target = user_config_dir() / "machine" / f"{fit.machine.name}.yaml"
    write_machine(target, fit, meas)
    record = {
        "source": str(meas.path), "machine_file": str(target), "machine": dataclasses.asdict(fit.machine),
        "values": fit.values, "flagged_at_bound": flagged, "train": train, "summary": summary,
        "identifiability": fit.identifiability.as_dict(), "evaluations": fit.evaluations,
        "unmodelled_facts": {k: v for k, v in unmodelled(facts).items()},
        "predict": predict,
        "labels": list(TARGET_LABELS),
        "kernel": {"name": fit.kernel.name, "note": fit.kernel_note},
        "refill": curve,
        "pinned_by_refill": refill_pinned,
    }
    write_json_atomic(meas.path / "calibration.json", record)
    frame = pd.DataFrame(rows)
    atomic_write(meas.path / "this_machine.csv", lambda tmp: frame.to_csv(tmp, index=False))
    mech_frame = pd.DataFrame(mech, columns=MECHANISM_COLUMNS)
    atomic_write(meas.path / "mechanism.csv", lambda tmp: mech_frame.to_csv(tmp, index=False))
    print(f"\nwrote {target} (use it as machine={fit.machine.name}), {meas.path / 'calibration.json'}, "
          f"{meas.path / 'this_machine.csv'} and {meas.path / 'mechanism.csv'}")
    return 0


MECHANISM_COLUMNS = ["cell", "role", "kind", "trials", "measured", "measured_ci_low", "measured_ci_high", "predicted",
                     "within", "modelled", "how"]


def print_mechanism(table: list[dict], summary: dict) -> None:
    """The mechanism table: per traced cell and event kind, the measured rate per flushing call
    (95% CI over trials) beside the engine's prediction under strict."""
    if not table:
        print(f"\n{summary['line']}")
        return
    print(f"\nthe kernel's own account (tlb:tlb_flush, exceptions:page_fault_user) per flushing call, against "
          f"the engine under strict:")
    print(f"{'cell':38s} {'CPUs':9s} {'event':22s} {'measured':>9s} {'95% CI':>17s} {'predicted':>9s}  match")
    for r in table:
        if max(abs(r["measured"]), abs(r["predicted"]) if r["modelled"] else 0.0) <= mechanism.SEEN:
            continue
        match = ("yes" if r["within"] else "NO") if r["modelled"] else "not modelled"
        pred = f"{r['predicted']:9.3f}" if r["modelled"] else f"{'-':>9s}"
        print(f"{r['cell']:38s} {r['role']:9s} {r['kind']:22s} {r['measured']:9.3f} "
              f"[{r['measured_ci_low']:7.3f},{r['measured_ci_high']:7.3f}] {pred}  {match}")
    print(summary["line"])


def preset_machine(facts):
    """The machine whose costs are the priors: the kvm_guest_2vcpu preset for a KVM guest, the
    generic Machine on bare metal."""
    if not facts.hypervisor:
        return Machine()
    return load_machine(config_dir() / "machine" / "kvm_guest_2vcpu.yaml")


def write_machine(path: Path, fit, meas) -> None:
    source = (f"python -m study calibrate --from {meas.path}: least-squares fit of {len(HOST_PRIORS)} "
              f"costs to measured cells of host {meas.host} (kernel {meas.manifest['host']['kernel_release']})")
    header = (f"# {fit.machine.name}: fitted by `python -m study calibrate --from {meas.path}`.\n"
              f"# Host facts recorded but not used by the model: {', '.join(unmodelled(meas.facts()))}.\n")
    atomic_write_text(path, machine_yaml(fit.machine, source, header))
