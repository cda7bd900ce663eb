"""An allocator's cycle: MADV_FREE a range, reuse part of it, write-protect it, unprotect it.

MADV_FREE clears Dirty and Accessed (strict flush).  Each page is rewritten with
probability dirty_ratio, which sets Dirty again.  Under the relaxed policy the
write-protect (RW->RO) escapes the shootdown only when no page of the range is dirty, so
the share of strict demotions should follow 1-(1-d)^k for k pages.
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
    for page in range(P):
        act = d.chance(work, spec.dirty_ratio)
        lat, _, _ = d.op(OP_ACCESS, 0, page, 1, 1, active=act)
        d.record("write", lat, active=act)
    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 0)
    d.record("mprotect_ro", lat, flush)
    lat, flush, _ = d.op(OP_MPROTECT, 0, 0, P, 1)
    d.record("mprotect_rw", lat, flush)
