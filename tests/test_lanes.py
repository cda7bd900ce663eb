"""simulate_lanes: one lockstep run of several policies and cost sets gives each lane exactly
what a run of that lane alone gives (the contract study.workloads.simulate_lanes states)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from study.errors import ConfigError
from study.policies.kernel import KERNELS
from study.engine.machine import Machine
from study.policies import RELAXED, STRICT, SWITCHES, UNSAFE, Policy
from study.workloads import simulate_cell, simulate_lanes
from study.workloads.madv_free import MadvFree
from study.workloads.mprotect_toggle import MprotectToggle
from study.workloads.uffd_wp import UffdWp

MACHINE = Machine(name="small", sockets=2, cores_per_socket=2, smt=2)
policies = st.one_of(st.sampled_from([STRICT, RELAXED, UNSAFE]),
                     st.builds(Policy, name=st.just("mix"), **{s: st.booleans() for s in SWITCHES}))
costs = st.builds(lambda a, b, c: dataclasses.replace(MACHINE.costs, invlpg=260.0 * a, ipi_send=150.0 * b,
                                                      page_walk=40.0 * c, flush_full=96.0 * a),
                  st.floats(0.5, 2.0), st.floats(0.5, 2.0), st.floats(0.5, 2.0))
workloads = st.one_of(
    st.builds(MprotectToggle, threads=st.integers(1, 5), pages=st.integers(1, 3),
              dirty_ratio=st.sampled_from([0.0, 0.5, 1.0]), working_set=st.sampled_from([0, 16]),
              initiator_working_set=st.sampled_from([0, 5]), sleeper_working_set=st.sampled_from([0, 9]),
              lazy_share=st.sampled_from([0.0, 0.5]), lazy_wake_rate=st.sampled_from([0.0, 0.5]),
              remote_access_rate=st.sampled_from([0.0, 0.7]), remote_write_share=st.sampled_from([0.0, 0.5]),
              on_cpu_share=st.sampled_from([1.0, 0.6])),
    st.builds(UffdWp, threads=st.integers(2, 5), pages=st.integers(1, 3), dirty_ratio=st.sampled_from([0.0, 1.0]),
              write_rate=st.sampled_from([0.1, 0.5, 1.0]), writes_per_round=st.integers(1, 3),
              write_likely=st.booleans(), working_set=st.sampled_from([0, 16]),
              initiator_working_set=st.sampled_from([0, 5]), lazy_share=st.sampled_from([0.0, 0.5]),
              sleeper_working_set=st.sampled_from([0, 9]), on_cpu_share=st.sampled_from([1.0, 0.6])),
    st.builds(MadvFree, threads=st.integers(1, 3), pages=st.integers(1, 4),
              dirty_ratio=st.sampled_from([0.0, 0.5, 1.0]), working_set=st.sampled_from([0, 16]),
              initiator_working_set=st.sampled_from([0, 5])),
)
walks = st.sampled_from(["cet", "pre_cet", "completes"])


def assert_identical(a, b):
    assert a.replicates == b.replicates and a.rounds == b.rounds
    assert a.metrics.keys() == b.metrics.keys()
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    assert a.counters.keys() == b.counters.keys()
    for name in a.counters:
        np.testing.assert_array_equal(a.counters[name], b.counters[name], err_msg=name)
    assert a.samples.keys() == b.samples.keys()
    for label in a.samples:
        np.testing.assert_array_equal(a.samples[label], b.samples[label], err_msg=label)


@settings(max_examples=25, deadline=None)
@given(workload=workloads, lanes=st.lists(st.tuples(policies, costs), min_size=1, max_size=4),
       kernel=st.sampled_from(sorted(KERNELS)), walk=walks, seed=st.integers(0, 2**32 - 1),
       warmup=st.sampled_from([0, 2]), max_samples=st.sampled_from([3, 2048]))
def test_each_lane_equals_its_run_alone(workload, lanes, kernel, walk, seed, warmup, max_samples):
    try:
        workload.check_kernel(KERNELS[kernel])
    except ConfigError:
        assume(False)   # a uAPI flag the kernel lacks: refused before anything runs (test_kernels)
    machine = dataclasses.replace(MACHINE, dirty_walk=walk)
    kw = dict(replicates=3, rounds=4, kernel=KERNELS[kernel], max_samples=max_samples, warmup_rounds=warmup)
    together = simulate_lanes(machine, workload, lanes, seed=np.random.SeedSequence(seed), **kw)
    assert len(together) == len(lanes)
    for (policy, lane_costs), got in zip(lanes, together):
        alone = simulate_cell(dataclasses.replace(machine, costs=lane_costs), workload, policy,
                              seed=np.random.SeedSequence(seed), **kw)
        assert_identical(got, alone)


def test_lanes_whose_steps_diverge_still_match():
    """uffd_wp with the unsafe control next to strict on a machine whose dirty-bit walk completes:
    faults pending in one lane and not in another, so the lanes' jitter streams part."""
    machine = dataclasses.replace(MACHINE, dirty_walk="completes")
    spec = UffdWp(threads=3, pages=2, write_rate=0.3, working_set=0)
    lanes = [(STRICT, machine.costs), (UNSAFE, machine.costs),
             (dataclasses.replace(RELAXED, no_flush_clean_wrprotect=True), machine.costs)]
    kw = dict(replicates=2, rounds=30, kernel=KERNELS["rfc_base"])
    together = simulate_lanes(machine, spec, lanes, seed=np.random.SeedSequence(11), **kw)
    for (policy, _), got in zip(lanes, together):
        assert_identical(got, simulate_cell(machine, spec, policy, seed=np.random.SeedSequence(11), **kw))
    # and the lanes did differ in what they did (else this test would not test divergence)
    faults = [r.counters["uffd_faults"].sum() for r in together]
    assert len(set(faults)) > 1


