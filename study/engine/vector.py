"""The vectorized engine: R replicates of one address space advanced in lockstep.

Each step every replicate performs at most one operation (its own kind, CPU and pages:
masks select who does what).  Costs emerge from the events the operation triggers —
syscall, PTE updates, ++tlb_gen, local and remote flush_tlb_func, IPIs and their
acknowledgement, TLB hits, page walks, dirty-bit walks, faults — each charged in integer
cycles with jitter (study.engine.costs).  study.engine.reference is the same model written
one replicate and one event at a time; the two agree to the cycle.

Simplifications, on purpose: operations are atomic (no two CPUs inside the mm's page
tables at once), so mm->tlb_gen when a handler runs equals the generation it was sent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from study.engine import costs as K
from study.engine.costs import CostTables
from study.engine.heap import keep_heap
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


class VectorEngine:
    """State and transitions of ``replicates`` copies of one mm on ``len(cpus)`` CPUs.

    ``behaviour`` is a study.policies.Behaviour (a dataclass of boolean rules: the kernel's
    facts combined with the policy's patches), or a sequence of ``replicates`` of them (one per
    replicate).  Replicates with different behaviours still step in lockstep on the same
    operations and draws: that is what makes them comparable (common random numbers) and what
    lets one run carry a setting's policy variants.

    ``machine`` is a Machine, or a sequence of K Machines that differ only in their costs: K
    cost sets (an ensemble's members).  No state transition reads a cost (costs only price
    the events the state machine takes), so the cost sets share one state and one set of
    draws: state stays [.., R], and only the cycle books gain a leading cost-set axis, [K, R]
    (per-CPU cycle temporaries [K, C, R]).  Set k's books are then exactly those of a run with
    machine k alone.  step() returns latencies [R] for one Machine and [K, R] for K sets.
    CPU slot i runs application thread i; ``cpus`` gives its (socket, core, smt).
    """

    def __init__(self, machine: Machine, behaviour, cpus, pages: int, replicates: int,
                 working_set: int = 0, lazy=None, on_cpu_share: float = 1.0):
        R, C, P = replicates, len(cpus), pages
        self.R, self.C, self.P = R, C, P
        keep_heap()   # the step's temporaries reuse the heap instead of faulting in fresh pages
        self.t = CostTables(machine)
        self.sets = self.t.sets                 # K, or None for one Machine
        self.shape = (R,) if self.sets is None else (self.sets, R)   # cycle books
        # Each switch: a Python bool when every replicate agrees (the usual case, no mask
        # work), else a bool array over replicates.
        self.policy = pol = _switches(behaviour, R)
        self.clean_writable = pol.clean_anon_writable
        self.fixup = pol.fix_spurious_fault
        self.dist = distance_matrix(list(cpus)).astype(np.int8)   # classes 0-3: byte-wide [C, R] temporaries
        # per CPU, the other CPUs by distance class, nearest class first: (class, rows), rows a
        # slice where they are contiguous (a view) and an index array where not
        self.by_class = [[(d, _block(np.flatnonzero(row == d))) for d in np.unique(row[row > 0]).tolist()]
                         for row in self.dist]
        # entries beyond the STLB miss whether or not a flush came: only these are kept hot
        self.working_set = min(int(working_set), self.t.stlb_entries)
        # the send each CPU slot belongs to (x2APIC cluster or PV window); None: one per CPU
        groups = self.t.send_groups(cpus)
        self.one_group = False
        if len(np.unique(groups)) == C:
            self.group_of, self.group_slots = None, ()
        else:
            uniq, self.group_of = np.unique(groups, return_inverse=True)
            self.group_slots = [np.flatnonzero(self.group_of == q) for q in range(len(uniq))]
            self.one_group = len(uniq) == 1
        # the shorthand needs the mm on every online CPU (at most C - 1 targets)
        self.shorthand_reachable = self.t.shorthand and C == self.t.n_online
        self.ar = np.arange(R)
        self._everyone = np.ones(R, bool)
        self.pg = np.arange(P)[:, None]
        self.cpu_ids = np.arange(C)[:, None]
        # Replicates are the last (contiguous) axis of every array: per page [P, R], per CPU
        # [C, R], per CPU and page [C, P, R], so that reductions over CPUs or pages are
        # elementwise passes over replicates.
        # Page tables: every page private anonymous and written once: do_anonymous_page()
        # mapped it writable and dirty, the retried write's walk set Accessed.  Workloads
        # reach clean pages only through an operation (MADV_FREE).
        self.pte_write = np.ones((P, R), bool)
        self.pte_dirty = np.ones((P, R), bool)
        self.pte_young = np.ones((P, R), bool)
        self.pte_uffd_wp = np.zeros((P, R), bool)
        # VM_WRITE of the VMA over each page (mprotect changes it; uffd-wp does not)
        self.vma_write = np.ones((P, R), bool)
        # The mm: every thread's CPU has run it.
        self.tlb_gen = np.ones(R, np.int64)
        self.mm_cpumask = np.ones((C, R), bool)
        self.tlb_gen_sharers = np.zeros((C, R), bool)   # CPUs holding the tlb_gen line
        self.tlb_gen_sharers[0] = True
        # Per CPU: local generation, lazy flag, TLB entries for the range, working set.
        self.local_gen = np.ones((C, R), np.int64)
        lazy = np.zeros(C, bool) if lazy is None else np.asarray(lazy, bool)
        self.is_lazy = np.broadcast_to(lazy[:, None], (C, R)).copy()
        self.tlb_valid = np.zeros((C, P, R), bool)
        self.tlb_write = np.zeros((C, P, R), bool)
        self.tlb_dirty = np.zeros((C, P, R), bool)
        self.ws_cached = np.full((C, R), self.working_set, np.int64)
        # Results.
        self.counters = {name: np.zeros(R, np.int64) for name in COUNTERS}
        self.stolen = np.zeros(self.shape, np.int64)   # cycles remote handlers took from other CPUs
        # Threads off their CPU (workload on_cpu_share < 1): drawn per target at each strict
        # flush (costs.off_cpu_window); off_cpu marks a CPU that missed a shootdown that way
        # and has not switched the mm back in since.
        self.off_lo, self.off_hi = K.off_cpu_window(self.t, on_cpu_share)
        self.off_cpu = np.zeros((C, R), bool)

    # ---------------------------------------------------------------- helpers

    def _cost(self, base, u, table=None):
        """Jittered integer cost of ``base`` cycles with draws ``u``."""
        # float64 holding whole cycles: exact far beyond any run's totals, and it spares
        # an integer conversion per event; step() converts once.
        F = self.t.F if table is None else table
        return np.rint(base * F.take(u))   # take: twice as fast as F[u] here

    def _charge(self, acc, mask, base, u, table=None):
        """``acc += cost of base`` where ``mask`` (``mask`` and ``u`` [R]; ``acc`` [R], or [K, R]
        with cost sets; ``base`` a scalar, [R], [K, 1] or [K, R]; ``mask`` None: everywhere).

        The same cycles as ``np.where(mask, self._cost(base, u), 0)``, but the table lookup and
        the arithmetic run only for the replicates the event happens to, and not at all when
        none has it: most events (faults, dirty-bit walks, refills, retries, SIGSEGV) happen
        to few replicates of a step, or to none."""
        if mask is None:
            acc += self._cost(base, u, table)
            return
        hit = np.count_nonzero(mask)   # a tenth of nonzero()'s time: skip that when none or all
        if hit == 0:
            return
        if hit == mask.size:
            acc += self._cost(base, u, table)
            return
        idx = mask.nonzero()[0]   # masks are [R] (or [n]): no ravel needed
        F = self.t.F if table is None else table
        b = base.take(idx, axis=-1) if isinstance(base, np.ndarray) and base.ndim and base.shape[-1] != 1 else base
        acc[..., idx] += np.rint(b * F.take(u.take(idx)))

    def _at(self, idx):
        """Index of each replicate's CPU (or page) in a per-CPU [C, R] (or per-page) array.

        A plain row when every replicate acts on the same CPU (lockstep): a view, so reads
        and in-place updates skip the gather and scatter of fancy indexing."""
        first = idx[0]
        if (idx == first).all():
            return (first,)
        return (idx, self.ar)

    def _own(self, cpu, mask):
        """[C, R]: each replicate's acting CPU, where ``mask``."""
        return (self.cpu_ids == cpu) & mask

    def _distances(self, cpu):
        """Distance class from each replicate's acting CPU (``cpu``: [R], or [n] for some
        replicates' rows) to every CPU: [C, R] (or [C, n]), or [C, 1].

        In lockstep every replicate usually acts on the same CPU: its row of the distance
        matrix, which broadcasts, then replaces a [C, R] gather (and the gathers of
        per-distance costs through it)."""
        first = cpu[0]
        if (cpu == first).all():
            return self.dist[first][:, None]
        return self.dist[:, cpu]

    def _by_dist(self, table, idx):
        """Per-distance cost ``table`` ([4], or [K, 4] with cost sets) at classes ``idx``:
        idx's shape, with the cost-set axis in front."""
        if table.ndim == 1:
            return np.take(table, idx)
        return table[:, idx]

    def _count(self, name, values):
        self.counters[name] += values

    # ---------------------------------------------------------------- the step

    def step(self, kind, cpu, lo, n, arg, u):
        """Advance one step.  All inputs are arrays over replicates.

        ``u`` is slot-major, [slots, R], so that each event's draws are contiguous.
        Returns (latency on the acting CPU, flush type taken, uffd-wp fault pending).
        """
        first = kind[0]
        if (kind == first).all():
            # lockstep: one kind for every replicate (the workloads' usual step)
            kinds = ((first, self._everyone),)
        else:
            kinds = [(op, kind == op) for op in (OP_MPROTECT, OP_UFFD_WP, OP_MADV_FREE, OP_ACCESS, OP_SWITCH_MM)]
        return self._run(kinds, cpu, lo, n, arg, u)

    def step_masked(self, kind, active, cpu, lo, n, arg, u):
        """step() of one operation ``kind`` by the replicates in ``active`` (the others idle):
        the workloads' masked steps, without sorting replicates by kind."""
        return self._run(((kind, active),), cpu, lo, n, arg, u)

    def _run(self, kinds, cpu, lo, n, arg, u):
        lat = np.zeros(self.shape)
        flush = np.full(self.R, FLUSH_NONE, np.int8)
        uffd_pending = np.zeros(self.R, bool)
        for op, m in kinds:
            if op in (OP_MPROTECT, OP_UFFD_WP, OP_MADV_FREE):
                if m.any():
                    self._change_protection(op, m, cpu, lo, n, arg, u, lat, flush)
            elif op == OP_ACCESS:
                if m.any():
                    self._access(m, cpu, lo, arg.astype(bool), u, lat, uffd_pending)
            elif op == OP_SWITCH_MM:
                if m.any():
                    self._switch_mm(m, cpu, arg.astype(bool), u, lat)
        return lat.astype(np.int64), flush, uffd_pending

    # ---------------------------------------------------------------- change_protection

    def _change_protection(self, op, m, cpu, lo, n, arg, u, lat, flush):
        """mprotect(), UFFDIO_WRITEPROTECT and MADV_FREE: update PTEs, then one flush.

        Only PTEs whose change needs a flush widen the mmu_gather range (tlb->start..end):
        the flush covers that span, and the ceiling applies to it.

        A call on one page (the uffd monitor's unprotect of the faulting page) works on that
        page's row per replicate ([R]) instead of the whole [P, R] page table."""
        pol, c = self.policy, self.t.c
        single = n[0] == 1 and (n == 1).all()
        if single:
            # each replicate's PTE: a row in lockstep, else flat indices into [P, R]
            pte = (lo[0],) if (lo == lo[0]).all() else lo * self.R + self.ar
            inr = m
            vma, w, wp = _get(self.vma_write, pte), _get(self.pte_write, pte), _get(self.pte_uffd_wp, pte)
            d, y = _get(self.pte_dirty, pte), _get(self.pte_young, pte)
        else:
            inr = (self.pg >= lo) & (self.pg < lo + n) & m          # [P, R]
            vma, w, wp = self.vma_write, self.pte_write, self.pte_uffd_wp
            d, y = self.pte_dirty, self.pte_young
        none = np.zeros_like(inr)
        if op == OP_MPROTECT:
            on = arg.astype(bool)
            vma = np.where(inr, on, vma)
            # MM_CP_TRY_CHANGE_WRITABLE; a uffd-wp PTE is never upgraded here
            try_w = inr & on & ~w & ~wp
            down = inr & ~on
            syscall = c.syscall_mprotect
        elif op == OP_UFFD_WP:
            protect = arg == UFFD_PROTECT
            hint = arg == UFFD_UNPROTECT_WRITE_LIKELY
            pin, uin = inr & protect, inr & ~protect
            # protect: RW->RO and the uffd-wp bit; unprotect: clear the bit (a software
            # bit, no flush) and, where the kernel or the RFC says so, try writable
            wp = (wp | pin) & ~uin
            if pol.uffd_unprotect_mkdirty is not False:
                mk = _if(pol.uffd_unprotect_mkdirty, uin & hint & vma, None)   # RFC patch 1
                d = d | mk
                y = y | mk
            asks = (hint & pol.uffd_unprotect_writable) | pol.uffd_unprotect_writable_unhinted
            try_w = uin & asks & ~w & vma
            down = pin
            syscall = c.syscall_uffd_wp
        else:
            try_w, down = none, none
            syscall = c.syscall_madvise
        # can_change_pte_writable(): dirty exclusive anon pages; clean ones too where the
        # kernel carries, or the policy applies, the RFC's patch 3
        cw = self.clean_writable
        up = try_w & d if cw is False else try_w if cw is True else try_w & (d | cw)
        new_w = (w | up) & ~down
        promote = inr & ~w & new_w
        demote = inr & w & ~new_w
        # pte_needs_flush(), per page; the range takes the strongest flush any page needs.
        strict_need = _unless(pol.unsafe_dirty_demote, demote & d, none)
        if pol.no_flush_clean_wrprotect is not True:
            strict_need = strict_need | _unless(pol.no_flush_clean_wrprotect, demote & ~d, none)
        rfu = pol.relaxed_flush_on_upgrade
        relaxed_need = _if(rfu, promote, none)
        if rfu is not True:
            strict_need = strict_need | _unless(rfu, promote, none)
        if op == OP_MADV_FREE:
            cleaned = inr & (d | y)
            strict_need = strict_need | cleaned
            d = d & ~inr
            y = y & ~inr
        if single:
            for array, value in ((self.vma_write, vma), (self.pte_write, new_w), (self.pte_uffd_wp, wp),
                                 (self.pte_dirty, d), (self.pte_young, y)):
                _put(array, pte, value)
            n_checks = try_w.astype(np.int64)
            any_strict, any_relaxed = strict_need, relaxed_need
        else:
            self.vma_write, self.pte_write, self.pte_uffd_wp = vma, new_w, wp
            self.pte_dirty, self.pte_young = d, y
            n_checks = np.count_nonzero(try_w, axis=0)
            any_strict, any_relaxed = strict_need.any(0), relaxed_need.any(0)

        cost = self._cost(np.float64(syscall), u[K.SLOT_SYSCALL])
        cost += self._cost(n * c.pte_update + n_checks * c.pte_mkwrite_check, u[K.SLOT_PTE])
        strict = m & any_strict
        relaxed = m & ~any_strict & any_relaxed
        f = strict | relaxed
        if f.any():
            if single:
                f_n = f.astype(np.int64)
                span = self.pg == (lo[0] if (lo == lo[0]).all() else lo)
            else:
                # the span of the PTEs that needed a flush: first..last such page
                need = strict_need | relaxed_need
                f_lo = np.argmax(need, axis=0)
                f_n = np.where(f, self.P - np.argmax(need[::-1], axis=0) - f_lo, 0)
                span = (self.pg >= f_lo) & (self.pg < f_lo + f_n)
            cost += self._flush_tlb_mm_range(f, strict, cpu, f_n, span, u)
        lat += np.where(m, cost, 0)
        flush[strict] = FLUSH_STRICT
        flush[relaxed] = FLUSH_RELAXED

    def _flush_tlb_mm_range(self, f, strict, cpu, n, inr, u):
        """++tlb_gen, the local flush_tlb_func, and on the strict path the shootdown."""
        t, c = self.t, self.t.c
        D = self._distances(cpu)                             # distance from the initiator
        self.tlb_gen += f
        new_gen = self.tlb_gen
        # ++mm->tlb_gen is a locked RMW: the line comes from the farthest other holder.
        if D.shape[-1] == 1:
            # one initiator CPU for every replicate: class by class over the CPUs at that
            # distance ([k, R] rows, nearest class first so that the farthest holder's class
            # is the one left), not a [C, R] where() and maximum
            xdist = np.zeros(self.R, np.int8)
            for d, rows in self.by_class[cpu[0]]:
                xdist[self.tlb_gen_sharers[rows].any(0)] = d
        else:
            others = self.tlb_gen_sharers & (D > 0)
            xdist = np.where(others, D, 0).max(0)
        moved = f & (xdist > 0)
        cost = np.zeros(self.shape)
        self._charge(cost, moved, self._by_dist(t.tlb_gen_xfer, xdist), u[K.SLOT_TLBGEN])
        self._count("tlb_gen_xfers", moved)
        self.tlb_gen_sharers &= ~f
        at = self._at(cpu)
        self.tlb_gen_sharers[at] |= f

        ranged = n <= t.ceiling
        # The initiator's own flush_tlb_func: partial only if it lags exactly one generation.
        lg = self.local_gen[at]
        loc_partial = f & ranged & (lg + 1 == new_gen)
        loc_full = f & ~loc_partial
        local_cost = np.zeros(self.shape)
        self._charge(local_cost, f, np.where(loc_partial, n * c.invlpg, c.flush_full), u[K.SLOT_LOCAL])
        self._count("local_partial", loc_partial)
        self._count("local_full", loc_full)
        self._count_pages(n * loc_partial)
        if len(at) == 1:
            if loc_partial.any():
                self.tlb_valid[at] &= ~(inr & loc_partial)
            if loc_full.any():
                self.tlb_valid[at] &= ~loc_full
                self.ws_cached[at] = np.where(loc_full, 0, self.ws_cached[at])
        else:
            self._invalidate(self._own(cpu, loc_partial), self._own(cpu, loc_full), inr)
        self.local_gen[at] = np.where(f, new_gen, lg)

        self._count("strict_flushes", strict)
        self._count("relaxed_flushes", f & ~strict)
        relaxed_cost = cost + local_cost
        if not strict.any():
            return relaxed_cost

        # Strict: flush_tlb_multi() -> [kvm_flush_tlb_multi()] -> on_each_cpu_cond_mask(
        # should_flush_tlb, ...) -> smp_call_function_many_cond().  The initiator walks the
        # other CPUs of mm_cpumask in CPU order; every step below is a sum over that walk.
        C = self.C
        # The CPUs the walk can reach, rows [a, b): the initiator's own row never holds a
        # target, and in lockstep, when it is the first or the last CPU, the others are one
        # block.  Every per-CPU temporary below covers those rows only (views), which halves
        # them at two CPUs; sums and maxima over the rows are unchanged, the initiator's row
        # adding zeros.
        a, b = self._shootdown_rows(cpu, D)
        rows = slice(a, b)
        D = D[rows]
        ux = K.N_FIXED_SLOTS + a                     # per-CPU draw slots of row a
        others = self.mm_cpumask[rows] & (D > 0) & strict                      # [b - a, R]
        # Cycle temporaries per CPU are [b - a, R] (or [b - a, 1]), with cost sets
        # [K, b - a, R]: every sum or maximum over CPUs runs along axis -2, and a per-set
        # value enters them through _per_cpu().
        rl = self._by_dist(t.remote_line, D)                                   # [b - a, R] or [b - a, 1]
        base = np.zeros(self.shape) + c.cpumask_scan
        u_preempt = u[ux + 2 * C:ux + 2 * C + b - a]
        flagged = None
        if t.pv_flush:
            # kvm_flush_tlb_multi(): read each CPU's steal_time.preempted; a preempted vCPU
            # gets KVM_VCPU_FLUSH_TLB (a cmpxchg) and leaves the mask: no IPI
            base += (rl * others).sum(-2)
            if t.preempt_threshold:
                flagged = others & (u_preempt < t.preempt_threshold)
                base += (rl * flagged).sum(-2)
                others = others & ~flagged
        # the cond function reads each CPU's is_lazy line; a target also costs csd_lock() and
        # llist_add() onto its call_single_queue
        targets = others & ~self.is_lazy[rows]
        gone = None
        if self.off_hi > self.off_lo:
            # should_flush_tlb(): a CPU whose cpu_tlbstate.loaded_mm is another mm (its thread
            # is off the CPU) gets no IPI; its generation stays behind (its is_lazy/loaded_mm
            # line is still read).  A CPU that missed one that way and whose thread is back
            # now switched the mm in since: switch_mm_irqs_off() -> choose_new_asid() found
            # its ASID's tlb_gen behind and flushed it fully.
            gone = targets & (u_preempt >= self.off_lo) & (u_preempt < self.off_hi)
            targets = targets & ~gone
            self._come_back(targets & self.off_cpu[rows], new_gen - 1, u[K.SLOT_SWITCH], rows)
        base += (rl * others).sum(-2)
        base += 2 * (rl * targets).sum(-2)
        nt = _n_rows(targets)
        # One send: a single IPI, the all-but-self shorthand, or the mask by APIC mode; target
        # k's IPI leaves when the ICR write (or hypercall) that covers it is done.
        if self.group_of is None:
            rank = self._running_count(targets)       # one write per target, in CPU order
            writes = nt
        elif self.one_group:
            rank = 1                                   # one cluster (or PV window) covers all
            writes = (nt > 0).astype(np.int64)
        else:
            rank, writes = self._group_ranks(targets)  # every row (_shootdown_rows)
        if self.shorthand_reachable:
            # the mask plus the sender is every online CPU: one all-but-self write (a single
            # target is one write too)
            one = (nt == 1) | (nt == t.n_online - 1)
            rank = np.where(one, 1, rank)
            writes = np.where(one, np.minimum(writes, 1), writes)
        if t.same_write:
            write = t.icr_write
        else:
            # a single IPI (or the shorthand) is an ICR write even where the mask is a hypercall
            if not self.shorthand_reachable:
                one = nt == 1
            write = np.where(one, t.icr_write, t.mask_write)
        fsend = np.take(t.F, u[K.SLOT_SEND])
        send_cost = np.rint((base + write * writes) * fsend)
        offset = np.rint((_per_cpu(base) + _per_cpu(write) * rank) * fsend)

        # Each target's flush_tlb_func: read mm->tlb_gen (line from the initiator), then
        # INVLPG per page or a full flush by the generation rule.  No target can be current
        # already (local_gen <= tlb_gen < new_gen), so the "nothing to do" case never arises.
        lgt = self.local_gen[rows]
        t_partial = targets & ranged & (lgt + 1 == new_gen)
        t_full = targets & ~t_partial
        # a non-target's work is never read (its handler is masked out below)
        work = np.where(t_partial, n * _per_cpu(c.invlpg), _per_cpu(c.flush_full))
        handler_base = _per_cpu(c.irq_entry_exit) + self._by_dist(t.tlb_gen_xfer, D) + work
        u_deliver = u[ux:ux + b - a]
        u_handler = u[ux + C:ux + C + b - a]
        handler = np.where(targets, self._cost(handler_base, u_handler), 0)
        wire = self._by_dist(t.ipi_deliver_ack, D)
        if t.kvm and not t.pv_flush and t.preempt_threshold:
            # an IPI to a preempted vCPU waits for the host to run it again
            waits = targets & (u_preempt < t.preempt_threshold)
            wire = wire + np.where(waits, _per_cpu(t.vcpu_wakeup_wait), 0.0)
        deliver_ack = self._cost(wire, u_deliver, t.F_ipi)
        done = np.where(targets, offset + deliver_ack + handler, 0).max(-2)
        # The initiator sends, flushes locally meanwhile, then waits for the slowest ack.
        strict_cost = cost + np.maximum(send_cost + local_cost, done)

        self.stolen += handler.sum(-2).astype(np.int64)
        n_partial = _n_rows(t_partial)
        self._count("ipis", nt)
        self._count("ipi_writes", writes)
        if t.kvm:
            self._count("vm_exits", writes)
        self._count("shootdowns", nt > 0)
        self._count("remote_partial", n_partial)
        self._count("remote_full", nt - n_partial)
        self._count_pages(n * n_partial)
        self._count("tlb_gen_xfers", nt)
        self.tlb_gen_sharers[rows] |= targets
        self._invalidate(t_partial, t_full, inr, rows)
        self.local_gen[rows] = np.where(targets, new_gen, lgt)
        if gone is not None:
            self.off_cpu[rows] |= gone
            self._count("off_cpu_skipped", np.count_nonzero(gone, axis=0))
        if flagged is not None and flagged.any():
            # the host flushes the vCPU's TLB when it runs it again (kvm_vcpu_flush_tlb_guest);
            # its cpu_tlbstate generation stays behind
            self._invalidate(None, flagged, rows=rows)
            flush_cost = self._cost(np.float64(_per_cpu(t.raw_flush_full)), u_handler)
            self.stolen += np.where(flagged, flush_cost, 0).sum(-2).astype(np.int64)
            self._count("pv_flush_deferred", np.count_nonzero(flagged, axis=0))
        return np.where(strict, strict_cost, relaxed_cost)

    def _come_back(self, back, gen, u_switch, rows=slice(None)):
        """CPUs ``back`` (rows ``rows`` of [C, R]) switched the mm back in since they missed a
        shootdown off their CPU, when mm->tlb_gen was ``gen``: switch_mm_irqs_off() (context
        switch, and a full flush since its ASID's tlb_gen is behind), booked to the other
        CPUs' cycles."""
        if not back.any():
            return
        c = self.t.c
        local_gen = self.local_gen[rows]
        behind = back & (local_gen < gen)
        base = _per_cpu(c.context_switch) + np.where(behind, _per_cpu(c.flush_full), 0.0)
        self.stolen += np.where(back, self._cost(base, u_switch), 0).sum(-2).astype(np.int64)
        self._count("local_full", np.count_nonzero(behind, axis=0))
        self._invalidate(None, behind, rows=rows)
        local_gen[...] = np.where(back, gen, local_gen)
        self.off_cpu[rows] &= ~back

    def _shootdown_rows(self, cpu, D):
        """Rows [a, b) of the CPUs a strict flush from ``cpu`` can reach (D: _distances()):
        all but the initiator's when one CPU initiates for every replicate and it is the
        first or the last (the others one block), else all of them.  Sends in more than one
        group (x2APIC clusters, PV windows) keep every row: _group_ranks numbers them by CPU."""
        C = self.C
        if D.shape[-1] != 1 or C < 2 or not (self.group_of is None or self.one_group):
            return 0, C
        p = int(cpu[0])
        return (1, C) if p == 0 else (0, C - 1) if p == C - 1 else (0, C)

    def _running_count(self, mask):
        """Per CPU row, how many rows up to and including it are set ([C, R] int64): a row
        loop, several times faster than np.cumsum along the short CPU axis."""
        out = np.empty(mask.shape, np.int64)
        acc = np.zeros(mask.shape[1], np.int64)
        for i in range(mask.shape[0]):
            acc += mask[i]
            out[i] = acc
        return out

    def _group_ranks(self, targets):
        """Per target, the number of the send (x2APIC cluster write or PV hypercall) covering
        it, sends numbered in the order their first target comes in the walk; and the sends."""
        C = self.C
        first = np.full((len(self.group_slots), self.R), C)
        for q, slots in enumerate(self.group_slots):
            tq = targets[slots]
            first[q] = np.where(tq.any(0), slots[np.argmax(tq, axis=0)], C)
        has = first < C
        rank_q = ((first[None, :, :] <= first[:, None, :]) & has[None, :, :]).sum(1)
        return rank_q[self.group_of], np.count_nonzero(has, axis=0)

    def _count_pages(self, pages):
        """Pages invalidated by a partial flush: INVLPG, plus INVPCID of the user ASID with PTI."""
        self._count("invlpg", pages)
        if self.t.pti:
            self._count("invpcid", pages)

    def _invalidate(self, partial, full, inr=None, rows=slice(None)):
        """INVLPG the range on CPUs ``partial``, flush everything on CPUs ``full`` (rows
        ``rows`` of [C, R])."""
        if partial is not None and partial.any():
            self.tlb_valid[rows] &= ~(partial[:, None, :] & inr[None, :, :])
        if full.any():
            self.tlb_valid[rows] &= ~full[:, None, :]
            self.ws_cached[rows][full] = 0

    # ---------------------------------------------------------------- memory access

    def _access(self, m, cpu, page, write, u, lat, uffd_pending):
        """A read or write of ``page`` by the thread on ``cpu``, faults and retries included.

        Only the replicates in ``m`` do anything, so everything below runs on their rows alone
        ([n], n = how many access): the page's PTE bits, this CPU's TLB entry and per-CPU
        state are gathered once (by flat index, or as rows in lockstep), updated there, and
        written back once.  A masked step (the uffd monitor's retried writes: the few
        replicates with a fault pending) then costs in proportion to who acts, not to R."""
        t, c = self.t, self.t.c
        if self.off_hi > self.off_lo:
            # a thread that missed a shootdown off its CPU runs again: switch_mm_irqs_off()
            # first (the lazy wake-up's path: context switch, full flush if behind), before
            # its TLB entry is read
            back = m & self.off_cpu[self._at(cpu)]
            if back.any():
                self._switch_mm(back, cpu, np.zeros(self.R, bool), u, lat)
        r = self._rows(m)
        if r.size == 0:
            return
        R, P = self.R, self.P
        c0, p0 = cpu[0], page[0]
        if r is self.ar and (cpu == c0).all() and (page == p0).all():
            # lockstep: everyone on one CPU and page, so each entry is a row (_get/_put)
            cr, at, pte, tlb = cpu, (c0,), (p0,), (c0, p0)
        else:
            cr, pr = cpu.take(r), page.take(r)
            at = cr * R + r                    # each one's entry in a per-CPU [C, R] array
            pte = pr * R + r                   # ... in a per-page [P, R] array
            tlb = (cr * P + pr) * R + r        # ... in a per-CPU-and-page [C, P, R] array
        us = u if r is self.ar else u[:, r]
        cost, missing = self._refill(at, us)

        valid, tw, td = _get(self.tlb_valid, tlb), _get(self.tlb_write, tlb), _get(self.tlb_dirty, tlb)
        pw, pd, py = _get(self.pte_write, pte), _get(self.pte_dirty, pte), _get(self.pte_young, pte)
        miss = ~valid
        self._charge(cost, None, np.where(valid, c.tlb_hit, c.page_walk), us[K.SLOT_ACCESS])
        self._count_at("tlb_hits", r, valid)
        # A miss fills the entry from the PTE (and sets Accessed).
        ew = np.where(miss, pw, tw)
        ed = np.where(miss, pd, td)
        py |= miss

        W = write.take(r)
        # A write through a dirty writable entry does not re-read the PTE.
        direct = W & ew & ed
        # A write through a clean writable entry: the locked walk that sets Dirty re-reads
        # the PTE (Machine.dirty_walk).
        dwalk = W & ew & ~ed
        dwalk_ro = dwalk & ~pw
        dwalk_fault = dwalk_ro if t.dwalk_faults else np.zeros_like(dwalk)
        dwalk_done = dwalk & ~dwalk_fault
        self._count_at("dirty_walks", r, dwalk)
        self._charge(cost, dwalk, np.float64(c.dirty_walk), us[K.SLOT_DIRTY])
        # The safety checker: a write that completes while the PTE is read-only, or without
        # the PTE's Dirty bit set (the data would be lost to MADV_FREE reclaim).
        self._count_at("violations", r, (direct & ~(pw & pd)) | (dwalk_done & ~pw))
        if t.dwalk_sets_dirty:
            # pre-CET: Dirty left set on the read-only PTE (completes: the write set it)
            pd = pd | dwalk_ro
        pd = pd | dwalk_done
        py |= dwalk_done

        fault = (W & ~ew) | dwalk_fault
        if fault.any():
            retry = self._fault(r, cr, at, pte, fault, pw, pd, py, us, cost, uffd_pending)
        else:
            # nobody faults: the PTE changed only by the walk (Accessed) and the dirty-bit walk
            _put(self.pte_dirty, pte, pd)
            _put(self.pte_young, pte, py)
            retry = fault
        # STLB misses: the working set's refill, this access's walk, a retried write's walk
        self._count_at("tlb_misses", r, missing + miss + retry)

        # Final state of the entry.  A fault invalidated it; a completed (or retried) write
        # leaves it writable and dirty.
        completed_write = (W & ~fault) | retry
        _put(self.tlb_valid, tlb, ~(fault & ~retry))
        _put(self.tlb_write, tlb, ew | completed_write)
        _put(self.tlb_dirty, tlb, ed | completed_write)
        self._at_rows(lat, r, cost)

    def _fault(self, r, cr, at, pte, fault, pw, pd, py, us, cost, uffd_pending):
        """The page fault of the writes in ``fault`` and how the kernel resolves it: SIGSEGV,
        a uffd-wp event, do_wp_page() -> wp_page_reuse(), or a spurious fault (a stale
        read-only entry) with the RFC's patch 8.  Stores the PTE; returns which writes retry.
        Rows as in _access: replicates ``r`` on CPUs ``cr``, flat indices ``at`` and ``pte``."""
        t, c = self.t, self.t.c
        self._charge(cost, fault, np.float64(c.fault_entry_exit), us[K.SLOT_FAULT])
        vw = _get(self.vma_write, pte)
        ro = fault & ~pw
        prot = ro & ~vw                                  # access_error(): SIGSEGV
        wp = ro & vw & _get(self.pte_uffd_wp, pte)       # handle_userfault(VM_UFFD_WP)
        reuse = ro & vw & ~wp                            # do_wp_page() -> wp_page_reuse()
        spurious = fault & pw                            # a stale read-only entry
        # handle_pte_fault(): the entry with D and A set changes the PTE unless it is
        # already dirty and young ("nothing changed")
        unchanged = spurious & pd & py
        store = spurious & ~unchanged
        self._count_at("spurious_faults", r, spurious)
        self._count_at("reuse_faults", r, reuse)
        self._count_at("uffd_faults", r, wp)
        self._count_at("prot_faults", r, prot)
        self._charge(cost, prot, np.float64(c.sigsegv), us[K.SLOT_EXTRA])
        if wp.any():
            uffd_pending[r] |= wp
        # wp_page_reuse() and ptep_set_access_flags() store the PTE; neither flushes on x86
        self._charge(cost, reuse | store, np.float64(c.pte_update), us[K.SLOT_FIXUP])
        _put(self.pte_write, pte, pw | reuse)
        _put(self.pte_dirty, pte, pd | reuse | store)
        _put(self.pte_young, pte, py | reuse | store)

        if self.fixup is not False and unchanged.any():
            # Nothing changed, a write, not FAULT_FLAG_TRIED: flush_tlb_fix_spurious_fault()
            # (RFC patch 8): a CPU behind mm->tlb_gen flushes everything once and catches up.
            gen = self.tlb_gen.take(r)
            lg = _get(self.local_gen, at)
            fix = unchanged & (lg < gen) & (self.fixup if self.fixup is True else self.fixup.take(r))
            if fix.any():
                near = self._nearest_holder(cr, r)
                moved = fix & (near > 0)
                base = c.flush_full + np.where(moved, self._by_dist(t.tlb_gen_xfer, np.minimum(near, 3)), 0.0)
                self._charge(cost, fix, base, us[K.SLOT_FIXUP])
                self._count_at("tlb_gen_xfers", r, moved)
                self._count_at("local_full", r, fix)
                _put(self.tlb_gen_sharers, at, _get(self.tlb_gen_sharers, at) | fix)
                # flush everything on the faulting CPU of each replicate that fixes up
                self._flush_own(cr, r, at, fix)
                _put(self.local_gen, at, np.where(fix, gen, lg))

        # The retried write walks again; the PTE is dirty now, so no dirty-bit walk.
        retry = reuse | spurious
        self._charge(cost, retry, np.float64(c.page_walk), us[K.SLOT_RETRY])
        return retry

    def _refill(self, at, us):
        """Application work between accesses refills the working set a full flush dropped:
        one STLB miss and page walk per entry (cost page_walk each).  Rows as in _access;
        returns the cycles and the misses."""
        missing = self.working_set - _get(self.ws_cached, at)
        _put(self.ws_cached, at, self.working_set)
        cost = np.zeros(self.shape[:-1] + (us.shape[-1],))
        self._charge(cost, missing > 0, missing * self.t.c.page_walk, us[K.SLOT_REFILL])
        return cost, missing

    def _count_at(self, name, r, values):
        """``counters[name] += values`` for replicates ``r`` (from _rows)."""
        if r is self.ar:
            self.counters[name] += values
        else:
            self.counters[name][r] += values

    def _nearest_holder(self, cr, r):
        """Distance class from each replicate's CPU to the nearest CPU holding the mm->tlb_gen
        line (0: its own CPU holds it)."""
        holders = self.tlb_gen_sharers if r is self.ar else self.tlb_gen_sharers[:, r]
        return np.where(holders, self._distances(cr), 99).min(0)

    def _rows(self, mask):
        """The replicates in ``mask`` (distinct, ascending); ``self.ar`` itself when that is
        every replicate, which the row-wise helpers take as "no gather needed"."""
        r = mask.nonzero()[0]
        return self.ar if r.size == self.R else r

    def _at_rows(self, a, r, values):
        """``a[..., r] += values`` (a cycle book [R] or [K, R]; ``r`` from _rows)."""
        if r is self.ar:
            a += values
        else:
            a[..., r] += values

    def _flush_own(self, cr, r, at, full, partial=None, span=None):
        """On each replicate's own CPU (replicates ``r`` on CPUs ``cr``, rows ``at`` of the
        per-CPU arrays): flush everything where ``full``, INVLPG the pages of ``span``
        ([P, R] or [P, 1]) where ``partial``.  When every replicate acts on one CPU and not
        just a few act, on that CPU's whole [P, R] slab with a mask over replicates (one
        contiguous pass); else entry by entry."""
        c0 = cr[0]
        slab = (cr == c0).all() and 4 * r.size >= self.R

        def over_r(sub):
            if r is self.ar:
                return sub
            mask = np.zeros(self.R, bool)
            mask[r[sub]] = True
            return mask
        if partial is not None and partial.any():
            if slab:
                self.tlb_valid[c0] &= ~(span & over_r(partial))
            else:
                sp = np.broadcast_to(span, (self.P, self.R))
                rp = r[partial]
                self.tlb_valid[cr[partial], :, rp] &= ~sp[:, rp].T
        if full.any():
            if slab:
                mask = over_r(full)
                self.tlb_valid[c0] &= ~mask
                self.ws_cached[c0] = np.where(mask, 0, self.ws_cached[c0])
            else:
                self.tlb_valid[cr[full], :, r[full]] = False
                self.ws_cached.put(at[full], 0)

    def _switch_mm(self, m, cpu, to_lazy, u, lat):
        """A CPU leaves lazy mode (full flush if it missed a generation) or enters it.

        Works on the rows of the replicates in ``m`` alone, as _access does."""
        t, c = self.t, self.t.c
        r = self._rows(m)
        if r.size == 0:
            return
        cr = cpu.take(r)
        at = cr * self.R + r
        lazy = to_lazy.take(r)
        self.is_lazy.put(at, lazy)
        if lazy.all():
            # enter_lazy_tlb(): the mm stays loaded, nothing is flushed or charged
            return
        if lazy.any():
            back = ~lazy
            r, cr, at = r[back], cr[back], at[back]
        # switch_mm_irqs_off(): the ASID's generation is behind mm->tlb_gen -> a full flush;
        # reading mm->tlb_gen brings its line from the nearest holder
        gen = self.tlb_gen.take(r)
        behind = self.local_gen.take(at) < gen
        near = self._nearest_holder(cr, r)
        moved = near > 0
        base = (c.context_switch + np.where(behind, c.flush_full, 0.0)
                + np.where(moved, self._by_dist(t.tlb_gen_xfer, np.minimum(near, 3)), 0.0))
        self._at_rows(lat, r, self._cost(base, u[K.SLOT_SWITCH].take(r)))
        self._count_at("tlb_gen_xfers", r, moved)
        self._count_at("local_full", r, behind)
        self._flush_own(cr, r, at, behind)
        self.tlb_gen_sharers.put(at, True)
        self.local_gen.put(at, gen)
        self.off_cpu.put(at, False)


