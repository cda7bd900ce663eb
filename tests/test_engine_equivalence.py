"""The vectorized engine agrees with the scalar reference, to the cycle, per replicate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from study.policies.kernel import KERNELS
from study.engine.machine import DIRTY_WALKS, Machine, placement_cpus
from study.engine.reference import ScalarBatch
from study.engine.vector import VectorEngine
from study.policies import RELAXED, STRICT, SWITCHES, UNSAFE, Policy
from study.params import declaration
from study.workloads import WORKLOADS, lazy_cpus, run_workload
from study.policies import RFC_BASE, behaviour

from fuzz import random_ops, run_random

SMALL = Machine(name="small", sockets=2, cores_per_socket=2, smt=2)

policies = st.builds(Policy, name=st.just("mix"), **{s: st.booleans() for s in SWITCHES})
kernels = st.sampled_from(sorted(KERNELS.values(), key=lambda k: k.name))
# Topologies: 2x2x2; 2x9x1 (APIC IDs 0-8 and 16-24: two x2APIC clusters, interleaved by the
# socket placement); 1x3x2 (6 CPUs: the all-but-self shorthand is reachable).  Every new fact
# (apic_mode, ipi_shorthand, pti, stlb_entries, virt, pv_send_ipi, pv_tlb_flush,
# vcpu_preempted_share, irq_loses_tlb) is drawn.
virt = st.sampled_from([dict(virt="none"),
                        dict(virt="kvm", pv_send_ipi=False, pv_tlb_flush=False, vcpu_preempted_share=0.3),
                        dict(virt="kvm", pv_send_ipi=True, pv_tlb_flush=True, vcpu_preempted_share=0.3),
                        dict(virt="kvm", pv_send_ipi=True, pv_tlb_flush=False, vcpu_preempted_share=0.0),
                        dict(virt="kvm", pv_send_ipi=True, pv_tlb_flush=True, vcpu_preempted_share=0.1,
                             irq_loses_tlb=True)])
machines = st.builds(
    lambda apic, shorthand, pti, stlb, topo, v, walk, ceiling: dataclasses.replace(
        SMALL, apic_mode=apic, ipi_shorthand=shorthand, pti=pti, stlb_entries=stlb, **topo, **v,
        dirty_walk=walk, tlb_single_page_flush_ceiling=ceiling),
    st.sampled_from(["x2apic_phys", "x2apic_cluster", "xapic"]), st.booleans(), st.booleans(),
    st.sampled_from([4, 1024]),
    st.sampled_from([dict(sockets=2, cores_per_socket=2, smt=2), dict(sockets=2, cores_per_socket=9, smt=1),
                     dict(sockets=1, cores_per_socket=3, smt=2)]),
    virt, st.sampled_from(DIRTY_WALKS), st.sampled_from([2, 33]))


def assert_same(vec, ref, outs_v, outs_r):
    for (lv, fv, pv), (lr, fr, pr) in zip(outs_v, outs_r):
        np.testing.assert_array_equal(lv, lr)
        np.testing.assert_array_equal(fv, fr)
        np.testing.assert_array_equal(pv, pr)
    for name, values in ref.counters.items():
        np.testing.assert_array_equal(vec.counters[name], values, err_msg=name)
    np.testing.assert_array_equal(vec.stolen, ref.stolen)
    np.testing.assert_array_equal(vec.refill_initiator, ref.refill_initiator)
    np.testing.assert_array_equal(vec.refill_others, ref.refill_others)


# hot sets: one for every thread, or one per thread (the workloads' roles)
hot_sets = st.sampled_from([0, 7, "per thread"])


def hot(working_set, threads, seed):
    if working_set != "per thread":
        return working_set
    return np.random.default_rng(seed + 1).choice([0, 3, 7], threads)


@settings(max_examples=60, deadline=None)
@given(machine=machines, policy=policies, kernel=kernels, threads=st.integers(1, 18), pages=st.integers(1, 5),
       placement=st.sampled_from(["smt", "core", "socket"]), seed=st.integers(0, 2**32 - 1),
       working_set=hot_sets, on_cpu=st.sampled_from([1.0, 0.6, 0.0]))
def test_random_interleavings_agree(machine, policy, kernel, threads, pages, placement, seed, working_set, on_cpu):
    threads = min(threads, machine.n_cpus)
    working_set = hot(working_set, threads, seed)
    cpus = placement_cpus(machine, threads, placement)
    lazy = np.random.default_rng(seed).random(threads) < 0.3
    lazy[0] = False
    R = 6
    rules = behaviour(kernel, policy)
    vec = VectorEngine(machine, rules, cpus, pages, R, working_set=working_set, lazy=lazy, on_cpu_share=on_cpu)
    ref = ScalarBatch(machine, rules, cpus, pages, R, working_set=working_set, lazy=lazy, on_cpu_share=on_cpu)
    outs_v = run_random(vec, np.random.default_rng(seed), 40, lazy=lazy)
    outs_r = run_random(ref, np.random.default_rng(seed), 40, lazy=lazy)
    assert_same(vec, ref, outs_v, outs_r)


def _knob_values(f):
    """Small valid values of one declared knob: its choices, true/false, or a few numbers of its range."""
    spec = declaration(f)
    if spec.choices is not None:
        return st.sampled_from(list(spec.choices))
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool}.get(f.type, str)
    if kind is bool:
        return st.booleans()
    low = spec.low if spec.low is not None else 0
    if kind is int:
        return st.integers(int(low), int(min(spec.high if spec.high is not None else low + 5, low + 5)))
    high = spec.high if spec.high is not None else low + 1.0
    return st.sampled_from(sorted({float(low), (low + high) / 2, float(high)}))


def registry_workload(cls):
    """Any registered workload at small knob values drawn from its own declarations, so that a new
    workload is compared between the engines without an edit here."""
    knobs = {f.name: _knob_values(f) for f in dataclasses.fields(cls) if f.name != "name" and declaration(f)}
    return st.builds(cls, **knobs)


workloads = st.one_of(*(registry_workload(cls) for _, cls in sorted(WORKLOADS.items())))


@settings(max_examples=40, deadline=None)
@given(workload=workloads, policy=st.one_of(st.sampled_from([STRICT, RELAXED, UNSAFE]), policies), kernel=kernels,
       seed=st.integers(0, 2**32 - 1), machine=machines)
def test_workloads_agree(workload, policy, kernel, seed, machine):
    if workload.threads > machine.n_cpus:
        workload = dataclasses.replace(workload, threads=machine.n_cpus)
    cpus = placement_cpus(machine, workload.threads, workload.placement)
    R = 4
    results = []
    for Engine in (VectorEngine, ScalarBatch):
        engine = Engine(machine, behaviour(kernel, policy), cpus, workload.pages, R, working_set=workload.working_sets(),
                        lazy=lazy_cpus(workload), on_cpu_share=workload.on_cpu_share)
        results.append(run_workload(engine, workload, rounds=5, seed=np.random.SeedSequence(seed)))
    vec, ref = results
    assert vec.metrics.keys() == ref.metrics.keys()
    for name in ref.metrics:
        np.testing.assert_array_equal(vec.metrics[name], ref.metrics[name], err_msg=name)
    for name in ref.counters:
        np.testing.assert_array_equal(vec.counters[name], ref.counters[name], err_msg=name)
    for label in ref.samples:
        np.testing.assert_array_equal(vec.samples[label], ref.samples[label])


# Per-replicate policies and cost sets: each replicate carries its own switches, and the run
# carries K cost sets over the same state ([K, R] cycle books); the vectorized engine must
# agree with K * R independent scalar engines, replicate (k, r) being replicate r's policy and
# draws priced by cost set k.
cost_scales = st.lists(st.floats(0.5, 2.0), min_size=6, max_size=6)


def scaled_costs(machine: Machine, scales) -> Machine:
    """The machine with its costs scaled (per field group), a stand-in for an ensemble member."""
    c = machine.costs
    dist = lambda d, k: dataclasses.replace(d, smt=d.smt * k, core=d.core * k, socket=d.socket * k)  # noqa: E731
    costs = dataclasses.replace(
        c, syscall_mprotect=c.syscall_mprotect * scales[0], invlpg=c.invlpg * scales[1],
        flush_full=c.flush_full * scales[1], ipi_send=c.ipi_send * scales[2], vm_exit=c.vm_exit * scales[2],
        ipi_deliver=dist(c.ipi_deliver, scales[3]), remote_line=dist(c.remote_line, scales[4]),
        tlb_gen_xfer=dist(c.tlb_gen_xfer, scales[5]), page_walk=c.page_walk * scales[5],
        dirty_walk=c.dirty_walk * scales[0], irq_entry_exit=c.irq_entry_exit * scales[3])
    return dataclasses.replace(machine, costs=costs)


@settings(max_examples=40, deadline=None)
@given(machine=machines, per_policy=st.lists(policies, min_size=5, max_size=5),
       scales=st.lists(cost_scales, min_size=1, max_size=6), kernel=kernels, threads=st.integers(1, 18),
       pages=st.integers(1, 5), placement=st.sampled_from(["smt", "core", "socket"]),
       seed=st.integers(0, 2**32 - 1), working_set=hot_sets, on_cpu=st.sampled_from([1.0, 0.6]))
def test_per_replicate_policy_and_cost_sets_agree(machine, per_policy, scales, kernel, threads, pages, placement,
                                                  seed, working_set, on_cpu):
    threads = min(threads, machine.n_cpus)
    working_set = hot(working_set, threads, seed)
    cpus = placement_cpus(machine, threads, placement)
    lazy = np.random.default_rng(seed).random(threads) < 0.3
    lazy[0] = False
    R, K = 5, len(scales)
    sets = [scaled_costs(machine, s) for s in scales]
    kw = dict(working_set=working_set, lazy=lazy, on_cpu_share=on_cpu)
    per_policy = [behaviour(kernel, p) for p in per_policy]
    vec = VectorEngine(sets, per_policy, cpus, pages, R, **kw)
    # replicate k * R + r of the reference: cost set k, replicate r's policy, ops and draws
    ref = ScalarBatch([m for m in sets for _ in range(R)], per_policy * K, cpus, pages, K * R, **kw)
    for kind, cpu, lo, n, arg, u in random_ops(np.random.default_rng(seed), R, vec.C, pages, 40, lazy=lazy):
        lat, flush, pending = vec.step(kind, cpu, lo, n, arg, u)
        tiled = [np.tile(x, K) for x in (kind, cpu, lo, n, arg)]
        lat_r, flush_r, pending_r = ref.step(*tiled, np.tile(u, (1, K)))
        assert lat.shape == (K, R)
        np.testing.assert_array_equal(lat, lat_r.reshape(K, R))
        np.testing.assert_array_equal(np.tile(flush, K), flush_r)
        np.testing.assert_array_equal(np.tile(pending, K), pending_r)
    for name, values in ref.counters.items():
        np.testing.assert_array_equal(np.tile(vec.counters[name], K), values, err_msg=name)
    np.testing.assert_array_equal(vec.stolen, ref.stolen.reshape(K, R))
    np.testing.assert_array_equal(vec.refill_initiator, ref.refill_initiator.reshape(K, R))
    np.testing.assert_array_equal(vec.refill_others, ref.refill_others.reshape(K, R))


def test_lane_machines_must_share_hardware_facts():
    with pytest.raises(ValueError, match="machine.pti"):
        VectorEngine([SMALL, dataclasses.replace(SMALL, pti=True)], behaviour(RFC_BASE, STRICT), placement_cpus(SMALL, 2, "core"), 1, 2)
