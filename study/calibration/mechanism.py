"""The mechanism check: the kernel's own account of each measured cell against the engine's.

``measure`` records, per trial, the ``tlb:tlb_flush`` and ``exceptions:page_fault_user``
events of the benchmark's CPUs (study.measure.trace), as rates per flushing call of each
event kind on each role's CPUs (``trace_<role>_<kind>``).  The fitted machine, run under
``strict`` on the kernel the host runs (``kernel_for_release``) with each cell's measured
on-CPU share, predicts the same rates from its event counters (study.engine.ops.COUNTERS).
EVENTS says, for each (role, kind), which counters make the prediction and why; a kind the
engine does not represent is listed with its measured rate and never counted as a match.

A rate matches when the prediction lies within ``REL_TOLERANCE`` of the measured mean or
within ``ABS_TOLERANCE`` events per call of it (a rare event's rate is noisy in relative
terms).  The summary line: ``mechanism: K of N event rates within 20% or 0.05 per call``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from study.policies.kernel import MAINLINE, RFC_BASE
from study.results.metrics import trace_metric

REL_TOLERANCE, ABS_TOLERANCE = 0.20, 0.05
SEEN = 0.01   # events per call: below it on both sides, the event did not happen in the cell
# faults are compared over every CPU of the cell: the engine books a fault to the CPU that
# takes it, but the measured cells' writers are not always thread 0 (uffd_wp's writer)
ALL = "all"


@dataclass(frozen=True)
class Event:
    """How the engine predicts one event kind on one role's CPUs."""

    counters: tuple[str, ...] = ()     # summed ...
    minus: tuple[str, ...] = ()        # ... less these
    why: str = ""

    @property
    def modelled(self) -> bool:
        return bool(self.counters) or self.why.startswith("none:")


# (role, kind) -> its prediction.  Every flushing call of a measured cell is made by thread 0
# (the initiator); the other threads receive its shootdowns and switch back in after a sleep.
EVENTS: dict[tuple[str, str], Event] = {
    ("initiator", "local_partial"): Event(("local_partial",), why="flush_tlb_func() on the caller (reason 3), "
                                          "INVLPG page by page: the CPU lagged one generation, range <= ceiling"),
    ("initiator", "local_full"): Event(("local_full",), ("switch_full",),
                                       why="flush_tlb_func() on the caller (reason 3), TLB_FLUSH_ALL: range over the "
                                           "ceiling or the CPU behind by more than one generation"),
    ("initiator", "local_none"): Event(why="none: the caller is never up to date already (a single initiator)"),
    ("initiator", "ipi_send"): Event(("flush_multi",), why="native_flush_tlb_multi() (reason 4): a strict flush "
                                     "with another CPU in mm_cpumask, lazy or not"),
    ("others", "remote_partial"): Event(("remote_partial",), why="flush_tlb_func() in the IPI handler (reason 1), "
                                        "INVLPG page by page"),
    ("others", "remote_full"): Event(("remote_full",), why="flush_tlb_func() in the IPI handler (reason 1), "
                                     "TLB_FLUSH_ALL"),
    ("others", "remote_none"): Event(why="none: no second initiator, so a target is never current when its IPI "
                                         "arrives"),
    ("others", "switch_full"): Event(("switch_full",), why="switch_mm_irqs_off() (reason 0, pages -1): a lazy "
                                     "CPU waking, or a thread back on its CPU, behind mm->tlb_gen"),
    (ALL, "fault_write_prot"): Event(("reuse_faults", "uffd_faults", "spurious_faults", "prot_faults"),
                                     why="exc_page_fault() on a present page: do_wp_page() reuse, a uffd-wp fault "
                                         "(one exception: the retry after handle_userfault() is inside it), a "
                                         "spurious fault, a true protection fault"),
    (ALL, "fault_write_notpresent"): Event(why="none: the benchmark's pages are faulted in before the timed "
                                               "rounds and never reclaimed"),
    (ALL, "fault_read_prot"): Event(why="none: no read of a present page faults in these loops"),
    (ALL, "fault_read_notpresent"): Event(why="none: every page is present"),
}
# the flushes a role never makes: only thread 0 calls the flushing calls, so it never
# receives a shootdown and the other threads never flush on their own account
EVENTS.update({("initiator", kind): Event(why="none: only thread 0 flushes, so no shootdown reaches it")
               for kind in ("remote_partial", "remote_full", "remote_none")})
