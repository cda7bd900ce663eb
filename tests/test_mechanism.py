"""The mechanism check (study/calibration/mechanism.py): the engine's event counters as the
trace's event kinds, the table's arithmetic, and the kernel a host's release maps to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.calibration import mechanism
from study.engine.machine import Machine
from study.policies import MAINLINE, RFC_BASE, STRICT
from study.results.metrics import TRACE_KINDS, TRACE_ROLES, trace_metric
from study.workloads import WORKLOADS, simulate_cell
from study.workloads.result import CellResult

SIZE = dict(replicates=8, rounds=40, seed=np.random.SeedSequence(3))


def test_every_event_kind_is_predicted_or_said_to_be_unmodelled():
    said = set(mechanism.EVENTS) | set(mechanism.NOT_MODELLED)
    for role in TRACE_ROLES:
        for kind in TRACE_KINDS:
            if kind.startswith("fault_"):
                assert (mechanism.ALL, kind) in said, kind
            else:
                assert (role, kind) in said or (role, kind) in mechanism.NOT_MODELLED, (role, kind)
    for ev in mechanism.EVENTS.values():
        assert ev.modelled and ev.why


@pytest.mark.parametrize("release, kernel", [("6.18.0-1-cloud-amd64", MAINLINE), ("6.3.1", MAINLINE),
                                             ("5.19.0-rc4", RFC_BASE), ("5.15.0-91-generic", MAINLINE),
                                             ("weird", MAINLINE)])
def test_the_hosts_release_names_its_kernel_and_says_how(release, kernel):
    got, note = mechanism.kernel_for_release(release)
    assert got is kernel and release in note
    if release.startswith("5.15"):
        assert "which it is not" in note


def test_two_busy_threads_strict_one_page_one_send_and_one_partial_per_call():
    spec = WORKLOADS["mprotect_toggle"](threads=2, pages=1, working_set=0).validate(Machine())
    res = simulate_cell(Machine(), spec, STRICT, kernel=MAINLINE, **SIZE)
    rate = {key: mechanism.predicted_rate(res, spec, ev) for key, ev in mechanism.EVENTS.items()}
    # each mprotect flushes one page: the caller INVLPGs it, sends, the other CPU INVLPGs it
    assert rate[("initiator", "local_partial")] == pytest.approx(1.0)
    assert rate[("initiator", "ipi_send")] == pytest.approx(1.0)
    assert rate[("others", "remote_partial")] == pytest.approx(1.0)
    assert rate[("initiator", "local_full")] == rate[("others", "remote_full")] == 0.0
    assert rate[("others", "switch_full")] == 0.0


def test_a_sleeping_thread_is_sent_nothing_and_flushes_when_it_wakes():
    """A lazy CPU stays in mm_cpumask: flush_tlb_multi() is still called (reason 4) but no IPI
    goes out; the CPU's switch back in is a full flush (reason 0)."""
    spec = WORKLOADS["mprotect_toggle"](threads=2, pages=1, working_set=0, lazy_share=1.0, lazy_wake_rate=0.5).validate(Machine())
    res = simulate_cell(Machine(), spec, STRICT, kernel=MAINLINE, **SIZE)
    rate = {key: mechanism.predicted_rate(res, spec, ev) for key, ev in mechanism.EVENTS.items()}
    assert rate[("initiator", "ipi_send")] > 0.5
    assert res.counters["switch_full"].sum() > 0
    assert rate[("others", "switch_full")] > 0
    assert (res.counters["switch_full"] <= res.counters["local_full"]).all()


def _measurement(rates: dict[str, list[float]]):
    cells = pd.DataFrame({"cell_id": ["c1"], "measure_cell": ["m"]})
    rows = [dict(cell_id="c1", metric=metric, replicate=r, value=v)
            for metric, values in rates.items() for r, v in enumerate(values)]
    return cells, pd.DataFrame(rows)


def test_the_table_compares_per_call_rates_within_the_tolerance():
    spec = WORKLOADS["mprotect_toggle"](threads=2, pages=1, working_set=0).validate(Machine())
    res = CellResult(replicates=2, rounds=10)
    zeros = np.zeros(2, np.int64)
    res.counters = {name: zeros for name in ("local_partial", "local_full", "switch_full", "flush_multi",
                                              "remote_partial", "remote_full", "reuse_faults", "uffd_faults",
                                              "spurious_faults", "prot_faults")}
    # 2 flushing calls per round x 10 rounds = 20 calls: 20 partial flushes, 20 sends, 12 remote partial
    res.counters.update(local_partial=np.array([20, 20]), flush_multi=np.array([20, 20]),
                        remote_partial=np.array([12, 12]))
    cells, reps = _measurement({
        trace_metric("initiator", "local_partial"): [1.0, 1.0],
        trace_metric("initiator", "ipi_send"): [0.7, 0.75],           # 1.0 predicted: outside 20%
        trace_metric("others", "remote_partial"): [0.55, 0.65],        # 0.6 predicted
        trace_metric("initiator", "fault_write_prot"): [0.01, 0.03],  # 0 predicted: within 0.05
        trace_metric("others", "fault_write_prot"): [0.0, 0.0],
        trace_metric("others", "switch_none"): [0.2, 0.2],
    })
    table = mechanism.rows(cells, reps, {"m": res}, {"m": spec})
    by = {(r["role"], r["kind"]): r for r in table}
    assert by[("initiator", "local_partial")]["within"] and by[("initiator", "local_partial")]["predicted"] == 1.0
    assert not by[("initiator", "ipi_send")]["within"]
    assert by[("others", "remote_partial")]["predicted"] == pytest.approx(0.6)
    assert by[("others", "remote_partial")]["within"]
    fault = by[(mechanism.ALL, "fault_write_prot")]
    assert fault["measured"] == pytest.approx(0.02) and fault["within"]
    assert not by[("others", "switch_none")]["modelled"]
    summary = mechanism.summary(table)
    assert (summary["within"], summary["rates"]) == (3, 4)
    assert summary["line"] == ("mechanism: 3 of 4 event rates within 20% or 0.05 per call "
                               "(3 of 4 where the kernel or the engine saw the event)")
    assert len(summary["misses"]) == 1 and "ipi_send" in summary["misses"][0]


def test_no_trace_no_rows():
    spec = WORKLOADS["mprotect_toggle"](threads=1, pages=1).validate(Machine())
    res = simulate_cell(Machine(), spec, STRICT, kernel=MAINLINE, replicates=2, rounds=4, seed=np.random.SeedSequence(1))
    cells, reps = _measurement({"lat_mprotect_ro": [1.0, 2.0]})
    assert mechanism.rows(cells, reps, {"m": res}, {"m": spec}) == []
    assert mechanism.summary([])["line"].startswith("mechanism: no traced cells")
