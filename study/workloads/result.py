"""What one simulated cell returns: per-replicate metrics and counters, per-call samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from study.engine import ops

# Operation labels, one per kind of call a workload makes; latencies are per label.
LABELS = (
    "mprotect_ro",      # mprotect(PROT_READ) by thread 0
    "mprotect_rw",      # mprotect(PROT_READ|PROT_WRITE) by thread 0
    "write",            # a write by thread 0 (or an allocator's rewrite)
    "remote_access",    # an access by another thread of the mm
    "madv_free",        # madvise(MADV_FREE) by thread 0
    "uffd_protect",     # UFFDIO_WRITEPROTECT(protect) by the monitor
    "uffd_resolve",     # an application write that took a uffd-wp fault, until it completed
    "uffd_write",       # an application write that did not take a uffd-wp fault
    "lazy_wakeup",      # a sleeping thread's CPU switching the mm back in
)

# Event counters, summed per replicate: defined by the engine that counts them.
COUNTERS = ops.COUNTERS


@dataclass
class CellResult:
    """One cell's output for R replicates.

    ``metrics`` holds one float per replicate: ``lat_<label>`` (mean latency per call of
    that label, NaN if the replicate made no such call), ``strict_share_<label>`` (share of
    those calls that took the strict path), and the per-round cycle totals
    ``total_cycles_per_round`` = ``initiator_cycles_per_round`` + ``other_cycles_per_round``
    + ``stolen_cycles_per_round``.  ``counters`` holds per-replicate totals of COUNTERS.
    ``samples`` holds per-call latencies of each label (a deterministic prefix, for
    medians, p99 and distributions).
    """

    replicates: int
    rounds: int
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    # optional: events per label summed over replicates (simulate_cell(label_counters=True))
    label_counters: dict[str, dict[str, int]] | None = None

    MAIN_METRIC = "total_cycles_per_round"
