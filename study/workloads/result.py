"""What one simulated cell returns: per-replicate metrics and counters, per-call samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from study.engine import ops

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
