"""The scalar reference engine: the same model as study.engine.vector, written plainly.

One replicate, one event at a time, Python control flow and no masks.  The tests use it
as the oracle: fed the same operations and the same random draws, it must produce the
same latencies and counters, to the cycle, as the vectorized engine.  Its methods are the
vector engine's, by the same names (the kernel functions they model) and in the same order
(study.engine.vector lists them), so that each can be compared with its twin on its own
(tests/test_engine_functions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from study.engine import costs as K
from study.engine.costs import CostTables
from study.engine.machine import Machine, distance_matrix
from study.engine.ops import (
    ACCESS_RETRY,
    COUNTERS,
    FLUSH_NONE,
    FLUSH_RELAXED,
    FLUSH_STRICT,
    OP_ACCESS,
    OP_MADV_FREE,
    OP_MPROTECT,
    OP_SWITCH_MM,
    OP_UFFD_WP,
    UFFD_PROTECT,
    UFFD_UNPROTECT_WRITE_LIKELY,
)


@dataclass(slots=True)
class Pte:
    """One PTE's bits.  The default is a private anonymous page after its first write:
    do_anonymous_page() maps it writable and dirty, the retried write's walk sets Accessed."""

    write: bool = True
    dirty: bool = True
    young: bool = True
    uffd_wp: bool = False


class TlbEntry:
    __slots__ = ("write", "dirty")

    def __init__(self, write, dirty):
        self.write, self.dirty = write, dirty


class Cpu:
    __slots__ = ("local_gen", "is_lazy", "tlb", "off_cpu", "working_set", "owed")

    def __init__(self, lazy, working_set):
        self.local_gen = 1
        self.off_cpu = False   # missed a shootdown with its thread off the CPU, not back since
        self.is_lazy = lazy
        self.tlb: dict[int, TlbEntry] = {}
        self.working_set = working_set   # TLB entries its thread keeps hot
        self.owed = 0                    # full flushes since its thread last refilled


