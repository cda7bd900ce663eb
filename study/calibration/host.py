"""Fit a machine's event costs to this host's measurement, and predict the cells held out.

The machine comes from the host's facts (study.measure.machine.machine_from_host); its
free costs (HOST_PRIORS) are fitted by least squares on log(model / measured) of the mean
cycles per call of the TRAINING cells named in study/conf/measure/<name>.yaml
(``calibrate.train``), with a weak pull of each cost towards its prior centre.  The host
runs today's mainline, so every cell is simulated with the strict policy.

What the engine cannot produce is taken from the measurement as a covariate, never
fitted: on a 2-thread cell whose second thread is "busy", the share ``p`` of calls that
actually sent a shootdown (the TLB row of /proc/interrupts per flushing call).  Below 1 it
means the second CPU was not running the mm for part of the trial (the scheduler gave it
to another process: switch_mm_irqs_off() took it out of mm_cpumask) or that the
paravirtual remote flush (kvm_flush_tlb_multi) flagged a preempted vCPU instead of sending
the IPI.  The model's prediction is then ``p * busy + (1 - p) * idle``, the two engine
runs with the second thread running and lazy; the prediction with every call shooting
down (``p = 1``, what the engine alone says) is reported beside it.
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
from study.policies import RELAXED, STRICT, Policy
from study.workloads import simulate_cell
from study.workloads.spec import WorkloadSpec

# the calls whose mean cycles are fitted and predicted
TARGET_LABELS = ("mprotect_ro", "mprotect_rw", "madv_free", "uffd_protect")
# flushing calls per round of each workload (uffd_wp adds one unprotect per uffd-wp fault)
FLUSH_CALLS_PER_ROUND = {"mprotect_toggle": 2, "madv_free": 3, "uffd_wp": 1}
PRIOR_WEIGHT = 0.02

# Ranges wide enough for bare metal and for a virtual machine, where an IPI is a VM exit
# (or a hypercall) and a PTE write may trap: the centres are the bare-metal priors of
# study/calibration/priors.py, the bounds allow tens of microseconds.
HOST_PRIORS: tuple[Prior, ...] = (
    Prior("syscall_mprotect", 2000, 300, 40000, "mprotect() that needs no flush; a guest's syscall costs more"),
    Prior("syscall_madvise", 2000, 300, 40000, "madvise(MADV_FREE)'s fixed work"),
    Prior("syscall_uffd_wp", 2400, 300, 60000, "UFFDIO_WRITEPROTECT's fixed work (ioctl, uffd locks)"),
    Prior("pte_update", 30, 2, 2000, "one PTE read-modify-write; a trapped PTE write in a guest costs more"),
    Prior("invlpg", 260, 20, 8000, "one INVLPG (a guest's may exit)"),
    Prior("flush_full", 96, 20, 20000, "a full flush (CR3 write; a guest's may exit)"),
    Prior("cpumask_scan", 30, 1, 5000, "flush_tlb_mm_range() looking at mm_cpumask (is_lazy per CPU)"),
    Prior("tlb_gen_xfer.core", 120, 10, 5000, "the mm->tlb_gen cache line from another core"),
    Prior("ipi_send", 150, 20, 60000, "ICR write per target; a VM exit (or hypercall) in a guest"),
    Prior("ipi_deliver.core", 900, 100, 120000, "ICR write to handler start; host-injected in a guest"),
    Prior("ipi_ack.core", 150, 20, 20000, "csd unlock visible to the waiting initiator"),
    Prior("irq_entry_exit", 600, 100, 60000, "interrupt entry/exit around flush_tlb_func"),
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
    share: float              # measured shootdowns per flushing call (TLB row)
    mixed: bool               # prediction mixes the busy and lazy runs by ``share``


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
    predicted: np.ndarray            # per target, the mixture (or the plain run)
    predicted_all_busy: np.ndarray   # per target, every call shooting down (the engine alone)
    identifiability: Identifiability
    evaluations: int
    cost: float
    space: Space | None = None
    fit_size: dict = field(default_factory=dict)

    def errors(self, role: str) -> np.ndarray:
        return np.array([p / t.measured - 1.0 for t, p in zip(self.targets, self.predicted) if t.role == role])


def _busy_pair(spec: WorkloadSpec) -> bool:
    return spec.threads == 2 and spec.lazy_share == 0.0


def variants(spec: WorkloadSpec) -> dict[str, WorkloadSpec]:
    """The engine runs behind a cell: itself, plus its lazy twin for a busy 2-thread cell."""
    out = {"as_is": spec}
    if _busy_pair(spec):
        out["lazy"] = dataclasses.replace(spec, lazy_share=1.0)
    return out


def targets(meas: Measurement, train: list[str]) -> list[Target]:
    cells = meas.cells
    names = list(cells["measure_cell"])
    fit_names = set(select(names, train))
    specs = meas.workloads()
    out = []
    for _, row in cells.iterrows():
        name = row["measure_cell"]
        share = float(row.get("tlb_per_call.mean", float("nan")))
        for label in TARGET_LABELS:
            col = f"lat_{label}.mean"
            if col not in row or not np.isfinite(row[col]):
                continue
            out.append(Target(name, label, "fit" if name in fit_names else "held-out", float(row[col]),
                              float(row[f"lat_{label}.ci_low"]), float(row[f"lat_{label}.ci_high"]),
                              float(row[f"lat_{label}.median"]), share, _busy_pair(specs[name])))
    return out


def simulate_targets(machine: Machine, specs: dict[str, WorkloadSpec], tgts: list[Target], policy: Policy, *,
                     replicates: int, rounds: int, seed: int):
    """Per target: (mixture, all-busy) per replicate, and the model's shootdowns per flushing call."""
    runs = {}
    order = list(specs)
    for name in dict.fromkeys(t.cell for t in tgts):
        for v, spec in variants(specs[name]).items():
            ss = np.random.SeedSequence(seed, spawn_key=(order.index(name),))
            runs[name, v] = simulate_cell(machine, spec, policy, replicates=replicates, rounds=rounds, seed=ss)
    mix, busy, shoot = [], [], []
    for t in tgts:
        res = runs[t.cell, "as_is"]
        b = np.asarray(res.metrics[f"lat_{t.label}"], float)
        if t.mixed:
            p = min(max(t.share, 0.0), 1.0) if np.isfinite(t.share) else 1.0
            lazy = np.asarray(runs[t.cell, "lazy"].metrics[f"lat_{t.label}"], float)
            mix.append(p * b + (1.0 - p) * lazy)
        else:
            mix.append(b)
        busy.append(b)
        spec = specs[t.cell]
        calls = FLUSH_CALLS_PER_ROUND[spec.name] * res.rounds + res.counters.get("uffd_faults", 0)
        shoot.append(float(np.mean(res.counters["ipis"] / np.maximum(calls, 1))))
    return mix, busy, shoot


