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

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from study.engine.ops import (
    ACCESS_RETRY,
    OP_ACCESS,
    OP_MADV_FREE,
    OP_SWITCH_MM,
    OP_UFFD_WP,
    UFFD_UNPROTECT,
    UFFD_UNPROTECT_WRITE_LIKELY,
)
from study.errors import ConfigError
from study.params import param
from study.workloads.spec import Call, Condition, Panel, WorkloadSpec


@dataclass(frozen=True)
class UffdWp(WorkloadSpec):
    """userfaultfd write-protect: a monitor (thread 0) protects, application threads write."""

    name: str = param("uffd_wp", "name", "the workload (its module and option file)")
    threads: int = param(2, "threads", "the monitor (thread 0) and the application threads (at least one); at "
                                       "most the machine's CPUs", low=2)
    write_rate: float = param(0.5, "chance per step", "probability that each application thread writes a random "
                                                      "page of the range per write step", low=0.0, high=1.0)
    writes_per_round: int = param(4, "steps", "steps of application writes between two protect calls of the "
                                              "monitor", low=1, high=100_000)
    fault_roundtrip: int = param(8000, "cycles", "cycles from the fault to the monitor reading the event, plus "
                                                 "waking the thread after", low=0, high=100_000_000)
    write_likely: bool = param(False, "flag", "the monitor passes UFFD_FLAGS_WRITE_LIKELY when it unprotects: the "
                                              "hint of the RFC's own tree (an unmerged series), which only a kernel "
                                              "with uffd_access_hints has; QEMU and released kernels pass none")

    ROLES: ClassVar[dict[str, tuple[str, str]]] = {
        "initiator": ("thread 0, the monitor that write-protects and resolves the faults", "initiator_working_set"),
        "others": ("the application threads, writing into the range", "working_set"),
        "sleepers": ("application threads asleep with the mm loaded (lazy_share)", "sleeper_working_set"),
    }
    CALLS: ClassVar[dict[str, Call]] = {
        "uffd_protect": Call("UFFDIO_WRITEPROTECT (protect)", "the monitor write-protects the range", flushes=True),
        "uffd_resolve": Call("a write that took a uffd-wp fault", "an application write from its fault until it "
                                                                  "completed: the monitor's round trip, unprotect, "
                                                                  "wake-up and the retry"),
        "uffd_write": Call("a write without a uffd-wp fault", "an application write to a page not protected"),
    }
    CONDITIONS: ClassVar[tuple[Condition, ...]] = WorkloadSpec.CONDITIONS + (
        Condition("write_likely", (False, True), "the RFC tree's UFFD_FLAGS_WRITE_LIKELY on unprotect, which only a "
                  "kernel with uffd_access_hints has: without it the RFC's uffd patches never act"),
    )
    CROSSOVER: ClassVar[tuple[str, ...]] = ("workload.write_rate", "workload.threads", "workload.dirty_ratio")
    TITLE: ClassVar[str] = "userfaultfd write-protect"
    ABOUT: ClassVar[str] = (
        "userfaultfd write-protect: a monitor (thread 0) write-protects a range, application threads write into it "
        "and take uffd-wp faults, and the monitor resolves each with UFFDIO_WRITEPROTECT unprotect. The protect "
        "(RW\u2192RO of dirty pages) stays strict under both policies; the unprotect (RO\u2192RW) is where relaxed "
        "saves the shootdown on kernels that map the page writable there (mainline; the RFC's patch 2 with the "
        "hint); on the RFC's base the unprotect clears the uffd-wp bit only and the retried write takes a "
        "`wp_page_reuse` fault. `uffd_unprotect_mkdirty` (patch 1) spares the writer's retry the dirty-bit walk.")
    PANEL: ClassVar[Panel | None] = Panel(("workload.threads", "workload.write_rate", "workload.writes_per_round",
                                           "workload.pages"),
                                          ("lat_uffd_protect", "lat_uffd_resolve", "total_cycles_per_round"),
                                          "uffd_unprotect_mkdirty")

    def validate(self, machine, prefix="workload"):
        if self.threads < 2:   # before the range check: say why
            raise ConfigError(f"{prefix}.threads", "uffd_wp needs >= 2 threads (a monitor and an application thread)")
        return super().validate(machine, prefix)

    def check_kernel(self, kernel, prefix="workload"):
        if self.write_likely and not getattr(kernel, "uffd_access_hints", False):
            raise ConfigError(f"{prefix}.write_likely",
                              f"kernel {kernel.name} has no UFFD_FLAGS_WRITE_LIKELY: the hint exists only in the RFC's "
                              "own tree (the unmerged access/write hints series; kernel fact uffd_access_hints); "
                              "set workload.write_likely=false")

    def loop_steps(self) -> int:
        # per writer and write step: the write, and (with a fault pending in some replicate)
        # the monitor's unprotect and the retried write
        return 1 + 3 * self.writes_per_round * (self.threads - 1)

    def events_per_round(self, n_cpus: int) -> float:
        return super().events_per_round(n_cpus) + 4 * self.writes_per_round

    def booked_cycles_per_round(self) -> float:
        # at most one fault per writer and write step, each booking the monitor's round trip
        return float(self.fault_roundtrip * self.writes_per_round * (self.threads - 1))

    def setup(self, d, work) -> None:
        """MADV_FREE the range, then rewrite each page with probability dirty_ratio (not measured).

        Both are masked steps (nobody acts where the ratio is 1, or where the page is not
        rewritten), so lanes of different dirty ratios share the run (UffdWp.LANE_FIELDS)."""
        ratio = d.lane_values(self, "dirty_ratio")
        d.op(OP_MADV_FREE, 0, 0, self.pages, 0, active=d.where_lanes(np.asarray(ratio) < 1.0))
        for page in range(self.pages):
            act = d.chance(work, ratio)
            d.op(OP_ACCESS, 0, page, 1, 1, active=act)

    def run_round(self, d, work, running) -> None:
        R, P = d.R, self.pages
        lat, flush, _ = d.op(OP_UFFD_WP, 0, 0, P, 1)
        d.record("uffd_protect", lat, flush)
        for _ in range(self.writes_per_round):
            for cpu in np.flatnonzero(running):
                act = work.random(R) < self.write_rate
                page = work.integers(0, P, R)
                lat, _, pending = d.op(OP_ACCESS, cpu, page, 1, 1, active=act)
                d.record("uffd_write", lat, active=act & ~pending)
                # The writer sleeps in handle_userfault() until the monitor wakes it: its CPU goes
                # idle in lazy TLB mode (enter_lazy_tlb), so the unprotect's shootdown skips it
                # (should_flush_tlb(): is_lazy).  The monitor resolves the fault: read the event,
                # unprotect the page, wake the writer, whose CPU switches the mm back in
                # (switch_mm_irqs_off(): a full flush if it missed a generation) before the retry.
                d.op(OP_SWITCH_MM, cpu, arg=1, active=pending)
                unprotect = UFFD_UNPROTECT_WRITE_LIKELY if self.write_likely else UFFD_UNPROTECT
                resolve, _, _ = d.op(OP_UFFD_WP, 0, page, 1, unprotect, active=pending)
                wake, _, _ = d.op(OP_SWITCH_MM, cpu, arg=0, active=pending)
                # handle_userfault() returned VM_FAULT_RETRY: the write retries in the same
                # exception (FAULT_FLAG_TRIED), then re-executes
                retry, _, _ = d.op(OP_ACCESS, cpu, page, 1, ACCESS_RETRY, active=pending)
                d.initiator_cycles += np.where(pending, self.fault_roundtrip, 0)
                d.record("uffd_resolve", lat + self.fault_roundtrip + resolve + wake + retry, active=pending)
