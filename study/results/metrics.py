"""The metric registry: every metric a cell result or a table holds, declared once with its unit.

A cell's result (study.workloads.result.CellResult) holds per-replicate metrics named here:
the cycles of one round by part, and per call label the mean latency and the share of strict
flushes; a measured cell (study.measure) adds the kernel's own counts.  Counters are the
engine's event counts (study.engine.ops.COUNTERS, declared there with their units), stored in
the tables as ``count.<name>`` per round.  The driver names its metrics through ``latency()``
and ``strict_share()``; the tables store ``units()`` in their metadata; the cache, the API and
the analysis ask ``unit()`` and ``known()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from study.engine.ops import COUNTERS


@dataclass(frozen=True)
class Metric:
    """One metric (``name``, or a family ``prefix_<label>``): its unit, what it is per, its words."""

    name: str
    unit: str
    per: str          # "call", "round" or "replicate": what one value describes
    doc: str
    family: bool = False   # a prefix followed by a call label


METRICS: tuple[Metric, ...] = (
    Metric("total_cycles_per_round", "cycles per round", "round",
           "cycles of one loop iteration on every CPU: initiator + other threads + stolen by flush handlers"),
    Metric("initiator_cycles_per_round", "cycles per round", "round", "the calling thread's (thread 0's) own cycles"),
    Metric("other_cycles_per_round", "cycles per round", "round",
           "the other threads' own cycles (their accesses, faults, refills, switches back to the mm)"),
    Metric("stolen_cycles_per_round", "cycles per round", "round",
           "cycles remote flush_tlb_func handlers (and PV-deferred host flushes) took from the other CPUs"),
    Metric("lat_", "cycles per call", "call", "mean latency of the label's calls on the acting CPU", family=True),
    Metric("strict_share_", "share of calls (0-1)", "call", "share of the label's calls that took the strict path",
           family=True),
    # measured cells (python -m study measure): the running kernel's own account
    Metric("tlb_per_call", "shootdowns per flushing call", "replicate",
           "/proc/interrupts TLB row (flush_tlb_func run for a remote CPU's request) per flushing call"),
    Metric("cal_per_call", "IPIs per flushing call", "replicate",
           "/proc/interrupts CAL row (function-call IPIs received) per flushing call"),
    Metric("outlier_share", "share of calls (0-1)", "replicate", "calls longer than the outlier bound, left out"),
    Metric("other_spins_per_kcycle", "iterations per 1000 cycles", "replicate", "the busy threads' loop rate"),
    Metric("other_on_cpu_share", "share (0-1)", "replicate",
           "share of the looks before a flush that found each other thread on its CPU"),
    Metric("other_on_cpu_time_share", "share (0-1)", "replicate", "the other threads' on-CPU share of time"),
    Metric("other_on_cpu_share_spins", "share (0-1)", "replicate", "the on-CPU share from the loop rate"),
    # refill and lazy_wake cells (the other thread's passes over its own buffer)
    Metric("ws_pass_extra_cycles", "cycles per pass", "replicate",
           "the other thread's mean pass over its buffer right after a flushing call minus its mean quiet pass"),
    Metric("wake_extra_cycles", "cycles per wake", "replicate",
           "lazy_wake: the sleeper's mean wake-up (futex wake to running) after thread 0 flushed minus its "
           "mean quiet wake-up"),
)
# the measured cells' own counters
MEASURED_COUNTERS = {"tlb_received": ("shootdowns", "TLB row of /proc/interrupts, summed over CPUs"),
                     "cal_received": ("IPIs", "CAL row of /proc/interrupts, summed over CPUs")}
STATS = ("mean", "ci_low", "ci_high", "median", "p99", "n")
MAIN = "total_cycles_per_round"


def latency(label: str) -> str:
    """The metric of the mean latency of ``label``'s calls."""
    return f"lat_{label}"


def strict_share(label: str) -> str:
    """The metric of the share of ``label``'s calls that took the strict path."""
    return f"strict_share_{label}"


def metric(name: str) -> Metric | None:
    """The declaration of metric ``name`` (a family's for ``lat_<label>``), or None."""
    for m in METRICS:
        if (m.family and name.startswith(m.name) and len(name) > len(m.name)) or name == m.name:
            return m
    return None


def known(name: str, labels=()) -> bool:
    """Whether ``name`` is a declared metric (a family's only with one of ``labels``)."""
    m = metric(name)
    if m is None:
        return False
    return not m.family or name[len(m.name):] in labels


def unit(column: str) -> str | None:
    """The unit of a column of the study's tables (None: an identifier or a setting)."""
    base, _, stat = column.rpartition(".")
    if stat not in STATS:
        base = column
    elif stat == "n":
        return "replicates"
    if base.startswith("count."):
        return "events per round"
    if base.startswith("machine.costs."):
        return "cycles"
    if base == "latency":
        return "cycles per call"
    m = metric(base)
    return m.unit if m is not None else None


def units(columns) -> dict[str, str]:
    """``{column: unit}`` for the columns that have one (a table's metadata)."""
    return {c: u for c in columns if (u := unit(str(c)))}


def describe() -> dict:
    """The registry as plain data (the sweep's manifest carries it)."""
    return {"metrics": [asdict(m) for m in METRICS],
            "counters": {name: {"unit": unit_, "doc": doc} for name, (unit_, doc) in COUNTERS.items()},
            "stats": list(STATS), "main": MAIN}
