"""The vectorized engine: R replicates of one address space advanced in lockstep.

Each step every replicate performs at most one operation (its own kind, CPU and pages:
masks select who does what).  Costs emerge from the events the operation triggers —
syscall, PTE updates, ++tlb_gen, local and remote flush_tlb_func, IPIs and their
acknowledgement, TLB hits, page walks, dirty-bit walks, faults — each charged in integer
cycles with jitter (study.engine.costs).  study.engine.reference is the same model written
one replicate and one event at a time; the two agree to the cycle, function by function
(tests/test_engine_functions.py) and step by step (tests/test_engine_equivalence.py).

Both engines are one skeleton, each method named after the kernel function it models and
in call-chain order:

    change_protection()              mm/mprotect.c, mm/userfaultfd.c, mm/madvise.c
        change_pte_range() -> can_change_pte_writable(), pte_flush_type()
        madvise_free_pte_range()
        tlb_finish_mmu()             mm/mmu_gather.c: one flush of the gathered range
    flush_tlb_mm_range()             arch/x86/mm/tlb.c
        inc_mm_tlb_gen()
        flush_tlb_func_local()       flush_tlb_func() on the initiator
        flush_tlb_multi() -> kvm_flush_tlb_multi() (arch/x86/kernel/kvm.c), should_flush_tlb()
        smp_call_function_many_cond() -> native_send_call_func_ipi()   (kernel/smp.c, apic/ipi.c)
        flush_tlb_func_remote()      flush_tlb_func() in each target's IPI handler
        csd_lock_wait()              the initiator's wait for the slowest target
        kvm_vcpu_flush_tlb_guest()   the host's flush of a flagged vCPU (arch/x86/kvm/x86.c)
    switch_mm_irqs_off(), switch_mm_irqs_off_remote()
    access()                         the hardware: tlb_lookup(), dirty_bit_walk()
        do_user_addr_fault()         arch/x86/mm/fault.c
            handle_pte_fault() -> do_wp_page(), flush_tlb_fix_spurious_fault()   (mm/memory.c)
        retry_after_userfault()      the retry of handle_mm_fault() in the same exception
    refill_working_set(), refill_rows()   each CPU's hot set after the full flushes it took

Array shapes and the row and mask mechanics are study.engine.lockstep's.

Simplifications, on purpose: operations are atomic (no two CPUs inside the mm's page
tables at once), so mm->tlb_gen when a handler runs equals the generation it was sent.
"""

from __future__ import annotations

import numpy as np

from study.engine import costs as K
from study.engine.costs import CostTables
from study.engine.heap import keep_heap
from study.engine.lockstep import (
    add_rows,
    by_distance,
    charge,
    classes_by_cpu,
    count_rows,
    distances,
    entries,
    farthest,
    get,
    group_ranks,
    jittered,
    key,
    nearest,
    page_range,
    per_cpu,
    put,
    reach,
    replicates,
    running_count,
    switches,
    unless,
    when,
)
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


