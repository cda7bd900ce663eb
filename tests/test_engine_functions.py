"""Each kernel function of the two engines agrees on its own: the vector engine's and the scalar
reference's, driven on the same state with the same inputs and draws, return the same values
and make the same state changes.

Both engines are one skeleton (study/engine/vector.py lists it): every function named after a
kernel function has a twin of that name in the other engine, taking the same inputs one
replicate at a time.  Each test brings the ScalarBatch to a random state (random interleavings
of every operation, tests/fuzz.py; then, where the function needs them, the functions its
caller runs before it) and loads that state into the VectorEngine, drives one function of each
engine with the same inputs and draws, and compares what it returns, every piece of state and
every book.  So only the function under test (and what it calls) runs in the vector engine: a
failure names it, in the test's name and in each assertion's message.
tests/test_engine_equivalence.py checks whole steps.

The vector engine's access path passes the PTE and TLB entry of the accessing rows along
(PteRows, the entry's RW and Dirty) and access() stores them once; its tests store them as
access() does before comparing the state.

The cost sets scale the machine's costs by halves and small integers, so that every sum of
costs is exact in float64: the cycles a shootdown's walk adds up (a vector sum in one engine,
a loop in the other) compare exactly too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.engine import costs as K
from study.engine import reference
from study.engine.costs import draw_slots
from study.engine.lockstep import count_rows, entries, get, page_range, put, replicates
from study.engine.ops import COUNTERS, FLUSH_NONE, FLUSH_RELAXED, FLUSH_STRICT, OP_MADV_FREE, OP_MPROTECT, OP_UFFD_WP
from study.engine.reference import ScalarBatch
from study.engine.vector import PteRows, VectorEngine
from study.engine.machine import placement_cpus
from study.policies import behaviour

from fuzz import random_ops
from test_engine_equivalence import hot, hot_sets, kernels, machines, policies, scaled_costs

R = 5
CHECK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# halves and small integers: sums of the scaled costs stay exact in float64
exact_scales = st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=6, max_size=6)


@dataclasses.dataclass
class World:
    """A VectorEngine and the ScalarBatch of the same replicates (``sets`` cost sets of R each,
    replicate k * R + r of the batch being replicate r priced by set k) in the same state."""

    vec: VectorEngine
    ref: ScalarBatch
    sets: int | None
    rng: np.random.Generator

    @property
    def K(self):
        return self.sets or 1

    @property
    def C(self):
        return self.vec.C

    @property
    def P(self):
        return self.vec.P

    def engine(self, k, r) -> reference.ScalarEngine:
        return self.ref.engines[k * R + r]

    def set_of(self, e) -> int:
        """The cost set of reference engine ``e``."""
        return next(i for i, other in enumerate(self.ref.engines) if other is e) // R


@st.composite
def worlds(draw):
    machine = draw(machines)
    kernel = draw(kernels)
    threads = min(draw(st.integers(1, 18)), machine.n_cpus)
    cpus = placement_cpus(machine, threads, draw(st.sampled_from(["smt", "core", "socket"])))
    pages = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    lazy = np.random.default_rng(seed).random(threads) < 0.3
    lazy[0] = False
    kw = dict(working_set=hot(draw(hot_sets), threads, seed), lazy=lazy,
              on_cpu_share=draw(st.sampled_from([1.0, 0.6, 0.0])))
    if draw(st.booleans()):
        rules = behaviour(kernel, draw(policies))
        per_replicate = [rules] * R
    else:
        rules = per_replicate = [behaviour(kernel, p) for p in draw(st.lists(policies, min_size=R, max_size=R))]
    sets = draw(st.sampled_from([None, 2]))
    if sets is None:
        vec = VectorEngine(machine, rules, cpus, pages, R, **kw)
        ref = ScalarBatch(machine, rules, cpus, pages, R, **kw)
    else:
        members = [scaled_costs(machine, draw(exact_scales)) for _ in range(sets)]
        vec = VectorEngine(members, rules, cpus, pages, R, **kw)
        ref = ScalarBatch([m for m in members for _ in range(R)], per_replicate * sets, cpus, pages, sets * R, **kw)
    rng = np.random.default_rng(seed)
    for kind, cpu, lo, n, arg, u in random_ops(rng, R, vec.C, pages, draw(st.integers(0, 30)), lazy=lazy):
        ref.step(*(np.tile(x, vec.sets or 1) for x in (kind, cpu, lo, n, arg)), np.tile(u, (1, vec.sets or 1)))
    w = World(vec, ref, sets, rng)
    load(w)
    return w


# ---------------------------------------------------------------- comparing the two engines

# the cycles booked outside the acting CPU's latency: stolen from the others' CPUs, and the
# threads' refills of their hot sets
BOOKS = ("stolen", "refill_initiator", "refill_others")


def vec_state(v: VectorEngine) -> dict:
    s = {name: getattr(v, name).copy() for name in (
        "vma_write", "pte_write", "pte_dirty", "pte_young", "pte_uffd_wp", "tlb_gen", "mm_cpumask",
        "tlb_gen_sharers", "local_gen", "is_lazy", "off_cpu", "owed", "tlb_valid")}
    # an invalid entry's bits are never read
    s["tlb_write"] = v.tlb_write & v.tlb_valid
    s["tlb_dirty"] = v.tlb_dirty & v.tlb_valid
    return s


def ref_state(engines, C, P) -> dict:
    def per(f):
        return np.stack([np.array(f(e)) for e in engines], axis=-1)
    entry = lambda e, i, p, bit: p in e.cpus[i].tlb and getattr(e.cpus[i].tlb[p], bit)  # noqa: E731
    return dict(
        vma_write=per(lambda e: e.vma_write),
        pte_write=per(lambda e: [p.write for p in e.ptes]),
        pte_dirty=per(lambda e: [p.dirty for p in e.ptes]),
        pte_young=per(lambda e: [p.young for p in e.ptes]),
        pte_uffd_wp=per(lambda e: [p.uffd_wp for p in e.ptes]),
        tlb_gen=per(lambda e: e.tlb_gen),
        mm_cpumask=per(lambda e: [i in e.mm_cpumask for i in range(C)]),
        tlb_gen_sharers=per(lambda e: [i in e.tlb_gen_sharers for i in range(C)]),
        local_gen=per(lambda e: [c.local_gen for c in e.cpus]),
        is_lazy=per(lambda e: [c.is_lazy for c in e.cpus]),
        off_cpu=per(lambda e: [c.off_cpu for c in e.cpus]),
        owed=per(lambda e: [c.owed for c in e.cpus]),
        tlb_valid=per(lambda e: [[p in c.tlb for p in range(P)] for c in e.cpus]),
        tlb_write=per(lambda e: [[entry(e, i, p, "write") for p in range(P)] for i in range(C)]),
        tlb_dirty=per(lambda e: [[entry(e, i, p, "dirty") for p in range(P)] for i in range(C)]),
    )


def load(w: World) -> None:
    """The reference's state, counters and stolen cycles into the vector engine."""
    v = w.vec
    for name, value in ref_state(w.ref.engines[:R], w.C, w.P).items():
        getattr(v, name)[...] = value
    for name in COUNTERS:
        v.counters[name][...] = [w.engine(0, r).counters[name] for r in range(R)]
    for name in BOOKS:
        getattr(v, name)[...] = books(w, on_ref(w, lambda e, r: getattr(e, name)))
    v._owing = bool(v.owed.any())
    assert_state(w, "loading the reference's state")