class ScalarEngine:
    """One replicate of the mm: the oracle for VectorEngine."""

    def __init__(self, machine: Machine, behaviour, cpus, pages: int, working_set: int = 0, lazy=None,
                 on_cpu_share: float = 1.0):
        self.t = CostTables(machine)
        self.F = self.t.F
        # the per-distance costs (classes self, smt, core, socket) as Python floats
        self.tlb_gen_xfer, self.remote_line, self.ipi_deliver_ack = (
            getattr(self.t, name).tolist() for name in ("tlb_gen_xfer", "remote_line", "ipi_deliver_ack"))
        # draws of a CPU's preempt slot meaning "its thread is off its CPU" (costs.off_cpu_window)
        self.off_lo, self.off_hi = K.off_cpu_window(self.t, on_cpu_share)
        self.policy = behaviour   # study.policies.Behaviour: the kernel's facts and the policy's patches
        self.clean_writable = behaviour.clean_anon_writable
        self.fixup = behaviour.fix_spurious_fault
        self.dist = distance_matrix(list(cpus)).tolist()   # [i][j]: distance class (DIST_*)
        self.n_cpus = len(cpus)
        self.groups = self.t.send_groups(cpus)
        # entries beyond the STLB miss whether or not a flush came: only these are kept hot
        ws = np.broadcast_to(np.asarray(working_set, np.int64), (len(cpus),))
        self.working_set = [min(int(x), self.t.stlb_entries) for x in ws]
        lazy = [False] * self.n_cpus if lazy is None else [bool(x) for x in lazy]
        self.ptes = [Pte() for _ in range(pages)]
        # VM_WRITE of the VMA over each page (mprotect changes it; uffd-wp does not)
        self.vma_write = [True] * pages
        self.tlb_gen = 1
        self.mm_cpumask = set(range(self.n_cpus))
        self.tlb_gen_sharers = {0}
        self.cpus = [Cpu(lazy[i], self.working_set[i]) for i in range(self.n_cpus)]
        self.counters = {name: 0 for name in COUNTERS}
        self.stolen = 0
        self.refill_initiator = self.refill_others = 0   # the threads' refill cycles

    def cost(self, base, u, table=None):
        """rint(base * F[u]) cycles (Python's round() rounds half to even, as np.rint does)."""
        return round(float(base) * (self.F if table is None else table).item(u))

    def step(self, kind, cpu, lo, n, arg, u):
        """One operation; returns (latency, flush type, uffd-wp fault pending)."""
        out = self._step(kind, cpu, lo, n, arg, u)
        if self.cpus[cpu].owed:
            self.refill_working_set(cpu, K.SLOT_REFILL, u)
        return out

    def _step(self, kind, cpu, lo, n, arg, u):
        if kind in (OP_MPROTECT, OP_UFFD_WP, OP_MADV_FREE):
            return (*self.change_protection(kind, cpu, lo, n, arg, u), False)
        if kind == OP_ACCESS:
            lat, pending = 0, False
            if arg == ACCESS_RETRY:
                lat, pending, again = self.retry_after_userfault(cpu, lo, u)
                if not again:
                    return lat, FLUSH_NONE, pending
            more, pending_ = self.access(cpu, lo, bool(arg), u)
            return lat + more, FLUSH_NONE, pending or pending_
        if kind == OP_SWITCH_MM:
            return self.switch_mm_irqs_off(cpu, bool(arg), u), FLUSH_NONE, False
        return 0, FLUSH_NONE, False

    # ------------------------------------------------------------------ change_protection

    def change_protection(self, kind, cpu, lo, n, arg, u):
        """mprotect(), UFFDIO_WRITEPROTECT or MADV_FREE over pages [lo, lo + n) on CPU ``cpu``:
        (latency, flush type)."""
        c = self.t.c
        if kind == OP_MADV_FREE:
            needs, checks = self.madvise_free_pte_range(lo, n), 0
            syscall = c.syscall_madvise
        else:
            ptes = self.ptes[lo:lo + n]
            old_write = [pte.write for pte in ptes]
            checks = self.change_pte_range(kind, lo, n, arg)
            needs = list(map(self.pte_flush_type, old_write, ptes))
            syscall = c.syscall_mprotect if kind == OP_MPROTECT else c.syscall_uffd_wp
        lat = self.cost(syscall, u[K.SLOT_SYSCALL])
        lat += self.cost(n * c.pte_update + checks * c.pte_mkwrite_check, u[K.SLOT_PTE])
        flush_lat, flush = self.tlb_finish_mmu(lo, needs, cpu, u, walk=kind != OP_MADV_FREE)
        return lat + flush_lat, flush

    def change_pte_range(self, kind, lo, n, arg):
        """mprotect() or UFFDIO_WRITEPROTECT over pages [lo, lo + n): how many PTEs tried to
        become writable (can_change_pte_writable() calls)."""
        pol = self.policy
        hint = kind == OP_UFFD_WP and arg == UFFD_UNPROTECT_WRITE_LIKELY
        checks = 0
        for p in range(lo, lo + n):
            pte = self.ptes[p]
            try_writable = False
            if kind == OP_MPROTECT:
                self.vma_write[p] = bool(arg)
                if arg:
                    # MM_CP_TRY_CHANGE_WRITABLE; a uffd-wp PTE is never upgraded here
                    try_writable = not pte.write and not pte.uffd_wp
                else:
                    pte.write = False
            elif arg == UFFD_PROTECT:
                pte.uffd_wp = True
                pte.write = False
            else:
                pte.uffd_wp = False   # a software bit: needs no flush
                if hint and pol.uffd_unprotect_mkdirty:
                    pte.young = True                      # RFC patch 1: MM_CP_WILL_NEED
                # RFC patch 2 (with the hint) or uffd_wp_range() since 6.3 (always)
                try_writable = ((pol.uffd_unprotect_writable_unhinted or (hint and pol.uffd_unprotect_writable))
                                and not pte.write and self.vma_write[p])
            if try_writable:
                checks += 1
                if self.can_change_pte_writable(pte):
                    pte.write = True
                    if hint and pol.uffd_unprotect_mkdirty:
                        pte.dirty = True                  # RFC patch 1: only where made writable
        return checks

    def can_change_pte_writable(self, pte):
        """Whether the PTE is mapped writable without a write fault."""
        # an exclusive anonymous page needs no COW; 5.19 also requires pte_dirty(), v6.2 and
        # the RFC's patch 3 take clean ones
        return pte.dirty or self.clean_writable

    def pte_flush_type(self, old_write, pte):
        """The flush the PTE needs after its RW went ``old_write`` -> ``pte.write``: FLUSH_*."""
        pol = self.policy
        if pte.write and not old_write:
            # RFC patches 9-11: adding permission needs only a relaxed flush
            return FLUSH_RELAXED if pol.relaxed_flush_on_upgrade else FLUSH_STRICT
        if old_write and not pte.write:
            if pte.dirty:
                # a dirty RW->RO is strict; not flushing it is the unsafe negative control
                return FLUSH_NONE if pol.unsafe_dirty_demote else FLUSH_STRICT
            # RFC patch 12: a clean RW->RO needs none where the dirty-bit walk faults
            return FLUSH_NONE if pol.no_flush_clean_wrprotect else FLUSH_STRICT
        return FLUSH_NONE

    def madvise_free_pte_range(self, lo, n):
        """MADV_FREE over pages [lo, lo + n): per page the flush its PTE change needs."""
        needs = []
        for p in range(lo, lo + n):
            pte = self.ptes[p]
            # a young or dirty PTE is made old and clean: tlb_remove_tlb_entry() flushes it
            needs.append(FLUSH_STRICT if pte.dirty or pte.young else FLUSH_NONE)
            pte.dirty = pte.young = False
        return needs

    def tlb_finish_mmu(self, lo, needs, cpu, u, walk=True):
        """The call's one flush, for the PTE changes ``needs`` of pages lo, lo + 1, ...
        (``walk``: changed by change_pte_range(), not madvise): (latency, flush type)."""
        # tlb_flush_pte_range() widens tlb->start..end only for PTEs whose change needs one
        first = last = None
        strict_seen = False
        for p, need in enumerate(needs, lo):
            if need != FLUSH_NONE or (strict_seen and walk and self.policy.strict_extends_span):
                # (RFC patch 13: after a strict PTE, every later PTE of the walk is flushed)
                first = p if first is None else first
                last = p
            strict_seen = strict_seen or need == FLUSH_STRICT
        if first is None:
            return 0, FLUSH_NONE
        if FLUSH_STRICT in needs:
            return self.flush_tlb_mm_range(True, cpu, first, last - first + 1, u), FLUSH_STRICT
        return self.flush_tlb_mm_range(False, cpu, first, last - first + 1, u), FLUSH_RELAXED

    # ------------------------------------------------------------------ flush_tlb_mm_range

    def flush_tlb_mm_range(self, strict, cpu, lo, n, u):
        """flush_tlb_mm_range() of pages [lo, lo + n) from CPU ``cpu``: the initiator's cycles."""
        cost, new_gen = self.inc_mm_tlb_gen(cpu, u)
        # get_flush_tlb_info(): more than tlb_single_page_flush_ceiling pages -> TLB_FLUSH_ALL
        ranged = n <= self.t.ceiling
        local = self.flush_tlb_func_local(cpu, ranged, lo, n, new_gen, u)
        if not strict:
            # the RFC's relaxed flush stops here
            self.counters["relaxed_flushes"] += 1
            return cost + local
        self.counters["strict_flushes"] += 1
        others, targets, flagged, base = self.flush_tlb_multi(cpu, new_gen, u)
        send, offsets = self.smp_call_function_many_cond(cpu, others, targets, base, u)
        handlers = {i: self.flush_tlb_func_remote(cpu, i, new_gen, ranged, lo, n, u) for i in targets}
        done = self.csd_lock_wait(cpu, targets, offsets, handlers, u)
        for i in flagged:
            self.kvm_vcpu_flush_tlb_guest(i, u)
        self.refill_rows(cpu, u)
        # the initiator sends, flushes locally meanwhile, then waits for the slowest target
        return cost + max(send + local, done)

    def inc_mm_tlb_gen(self, cpu, u):
        """++mm->tlb_gen on CPU ``cpu``: (cycles, mm->tlb_gen after)."""
        t = self.t
        self.tlb_gen += 1
        cost = 0
        # a locked RMW: the line comes from the farthest other holder, every other copy goes
        others = [s for s in self.tlb_gen_sharers if s != cpu]
        if others:
            far = max(self.dist[cpu][s] for s in others)
            cost += self.cost(self.tlb_gen_xfer[far], u[K.SLOT_TLBGEN])
            self.counters["tlb_gen_xfers"] += 1
        self.tlb_gen_sharers = {cpu}
        return cost, self.tlb_gen

    def flush_tlb_func_local(self, cpu, ranged, lo, n, new_gen, u):
        """flush_tlb_func() on the initiator: its cycles."""
        me, c = self.cpus[cpu], self.t.c
        # INVLPG page by page only if the CPU lags exactly one generation
        if ranged and me.local_gen + 1 == new_gen:
            local = self.cost(n * c.invlpg, u[K.SLOT_LOCAL])
            self.counters["local_partial"] += 1
            self.count_pages(n)
            self.invlpg_range(me, lo, n)
        else:
            local = self.cost(c.flush_full, u[K.SLOT_LOCAL])
            self.counters["local_full"] += 1
            self.flush_all(me)
        me.local_gen = new_gen
        return local

    def flush_tlb_multi(self, cpu, new_gen, u):
        """The CPUs of a strict flush from ``cpu``: (the mm_cpumask CPUs the IPI walk looks at,
        its targets, the vCPUs flagged instead of an IPI, the initiator's cycles so far)."""
        t = self.t
        others = [i for i in range(self.n_cpus) if i != cpu and i in self.mm_cpumask]
        if others:
            self.counters["flush_multi"] += 1
        base = t.c.cpumask_scan
        flagged = []
        if t.pv_flush:
            others, flagged, base = self.kvm_flush_tlb_multi(cpu, others, base, u)
        targets = []
        for i in others:
            if self.should_flush_tlb(i, u):
                if self.cpus[i].off_cpu:
                    # it missed a shootdown off its CPU and runs the mm again: it switched back
                    # in before this flush
                    self.switch_mm_irqs_off_remote(i, new_gen - 1, u)
                targets.append(i)
        return others, targets, flagged, base

    def kvm_flush_tlb_multi(self, cpu, others, base, u):
        """kvm_flush_tlb_multi() over the mm_cpumask CPUs ``others``: (the CPUs left for the IPI
        path, the preempted vCPUs flagged KVM_VCPU_FLUSH_TLB, ``base`` plus its reads)."""
        t = self.t
        kept, flagged = [], []
        for i in others:
            d = self.dist[cpu][i]
            base += self.remote_line[d]              # steal_time.preempted
            if int(u[K.preempt_slot(self.n_cpus, i)]) < t.preempt_threshold:
                base += self.remote_line[d]          # the cmpxchg
                flagged.append(i)
            else:
                kept.append(i)
        return kept, flagged, base

    def should_flush_tlb(self, i, u):
        """should_flush_tlb() for CPU ``i``: whether it gets the IPI."""
        me = self.cpus[i]
        if me.is_lazy:
            return False    # "Lazy TLB will get flushed at the next context switch"
        if self.off_lo <= int(u[K.preempt_slot(self.n_cpus, i)]) < self.off_hi:
            # loaded_mm != info->mm: the thread is off its CPU; its generation stays behind
            me.off_cpu = True
            self.counters["off_cpu_skipped"] += 1
            return False
        return True

    def smp_call_function_many_cond(self, cpu, others, targets, base, u):
        """The walk over ``others`` and the one send to ``targets``, after ``base`` cycles: (the
        cycles until the last write is done, per target those until the write covering it)."""
        t = self.t
        for i in others:
            d = self.dist[cpu][i]
            base += self.remote_line[d]              # the cond function reads its cpu_tlbstate
            if i in targets:
                base += 2 * self.remote_line[d]      # csd_lock() and llist_add() onto its queue
        write, writes, rank = self.native_send_call_func_ipi(targets)
        fsend = t.F[u[K.SLOT_SEND]]
        send = round(float((base + write * writes) * fsend))
        # target i's IPI leaves when the ICR write (or hypercall) that covers it is done
        offsets = {i: round(float((base + write * rank[i]) * fsend)) for i in targets}
        nt = len(targets)
        self.counters["ipis"] += nt
        self.counters["ipi_writes"] += writes if nt else 0
        self.counters["vm_exits"] += writes if (nt and t.kvm) else 0
        self.counters["shootdowns"] += bool(targets)
        return send, offsets

    def native_send_call_func_ipi(self, targets):
        """The send to ``targets``: (the cycles of one write, the writes, per target the number
        of the write that covers it)."""
        t = self.t
        nt = len(targets)
        # a single IPI, or the all-but-self shorthand when the mask and the sender are every
        # online CPU: one ICR write
        if nt == 1 or (nt > 1 and t.shorthand and nt == t.n_online - 1):
            return t.icr_write, 1, {i: 1 for i in targets}
        # else by APIC mode: one write per target, or per x2APIC cluster / PV window in the
        # order of each one's first target
        groups, rank = {}, {}
        for i in targets:
            g = int(self.groups[i])
            if g not in groups:
                groups[g] = len(groups) + 1
            rank[i] = groups[g]
        return t.mask_write, len(groups), rank

    def flush_tlb_func_remote(self, cpu, i, new_gen, ranged, lo, n, u):
        """flush_tlb_func() in target ``i``'s IPI handler: the handler's cycles (stolen)."""
        t, c = self.t, self.t.c
        remote = self.cpus[i]
        d = self.dist[cpu][i]
        # by the generation rule, after reading mm->tlb_gen (its line from the initiator)
        if new_gen <= remote.local_gen:
            work = 0.0
        elif ranged and remote.local_gen + 1 == new_gen:
            work = n * c.invlpg
            self.counters["remote_partial"] += 1
            self.count_pages(n)
            self.invlpg_range(remote, lo, n)
            if t.irq_loses_tlb:
                # the vCPU lost its whole TLB taking the IPI, whatever the handler INVLPGs
                self.flush_all(remote)
        else:
            work = c.flush_full
            self.counters["remote_full"] += 1
            self.flush_all(remote)
        remote.local_gen = new_gen
        handler = self.cost(c.irq_entry_exit + self.tlb_gen_xfer[d] + work, u[K.handler_slot(self.n_cpus, i)])
        self.stolen += handler
        self.counters["tlb_gen_xfers"] += 1
        self.tlb_gen_sharers.add(i)
        return handler

    def csd_lock_wait(self, cpu, targets, offsets, handlers, u):
        """The initiator's wait on each target's csd: the cycles until the slowest unlock."""
        t = self.t
        done = 0
        for i in targets:
            d = self.dist[cpu][i]
            wire = self.ipi_deliver_ack[d]
            if t.kvm and not t.pv_flush and int(u[K.preempt_slot(self.n_cpus, i)]) < t.preempt_threshold:
                wire = wire + t.vcpu_wakeup_wait     # the IPI waits for the host to run the vCPU
            deliver_ack = self.cost(wire, u[K.deliver_slot(self.n_cpus, i)], t.F_ipi)
            done = max(done, offsets[i] + deliver_ack + handlers[i])
        return done

    def kvm_vcpu_flush_tlb_guest(self, i, u):
        """The host flushes flagged vCPU ``i`` when it runs it again; its cpu_tlbstate generation
        stays behind."""
        self.flush_all(self.cpus[i])
        self.stolen += self.cost(self.t.raw_flush_full, u[K.handler_slot(self.n_cpus, i)])
        self.counters["pv_flush_deferred"] += 1

    # ------------------------------------------------------------------ switch_mm_irqs_off

    def switch_mm_irqs_off(self, cpu, to_lazy, u):
        """CPU ``cpu`` enters lazy TLB mode (``to_lazy``) or runs the mm's thread again: latency."""
        t, c = self.t, self.t.c
        me = self.cpus[cpu]
        if to_lazy:
            me.is_lazy = True     # enter_lazy_tlb(): nothing flushed or charged
            return 0
        base = c.context_switch
        if me.local_gen < self.tlb_gen:
            # "TLB contents went out of date while we were in lazy mode"
            base = base + c.flush_full
            self.counters["local_full"] += 1
            self.counters["switch_full"] += 1
            self.flush_all(me)
        near = min((self.dist[cpu][s] for s in self.tlb_gen_sharers), default=99)
        if near > 0:
            base = base + self.tlb_gen_xfer[min(near, 3)]
            self.counters["tlb_gen_xfers"] += 1
        self.tlb_gen_sharers.add(cpu)
        me.local_gen = self.tlb_gen
        me.is_lazy = False
        me.off_cpu = False
        return self.cost(base, u[K.SLOT_SWITCH])

    def switch_mm_irqs_off_remote(self, i, gen, u):
        """switch_mm_irqs_off() on CPU ``i`` when mm->tlb_gen was ``gen``, booked to stolen."""
        me, c = self.cpus[i], self.t.c
        base = c.context_switch
        if me.local_gen < gen:
            # choose_new_asid(): the ASID's tlb_gen is behind -> need_flush
            base = base + c.flush_full
            self.counters["local_full"] += 1
            self.counters["switch_full"] += 1
            self.flush_all(me)
        self.stolen += self.cost(base, u[K.SLOT_SWITCH])
        me.local_gen = gen
        me.off_cpu = False

    # ------------------------------------------------------------------ access

    def access(self, cpu, page, write, u):
        """A read or write of ``page`` by the thread on ``cpu``: (latency, uffd-wp fault pending)."""
        c = self.t.c
        me = self.cpus[cpu]
        lat = 0
        if me.off_cpu:
            # it missed a shootdown off its CPU: switch_mm_irqs_off() first, like a lazy wake-up
            lat = self.switch_mm_irqs_off(cpu, False, u)
        walk, entry, hit = self.tlb_lookup(cpu, page, u)
        lat += walk
        pending = retry = False
        if write:
            dirty_walk, fault = self.dirty_bit_walk(entry, self.ptes[page], u)
            lat += dirty_walk
            if fault:
                del me.tlb[page]   # the fault invalidates the faulting address's entry
                fault_lat, pending, retry = self.do_user_addr_fault(cpu, page, u)
                lat += fault_lat
            else:
                entry.write = entry.dirty = True
        if retry:
            # the retried write walks again; the PTE is dirty now, so no dirty-bit walk
            lat += self.cost(c.page_walk, u[K.SLOT_RETRY])
            me.tlb[page] = TlbEntry(True, True)
        # STLB misses: this access's walk, a retried write's walk
        self.counters["tlb_misses"] += (not hit) + retry
        return lat, pending

    def tlb_lookup(self, cpu, page, u):
        """The TLB lookup of ``page`` on CPU ``cpu``: (cycles, the entry, whether it hit)."""
        c = self.t.c
        me = self.cpus[cpu]
        entry = me.tlb.get(page)
        if entry is not None:
            self.counters["tlb_hits"] += 1
            return self.cost(c.tlb_hit, u[K.SLOT_ACCESS]), entry, True
        # a miss walks the page table: the entry is filled from the PTE, which gets Accessed
        pte = self.ptes[page]
        entry = me.tlb[page] = TlbEntry(pte.write, pte.dirty)
        pte.young = True
        return self.cost(c.page_walk, u[K.SLOT_ACCESS]), entry, False

    def dirty_bit_walk(self, entry, pte, u):
        """A write through ``entry`` to ``pte``: (cycles, whether it faults)."""
        t, c = self.t, self.t.c
        if entry.write and entry.dirty:
            # no re-walk: the write lands whatever the PTE says now
            if not (pte.write and pte.dirty):
                self.counters["violations"] += 1
            return 0, False
        if not entry.write:
            return 0, True
        # the locked walk that sets Dirty re-reads the PTE (Machine.dirty_walk)
        self.counters["dirty_walks"] += 1
        lat = self.cost(c.dirty_walk, u[K.SLOT_DIRTY])
        fault = False
        if not pte.write:
            if t.dwalk_sets_dirty:
                pte.dirty = True
            if t.dwalk_faults:
                fault = True
            else:
                self.counters["violations"] += 1
        if not fault:
            pte.dirty = pte.young = True
        return lat, fault

    def do_user_addr_fault(self, cpu, page, u):
        """The write fault on ``page`` by CPU ``cpu``: (cycles, uffd-wp pending, retried)."""
        c = self.t.c
        lat = self.cost(c.fault_entry_exit, u[K.SLOT_FAULT])
        if not self.ptes[page].write and not self.vma_write[page]:
            # access_error(): SIGSEGV
            self.counters["prot_faults"] += 1
            return lat + self.cost(c.sigsegv, u[K.SLOT_EXTRA]), False, False
        cost, pending, retry = self.handle_pte_fault(cpu, page, u)
        return lat + cost, pending, retry

    def handle_pte_fault(self, cpu, page, u):
        """handle_pte_fault() of the write fault: (cycles, uffd-wp pending, retried)."""
        c = self.t.c
        pte = self.ptes[page]
        if not pte.write:
            return self.do_wp_page(page, u)
        # A stale read-only entry: the entry is built with D and A.
        self.counters["spurious_faults"] += 1
        if not (pte.dirty and pte.young):
            # it changes the PTE: stored by ptep_set_access_flags(), no flush, no fix-up
            pte.dirty = pte.young = True
            return self.cost(c.pte_update, u[K.SLOT_FIXUP]), False, True
        # nothing changed, a write, not FAULT_FLAG_TRIED
        return self.flush_tlb_fix_spurious_fault(cpu, u), False, True

    def do_wp_page(self, page, u):
        """do_wp_page() of the write to read-only ``page``: (cycles, uffd-wp pending, retried)."""
        pte = self.ptes[page]
        if pte.uffd_wp:
            # handle_userfault(VM_UFFD_WP)
            self.counters["uffd_faults"] += 1
            return 0, True, False
        # wp_page_reuse(): an exclusive anonymous page is made writable, dirty and young in
        # place (ptep_set_access_flags); no flush.
        self.counters["reuse_faults"] += 1
        pte.write = pte.dirty = pte.young = True
        return self.cost(self.t.c.pte_update, u[K.SLOT_FIXUP]), False, True

    def flush_tlb_fix_spurious_fault(self, cpu, u):
        """RFC patch 8 on CPU ``cpu``: if it is behind mm->tlb_gen, a full flush, and it catches
        up.  Returns the cycles."""
        t, c = self.t, self.t.c
        me = self.cpus[cpu]
        if not (self.fixup and me.local_gen < self.tlb_gen):
            return 0
        near = min((self.dist[cpu][s] for s in self.tlb_gen_sharers), default=99)
        base = c.flush_full
        if near > 0:
            base = c.flush_full + self.tlb_gen_xfer[min(near, 3)]
            self.counters["tlb_gen_xfers"] += 1
        self.counters["local_full"] += 1
        self.tlb_gen_sharers.add(cpu)
        self.flush_all(me)
        me.local_gen = self.tlb_gen
        return self.cost(base, u[K.SLOT_FIXUP])

    def retry_after_userfault(self, cpu, page, u):
        """do_user_addr_fault() once handle_userfault() returned VM_FAULT_RETRY: the woken writer
        retries handle_mm_fault() in the same exception (FAULT_FLAG_TRIED), on the PTE as the
        monitor left it: (cycles, uffd-wp pending again, whether the write then re-executes)."""
        c = self.t.c
        pte = self.ptes[page]
        if not pte.write and not self.vma_write[page]:
            self.counters["prot_faults"] += 1
            return self.cost(c.sigsegv, u[K.SLOT_EXTRA]), False, False
        if not pte.write:
            lat, pending, retry = self.do_wp_page(page, u)   # wp_page_reuse(), or the monitor again
            return lat, pending, retry
        if not (pte.dirty and pte.young):
            # pte_mkyoung(pte_mkdirty()) changes it: stored; else FAULT_FLAG_TRIED: no fix-up
            pte.dirty = pte.young = True
            return self.cost(c.pte_update, u[K.SLOT_FIXUP]), False, True
        return 0, False, True

    # ------------------------------------------------------------------ working sets

    def refill_working_set(self, i, slot, u):
        """CPU ``i``'s thread refills the hot set its full flushes dropped (one page walk per
        entry, with the draw ``slot``), booked to that thread."""
        me = self.cpus[i]
        owed, me.owed = me.owed, 0
        entries = owed * me.working_set
        if not entries:
            return
        cost = self.cost(entries * self.t.c.page_walk, u[slot])
        if i == 0:
            self.refill_initiator += cost
        else:
            self.refill_others += cost
        self.counters["ws_refills"] += owed
        self.counters["tlb_misses"] += entries

    def refill_rows(self, cpu, u):
        """Every other CPU the shootdown from ``cpu`` flushed fully goes on running its thread,
        which refills (each with its own refill draw); the initiator's waits for the end of
        its step."""
        for i in range(self.n_cpus):
            if i != cpu and self.cpus[i].owed:
                self.refill_working_set(i, K.refill_slot(self.n_cpus, i), u)

    # ------------------------------------------------------------------ TLB state

    def count_pages(self, n):
        self.counters["invlpg"] += n
        if self.t.pti:
            self.counters["invpcid"] += n

    def invlpg_range(self, cpu_state, lo, n):
        for p in range(lo, lo + n):
            cpu_state.tlb.pop(p, None)

    def flush_all(self, cpu_state):
        """A full flush: every entry goes, and the thread owes the refill of its hot set."""
        cpu_state.tlb.clear()
        cpu_state.owed += 1


