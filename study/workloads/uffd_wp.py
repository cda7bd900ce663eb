"""userfaultfd write-protect: snapshots, live migration, checkpointing.

Thread 0 is the monitor: each round it write-protects the range (UFFDIO_WRITEPROTECT,
RW->RO plus the uffd-wp bit).  The application threads write into it; a write to a
protected page takes a uffd-wp fault, the monitor reads the event and write-unprotects
the page (with UFFD_FLAGS_WRITE_LIKELY if ``write_likely``), and the write is retried.
On the RFC's base, unprotect only clears the uffd-wp bit (no flush) and the retried write
takes a do_wp_page() -> wp_page_reuse() fault; mainline maps the page writable (clean) and
shoots down; the RFC with the hint sets Dirty and Accessed (patch 1), maps it writable
(patch 2) and takes a relaxed flush (patches 9-11), so the retried write takes neither a
fault nor the dirty-bit walk.

Page states, and what ``dirty_ratio`` means here: every page was written once when first
touched (the engine's initial state).  Before the monitor starts, the program MADV_FREEs
the range and rewrites each page with probability ``dirty_ratio``: that is the share of
pages dirty when the monitor first protects them; the others are clean because of that
MADV_FREE.  A page an application thread writes is dirty from then on.
"""

from __future__ import annotations

import numpy as np

from study.engine.ops import (
    OP_ACCESS,
    OP_MADV_FREE,
    OP_SWITCH_MM,
    OP_UFFD_WP,
    UFFD_UNPROTECT,
    UFFD_UNPROTECT_WRITE_LIKELY,
)
from study.workloads.driver import Driver
from study.workloads.spec import UffdWp

FLUSH_LABELS = ("uffd_protect",)


def setup(spec: UffdWp, d: Driver, work: np.random.Generator) -> None:
    """MADV_FREE the range, then rewrite each page with probability dirty_ratio (not measured).

    Both are masked steps (nobody acts where the ratio is 1, or where the page is not
    rewritten), so lanes of different dirty ratios share the run (UffdWp.LANE_FIELDS)."""
    ratio = d.lane_values(spec, "dirty_ratio")
    d.op(OP_MADV_FREE, 0, 0, spec.pages, 0, active=d.where_lanes(np.asarray(ratio) < 1.0))
    for page in range(spec.pages):
        act = d.chance(work, ratio)
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
            # The writer sleeps in handle_userfault() until the monitor wakes it: its CPU goes
            # idle in lazy TLB mode (enter_lazy_tlb), so the unprotect's shootdown skips it
            # (should_flush_tlb(): is_lazy).  The monitor resolves the fault: read the event,
            # unprotect the page, wake the writer, whose CPU switches the mm back in
            # (switch_mm_irqs_off(): a full flush if it missed a generation) before the retry.
            d.op(OP_SWITCH_MM, cpu, arg=1, active=pending)
            unprotect = UFFD_UNPROTECT_WRITE_LIKELY if spec.write_likely else UFFD_UNPROTECT
            resolve, _, _ = d.op(OP_UFFD_WP, 0, page, 1, unprotect, active=pending)
            wake, _, _ = d.op(OP_SWITCH_MM, cpu, arg=0, active=pending)
            retry, _, _ = d.op(OP_ACCESS, cpu, page, 1, 1, active=pending)
            d.initiator_cycles += np.where(pending, spec.fault_roundtrip, 0)
            d.record("uffd_resolve", lat + spec.fault_roundtrip + resolve + wake + retry, active=pending)