def assert_state(w: World, fn: str) -> None:
    """Every piece of state, every counter and the stolen cycles agree after ``fn``."""
    vs = vec_state(w.vec)
    for k in range(w.K):
        where = f" (cost set {k})" if w.sets else ""
        rs = ref_state(w.ref.engines[k * R:(k + 1) * R], w.C, w.P)
        for name, value in rs.items():
            np.testing.assert_array_equal(vs[name], value, err_msg=f"{fn}: {name}{where}")
        for name in COUNTERS:
            np.testing.assert_array_equal(w.vec.counters[name], [w.engine(k, r).counters[name] for r in range(R)],
                                          err_msg=f"{fn}: counters[{name!r}]{where}")
    for name in BOOKS:
        np.testing.assert_array_equal(getattr(w.vec, name), books(w, on_ref(w, lambda e, r: getattr(e, name))),
                                      err_msg=f"{fn}: {name}")


def on_ref(w: World, call, who=None) -> list:
    """[K][R]: call(engine, r) for each replicate r in ``who`` (a mask [R]; None: all) of every
    cost set; None elsewhere."""
    return [[call(w.engine(k, r), r) if who is None or who[r] else None for r in range(R)] for k in range(w.K)]


def books(w: World, values, pick=lambda v: v) -> np.ndarray:
    """Reference cycles [K][R] shaped like the vector engine's books ([R], or [K, R]); 0 for None."""
    a = np.array([[0 if v is None else pick(v) for v in row] for row in values], dtype=float)
    return a[0] if w.sets is None else a


def one_set(w: World, fn: str, what: str, values, pick=lambda v: v) -> list:
    """A result that does not depend on costs: the same in every cost set; [R] of it."""
    first = [None if v is None else pick(v) for v in values[0]]
    for k, row in enumerate(values[1:], 1):
        assert [None if v is None else pick(v) for v in row] == first, f"{fn}: {what} differs in cost set {k}"
    return first


def counts(w: World, fn: str, what: str, values, pick=lambda v: v, idle=0) -> np.ndarray:
    """one_set() as an array [R], ``idle`` where the reference was not called."""
    return np.array([idle if v is None else v for v in one_set(w, fn, what, values, pick)])


def cpu_mask(w: World, fn: str, what: str, values, pick=lambda v: v) -> np.ndarray:
    """Reference lists of CPUs [K][R] as a [C, R] mask."""
    mask = np.zeros((w.C, R), bool)
    for r, cpus in enumerate(one_set(w, fn, what, values, lambda v: sorted(pick(v)))):
        mask[cpus or [], r] = True
    return mask


def full_rows(w: World, rows, x) -> np.ndarray:
    """Per-CPU values of the rows ``rows`` ([.., b - a, R]) as [.., C, R], zero elsewhere."""
    x = np.asarray(x)
    out = np.zeros(x.shape[:-2] + (w.C, x.shape[-1]), x.dtype)
    out[..., rows, :] = x
    return out


def per_cpu_books(w: World, values) -> np.ndarray:
    """Reference per-target cycles [K][R] of {cpu: cycles} as [C, R] (or [K, C, R])."""
    a = np.zeros((w.K, w.C, R))
    for k, row in enumerate(values):
        for r, per in enumerate(row):
            for i, v in (per or {}).items():
                a[k, i, r] = v
    return a[0] if w.sets is None else a


def in_rows(w: World, r, x) -> np.ndarray:
    """Cycles of the rows of replicates ``r`` ([.., n]) as books ([R] or [K, R]), zero elsewhere."""
    out = np.zeros(w.vec.shape)
    out[..., r] = x
    return out


# ---------------------------------------------------------------- inputs

def draws(w: World) -> np.ndarray:
    return draw_slots(w.rng, R, w.C)


def column(u, r):
    return u[:, r]


def a_cpu(w: World, data) -> np.ndarray:
    if data.draw(st.booleans(), label="one CPU for every replicate"):
        return np.full(R, data.draw(st.integers(0, w.C - 1), label="cpu"), np.intp)
    return w.rng.integers(0, w.C, R)


