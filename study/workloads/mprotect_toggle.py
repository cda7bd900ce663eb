"""The seed's benchmark, generalised: mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE); write.

Thread 0 toggles the range.  The other running threads may touch it: reads while it is
read-only (they cache read-only entries), reads or writes while it is writable — a write
through an entry left stale by a relaxed promotion is the spurious fault the RFC trades
the shootdown for.
"""

from __future__ import annotations

import numpy as np

from study.engine.ops import OP_ACCESS, OP_MPROTECT
from study.workloads.driver import Driver
from study.workloads.spec import MprotectToggle

FLUSH_LABELS = ("mprotect_ro", "mprotect_rw")


def run_round(spec: MprotectToggle, d: Driver, work: np.random.Generator, running: np.ndarray) -> None:
    """One loop iteration for every replicate."""
    P = spec.pages
    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 0)
    d.record("mprotect_ro", lat, flush)
    _remote_window(spec, d, work, running, writable=False)

    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 1)
    d.record("mprotect_rw", lat, flush)
    for page in range(P):
        act = d.chance(work, spec.dirty_ratio)
        lat, _, _ = d.op(OP_ACCESS, 0, page, 1, 1, active=act)
        d.record("write", lat, active=act)
    _remote_window(spec, d, work, running, writable=True)


def _remote_window(spec, d: Driver, work, running, writable: bool) -> None:
    """Each other running thread touches a random page with probability remote_access_rate."""
    R, P = d.R, spec.pages
    if spec.remote_access_rate == 0.0:
        return   # the other threads never touch the range: nothing to draw or do
    for cpu in np.flatnonzero(running):
        act = work.random(R) < spec.remote_access_rate
        page = work.integers(0, P, R)
        write = (work.random(R) < spec.remote_write_share) & writable
        lat, _, _ = d.op(OP_ACCESS, cpu, page, 1, write.astype(np.int8), active=act)
        d.record("remote_access", lat, active=act)
