"""Fit a machine's event costs to this host's measurement, and predict the cells held out.

The machine comes from the host's facts (study.measure.machine.machine_from_host) over a
preset's priors (conf/machine/kvm_guest_2vcpu.yaml for a KVM guest, the generic Machine on
bare metal).  The costs this host's cells can inform (HOST_PRIORS) are fitted by least
squares on log(model / measured) of the mean cycles per call of the TRAINING cells named in
conf/measure/<name>.yaml (``calibrate.train``), with a weak pull of each cost towards its
prior centre; every other cost keeps the preset's prior.  The host's kernel is the named
kernel its ``uname -r`` maps to (study.calibration.mechanism.kernel_for_release: mainline on
a current host), simulated with the strict policy.

One input comes from the measurement and is never fitted: on a cell whose other threads
are busy, the share of flushing calls at which each other thread was on its CPU (the
benchmark's heartbeat, study.measure.run), which becomes the workload's ``on_cpu_share``.
A thread off its CPU leaves another mm loaded there, so should_flush_tlb() sends it no
IPI.  The engine then PREDICTS the shootdowns per flushing call, compared with the TLB row
of /proc/interrupts (the measured shootdowns); the TLB row is never a model input.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from study.calibration.fit import with_costs
from study.calibration.identify import Identifiability, identifiability, propagated_sd
from study.calibration.priors import Prior
from study.engine.machine import Machine
from study.errors import ConfigError
from study.measure.grid import select
from study.measure.machine import machine_from_host
from study.measure.store import Measurement
from study.calibration.mechanism import kernel_for_release
from study.policies.kernel import MAINLINE
from study.policies import RELAXED, STRICT, Policy
from study.workloads import WORKLOADS, simulate_cell
from study.workloads.spec import WorkloadSpec

# the calls whose mean cycles are fitted and predicted: every workload's flushing calls
TARGET_LABELS = tuple(dict.fromkeys(label for cls in WORKLOADS.values() for label in cls.flush_labels()))
PRIOR_WEIGHT = 0.02

# The costs this host's cells inform, with ranges wide enough for bare metal and for a
# virtual machine (an IPI is a VM exit or a hypercall, a PTE write may trap): centres are the
# kvm_guest_2vcpu preset's priors, bounds allow tens of microseconds.  What the cells see:
# 1-thread calls (syscall_*, pte_update, invlpg up to the 33-page ceiling, flush_full beyond
# it); 2-thread busy calls add the strict path (cpumask_scan, the remote is_lazy / csd lines,
# the tlb_gen line, the ICR write's VM exit, delivery, the target's IRQ entry and the ack).
# Left at the preset's priors, because no measured call depends on them (or only through a
# cost fitted here that they cannot be told apart from): ipi_send (one ICR write is ipi_send +
# vm_exit: only their sum is seen), icr_idle_wait (xAPIC only), pte_mkwrite_check, tlb_hit,
# page_walk, dirty_walk, fault_entry_exit, sigsegv (the write after a call is not a target),
# context_switch (a thread back on its CPU pays it off the initiator's clock), invpcid,
# cr3_switch, user_asid_flush (PTI off here), vcpu_wakeup_wait (PV flush skips preempted vCPUs).
HOST_PRIORS: tuple[Prior, ...] = (
    Prior("syscall_mprotect", 2200, 300, 40000, "mprotect() that needs no flush; a guest's syscall costs more"),
    Prior("syscall_madvise", 2000, 300, 40000, "madvise(MADV_FREE)'s fixed work"),
    Prior("syscall_uffd_wp", 2400, 300, 60000, "UFFDIO_WRITEPROTECT's fixed work (ioctl, uffd locks)"),
    Prior("pte_update", 30, 2, 2000, "one PTE read-modify-write; a trapped PTE write in a guest costs more"),
    Prior("invlpg", 260, 20, 8000, "one INVLPG (a guest's may exit)"),
    Prior("flush_full", 96, 20, 20000, "a full flush (CR3 write; a guest's may exit)"),
    Prior("cpumask_scan", 30, 1, 5000, "flush_tlb_mm_range() looking at mm_cpumask"),
    Prior("remote_line.core", 120, 10, 5000, "should_flush_tlb()'s is_lazy/loaded_mm read, csd lock, llist_add"),
    Prior("tlb_gen_xfer.core", 120, 10, 5000, "the mm->tlb_gen cache line from another core"),
    Prior("vm_exit", 1500, 200, 60000, "a trapped x2APIC ICR write or a hypercall: VM exit and re-entry"),
    Prior("ipi_deliver.core", 3000, 100, 120000, "ICR write to handler start; host-injected in a guest"),
    Prior("ipi_ack.core", 150, 20, 20000, "csd unlock visible to the waiting initiator"),
    Prior("irq_entry_exit", 650, 100, 60000, "interrupt entry/exit around flush_tlb_func"),
)


@dataclass
class Target:
    cell: str
    label: str
    role: str                 # fit | held-out
    measured: float
    ci_low: float
    ci_high: float
    median: float
    share: float              # measured shootdowns per flushing call (TLB row): compared, never an input
    on_cpu: float             # measured on-CPU share of the other threads at the flushes (NaN: none watched)


@dataclass
class Space:
    """The fitted parameters' coordinates: log cost, and its prior's log width."""

    names: list[str]
    width: np.ndarray


@dataclass
class HostFit:
    machine: Machine
    values: dict[str, float]
    targets: list[Target]
    predicted: np.ndarray            # per target, with the measured on-CPU share
    predicted_all_busy: np.ndarray   # per target, the other threads always on their CPUs
    identifiability: Identifiability
    evaluations: int
    cost: float
    space: Space | None = None
    fit_size: dict = field(default_factory=dict)
    kernel: object = MAINLINE        # the named kernel the host runs (kernel_for_release)
    kernel_note: str = ""

    def errors(self, role: str) -> np.ndarray:
        return np.array([p / t.measured - 1.0 for t, p in zip(self.targets, self.predicted) if t.role == role])


def on_cpu_knob(measured: float, machine: Machine) -> float:
    """The workload's on_cpu_share from the measured on-CPU share at the flushes.

    The heartbeat sees a thread off its CPU whether the guest ran another task there or the
    host preempted the vCPU; the engine draws vCPU preemption first (vcpu_preempted_share,
    kvm_flush_tlb_multi()) and on_cpu_share among the running vCPUs, so the knob is the
    measured share over (1 - vcpu_preempted_share)."""
    if not np.isfinite(measured):
        return 1.0
    p = machine.vcpu_preempted_share if machine.virt == "kvm" else 0.0
    return float(min(max(measured / (1.0 - p), 0.0), 1.0))


def with_on_cpu(spec: WorkloadSpec, t: "Target", machine: Machine) -> WorkloadSpec:
    return dataclasses.replace(spec, on_cpu_share=on_cpu_knob(t.on_cpu, machine))


def targets(meas: Measurement, train: list[str]) -> list[Target]:
    """The measured calls to fit or predict: every modelled cell's (a host loop the engine does
    not model, study.measure.grid.HOST, is left out: its manifest entry says ``modelled: false``)."""
    cells = meas.cells
    unmodelled = {c["name"] for c in meas.manifest.get("cells", []) if c.get("modelled") is False}
    names = [n for n in cells["measure_cell"] if n not in unmodelled]
    fit_names = set(select(names, train))
    out = []
    for _, row in cells.iterrows():
        name = row["measure_cell"]
        if name in unmodelled:
            continue
        share = float(row.get("tlb_per_call.mean", float("nan")))
        on_cpu = float(row.get("other_on_cpu_share.mean", float("nan")))
        for label in TARGET_LABELS:
            col = f"lat_{label}.mean"
            if col not in row or not np.isfinite(row[col]):
                continue
            out.append(Target(name, label, "fit" if name in fit_names else "held-out", float(row[col]),
                              float(row[f"lat_{label}.ci_low"]), float(row[f"lat_{label}.ci_high"]),
                              float(row[f"lat_{label}.median"]), share, on_cpu))
    return out


def simulate_targets(machine: Machine, specs: dict[str, WorkloadSpec], tgts: list[Target], policy: Policy, *,
                     replicates: int, rounds: int, seed: int, measured_on_cpu: bool = True, kernel=MAINLINE,
                     runs: dict | None = None):
    """Per target: the model's cycles per call per replicate, and its shootdowns per flushing call.

    ``measured_on_cpu``: each cell runs with the measured on-CPU share of its other threads
    (on_cpu_knob); False: they are always on their CPUs (the engine alone).  ``runs``, when
    given, receives each cell's CellResult by name (its counters: the mechanism check)."""
    runs = {} if runs is None else runs
    order = list(specs)
    for t in tgts:
        if t.cell in runs:
            continue
        spec = with_on_cpu(specs[t.cell], t, machine) if measured_on_cpu else specs[t.cell]
        ss = np.random.SeedSequence(seed, spawn_key=(order.index(t.cell),))
        runs[t.cell] = simulate_cell(machine, spec, policy, replicates=replicates, rounds=rounds, seed=ss,
                                     kernel=kernel)
    lat, shoot = [], []
    for t in tgts:
        res = runs[t.cell]
        lat.append(np.asarray(res.metrics[f"lat_{t.label}"], float))
        spec = specs[t.cell]
        # flushing calls per round of the workload (uffd_wp adds one unprotect per uffd-wp fault)
        calls = len(spec.flush_labels()) * res.rounds + res.counters.get("uffd_faults", 0)
        shoot.append(float(np.mean(res.counters["ipis"] / np.maximum(calls, 1))))
    return lat, shoot


