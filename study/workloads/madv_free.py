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

import numpy as np

from study.engine.ops import OP_ACCESS, OP_MADV_FREE, OP_MPROTECT
from study.workloads.driver import Driver
from study.workloads.spec import MadvFree

FLUSH_LABELS = ("madv_free", "mprotect_ro", "mprotect_rw")


def run_round(spec: MadvFree, d: Driver, work: np.random.Generator, running: np.ndarray) -> None:
    P = spec.pages
    lat, flush, _ = d.op(OP_MADV_FREE, 0, 0, P, 0)
    d.record("madv_free", lat, flush)
    ratio = d.lane_values(spec, "dirty_ratio")   # one per lane where lanes differ (LANE_FIELDS)
    for page in range(P):
        act = d.chance(work, ratio)
        lat, _, _ = d.op(OP_ACCESS, 0, page, 1, 1, active=act)
        d.record("write", lat, active=act)
    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 0)
    d.record("mprotect_ro", lat, flush)
    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 1)
    d.record("mprotect_rw", lat, flush)
