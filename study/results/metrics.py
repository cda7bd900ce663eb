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


# The kernel's own account of a measured cell (study.measure.trace: tlb:tlb_flush and
# exceptions:page_fault_user of the benchmark's threads during the timed rounds): one metric
# per event kind and CPU role, ``trace_<role>_<kind>``, in events per flushing call.
TRACE_ROLES: dict[str, str] = {
    "initiator": "thread 0's CPU (the caller of the flushing calls)",
    "others": "the other threads' CPUs, summed",
}
TRACE_KINDS: dict[str, str] = {
    "local_partial": "flush_tlb_func() on the initiating CPU (reason 2 or 3) flushing pages one by one",
    "local_full": "flush_tlb_func() on the initiating CPU (reason 2 or 3) flushing the whole TLB (pages -1)",
    "local_none": "flush_tlb_func() on the initiating CPU (reason 2 or 3) finding the TLB up to date (pages 0)",
    "remote_partial": "a shootdown received (reason 1) flushing pages one by one",
    "remote_full": "a shootdown received (reason 1) flushing the whole TLB (pages -1)",
    "remote_none": "a shootdown received (reason 1) finding the TLB up to date (pages 0)",
    "ipi_send": "native_flush_tlb_multi() (reason 4): once per call that looks at other CPUs, whether or not "
                "an IPI goes out (a lazy or switched-away CPU stays in mm_cpumask)",
    "switch_full": "switch_mm_irqs_off() loading the mm with a full flush (reason 0, pages -1): its generation "
                   "was behind (a lazy CPU waking, a thread back on its CPU after another mm ran there)",
    "switch_none": "switch_mm_irqs_off() loading the mm without a flush (reason 0, pages 0)",
    "wrong_cpu": "an IPI for an mm no longer loaded on the CPU (reason 5): kept only while a benchmark thread "
                 "runs there, so another mm's late IPI",
    "fault_write_prot": "a user page fault: a write to a present page (error code W and P)",
    "fault_write_notpresent": "a user page fault: a write to a page not present (W, not P)",
    "fault_read_prot": "a user page fault: a read or fetch of a present page (P, not W)",
    "fault_read_notpresent": "a user page fault: a read or fetch of a page not present (neither W nor P)",
}


def trace_metric(role: str, kind: str) -> str:
    """The metric of event ``kind`` on the CPUs of ``role``, per flushing call."""
    return f"trace_{role}_{kind}"


METRICS: tuple[Metric, ...] = (
    Metric("total_cycles_per_round", "cycles per round", "round",
           "cycles of one loop iteration on every CPU: initiator + other threads + stolen by flush handlers"),
    Metric("initiator_cycles_per_round", "cycles per round", "round",
           "the calling thread's (thread 0's) own cycles, its refills included"),
    Metric("other_cycles_per_round", "cycles per round", "round",
           "the other threads' own cycles (their accesses, faults, refills, switches back to the mm)"),
    Metric("stolen_cycles_per_round", "cycles per round", "round",
           "cycles remote flush_tlb_func handlers (and PV-deferred host flushes) took from the other CPUs"),
    Metric("initiator_refill_cycles_per_round", "cycles per round", "round",
           "of thread 0's cycles, those refilling its hot set after the full flushes its CPU took"),
    Metric("other_refill_cycles_per_round", "cycles per round", "round",
           "of the other threads' cycles, those refilling their hot sets after the full flushes their CPUs took "
           "(a busy thread pays them whether or not it touches the range)"),
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
    *(Metric(trace_metric(role, kind), "events per flushing call", "replicate",
             f"{words}; on {where}; counted between the trial's markers (timed rounds only)")
      for role, where in TRACE_ROLES.items() for kind, words in TRACE_KINDS.items()),
    Metric("trace_lost_events", "events", "replicate",
           "trace events the ring buffer lost in the trial (overrun, commit overrun, dropped; or a marker "
           "missing): its trace_* rates are NaN"),
    # refill and lazy_wake cells (the other thread's passes over its own buffer)
    Metric("ws_pass_extra_cycles", "cycles per pass", "replicate",
           "the other thread's mean pass over its buffer right after a flushing call minus its mean quiet pass"),
    Metric("ws_lost_cycles_per_flush", "cycles per flush", "replicate",
           "ws_pass_extra_cycles times the passes after a call, over the flushes the other CPUs took (trace: "
           "remote partial and full, full switch flushes); NaN without a usable trace"),
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