class ScalarBatch:
    """R independent ScalarEngines behind the VectorEngine interface (for tests and benchmarks)."""

    def __init__(self, machine: Machine, behaviour, cpus, pages: int, replicates: int,
                 working_set: int = 0, lazy=None, on_cpu_share: float = 1.0):
        """``machine`` and ``behaviour`` may be sequences, one per replicate (per-replicate costs
        and rules): each replicate is then its own ScalarEngine of its own."""
        self.R, self.C, self.P = replicates, len(cpus), pages
        machines = machine if isinstance(machine, (list, tuple)) else [machine] * replicates
        policies = behaviour if isinstance(behaviour, (list, tuple)) else [behaviour] * replicates
        if len(machines) != replicates or len(policies) != replicates:
            raise ValueError("one machine and one policy per replicate")
        self.engines = [ScalarEngine(m, p, cpus, pages, working_set, lazy, on_cpu_share)
                        for m, p in zip(machines, policies)]

    def step(self, kind, cpu, lo, n, arg, u):
        lat = np.zeros(self.R, np.int64)
        flush = np.zeros(self.R, np.int8)
        pending = np.zeros(self.R, bool)
        # plain Python ints, read one at a time by the engines
        ops = zip(*(np.asarray(x).tolist() for x in (kind, cpu, lo, n, arg)), np.asarray(u).T.tolist())
        for r, (e, op) in enumerate(zip(self.engines, ops)):
            lat[r], flush[r], pending[r] = e.step(*op)
        return lat, flush, pending

    @property
    def counters(self):
        return {name: np.array([e.counters[name] for e in self.engines], np.int64) for name in COUNTERS}

    @property
    def stolen(self):
        return np.array([e.stolen for e in self.engines], np.int64)

    @property
    def refill_initiator(self):
        return np.array([e.refill_initiator for e in self.engines], np.int64)

    @property
    def refill_others(self):
        return np.array([e.refill_others for e in self.engines], np.int64)