EVENTS.update({("others", kind): Event(why="none: the other threads make no flushing call")
               for kind in ("local_partial", "local_full", "local_none", "ipi_send")})
# kinds the engine does not represent: shown with their measured rate, never matched
NOT_MODELLED: dict[tuple[str, str], str] = {
    ("initiator", "switch_full"): "thread 0 switched back in behind the mm: it is the only initiator, so only "
                                  "after another process's flush of a shared mm (none here)",
    ("initiator", "switch_none"): "context switches of thread 0 (the scheduler, not the flush path)",
    ("others", "switch_none"): "context switches of the other threads without a flush (the scheduler)",
    ("initiator", "wrong_cpu"): "another mm's late IPI (reason 5)",
    ("others", "wrong_cpu"): "another mm's late IPI (reason 5)",
}


def kernel_for_release(release: str):
    """The named kernel a host's ``uname -r`` maps to, and a sentence saying how."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    if not m:
        return MAINLINE, f"kernel {release!r} has no version number: predicted as mainline"
    version = (int(m[1]), int(m[2]))
    if version >= (6, 3):
        return MAINLINE, f"kernel {release} is v6.3 or later: mainline"
    if version == (5, 19):
        return RFC_BASE, f"kernel {release} is the RFC's base (5.19): rfc_base"
    return MAINLINE, (f"kernel {release} is neither a named baseline (rfc_base: 5.19; mainline: v6.3+) nor "
                      "modelled: predicted as mainline, which it is not")


def simulate_rest(machine, specs: dict, runs: dict, *, kernel, replicates: int, rounds: int, seed: int) -> dict:
    """The strict runs of the measured cells ``runs`` lacks (the host loops whose calls are not
    fitted: refill, lazy_wake, mprotect_vma): their flushes are the engine's all the same."""
    from study.policies import STRICT
    from study.workloads import simulate_cell

    order = list(specs)
    return {name: simulate_cell(machine, spec, STRICT, replicates=replicates, rounds=rounds, kernel=kernel,
                                seed=np.random.SeedSequence(seed, spawn_key=(order.index(name),)))
            for name, spec in specs.items() if name not in runs}


def flushing_calls(res, spec) -> np.ndarray:
    """Per replicate, the cell's flushing calls (the rates' denominator, as ``measure`` counts
    them): each flushing label once per round, and uffd_wp's unprotect per uffd-wp fault."""
    return len(spec.flush_labels()) * res.rounds + np.asarray(res.counters.get("uffd_faults", 0), float)


def predicted_rate(res, spec, event: Event) -> float:
    """The engine's mean rate per flushing call of ``event`` over the replicates of ``res``."""
    if not event.counters:
        return 0.0
    total = sum(np.asarray(res.counters[c], float) for c in event.counters)
    total = total - sum((np.asarray(res.counters[c], float) for c in event.minus), np.zeros_like(total))
    return float(np.mean(total / np.maximum(flushing_calls(res, spec), 1)))