def a_mask(w: World, data, label: str) -> np.ndarray:
    if data.draw(st.booleans(), label=f"{label}: every replicate"):
        return np.ones(R, bool)
    return w.rng.random(R) < 0.6


def a_range(w: World, data):
    """Pages [lo, lo + n) per replicate: one page, or a range; the same for every replicate or not."""
    one_page = data.draw(st.booleans(), label="one page")
    if data.draw(st.booleans(), label="one range for every replicate"):
        lo = data.draw(st.integers(0, w.P - 1), label="lo")
        n = 1 if one_page else data.draw(st.integers(1, w.P - lo), label="n")
        return np.full(R, lo, np.intp), np.full(R, n, np.int64)
    lo = w.rng.integers(0, w.P, R)
    n = np.ones(R, np.int64) if one_page else w.rng.integers(1, w.P - lo + 1)
    return lo, n


@dataclasses.dataclass
class Flush:
    """A flush_tlb_mm_range() request per replicate: who flushes (``f``), who strictly, from
    which CPU, pages [lo, lo + n) (``n`` 0 where nobody flushes, as tlb_finish_mmu() passes
    it) as the span mask the vector engine takes."""

    f: np.ndarray
    strict: np.ndarray
    cpu: np.ndarray
    lo: np.ndarray
    n: np.ndarray
    span: np.ndarray
    u: np.ndarray


def a_flush(w: World, data, strict_only=False) -> Flush:
    f = a_mask(w, data, "flushing")
    strict = f.copy() if strict_only else f & a_mask(w, data, "strict")
    lo, n = a_range(w, data)
    pg = w.vec.pg
    same = (lo == lo[0]).all() and (n == n[0]).all()
    span = (pg >= lo[0]) & (pg < lo[0] + n[0]) if same else (pg >= lo) & (pg < lo + n)
    return Flush(f, strict, a_cpu(w, data), lo, np.where(f, n, 0), span, draws(w))


class Strict:
    """A strict flush_tlb_mm_range() up to the shootdown: the reference's inc_mm_tlb_gen() and
    flush_tlb_func_local(), its state loaded into the vector engine; ``new_gen`` and ``ranged``
    as flush_tlb_mm_range() passes them on, ``reach``: the rows the shootdown can reach."""

    def __init__(self, w: World, x: Flush):
        def start(e, r):
            _, gen = e.inc_mm_tlb_gen(int(x.cpu[r]), column(x.u, r))
            e.flush_tlb_func_local(int(x.cpu[r]), bool(x.n[r] <= e.t.ceiling), int(x.lo[r]), int(x.n[r]), gen,
                                   column(x.u, r))
        on_ref(w, start, x.f)
        load(w)
        v = w.vec
        self.new_gen, self.ranged = v.tlb_gen, x.n <= v.t.ceiling
        self.reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)

    def multi(self, w: World, x: Flush):
        """The reference's flush_tlb_multi() per replicate (the strict ones)."""
        return on_ref(w, lambda e, r: e.flush_tlb_multi(int(x.cpu[r]), int(self.new_gen[r]), column(x.u, r)),
                      x.strict)


def mm_others(w: World, x: Flush, reach) -> np.ndarray:
    """The other CPUs of mm_cpumask in the rows of ``reach``, where ``x.strict``."""
    return w.vec.mm_cpumask[reach.rows] & (reach.D > 0) & x.strict


def listed(mask, r):
    return [int(i) for i in np.flatnonzero(mask[:, r])]


# ---------------------------------------------------------------- change_protection

@CHECK
@given(w=worlds(), data=st.data())
def test_change_protection(w, data):
    op = data.draw(st.sampled_from([OP_MPROTECT, OP_UFFD_WP, OP_MADV_FREE]))
    m, cpu, (lo, n), u = a_mask(w, data, "acting"), a_cpu(w, data), a_range(w, data), draws(w)
    arg = w.rng.integers(0, 3 if op == OP_UFFD_WP else 2, R).astype(np.int8)
    lat, flush = np.zeros(w.vec.shape), np.full(R, FLUSH_NONE, np.int8)
    w.vec.change_protection(op, m, cpu, lo, n, arg, u, lat, flush)
    out = on_ref(w, lambda e, r: e.change_protection(op, int(cpu[r]), int(lo[r]), int(n[r]), int(arg[r]),
                                                     column(u, r)), m)
    np.testing.assert_array_equal(lat, books(w, out, lambda v: v[0]), err_msg="change_protection: latency")
    np.testing.assert_array_equal(flush, counts(w, "change_protection", "flush", out, lambda v: v[1], FLUSH_NONE),
                                  err_msg="change_protection: flush type")
    assert_state(w, "change_protection")


@CHECK
@given(w=worlds(), data=st.data())
def test_change_pte_range(w, data):
    v = w.vec
    op = data.draw(st.sampled_from([OP_MPROTECT, OP_UFFD_WP]))
    m, (lo, n) = a_mask(w, data, "acting"), a_range(w, data)
    arg = w.rng.integers(0, 3 if op == OP_UFFD_WP else 2, R).astype(np.int8)
    pte, inr = page_range(lo, n, m, v.pg, v.ar)
    vma, new_w, wp, d, y, try_w = v.change_pte_range(op, inr, arg, *v._ptes(pte))
    v._store_ptes(pte, vma, new_w, wp, d, y)
    checks = on_ref(w, lambda e, r: e.change_pte_range(op, int(lo[r]), int(n[r]), int(arg[r])), m)
    tried = np.count_nonzero(try_w, axis=0) if pte is None else try_w.astype(np.int64)
    np.testing.assert_array_equal(np.where(m, tried, 0), counts(w, "change_pte_range", "checks", checks),
                                  err_msg="change_pte_range: can_change_pte_writable() calls")
    assert_state(w, "change_pte_range")


