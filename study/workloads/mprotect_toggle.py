"""The seed's benchmark, generalised: mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE); write.

Thread 0 toggles the range.  The other running threads may touch it: reads while it is
read-only (they cache read-only entries), reads or writes while it is writable — a write
through an entry left stale by a relaxed promotion is the spurious fault the RFC trades
the shootdown for.

Page states, and what ``dirty_ratio`` means here: every page of the range was written
once when it was first touched (the engine's initial state: writable, dirty, young).
Before the loop the program MADV_FREEs the range (clearing Dirty and Accessed), then writes
the pages it will keep writing.  Each page is such a *written* page with probability
``dirty_ratio`` (drawn once per replicate and page): thread 0 writes it in every round, so
it is dirty whenever the loop write-protects it.  The other pages stay clean since that
MADV_FREE unless another thread writes them (``remote_write_share``).  ``dirty_ratio=1`` is
the seed's loop.
"""

from __future__ import annotations

import numpy as np

from study.engine.ops import OP_ACCESS, OP_MADV_FREE, OP_MPROTECT
from study.workloads.driver import Driver
from study.workloads.spec import MprotectToggle

FLUSH_LABELS = ("mprotect_ro", "mprotect_rw")


def setup(spec: MprotectToggle, d: Driver, work: np.random.Generator) -> None:
    """MADV_FREE the range, then write the pages the loop keeps writing (not measured).

    Lanes of different dirty ratios (LANE_FIELDS): a lane below 1 draws its written pages and
    takes the MADV_FREE, a lane at 1 does neither, each as its run alone."""
    P = spec.pages
    ratio = np.asarray(d.lane_values(spec, "dirty_ratio"), float)
    freed = ratio < 1.0
    written = np.ones((P, d.R), bool)
    if freed.any():
        if ratio.ndim:
            per_replicate = np.repeat(ratio, d.R_lane)
            drawn = work.random((P, d.R), lanes=freed) < per_replicate
            written = np.where(per_replicate < 1.0, drawn, written)
        else:
            written = work.random((P, d.R)) < float(ratio)
        d.op(OP_MADV_FREE, 0, 0, P, 0, active=d.where_lanes(freed))
    d.state["written"] = written
    for page in range(P):
        act = None if written[page].all() else written[page]
        d.op(OP_ACCESS, 0, page, 1, 1, active=act)


def run_round(spec: MprotectToggle, d: Driver, work: np.random.Generator, running: np.ndarray) -> None:
    """One loop iteration for every replicate."""
    P = spec.pages
    written = d.state["written"]
    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 0)
    d.record("mprotect_ro", lat, flush)
    _remote_window(spec, d, work, running, writable=False)

    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 1)
    d.record("mprotect_rw", lat, flush)
    for page in range(P):
        act = None if written[page].all() else written[page]
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