class PteRows:
    """The PTE bits RW, Dirty and Accessed of an access's rows ([n]): gathered once by
    tlb_lookup(), changed by the walks and the fault, stored once by access()."""

    __slots__ = ("write", "dirty", "young")

    def __init__(self, write, dirty, young):
        self.write, self.dirty, self.young = write, dirty, young


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
    draws, and only cycles carry the cost-set axis (study.engine.lockstep).  Set k's books are
    then exactly those of a run with machine k alone.  step() returns latencies [R] for one
    Machine and [K, R] for K sets.  CPU slot i runs application thread i; ``cpus`` gives its
    (socket, core, smt).  ``working_set``: the TLB entries of other memory the thread of each
    CPU slot keeps hot (one number for every slot, or one per slot): each full flush its CPU
    takes costs it one page walk per entry (refill_working_set()).
    """

    def __init__(self, machine: Machine, behaviour, cpus, pages: int, replicates: int,
                 working_set: int = 0, lazy=None, on_cpu_share: float = 1.0):
        R, C, P = replicates, len(cpus), pages
        self.R, self.C, self.P = R, C, P
        keep_heap()   # study.engine.heap: the step's temporaries reuse the heap
        self.t = CostTables(machine)
        self.sets = self.t.sets                 # K, or None for one Machine
        self.shape = (R,) if self.sets is None else (self.sets, R)   # cycle books
        self.policy = pol = switches(behaviour, R)
        self.clean_writable = pol.clean_anon_writable
        self.fixup = pol.fix_spurious_fault
        self.dist = distance_matrix(list(cpus)).astype(np.int8)   # distance classes DIST_*
        self.by_class = classes_by_cpu(self.dist)
        # entries beyond the STLB miss whether or not a flush came: only these are kept hot
        ws = np.broadcast_to(np.asarray(working_set, np.int64), (C,))
        self.working_set = np.minimum(ws, self.t.stlb_entries)        # [C]
        self.ws = self.working_set[:, None]                           # [C, 1]
        # the send each CPU slot belongs to (x2APIC cluster or PV window); None: one per CPU
        groups = self.t.send_groups(cpus)
        self.one_group = False
        if len(np.unique(groups)) == C:
            self.group_of, self.group_slots = None, ()
        else:
            uniq, self.group_of = np.unique(groups, return_inverse=True)
            self.group_slots = [np.flatnonzero(self.group_of == q) for q in range(len(uniq))]
            self.one_group = len(uniq) == 1
        self.grouped = self.group_of is not None and not self.one_group
        # the shorthand needs the mm on every online CPU (at most C - 1 targets)
        self.shorthand_reachable = self.t.shorthand and C == self.t.n_online
        self.ar = np.arange(R)
        self._everyone = np.ones(R, bool)
        self.pg = np.arange(P)[:, None]
        self.cpu_ids = np.arange(C)[:, None]
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
        # Results.
        self.counters = {name: np.zeros(R, np.int64) for name in COUNTERS}
        self.stolen = np.zeros(self.shape, np.int64)   # cycles remote handlers took from other CPUs
        # cycles the threads spent refilling their hot sets after full flushes: thread 0's and
        # the others'
        self.refill_initiator = np.zeros(self.shape, np.int64)
        self.refill_others = np.zeros(self.shape, np.int64)
        # the full flushes each CPU took since its thread last refilled its hot set (zero
        # between steps: every refill is charged in the step that caused it)
        self.owed = np.zeros((C, R), np.int64)
        self._owing = False   # a full flush in this step left some CPU owing
        # Threads off their CPU (workload on_cpu_share < 1): drawn per target at each strict
        # flush (costs.off_cpu_window); off_cpu marks a CPU that missed a shootdown that way
        # and has not switched the mm back in since.
        self.off_lo, self.off_hi = K.off_cpu_window(self.t, on_cpu_share)
        self.off_cpu = np.zeros((C, R), bool)

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
        self._owing = False
        for op, m in kinds:
            if op in (OP_MPROTECT, OP_UFFD_WP, OP_MADV_FREE):
                if m.any():
                    self.change_protection(op, m, cpu, lo, n, arg, u, lat, flush)
            elif op == OP_ACCESS:
                retried = m & (arg == ACCESS_RETRY)
                if retried.any():
                    m = self.retry_after_userfault(retried, cpu, lo, u, lat, uffd_pending) | (m & ~retried)
                if m.any():
                    self.access(m, cpu, lo, arg.astype(bool), u, lat, uffd_pending)
            elif op == OP_SWITCH_MM:
                if m.any():
                    self.switch_mm_irqs_off(m, cpu, arg.astype(bool), u, lat)
        if self._owing:
            self.refill_working_set(cpu, u)
        return lat.astype(np.int64), flush, uffd_pending

    # ---------------------------------------------------------------- change_protection

    def change_protection(self, op, m, cpu, lo, n, arg, u, lat, flush):
        """mprotect(), UFFDIO_WRITEPROTECT (mwriteprotect_range() -> change_protection()) or
        MADV_FREE over pages [lo, lo + n) by the replicates in ``m``: the syscall, the PTE walk
        under the page-table lock, then one flush of what the mmu_gather collected.  Adds the
        cycles to ``lat`` and the flush type to ``flush``."""
        c, F = self.t.c, self.t.F
        pte, inr = page_range(lo, n, m, self.pg, self.ar)
        vma, w, wp, d, y = self._ptes(pte)
        none = np.zeros_like(inr)
        if op == OP_MADV_FREE:
            d, y, strict_need = self.madvise_free_pte_range(inr, d, y)
            new_w, try_w, relaxed_need = w, none, none
            syscall = c.syscall_madvise
        else:
            vma, new_w, wp, d, y, try_w = self.change_pte_range(op, inr, arg, vma, w, wp, d, y)
            strict_need, relaxed_need = self.pte_flush_type(inr, w, new_w, d, none)
            syscall = c.syscall_mprotect if op == OP_MPROTECT else c.syscall_uffd_wp
        self._store_ptes(pte, vma, new_w, wp, d, y)
        n_checks = np.count_nonzero(try_w, axis=0) if pte is None else try_w.astype(np.int64)
        cost = jittered(np.float64(syscall), u[K.SLOT_SYSCALL], F)
        cost += jittered(n * c.pte_update + n_checks * c.pte_mkwrite_check, u[K.SLOT_PTE], F)
        strict, relaxed = self.tlb_finish_mmu(m, pte, lo, n, strict_need, relaxed_need, cpu, u, cost,
                                              walk=op != OP_MADV_FREE)
        lat += np.where(m, cost, 0)
        flush[strict] = FLUSH_STRICT
        flush[relaxed] = FLUSH_RELAXED

    def change_pte_range(self, op, inr, arg, vma, w, wp, d, y):
        """mprotect() (``arg``: VM_WRITE) or UFFDIO_WRITEPROTECT (``arg``: UFFD_PROTECT, or an
        unprotect with or without the write-likely hint) of the PTEs in ``inr``, whose VM_WRITE
        and bits are ``vma``, ``w`` (RW), ``wp`` (uffd-wp), ``d``, ``y``: those five after, and
        which PTEs tried to become writable (can_change_pte_writable() calls)."""
        pol = self.policy
        if op == OP_MPROTECT:
            on = arg.astype(bool)
            vma = np.where(inr, on, vma)
            # MM_CP_TRY_CHANGE_WRITABLE (vma_wants_manual_pte_write_upgrade()); a uffd-wp PTE
            # is never upgraded here: its writes belong to the monitor
            try_w = inr & on & ~w & ~wp
            down = inr & ~on
        else:
            protect = arg == UFFD_PROTECT
            hint = arg == UFFD_UNPROTECT_WRITE_LIKELY
            pin, uin = inr & protect, inr & ~protect
            # protect: pte_mkuffd_wp() sets the bit and write-protects; unprotect clears the bit
            # (a software bit: no flush) and, where the kernel or the RFC says so, tries writable
            wp = (wp | pin) & ~uin
            mkdirty = pol.uffd_unprotect_mkdirty
            if mkdirty is not False:
                # RFC patch 1: the hint sets MM_CP_WILL_NEED, and every PTE of the walk is made
                # young (pte_mkyoung(): no Accessed walk at the coming access)
                y = y | when(mkdirty, uin & hint, None)
            # RFC patch 2 (with the hint) or uffd_wp_range() since 6.3 (always):
            # MM_CP_TRY_CHANGE_WRITABLE on unprotect
            asks = (hint & pol.uffd_unprotect_writable) | pol.uffd_unprotect_writable_unhinted
            try_w = uin & asks & ~w & vma
            down = pin
        up = self.can_change_pte_writable(try_w, d)
        if op == OP_UFFD_WP and mkdirty is not False:
            # RFC patch 1: pte_mkdirty() only where the PTE is made writable (inside the
            # MM_CP_TRY_CHANGE_WRITABLE && can_change_pte_writable() branch), so that the first
            # write takes no dirty-bit walk; a PTE left read-only stays as clean as it was
            d = d | when(mkdirty, up & hint, None)
        return vma, (w | up) & ~down, wp, d, y, try_w

    def can_change_pte_writable(self, try_w, d):
        """Which PTEs of ``try_w`` (Dirty ``d``) are mapped writable without a write fault."""
        # an exclusive anonymous page needs no COW; 5.19 also requires pte_dirty() ("if they
        # are exclusive, the PTE is already dirty"), v6.2 and the RFC's patch 3 take clean ones
        cw = self.clean_writable
        return try_w & d if cw is False else try_w if cw is True else try_w & (d | cw)

    def pte_flush_type(self, inr, w, new_w, d, none):
        """The flush each PTE in ``inr`` needs after its RW went ``w`` -> ``new_w`` (Dirty ``d``):
        (strict, relaxed) masks; ``none``: an all-False mask of their shape."""
        pol = self.policy
        promote = inr & ~w & new_w
        demote = inr & w & ~new_w
        # pte_flags_need_flush(): RW changing either way needs a flush.  A dirty RW->RO is
        # strict (a stale writable entry would let writes land on a read-only page); not
        # flushing it is the unsafe negative control.
        strict_need = unless(pol.unsafe_dirty_demote, demote & d, none)
        if pol.no_flush_clean_wrprotect is not True:
            # RFC patch 12: a clean RW->RO needs none where the dirty-bit walk through a stale
            # writable entry faults on the read-only PTE (Machine.dirty_walk)
            strict_need = strict_need | unless(pol.no_flush_clean_wrprotect, demote & ~d, none)
        # RFC patches 9-11: adding permission needs only a relaxed flush, since a stale, more
        # restrictive entry costs a spurious fault, never a wrong access
        rfu = pol.relaxed_flush_on_upgrade
        relaxed_need = when(rfu, promote, none)
        if rfu is not True:
            strict_need = strict_need | unless(rfu, promote, none)
        return strict_need, relaxed_need

    def madvise_free_pte_range(self, inr, d, y):
        """MADV_FREE of the PTEs in ``inr``: (Dirty and Accessed after, the PTEs whose change
        needs a strict flush)."""
        # a young or dirty PTE is made old and clean and tlb_remove_tlb_entry() queues its
        # flush: an entry still caching Dirty would let a write land without setting the
        # PTE's Dirty, and reclaim would drop the data
        return d & ~inr, y & ~inr, inr & (d | y)

    def tlb_finish_mmu(self, m, pte, lo, n, strict_need, relaxed_need, cpu, u, cost, walk=True):
        """The call's one flush by the replicates in ``m``, its cycles added to ``cost``: the
        flush is strict if any PTE needs a strict one, else relaxed if any needs one (the RFC's
        flush type).  Returns the (strict, relaxed) masks [R].  ``pte``, ``lo``: as from
        page_range(); ``n``: the call's pages; ``walk``: the PTEs were changed by
        change_pte_range() (not madvise)."""
        if pte is None:
            any_strict, any_relaxed = strict_need.any(0), relaxed_need.any(0)
        else:
            any_strict, any_relaxed = strict_need, relaxed_need
        strict = m & any_strict
        relaxed = m & ~any_strict & any_relaxed
        f = strict | relaxed
        if not f.any():
            return strict, relaxed
        # tlb_flush_pte_range() widens tlb->start..end only for PTEs whose change needs a
        # flush: the flush covers the first to the last of them (and the ceiling applies to
        # that span, not to the call's range)
        if pte is None:
            need = strict_need | relaxed_need
            f_lo = np.argmax(need, axis=0)
            f_hi = self.P - np.argmax(need[::-1], axis=0)
            extend = self.policy.strict_extends_span
            if walk and extend is not False:
                # RFC patch 13: once tlb->strict is set, every later present PTE of the walk is
                # flushed strictly without asking pte_flush_type(): the span reaches the walk's end
                f_hi = np.where(when(extend, strict, np.zeros_like(strict)), lo + n, f_hi)
            f_n = np.where(f, f_hi - f_lo, 0)
            span = (self.pg >= f_lo) & (self.pg < f_lo + f_n)
        else:
            f_n = f.astype(np.int64)
            span = self.pg == (lo[0] if (lo == lo[0]).all() else lo)
        cost += self.flush_tlb_mm_range(f, strict, cpu, f_n, span, u)
        return strict, relaxed

    # ---------------------------------------------------------------- flush_tlb_mm_range

    def flush_tlb_mm_range(self, f, strict, cpu, n, span, u):
        """flush_tlb_mm_range() of ``n`` pages (``span``: [P, R] or [P, 1]) by the replicates in
        ``f`` on their CPU ``cpu``, those in ``strict`` strictly: the initiator's cycles."""
        me = self._acting(cpu)
        cost, new_gen = self.inc_mm_tlb_gen(f, me, u)
        # get_flush_tlb_info(): a range over tlb_single_page_flush_ceiling pages becomes
        # TLB_FLUSH_ALL: "each single flush is about 100 ns", so 33 caps a ranged flush near
        # 3,000 ns, past which a full flush and the refills it causes cost less
        ranged = n <= self.t.ceiling
        local = self.flush_tlb_func_local(f, me, ranged, n, span, new_gen, u)
        self._count("strict_flushes", strict)
        self._count("relaxed_flushes", f & ~strict)
        relaxed_cost = cost + local
        if not strict.any():
            # the RFC's relaxed flush stops here: the other CPUs catch up at their next flush,
            # context switch or spurious fault
            return relaxed_cost
        w = self._reach(cpu, me.D, u)
        others, targets, flagged, base = self.flush_tlb_multi(strict, new_gen, w, u)
        send, offset, nt = self.smp_call_function_many_cond(others, targets, base, w, u)
        handler = self.flush_tlb_func_remote(targets, nt, new_gen, ranged, n, span, w)
        done = self.csd_lock_wait(targets, offset, handler, w)
        if flagged is not None and flagged.any():
            self.kvm_vcpu_flush_tlb_guest(flagged, w)
        self.refill_rows(w)
        # smp_call_function_many_cond(): the initiator sends, runs its own flush_tlb_func()
        # meanwhile (SCF_RUN_LOCAL), then waits (SCF_WAIT) for the slowest target
        return np.where(strict, cost + np.maximum(send + local, done), relaxed_cost)

    def inc_mm_tlb_gen(self, f, me, u):
        """++mm->tlb_gen by the replicates in ``f`` on CPUs ``me``: (cycles, mm->tlb_gen after)."""
        t = self.t
        self.tlb_gen += f
        # atomic64_inc_return() is a locked read-modify-write: the initiator takes the line
        # exclusive, from the farthest CPU holding a copy, and every other copy is invalidated
        xdist = farthest(self.tlb_gen_sharers, me.D, self.by_class[me.cpu[0]] if me.D.shape[-1] == 1 else None)
        moved = f & (xdist > 0)
        cost = np.zeros(self.shape)
        charge(cost, moved, by_distance(t.tlb_gen_xfer, xdist), u[K.SLOT_TLBGEN], t.F)
        self._count("tlb_gen_xfers", moved)
        self.tlb_gen_sharers &= ~f
        self.tlb_gen_sharers[me.at] |= f
        return cost, self.tlb_gen

    def flush_tlb_func_local(self, f, me, ranged, n, span, new_gen, u):
        """flush_tlb_func() on the initiator ``me`` of the replicates in ``f``: its cycles."""
        c, t = self.t.c, self.t
        lg = self.local_gen[me.at]
        # INVLPG page by page only if the CPU lags exactly one generation
        # (f->new_tlb_gen == local_tlb_gen + 1): a CPU's generation never goes back, so a
        # partial flush from further behind would mark as done the ranges of the generations
        # it skipped
        partial = f & ranged & (lg + 1 == new_gen)
        full = f & ~partial
        cost = np.zeros(self.shape)
        charge(cost, f, np.where(partial, n * c.invlpg, c.flush_full), u[K.SLOT_LOCAL], t.F)
        self._count("local_partial", partial)
        self._count("local_full", full)
        self._count_pages(n * partial)
        self._flush_acting(me, partial, full, span)
        self.local_gen[me.at] = np.where(f, new_gen, lg)
        return cost

    def flush_tlb_multi(self, strict, new_gen, w, u):
        """The CPUs of a strict flush, in the rows of ``w`` (lockstep.Reach): (the mm_cpumask
        CPUs the IPI walk looks at, its targets, the vCPUs flagged instead of an IPI (or None),
        the initiator's cycles so far)."""
        t = self.t
        others = self.mm_cpumask[w.rows] & (w.D > 0) & strict
        self._count("flush_multi", count_rows(others) > 0)
        # cpumask_any_but() finds another CPU of mm_cpumask; flush_tlb_info is filled in
        base = np.zeros(self.shape) + t.c.cpumask_scan
        flagged = None
        if t.pv_flush:
            others, flagged, base = self.kvm_flush_tlb_multi(others, base, w)
        targets = self.should_flush_tlb(others, w)
        if self.off_hi > self.off_lo:
            # a CPU that missed a shootdown while its thread was off it, and runs the mm again:
            # it switched the mm in before this flush
            self.switch_mm_irqs_off_remote(targets & self.off_cpu[w.rows], new_gen - 1, u[K.SLOT_SWITCH], w.rows)
        return others, targets, flagged, base

    def kvm_flush_tlb_multi(self, others, base, w):
        """kvm_flush_tlb_multi() (pv_tlb_flush) over the mm_cpumask CPUs ``others``: (the CPUs
        left for the IPI path, the preempted vCPUs it flagged or None, ``base`` plus its reads)."""
        t = self.t
        # it reads each CPU's steal_time.preempted
        base += (w.rl * others).sum(-2)
        if not t.preempt_threshold:
            return others, None, base
        # a preempted vCPU gets KVM_VCPU_FLUSH_TLB (a cmpxchg on that line) and leaves the
        # mask: the host flushes it before it runs again, so no IPI waits for it to run
        flagged = others & (w.preempt < t.preempt_threshold)
        base += (w.rl * flagged).sum(-2)
        return others & ~flagged, flagged, base

    def should_flush_tlb(self, others, w):
        """should_flush_tlb(), the cond function of the IPI walk, on ``others``: the targets."""
        # "Lazy TLB will get flushed at the next context switch": leaving lazy mode,
        # switch_mm_irqs_off() reads mm->tlb_gen and flushes if behind
        targets = others & ~self.is_lazy[w.rows]
        if self.off_hi > self.off_lo:
            # cpu_tlbstate.loaded_mm != info->mm (6.13+): the thread is off its CPU and another
            # mm is loaded there, so no IPI; the CPU's generation stays behind and its TLB keeps
            # the mm's entries under the mm's ASID
            gone = targets & (w.preempt >= self.off_lo) & (w.preempt < self.off_hi)
            self.off_cpu[w.rows] |= gone
            self._count("off_cpu_skipped", np.count_nonzero(gone, axis=0))
            targets = targets & ~gone
        return targets

    def smp_call_function_many_cond(self, others, targets, base, w, u):
        """The initiator's walk over ``others`` and its one send to ``targets``, after ``base``
        cycles: (its cycles until the last write is done, per target the cycles until the write
        covering it is done, the targets per replicate)."""
        t = self.t
        # per CPU the cond function reads its cpu_tlbstate lines; per target csd_lock() (on the
        # csd the target last unlocked) and llist_add() onto its call_single_queue
        base += (w.rl * others).sum(-2)
        base += 2 * (w.rl * targets).sum(-2)
        nt = count_rows(targets)
        rank, writes, write = self.native_send_call_func_ipi(targets, nt)
        fsend = np.take(t.F, u[K.SLOT_SEND])
        send = np.rint((base + write * writes) * fsend)
        # target k's IPI leaves when the ICR write (or hypercall) that covers it is done
        offset = np.rint((per_cpu(base) + per_cpu(write) * rank) * fsend)
        self._count("ipis", nt)
        self._count("ipi_writes", writes)
        if t.kvm:
            self._count("vm_exits", writes)   # each ICR write or hypercall exits to the host
        self._count("shootdowns", nt > 0)
        return send, offset, nt

    def native_send_call_func_ipi(self, targets, nt):
        """The send to ``targets`` (``nt`` per replicate): (per target the number of the write
        that covers it, the writes, the cycles of one write)."""
        t = self.t
        if self.group_of is None:
            # __x2apic_send_IPI_mask() (x2apic_phys) and the xAPIC's mask sequence: one ICR
            # write per target, in CPU order
            rank, writes = running_count(targets), nt
        elif self.one_group:
            # one x2APIC cluster (or one PV window) covers every target: one write
            rank, writes = 1, (nt > 0).astype(np.int64)
        else:
            # x2apic_cluster.c: one write per cluster holding targets, in the order of each
            # cluster's first target; kvm_send_ipi_mask(): one hypercall per 128 APIC IDs
            rank, writes = group_ranks(targets, self.group_slots, self.group_of)
        if self.shorthand_reachable:
            # apic_use_ipi_shorthand: the mask plus the sender is every online CPU, so one
            # all-but-self write (a single target is one write too: the single IPI)
            one = (nt == 1) | (nt == t.n_online - 1)
            rank = np.where(one, 1, rank)
            writes = np.where(one, np.minimum(writes, 1), writes)
        if t.same_write:
            return rank, writes, t.icr_write
        # send_call_function_single_ipi() and the shorthand are ICR writes even where the mask
        # send is a hypercall (pv_send_ipi)
        if not self.shorthand_reachable:
            one = nt == 1
        return rank, writes, np.where(one, t.icr_write, t.mask_write)

    def flush_tlb_func_remote(self, targets, nt, new_gen, ranged, n, span, w):
        """flush_tlb_func() in each target's IPI handler (``nt`` targets per replicate): the
        handlers' cycles per target (zero elsewhere), which they take from their CPUs."""
        t, c = self.t, self.t.c
        lgt = self.local_gen[w.rows]
        # the handler reads mm->tlb_gen (its line comes from the initiator) and flushes by the
        # generation rule of flush_tlb_func_local().  No target is current already
        # (local_gen <= tlb_gen < new_gen: operations are atomic), so it always has work.
        partial = targets & ranged & (lgt + 1 == new_gen)
        full = targets & ~partial
        # a non-target's work is never read (its handler is masked out below)
        work = np.where(partial, n * per_cpu(c.invlpg), per_cpu(c.flush_full))
        handler_base = per_cpu(c.irq_entry_exit) + by_distance(t.tlb_gen_xfer, w.D) + work
        handler = np.where(targets, jittered(handler_base, w.handler, t.F), 0)
        self.stolen += handler.sum(-2).astype(np.int64)
        n_partial = count_rows(partial)
        self._count("remote_partial", n_partial)
        self._count("remote_full", nt - n_partial)
        self._count_pages(n * n_partial)
        self._count("tlb_gen_xfers", nt)
        self.tlb_gen_sharers[w.rows] |= targets
        if t.irq_loses_tlb:
            # the handler INVLPGs its pages, but the vCPU lost its whole TLB taking the IPI
            self._flush_rows(None, targets, rows=w.rows)
        else:
            self._flush_rows(partial, full, span, w.rows)
        self.local_gen[w.rows] = np.where(targets, new_gen, lgt)
        return handler

    def csd_lock_wait(self, targets, offset, handler, w):
        """The initiator's wait on each target's csd: the cycles until the slowest target's
        unlock is seen (IPI delivery, its handler, the acknowledgement)."""
        t = self.t
        # delivery and the acknowledgement travel the same path and share one draw
        wire = by_distance(t.ipi_deliver_ack, w.D)
        if t.kvm and not t.pv_flush and t.preempt_threshold:
            # without pv_tlb_flush an IPI to a preempted vCPU waits for the host to run it
            waits = targets & (w.preempt < t.preempt_threshold)
            wire = wire + np.where(waits, per_cpu(t.vcpu_wakeup_wait), 0.0)
        deliver_ack = jittered(wire, w.deliver, t.F_ipi)
        return np.where(targets, offset + deliver_ack + handler, 0).max(-2)

    def kvm_vcpu_flush_tlb_guest(self, flagged, w):
        """The host's flush of each vCPU kvm_flush_tlb_multi() flagged, when it runs it again
        (record_steal_time() -> kvm_vcpu_flush_tlb_guest()), taken from that vCPU's time."""
        t = self.t
        # every ASID goes, but the guest's cpu_tlbstate generation stays behind: its next
        # flush request is a full flush
        self._flush_rows(None, flagged, rows=w.rows)
        flush_cost = jittered(np.float64(per_cpu(t.raw_flush_full)), w.handler, t.F)
        self.stolen += np.where(flagged, flush_cost, 0).sum(-2).astype(np.int64)
        self._count("pv_flush_deferred", np.count_nonzero(flagged, axis=0))

    # ---------------------------------------------------------------- switch_mm_irqs_off

    def switch_mm_irqs_off(self, m, cpu, to_lazy, u, lat):
        """The replicates in ``m``: CPU ``cpu`` enters lazy TLB mode (``to_lazy``) or runs the
        mm's thread again (switch_mm_irqs_off() with prev == next).  Adds to ``lat``."""
        t, c = self.t, self.t.c
        r = replicates(m, self.ar)
        if r.size == 0:
            return
        cr = cpu.take(r)
        at = cr * self.R + r
        lazy = to_lazy.take(r)
        self.is_lazy.put(at, lazy)
        if lazy.all():
            # enter_lazy_tlb(): the mm stays loaded and in mm_cpumask; nothing is flushed
            return
        if lazy.any():
            back = ~lazy
            r, cr, at = r[back], cr[back], at[back]
        # leaving lazy mode it reads mm->tlb_gen (the line comes from the nearest holder):
        # "TLB contents went out of date while we were in lazy mode" -> a full flush
        gen = self.tlb_gen.take(r)
        behind = self.local_gen.take(at) < gen
        near = self._nearest_holder(cr, r)
        moved = near > 0
        base = (c.context_switch + np.where(behind, c.flush_full, 0.0)
                + np.where(moved, by_distance(t.tlb_gen_xfer, np.minimum(near, 3)), 0.0))
        add_rows(lat, r, jittered(base, u[K.SLOT_SWITCH].take(r), t.F), self.ar)
        self._count_at("tlb_gen_xfers", r, moved)
        self._count_at("local_full", r, behind)
        self._count_at("switch_full", r, behind)
        self._flush_own(cr, r, at, behind)
        self.tlb_gen_sharers.put(at, True)
        self.local_gen.put(at, gen)
        self.off_cpu.put(at, False)

    def switch_mm_irqs_off_remote(self, back, gen, u_switch, rows=slice(None)):
        """CPUs ``back`` (rows ``rows`` of [C, R]) switched the mm back in, when mm->tlb_gen was
        ``gen``, since they missed a shootdown with their thread off the CPU; booked to the
        other CPUs' cycles."""
        if not back.any():
            return
        c = self.t.c
        local_gen = self.local_gen[rows]
        # choose_new_asid(): the ASID's tlb_gen is behind mm->tlb_gen -> need_flush
        behind = back & (local_gen < gen)
        base = per_cpu(c.context_switch) + np.where(behind, per_cpu(c.flush_full), 0.0)
        self.stolen += np.where(back, jittered(base, u_switch, self.t.F), 0).sum(-2).astype(np.int64)
        self._count("local_full", np.count_nonzero(behind, axis=0))
        self._count("switch_full", np.count_nonzero(behind, axis=0))
        self._flush_rows(None, behind, rows=rows)
        local_gen[...] = np.where(back, gen, local_gen)
        self.off_cpu[rows] &= ~back

    # ---------------------------------------------------------------- memory access

    def access(self, m, cpu, page, write, u, lat, uffd_pending):
        """A read or write of ``page`` by the thread on ``cpu`` (the replicates in ``m``), faults
        and retries included.  Adds to ``lat``; sets ``uffd_pending`` where a uffd-wp fault
        awaits the monitor.

        Everything runs on the rows of the replicates that access ([n]): the PTE, the TLB
        entry and the per-CPU state are gathered once, updated there and stored once, so a
        masked step (the uffd monitor's retried writes) costs in proportion to who acts."""
        c, F = self.t.c, self.t.F
        if self.off_hi > self.off_lo:
            # a thread that missed a shootdown off its CPU runs again: switch_mm_irqs_off()
            # first (a lazy wake-up's path), before its TLB entry is read
            back = m & self.off_cpu[key(cpu, self.ar)]
            if back.any():
                self.switch_mm_irqs_off(back, cpu, np.zeros(self.R, bool), u, lat)
        r = replicates(m, self.ar)
        if r.size == 0:
            return
        e = entries(r, cpu, page, self.ar, self.P)
        us = u if r is self.ar else u[:, r]
        cost = np.zeros(self.shape[:-1] + (r.size,))
        miss, ew, ed, pte = self.tlb_lookup(e, us, cost)
        W = write.take(r)
        fault = self.dirty_bit_walk(e, W, ew, ed, pte, us, cost)
        if fault.any():
            retry = self.do_user_addr_fault(e, fault, pte, us, cost, uffd_pending)
            # the retried write walks again; the PTE is dirty now, so no dirty-bit walk
            charge(cost, retry, np.float64(c.page_walk), us[K.SLOT_RETRY], F)
            put(self.pte_write, e.pte, pte.write)
        else:
            retry = fault
        put(self.pte_dirty, e.pte, pte.dirty)
        put(self.pte_young, e.pte, pte.young)
        # STLB misses: this access's walk, a retried write's walk
        self._count_at("tlb_misses", r, miss.astype(np.int64) + retry)
        # A fault invalidated the entry (a retried write caches it again); a completed or
        # retried write leaves it writable and dirty.
        completed_write = (W & ~fault) | retry
        put(self.tlb_valid, e.tlb, ~(fault & ~retry))
        put(self.tlb_write, e.tlb, ew | completed_write)
        put(self.tlb_dirty, e.tlb, ed | completed_write)
        add_rows(lat, r, cost, self.ar)


    def tlb_lookup(self, e, us, cost):
        """The TLB lookup of rows ``e``: (miss, the entry's RW and Dirty, the PTE as the walk
        leaves it).  Adds its cycles to ``cost``."""
        c = self.t.c
        valid, tw, td = get(self.tlb_valid, e.tlb), get(self.tlb_write, e.tlb), get(self.tlb_dirty, e.tlb)
        pte = PteRows(get(self.pte_write, e.pte), get(self.pte_dirty, e.pte), get(self.pte_young, e.pte))
        charge(cost, None, np.where(valid, c.tlb_hit, c.page_walk), us[K.SLOT_ACCESS], self.t.F)
        self._count_at("tlb_hits", e.r, valid)
        # a miss walks the page table: the entry is filled from the PTE, and the walk sets
        # the PTE's Accessed bit
        miss = ~valid
        pte.young |= miss
        return miss, np.where(miss, pte.write, tw), np.where(miss, pte.dirty, td), pte

    def dirty_bit_walk(self, e, W, ew, ed, pte, us, cost):
        """The writes ``W`` of rows ``e`` through entries of RW ``ew`` and Dirty ``ed``: which
        fault.  Updates ``pte``; adds the cycles to ``cost``."""
        t, c = self.t, self.t.c
        # through a dirty writable entry the write lands without re-reading the PTE
        direct = W & ew & ed
        # through a clean writable entry the locked walk that sets Dirty re-reads the PTE
        dwalk = W & ew & ~ed
        dwalk_ro = dwalk & ~pte.write
        # on a read-only PTE it faults (cet, pre_cet) or lets the write land (completes)
        dwalk_fault = dwalk_ro if t.dwalk_faults else np.zeros_like(dwalk)
        dwalk_done = dwalk & ~dwalk_fault
        self._count_at("dirty_walks", e.r, dwalk)
        charge(cost, dwalk, np.float64(c.dirty_walk), us[K.SLOT_DIRTY], t.F)
        # The safety checker: a write that completes while the PTE is read-only, or without
        # the PTE's Dirty bit set (the data would be lost to MADV_FREE reclaim).
        self._count_at("violations", e.r, (direct & ~(pte.write & pte.dirty)) | (dwalk_done & ~pte.write))
        if t.dwalk_sets_dirty:
            # pre_cet: Dirty left set on the read-only PTE (completes: the write set it)
            pte.dirty = pte.dirty | dwalk_ro
        pte.dirty = pte.dirty | dwalk_done
        pte.young |= dwalk_done
        # a write through a read-only entry faults
        return (W & ~ew) | dwalk_fault

    def do_user_addr_fault(self, e, fault, pte, us, cost, uffd_pending):
        """The write faults ``fault`` of rows ``e`` on ``pte``: which writes retry.  Updates
        ``pte``, adds the cycles to ``cost``, sets ``uffd_pending`` for the monitor's faults."""
        c, F = self.t.c, self.t.F
        charge(cost, fault, np.float64(c.fault_entry_exit), us[K.SLOT_FAULT], F)
        # access_error(): a write to a VMA without VM_WRITE is a bad area: SIGSEGV
        prot = fault & ~pte.write & ~get(self.vma_write, e.pte)
        self._count_at("prot_faults", e.r, prot)
        charge(cost, prot, np.float64(c.sigsegv), us[K.SLOT_EXTRA], F)
        return self.handle_pte_fault(e, fault & ~prot, pte, us, cost, uffd_pending)

    def handle_pte_fault(self, e, fault, pte, us, cost, uffd_pending):
        """handle_mm_fault() -> handle_pte_fault() of the write faults ``fault``: which retry.
        Updates ``pte``; adds the cycles to ``cost``."""
        c = self.t.c
        ro, spurious = fault & ~pte.write, fault & pte.write
        unchanged = spurious & pte.dirty & pte.young
        # a write to a read-only PTE: do_wp_page()
        reuse = self.do_wp_page(e, ro, pte, us, cost, uffd_pending)
        # a writable PTE: the TLB entry was stale.  entry = pte_mkyoung(pte_mkdirty(pte)):
        # ptep_set_access_flags() stores it if that changed it, and does not flush on x86
        store = spurious & ~unchanged
        self._count_at("spurious_faults", e.r, spurious)
        charge(cost, store, np.float64(c.pte_update), us[K.SLOT_FIXUP], self.t.F)
        pte.dirty = pte.dirty | store
        pte.young = pte.young | store
        if self.fixup is not False and unchanged.any():
            # "nothing changed", a write, not FAULT_FLAG_TRIED (the engine never retries with
            # the mmap lock dropped)
            self.flush_tlb_fix_spurious_fault(e, unchanged, us, cost)
        return reuse | spurious

    def do_wp_page(self, e, ro, pte, us, cost, uffd_pending):
        """do_wp_page() of the writes ``ro`` to read-only PTEs of a VM_WRITE VMA: which reuse
        the page (and retry).  Updates ``pte``, adds the cycles to ``cost``, sets
        ``uffd_pending`` for the monitor's faults."""
        # userfaultfd_pte_wp(): handle_userfault(VM_UFFD_WP); the monitor resolves it
        wp = ro & get(self.pte_uffd_wp, e.pte)
        # an exclusive anonymous page (every page here) needs no copy: wp_page_reuse() makes
        # it writable, dirty and young in place (ptep_set_access_flags(): no flush on x86)
        reuse = ro & ~wp
        self._count_at("uffd_faults", e.r, wp)
        self._count_at("reuse_faults", e.r, reuse)
        if wp.any():
            uffd_pending[e.r] |= wp
        charge(cost, reuse, np.float64(self.t.c.pte_update), us[K.SLOT_FIXUP], self.t.F)
        pte.write = pte.write | reuse
        pte.dirty = pte.dirty | reuse
        pte.young = pte.young | reuse
        return reuse

    def flush_tlb_fix_spurious_fault(self, e, unchanged, us, cost):
        """RFC patch 8 on the spurious faults ``unchanged`` of rows ``e``: a CPU behind
        mm->tlb_gen flushes everything once and catches up.  Adds the cycles to ``cost``."""
        t, c = self.t, self.t.c
        fixup = self.fixup if isinstance(self.fixup, bool) else self.fixup.take(e.r)
        if fixup is False:
            return
        gen = self.tlb_gen.take(e.r)
        lg = get(self.local_gen, e.at)
        # only a CPU behind mm->tlb_gen can hold an entry that a relaxed flush left stale
        fix = unchanged & (lg < gen) & fixup
        if not fix.any():
            return
        # reading mm->tlb_gen brings its line from the nearest holder
        near = self._nearest_holder(e.cpu, e.r)
        moved = fix & (near > 0)
        base = c.flush_full + np.where(moved, by_distance(t.tlb_gen_xfer, np.minimum(near, 3)), 0.0)
        charge(cost, fix, base, us[K.SLOT_FIXUP], t.F)
        self._count_at("tlb_gen_xfers", e.r, moved)
        self._count_at("local_full", e.r, fix)
        put(self.tlb_gen_sharers, e.at, get(self.tlb_gen_sharers, e.at) | fix)
        self._flush_own(e.cpu, e.r, e.at, fix)
        put(self.local_gen, e.at, np.where(fix, gen, lg))

    def retry_after_userfault(self, m, cpu, page, u, lat, uffd_pending):
        """do_user_addr_fault() once handle_userfault() returned VM_FAULT_RETRY: the writers of
        the replicates in ``m`` were woken and retry in the same exception (FAULT_FLAG_TRIED,
        ``goto retry``): no second fault entry, handle_mm_fault() on the PTE as the monitor left
        it.  Adds to ``lat``; returns the replicates whose write then re-executes (not those
        sent SIGSEGV or back to the monitor)."""
        c, F = self.t.c, self.t.F
        r = replicates(m, self.ar)
        e = entries(r, cpu, page, self.ar, self.P)
        us = u if r is self.ar else u[:, r]
        cost = np.zeros(self.shape[:-1] + (r.size,))
        pte = PteRows(get(self.pte_write, e.pte), get(self.pte_dirty, e.pte), get(self.pte_young, e.pte))
        writable = pte.write.copy()
        prot = ~writable & ~get(self.vma_write, e.pte)
        self._count_at("prot_faults", e.r, prot)
        charge(cost, prot, np.float64(c.sigsegv), us[K.SLOT_EXTRA], F)
        # still read-only (the unprotect left RW to the fault): do_wp_page() -> wp_page_reuse()
        reuse = self.do_wp_page(e, ~writable & ~prot, pte, us, cost, uffd_pending)
        # writable: entry = pte_mkyoung(pte_mkdirty()), stored if that changed it; if nothing
        # changed, FAULT_FLAG_TRIED skips flush_tlb_fix_spurious_fault()
        store = writable & ~(pte.dirty & pte.young)
        charge(cost, store, np.float64(c.pte_update), us[K.SLOT_FIXUP], F)
        pte.dirty = pte.dirty | store
        pte.young = pte.young | store
        put(self.pte_write, e.pte, pte.write)
        put(self.pte_dirty, e.pte, pte.dirty)
        put(self.pte_young, e.pte, pte.young)
        add_rows(lat, r, cost, self.ar)
        again = np.zeros(self.R, bool)
        again[r] = writable | reuse
        return again

    # ---------------------------------------------------------------- working sets

    def refill_working_set(self, cpu, u):
        """The acting CPU's thread refills the hot set its full flushes of this step dropped: it
        runs on (the caller after its call, a woken thread, a writer after its fault), and
        every entry it keeps hot misses the STLB once and is walked again, whether or not it
        belongs to the range that changed.  Booked to that thread, not to the call."""
        at = key(cpu, self.ar)
        owed = get(self.owed, at)
        put(self.owed, at, 0)
        self._owing = False
        ws = self.working_set.take(cpu)
        entries_ = owed * ws
        hit = entries_ > 0
        if not hit.any():
            return
        cost = np.zeros(self.shape)
        charge(cost, hit, entries_ * self.t.c.page_walk, u[K.SLOT_REFILL], self.t.F)
        self.refill_initiator += np.where(cpu == 0, cost, 0).astype(np.int64)
        self.refill_others += np.where(cpu == 0, 0, cost).astype(np.int64)
        self._count("ws_refills", owed * (ws > 0))
        self._count("tlb_misses", entries_)

    def refill_rows(self, w):
        """The other CPUs of a shootdown's rows ``w`` refill after the full flushes it gave them
        (a handler's, a come-back's, the host's of a preempted vCPU): a target's thread runs on
        after the handler, the others run again; each takes one page walk per hot entry,
        booked to that thread.  The initiator's own refill waits for the end of its step
        (refill_working_set())."""
        owed = np.where(w.D > 0, self.owed[w.rows], 0)
        if not owed.any():
            return
        self.owed[w.rows] -= owed
        ws = self.ws[w.rows]
        entries_ = owed * ws
        if entries_.any():
            t = self.t
            cost = np.where(entries_ > 0, jittered(entries_ * per_cpu(t.c.page_walk), w.refill, t.F), 0.0)
            if w.rows.start in (0, None):   # CPU 0's row: thread 0's own refill
                self.refill_initiator += cost[..., 0, :].astype(np.int64)
                self.refill_others += cost[..., 1:, :].sum(-2).astype(np.int64)
            else:
                self.refill_others += cost.sum(-2).astype(np.int64)
        self._count("ws_refills", (owed * (ws > 0)).sum(0))
        self._count("tlb_misses", entries_.sum(0))

    # ---------------------------------------------------------------- TLB state and books

    def _acting(self, cpu):
        """The initiator of each replicate: ``cpu`` [R], its key() ``at`` and distances ``D``."""
        return _Acting(cpu, key(cpu, self.ar), distances(self.dist, cpu))

    def _reach(self, cpu, D, u):
        return reach(self.C, cpu, D, self.grouped, self.t.remote_line, u, K.N_FIXED_SLOTS)

    def _ptes(self, pte):
        """VM_WRITE and the PTE bits RW, uffd-wp, Dirty, Accessed at ``pte`` (page_range()):
        copies of the entries, or the [P, R] tables themselves (``pte`` None)."""
        tables = (self.vma_write, self.pte_write, self.pte_uffd_wp, self.pte_dirty, self.pte_young)
        return tables if pte is None else tuple(get(a, pte) for a in tables)

    def _store_ptes(self, pte, vma, w, wp, d, y):
        if pte is None:
            self.vma_write, self.pte_write, self.pte_uffd_wp, self.pte_dirty, self.pte_young = vma, w, wp, d, y
            return
        for table, value in ((self.vma_write, vma), (self.pte_write, w), (self.pte_uffd_wp, wp),
                             (self.pte_dirty, d), (self.pte_young, y)):
            put(table, pte, value)

    def _nearest_holder(self, cr, r):
        """Distance class from each replicate's CPU to the nearest CPU holding the mm->tlb_gen
        line (0: its own CPU holds it)."""
        holders = self.tlb_gen_sharers if r is self.ar else self.tlb_gen_sharers[:, r]
        return nearest(holders, distances(self.dist, cr))

    def _own(self, cpu, mask):
        """[C, R]: each replicate's acting CPU, where ``mask``."""
        return (self.cpu_ids == cpu) & mask

    def _flush_acting(self, me, partial, full, span):
        """On each replicate's CPU ``me``: INVLPG ``span`` where ``partial``, flush everything
        where ``full`` (masks [R])."""
        if len(me.at) == 1:
            if partial.any():
                self.tlb_valid[me.at] &= ~(span & partial)
            if full.any():
                self.tlb_valid[me.at] &= ~full
                self.owed[me.at] += full
                self._owing = True
        else:
            self._flush_rows(self._own(me.cpu, partial), self._own(me.cpu, full), span)

    def _flush_rows(self, partial, full, span=None, rows=slice(None)):
        """INVLPG ``span`` on CPUs ``partial`` (or None), flush everything on CPUs ``full``
        (rows ``rows`` of [C, R])."""
        if partial is not None and partial.any():
            self.tlb_valid[rows] &= ~(partial[:, None, :] & span[None, :, :])
        if full.any():
            self.tlb_valid[rows] &= ~full[:, None, :]
            self.owed[rows] += full
            self._owing = True

    def _flush_own(self, cr, r, at, full):
        """Flush everything on each replicate's own CPU where ``full`` (replicates ``r`` on
        CPUs ``cr``, keys ``at`` of the per-CPU arrays; ``full`` [n]).  When every replicate
        acts on one CPU and not just a few act, on that CPU's whole [P, R] slab with a mask
        over replicates (one contiguous pass); else entry by entry."""
        if not full.any():
            return
        c0 = cr[0]
        if (cr == c0).all() and 4 * r.size >= self.R:
            if r is self.ar:
                mask = full
            else:
                mask = np.zeros(self.R, bool)
                mask[r[full]] = True
            self.tlb_valid[c0] &= ~mask
            self.owed[c0] += mask
        else:
            self.tlb_valid[cr[full], :, r[full]] = False
            self.owed[cr[full], r[full]] += 1
        self._owing = True

    def _count(self, name, values):
        self.counters[name] += values

    def _count_at(self, name, r, values):
        """``counters[name] += values`` for replicates ``r`` (from lockstep.replicates())."""
        if r is self.ar:
            self.counters[name] += values
        else:
            self.counters[name][r] += values

    def _count_pages(self, pages):
        """Pages invalidated by a partial flush: INVLPG, plus INVPCID of the user ASID with PTI."""
        self._count("invlpg", pages)
        if self.t.pti:
            self._count("invpcid", pages)


class _Acting:
    """The acting CPU of each replicate: ``cpu`` [R], its key ``at`` into per-CPU arrays and its
    distances ``D`` to every CPU (lockstep.key(), lockstep.distances())."""

    __slots__ = ("cpu", "at", "D")

    def __init__(self, cpu, at, D):
        self.cpu, self.at, self.D = cpu, at, D