def _block(rows):
    """``rows`` (ascending CPU numbers) as a slice when contiguous: indexing with it is a view."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _get(a, idx):
    """``a``'s entries at ``idx``, copied: flat indices (an index array), or a row key (a tuple,
    when every replicate's entry is in one row)."""
    return a[idx].copy() if isinstance(idx, tuple) else a.take(idx)


def _put(a, idx, values):
    """Store ``values`` at ``idx`` (as for _get)."""
    if isinstance(idx, tuple):
        a[idx] = values
    else:
        a.put(idx, values)


def _n_rows(mask):
    """np.count_nonzero(mask, axis=0) of a [k, R] mask; one row is a cast (3x faster)."""
    if mask.shape[0] == 1:
        return mask[0].astype(np.intp)
    return np.count_nonzero(mask, axis=0)


def _per_cpu(x):
    """A per-replicate cycle value ([R], or [K, 1] / [K, R] with cost sets) made to broadcast
    against per-CPU temporaries ([C, R], with cost sets [K, C, R])."""
    return x[:, None, :] if isinstance(x, np.ndarray) and x.ndim == 2 else x


class _Switches:
    """A policy's switches for one run: bools, or bool arrays over replicates."""

    def __init__(self, **switches):
        self.__dict__.update(switches)


def _switches(policy, R):
    """The behaviour's rules; per-replicate behaviours give arrays where replicates disagree."""
    if not isinstance(policy, (list, tuple)):
        return _Switches(**{f.name: bool(getattr(policy, f.name)) for f in dataclasses.fields(policy)})
    if len(policy) != R:
        raise ValueError(f"per-replicate policies: {len(policy)} given for {R} replicates")
    # a run's lanes repeat a few policy objects R times each: read each object's switches once
    first: dict[int, int] = {}
    which = np.fromiter((first.setdefault(id(p), len(first)) for p in policy), np.intp, len(policy))
    distinct = list({id(p): p for p in policy}.values())
    out = {}
    for name in (f.name for f in dataclasses.fields(distinct[0])):
        values = np.array([bool(getattr(p, name)) for p in distinct])[which]
        out[name] = bool(values[0]) if (values == values[0]).all() else values
    return _Switches(**out)


def _unless(off, mask, none):
    """``mask`` where switch ``off`` is False: per replicate when ``off`` is an array."""
    if off is False:
        return mask
    if off is True:
        return none
    return mask & ~off


def _if(on, mask, none):
    """``mask`` where switch ``on`` is True: per replicate when ``on`` is an array."""
    if on is True:
        return mask
    if on is False:
        return none
    return mask & on
