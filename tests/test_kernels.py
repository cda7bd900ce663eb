"""One test per kernel fact (docs/model.md "Kernels", "Fault paths", "Machine facts").

Each scenario runs on both engines.  rfc_base is the RFC's own base (the seed's "Before"),
mainline today's strict path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from study.policies.kernel import MAINLINE, RFC_BASE
from study.engine.machine import Machine
from study.engine.ops import (FLUSH_NONE, FLUSH_STRICT, OP_ACCESS, OP_MADV_FREE, OP_MPROTECT, OP_UFFD_WP,
                              UFFD_PROTECT, UFFD_UNPROTECT, UFFD_UNPROTECT_WRITE_LIKELY)
from study.engine.reference import ScalarBatch
from study.engine.vector import VectorEngine
from study.policies import RELAXED, STRICT, Policy, acts_on, merged_in
from study.config.presets import load_machine

from test_engine_rules import Script

ENGINES = [VectorEngine, ScalarBatch]
MACHINE = Machine(name="t", sockets=1, cores_per_socket=4, smt=1)


def counts(s, *names):
    return tuple(s.count(n) for n in names)


@pytest.mark.parametrize("engine", ENGINES)
def test_rfc_base_mprotect_rw_of_a_clean_page_changes_nothing_and_the_write_reuses(engine):
    s = Script(engine, STRICT, kernel=RFC_BASE)
    s(OP_MADV_FREE, 0)                        # clean: the only way a written page gets clean
    s(OP_MPROTECT, 0, arg=0)                  # clean RW->RO: strict flush (no patch 12)
    before = counts(s, "ipis", "strict_flushes", "relaxed_flushes", "local_partial", "local_full")
    _, flush, _ = s(OP_MPROTECT, 0, arg=1)    # can_change_pte_writable() needs pte_dirty()
    assert (flush == FLUSH_NONE).all() and not s.pte("write")
    assert counts(s, "ipis", "strict_flushes", "relaxed_flushes", "local_partial", "local_full") == before
    s(OP_ACCESS, 0, 0, arg=1)                 # do_wp_page() -> wp_page_reuse()
    assert s.count("reuse_faults") == 1 and s.count("spurious_faults") == 0
    assert counts(s, "ipis", "strict_flushes", "relaxed_flushes", "local_partial", "local_full") == before
    assert s.pte("write") and s.pte("dirty") and s.pte("young")
    s(OP_ACCESS, 0, 0, arg=1)                 # the retried write left a dirty writable entry
    assert s.count("reuse_faults") == 1 and s.count("dirty_walks") == 0 and s.count("violations") == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_mainline_mprotect_rw_of_a_clean_page_shoots_down(engine):
    s = Script(engine, STRICT, kernel=MAINLINE)
    s(OP_MADV_FREE, 0)
    s(OP_MPROTECT, 0, arg=0)
    ipis = s.count("ipis")
    _, flush, _ = s(OP_MPROTECT, 0, arg=1)    # clean exclusive anon pages are upgraded (v6.2)
    assert (flush == FLUSH_STRICT).all() and s.pte("write") and not s.pte("dirty")
    assert s.count("ipis") == ipis + 1
    s(OP_ACCESS, 0, 0, arg=1)                 # no fault, the dirty-bit walk sets D
    assert s.count("reuse_faults") == 0 and s.count("dirty_walks") == 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kernel, writable", [(RFC_BASE, False), (MAINLINE, True)], ids=["rfc_base", "mainline"])
@pytest.mark.parametrize("unprotect", [UFFD_UNPROTECT, UFFD_UNPROTECT_WRITE_LIKELY], ids=["plain", "hint"])
def test_uffd_unprotect_leaves_rw_to_the_fault_on_rfc_base_and_shoots_down_on_mainline(engine, kernel, writable,
                                                                                     unprotect):
    s = Script(engine, STRICT, kernel=kernel)
    s(OP_UFFD_WP, 0, arg=UFFD_PROTECT)        # dirty RW->RO + uffd-wp: strict
    ipis = s.count("ipis")
    _, flush, _ = s(OP_UFFD_WP, 0, arg=unprotect)
    assert not s.pte("uffd_wp") and s.pte("write") == writable
    assert s.count("ipis") == ipis + writable
    assert (flush == (FLUSH_STRICT if writable else FLUSH_NONE)).all()
    s(OP_ACCESS, 1, 0, arg=1)                 # the retried write
    assert s.count("reuse_faults") == (0 if writable else 1) and s.count("uffd_faults") == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kernel", [RFC_BASE, MAINLINE], ids=["rfc_base", "mainline"])
def test_rfc_patches_1_and_2_map_the_unprotected_page_dirty_and_writable_with_the_hint_only(engine, kernel):
    s = Script(engine, RELAXED, kernel=kernel)
    s(OP_MADV_FREE, 0)                        # a strict flush: the page was dirty
    ipis = s.count("ipis")
    s(OP_UFFD_WP, 0, arg=UFFD_PROTECT)        # clean RW->RO: no flush (patch 12)
    s(OP_UFFD_WP, 0, arg=UFFD_UNPROTECT_WRITE_LIKELY)
    assert s.pte("write") and s.pte("dirty") and s.pte("young")
    assert s.count("ipis") == ipis and s.count("relaxed_flushes") == 1
    s(OP_ACCESS, 1, 0, arg=1)
    assert s.count("dirty_walks") == 0 and s.count("reuse_faults") == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_patch_8_runs_only_when_nothing_changed(engine):
    # A clean writable PTE behind stale read-only entries: each write stores D/A
    # (ptep_set_access_flags), takes no fix-up, and the CPU stays behind: one fault per page.
    s = Script(engine, RELAXED, pages=2, kernel=RFC_BASE)
    s(OP_MADV_FREE, 0, 0, 2)
    s(OP_MPROTECT, 0, 0, 2, arg=0)            # clean: no flush (patch 12)
    s(OP_ACCESS, 1, 0, arg=0)                 # CPU 1 caches read-only entries
    s(OP_ACCESS, 1, 1, arg=0)
    s(OP_MPROTECT, 0, 0, 2, arg=1)            # patch 3 + relaxed flush: CPU 1's entries are stale
    full = s.count("local_full")
    s(OP_ACCESS, 1, 0, arg=1)
    s(OP_ACCESS, 1, 1, arg=1)
    assert s.count("spurious_faults") == 2 and s.count("local_full") == full
    assert s.count("dirty_walks") == 0        # the retry finds D set: no dirty-bit walk
    if engine is VectorEngine:
        assert (s.e.local_gen[1] < s.e.tlb_gen).all()
    # ... whereas with dirty PTEs the first fault changes nothing and patch 8 catches up
    d = Script(engine, RELAXED, pages=2, kernel=RFC_BASE)
    d(OP_MPROTECT, 0, 0, 2, arg=0)
    d(OP_ACCESS, 1, 0, arg=0)
    d(OP_ACCESS, 1, 1, arg=0)
    d(OP_MPROTECT, 0, 0, 2, arg=1)
    full = d.count("local_full")
    d(OP_ACCESS, 1, 0, arg=1)
    d(OP_ACCESS, 1, 1, arg=1)
    assert d.count("spurious_faults") == 1 and d.count("local_full") == full + 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("walk, strict_after", [("cet", 0), ("pre_cet", 2)])
def test_pre_cet_dirty_walk_leaves_dirty_set_and_the_next_wrprotect_is_strict(engine, walk, strict_after):
    machine = dataclasses.replace(MACHINE, dirty_walk=walk)
    only12 = Policy("only12", no_flush_clean_wrprotect=True)
    s = Script(engine, only12, machine=machine, kernel=RFC_BASE)
    s(OP_MADV_FREE, 0)
    s(OP_ACCESS, 1, 0, arg=0)                 # CPU 1: clean writable entry
    s(OP_MPROTECT, 0, arg=0)                  # clean RW->RO: no flush
    s(OP_ACCESS, 1, 0, arg=1)                 # the walk faults; pre-CET leaves D set
    assert s.count("prot_faults") == 1 and s.count("violations") == 0
    assert s.pte("dirty") == (walk == "pre_cet") and not s.pte("write")
    strict = s.count("strict_flushes")
    s(OP_MPROTECT, 0, arg=1)                  # dirty -> writable (strict); clean -> stays RO
    s(OP_MPROTECT, 0, arg=0)                  # dirty RW->RO: strict even under patch 12
    assert s.count("strict_flushes") - strict == strict_after


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy, partial", [(Policy("only12", no_flush_clean_wrprotect=True), True),
                                             (STRICT, False)], ids=["patch12", "strict"])
def test_the_flush_spans_only_the_ptes_that_needed_it(engine, policy, partial):
    s = Script(engine, policy, pages=40, kernel=RFC_BASE)
    s(OP_MADV_FREE, 0, 0, 40)                 # 40 pages: above the ceiling, a full flush
    s(OP_ACCESS, 0, 3, arg=1)
    s(OP_ACCESS, 0, 4, arg=1)
    rp, rf = s.count("remote_partial"), s.count("remote_full")
    s(OP_MPROTECT, 0, 0, 40, arg=0)           # only pages 3-4 are dirty under patch 12
    assert (s.count("remote_partial") - rp, s.count("remote_full") - rf) == ((1, 0) if partial else (0, 1))


def test_patches_merged_in_a_kernel_are_no_ops_there():
    assert merged_in(RFC_BASE) == []
    assert set(merged_in(MAINLINE)) == {"clean_anon_writable", "uffd_unprotect_writable"}
    assert acts_on("relaxed_flush_on_upgrade", MAINLINE) and not acts_on("clean_anon_writable", MAINLINE)


@pytest.mark.parametrize("engine", ENGINES)
def test_without_the_hint_rfc_base_with_the_rfc_still_leaves_rw_to_the_fault(engine):
    s = Script(engine, RELAXED, kernel=RFC_BASE)
    s(OP_UFFD_WP, 0, arg=UFFD_PROTECT)
    s(OP_UFFD_WP, 0, arg=UFFD_UNPROTECT)      # patches 1-2 act only with UFFD_FLAGS_WRITE_LIKELY
    assert not s.pte("write") and s.count("relaxed_flushes") == 0
    s(OP_ACCESS, 1, 0, arg=1)
    assert s.count("reuse_faults") == 1


# --- the headline facts on the calibrated seed machine -----------------------------

def _haswell():

    from study.config import config_dir
    return load_machine(config_dir() / "machine" / "haswell_2s.yaml")


def _run(workload, policy, kernel=RFC_BASE, replicates=32, rounds=60):
    from study.workloads import simulate_cell
    return simulate_cell(_haswell(), workload, policy, replicates=replicates, rounds=rounds,
                         seed=np.random.SeedSequence(11), kernel=kernel)


def test_rfc_base_never_written_pages_at_48_threads_send_no_shootdown_after_the_first_round():
    from study.workloads.mprotect_toggle import MprotectToggle
    spec = MprotectToggle(threads=48, dirty_ratio=0.0)
    strict, relaxed = _run(spec, STRICT), _run(spec, RELAXED)
    # the first round's mprotect(PROT_READ) of the freshly MADV_FREE'd (clean, writable)
    # page is the only shootdown: mprotect(PROT_READ|PROT_WRITE) leaves it read-only
    assert (strict.counters["shootdowns"] == 1).all()
    ratio = strict.metrics["total_cycles_per_round"].mean() / relaxed.metrics["total_cycles_per_round"].mean()
    assert 0.8 <= ratio <= 1.25, ratio
    # on mainline the same loop shoots down twice a round
    main = _run(spec, STRICT, kernel=MAINLINE)
    assert (main.counters["shootdowns"] == 2 * main.rounds).all()


def test_the_seed_settings_44_percent_comes_from_patches_9_to_11():
    from study.seed import SEED_WORKLOAD
    from study.workloads.mprotect_toggle import MprotectToggle
    spec = MprotectToggle(**{k: v for k, v in SEED_WORKLOAD.items() if k != "name"}, threads=2)

    def rw(policy):
        return float(np.mean(_run(spec, policy, rounds=100).metrics["lat_mprotect_rw"]))

    strict, relaxed = rw(STRICT), rw(RELAXED)
    assert -0.48 < relaxed / strict - 1 < -0.40
    without = {s: rw(dataclasses.replace(RELAXED, **{s: False}))
               for s in ("uffd_unprotect_mkdirty", "uffd_unprotect_writable", "clean_anon_writable",
                         "fix_spurious_fault", "relaxed_flush_on_upgrade", "no_flush_clean_wrprotect")}
    # switching patches 9-11 off gives the whole gain back; no other patch moves the call
    assert abs(without["relaxed_flush_on_upgrade"] / strict - 1) < 0.01
    for switch, value in without.items():
        if switch != "relaxed_flush_on_upgrade":
            assert abs(value / relaxed - 1) < 0.01, switch