def _measured(trials: dict[str, np.ndarray], role: str, kind: str) -> np.ndarray | None:
    """Per trial, the measured rate of ``kind`` on ``role``'s CPUs (``trials``: metric -> its
    value per trial); None when the cell has no such trace metric."""
    roles = ("initiator", "others") if role == ALL else (role,)
    columns = [trace_metric(r, kind) for r in roles]
    if any(c not in trials for c in columns):
        return None
    values = np.column_stack([trials[c] for c in columns])
    if role == ALL:
        # a role without CPUs (1 thread: no others) has NaN rates: it took no events
        values = values[:, ~np.isnan(values).all(axis=0)]
        if values.shape[1] == 0:
            return None
        total = values.sum(axis=1)
        total[np.isnan(values).any(axis=1)] = np.nan
        return total
    return values[:, 0]


def trials_by_cell(cells, replicates) -> dict[str, dict[str, np.ndarray]]:
    """measured cell name -> trace metric -> its value per trial (in trial order)."""
    name_of = dict(zip(cells["cell_id"].astype(str), cells["measure_cell"].astype(str)))
    traced = replicates[replicates["metric"].astype(str).str.startswith("trace_")]
    out: dict[str, dict[str, np.ndarray]] = {}
    for (cell_id, metric), part in traced.groupby(["cell_id", "metric"], sort=True, observed=True):
        part = part.sort_values("replicate", kind="stable")
        out.setdefault(name_of[str(cell_id)], {})[str(metric)] = part["value"].to_numpy(float)
    return out


def within(measured: float, predicted: float) -> bool:
    return bool(abs(predicted - measured) <= max(ABS_TOLERANCE, REL_TOLERANCE * abs(measured)))


def rows(cells, replicates, runs: dict, specs: dict) -> list[dict]:
    """Cell x event kind: measured (mean and 95% t interval over the trials with a usable
    trace), predicted, whether they match; the kinds the engine does not model, measured only.
    ``cells``/``replicates``: the measurement's tables; ``runs``: the engine's strict run of
    each measured cell by name; ``specs``: each cell's workload."""
    from scipy import stats

    measured = trials_by_cell(cells, replicates)
    out = []
    items = [(key, ev, True) for key, ev in EVENTS.items()] + [(key, why, False) for key, why in NOT_MODELLED.items()]
    for cell, res in runs.items():
        spec = specs[cell]
        for (role, kind), ev, modelled in items:
            values = _measured(measured.get(cell, {}), role, kind)
            if values is None:
                continue
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            mean = float(values.mean())
            if values.size > 1 and values.std(ddof=1) > 0:
                half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
            else:
                half = 0.0
            row = dict(cell=cell, role=role, kind=kind, trials=int(values.size), measured=mean,
                       measured_ci_low=mean - half, measured_ci_high=mean + half)
            if modelled:
                pred = predicted_rate(res, spec, ev)
                row.update(predicted=pred, within=within(mean, pred), modelled=True, how=ev.why)
            else:
                row.update(predicted=float("nan"), within=False, modelled=False, how=f"not modelled: {ev}")
            out.append(row)
    return out


def summary(table: list[dict]) -> dict:
    """K of N modelled rates within the tolerance, and the same over the rates where the
    kernel or the engine saw the event at all (above ``SEEN`` per call): most kinds are zero
    in most cells, and a zero matched by a zero says less than a rate matched by a rate."""
    modelled = [r for r in table if r["modelled"]]
    k = sum(r["within"] for r in modelled)
    n = len(modelled)
    seen = [r for r in modelled if max(abs(r["measured"]), abs(r["predicted"])) > SEEN]
    k_seen = sum(r["within"] for r in seen)
    line = (f"mechanism: {k} of {n} event rates within {REL_TOLERANCE:.0%} or {ABS_TOLERANCE:g} per call "
            f"({k_seen} of {len(seen)} where the kernel or the engine saw the event)"
            if n else "mechanism: no traced cells (measure without tracefs records /proc/interrupts only)")
    misses = [f"{r['cell']} {r['role']} {r['kind']}: measured {r['measured']:.3f}, predicted {r['predicted']:.3f}"
              for r in modelled if not r["within"]]
    return dict(within=k, rates=n, within_seen=k_seen, seen=len(seen), line=line, misses=misses)