@CHECK
@given(w=worlds(), data=st.data())
def test_can_change_pte_writable(w, data):
    shape = (w.P, R) if data.draw(st.booleans(), label="a page table") else (R,)
    try_w, d = w.rng.random(shape) < 0.6, w.rng.random(shape) < 0.5
    up = w.vec.can_change_pte_writable(try_w, d)

    def ref(e, r):
        out = []
        for dirty in np.atleast_2d(d.T)[r] if d.ndim == 2 else [d[r]]:
            pte = reference.Pte()
            pte.dirty = bool(dirty)
            out.append(bool(e.can_change_pte_writable(pte)))
        return out
    allowed = np.array(one_set(w, "can_change_pte_writable", "result", on_ref(w, ref))).T.reshape(shape)
    np.testing.assert_array_equal(up, try_w & allowed, err_msg="can_change_pte_writable")


@CHECK
@given(w=worlds(), data=st.data())
def test_pte_flush_type(w, data):
    shape = (w.P, R)
    inr, old_w, new_w, d = (w.rng.random(shape) < 0.6 for _ in range(4))
    none = np.zeros(shape, bool)
    strict, relaxed = w.vec.pte_flush_type(inr, old_w, new_w, d, none)
    assert not (strict & relaxed).any(), "pte_flush_type: a PTE needs a strict and a relaxed flush"
    got = np.where(strict, FLUSH_STRICT, np.where(relaxed, FLUSH_RELAXED, FLUSH_NONE))

    def ref(e, r):
        out = []
        for p in range(w.P):
            pte = reference.Pte()
            pte.write, pte.dirty = bool(new_w[p, r]), bool(d[p, r])
            out.append(e.pte_flush_type(bool(old_w[p, r]), pte) if inr[p, r] else FLUSH_NONE)
        return out
    want = np.array(one_set(w, "pte_flush_type", "flush type", on_ref(w, ref))).T
    np.testing.assert_array_equal(got, want, err_msg="pte_flush_type")


@CHECK
@given(w=worlds(), data=st.data())
def test_madvise_free_pte_range(w, data):
    v = w.vec
    m, (lo, n) = a_mask(w, data, "acting"), a_range(w, data)
    pte, inr = page_range(lo, n, m, v.pg, v.ar)
    vma, wr, wp, d, y = v._ptes(pte)
    d, y, cleaned = v.madvise_free_pte_range(inr, d, y)
    v._store_ptes(pte, vma, wr, wp, d, y)
    needs = on_ref(w, lambda e, r: e.madvise_free_pte_range(int(lo[r]), int(n[r])), m)
    want = np.zeros((w.P, R), bool)
    for r, per in enumerate(one_set(w, "madvise_free_pte_range", "needs", needs)):
        for i, need in enumerate(per or []):
            want[lo[r] + i, r] = need == FLUSH_STRICT
    got = cleaned if pte is None else np.zeros((w.P, R), bool)
    if pte is not None:
        got[lo, np.arange(R)] = cleaned
    np.testing.assert_array_equal(got, want, err_msg="madvise_free_pte_range: strict flush needed")
    assert_state(w, "madvise_free_pte_range")


@CHECK
@given(w=worlds(), data=st.data())
def test_tlb_finish_mmu(w, data):
    v = w.vec
    m, cpu, (lo, n), u = a_mask(w, data, "acting"), a_cpu(w, data), a_range(w, data), draws(w)
    pte, inr = page_range(lo, n, m, v.pg, v.ar)
    need = np.where(inr, w.rng.integers(0, 3, inr.shape), FLUSH_NONE)
    cost = np.zeros(v.shape)
    walk = data.draw(st.booleans(), label="changed by change_pte_range()")
    strict, relaxed = v.tlb_finish_mmu(m, pte, lo, n, need == FLUSH_STRICT, need == FLUSH_RELAXED, cpu, u, cost,
                                       walk=walk)

    def ref(e, r):
        needs = [int(need[r])] if pte is not None else [int(x) for x in need[lo[r]:lo[r] + n[r], r]]
        return e.tlb_finish_mmu(int(lo[r]), needs, int(cpu[r]), column(u, r), walk=walk)
    out = on_ref(w, ref, m)
    np.testing.assert_array_equal(cost, books(w, out, lambda x: x[0]), err_msg="tlb_finish_mmu: cycles")
    flush = np.where(strict, FLUSH_STRICT, np.where(relaxed, FLUSH_RELAXED, FLUSH_NONE))
    np.testing.assert_array_equal(flush, counts(w, "tlb_finish_mmu", "flush", out, lambda x: x[1], FLUSH_NONE),
                                  err_msg="tlb_finish_mmu: flush type")
    assert_state(w, "tlb_finish_mmu")


# ---------------------------------------------------------------- flush_tlb_mm_range

@CHECK
@given(w=worlds(), data=st.data())
def test_flush_tlb_mm_range(w, data):
    x = a_flush(w, data)
    cost = w.vec.flush_tlb_mm_range(x.f, x.strict, x.cpu, x.n, x.span, x.u)
    out = on_ref(w, lambda e, r: e.flush_tlb_mm_range(bool(x.strict[r]), int(x.cpu[r]), int(x.lo[r]), int(x.n[r]),
                                                      column(x.u, r)), x.f)
    np.testing.assert_array_equal(np.where(x.f, cost, 0), books(w, out), err_msg="flush_tlb_mm_range: cycles")
    assert_state(w, "flush_tlb_mm_range")


