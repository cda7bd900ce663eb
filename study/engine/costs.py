"""Per-event costs with jitter, as lookup tables the engines share.

Every charged event costs ``rint(base * F[u])`` cycles, where ``u`` is a 16-bit random
draw from the event's slot and ``F`` a table of 65536 lognormal quantiles with mean 1.
Both engines (vectorized and scalar) use the same tables and the same draws, so they agree
to the cycle; a table lookup is also far cheaper than drawing a lognormal per event.
"""

from __future__ import annotations

import dataclasses
import math
import types
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from study.engine.ops import OP_ACCESS, OP_SWITCH_MM
from study.engine.machine import KVM_IPI_CLUSTER_SIZE, X2APIC_CLUSTER_SIZE, Costs, Machine, apic_ids
from study.errors import ConfigError

N_LEVELS = 1 << 16

# Fixed random slots of one step; per-target slots follow (see slot_count()).
SLOT_SYSCALL = 0     # syscall entry/exit and the call's fixed work
SLOT_PTE = 1         # change_pte_range() over the range
SLOT_TLBGEN = 2      # ++mm->tlb_gen: moving the cache line to the initiator
SLOT_SEND = 3        # is_lazy reads, csd enqueues and the IPI send (smp_call_function_many_cond)
SLOT_LOCAL = 4       # the initiator's own flush_tlb_func
SLOT_REFILL = 5      # the acting CPU's working-set refill after its full flushes
SLOT_ACCESS = 6      # TLB hit or page walk
SLOT_DIRTY = 7       # the hardware dirty-bit walk
SLOT_FAULT = 8       # page-fault entry/exit
SLOT_FIXUP = 9       # spurious-fault fix-up: full local flush and reading mm->tlb_gen
SLOT_RETRY = 10      # the walk of a retried access after a spurious fault
SLOT_SWITCH = 11     # switch_mm_irqs_off() and any flush it needs
SLOT_EXTRA = 12      # SIGSEGV delivery
N_FIXED_SLOTS = 13


PER_CPU_SLOTS = 4


def slot_count(n_cpus: int) -> int:
    """Slots per step: the fixed ones, then per CPU an IPI-delivery slot, a handler slot, a
    "is this vCPU preempted" slot (virt=kvm; drawn always so the streams never depend on it)
    and a slot for the refill of its working set after the full flushes a shootdown gave it."""
    return N_FIXED_SLOTS + PER_CPU_SLOTS * n_cpus


def op_slot_count(kind, n_cpus: int, arg=None) -> int:
    """Slots one step of operation ``kind`` (with ``arg``) uses: a memory access or a switch_mm
    sends no IPI, so it draws only the fixed slots, and a CPU going lazy (enter_lazy_tlb():
    nothing flushed, nothing charged) draws none.  Random draws only for the slots a step can
    use; the count depends on the operation alone, never on the state, so streams stay
    aligned across policies and cost sets."""
    if np.ndim(kind) == 0:
        if int(kind) == OP_SWITCH_MM and arg is not None and np.ndim(arg) == 0 and int(arg) == 1:
            return 0
        if int(kind) in (OP_ACCESS, OP_SWITCH_MM):
            return N_FIXED_SLOTS
    return slot_count(n_cpus)


def deliver_slot(n_cpus: int, i: int) -> int:
    return N_FIXED_SLOTS + i


def handler_slot(n_cpus: int, i: int) -> int:
    return N_FIXED_SLOTS + n_cpus + i


def preempt_slot(n_cpus: int, i: int) -> int:
    return N_FIXED_SLOTS + 2 * n_cpus + i


def refill_slot(n_cpus: int, i: int) -> int:
    return N_FIXED_SLOTS + 3 * n_cpus + i


@lru_cache(maxsize=None)
def _normal_quantiles() -> np.ndarray:
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / N_LEVELS) for i in range(N_LEVELS)])


