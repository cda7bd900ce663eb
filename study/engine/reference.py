"""The scalar reference engine: the same model as study.engine.vector, written plainly.

One replicate, one event at a time, Python control flow and no masks.  The tests use it
as the oracle: fed the same operations and the same random draws, it must produce the
same latencies and counters, to the cycle, as the vectorized engine.
"""

from __future__ import annotations

import numpy as np

from study.engine import costs as K
from study.engine.costs import CostTables
from study.engine.machine import Machine, distance_matrix
from study.engine.ops import (
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


class Pte:
    __slots__ = ("write", "dirty", "young", "uffd_wp")

    def __init__(self):
        # A private anonymous page after its first write: do_anonymous_page() maps it
        # writable and dirty, the retried write's walk sets Accessed.
        self.write, self.dirty, self.young, self.uffd_wp = True, True, True, False


class TlbEntry:
    __slots__ = ("write", "dirty")

    def __init__(self, write, dirty):
        self.write, self.dirty = write, dirty


class Cpu:
    __slots__ = ("local_gen", "is_lazy", "tlb", "ws_cached", "off_cpu")

    def __init__(self, lazy, working_set):
        self.local_gen = 1
        self.off_cpu = False   # missed a shootdown with its thread off the CPU, not back since
        self.is_lazy = lazy
        self.tlb: dict[int, TlbEntry] = {}
        self.ws_cached = working_set


class ScalarEngine:
    """One replicate of the mm: the oracle for VectorEngine."""

    def __init__(self, machine: Machine, behaviour, cpus, pages: int, working_set: int = 0, lazy=None,
                 on_cpu_share: float = 1.0):
        self.t = CostTables(machine)
        # draws of a CPU's preempt slot meaning "its thread is off its CPU" (costs.off_cpu_window)
        self.off_lo, self.off_hi = K.off_cpu_window(self.t, on_cpu_share)
        self.policy = behaviour   # study.policies.Behaviour: the kernel's facts and the policy's patches
        self.clean_writable = behaviour.clean_anon_writable
        self.fixup = behaviour.fix_spurious_fault
        self.dist = distance_matrix(list(cpus))
        self.n_cpus = len(cpus)
        self.groups = self.t.send_groups(cpus)
        # entries beyond the STLB miss whether or not a flush came: only these are kept hot
        self.working_set = min(int(working_set), self.t.stlb_entries)
        lazy = [False] * self.n_cpus if lazy is None else [bool(x) for x in lazy]
        self.ptes = [Pte() for _ in range(pages)]
        # VM_WRITE of the VMA over each page (mprotect changes it; uffd-wp does not)
        self.vma_write = [True] * pages
        self.tlb_gen = 1
        self.mm_cpumask = set(range(self.n_cpus))
        self.tlb_gen_sharers = {0}
        self.cpus = [Cpu(lazy[i], self.working_set) for i in range(self.n_cpus)]
        self.counters = {name: 0 for name in COUNTERS}
        self.stolen = 0

    def cost(self, base, u, table=None):
        F = self.t.F if table is None else table
        return int(np.rint(base * F[u]))

    def step(self, kind, cpu, lo, n, arg, u):
        """One operation; returns (latency, flush type, uffd-wp fault pending)."""
        if kind in (OP_MPROTECT, OP_UFFD_WP, OP_MADV_FREE):
            return (*self.change_protection(kind, cpu, lo, n, arg, u), False)
        if kind == OP_ACCESS:
            lat, pending = self.access(cpu, lo, bool(arg), u)
            return lat, FLUSH_NONE, pending
        if kind == OP_SWITCH_MM:
            return self.switch_mm(cpu, bool(arg), u), FLUSH_NONE, False
        return 0, FLUSH_NONE, False

    # ------------------------------------------------------------------ change_protection

    def change_protection(self, kind, cpu, lo, n, arg, u):
        """change_pte_range() / madvise_free_pte_range() over [lo, lo+n), then one flush.

        Only PTEs whose change needs a flush widen the mmu_gather range (tlb->start..end),
        and the flush covers that span, not the whole call's range."""
        pol, c = self.policy, self.t.c
        if kind == OP_MPROTECT:
            syscall = c.syscall_mprotect
        elif kind == OP_UFFD_WP:
            syscall = c.syscall_uffd_wp
        else:
            syscall = c.syscall_madvise
        hint = kind == OP_UFFD_WP and arg == UFFD_UNPROTECT_WRITE_LIKELY
        need_strict = need_relaxed = False
        flushed = []          # pages whose PTE change needs a flush
        checks = 0            # can_change_pte_writable() calls
        for p in range(lo, lo + n):
            pte = self.ptes[p]
            old_write = pte.write
            try_writable = False
            if kind == OP_MPROTECT:
                self.vma_write[p] = bool(arg)
                if arg:
                    # MM_CP_TRY_CHANGE_WRITABLE; a uffd-wp PTE is never upgraded here
                    try_writable = not pte.write and not pte.uffd_wp
                else:
                    pte.write = False
            elif kind == OP_UFFD_WP:
                if arg == UFFD_PROTECT:
                    pte.uffd_wp = True
                    pte.write = False
                else:
                    pte.uffd_wp = False   # a software bit: needs no flush
                    if hint and pol.uffd_unprotect_mkdirty and self.vma_write[p]:
                        pte.dirty = pte.young = True          # RFC patch 1
                    try_writable = ((pol.uffd_unprotect_writable_unhinted or (hint and pol.uffd_unprotect_writable))
                                    and not pte.write and self.vma_write[p])
            if try_writable:
                # can_change_pte_writable(): dirty exclusive anon pages; clean ones too
                # where the kernel carries, or the policy applies, the RFC's patch 3
                checks += 1
                if pte.dirty or self.clean_writable:
                    pte.write = True
            need = FLUSH_NONE
            if pte.write and not old_write:
                need = FLUSH_RELAXED if pol.relaxed_flush_on_upgrade else FLUSH_STRICT
            if old_write and not pte.write:
                if pte.dirty:
                    if not pol.unsafe_dirty_demote:
                        need = FLUSH_STRICT
                elif not pol.no_flush_clean_wrprotect:
                    need = FLUSH_STRICT
            if kind == OP_MADV_FREE:
                if pte.dirty or pte.young:
                    need = FLUSH_STRICT
                pte.dirty = pte.young = False
            if need != FLUSH_NONE:
                flushed.append(p)
                need_strict |= need == FLUSH_STRICT
                need_relaxed |= need == FLUSH_RELAXED

        lat = self.cost(np.float64(syscall), u[K.SLOT_SYSCALL])
        lat += self.cost(n * c.pte_update + checks * c.pte_mkwrite_check, u[K.SLOT_PTE])
        if flushed:
            f_lo, f_n = flushed[0], flushed[-1] - flushed[0] + 1
        if need_strict:
            return lat + self.flush_tlb_mm_range(True, cpu, f_lo, f_n, u), FLUSH_STRICT
        if need_relaxed:
            return lat + self.flush_tlb_mm_range(False, cpu, f_lo, f_n, u), FLUSH_RELAXED
        return lat, FLUSH_NONE

    def flush_tlb_mm_range(self, strict, cpu, lo, n, u):
        t, c = self.t, self.t.c
        self.tlb_gen += 1
        new_gen = self.tlb_gen
        cost = 0
        others = [s for s in self.tlb_gen_sharers if s != cpu]
        if others:
            far = max(int(self.dist[cpu, s]) for s in others)
            cost += self.cost(t.tlb_gen_xfer[far], u[K.SLOT_TLBGEN])
            self.counters["tlb_gen_xfers"] += 1
        self.tlb_gen_sharers = {cpu}

        ranged = n <= t.ceiling
        me = self.cpus[cpu]
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

        if not strict:
            self.counters["relaxed_flushes"] += 1
            return cost + local
        self.counters["strict_flushes"] += 1

        # Strict: flush_tlb_multi() -> [kvm_flush_tlb_multi()] -> on_each_cpu_cond_mask(
        # should_flush_tlb, ...) -> smp_call_function_many_cond(), walked CPU by CPU.
        others = [i for i in range(self.n_cpus) if i != cpu and i in self.mm_cpumask]
        base = c.cpumask_scan
        flagged = []
        if t.pv_flush:
            # kvm_flush_tlb_multi(): read each CPU's steal_time.preempted; a preempted vCPU
            # gets KVM_VCPU_FLUSH_TLB (a cmpxchg) and leaves the mask: no IPI
            kept = []
            for i in others:
                d = int(self.dist[cpu, i])
                base += t.remote_line[d]
                if int(u[K.preempt_slot(self.n_cpus, i)]) < t.preempt_threshold:
                    base += t.remote_line[d]
                    flagged.append(i)
                else:
                    kept.append(i)
            others = kept
        targets, gone = [], []
        for i in others:
            d = int(self.dist[cpu, i])
            base += t.remote_line[d]                 # the cond function reads is_lazy
            if self.cpus[i].is_lazy:
                continue
            if self.off_lo <= int(u[K.preempt_slot(self.n_cpus, i)]) < self.off_hi:
                # should_flush_tlb(): another mm is loaded there (the thread is off its CPU):
                # no IPI, its generation stays behind
                gone.append(i)
                continue
            if self.cpus[i].off_cpu:
                # it missed a shootdown off its CPU and runs the mm again: it switched back in
                # before this flush (switch_mm_irqs_off(): full flush, its ASID was behind)
                self.come_back(i, new_gen - 1, u)
            base += 2 * t.remote_line[d]             # csd_lock() and llist_add() onto its queue
            targets.append(i)
        # One send: a single IPI, the all-but-self shorthand, or the mask by APIC mode.
        nt = len(targets)
        rank = {}
        if nt == 1 or (nt > 1 and t.shorthand and nt == t.n_online - 1):
            write, writes = t.icr_write, 1
            rank = {i: 1 for i in targets}
        else:
            write, groups = t.mask_write, {}
            for i in targets:
                g = int(self.groups[i])
                if g not in groups:
                    groups[g] = len(groups) + 1
                rank[i] = groups[g]
            writes = len(groups)
        fsend = t.F[u[K.SLOT_SEND]]
        send = int(np.rint((base + write * writes) * fsend))
        done = 0
        for i in targets:
            d = int(self.dist[cpu, i])
            # target i's IPI leaves when the ICR write (or hypercall) that covers it is done
            offset = int(np.rint((base + write * rank[i]) * fsend))
            remote = self.cpus[i]
            # flush_tlb_func() on the target, by the generation rule
            if new_gen <= remote.local_gen:
                work = 0.0
            elif ranged and remote.local_gen + 1 == new_gen:
                work = n * c.invlpg
                self.counters["remote_partial"] += 1
                self.count_pages(n)
                self.invlpg_range(remote, lo, n)
            else:
                work = c.flush_full
                self.counters["remote_full"] += 1
                self.flush_all(remote)
            remote.local_gen = new_gen
            handler = self.cost(c.irq_entry_exit + t.tlb_gen_xfer[d] + work,
                                u[K.handler_slot(self.n_cpus, i)])
            wire = t.ipi_deliver_ack[d]
            if t.kvm and not t.pv_flush and int(u[K.preempt_slot(self.n_cpus, i)]) < t.preempt_threshold:
                wire = wire + t.vcpu_wakeup_wait     # the IPI waits for the host to run the vCPU
            deliver_ack = self.cost(wire, u[K.deliver_slot(self.n_cpus, i)], t.F_ipi)
            done = max(done, offset + deliver_ack + handler)
            self.stolen += handler
            self.counters["tlb_gen_xfers"] += 1
            self.tlb_gen_sharers.add(i)
        for i in gone:
            self.cpus[i].off_cpu = True
            self.counters["off_cpu_skipped"] += 1
        for i in flagged:
            # the host flushes the vCPU's TLB when it runs it again (kvm_vcpu_flush_tlb_guest);
            # its cpu_tlbstate generation stays behind
            self.flush_all(self.cpus[i])
            self.stolen += self.cost(t.raw_flush_full, u[K.handler_slot(self.n_cpus, i)])
            self.counters["pv_flush_deferred"] += 1
        self.counters["ipis"] += nt
        self.counters["ipi_writes"] += writes if nt else 0
        self.counters["vm_exits"] += writes if (nt and t.kvm) else 0
        self.counters["shootdowns"] += bool(targets)
        return cost + max(send + local, done)

    def come_back(self, i, gen, u):
        """switch_mm_irqs_off() on CPU ``i`` when mm->tlb_gen was ``gen``, booked to stolen."""
        me, c = self.cpus[i], self.t.c
        base = c.context_switch
        if me.local_gen < gen:
            base = base + c.flush_full
            self.counters["local_full"] += 1
            self.flush_all(me)
        self.stolen += self.cost(base, u[K.SLOT_SWITCH])
        me.local_gen = gen
        me.off_cpu = False

    def count_pages(self, n):
        self.counters["invlpg"] += n
        if self.t.pti:
            self.counters["invpcid"] += n

    def invlpg_range(self, cpu_state, lo, n):
        for p in range(lo, lo + n):
            cpu_state.tlb.pop(p, None)

    def flush_all(self, cpu_state):
        cpu_state.tlb.clear()
        cpu_state.ws_cached = 0

    # ------------------------------------------------------------------ access

    def access(self, cpu, page, write, u):
        t, c, pol = self.t, self.t.c, self.policy
        me, pte = self.cpus[cpu], self.ptes[page]
        lat = 0
        if me.off_cpu:
            # it missed a shootdown off its CPU: switch_mm_irqs_off() first, like a lazy wake-up
            lat = self.switch_mm(cpu, False, u)
        lat += self.refill(me, u)

        entry = me.tlb.get(page)
        if entry is not None:
            lat += self.cost(c.tlb_hit, u[K.SLOT_ACCESS])
            self.counters["tlb_hits"] += 1
        else:
            lat += self.cost(c.page_walk, u[K.SLOT_ACCESS])
            self.counters["tlb_misses"] += 1
            entry = TlbEntry(pte.write, pte.dirty)
            me.tlb[page] = entry
            pte.young = True
        if not write:
            return lat, False

        pw, pd = pte.write, pte.dirty
        fault = False
        if entry.write and entry.dirty:
            # no re-walk: the write lands whatever the PTE says now
            if not (pw and pd):
                self.counters["violations"] += 1
        elif entry.write:
            # the locked walk that sets Dirty re-reads the PTE (Machine.dirty_walk)
            self.counters["dirty_walks"] += 1
            lat += self.cost(np.float64(c.dirty_walk), u[K.SLOT_DIRTY])
            if not pw:
                if t.dwalk_sets_dirty:
                    pte.dirty = True
                if t.dwalk_faults:
                    fault = True
                else:
                    self.counters["violations"] += 1
            if not fault:
                pte.dirty = pte.young = True
        else:
            fault = True

        if not fault:
            entry.write = entry.dirty = True
            return lat, False

        lat += self.cost(np.float64(c.fault_entry_exit), u[K.SLOT_FAULT])
        del me.tlb[page]   # the fault invalidates the faulting address's entry
        if not pte.write:
            if not self.vma_write[page]:
                # access_error() in do_user_addr_fault(): SIGSEGV
                self.counters["prot_faults"] += 1
                return lat + self.cost(np.float64(c.sigsegv), u[K.SLOT_EXTRA]), False
            if pte.uffd_wp:
                # do_wp_page() -> handle_userfault(VM_UFFD_WP)
                self.counters["uffd_faults"] += 1
                return lat, True
            # do_wp_page() -> wp_page_reuse(): an exclusive anonymous page is made writable,
            # dirty and young in place (ptep_set_access_flags); no flush.
            self.counters["reuse_faults"] += 1
            lat += self.cost(np.float64(c.pte_update), u[K.SLOT_FIXUP])
            pte.write = pte.dirty = pte.young = True
        else:
            # A stale read-only entry: handle_pte_fault() builds the entry with D and A.
            self.counters["spurious_faults"] += 1
            if not (pte.dirty and pte.young):
                # it changes the PTE: stored by ptep_set_access_flags(), no flush, no fix-up
                lat += self.cost(np.float64(c.pte_update), u[K.SLOT_FIXUP])
                pte.dirty = pte.young = True
            elif self.fixup and me.local_gen < self.tlb_gen:
                # nothing changed, a write, not FAULT_FLAG_TRIED: flush_tlb_fix_spurious_fault()
                # (RFC patch 8): a CPU behind mm->tlb_gen flushes everything and catches up
                near = min((int(self.dist[cpu, s]) for s in self.tlb_gen_sharers), default=99)
                base = c.flush_full
                if near > 0:
                    base = c.flush_full + t.tlb_gen_xfer[min(near, 3)]
                    self.counters["tlb_gen_xfers"] += 1
                lat += self.cost(base, u[K.SLOT_FIXUP])
                self.counters["local_full"] += 1
                self.tlb_gen_sharers.add(cpu)
                self.flush_all(me)
                me.local_gen = self.tlb_gen
        # The retried write walks again; the PTE is dirty now, so no dirty-bit walk.
        lat += self.cost(np.float64(c.page_walk), u[K.SLOT_RETRY])
        self.counters["tlb_misses"] += 1
        me.tlb[page] = TlbEntry(True, True)
        return lat, False

    def refill(self, me, u):
        """Application work between accesses refills the working set a full flush dropped:
        one STLB miss and page walk per entry (cost page_walk each)."""
        missing = self.working_set - me.ws_cached
        me.ws_cached = self.working_set
        self.counters["tlb_misses"] += missing
        return self.cost(missing * self.t.c.page_walk, u[K.SLOT_REFILL])

    # ------------------------------------------------------------------ context switch

    def switch_mm(self, cpu, to_lazy, u):
        t, c = self.t, self.t.c
        me = self.cpus[cpu]
        if to_lazy:
            me.is_lazy = True
            return 0
        base = c.context_switch
        if me.local_gen < self.tlb_gen:
            base = base + c.flush_full
            self.counters["local_full"] += 1
            self.flush_all(me)
        near = min((int(self.dist[cpu, s]) for s in self.tlb_gen_sharers), default=99)
        if near > 0:
            base = base + t.tlb_gen_xfer[min(near, 3)]
            self.counters["tlb_gen_xfers"] += 1
        self.tlb_gen_sharers.add(cpu)
        me.local_gen = self.tlb_gen
        me.is_lazy = False
        me.off_cpu = False
        return self.cost(base, u[K.SLOT_SWITCH])


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
        for r, e in enumerate(self.engines):
            lat[r], flush[r], pending[r] = e.step(int(kind[r]), int(cpu[r]), int(lo[r]), int(n[r]),
                                                  int(arg[r]), u[:, r])
        return lat, flush, pending

    @property
    def counters(self):
        return {name: np.array([e.counters[name] for e in self.engines], np.int64) for name in COUNTERS}

    @property
    def stolen(self):
        return np.array([e.stolen for e in self.engines], np.int64)