@CHECK
@given(w=worlds(), data=st.data())
def test_inc_mm_tlb_gen(w, data):
    x = a_flush(w, data)
    cost, gen = w.vec.inc_mm_tlb_gen(x.f, w.vec._acting(x.cpu), x.u)
    out = on_ref(w, lambda e, r: e.inc_mm_tlb_gen(int(x.cpu[r]), column(x.u, r)), x.f)
    np.testing.assert_array_equal(np.where(x.f, cost, 0), books(w, out, lambda v: v[0]),
                                  err_msg="inc_mm_tlb_gen: cycles")
    np.testing.assert_array_equal(np.where(x.f, gen, 0), counts(w, "inc_mm_tlb_gen", "tlb_gen", out, lambda v: v[1]),
                                  err_msg="inc_mm_tlb_gen: the new generation")
    assert_state(w, "inc_mm_tlb_gen")


@CHECK
@given(w=worlds(), data=st.data())
def test_flush_tlb_func_local(w, data):
    v, x = w.vec, a_flush(w, data)
    on_ref(w, lambda e, r: e.inc_mm_tlb_gen(int(x.cpu[r]), column(x.u, r)), x.f)
    load(w)
    gen, ranged = v.tlb_gen, x.n <= v.t.ceiling
    cost = v.flush_tlb_func_local(x.f, v._acting(x.cpu), ranged, x.n, x.span, gen, x.u)
    out = on_ref(w, lambda e, r: e.flush_tlb_func_local(int(x.cpu[r]), bool(ranged[r]), int(x.lo[r]), int(x.n[r]),
                                                        int(gen[r]), column(x.u, r)), x.f)
    np.testing.assert_array_equal(np.where(x.f, cost, 0), books(w, out), err_msg="flush_tlb_func_local: cycles")
    assert_state(w, "flush_tlb_func_local")


@CHECK
@given(w=worlds(), data=st.data())
def test_flush_tlb_multi(w, data):
    x = a_flush(w, data)
    s = Strict(w, x)
    others, targets, flagged, base = w.vec.flush_tlb_multi(x.strict, s.new_gen, s.reach, x.u)
    ref = s.multi(w, x)
    rows = s.reach.rows
    for i, (name, mask) in enumerate((("others", others), ("targets", targets), ("flagged", flagged))):
        got = np.zeros((w.C, R), bool) if mask is None else full_rows(w, rows, mask)
        np.testing.assert_array_equal(got, cpu_mask(w, "flush_tlb_multi", name, ref, lambda v: v[i]),
                                      err_msg=f"flush_tlb_multi: {name}")
    np.testing.assert_array_equal(np.where(x.strict, base, 0), books(w, ref, lambda v: v[3]),
                                  err_msg="flush_tlb_multi: cycles of the walk so far")
    assert_state(w, "flush_tlb_multi")


@CHECK
@given(w=worlds(), data=st.data())
def test_kvm_flush_tlb_multi(w, data):
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    others = mm_others(w, x, reach)
    kept, flagged, base = v.kvm_flush_tlb_multi(others, np.zeros(v.shape) + v.t.c.cpumask_scan, reach)
    full = full_rows(w, reach.rows, others)
    ref = on_ref(w, lambda e, r: e.kvm_flush_tlb_multi(int(x.cpu[r]), listed(full, r), e.t.c.cpumask_scan,
                                                       column(x.u, r)), x.strict)
    np.testing.assert_array_equal(full_rows(w, reach.rows, kept), cpu_mask(w, "kvm_flush_tlb_multi", "kept", ref,
                                                                             lambda v: v[0]),
                                  err_msg="kvm_flush_tlb_multi: the CPUs left for the IPIs")
    got = np.zeros((w.C, R), bool) if flagged is None else full_rows(w, reach.rows, flagged)
    np.testing.assert_array_equal(got, cpu_mask(w, "kvm_flush_tlb_multi", "flagged", ref, lambda v: v[1]),
                                  err_msg="kvm_flush_tlb_multi: flagged")
    np.testing.assert_array_equal(np.where(x.strict, base, 0), books(w, ref, lambda v: v[2]),
                                  err_msg="kvm_flush_tlb_multi: cycles")
    assert_state(w, "kvm_flush_tlb_multi")


@CHECK
@given(w=worlds(), data=st.data())
def test_should_flush_tlb(w, data):
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    others = mm_others(w, x, reach) & (w.rng.random((reach.D.shape[0], R)) < 0.8)
    targets = v.should_flush_tlb(others, reach)
    full = full_rows(w, reach.rows, others)
    ref = on_ref(w, lambda e, r: [i for i in listed(full, r) if e.should_flush_tlb(i, column(x.u, r))], x.strict)
    np.testing.assert_array_equal(full_rows(w, reach.rows, targets), cpu_mask(w, "should_flush_tlb", "targets", ref),
                                  err_msg="should_flush_tlb: targets")
    assert_state(w, "should_flush_tlb")


def some_cpus(w: World, data, reach, label: str) -> np.ndarray:
    """Other CPUs in the rows of ``reach``: none, one, every one, or a random few."""
    other = (reach.D > 0) & np.ones((1, R), bool)
    how = data.draw(st.sampled_from(["random", "every", "one", "none"]), label=label)
    if how == "every":
        return other
    if how == "none":
        return np.zeros_like(other)
    if how == "one":
        pick = w.rng.random(other.shape) * other
        return other & (pick == pick.max(0)) & (pick > 0)
    return other & (w.rng.random(other.shape) < 0.5)