@lru_cache(maxsize=16)
def jitter_table(sigma: float) -> np.ndarray:
    """Lognormal factors with mean 1, one per 16-bit draw (midpoint quantiles); read-only."""
    table = np.ones(N_LEVELS) if sigma == 0.0 else np.exp(sigma * _normal_quantiles() - 0.5 * sigma * sigma)
    table.flags.writeable = False
    return table


def pti_costs(c):
    """The costs as a PTI kernel pays them, folded into the events that pay them.

    - every kernel entry and exit switches CR3 (SWITCH_TO_KERNEL_CR3 / SWITCH_TO_USER_CR3):
      syscalls, page faults and the IPI's interrupt entry each pay two CR3 writes;
    - a partial flush is INVLPG plus INVPCID of the user ASID per page
      (native_flush_tlb_one_user());
    - a full flush (native_flush_tlb_local()) writes CR3 for the kernel ASID and marks the
      user ASID (invalidate_user_asid()); the user-ASID flush is paid by the CR3 write on the
      CPU's return to user space, which ends the same event (syscall, fault or IPI).

    ``c`` is a Costs, or a namespace of the same fields as arrays over cost sets.
    """
    two = 2 * c.cr3_switch
    folded = dict(
        syscall_mprotect=c.syscall_mprotect + two, syscall_uffd_wp=c.syscall_uffd_wp + two,
        syscall_madvise=c.syscall_madvise + two, fault_entry_exit=c.fault_entry_exit + two,
        irq_entry_exit=c.irq_entry_exit + two, invlpg=c.invlpg + c.invpcid,
        flush_full=c.flush_full + c.user_asid_flush)
    if dataclasses.is_dataclass(c):
        return dataclasses.replace(c, **folded)
    return types.SimpleNamespace(**{**vars(c), **folded})


# Machine fields that may differ between the cost sets of one run; everything else is
# hardware and topology that the lockstep steps share.
LANE_FREE_FIELDS = ("name", "calibrated", "source", "costs")
_SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(Machine) if f.name not in LANE_FREE_FIELDS)
_COST_FIELDS = tuple(f.name for f in dataclasses.fields(Costs))