def fit_host(meas: Measurement, *, train: list[str], replicates: int, rounds: int, seed: int,
             priors: tuple[Prior, ...] = HOST_PRIORS, max_nfev: int = 60, progress=None,
             preset: Machine | None = None) -> HostFit:
    """Least-squares fit of ``priors`` to the training targets; identifiability at the optimum.

    ``preset``: the machine whose costs are the priors (the kvm_guest_2vcpu preset for a KVM
    guest); the host's facts override its topology and hardware facts."""
    base = machine_from_host(meas.facts(), base=preset, name=meas.host)
    kernel, kernel_note = kernel_for_release(meas.facts().kernel_release)
    specs = meas.workloads()
    tgts = targets(meas, train)
    train_t = [t for t in tgts if t.role == "fit"]
    if not train_t:
        raise ConfigError("measure.calibrate.train", f"matches no measured cell; cells: "
                                                     f"{', '.join(dict.fromkeys(t.cell for t in tgts))}")
    measured = np.array([t.measured for t in train_t])
    lo = np.log([p.low for p in priors])
    hi = np.log([p.high for p in priors])
    centre = np.log([p.centre for p in priors])
    width = hi - lo
    names = [p.name for p in priors]
    calls = [0]

    def build(u):
        return with_costs(base, {n: float(math.exp(v)) for n, v in zip(names, u)})

    def data_residuals(u):
        calls[0] += 1
        if progress:
            progress(calls[0])
        lat, _ = simulate_targets(build(u), specs, train_t, STRICT, replicates=replicates, rounds=rounds, seed=seed,
                                  kernel=kernel)
        return np.log(np.array([m.mean() for m in lat]) / measured)

    def residuals(u):
        return np.concatenate([data_residuals(u), PRIOR_WEIGHT * (u - centre) / width])

    sol = least_squares(residuals, np.clip(centre, lo, hi), bounds=(lo, hi), x_scale=width, diff_step=5e-3,
                        xtol=1e-4, ftol=1e-5, max_nfev=max_nfev)
    # Jacobian of the data rows in prior units (1 = the whole log range of a prior)
    jac = sol.jac[: len(train_t)] * width
    ident = identifiability(jac, names)
    values = {n: float(np.rint(math.exp(v))) for n, v in zip(names, sol.x)}
    values = {n: min(max(v, math.ceil(p.low)), math.floor(p.high)) for (n, v), p in zip(values.items(), priors)}
    fitted = with_costs(base, values)
    lat, _ = simulate_targets(fitted, specs, tgts, STRICT, replicates=replicates, rounds=rounds, seed=seed,
                              kernel=kernel)
    busy, _ = simulate_targets(fitted, specs, tgts, STRICT, replicates=replicates, rounds=rounds, seed=seed,
                               measured_on_cpu=False, kernel=kernel)
    return HostFit(fitted, values, tgts, np.array([m.mean() for m in lat]), np.array([b.mean() for b in busy]),
                   ident, int(sol.nfev), float(sol.cost), Space(names, width),
                   {"replicates": replicates, "rounds": rounds, "seed": seed}, kernel, kernel_note)