@CHECK
@given(w=worlds(), data=st.data())
def test_smp_call_function_many_cond(w, data):
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    others = some_cpus(w, data, reach, "others")
    targets = others & some_cpus(w, data, reach, "targets")
    base = w.rng.integers(0, 2000, v.shape).astype(float)
    send, offset, nt = v.smp_call_function_many_cond(others, targets, base.copy(), reach, x.u)
    fo, ft = full_rows(w, reach.rows, others), full_rows(w, reach.rows, targets)
    ref = on_ref(w, lambda e, r: e.smp_call_function_many_cond(
        int(x.cpu[r]), listed(fo, r), listed(ft, r), base[r] if w.sets is None else base[w.set_of(e), r],
        column(x.u, r)))
    np.testing.assert_array_equal(send, books(w, ref, lambda v: v[0]), err_msg="smp_call_function_many_cond: cycles")
    offsets = full_rows(w, reach.rows, np.broadcast_to(offset, v.shape[:-1] + targets.shape))
    np.testing.assert_array_equal(np.where(ft, offsets, 0), per_cpu_books(w, [[v[1] for v in row] for row in ref]),
                                  err_msg="smp_call_function_many_cond: each target's send offset")
    np.testing.assert_array_equal(nt, ft.sum(0), err_msg="smp_call_function_many_cond: targets")
    assert_state(w, "smp_call_function_many_cond")


@CHECK
@given(w=worlds(), data=st.data())
def test_native_send_call_func_ipi(w, data):
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    targets = some_cpus(w, data, reach, "targets")
    rank, writes, write = v.native_send_call_func_ipi(targets, count_rows(targets))
    ft = full_rows(w, reach.rows, targets)
    ref = on_ref(w, lambda e, r: e.native_send_call_func_ipi(listed(ft, r)))
    np.testing.assert_array_equal(np.broadcast_to(writes, (R,)),
                                  counts(w, "native_send_call_func_ipi", "writes", ref, lambda v: v[1]),
                                  err_msg="native_send_call_func_ipi: writes")
    np.testing.assert_array_equal(np.broadcast_to(write, v.shape), books(w, ref, lambda v: v[0]),
                                  err_msg="native_send_call_func_ipi: the cycles of one write")
    got = np.where(ft, full_rows(w, reach.rows, np.broadcast_to(rank, targets.shape)), 0)
    want = np.zeros((w.C, R), int)
    for r, ranks in enumerate(one_set(w, "native_send_call_func_ipi", "rank", ref, lambda v: v[2])):
        for i, q in ranks.items():
            want[i, r] = q
    np.testing.assert_array_equal(got, want, err_msg="native_send_call_func_ipi: the write covering each target")


@CHECK
@given(w=worlds(), data=st.data())
def test_flush_tlb_func_remote(w, data):
    v, x = w.vec, a_flush(w, data)
    s = Strict(w, x)
    ref = s.multi(w, x)
    load(w)
    targets = cpu_mask(w, "flush_tlb_multi", "targets", ref, lambda v: v[1])
    handler = v.flush_tlb_func_remote(targets[s.reach.rows], count_rows(targets[s.reach.rows]), s.new_gen, s.ranged,
                                      x.n, x.span, s.reach)

    def remote(e, r):
        cpu = int(x.cpu[r])
        return {i: e.flush_tlb_func_remote(cpu, i, int(s.new_gen[r]), bool(s.ranged[r]), int(x.lo[r]), int(x.n[r]),
                                           column(x.u, r)) for i in listed(targets, r)}
    out = on_ref(w, remote, x.strict)
    np.testing.assert_array_equal(full_rows(w, s.reach.rows, handler), per_cpu_books(w, out),
                                  err_msg="flush_tlb_func_remote: each handler's cycles")
    assert_state(w, "flush_tlb_func_remote")


@CHECK
@given(w=worlds(), data=st.data())
def test_csd_lock_wait(w, data):
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    targets = some_cpus(w, data, reach, "targets")
    shape = v.shape[:-1] + targets.shape
    offset, handler = (w.rng.integers(0, 5000, shape).astype(float) for _ in range(2))
    done = v.csd_lock_wait(targets, offset, handler, reach)
    ft, fo, fh = (full_rows(w, reach.rows, a) for a in (targets, offset, handler))

    def ref(e, r):
        k = w.set_of(e)
        at = (lambda a, i: a[k, i, r]) if w.sets else (lambda a, i: a[i, r])
        cpus = listed(ft, r)
        return e.csd_lock_wait(int(x.cpu[r]), cpus, {i: at(fo, i) for i in cpus}, {i: at(fh, i) for i in cpus},
                               column(x.u, r))
    np.testing.assert_array_equal(done, books(w, on_ref(w, ref)), err_msg="csd_lock_wait: the slowest target")


@CHECK
@given(w=worlds(), data=st.data())
def test_kvm_vcpu_flush_tlb_guest(w, data):
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    flagged = some_cpus(w, data, reach, "flagged")
    v.kvm_vcpu_flush_tlb_guest(flagged, reach)
    ff = full_rows(w, reach.rows, flagged)
    on_ref(w, lambda e, r: [e.kvm_vcpu_flush_tlb_guest(i, column(x.u, r)) for i in listed(ff, r)])
    assert_state(w, "kvm_vcpu_flush_tlb_guest")


# ---------------------------------------------------------------- switch_mm_irqs_off

@CHECK
@given(w=worlds(), data=st.data())
def test_switch_mm_irqs_off(w, data):
    m, cpu, u = a_mask(w, data, "switching"), a_cpu(w, data), draws(w)
    to_lazy = w.rng.random(R) < 0.4
    lat = np.zeros(w.vec.shape)
    w.vec.switch_mm_irqs_off(m, cpu, to_lazy, u, lat)
    out = on_ref(w, lambda e, r: e.switch_mm_irqs_off(int(cpu[r]), bool(to_lazy[r]), column(u, r)), m)
    np.testing.assert_array_equal(lat, books(w, out), err_msg="switch_mm_irqs_off: latency")
    assert_state(w, "switch_mm_irqs_off")


