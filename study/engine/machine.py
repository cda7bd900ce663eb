"""Machine description: topology, event costs (integer cycles) and hardware facts.

Every cost is the cost of one named event (arch/x86/mm/tlb.c vocabulary); none belongs to a
single benchmark cell.  Costs that depend on how far apart two CPUs are come per distance
class: ``smt`` (hyper-thread sibling), ``core`` (another core of the same socket) and
``socket`` (another socket).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from study.errors import ConfigError
from study.params import check, param

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


def cycles(default: float, doc: str):
    """A cost: cycles of one event, finite and at most MAX_COST."""
    return param(default, "cycles", doc, low=0.0, high=MAX_COST)


@dataclass(frozen=True)
class ByDistance:
    """A cost that depends on the distance class between initiator and target."""

    smt: float = cycles(0.0, "to a hyper-thread sibling of the same core")
    core: float = cycles(0.0, "to another core of the same socket")
    socket: float = cycles(0.0, "to a CPU of another socket")

    def table(self) -> np.ndarray:
        """Costs indexed by distance class; ``self`` costs nothing."""
        return np.array([0.0, self.smt, self.core, self.socket])


def by_distance(smt: float, core: float, socket: float, doc: str):
    return param(unit="cycles", doc=doc, default_factory=lambda: ByDistance(smt, core, socket))


@dataclass(frozen=True)
class Costs:
    """Base cost in cycles of each event the engine charges.  Jitter is applied per event."""

    syscall_mprotect: float = cycles(2200.0, "mprotect() entry/exit plus the fixed work of the call (mmap_lock, "
                                             "VMA lookup, mmu_gather)")
    syscall_uffd_wp: float = cycles(2400.0, "ioctl(UFFDIO_WRITEPROTECT) entry/exit plus its fixed work")
    syscall_madvise: float = cycles(2000.0, "madvise() entry/exit plus its fixed work")
    pte_update: float = cycles(30.0, "change_pte_range(): one PTE read-modify-write under the page-table lock")
    pte_mkwrite_check: float = cycles(30.0, "can_change_pte_writable() when mprotect/uffd try to map writable "
                                            "directly")
    cpumask_scan: float = cycles(30.0, "flush_tlb_mm_range() looking at mm_cpumask for other CPUs (strict path "
                                       "only)")
    invlpg: float = cycles(260.0, "one INVLPG")
    flush_full: float = cycles(96.0, "full flush of the CPU's context (CR3 reload)")
    tlb_gen_xfer: ByDistance = by_distance(40.0, 120.0, 300.0, "moving the mm->tlb_gen cache line to the CPU that "
                                                               "needs it")
    ipi_send: float = cycles(150.0, "one ICR write on the initiator (x2APIC: a WRMSR; xAPIC: an MMIO store)")
    icr_idle_wait: float = cycles(200.0, "xAPIC only: __xapic_wait_icr_idle() before each ICR write, polling the "
                                         "delivery status")
    remote_line: ByDistance = by_distance(
        40.0, 120.0, 300.0, "one cache line owned by another CPU, read or locked-RMW'd: the is_lazy line that "
        "should_flush_tlb()/tlb_is_not_lazy() reads per mm_cpumask CPU, and the csd lock and llist_add() onto the "
        "target's call_single_queue per target (smp_call_function_many_cond())")
    ipi_deliver: ByDistance = by_distance(500.0, 900.0, 1500.0, "from the ICR write to the handler's first "
                                                                "instruction on the target")
    ipi_ack: ByDistance = by_distance(60.0, 150.0, 350.0, "the target's acknowledgement (csd unlock) becoming "
                                                          "visible to the waiting initiator")
    irq_entry_exit: float = cycles(500.0, "interrupt entry/exit around flush_tlb_func on the target")
    tlb_hit: float = cycles(1.0, "a TLB hit")
    page_walk: float = cycles(40.0, "a TLB miss filled by a page walk")
    dirty_walk: float = cycles(550.0, "the locked walk that sets the PTE's Dirty bit on the first write through a "
                                      "clean entry")
    fault_entry_exit: float = cycles(1200.0, "page-fault entry/exit, including handle_mm_fault finding nothing to "
                                             "do")
    sigsegv: float = cycles(5000.0, "a true protection fault: SIGSEGV delivery and the handler's return")
    context_switch: float = cycles(800.0, "switching the mm back in on a CPU (switch_mm_irqs_off), before any "
                                          "flush it needs")
    # PTI only (machine.pti): the user ASID's share of a flush and of each kernel entry and exit
    invpcid: float = cycles(200.0, "PTI: INVPCID of the user ASID per page of a partial flush "
                                   "(native_flush_tlb_one_user)")
    cr3_switch: float = cycles(150.0, "PTI: one CR3 write on each kernel entry and exit (SWITCH_TO_KERNEL_CR3 / "
                                      "SWITCH_TO_USER_CR3)")
    user_asid_flush: float = cycles(100.0, "PTI: the user-ASID flush a full flush defers to the return to user "
                                           "(invalidate_user_asid(): the exit's CR3 write without NOFLUSH)")
    vm_exit: float = cycles(1500.0, "virt=kvm only: one VM exit and re-entry (a trapped x2APIC ICR write or a "
                                    "hypercall)")
    vcpu_wakeup_wait: float = cycles(300000.0, "virt=kvm without pv_tlb_flush: an IPI to a preempted vCPU waits "
                                               "until the host runs it again")


@dataclass(frozen=True)
class Machine:
    """A machine: topology, costs, jitter and the hardware facts the policies rely on."""

    name: str = param("generic", "name", "the preset (its option file)")
    calibrated: bool = param(False, "flag", "whether the costs were fitted to measurements "
                                            "(python -m study calibrate)")
    source: str = param("", "text", "where the costs come from, in words")
    sockets: int = param(1, "sockets", "sockets (packages)", low=1)
    cores_per_socket: int = param(4, "cores", "physical cores per socket", low=1)
    smt: int = param(2, "threads", "hardware threads per core", low=1)
    apic_mode: str = param("x2apic_phys", "mode", "how the APIC sends a mask of IPIs: x2apic_phys one ICR write per target, x2apic_cluster one per "
                                                   "16-ID cluster, xapic one per target after an ICR-idle wait",
                           choices=APIC_MODES)
    ipi_shorthand: bool = param(True, "flag", "apic_use_ipi_shorthand (apic_smt_update(): every present CPU booted "
                                              "once and no no_ipi_broadcast=1): native_send_call_func_ipi() sends "
                                              "one all-but-self IPI when the mask plus the sender is every online "
                                              "CPU")
    pti: bool = param(False, "flag", "Page Table Isolation (X86_FEATURE_PTI): separate user and kernel ASIDs")
    stlb_entries: int = param(1024, "TLB entries", "second-level TLB entries (4K): the most of a thread's working "
                                                   "set a full flush can cost", low=1)
    virt: str = param("none", "mode", "none = bare metal; kvm = a KVM guest (IPIs cost VM exits)",
                      choices=VIRT_MODES)
    pv_send_ipi: bool = param(False, "flag", "kvm: kvm_send_ipi_mask() replaces the mask send by KVM_HC_SEND_IPI "
                                             "hypercalls")
    pv_tlb_flush: bool = param(False, "flag", "kvm: kvm_flush_tlb_multi() flags preempted vCPUs "
                                              "(KVM_VCPU_FLUSH_TLB) instead of an IPI")
    irq_loses_tlb: bool = param(False, "flag", "kvm: a vCPU that takes a flush IPI loses its TLB entries whatever "
                                               "the handler flushes (measured: a 1-page shootdown costs the thread "
                                               "a full refill), so its thread refills its hot set after a partial "
                                               "shootdown too")
    vcpu_preempted_share: float = param(0.0, "share", "kvm: share of time a vCPU is preempted by the host "
                                                      "(steal_time.preempted set)", low=0.0, high=1.0, open_high=True)
    # The dirty-bit walk on a write through a writable TLB entry whose Dirty is clear; it
    # re-reads the PTE.  What makes "no flush on a clean RW->RO" (RFC patch 12) safe:
    #   cet:       the walk never sets Dirty on a PTE whose RW is clear; it faults (processors
    #              with CET shadow stacks, where a read-only+Dirty PTE means a shadow-stack page);
    #   pre_cet:   it faults too, but the SDM lets it leave Dirty set on the now read-only PTE;
    #              the engine always leaves it set (the costlier reading for patch 12: the next
    #              mprotect sees a dirty PTE);
    #   completes: the write lands on the read-only PTE -- no real x86 part; the negative
    #              control showing patch 12 depends on the fact.
    dirty_walk: str = param("cet", "mode", "what the dirty-bit walk does on a PTE made read-only under a writable "
                                           "TLB entry: cet faults, pre_cet faults leaving Dirty set, completes "
                                           "writes (the negative control)", choices=DIRTY_WALKS)
    tlb_single_page_flush_ceiling: int = param(33, "pages", "flush_tlb_mm_range(): ranges longer than this become "
                                                            "a full flush", low=1)
    jitter_sigma: float = param(0.05, "sigma of log cost", "lognormal jitter of CPU-local events", low=0.0, high=1.0)
    ipi_jitter_sigma: float = param(0.15, "sigma of log cost", "lognormal jitter of IPI delivery", low=0.0, high=1.0)
    costs: Costs = param(unit="cycles", doc="the base cost of each event", default_factory=Costs)

    @property
    def n_cpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.smt

    def validate(self, prefix: str = "machine") -> "Machine":
        """Every field within its declared range (study.params.check), and the paravirtual rules."""
        check(self, prefix)
        if self.virt == "none":
            for key in ("pv_send_ipi", "pv_tlb_flush"):
                if getattr(self, key):
                    raise ConfigError(f"{prefix}.{key}", "is a paravirtual feature: needs virt: kvm")
            if self.irq_loses_tlb:
                raise ConfigError(f"{prefix}.irq_loses_tlb", "is a virtual machine's fact: needs virt: kvm")
            if self.vcpu_preempted_share != 0.0:
                raise ConfigError(f"{prefix}.vcpu_preempted_share", "needs virt: kvm (bare-metal CPUs are never preempted)")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "machine") -> "Machine":
        """Build and validate a machine from plain data (a YAML file or a Hydra node)."""
        return build_dataclass(cls, data, prefix).validate(prefix)


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build_dataclass(cls, data: dict[str, Any], prefix: str):
    """Construct dataclass ``cls`` from ``data``: the first unknown key or value not of its field's
    declared type is a ConfigError naming it (``machine.costs.invlpg``)."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"must be a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    known = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key; allowed: {', '.join(known)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = build_dataclass(kind, value, f"{prefix}.{key}")
        else:
            kwargs[key] = coerce(value, kind, f"{prefix}.{key}")
    return cls(**kwargs)


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping"}


def coerce(value: Any, kind: Any, key: str):
    """Accept ``value`` as the declared type ``kind`` (``Optional[...]`` admits null), else say which
    type was expected.  The one place a switch is checked: ``true`` or ``false`` (or that text, as
    an interpolation gives it), never ``1`` or ``yes`` (study.config.schema types switches Any,
    since OmegaConf would read those as true)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    base = typing.get_origin(kind) or kind
    if base is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        ok = isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = base not in _TYPE_WORDS or isinstance(value, base)
    if not ok:
        raise ConfigError(key, f"must be {_TYPE_WORDS[base]}, got {value!r}")
    return value


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
