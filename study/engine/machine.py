"""Machine description: topology, event costs (integer cycles) and hardware facts.

Every cost is the cost of one named event (arch/x86/mm/tlb.c vocabulary); none belongs to a
single benchmark cell.  Costs that depend on how far apart two CPUs are come per distance
class: ``smt`` (hyper-thread sibling), ``core`` (another core of the same socket) and
``socket`` (another socket).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from study.errors import ConfigError

# Distance classes between two CPUs, as array indices.
DIST_SELF, DIST_SMT, DIST_CORE, DIST_SOCKET = 0, 1, 2, 3
DISTANCE_NAMES = ("self", "smt", "core", "socket")

PLACEMENTS = ("smt", "core", "socket")
# The largest base cost of one event, in cycles: a second at 100 GHz.  Anything larger (or
# NaN/inf) is a typo, and would overflow the engine's int64 cycle counters.
MAX_COST = 1e8
# How the local APIC sends an IPI to a mask of CPUs (arch/x86/kernel/apic/):
#   x2apic_phys    x2apic_phys.c  __x2apic_send_IPI_mask(): one ICR write (an MSR write) per target
#   x2apic_cluster x2apic_cluster.c __x2apic_send_IPI_mask(): one ICR write per cluster of
#                  16 logical APIC IDs, covering every target of that cluster
#   xapic          ipi.c default_send_IPI_mask_sequence_phys(): one MMIO ICR write per target,
#                  each after __xapic_wait_icr_idle() polled the previous one's delivery status
APIC_MODES = ("x2apic_phys", "x2apic_cluster", "xapic")
VIRT_MODES = ("none", "kvm")
# x2APIC logical destination: a cluster is 16 consecutive APIC IDs (x2apic_cluster.c)
X2APIC_CLUSTER_SIZE = 16
# kvm_send_ipi_mask() -> __send_ipi_mask(): one KVM_HC_SEND_IPI hypercall carries a bitmap of
# 128 APIC IDs (KVM_IPI_CLUSTER_SIZE = 2 * BITS_PER_LONG)
KVM_IPI_CLUSTER_SIZE = 128
# What the hardware walk that sets a PTE's Dirty bit does when it finds the PTE read-only
# (a write through a stale writable entry whose Dirty is clear).  See Machine.dirty_walk.
DIRTY_WALKS = ("cet", "pre_cet", "completes")


@dataclass(frozen=True)
class ByDistance:
    """A cost that depends on the distance class between initiator and target."""

    smt: float = 0.0
    core: float = 0.0
    socket: float = 0.0

    def table(self) -> np.ndarray:
        """Costs indexed by distance class; ``self`` costs nothing."""
        return np.array([0.0, self.smt, self.core, self.socket])


@dataclass(frozen=True)
class Costs:
    """Base cost in cycles of each event the engine charges.  Jitter is applied per event."""

    # syscall entry/exit plus the fixed work of the call (mmap_lock, VMA lookup, mmu_gather)
    syscall_mprotect: float = 2200.0
    syscall_uffd_wp: float = 2400.0
    syscall_madvise: float = 2000.0
    # change_pte_range(): one PTE read-modify-write under the page-table lock
    pte_update: float = 30.0
    # can_change_pte_writable() when mprotect/uffd try to map writable directly
    pte_mkwrite_check: float = 30.0
    # flush_tlb_mm_range() looking at mm_cpumask for other CPUs (strict path only)
    cpumask_scan: float = 30.0
    # one INVLPG
    invlpg: float = 260.0
    # full flush of the CPU's context (CR3 reload)
    flush_full: float = 96.0
    # moving the mm->tlb_gen cache line to the CPU that needs it
    tlb_gen_xfer: ByDistance = field(default_factory=lambda: ByDistance(40.0, 120.0, 300.0))
    # one ICR write on the initiator (x2APIC: a WRMSR; xAPIC: an MMIO store)
    ipi_send: float = 150.0
    # xAPIC only: __xapic_wait_icr_idle() before each ICR write, polling the delivery status
    icr_idle_wait: float = 200.0
    # one cache line owned by another CPU, read or locked-RMW'd (by distance): the is_lazy line
    # that should_flush_tlb()/tlb_is_not_lazy() reads per mm_cpumask CPU, and the csd lock and
    # llist_add() onto the target's call_single_queue per target (smp_call_function_many_cond())
    remote_line: ByDistance = field(default_factory=lambda: ByDistance(40.0, 120.0, 300.0))
    # from the ICR write to the handler's first instruction on the target
    ipi_deliver: ByDistance = field(default_factory=lambda: ByDistance(500.0, 900.0, 1500.0))
    # the target's acknowledgement (csd unlock) becoming visible to the waiting initiator
    ipi_ack: ByDistance = field(default_factory=lambda: ByDistance(60.0, 150.0, 350.0))
    # interrupt entry/exit around flush_tlb_func on the target
    irq_entry_exit: float = 500.0
    # a TLB hit, and a miss filled by a page walk
    tlb_hit: float = 1.0
    page_walk: float = 40.0
    # the locked walk that sets the PTE's Dirty bit on the first write through a clean entry
    dirty_walk: float = 550.0
    # page-fault entry/exit, including handle_mm_fault finding nothing to do
    fault_entry_exit: float = 1200.0
    # a true protection fault: SIGSEGV delivery and the handler's return
    sigsegv: float = 5000.0
    # switching the mm back in on a CPU (switch_mm_irqs_off), before any flush it needs
    context_switch: float = 800.0
    # PTI only (machine.pti): INVPCID of the user ASID per page of a partial flush
    # (native_flush_tlb_one_user), one CR3 write on each kernel entry and exit
    # (SWITCH_TO_KERNEL_CR3 / SWITCH_TO_USER_CR3), and the user-ASID flush a full flush defers
    # to the return to user (invalidate_user_asid(): the exit's CR3 write without NOFLUSH)
    invpcid: float = 200.0
    cr3_switch: float = 150.0
    user_asid_flush: float = 100.0
    # virt=kvm only: one VM exit and re-entry (a trapped x2APIC ICR write or a hypercall)
    vm_exit: float = 1500.0
    # virt=kvm without pv_tlb_flush: an IPI to a preempted vCPU waits until the host runs it again
    vcpu_wakeup_wait: float = 300000.0


@dataclass(frozen=True)
class Machine:
    """A machine: topology, costs, jitter and the hardware facts the policies rely on."""

    name: str = "generic"
    # whether the costs were fitted to measurements (``python -m study calibrate``)
    calibrated: bool = False
    source: str = ""
    sockets: int = 1
    cores_per_socket: int = 4
    smt: int = 2
    # how the APIC sends a mask of IPIs (APIC_MODES above)
    apic_mode: str = "x2apic_phys"
    # apic_use_ipi_shorthand (apic_smt_update(): every present CPU booted once and no
    # no_ipi_broadcast=1): native_send_call_func_ipi() sends one all-but-self IPI when the
    # mask plus the sender is every online CPU
    ipi_shorthand: bool = True
    # Page Table Isolation (X86_FEATURE_PTI): separate user and kernel ASIDs
    pti: bool = False
    # second-level TLB entries (4K): the most of a thread's working set a full flush can cost
    stlb_entries: int = 1024
    # none = bare metal; kvm = a KVM guest (IPIs cost VM exits)
    virt: str = "none"
    # kvm: kvm_send_ipi_mask() replaces the mask send by KVM_HC_SEND_IPI hypercalls
    pv_send_ipi: bool = False
    # kvm: kvm_flush_tlb_multi() flags preempted vCPUs (KVM_VCPU_FLUSH_TLB) instead of an IPI
    pv_tlb_flush: bool = False
    # kvm: share of time a vCPU is preempted by the host (steal_time.preempted set)
    vcpu_preempted_share: float = 0.0
    # The dirty-bit walk on a write through a writable TLB entry whose Dirty is clear; it
    # re-reads the PTE.  What makes "no flush on a clean RW->RO" (RFC patch 12) safe:
    #   cet:       the walk never sets Dirty on a PTE whose RW is clear; it faults (processors
    #              with CET shadow stacks, where a read-only+Dirty PTE means a shadow-stack page);
    #   pre_cet:   it faults too, but the SDM lets it leave Dirty set on the now read-only PTE;
    #              the engine always leaves it set (the costlier reading for patch 12: the next
    #              mprotect sees a dirty PTE);
    #   completes: the write lands on the read-only PTE -- no real x86 part; the negative
    #              control showing patch 12 depends on the fact.
    dirty_walk: str = "cet"
    # flush_tlb_mm_range(): ranges longer than this become a full flush
    tlb_single_page_flush_ceiling: int = 33
    # lognormal jitter (sigma of log cost) for CPU-local events and for IPI delivery
    jitter_sigma: float = 0.05
    ipi_jitter_sigma: float = 0.15
    costs: Costs = field(default_factory=Costs)

    @property
    def n_cpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.smt

    def validate(self, prefix: str = "machine") -> "Machine":
        for key in ("sockets", "cores_per_socket", "smt", "tlb_single_page_flush_ceiling", "stlb_entries"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be an integer >= 1")
        if self.apic_mode not in APIC_MODES:
            raise ConfigError(f"{prefix}.apic_mode", f"must be one of {', '.join(APIC_MODES)}, got {self.apic_mode!r}")
        if self.virt not in VIRT_MODES:
            raise ConfigError(f"{prefix}.virt", f"must be one of {', '.join(VIRT_MODES)}, got {self.virt!r}")
        if self.virt == "none":
            for key in ("pv_send_ipi", "pv_tlb_flush"):
                if getattr(self, key):
                    raise ConfigError(f"{prefix}.{key}", "is a paravirtual feature: needs virt: kvm")
            if self.vcpu_preempted_share != 0.0:
                raise ConfigError(f"{prefix}.vcpu_preempted_share", "needs virt: kvm (bare-metal CPUs are never preempted)")
        if not 0.0 <= self.vcpu_preempted_share < 1.0:
            raise ConfigError(f"{prefix}.vcpu_preempted_share", "must be a number in [0, 1)")
        if self.dirty_walk not in DIRTY_WALKS:
            raise ConfigError(f"{prefix}.dirty_walk", f"must be one of {', '.join(DIRTY_WALKS)}, got {self.dirty_walk!r}")
        for key in ("jitter_sigma", "ipi_jitter_sigma"):
            if not 0.0 <= getattr(self, key) <= 1.0:  # (NaN fails this too)
                raise ConfigError(f"{prefix}.{key}", "must be a number in [0, 1]")
        for f in fields(Costs):
            value = getattr(self.costs, f.name)
            values = dataclasses.astuple(value) if isinstance(value, ByDistance) else (value,)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= MAX_COST for v in values):
                raise ConfigError(f"{prefix}.costs.{f.name}",
                                  f"costs are cycles: finite numbers in [0, {MAX_COST:.0e}], got {value!r}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "machine") -> "Machine":
        """Build and validate a machine from plain data (a YAML file or a Hydra node)."""
        return _build(cls, data, prefix).validate(prefix)


def _build(cls, data: dict[str, Any], prefix: str):
    """Construct dataclass ``cls`` from ``data``, naming the first unknown or mistyped key."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key; allowed: {', '.join(known)}")
        default = known[key].default
        if default is dataclasses.MISSING:
            default = known[key].default_factory()
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{prefix}.{key}")
        else:
            kwargs[key] = _coerce(value, type(default), f"{prefix}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, kind: type, key: str):
    """Accept ``value`` as ``kind`` or say which type was expected."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, f"must be a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"must be a string, got {value!r}")
    return value


build_dataclass = _build


def placement_cpus(machine: Machine, threads: int, placement: str) -> list[tuple[int, int, int]]:
    """The (socket, core, smt-thread) of each application thread, thread 0 first.

    ``smt`` fills the hyper-thread siblings of a core before the next core; ``core`` uses
    one thread per physical core (first socket first) before any sibling; ``socket``
    alternates sockets.  An impossible request is an error, never a silent clamp.
    """
    if placement not in PLACEMENTS:
        raise ConfigError("workload.placement", f"must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if not 1 <= threads <= machine.n_cpus:
        raise ConfigError(
            "workload.threads",
            f"must be between 1 and the machine's {machine.n_cpus} CPUs "
            f"({machine.sockets} sockets x {machine.cores_per_socket} cores x {machine.smt} SMT), got {threads}",
        )
    S, C, T = machine.sockets, machine.cores_per_socket, machine.smt
    if placement == "smt":
        order = [(s, c, t) for s in range(S) for c in range(C) for t in range(T)]
    elif placement == "core":
        order = [(s, c, t) for t in range(T) for s in range(S) for c in range(C)]
    else:
        order = [(s, c, t) for t in range(T) for c in range(C) for s in range(S)]
    return order[:threads]


def apic_ids(machine: Machine, cpus: list[tuple[int, int, int]]) -> list[int]:
    """The APIC ID of each (socket, core, smt-thread), as Intel enumerates them (CPUID leaf 0xB):
    SMT bits, then core bits, then the package, each field a power of two wide.  Real
    firmware may leave holes between core IDs; this is the dense layout."""
    smt_bits = max(machine.smt - 1, 0).bit_length()
    core_bits = max(machine.cores_per_socket - 1, 0).bit_length()
    return [(s << (core_bits + smt_bits)) | (c << smt_bits) | t for s, c, t in cpus]


def distance_matrix(cpus: list[tuple[int, int, int]]) -> np.ndarray:
    """Distance class between every pair of the given CPUs (int8, DIST_* values)."""
    n = len(cpus)
    dist = np.empty((n, n), dtype=np.int8)
    for i, (si, ci, _) in enumerate(cpus):
        for j, (sj, cj, _) in enumerate(cpus):
            if i == j:
                dist[i, j] = DIST_SELF
            elif si != sj:
                dist[i, j] = DIST_SOCKET
            elif ci != cj:
                dist[i, j] = DIST_CORE
            else:
                dist[i, j] = DIST_SMT
    return dist