@CHECK
@given(w=worlds(), data=st.data())
def test_switch_mm_irqs_off_remote(w, data):
    back, u = w.rng.random((w.C, R)) < 0.4, draws(w)
    gen = w.vec.tlb_gen - w.rng.integers(0, 2, R)
    w.vec.switch_mm_irqs_off_remote(back, gen, u[K.SLOT_SWITCH])
    on_ref(w, lambda e, r: [e.switch_mm_irqs_off_remote(i, int(gen[r]), column(u, r)) for i in listed(back, r)])
    assert_state(w, "switch_mm_irqs_off_remote")


# ---------------------------------------------------------------- access and the fault path

@CHECK
@given(w=worlds(), data=st.data())
def test_access(w, data):
    m, cpu, u = a_mask(w, data, "accessing"), a_cpu(w, data), draws(w)
    page = np.full(R, data.draw(st.integers(0, w.P - 1))) if (cpu == cpu[0]).all() else w.rng.integers(0, w.P, R)
    write = w.rng.random(R) < 0.7
    lat, pending = np.zeros(w.vec.shape), np.zeros(R, bool)
    w.vec.access(m, cpu, page, write, u, lat, pending)
    out = on_ref(w, lambda e, r: e.access(int(cpu[r]), int(page[r]), bool(write[r]), column(u, r)), m)
    np.testing.assert_array_equal(lat, books(w, out, lambda v: v[0]), err_msg="access: latency")
    np.testing.assert_array_equal(pending, counts(w, "access", "uffd-wp pending", out, lambda v: v[1], False),
                                  err_msg="access: uffd-wp fault pending")
    assert_state(w, "access")


class Rows:
    """An access's rows in the vector engine (lockstep.entries()) and its inputs."""

    def __init__(self, w: World, data):
        v = w.vec
        self.m, self.cpu, self.u = a_mask(w, data, "accessing"), a_cpu(w, data), draws(w)
        same = (self.cpu == self.cpu[0]).all()
        self.page = np.full(R, data.draw(st.integers(0, w.P - 1))) if same else w.rng.integers(0, w.P, R)
        self.r = replicates(self.m, v.ar)
        self.e = entries(self.r, self.cpu, self.page, v.ar, v.P)
        self.us = self.u if self.r is v.ar else self.u[:, self.r]
        self.cost = np.zeros(v.shape[:-1] + (self.r.size,))

    def pte(self, w: World) -> PteRows:
        return PteRows(get(w.vec.pte_write, self.e.pte), get(w.vec.pte_dirty, self.e.pte),
                       get(w.vec.pte_young, self.e.pte))

    def store(self, w: World, pte: PteRows, entry=None):
        """Store the rows' PTE (and TLB entry: RW and Dirty) as access() does."""
        v = w.vec
        for table, bits in ((v.pte_write, pte.write), (v.pte_dirty, pte.dirty), (v.pte_young, pte.young)):
            put(table, self.e.pte, bits)
        if entry is not None:
            put(v.tlb_valid, self.e.tlb, np.ones(self.r.size, bool))
            put(v.tlb_write, self.e.tlb, entry[0])
            put(v.tlb_dirty, self.e.tlb, entry[1])

    def each(self, w: World, call, who=None):
        """call(engine, cpu, page, u) for the rows in ``who`` (a mask over the rows; None: all)."""
        mask = np.zeros(R, bool)
        mask[self.r[who] if who is not None else self.r] = True
        return on_ref(w, lambda e, r: call(e, int(self.cpu[r]), int(self.page[r]), column(self.u, r)), mask)

    def in_rows(self, x):
        """Values of the rows as [R], zero (False) elsewhere."""
        out = np.zeros(R, np.asarray(x).dtype)
        out[self.r] = x
        return out


def some_owed(w: World, data):
    """Full flushes owed by random CPUs of every replicate (0-3 each), set in the reference."""
    owed = w.rng.integers(0, 4, (w.C, R)) * (w.rng.random((w.C, R)) < 0.6)
    for k in range(w.K):
        for r in range(R):
            for i in range(w.C):
                w.engine(k, r).cpus[i].owed = int(owed[i, r])
    load(w)
    return owed


@CHECK
@given(w=worlds(), data=st.data())
def test_refill_working_set(w, data):
    some_owed(w, data)
    cpu, u = a_cpu(w, data), draws(w)
    w.vec.refill_working_set(cpu, u)
    on_ref(w, lambda e, r: e.refill_working_set(int(cpu[r]), K.SLOT_REFILL, column(u, r)))
    assert_state(w, "refill_working_set")


@CHECK
@given(w=worlds(), data=st.data())
def test_refill_rows(w, data):
    some_owed(w, data)
    v, x = w.vec, a_flush(w, data, strict_only=True)
    reach = v._reach(x.cpu, v._acting(x.cpu).D, x.u)
    v.refill_rows(reach)
    on_ref(w, lambda e, r: e.refill_rows(int(x.cpu[r]), column(x.u, r)))
    assert_state(w, "refill_rows")


@CHECK
@given(w=worlds(), data=st.data())
def test_retry_after_userfault(w, data):
    m, cpu, u = a_mask(w, data, "retrying"), a_cpu(w, data), draws(w)
    page = np.full(R, data.draw(st.integers(0, w.P - 1))) if (cpu == cpu[0]).all() else w.rng.integers(0, w.P, R)
    lat, pending = np.zeros(w.vec.shape), np.zeros(R, bool)
    again = w.vec.retry_after_userfault(m, cpu, page, u, lat, pending)
    out = on_ref(w, lambda e, r: e.retry_after_userfault(int(cpu[r]), int(page[r]), column(u, r)), m)
    fn = "retry_after_userfault"
    np.testing.assert_array_equal(lat, books(w, out, lambda v: v[0]), err_msg=f"{fn}: latency")
    np.testing.assert_array_equal(pending, counts(w, fn, "uffd-wp pending", out, lambda v: v[1], False),
                                  err_msg=f"{fn}: uffd-wp fault pending")
    np.testing.assert_array_equal(again, counts(w, fn, "write re-executes", out, lambda v: v[2], False),
                                  err_msg=f"{fn}: the write re-executes")
    assert_state(w, fn)


