"""userfaultfd write-protect: snapshots, live migration, checkpointing.

Thread 0 is the monitor: each round it write-protects the range (UFFDIO_WRITEPROTECT,
RW->RO plus the uffd-wp bit).  The application threads write into it; a write to a
protected page takes a uffd-wp fault, the monitor reads the event and write-unprotects
the page, and the write is retried.  Mainline maps the page writable without Dirty and
Accessed and shoots down; the RFC does a relaxed flush and sets both (the hint), so the
retried write takes neither a fault nor the dirty-bit walk.
"""

from __future__ import annotations

import numpy as np

from study.engine.ops import OP_ACCESS, OP_UFFD_WP
from study.workloads.driver import Driver
from study.workloads.spec import UffdWp

FLUSH_LABELS = ("uffd_protect",)


def setup(spec: UffdWp, d: Driver, work: np.random.Generator) -> None:
    """Before the first round each page was dirtied with probability dirty_ratio."""
    for page in range(spec.pages):
        act = work.random(d.R) < spec.dirty_ratio
        d.op(OP_ACCESS, 0, page, 1, 1, active=act)


def run_round(spec: UffdWp, d: Driver, work: np.random.Generator, running: np.ndarray) -> None:
    R, P = d.R, spec.pages
    lat, flush, _ = d.op(OP_UFFD_WP, 0, 0, P, 1)
    d.record("uffd_protect", lat, flush)
    for _ in range(spec.writes_per_round):
        for cpu in np.flatnonzero(running):
            act = work.random(R) < spec.write_rate
            page = work.integers(0, P, R)
            lat, _, pending = d.op(OP_ACCESS, cpu, page, 1, 1, active=act)
            d.record("uffd_write", lat, active=act & ~pending)
            # The monitor resolves the fault: read the event, unprotect the page, wake the writer.
            resolve, _, _ = d.op(OP_UFFD_WP, 0, page, 1, 0, active=pending)
            retry, _, _ = d.op(OP_ACCESS, cpu, page, 1, 1, active=pending)
            d.initiator_cycles += np.where(pending, spec.fault_roundtrip, 0)
            d.record("uffd_resolve", lat + spec.fault_roundtrip + resolve + retry, active=pending)