def relaxed_change_sd(fit: HostFit, meas: Measurement, step: float = 0.1) -> np.ndarray:
    """Per target, the sd of the relaxed policy's relative change due to the fit's uncertainty.

    Finite differences of the change (relaxed / strict - 1, common random numbers) in each
    parameter, ``step`` prior widths at a time, at the fit's model size; propagated through
    the posterior covariance of the identifiability analysis (study.calibration.identify).
    """
    specs = meas.workloads()
    size = dict(fit.fit_size, kernel=fit.kernel)

    def changes(machine):
        s, _ = simulate_targets(machine, specs, fit.targets, STRICT, **size)
        r, _ = simulate_targets(machine, specs, fit.targets, RELAXED, **size)
        return np.array([np.nanmean(b / a - 1.0) for a, b in zip(s, r)])

    base = changes(fit.machine)
    grads = np.zeros((len(fit.targets), len(fit.space.names)))
    for j, (name, w) in enumerate(zip(fit.space.names, fit.space.width)):
        moved = dict(fit.values)
        moved[name] = fit.values[name] * math.exp(step * w)
        grads[:, j] = (changes(with_costs(fit.machine, moved)) - base) / step
    return propagated_sd(grads, fit.identifiability)


def _t_ci(values: np.ndarray) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.sem(values) * stats.t.ppf(0.975, values.size - 1))
    return mean, mean - half, mean + half


