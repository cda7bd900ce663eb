"""An allocator's cycle: MADV_FREE a range, reuse part of it, write-protect it, unprotect it.

Initial state: every page was written once when first touched (the engine's initial state:
writable, dirty, young); the first round's MADV_FREE cleans it.  MADV_FREE clears Dirty and
Accessed (madvise_free_pte_range(), strict flush of the PTEs that were young or dirty).
``dirty_ratio`` is the probability that each page is rewritten after each MADV_FREE, which
sets Dirty again; every clean page at write-protect time is one MADV_FREE cleaned and
nobody wrote since.  Under the relaxed policy the write-protect (RW->RO) escapes the
shootdown only when no page of the range is dirty (patch 12), so the share of strict
demotions should follow 1-(1-d)^k for k pages.  On the RFC's base, mprotect(RW) leaves the
clean pages read-only (no flush) and a rewrite takes a wp_page_reuse() fault instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from study.engine.ops import OP_ACCESS, OP_MADV_FREE, OP_MPROTECT
from study.params import param
from study.workloads.spec import Call, Condition, Panel, WorkloadSpec


@dataclass(frozen=True)
class MadvFree(WorkloadSpec):
    """An allocator: MADV_FREE a range, reuse part of it, write-protect it, unprotect it."""

    name: str = param("madv_free", "name", "the workload (its module and option file)")
    pages: int = param(8, "pages", "pages in the range each call covers", low=1, high=512)
    dirty_ratio: float = param(0.5, "share", "chance that each page is rewritten (dirtied) after each MADV_FREE; "
                                             "every clean page at write-protect time was cleaned by MADV_FREE",
                               low=0.0, high=1.0)

    ROLES: ClassVar[dict[str, tuple[str, str]]] = {
        "initiator": ("thread 0, the allocator that frees, reuses and write-protects the range",
                      "initiator_working_set"),
        "others": ("the other threads of the program, busy in the mm without touching the range", "working_set"),
        "sleepers": ("the other threads asleep with the mm loaded (lazy_share)", "sleeper_working_set"),
    }
    CALLS: ClassVar[dict[str, Call]] = {
        "madv_free": Call("madvise(MADV_FREE)", "thread 0 frees the range", flushes=True),
        "write": Call("a write", "thread 0 rewrites a page it reuses"),
        "mprotect_ro": Call("mprotect(PROT_READ)", "thread 0 write-protects the range", flushes=True),
        "mprotect_rw": Call("mprotect(PROT_READ|PROT_WRITE)", "thread 0 makes the range writable again",
                            flushes=True),
    }
    CONDITIONS: ClassVar[tuple[Condition, ...]] = WorkloadSpec.CONDITIONS + (
        Condition("dirty_ratio", (0.0, 0.1, 0.5, 1.0), "the share of reused pages rewritten: a clean page's "
                  "write-protect needs no flush under patch 12, a dirty one a strict flush", refine="linear"),
    )
    CROSSOVER: ClassVar[tuple[str, ...]] = ("workload.threads", "workload.dirty_ratio")
    TITLE: ClassVar[str] = "an allocator's MADV_FREE cycle"
    ABOUT: ClassVar[str] = (
        "An allocator's cycle: MADV_FREE a range (clears Dirty and Accessed, with a strict flush), rewrite a share d "
        "of its pages (the dirty ratio), write-protect the range, unprotect it. Under relaxed a write-protect of a "
        "range with no dirty PTE needs no flush at all (`no_flush_clean_wrprotect`, patch 12), but one dirty page "
        "forces the whole range to a strict shootdown, so a k-page range goes strict with probability "
        "1\u2212(1\u2212d)^k. The seed predicts that with MADV_FREE'd or never-dirtied pages relaxed also removes the "
        "shootdown from PROT_READ. What strict does with those clean pages depends on the kernel: on `rfc_base` "
        "mprotect(PROT_READ|PROT_WRITE) leaves them read-only (`can_change_pte_writable` requires a dirty PTE), so "
        "the next write-protect has nothing to change and sends no shootdown either; on `mainline` they are mapped "
        "writable and every write-protect shoots down.")
    PANEL: ClassVar[Panel | None] = Panel(("workload.dirty_ratio", "workload.pages", "workload.threads"),
                                          ("lat_madv_free", "lat_mprotect_ro", "total_cycles_per_round"),
                                          "no_flush_clean_wrprotect")
    PREDICTED_STRICT_SHARE: ClassVar[str | None] = "mprotect_ro"

    def loop_steps(self) -> int:
        return 3 + self.pages

    def run_round(self, d, work, running) -> None:
        P = self.pages
        lat, flush, _ = d.op(OP_MADV_FREE, 0, 0, P, 0)
        d.record("madv_free", lat, flush)
        ratio = d.lane_values(self, "dirty_ratio")   # one per lane where lanes differ (LANE_FIELDS)
        for page in range(P):
            act = d.chance(work, ratio)
            lat, _, _ = d.op(OP_ACCESS, 0, page, 1, 1, active=act)
            d.record("write", lat, active=act)
        lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 0)
        d.record("mprotect_ro", lat, flush)
        lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 1)
        d.record("mprotect_rw", lat, flush)
