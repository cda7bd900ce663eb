"""The kernel rules the engine must follow, scenario by scenario (arch/x86/mm/tlb.c)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from study.engine.costs import draw_slots
from study.engine.machine import Machine, placement_cpus
from study.engine.ops import OP_ACCESS, OP_MADV_FREE, OP_MPROTECT, OP_SWITCH_MM
from study.engine.reference import ScalarBatch
from study.engine.vector import VectorEngine
from study.policies import RELAXED, STRICT, Policy
from study.policies import RFC_BASE, behaviour

MACHINE = Machine(name="t", sockets=1, cores_per_socket=4, smt=1)
PROMOTE_ONLY = Policy("promote_only", relaxed_flush_on_upgrade=True)


class Script:
    """Issue the same operation on every replicate of an engine."""

    def __init__(self, engine_cls, policy, threads=2, pages=1, lazy=None, R=3, machine=MACHINE, kernel=None):
        cpus = placement_cpus(machine, threads, "core")
        self.e = engine_cls(machine, behaviour(kernel or RFC_BASE, policy), cpus, pages, R, lazy=lazy)
        self.rng = np.random.default_rng(0)

    def pte(self, bit, page=0):
        """PTE bit ``write``/``dirty``/``young``/``uffd_wp`` of ``page``, the same in every replicate."""
        if isinstance(self.e, VectorEngine):
            values = getattr(self.e, f"pte_{bit}")[page]
        else:
            values = np.array([getattr(e.ptes[page], bit) for e in self.e.engines])
        assert (values == values[0]).all()
        return bool(values[0])

    def __call__(self, kind, cpu, lo=0, n=1, arg=0):
        R = self.e.R
        full = lambda v, dt=np.int64: np.full(R, v, dt)  # noqa: E731
        return self.e.step(full(kind, np.int8), full(cpu, np.intp), full(lo, np.intp), full(n),
                           full(arg, np.int8), draw_slots(self.rng, R, self.e.C))

    def count(self, name):
        values = self.e.counters[name]
        assert (values == values[0]).all()
        return int(values[0])


ENGINES = [VectorEngine, ScalarBatch]


@pytest.mark.parametrize("engine", ENGINES)
def test_lagging_two_generations_turns_the_next_strict_ipi_into_a_full_flush(engine):
    s = Script(engine, PROMOTE_ONLY)
    s(OP_MPROTECT, 0, arg=0)          # strict RW->RO: CPU 1 is current, INVLPG
    assert (s.count("remote_partial"), s.count("remote_full")) == (1, 0)
    s(OP_MPROTECT, 0, arg=1)          # relaxed RO->RW: no IPI, CPU 1 now lags one generation
    assert s.count("ipis") == 1 and s.count("relaxed_flushes") == 1
    s(OP_MPROTECT, 0, arg=0)          # strict again: new_tlb_gen = local + 2 -> full flush
    assert (s.count("remote_partial"), s.count("remote_full")) == (1, 1)
    if engine is VectorEngine:
        assert (s.e.local_gen[1] == s.e.tlb_gen).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_strict_keeps_remote_flushes_partial(engine):
    s = Script(engine, STRICT)
    for arg in (0, 1, 0, 1):
        s(OP_MPROTECT, 0, arg=arg)
    assert (s.count("remote_partial"), s.count("remote_full"), s.count("ipis")) == (4, 0, 4)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fixup, faults", [(True, 1), (False, 2)])
def test_spurious_fault_on_a_lagging_cpu_does_one_full_flush_and_catches_up(engine, fixup, faults):
    policy = dataclasses.replace(PROMOTE_ONLY, fix_spurious_fault=fixup)
    s = Script(engine, policy, pages=2)
    s(OP_MPROTECT, 0, 0, 2, arg=0)            # RO, strict
    s(OP_ACCESS, 1, 0, arg=0)                 # CPU 1 caches read-only entries
    s(OP_ACCESS, 1, 1, arg=0)
    s(OP_MPROTECT, 0, 0, 2, arg=1)            # relaxed promotion: CPU 1's entries are stale
    local_full = s.count("local_full")
    s(OP_ACCESS, 1, 0, arg=1)                 # spurious fault
    assert s.count("spurious_faults") == 1
    assert s.count("local_full") == local_full + (1 if fixup else 0)
    s(OP_ACCESS, 1, 1, arg=1)                 # the fix-up flushed page 1's stale entry too
    assert s.count("spurious_faults") == faults
    assert s.count("violations") == 0 and s.count("prot_faults") == 0
    if engine is VectorEngine and fixup:
        assert (s.e.local_gen[1] == s.e.tlb_gen).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_lazy_cpus_get_no_ipi_and_flush_when_they_switch_back(engine):
    s = Script(engine, STRICT, threads=3, lazy=[False, False, True])
    s(OP_MPROTECT, 0, arg=0)
    assert s.count("ipis") == 1              # CPU 2 is lazy: skipped by should_flush_tlb()
    before = s.count("local_full")
    s(OP_SWITCH_MM, 2, arg=0)                # CPU 2 comes back behind mm->tlb_gen
    assert s.count("local_full") == before + 1
    s(OP_MPROTECT, 0, arg=1)
    assert s.count("ipis") == 3              # now it is a target again


@pytest.mark.parametrize("engine", ENGINES)
def test_ranges_above_the_ceiling_become_full_flushes(engine):
    machine_pages = 40
    s = Script(engine, STRICT, pages=machine_pages)
    s(OP_MPROTECT, 0, 0, machine_pages, arg=0)
    assert s.count("remote_full") == 1 and s.count("local_full") == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_write_through_clean_entry_takes_the_dirty_bit_walk_once(engine):
    s = Script(engine, STRICT)
    s(OP_MADV_FREE, 0)                       # the page is clean now
    s(OP_ACCESS, 0, 0, arg=0)                # read: clean writable entry
    s(OP_ACCESS, 0, 0, arg=1)                # first write: dirty-bit walk
    s(OP_ACCESS, 0, 0, arg=1)                # entry dirty now: no walk
    assert s.count("dirty_walks") == 1 and s.count("tlb_hits") == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_relaxed_skips_the_flush_on_clean_demotion_and_the_dirty_walk_catches_the_write(engine):
    s = Script(engine, RELAXED)
    s(OP_MADV_FREE, 0)                       # the page is clean now (a strict flush)
    s(OP_ACCESS, 1, 0, arg=0)                # CPU 1: clean writable entry
    ipis = s.count("ipis")
    lat, flush, _ = s(OP_MPROTECT, 0, arg=0)  # clean RW->RO: no flush at all
    assert (flush == 0).all() and s.count("ipis") == ipis
    s(OP_ACCESS, 1, 0, arg=1)                # the dirty-bit walk re-reads the PTE and faults
    assert s.count("prot_faults") == 1 and s.count("violations") == 0