@CHECK
@given(w=worlds(), data=st.data())
def test_tlb_lookup(w, data):
    fn, a = "tlb_lookup", Rows(w, data)
    miss, ew, ed, pte = w.vec.tlb_lookup(a.e, a.us, a.cost)
    out = a.each(w, lambda e, cpu, page, u: e.tlb_lookup(cpu, page, u))
    np.testing.assert_array_equal(in_rows(w, a.r, a.cost), books(w, out, lambda v: v[0]), err_msg=f"{fn}: cycles")
    for what, got, pick in (("hit", ~miss, lambda v: v[2]), ("entry RW", ew, lambda v: v[1].write),
                            ("entry Dirty", ed, lambda v: v[1].dirty)):
        np.testing.assert_array_equal(a.in_rows(got), counts(w, fn, what, out, pick, False), err_msg=f"{fn}: {what}")
    # stored as access() stores a read's entry and PTE
    a.store(w, pte, (ew, ed))
    assert_state(w, fn)


@CHECK
@given(w=worlds(), data=st.data())
def test_dirty_bit_walk(w, data):
    a = Rows(w, data)
    a.each(w, lambda e, cpu, page, u: e.tlb_lookup(cpu, page, u))
    load(w)
    v = w.vec
    ew, ed, pte = get(v.tlb_write, a.e.tlb), get(v.tlb_dirty, a.e.tlb), a.pte(w)
    W = w.rng.random(a.r.size) < 0.8
    fault = w.vec.dirty_bit_walk(a.e, W, ew, ed, pte, a.us, a.cost)
    a.store(w, pte)
    out = a.each(w, lambda e, cpu, page, u: e.dirty_bit_walk(e.cpus[cpu].tlb[page], e.ptes[page], u), W)
    np.testing.assert_array_equal(in_rows(w, a.r, a.cost), books(w, out, lambda v: v[0]),
                                  err_msg="dirty_bit_walk: cycles")
    np.testing.assert_array_equal(a.in_rows(fault),
                                  counts(w, "dirty_bit_walk", "fault", out, lambda v: v[1], False),
                                  err_msg="dirty_bit_walk: fault")
    assert_state(w, "dirty_bit_walk")


def fault_path(w: World, data):
    """The rows of a write fault, and its inputs: the rows' PTE as the vector engine carries it,
    which rows fault, and the pending uffd-wp faults."""
    a = Rows(w, data)
    pte = a.pte(w)
    fault = w.rng.random(a.r.size) < 0.8
    return a, pte, fault, np.zeros(R, bool)


def check_fault(w: World, a: Rows, pte: PteRows, pending, out, fn: str, retry=None):
    """Cycles, (uffd-wp pending and retried writes,) and the state with the rows' PTE stored."""
    a.store(w, pte)
    cycles = books(w, out, lambda v: v[0] if isinstance(v, tuple) else v)
    np.testing.assert_array_equal(in_rows(w, a.r, a.cost), cycles, err_msg=f"{fn}: cycles")
    if retry is not None:
        np.testing.assert_array_equal(pending, counts(w, fn, "uffd-wp pending", out, lambda v: v[1], False),
                                      err_msg=f"{fn}: uffd-wp fault pending")
        np.testing.assert_array_equal(a.in_rows(retry), counts(w, fn, "retried", out, lambda v: v[2], False),
                                      err_msg=f"{fn}: retried")
    assert_state(w, fn)


@CHECK
@given(w=worlds(), data=st.data())
def test_do_user_addr_fault(w, data):
    a, pte, fault, pending = fault_path(w, data)
    retry = w.vec.do_user_addr_fault(a.e, fault, pte, a.us, a.cost, pending)
    out = a.each(w, lambda e, cpu, page, u: e.do_user_addr_fault(cpu, page, u), fault)
    check_fault(w, a, pte, pending, out, "do_user_addr_fault", retry)


@CHECK
@given(w=worlds(), data=st.data())
def test_handle_pte_fault(w, data):
    a, pte, fault, pending = fault_path(w, data)
    fault &= pte.write | get(w.vec.vma_write, a.e.pte)    # past access_error()
    retry = w.vec.handle_pte_fault(a.e, fault, pte, a.us, a.cost, pending)
    out = a.each(w, lambda e, cpu, page, u: e.handle_pte_fault(cpu, page, u), fault)
    check_fault(w, a, pte, pending, out, "handle_pte_fault", retry)


@CHECK
@given(w=worlds(), data=st.data())
def test_do_wp_page(w, data):
    a, pte, fault, pending = fault_path(w, data)
    ro = fault & ~pte.write & get(w.vec.vma_write, a.e.pte)
    reuse = w.vec.do_wp_page(a.e, ro, pte, a.us, a.cost, pending)
    out = a.each(w, lambda e, cpu, page, u: e.do_wp_page(page, u), ro)
    check_fault(w, a, pte, pending, out, "do_wp_page", reuse)


@CHECK
@given(w=worlds(), data=st.data())
def test_flush_tlb_fix_spurious_fault(w, data):
    a, pte, unchanged, _ = fault_path(w, data)
    w.vec.flush_tlb_fix_spurious_fault(a.e, unchanged, a.us, a.cost)
    out = a.each(w, lambda e, cpu, page, u: e.flush_tlb_fix_spurious_fault(cpu, u), unchanged)
    check_fault(w, a, pte, None, out, "flush_tlb_fix_spurious_fault")
