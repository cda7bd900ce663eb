"""The safety checker over random interleavings: strict and relaxed never let a write land
on a read-only (or clean) PTE, on any kernel, under either real dirty-bit-walk fact; the
deliberately wrong policy does, and so does patch 12 on a machine whose walk completes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from study.policies.kernel import KERNELS
from study.engine.machine import Machine, placement_cpus
from study.engine.vector import VectorEngine
from study.policies import RELAXED, STRICT, UNSAFE, Policy
from study.policies import RFC_BASE, behaviour

from fuzz import run_random

MACHINE = Machine(name="t", sockets=2, cores_per_socket=2, smt=2)
INTERLEAVINGS = 40_000   # independent replicates, each its own random interleaving
STEPS = 40


def violations(policy, machine=MACHINE, kernel=None, seed=7, on_cpu_share=1.0):
    cpus = placement_cpus(machine, 4, "socket")
    engine = VectorEngine(machine, behaviour(kernel or RFC_BASE, policy), cpus, 3, INTERLEAVINGS, working_set=4,
                          on_cpu_share=on_cpu_share)
    run_random(engine, np.random.default_rng(seed), STEPS)
    return engine.counters


@pytest.mark.parametrize("kernel", sorted(KERNELS), ids=str)
@pytest.mark.parametrize("walk", ["cet", "pre_cet"])
@pytest.mark.parametrize("policy", [STRICT, RELAXED], ids=lambda p: p.name)
def test_no_violations(policy, walk, kernel):
    counters = violations(policy, dataclasses.replace(MACHINE, dirty_walk=walk), KERNELS[kernel])
    assert counters["violations"].sum() == 0
    # the interleavings did exercise the dangerous paths
    assert counters["spurious_faults"].sum() > 0 or policy is STRICT
    assert counters["prot_faults"].sum() > 1000 and counters["dirty_walks"].sum() > 1000
    # the RFC's base leaves RW to the fault handler (wp_page_reuse); mainline maps writable
    if kernel == "rfc_base":
        assert counters["reuse_faults"].sum() > 1000


@pytest.mark.parametrize("kernel", sorted(KERNELS), ids=str)
def test_unsafe_policy_is_caught(kernel):
    assert violations(UNSAFE, kernel=KERNELS[kernel])["violations"].sum() > 0


@pytest.mark.parametrize("kernel", sorted(KERNELS), ids=str)
def test_no_flush_on_clean_wrprotect_needs_the_dirty_walk_to_fault(kernel):
    # On a machine whose dirty-bit walk lets the write land on a read-only PTE, skipping
    # the flush on a clean RW->RO (patch 12) is wrong: the checker must see it, and it is
    # patch 12 that needs the fact (strict, or relaxed without patch 12, stays safe).
    machine = dataclasses.replace(MACHINE, dirty_walk="completes")
    only12 = Policy("only12", no_flush_clean_wrprotect=True)
    assert violations(only12, machine, KERNELS[kernel])["violations"].sum() > 0
    assert violations(RELAXED, machine, KERNELS[kernel])["violations"].sum() > 0
    assert violations(STRICT, machine, KERNELS[kernel])["violations"].sum() == 0
    without12 = dataclasses.replace(RELAXED, no_flush_clean_wrprotect=False)
    assert violations(without12, machine, KERNELS[kernel])["violations"].sum() == 0


# Every machine fact of the send path and the guest: PTI, the APIC modes with the shorthand,
# and a KVM guest whose preempted vCPUs are skipped by the PV remote flush (flushed by the
# host when they run again) must stay safe under strict and relaxed.
FACTS = {
    "pti_cluster": dict(pti=True, apic_mode="x2apic_cluster"),
    "xapic_shorthand": dict(sockets=1, cores_per_socket=4, smt=1, apic_mode="xapic", ipi_shorthand=True),
    "kvm_pv_flush": dict(virt="kvm", pv_send_ipi=True, pv_tlb_flush=True, vcpu_preempted_share=0.5),
}


@pytest.mark.parametrize("facts", list(FACTS.values()), ids=list(FACTS))
@pytest.mark.parametrize("policy", [STRICT, RELAXED], ids=lambda p: p.name)
def test_no_violations_under_every_machine_fact(policy, facts):
    counters = violations(policy, dataclasses.replace(MACHINE, **facts))
    assert counters["violations"].sum() == 0
    assert counters["prot_faults"].sum() > 1000
    if facts.get("pv_tlb_flush"):
        assert counters["pv_flush_deferred"].sum() > 1000   # the skipped-IPI path was exercised


@pytest.mark.parametrize("policy", [STRICT, RELAXED], ids=lambda p: p.name)
def test_no_violations_with_threads_off_their_cpus(policy):
    # A thread off its CPU misses the shootdown (should_flush_tlb()) and keeps stale entries
    # until switch_mm_irqs_off() flushes them on its return: never a write through them.
    kvm = dataclasses.replace(MACHINE, **FACTS["kvm_pv_flush"])
    for machine in (MACHINE, kvm):
        counters = violations(policy, machine, on_cpu_share=0.4)
        assert counters["violations"].sum() == 0
        assert counters["off_cpu_skipped"].sum() > 1000   # the skipped-IPI path was exercised
        assert counters["prot_faults"].sum() > 1000


def test_unsafe_policy_is_caught_with_threads_off_their_cpus():
    assert violations(UNSAFE, on_cpu_share=0.4)["violations"].sum() > 0