def test_both_engines_read_every_behaviour_but_the_recorded_one():
    """Every rule of the registry (study.policies.changes) has its code in each engine; the one
    fact recorded without effect (flush_skips_tlb_gen_read, docs/model.md) in neither."""
    import dataclasses
    from pathlib import Path

    import study.engine.reference as reference
    import study.engine.vector as vector
    from study.policies import Behaviour

    for module in (vector, reference):
        source = Path(module.__file__).read_text()
        for f in dataclasses.fields(Behaviour):
            assert (f".{f.name}" in source) == (f.name != "flush_skips_tlb_gen_read"), (module.__name__, f.name)


def test_runner_groups_a_setting_and_matches_cell_by_cell():
    """The runner runs a setting's policy cells, and the uffd_wp settings of other dirty ratios,
    as lanes: the same numbers as cell by cell, with adaptive batches past the fixed ones, and
    chunking keeps each group's cells together."""
    from study.config import build_cell, compose
    from study.runner.lanes import chunk_by_cost, groups, run_cells
    from study.runner.replicate import run_cell

    base = ["workload=uffd_wp", "workload.threads=3", "run.replicates=4", "run.batch_replicates=2", "run.rounds=3",
            "run.warmup_rounds=2", "run.adaptive=true", "run.ci_target=0.002", "run.max_replicates=8"]
    cells = [build_cell(compose(base + extra)) for extra in (
        ["policy=strict"], ["policy=relaxed"], ["policy=relaxed", "policy.fix_spurious_fault=false"],
        ["policy=strict", "workload.threads=2"], ["policy=strict", "workload.dirty_ratio=0.0"],
        ["policy=relaxed", "workload.dirty_ratio=0.5"])]
    assert [len(g) for g in groups(cells)] == [5, 1]
    assert len({c.pair_id for c in groups(cells)[0]}) == 3
    got = {cell_id: result for cell_id, result, _ in run_cells(cells)}
    for cell in cells:
        assert_identical(got[cell.cell_id], run_cell(cell))
    for per_task in (1, 2, 100):
        chunks = chunk_by_cost(cells, per_task)
        assert sorted(c.cell_id for chunk in chunks for c in chunk) == sorted(c.cell_id for c in cells)
        for chunk in chunks:
            keys = {c.lane_key for c in chunk}
            assert all(sum(c.lane_key == k for c in chunk) == sum(c.lane_key == k for c in cells) for k in keys)


lane_settings = st.one_of(
    st.builds(UffdWp, threads=st.integers(2, 5), pages=st.integers(1, 3), write_rate=st.sampled_from([0.3, 1.0]),
              working_set=st.sampled_from([0, 16]), on_cpu_share=st.sampled_from([1.0, 0.6])),
    st.builds(MprotectToggle, threads=st.integers(1, 4), pages=st.integers(1, 3), working_set=st.sampled_from([0, 16]),
              remote_access_rate=st.sampled_from([0.0, 0.7]), remote_write_share=st.sampled_from([0.0, 0.5])),
    st.builds(MadvFree, threads=st.integers(1, 3), pages=st.integers(1, 4)),
)


