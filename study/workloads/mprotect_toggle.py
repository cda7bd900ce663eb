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

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from study.engine.ops import OP_ACCESS, OP_MADV_FREE, OP_MPROTECT
from study.params import param
from study.workloads.spec import Call, Condition, Panel, WorkloadSpec


@dataclass(frozen=True)
class MprotectToggle(WorkloadSpec):
    """The seed's loop: mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE); write."""

    name: str = param("mprotect_toggle", "name", "the workload (its module and option file)")
    remote_access_rate: float = param(0.0, "chance per window", "probability that each other running thread "
                                                                "touches a random page of the range in each window "
                                                                "of a round", low=0.0, high=1.0)
    remote_write_share: float = param(0.0, "share", "share of those touches that are writes (only in the "
                                                    "writable window)", low=0.0, high=1.0)

    ROLES: ClassVar[dict[str, tuple[str, str]]] = {
        "initiator": ("thread 0, the caller of the mprotect loop", "initiator_working_set"),
        "others": ("the other threads, busy in the mm (reading or writing the range at remote_access_rate)",
                   "working_set"),
        "sleepers": ("the other threads asleep with the mm loaded (lazy_share)", "sleeper_working_set"),
    }
    CALLS: ClassVar[dict[str, Call]] = {
        "mprotect_ro": Call("mprotect(PROT_READ)", "thread 0 write-protects the range", flushes=True),
        "mprotect_rw": Call("mprotect(PROT_READ|PROT_WRITE)", "thread 0 makes the range writable again",
                            flushes=True),
        "write": Call("a write", "thread 0 writes each page it keeps dirty"),
        "remote_access": Call("an access by another thread", "another thread of the mm reads or writes the range"),
    }
    CONDITIONS: ClassVar[tuple[Condition, ...]] = WorkloadSpec.CONDITIONS + (
        Condition("remote_access_rate", (0.0, 0.25, 0.5, 1.0), "the other threads touching the range: an entry "
                  "a relaxed promotion leaves read-only faults on their next write", refine="linear"),
    )
    # remote writes into the window a relaxed flush leaves open are what make relaxed lose
    CROSSOVER: ClassVar[tuple[str, ...]] = ("workload.remote_write_share", "workload.remote_access_rate",
                                            "workload.threads", "workload.dirty_ratio")
    TITLE: ClassVar[str] = "the seed's mprotect toggle"
    ABOUT: ClassVar[str] = (
        "The seed's benchmark: thread 0 loops over mprotect(PROT_READ), mprotect(PROT_READ|PROT_WRITE) and a "
        "write of the pages it keeps dirty; the other threads run in the mm and may touch the range.")
    PANEL: ClassVar[Panel | None] = Panel(("workload.threads", "workload.pages", "workload.dirty_ratio"),
                                          ("lat_mprotect_ro", "lat_mprotect_rw", "total_cycles_per_round"),
                                          "relaxed_flush_on_upgrade")

    def loop_steps(self) -> int:
        # two mprotects, a write step per page, and a step per other thread in each window
        return 2 + self.pages + (2 * (self.threads - 1) if self.remote_access_rate > 0 else 0)

    def setup(self, d, work) -> None:
        """MADV_FREE the range, then write the pages the loop keeps writing (not measured).

        Lanes of different dirty ratios (LANE_FIELDS): a lane below 1 draws its written pages and
        takes the MADV_FREE, a lane at 1 does neither, each as its run alone."""
        P = self.pages
        ratio = np.asarray(d.lane_values(self, "dirty_ratio"), float)
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

    def run_round(self, d, work, running) -> None:
        """One loop iteration for every replicate."""
        P = self.pages
        written = d.state["written"]
        lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 0)
        d.record("mprotect_ro", lat, flush)
        self._remote_window(d, work, running, writable=False)

        lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 1)
        d.record("mprotect_rw", lat, flush)
        for page in range(P):
            act = None if written[page].all() else written[page]
            lat, _, _ = d.op(OP_ACCESS, 0, page, 1, 1, active=act)
            d.record("write", lat, active=act)
        self._remote_window(d, work, running, writable=True)

    def _remote_window(self, d, work, running, writable: bool) -> None:
        """Each other running thread touches a random page with probability remote_access_rate."""
        R, P = d.R, self.pages
        if self.remote_access_rate == 0.0:
            return   # the other threads never touch the range: nothing to draw or do
        for cpu in np.flatnonzero(running):
            act = work.random(R) < self.remote_access_rate
            page = work.integers(0, P, R)
            write = (work.random(R) < self.remote_write_share) & writable
            lat, _, _ = d.op(OP_ACCESS, cpu, page, 1, write.astype(np.int8), active=act)
            d.record("remote_access", lat, active=act)