def _cycles(values) -> bool:
    """Every value a number of cycles an event can cost: finite, >= 0 and < 2**40 (plain Python:
    this runs once per cost set, and an ensemble builds dozens)."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return False
        if not (math.isfinite(v) and 0 <= v < 2.0 ** 40):
            return False
    return True


def _check_costs(c: Costs) -> None:
    """Costs are rounded to int64 cycles: a base cost that is not finite, or so large that a
    jittered draw loses integer precision in float64, would become garbage silently."""
    for name in _COST_FIELDS:
        value = getattr(c, name)
        if not _cycles(value.table().tolist() if hasattr(value, "table") else [value]):
            raise ConfigError(f"machine.costs.{name}", f"must be finite cycles in [0, 2**40), got {value!r}")


def _stack(costs: list) -> types.SimpleNamespace:
    """K cost sets as one namespace: scalar costs [K, 1] (they broadcast against per-replicate
    [R] values to [K, R]), per-distance costs as ByDistance-like objects whose table() is [K, 4].

    The sets are checked as _check_costs() checks one, but all at once (an ensemble brings
    dozens); where that quick check fails, each set is checked alone, for the one-line error
    naming the field (or to accept numpy scalars, which the quick check does not)."""
    out = {}
    for name in _COST_FIELDS:
        values = [getattr(c, name) for c in costs]
        if hasattr(values[0], "table"):
            out[name] = _Tables(np.stack([v.table() for v in values]))
        else:
            out[name] = values
    quick = all(type(v) in (float, int) for name in _COST_FIELDS if isinstance(out[name], list) for v in out[name])
    for name in _COST_FIELDS:
        if isinstance(out[name], list):
            out[name] = np.array(out[name], np.float64)[:, None] if quick else out[name]
        table = out[name].table() if isinstance(out[name], _Tables) else out[name]
        quick = quick and table.dtype.kind == "f" and bool(np.all(np.isfinite(table) & (table >= 0)
                                                                   & (table < 2.0 ** 40)))
    if not quick:
        for c in costs:
            _check_costs(c)
        for name in _COST_FIELDS:
            if isinstance(out[name], list):
                out[name] = np.array(out[name], np.float64)[:, None]
    return types.SimpleNamespace(**out)


class _Tables:
    """Per-distance costs of K cost sets: table() is [K, 4] (classes self, smt, core, socket)."""

    def __init__(self, table):
        self._table = table

    def table(self):
        return self._table


class CostTables:
    """The machine's costs as float arrays the engines index directly.

    ``machine`` is one Machine: every base cost is a Python float and the per-distance tables
    are [4] (``sets`` is None).  Or a sequence of K Machines that differ only in
    LANE_FREE_FIELDS, the cost sets of one run (an ensemble's members, say): every base cost
    is then an array over sets shaped [K, 1], so that it broadcasts against per-replicate [R]
    values to [K, R]; the per-distance tables are [K, 4], indexed as ``table[:, classes]``;
    and ``sets`` is K.  The replicates' state never depends on costs, so one run carries
    every set on the same state and draws (study.engine.vector).
    """

    def __init__(self, machine):
        if isinstance(machine, Machine):
            self.sets = None
            _check_costs(machine.costs)
            self._fill(machine, machine.costs)
        else:
            machines = list(machine)
            if not machines:
                raise ValueError("cost sets: at least one machine")
            _check_lanes(machines)
            self.sets = len(machines)
            self._fill(machines[0], _stack([m.costs for m in machines]))
        self.same_write = bool(np.array_equal(self.icr_write, self.mask_write))

    def _fill(self, machine: Machine, c) -> None:
        self.F = jitter_table(machine.jitter_sigma)
        self.F_ipi = jitter_table(machine.ipi_jitter_sigma)
        self.tlb_gen_xfer = c.tlb_gen_xfer.table()
        self.remote_line = c.remote_line.table()
        # delivery and acknowledgement travel the same path and share one draw
        self.ipi_deliver_ack = c.ipi_deliver.table() + c.ipi_ack.table()
        self.pti = machine.pti
        # the engines read every event's base cost from here (PTI folded in where paid)
        self.c = pti_costs(c) if machine.pti else c
        self.ceiling = machine.tlb_single_page_flush_ceiling
        self.stlb_entries = machine.stlb_entries
        self.n_online = machine.n_cpus
        self.shorthand = machine.ipi_shorthand
        self.apic_mode = machine.apic_mode
        kvm = machine.virt == "kvm"
        # one ICR write: x2APIC WRMSR or xAPIC MMIO store after the ICR-idle poll; in a KVM
        # guest the write traps (a VM exit)
        self.icr_write = (c.ipi_send + (c.icr_idle_wait if machine.apic_mode == "xapic" else 0.0)
                          + (c.vm_exit if kvm else 0.0))
        # the mask send: PV hypercalls (one per 128 APIC IDs), or ICR writes per target / per
        # x2APIC cluster
        self.pv_send = kvm and machine.pv_send_ipi
        self.mask_write = c.vm_exit if self.pv_send else self.icr_write
        if self.pv_send:
            self.group_size = KVM_IPI_CLUSTER_SIZE
        elif machine.apic_mode == "x2apic_cluster":
            self.group_size = X2APIC_CLUSTER_SIZE
        else:
            self.group_size = 1
        self.kvm = kvm
        self.pv_flush = kvm and machine.pv_tlb_flush
        # the flush IPI's VM exit and entry cost the target vCPU its TLB (a measured host fact)
        self.irq_loses_tlb = kvm and machine.irq_loses_tlb
        # a 16-bit draw below this is a preempted vCPU
        self.preempt_threshold = int(round(machine.vcpu_preempted_share * N_LEVELS)) if kvm else 0
        self.vcpu_wakeup_wait = c.vcpu_wakeup_wait
        # the host's flush of a whole vCPU on its next VM entry (no PTI fold: every ASID goes)
        self.raw_flush_full = c.flush_full
        self._machine = machine
        # the dirty-bit walk on a read-only PTE: faults (cet, pre_cet), and leaves Dirty set
        # (pre_cet) or lets the write land (completes)
        self.dwalk_faults = machine.dirty_walk in ("cet", "pre_cet")
        self.dwalk_sets_dirty = machine.dirty_walk in ("pre_cet", "completes")

    def send_groups(self, cpus) -> np.ndarray:
        """Per CPU slot, the group one send covers: its APIC ID, its x2APIC cluster or its PV
        hypercall window."""
        return np.array(apic_ids(self._machine, list(cpus))) // self.group_size


def off_cpu_window(t: "CostTables", on_cpu_share: float) -> tuple[int, int]:
    """The 16-bit draws of a CPU's preempt slot that mean "its thread is off its CPU".

    ``on_cpu_share`` is the share of time each other thread of the mm runs on its CPU
    (workload knob; 1.0 = always).  A thread off its CPU leaves another mm loaded there
    (cpu_tlbstate.loaded_mm != mm), so should_flush_tlb() (arch/x86/mm/tlb.c, Linux 6.13+)
    sends it no IPI.  The draw shares the vCPU-preemption slot: draws below
    ``preempt_threshold`` are a preempted vCPU (kvm_flush_tlb_multi() flags it first), and
    the off-CPU window is the first ``1 - on_cpu_share`` of the remaining draws, so the
    share applies to the vCPUs the host is running (independent of preemption); a preempted
    vCPU is taken as running the thread.  Empty at on_cpu_share = 1: no draw changes."""
    lo = t.preempt_threshold
    return lo, lo + int(round((1.0 - on_cpu_share) * (N_LEVELS - lo)))
def _check_lanes(machines) -> None:
    """The cost sets of one lockstep run share every hardware fact; only costs may differ."""
    first = machines[0]
    shared = tuple(getattr(first, name) for name in _SHARED_FIELDS)
    for m in machines[1:]:
        if m is first or tuple(getattr(m, name) for name in _SHARED_FIELDS) == shared:
            continue
        name = next(n for n in _SHARED_FIELDS if getattr(m, n) != getattr(first, n))
        raise ValueError(f"machine.{name}: the cost sets of one run must share it "
                         f"(only {', '.join(LANE_FREE_FIELDS)} may differ between them)")


# A step's per-CPU draws are generated only when read (Draws) where they are many: at least
# LAZY_PER_CPU_SLOTS per replicate (4 per CPU; fewer are a small part of a step's draws, and a
# strict flush that reads them would pay for the skip: the seed's 2 CPUs ran 7% slower lazily)
# and LAZY_PER_CPU_DRAWS in all.  Below that, drawing them outright costs less.
LAZY_PER_CPU_SLOTS = 2 * N_FIXED_SLOTS
LAZY_PER_CPU_DRAWS = 16384


def lazy_per_cpu(slots: int, replicates: int) -> bool:
    """Whether a step of ``slots`` slots over ``replicates`` draws its per-CPU slots lazily."""
    per_cpu = slots - N_FIXED_SLOTS
    return per_cpu > 0 and per_cpu >= LAZY_PER_CPU_SLOTS and per_cpu * replicates >= LAZY_PER_CPU_DRAWS


class Draws:
    """One step's draws as draw_slots() makes them, uint16 [slots, R] slot-major, whose per-CPU
    slots (IPI delivery, handler, preempt) are generated only if an engine reads them.

    Only a strict flush reads them (a shootdown's targets), and most flushing steps of a
    many-CPU run take none: a uffd unprotect on the RFC's base or with the RFC's relaxed flush.
    Drawing the 3 x CPUs slots per replicate anyway was the largest single cost of such a step.
    The numbers do not depend on whether they are read: the generator skips over them
    (advance) and keeps the state where they start, so the stream goes on exactly as after
    draw_slots(), and a read regenerates exactly what draw_slots() would have drawn.  Slot
    ``i < N_FIXED_SLOTS`` is a row of ``fixed``; any other index reads the whole array.

    ``lanes`` (L, R per lane): the replicates are L lanes, and each part of ``parts`` is the
    per-CPU draws of the lanes it lists (study.workloads.driver.LaneJitter), idle lanes zero.
    """

    __slots__ = ("fixed", "shape", "_parts", "_lanes", "_full")

    def __init__(self, fixed: np.ndarray, slots: int, parts: list, lanes: tuple[int, int] | None = None):
        self.fixed = fixed
        self.shape = (slots, fixed.shape[1])
        self._parts = parts
        self._lanes = lanes or (1, fixed.shape[1])
        self._full = None

    def __getitem__(self, key):
        if type(key) is int and key < N_FIXED_SLOTS:
            return self.fixed[key]
        return self.full()[key]

    def __array__(self, dtype=None, copy=None):
        return self.full() if dtype is None else self.full().astype(dtype)

    def full(self) -> np.ndarray:
        """All slots, [slots, R] (made on the first read and kept)."""
        if self._full is None:
            S, _ = self.shape
            L, R = self._lanes
            out = np.zeros((S, L, R), np.uint16)
            out[:N_FIXED_SLOTS] = self.fixed.reshape(N_FIXED_SLOTS, L, R)
            for part, lanes in self._parts:
                out[N_FIXED_SLOTS:, lanes, :] = _per_cpu_draws(part, R, S)[:, None, :]
            self._full = out.reshape(S, L * R)
        return self._full


def draw_step(rng: np.random.Generator, replicates: int, n_cpus: int, slots: int | None = None):
    """draw_slots(), with the per-CPU slots left to be generated when read (a Draws) where
    they are many; the generator ends where draw_slots() leaves it either way."""
    slots = slot_count(n_cpus) if slots is None else slots
    if not lazy_per_cpu(slots, replicates):
        return draw_slots(rng, replicates, n_cpus, slots)
    fixed, part = skip_per_cpu(rng, replicates, slots)
    return Draws(fixed, slots, [(part, slice(None))])


def skip_per_cpu(rng: np.random.Generator, replicates: int, slots: int):
    """The fixed slots of a draw_slots() draw of ``slots`` slots, [N_FIXED_SLOTS, R], and where
    its per-CPU slots start (for _per_cpu_draws); ``rng`` is left past the whole draw."""
    bg = rng.bit_generator
    head = N_FIXED_SLOTS * replicates          # 16-bit draws of the fixed slots
    whole = head // 4                          # 64-bit words holding only fixed slots
    words = bg.random_raw(whole)
    state = bg.state                           # the per-CPU slots start in the next word
    shared = (head + 3) // 4 - whole           # a word holding both (head not a multiple of 4)
    if shared:
        words = np.concatenate([words, bg.random_raw(shared)])
    total = (slots * replicates + 3) // 4
    bg.advance(total - whole - shared)
    fixed = words.view(np.uint16)[:head].reshape(N_FIXED_SLOTS, replicates)
    return fixed, (type(bg), state, total - whole, head - 4 * whole)


def _per_cpu_draws(part, replicates: int, slots: int) -> np.ndarray:
    """The per-CPU slots skipped by skip_per_cpu(), [slots - N_FIXED_SLOTS, R]."""
    kind, state, words, offset = part
    bg = kind(0)
    bg.state = state
    n = (slots - N_FIXED_SLOTS) * replicates
    return bg.random_raw(words).view(np.uint16)[offset:offset + n].reshape(slots - N_FIXED_SLOTS, replicates)


def draw_slots(rng: np.random.Generator, replicates: int, n_cpus: int, slots: int | None = None) -> np.ndarray:
    """One step's random draws: uint16 [slots, replicates] (slot-major); ``slots`` defaults to
    every slot of the machine (slot_count(n_cpus)), op_slot_count() gives what a step uses."""
    # Raw 64-bit words cut into four 16-bit draws: every bit of a word is uniform, and this
    # is twice as fast as a bounded integer draw.
    slots = slot_count(n_cpus) if slots is None else slots
    n = replicates * slots
    words = rng.bit_generator.random_raw((n + 3) // 4)
    return words.view(np.uint16)[:n].reshape(slots, replicates)
