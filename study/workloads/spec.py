"""Workload descriptions: the knobs of each workload, validated against a machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from study.engine.machine import PLACEMENTS, Machine, build_dataclass
from study.errors import ConfigError


# More TLB entries than any x86 STLB holds (a few thousand) by far; the bound keeps refill
# cycles (working_set x page_walk per full flush) inside the int64 counters.
MAX_WORKING_SET = 1 << 20


@dataclass(frozen=True)
class WorkloadSpec:
    """Knobs common to every workload."""

    name: str = "mprotect_toggle"
    # application threads of the mm, thread 0 is the initiator (or the uffd monitor)
    threads: int = 2
    # where the threads run: smt | core | socket (see study.engine.machine.placement_cpus)
    placement: str = "core"
    # pages in the range each call covers
    pages: int = 1
    # the share of pages dirty when the workload write-protects them; every other page is
    # clean because the workload MADV_FREE'd it (each workload's module docstring says how)
    dirty_ratio: float = 1.0
    # TLB entries of other memory each thread keeps hot; a full flush loses them and the
    # thread's next access refills them by page walks
    working_set: int = 0
    # share of the threads other than thread 0 that sleep with the mm loaded (lazy CPUs)
    lazy_share: float = 0.0
    # chance per round that each sleeping thread wakes up (switch_mm back in: a full flush
    # if its CPU missed a generation) and goes back to sleep
    lazy_wake_rate: float = 0.0
    # share of time each running thread other than thread 0 is on its CPU (1.0: always).  A
    # thread off its CPU leaves another process's mm loaded there: should_flush_tlb() sends
    # it no IPI and its switch back (switch_mm_irqs_off) flushes fully.  Drawn per CPU at
    # each strict flush; on a loaded machine, measure it (``python -m study measure``).
    on_cpu_share: float = 1.0

    # Knobs in which the lanes of one lockstep run may differ (study.workloads.simulate_lanes):
    # knobs that change only which replicates act in some of the workload's steps, never
    # which steps it issues.  Not a field: no part of a cell's identity.  dirty_ratio: every
    # workload's MADV_FREE and (re)writes of the pages it keeps dirty are masked steps.
    LANE_FIELDS: ClassVar[tuple[str, ...]] = ("dirty_ratio",)

    def validate(self, machine: Machine, prefix: str = "workload") -> "WorkloadSpec":
        if self.name not in WORKLOADS:
            raise ConfigError(f"{prefix}.name", f"unknown workload {self.name!r}; allowed: {', '.join(WORKLOADS)}")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"{prefix}.placement", f"must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if not 1 <= self.threads <= machine.n_cpus:
            raise ConfigError(
                f"{prefix}.threads",
                f"must be between 1 and the {machine.n_cpus} CPUs of machine {machine.name!r}, got {self.threads}",
            )
        if not 1 <= self.pages <= 512:
            raise ConfigError(f"{prefix}.pages", f"must be between 1 and 512, got {self.pages}")
        if not 0 <= self.working_set <= MAX_WORKING_SET:
            raise ConfigError(f"{prefix}.working_set",
                              f"must be between 0 and {MAX_WORKING_SET} TLB entries, got {self.working_set}")
        for key in self._ratios():
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{prefix}.{key}", f"must be in [0, 1], got {value}")
        return self

    def _ratios(self) -> tuple[str, ...]:
        return ("dirty_ratio", "lazy_share", "lazy_wake_rate", "on_cpu_share")


@dataclass(frozen=True)
class MprotectToggle(WorkloadSpec):
    """The seed's loop: mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE); write."""

    name: str = "mprotect_toggle"
    # probability that each other running thread touches the range in each window of a round
    remote_access_rate: float = 0.0
    # share of those touches that are writes (only in the writable window)
    remote_write_share: float = 0.0

    def _ratios(self):
        return super()._ratios() + ("remote_access_rate", "remote_write_share")


@dataclass(frozen=True)
class UffdWp(WorkloadSpec):
    """userfaultfd write-protect: a monitor (thread 0) protects, application threads write."""

    name: str = "uffd_wp"
    threads: int = 2
    # probability that each application thread writes a random page of the range per step
    write_rate: float = 0.5
    # steps of application writes between two protect calls of the monitor
    writes_per_round: int = 4
    # cycles from the fault to the monitor reading the event, plus waking the thread after
    fault_roundtrip: int = 8000
    # the monitor passes UFFD_FLAGS_WRITE_LIKELY when it unprotects (the RFC's hint; kernels
    # without patches 1-2 ignore it)
    write_likely: bool = True

    def validate(self, machine, prefix="workload"):
        super().validate(machine, prefix)
        if self.threads < 2:
            raise ConfigError(f"{prefix}.threads", "uffd_wp needs >= 2 threads (a monitor and an application thread)")
        if not 1 <= self.writes_per_round <= 100_000:
            raise ConfigError(f"{prefix}.writes_per_round", f"must be between 1 and 100000, got {self.writes_per_round}")
        if not 0 <= self.fault_roundtrip <= 100_000_000:
            raise ConfigError(f"{prefix}.fault_roundtrip", f"must be between 0 and 1e8 cycles, got {self.fault_roundtrip}")
        return self

    def _ratios(self):
        return super()._ratios() + ("write_rate",)


@dataclass(frozen=True)
class MadvFree(WorkloadSpec):
    """An allocator: MADV_FREE a range, reuse part of it, write-protect it, unprotect it."""

    name: str = "madv_free"
    pages: int = 8
    dirty_ratio: float = 0.5


WORKLOADS: dict[str, type[WorkloadSpec]] = {
    "mprotect_toggle": MprotectToggle,
    "uffd_wp": UffdWp,
    "madv_free": MadvFree,
}


def workload_from_dict(data: dict[str, Any], machine: Machine, prefix: str = "workload") -> WorkloadSpec:
    """Build and validate the workload named by ``data['name']``."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, "must be a mapping")
    name = data.get("name", "mprotect_toggle")
    if name not in WORKLOADS:
        raise ConfigError(f"{prefix}.name", f"unknown workload {name!r}; allowed: {', '.join(WORKLOADS)}")
    return build_dataclass(WORKLOADS[name], data, prefix).validate(machine, prefix)