@settings(max_examples=30, deadline=None)
@given(workload=lane_settings,
       lanes=st.lists(st.tuples(policies, st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.integers(0, 2)),
                      min_size=1, max_size=5),
       kernel=st.sampled_from(sorted(KERNELS)), seed=st.integers(0, 2**32 - 1), warmup=st.sampled_from([0, 2]))
def test_lanes_of_other_settings_equal_their_runs_alone(workload, lanes, kernel, seed, warmup):
    """Lanes that differ in a LANE_FIELDS knob (the dirty ratio: a workload's MADV_FREE and
    the writes of the pages it keeps dirty act in some lanes only, some lanes draw and some do
    not) and in their seed: each setting's streams are its own, and every lane is still its run
    alone."""
    kw = dict(replicates=3, rounds=3, kernel=KERNELS[kernel], warmup_rounds=warmup)
    specs = {ratio: dataclasses.replace(workload, dirty_ratio=ratio) for _, ratio, _ in lanes}
    # a setting's seed: its stream key; lanes of one setting pass equal, distinct objects
    seed_of = lambda ratio, s: np.random.SeedSequence(seed, spawn_key=(int(ratio * 4), s))  # noqa: E731
    together = simulate_lanes(MACHINE, workload,
                              [(policy, MACHINE.costs, specs[ratio], seed_of(ratio, s)) for policy, ratio, s in lanes],
                              seed=np.random.SeedSequence(seed), **kw)
    for (policy, ratio, s), got in zip(lanes, together):
        alone = simulate_cell(MACHINE, specs[ratio], policy, seed=seed_of(ratio, s), **kw)
        assert_identical(got, alone)


def test_lanes_must_share_the_rest_of_the_workload():
    spec = UffdWp(threads=3, pages=2)
    with pytest.raises(ValueError, match="workload.pages: the lanes of one run must share it"):
        simulate_lanes(MACHINE, spec, [(STRICT, MACHINE.costs),
                                       (STRICT, MACHINE.costs, dataclasses.replace(spec, pages=3),
                                        np.random.SeedSequence(2))],
                       replicates=2, rounds=1, seed=np.random.SeedSequence(1))
    madv = MadvFree(threads=2)
    with pytest.raises(ValueError, match="workload.threads: .* may differ in dirty_ratio"):
        simulate_lanes(MACHINE, madv, [(STRICT, MACHINE.costs),
                                       (STRICT, MACHINE.costs, dataclasses.replace(madv, threads=3),
                                        np.random.SeedSequence(2))],
                       replicates=2, rounds=1, seed=np.random.SeedSequence(1))
    with pytest.raises(ValueError, match="lanes of one run share the workload: madv_free beside uffd_wp"):
        simulate_lanes(MACHINE, spec, [(STRICT, MACHINE.costs), (STRICT, MACHINE.costs, madv, np.random.SeedSequence(2))],
                       replicates=2, rounds=1, seed=np.random.SeedSequence(1))


@pytest.mark.parametrize("workload", [
    MprotectToggle(threads=3, pages=2, remote_access_rate=0.7, remote_write_share=0.5, working_set=16),
    MadvFree(threads=2, pages=3),
    UffdWp(threads=3, pages=2, write_rate=0.5, working_set=16),
], ids=lambda w: w.name)
def test_every_dirty_ratio_rides_as_a_lane(workload):
    """The sweep's lane group of a setting: both policies at dirty ratios 0, 0.5 and 1, each
    ratio on its own seed (a ratio below 1 draws its dirty pages, 1 draws nothing), and the
    work drawn after the setup (remote touches, writes) must still be each lane's own."""
    kw = dict(replicates=4, rounds=3, kernel=KERNELS["rfc_base"], warmup_rounds=1)
    seed_of = lambda ratio: np.random.SeedSequence(9, spawn_key=(int(ratio * 2),))  # noqa: E731
    lanes = [(policy, MACHINE.costs, dataclasses.replace(workload, dirty_ratio=ratio), seed_of(ratio))
             for ratio in (0.0, 0.5, 1.0) for policy in (STRICT, RELAXED)]
    together = simulate_lanes(MACHINE, workload, lanes, seed=np.random.SeedSequence(9), **kw)
    for (policy, _, spec, _), got in zip(lanes, together):
        assert_identical(got, simulate_cell(MACHINE, spec, policy, seed=seed_of(spec.dirty_ratio), **kw))
