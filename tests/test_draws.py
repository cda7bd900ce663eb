"""Per-CPU draws generated only when read (study.engine.costs.Draws): the same numbers as
drawing them outright, the generator left in the same place, and runs identical either way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from study.engine import costs as K
from study.policies.kernel import KERNELS
from study.engine.machine import Machine, placement_cpus
from study.engine.reference import ScalarBatch
from study.engine.vector import VectorEngine
from study.policies import RELAXED, STRICT
from study.workloads import lazy_cpus, run_workload, simulate_lanes
from study.workloads.driver import LaneJitter
from study.workloads.mprotect_toggle import MprotectToggle
from study.workloads.uffd_wp import UffdWp
from study.policies import RFC_BASE, behaviour

EAGER = 1 << 62   # a threshold no step reaches: every draw made outright


@settings(max_examples=60, deadline=None)
@given(replicates=st.integers(1, 41), cpus=st.integers(1, 12), extra=st.integers(0, 36), seed=st.integers(0, 2**32 - 1))
def test_lazy_draws_are_those_of_draw_slots(replicates, cpus, extra, seed):
    slots = K.N_FIXED_SLOTS + min(extra, 3 * cpus)
    lazy_rng, eager_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "LAZY_PER_CPU_DRAWS", 0)
        mp.setattr(K, "LAZY_PER_CPU_SLOTS", 0)
        u = K.draw_step(lazy_rng, replicates, cpus, slots)
    want = K.draw_slots(eager_rng, replicates, cpus, slots)
    # the generator went past the skipped draws exactly as far as draw_slots() goes
    np.testing.assert_array_equal(lazy_rng.bit_generator.random_raw(3), eager_rng.bit_generator.random_raw(3))
    if slots == K.N_FIXED_SLOTS:
        assert not isinstance(u, K.Draws)
        np.testing.assert_array_equal(u, want)
        return
    assert isinstance(u, K.Draws) and u.shape == want.shape
    for i in range(K.N_FIXED_SLOTS):
        np.testing.assert_array_equal(u[i], want[i])
    np.testing.assert_array_equal(u[K.N_FIXED_SLOTS:], want[K.N_FIXED_SLOTS:])
    np.testing.assert_array_equal(np.asarray(u), want)


def _jitter_run(threshold, lanes, replicates, cpus, steps, seed):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "LAZY_PER_CPU_DRAWS", threshold)
        mp.setattr(K, "LAZY_PER_CPU_SLOTS", 0)
        jitter = LaneJitter([(np.random.SeedSequence(seed), np.arange(lanes))], lanes, replicates, cpus)
        out = [np.asarray(jitter.draw(on, slots)).copy() for on, slots in steps]
    return out, [rng.bit_generator.random_raw(2) for rng, _ in jitter.groups]


@settings(max_examples=40, deadline=None)
@given(lanes=st.integers(1, 4), replicates=st.integers(1, 9), cpus=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_lane_jitter_draws_the_same_lazily(lanes, replicates, cpus, seed, data):
    """Lanes that act, idle and part (the jitter groups split): the same draws, lazily or not."""
    ons = st.one_of(st.none(), st.lists(st.booleans(), min_size=lanes, max_size=lanes).map(np.array))
    slot_counts = st.sampled_from([K.N_FIXED_SLOTS, K.slot_count(cpus)])
    steps = data.draw(st.lists(st.tuples(ons, slot_counts), min_size=1, max_size=8))
    steps = [(on, slots) for on, slots in steps if on is None or on.any()]
    lazy = _jitter_run(0, lanes, replicates, cpus, steps, seed)
    eager = _jitter_run(EAGER, lanes, replicates, cpus, steps, seed)
    for a, b in zip(lazy[0], eager[0]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(lazy[1], eager[1]):
        np.testing.assert_array_equal(a, b)


MACHINE = Machine(name="small", sockets=2, cores_per_socket=3, smt=2)
# a strict unprotect (mainline) reads the per-CPU slots, the RFC's base's does not: both kinds
# of step, and protect calls that always do
SPECS = [UffdWp(threads=5, pages=3, write_rate=0.6, working_set=16, on_cpu_share=0.7),
         MprotectToggle(threads=4, pages=2, dirty_ratio=0.5, remote_access_rate=0.7)]


@pytest.mark.parametrize("kernel", ["rfc_base", "mainline"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_engines_agree_on_lazy_draws(spec, kernel, monkeypatch):
    cpus = placement_cpus(MACHINE, spec.threads, spec.placement)
    runs = []
    for Engine, threshold in ((VectorEngine, 0), (ScalarBatch, 0), (VectorEngine, EAGER)):
        monkeypatch.setattr(K, "LAZY_PER_CPU_DRAWS", threshold)
        monkeypatch.setattr(K, "LAZY_PER_CPU_SLOTS", 0)
        rules = behaviour(KERNELS[kernel], RELAXED if kernel == "rfc_base" else STRICT)
        engine = Engine(MACHINE, rules, cpus, spec.pages, 5, working_set=spec.working_set, lazy=lazy_cpus(spec),
                        on_cpu_share=spec.on_cpu_share)
        runs.append(run_workload(engine, spec, rounds=4, seed=np.random.SeedSequence(3)))
    first = runs[0]
    for other in runs[1:]:
        for name in first.metrics:
            np.testing.assert_array_equal(first.metrics[name], other.metrics[name], err_msg=name)
        for name in first.counters:
            np.testing.assert_array_equal(first.counters[name], other.counters[name], err_msg=name)


def test_lazy_only_where_the_per_cpu_draws_are_many():
    """The default rule: lazily from 2 x N_FIXED_SLOTS per-CPU slots (9 CPUs) and
    LAZY_PER_CPU_DRAWS draws; the seed's 2 CPUs draw outright at any replicate count."""
    assert not K.lazy_per_cpu(K.slot_count(2), 1 << 20)
    assert not K.lazy_per_cpu(K.N_FIXED_SLOTS, 1 << 20)
    assert K.lazy_per_cpu(K.slot_count(9), K.LAZY_PER_CPU_DRAWS // 27 + 1)
    assert not K.lazy_per_cpu(K.slot_count(48), 8)
    assert isinstance(K.draw_step(np.random.default_rng(1), 960, 48), K.Draws)
    assert not isinstance(K.draw_step(np.random.default_rng(1), 8192, 2), K.Draws)


def test_lanes_identical_with_lazy_draws(monkeypatch):
    spec = UffdWp(threads=6, pages=4, write_rate=0.5, working_set=16)
    lanes = [(STRICT, MACHINE.costs), (RELAXED, MACHINE.costs),
             (dataclasses.replace(RELAXED, relaxed_flush_on_upgrade=False), MACHINE.costs)]
    got = []
    for threshold in (0, EAGER):
        monkeypatch.setattr(K, "LAZY_PER_CPU_DRAWS", threshold)
        monkeypatch.setattr(K, "LAZY_PER_CPU_SLOTS", 0)
        got.append(simulate_lanes(MACHINE, spec, lanes, replicates=7, rounds=3, seed=np.random.SeedSequence(5),
                                  kernel=KERNELS["rfc_base"]))
    for a, b in zip(*got):
        for name in a.metrics:
            np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
        for name in a.counters:
            np.testing.assert_array_equal(a.counters[name], b.counters[name], err_msg=name)
