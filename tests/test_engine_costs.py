"""Costs that emerge from the hardware facts: working-set refills, the IPI send path by APIC
mode and shorthand, PTI's per-page INVPCID, and KVM's paravirtual remote flush.

Machines here have no jitter, so every latency is an exact sum of event costs; each
scenario runs on both engines (vectorized and scalar reference) and they must agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from study.engine import costs as K
from study.engine.machine import Machine, placement_cpus
from study.engine.ops import OP_ACCESS, OP_MPROTECT
from study.engine.reference import ScalarBatch
from study.engine.vector import VectorEngine
from study.policies import STRICT
from study.policies import RFC_BASE, behaviour

QUIET = Machine(name="quiet", sockets=1, cores_per_socket=8, smt=1, jitter_sigma=0.0, ipi_jitter_sigma=0.0,
                apic_mode="x2apic_phys", ipi_shorthand=False)
R = 3


def steps(machine, threads, ops, pages=40, working_set=0, placement="core", u_hook=None, on_cpu_share=1.0):
    """Run ``ops`` [(kind, cpu, lo, n, arg)] on both engines; return (per-step latencies, counters)."""
    cpus = placement_cpus(machine, threads, placement)
    out = []
    for Engine in (VectorEngine, ScalarBatch):
        engine = Engine(machine, behaviour(RFC_BASE, STRICT), cpus, pages, R, working_set=working_set, on_cpu_share=on_cpu_share)
        rng = np.random.default_rng(7)
        lats = []
        for i, (kind, cpu, lo, n, arg) in enumerate(ops):
            u = rng.integers(0, 1 << 16, (K.slot_count(threads), R)).astype(np.uint16)
            if u_hook is not None:
                u_hook(i, u)
            full = lambda v, dt=np.int64: np.full(R, v, dt)  # noqa: E731
            lat, _, _ = engine.step(full(kind, np.int8), full(cpu, np.intp), full(lo, np.intp), full(n),
                                    full(arg, np.int8), u)
            lats.append(lat.copy())
        out.append((lats, {k: v.copy() for k, v in engine.counters.items()}, engine))
    (lv, cv, ev), (lr, cr, er) = out
    for a, b in zip(lv, lr):
        np.testing.assert_array_equal(a, b)
    for k in cv:
        np.testing.assert_array_equal(cv[k], cr[k], err_msg=k)
    for book in ("stolen", "refill_initiator", "refill_others"):
        np.testing.assert_array_equal(getattr(ev, book), getattr(er, book), err_msg=book)
    return [int(x[0]) for x in lv], {k: int(v[0]) for k, v in cv.items()}, out[0][2]


# ------------------------------------------------------------------ working sets


def test_a_full_flush_costs_every_flushed_cpu_its_working_set():
    c = QUIET.costs
    ws = 100
    # mprotect(PROT_READ) of 40 pages > the 33-page ceiling: a full flush on both CPUs
    ops_full = [(OP_MPROTECT, 0, 0, 40, 0), (OP_ACCESS, 1, 0, 1, 0), (OP_ACCESS, 1, 1, 1, 0)]
    lat_full, cnt_full, eng_full = steps(QUIET, 2, ops_full, working_set=ws)
    # one page: a partial flush, the working sets survive
    ops_part = [(OP_MPROTECT, 0, 0, 1, 0), (OP_ACCESS, 1, 5, 1, 0), (OP_ACCESS, 1, 6, 1, 0)]
    lat_part, cnt_part, eng_part = steps(QUIET, 2, ops_part, working_set=ws)
    assert cnt_full["remote_full"] == 1 and cnt_part["remote_partial"] == 1
    # each thread refills its ws entries (one page walk each) after the flush, booked to it,
    # whether or not it touches the range again; its accesses pay only their own walks
    assert eng_full.refill_initiator[0] == ws * c.page_walk
    assert eng_full.refill_others[0] == ws * c.page_walk
    assert cnt_full["ws_refills"] == 2
    assert lat_full[1] == lat_full[2] == c.page_walk
    assert lat_part[1] == c.page_walk
    assert eng_part.refill_initiator[0] == eng_part.refill_others[0] == 0
    assert cnt_full["tlb_misses"] - cnt_part["tlb_misses"] == 2 * ws


def test_each_thread_refills_its_own_working_set():
    c = QUIET.costs
    # thread 0 keeps 10 entries hot, the other 300: the same full flush costs them that
    _, cnt, eng = steps(QUIET, 2, [(OP_MPROTECT, 0, 0, 40, 0)], working_set=[10, 300])
    assert eng.refill_initiator[0] == 10 * c.page_walk
    assert eng.refill_others[0] == 300 * c.page_walk
    assert cnt["tlb_misses"] == 310


def test_the_stlb_bounds_the_refill():
    small_stlb = dataclasses.replace(QUIET, stlb_entries=16)
    lat, cnt, eng = steps(small_stlb, 2, [(OP_MPROTECT, 0, 0, 40, 0), (OP_ACCESS, 1, 0, 1, 0)], working_set=500)
    assert eng.refill_others[0] == 16 * QUIET.costs.page_walk
    assert lat[1] == QUIET.costs.page_walk
    assert cnt["tlb_misses"] == 16 + 16 + 1


# ------------------------------------------------------------------ the IPI send path


def shootdown(machine, threads, placement="core"):
    lat, cnt, _ = steps(machine, threads, [(OP_MPROTECT, 0, 0, 1, 0)], placement=placement)
    return lat[0], cnt


def test_x2apic_phys_send_grows_with_targets():
    c = QUIET.costs
    lats, writes = [], []
    for threads in range(2, 9):
        lat, cnt = shootdown(QUIET, threads)
        assert cnt["ipis"] == threads - 1
        lats.append(lat)
        writes.append(cnt["ipi_writes"])
    assert writes == list(range(1, 8))          # one ICR write per target
    # each extra target: its is_lazy read, csd lock, llist_add and one ICR write, all before
    # the last IPI leaves
    per_target = 3 * c.remote_line.core + c.ipi_send
    assert np.diff(lats).tolist() == [per_target] * 6


def test_the_all_but_self_shorthand_is_one_write():
    c = QUIET.costs
    shorthand = dataclasses.replace(QUIET, ipi_shorthand=True)
    phys8, cnt8 = shootdown(QUIET, 8)
    short8, cnt_s8 = shootdown(shorthand, 8)            # the mm covers all 8 online CPUs
    assert cnt8["ipi_writes"] == 7 and cnt_s8["ipi_writes"] == 1
    assert phys8 - short8 == 6 * c.ipi_send
    # one CPU short of every online CPU: the mask is sent target by target
    short7, cnt_s7 = shootdown(shorthand, 7)
    assert cnt_s7["ipi_writes"] == 6 and short7 == shootdown(QUIET, 7)[0]
    # with the shorthand, the initiator's send no longer grows with the targets it covers
    assert short8 - shootdown(shorthand, 2)[0] == 6 * 3 * c.remote_line.core


def test_xapic_waits_for_the_icr_before_every_write():
    xapic = dataclasses.replace(QUIET, apic_mode="xapic")
    for threads in (2, 5):
        assert shootdown(xapic, threads)[0] - shootdown(QUIET, threads)[0] == (threads - 1) * QUIET.costs.icr_idle_wait


def test_x2apic_cluster_writes_once_per_cluster():
    # 2 sockets x 9 cores: APIC IDs 0-8 (cluster 0) and 16-24 (cluster 1)
    m = dataclasses.replace(QUIET, sockets=2, cores_per_socket=9, apic_mode="x2apic_cluster")
    for threads, placement, clusters in ((5, "core", 1), (9, "core", 1), (10, "core", 2), (4, "socket", 2),
                                         (7, "socket", 2)):
        _, cnt = shootdown(m, threads, placement)
        assert cnt["ipis"] == threads - 1
        assert cnt["ipi_writes"] == clusters, (threads, placement)
    phys = dataclasses.replace(m, apic_mode="x2apic_phys")
    assert shootdown(phys, 9)[0] - shootdown(m, 9)[0] == 7 * QUIET.costs.ipi_send


# ------------------------------------------------------------------ PTI


@pytest.mark.parametrize("pages", [1, 4])
def test_pti_doubles_the_per_page_work_of_a_partial_flush(pages):
    pti = dataclasses.replace(QUIET, pti=True)
    ops = [(OP_MPROTECT, 0, 0, pages, 0)]
    lat_off, off = steps(QUIET, 3, ops)[:2]
    lat_on, on = steps(pti, 3, ops)[:2]
    # INVLPG on the initiator and on both targets, and with PTI an INVPCID per page as well
    assert off["invlpg"] == on["invlpg"] == 3 * pages
    assert off["invpcid"] == 0 and on["invpcid"] == on["invlpg"]
    assert on["invlpg"] + on["invpcid"] == 2 * (off["invlpg"] + off["invpcid"])
    c = QUIET.costs
    # the syscall's entry/exit and each target's interrupt switch CR3 twice; the slowest
    # target's handler does INVPCID per page: both lie on the initiator's critical path
    assert lat_on[0] - lat_off[0] == 2 * c.cr3_switch + 2 * c.cr3_switch + pages * c.invpcid


def test_pti_full_flush_defers_the_user_asid_flush_to_the_return_to_user():
    pti = dataclasses.replace(QUIET, pti=True)
    ops = [(OP_MPROTECT, 0, 0, 40, 0)]
    lat_off, off = steps(QUIET, 1, ops)[:2]
    lat_on, on = steps(pti, 1, ops)[:2]
    assert on["local_full"] == off["local_full"] == 1 and on["invpcid"] == 0
    c = QUIET.costs
    assert lat_on[0] - lat_off[0] == 2 * c.cr3_switch + c.user_asid_flush


# ------------------------------------------------------------------ KVM


KVM = dataclasses.replace(QUIET, sockets=1, cores_per_socket=2, virt="kvm", pv_send_ipi=True, pv_tlb_flush=True,
                          vcpu_preempted_share=0.5)


def preempted(target_slot, yes):
    def hook(i, u):
        u[K.preempt_slot(2, target_slot)] = 0 if yes else (1 << 16) - 1
    return hook


def test_pv_flush_skips_a_preempted_vcpu_and_it_flushes_when_it_resumes():
    ws = 50
    # the target caches page 0, then the initiator write-protects it (a strict flush)
    ops = [(OP_ACCESS, 1, 0, 1, 0), (OP_MPROTECT, 0, 0, 1, 0), (OP_ACCESS, 1, 0, 1, 0)]
    lat_p, cnt_p, eng = steps(KVM, 2, ops, working_set=[0, ws], u_hook=preempted(1, True))
    lat_r, cnt_r, eng_r = steps(KVM, 2, ops, working_set=[0, ws], u_hook=preempted(1, False))
    assert eng_r.refill_others[0] == 0
    assert cnt_p["ipis"] == 0 and cnt_p["pv_flush_deferred"] == 1 and cnt_p["vm_exits"] == 0
    assert cnt_r["ipis"] == 1 and cnt_r["pv_flush_deferred"] == 0 and cnt_r["vm_exits"] == 1
    # no IPI to wait for: the initiator is done sooner
    assert lat_p[1] < lat_r[1]
    # the host flushed the whole vCPU on its return: its thread refills its working set; a
    # vCPU that took the IPI's partial flush keeps it.  Either walks for the page it reads.
    c = KVM.costs
    assert eng.refill_others[0] == ws * c.page_walk
    assert lat_p[2] == lat_r[2] == c.page_walk
    # its kernel's generation stayed behind (nothing ran flush_tlb_func there)
    assert eng.local_gen[1, 0] < eng.tlb_gen[0]


def test_without_pv_flush_an_ipi_to_a_preempted_vcpu_waits_for_the_host():
    no_pv = dataclasses.replace(KVM, pv_tlb_flush=False)
    ops = [(OP_MPROTECT, 0, 0, 1, 0)]
    lat_p, cnt_p = steps(no_pv, 2, ops, u_hook=preempted(1, True))[:2]
    lat_r, cnt_r = steps(no_pv, 2, ops, u_hook=preempted(1, False))[:2]
    assert cnt_p["ipis"] == cnt_r["ipis"] == 1
    assert lat_p[0] - lat_r[0] == KVM.costs.vcpu_wakeup_wait


def test_guest_icr_writes_are_vm_exits():
    # a single target: apic->send_IPI is not paravirtual, the ICR write traps
    lat_kvm, cnt = steps(dataclasses.replace(KVM, vcpu_preempted_share=0.0), 2, [(OP_MPROTECT, 0, 0, 1, 0)])[:2]
    assert cnt["vm_exits"] == 1


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("data, key", [
    ({"apic_mode": "sequential"}, "machine.apic_mode"),
    ({"virt": "xen"}, "machine.virt"),
    ({"pv_tlb_flush": True}, "machine.pv_tlb_flush"),
    ({"pv_send_ipi": True}, "machine.pv_send_ipi"),
    ({"vcpu_preempted_share": 0.1}, "machine.vcpu_preempted_share"),
    ({"virt": "kvm", "vcpu_preempted_share": 1.0}, "machine.vcpu_preempted_share"),
    ({"stlb_entries": 0}, "machine.stlb_entries"),
    ({"pti": "yes"}, "machine.pti"),
    ({"ipi_mode": "sequential"}, "machine.ipi_mode"),
])
def test_bad_machine_facts_name_their_key(data, key):
    from study.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        Machine.from_dict(data)
    assert key in str(err.value)


# ------------------------------------------------------------------ threads off their CPUs


def off_cpu(step_off, target_slot=1):
    """The target's preempt slot draw: inside the off-CPU window at step ``step_off``
    (draw 0; no vCPU preemption here), outside it at every other step."""
    def hook(i, u):
        u[K.preempt_slot(2, target_slot)] = 0 if i == step_off else (1 << 16) - 1
    return hook


@pytest.mark.parametrize("machine", [QUIET, dataclasses.replace(KVM, vcpu_preempted_share=0.0)],
                         ids=["bare", "kvm_pv"])
def test_a_thread_off_its_cpu_gets_no_ipi_and_flushes_when_it_runs_again(machine):
    ws = 50
    # the target caches page 0, the initiator write-protects it (strict), the target reads it
    ops = [(OP_ACCESS, 1, 0, 1, 0), (OP_MPROTECT, 0, 0, 1, 0), (OP_ACCESS, 1, 0, 1, 0)]
    lat_o, cnt_o, eng = steps(machine, 2, ops, working_set=[0, ws], u_hook=off_cpu(1), on_cpu_share=0.5)
    lat_r, cnt_r, eng_r = steps(machine, 2, ops, working_set=[0, ws], u_hook=off_cpu(-1), on_cpu_share=0.5)
    # should_flush_tlb(): another mm loaded there, no IPI, no shootdown
    assert cnt_o["ipis"] == 0 and cnt_o["shootdowns"] == 0 and cnt_o["off_cpu_skipped"] == 1
    assert cnt_r["ipis"] == 1 and cnt_r["shootdowns"] == 1 and cnt_r["off_cpu_skipped"] == 0
    assert lat_o[1] < lat_r[1]
    # its next access switches the mm back in first: switch_mm_irqs_off() with a full flush
    # (its generation was behind) and the tlb_gen line; then its thread refills its working set
    c = machine.costs
    assert lat_o[2] == c.context_switch + c.flush_full + c.tlb_gen_xfer.core + c.page_walk
    assert eng.refill_others[0] == ws * c.page_walk
    assert lat_r[2] == c.page_walk and eng_r.refill_others[0] == 0
    assert cnt_o["local_full"] == cnt_r["local_full"] + 1
    assert (eng.local_gen[1] == eng.tlb_gen).all() and not eng.off_cpu.any()


def test_a_thread_back_on_its_cpu_before_the_next_flush_caught_up_when_it_switched_in():
    # off at the first write-protect, back (drawn on its CPU) at the second flush: it switched
    # the mm in between (full flush, generation caught up to the first), then takes the IPI,
    # a partial flush by the generation rule
    ops = [(OP_MPROTECT, 0, 0, 1, 0), (OP_MPROTECT, 0, 0, 1, 1)]
    _, cnt, eng = steps(QUIET, 2, ops, u_hook=off_cpu(0), on_cpu_share=0.5)
    _, cnt_on, eng_on = steps(QUIET, 2, ops, u_hook=off_cpu(-1), on_cpu_share=0.5)
    assert cnt["off_cpu_skipped"] == 1 and cnt["ipis"] == 1 and cnt["remote_partial"] == 1
    assert cnt_on["ipis"] == 2 and cnt_on["remote_partial"] == 2
    c = QUIET.costs
    assert eng.stolen[0] - eng_on.stolen[0] == (c.context_switch + c.flush_full) - (
        c.irq_entry_exit + c.tlb_gen_xfer.core + c.invlpg)
    assert not eng.off_cpu.any() and (eng.local_gen[1] == eng.tlb_gen).all()


def test_on_cpu_share_one_draws_nothing_new():
    # the default changes no random stream: every draw outside the (empty) window
    ops = [(OP_ACCESS, 1, 0, 1, 0), (OP_MPROTECT, 0, 0, 1, 0), (OP_ACCESS, 1, 0, 1, 1)]
    a = steps(QUIET, 2, ops, u_hook=off_cpu(1), on_cpu_share=1.0)[:2]
    b = steps(QUIET, 2, ops, u_hook=off_cpu(-1))[:2]
    assert a == b and a[1]["ipis"] == 1


@pytest.mark.parametrize("loses", [False, True])
def test_a_vcpu_that_loses_its_tlb_on_the_ipi_refills_after_a_partial_shootdown(loses):
    """machine.irq_loses_tlb (a measured fact of some KVM guests): the handler still INVLPGs one
    page (a partial flush, as the kernel traces it), but the target's thread refills its whole
    hot set (tests/test_engine_equivalence.py draws the fact for both engines)."""
    from study.policies import MAINLINE
    from study.workloads import WORKLOADS, simulate_cell

    kvm = dataclasses.replace(Machine(), virt="kvm", irq_loses_tlb=loses)
    spec = WORKLOADS["mprotect_toggle"](threads=2, pages=1, working_set=64, initiator_working_set=0).validate(kvm)
    res = simulate_cell(kvm, spec, STRICT, kernel=MAINLINE, replicates=4, rounds=20,
                        seed=np.random.SeedSequence(5))
    rounds = res.rounds * res.replicates
    assert res.counters["remote_partial"].sum() == 2 * rounds and res.counters["remote_full"].sum() == 0
    # two shootdowns per round, each costing the other thread its 64 entries, or nothing
    assert res.counters["ws_refills"].sum() == (2 * rounds if loses else 0)
    assert (res.metrics["other_refill_cycles_per_round"] > 0).all() == loses
    with pytest.raises(Exception, match="irq_loses_tlb"):
        dataclasses.replace(Machine(), irq_loses_tlb=True).validate()