def fit_host(meas: Measurement, *, train: list[str], replicates: int, rounds: int, seed: int,
             priors: tuple[Prior, ...] = HOST_PRIORS, max_nfev: int = 60, progress=None) -> HostFit:
    """Least-squares fit of ``priors`` to the training targets; identifiability at the optimum."""
    base = machine_from_host(meas.facts(), name=meas.host)
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
        mix, _, _ = simulate_targets(build(u), specs, train_t, STRICT, replicates=replicates, rounds=rounds, seed=seed)
        return np.log(np.array([m.mean() for m in mix]) / measured)

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
    mix, busy, _ = simulate_targets(fitted, specs, tgts, STRICT, replicates=replicates, rounds=rounds, seed=seed)
    return HostFit(fitted, values, tgts, np.array([m.mean() for m in mix]), np.array([b.mean() for b in busy]),
                   ident, int(sol.nfev), float(sol.cost), Space(names, width),
                   {"replicates": replicates, "rounds": rounds, "seed": seed})


def relaxed_change_sd(fit: HostFit, meas: Measurement, step: float = 0.1) -> np.ndarray:
    """Per target, the sd of the relaxed policy's relative change due to the fit's uncertainty.

    Finite differences of the change (relaxed / strict - 1, common random numbers) in each
    parameter, ``step`` prior widths at a time, at the fit's model size; propagated through
    the posterior covariance of the identifiability analysis (study.calibration.identify).
    """
    specs = meas.workloads()
    size = fit.fit_size

    def changes(machine):
        s, _, _ = simulate_targets(machine, specs, fit.targets, STRICT, **size)
        r, _, _ = simulate_targets(machine, specs, fit.targets, RELAXED, **size)
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
                    change_sd: np.ndarray | None = None) -> list[dict]:
    """Every target: measured, predicted (strict), error, shootdowns, and the relaxed policy's change.

    Strict and relaxed runs share their random streams, so the change is paired per replicate;
    ``change_sd`` (relaxed_change_sd) adds the fit's own uncertainty of the change.
    """
    specs = meas.workloads()
    strict_mix, strict_busy, shoot = simulate_targets(fit.machine, specs, fit.targets, STRICT,
                                                      replicates=replicates, rounds=rounds, seed=seed)
    relaxed_mix, _, relaxed_shoot = simulate_targets(fit.machine, specs, fit.targets, RELAXED,
                                                     replicates=replicates, rounds=rounds, seed=seed)
    rows = []
    sds = change_sd if change_sd is not None else np.full(len(fit.targets), np.nan)
    for t, s, b, m_shoot, r, r_shoot, sd in zip(fit.targets, strict_mix, strict_busy, shoot, relaxed_mix,
                                               relaxed_shoot, sds):
        pred, _, _ = _t_ci(s)
        change, c_lo, c_hi = _t_ci(r / s - 1.0)
        rows.append(dict(
            cell=t.cell, label=t.label, role=t.role, measured=t.measured, measured_ci_low=t.ci_low,
            measured_ci_high=t.ci_high, measured_median=t.median, predicted=pred, error=pred / t.measured - 1.0,
            predicted_all_busy=float(b.mean()), error_all_busy=float(b.mean()) / t.measured - 1.0,
            mixed=t.mixed, shootdowns_measured=t.share, shootdowns_model=m_shoot,
            shootdowns_model_mixed=(min(max(t.share, 0.0), 1.0) * m_shoot if t.mixed else m_shoot),
            relaxed_predicted=float(r.mean()), relaxed_change=change, relaxed_change_ci_low=c_lo,
            relaxed_change_ci_high=c_hi, relaxed_change_fit_sd=float(sd), relaxed_shootdowns_model=r_shoot,
        ))
    return rows