def prediction_rows(fit: HostFit, meas: Measurement, *, replicates: int, rounds: int, seed: int,
                    change_sd: np.ndarray | None = None, runs: dict | None = None) -> list[dict]:
    """Every target: measured, predicted (strict), error, shootdowns, and the relaxed policy's change.

    Strict and relaxed runs share their random streams, so the change is paired per replicate;
    ``change_sd`` (relaxed_change_sd) adds the fit's own uncertainty of the change.  ``runs``
    receives the strict runs by cell (study.calibration.mechanism reads their counters).
    """
    specs = meas.workloads()
    size = dict(replicates=replicates, rounds=rounds, seed=seed, kernel=fit.kernel)
    strict, shoot = simulate_targets(fit.machine, specs, fit.targets, STRICT, runs=runs, **size)
    strict_busy, shoot_busy = simulate_targets(fit.machine, specs, fit.targets, STRICT, measured_on_cpu=False, **size)
    relaxed, relaxed_shoot = simulate_targets(fit.machine, specs, fit.targets, RELAXED, **size)
    rows = []
    sds = change_sd if change_sd is not None else np.full(len(fit.targets), np.nan)
    for t, s, b, m_shoot, b_shoot, r, r_shoot, sd in zip(fit.targets, strict, strict_busy, shoot, shoot_busy,
                                                         relaxed, relaxed_shoot, sds):
        pred, _, _ = _t_ci(s)
        change, c_lo, c_hi = _t_ci(r / s - 1.0)
        rows.append(dict(
            cell=t.cell, label=t.label, role=t.role, measured=t.measured, measured_ci_low=t.ci_low,
            measured_ci_high=t.ci_high, measured_median=t.median, predicted=pred, error=pred / t.measured - 1.0,
            predicted_all_busy=float(b.mean()), error_all_busy=float(b.mean()) / t.measured - 1.0,
            on_cpu_measured=t.on_cpu, on_cpu_share=on_cpu_knob(t.on_cpu, fit.machine),
            shootdowns_measured=t.share, shootdowns_model=m_shoot, shootdowns_model_all_busy=b_shoot,
            relaxed_predicted=float(r.mean()), relaxed_change=change, relaxed_change_ci_low=c_lo,
            relaxed_change_ci_high=c_hi, relaxed_change_fit_sd=float(sd), relaxed_shootdowns_model=r_shoot,
        ))
    return rows
