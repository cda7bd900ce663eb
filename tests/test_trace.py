"""The kernel's own account (study/measure/trace.py): parsing recorded tracepoint text, the
per-call rates, drop detection, the path without tracefs, and a small real trace when this
machine can record one.

The fixtures are real traces of this benchmark on a 2-vCPU KVM guest (Linux 6.18), two trials
each, cut from the tracefs instance before it was cleared: ``trace_uffd_wp.txt`` (uffd_wp, 64
pages: full and partial flushes both ways, the writer's write-protect faults and its
switch-in flushes after each fault) and ``trace_lazy_wake.txt`` (lazy_wake: the sleeper's
switch-in flushes, recorded under the outgoing task's pid).
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.cli import measure as measure_cli
from study.measure import trace
from study.measure.host import online_cpus
from study.measure.run import to_result
from study.results import metrics

FIXTURES = Path(__file__).parent / "fixtures"
UFFD = (FIXTURES / "trace_uffd_wp.txt").read_text()
LAZY = (FIXTURES / "trace_lazy_wake.txt").read_text()
needs_cc = pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang")), reason="no C compiler")
needs_2cpus = pytest.mark.skipif(len(online_cpus()) < 2, reason="the cells have 2 threads")
WHY_NOT = trace.availability()


def _zeros(**counts):
    return {kind: counts.get(kind, 0) for kind in trace.KINDS}


def test_fixture_counts_per_trial_and_role():
    first = trace.count_trial(UFFD, 0, [0, 1])
    assert first["marked"] and first["lost"] == 0 and first["other_events"] == 0
    assert first["roles"] == {"initiator": [0], "others": [1]}
    # thread 0: 12 write-protects and 24 unprotects (one per uffd-wp fault), each a local
    # flush and a send; 2 of the write-protects covered more than 33 pages (full flushes)
    assert first["counts"]["initiator"] == _zeros(local_partial=34, local_full=2, ipi_send=36)
    # the writer: a write-protect fault per resolved page, a full switch-in flush after each
    # (it slept in handle_userfault()), and the shootdowns that reached it while it ran
    assert first["counts"]["others"] == _zeros(remote_partial=10, remote_full=2, switch_full=24,
                                               fault_write_prot=24)
    second = trace.count_trial(UFFD, 1, [0, 1])
    assert second["marked"] and sum(second["counts"]["initiator"].values()) > 0
    # the windows do not overlap: no event is counted in both trials
    events = [e for e in map(trace.parse_line, UFFD.splitlines()) if e and trace.classify(e)]
    assert len(events) >= sum(sum(t["counts"][r].values()) for t in (first, second) for r in trace.ROLES)
    missing = trace.count_trial(UFFD, 7, [0, 1])
    assert not missing["marked"] and not any(missing["counts"]["initiator"].values())


def test_switch_in_flushes_carry_the_outgoing_tasks_pid():
    # the sleeper's switch back in is traced by switch_mm_irqs_off() before the switch
    # completes: the event's pid is the task leaving the CPU, never the benchmark's (the
    # instance's pid filter keeps it because the task switched to is the benchmark's)
    bench_pid = {e.pid for e in map(trace.parse_line, LAZY.splitlines()) if e and e.event == "tracing_mark_write"}
    switches = [e for e in map(trace.parse_line, LAZY.splitlines()) if e and trace.classify(e) in
                ("switch_full", "switch_none")]
    assert switches and all(e.pid not in bench_pid and e.cpu == 1 for e in switches)
    counts = trace.count_trial(LAZY, 0, [0, 1])["counts"]
    # one full flush per wake after thread 0's two mprotect calls, none for a quiet wake
    assert counts["others"] == _zeros(switch_full=20, switch_none=20)
    assert counts["initiator"] == _zeros(local_partial=40, ipi_send=40)


@pytest.mark.parametrize("body, kind", [
    ("pages:1 reason:remote shootdown (1)", "remote_partial"),
    ("pages:-1 reason:remote shootdown (1)", "remote_full"),
    ("pages:18446744073709551615 reason:remote shootdown (1)", "remote_full"),
    ("pages:0 reason:remote shootdown (1)", "remote_none"),
    ("pages:3 reason:local shootdown (2)", "local_partial"),
    ("pages:-1 reason:local MM shootdown (3)", "local_full"),
    ("pages:-1 reason:remote IPI send (4)", "ipi_send"),
    ("pages:-1 reason:flush on task switch (0)", "switch_full"),
    ("pages:0 reason:flush on task switch (0)", "switch_none"),
    ("pages:0 reason:remote wrong CPU (5)", "wrong_cpu"),
])
def test_flush_kinds(body, kind):
    assert trace.classify(trace.Event(1, 5, 1.0, "tlb_flush", body)) == kind


@pytest.mark.parametrize("code, kind", [(0x7, "fault_write_prot"), (0x6, "fault_write_notpresent"),
                                        (0x5, "fault_read_prot"), (0x4, "fault_read_notpresent"),
                                        (0x14, "fault_read_notpresent"), (0x15, "fault_read_prot")])
def test_fault_kinds_by_error_code(code, kind):
    body = f"address=0x7f0000001000 ip=0x401136 error_code=0x{code:x}"
    assert trace.classify(trace.Event(0, 5, 1.0, "page_fault_user", body)) == kind


def test_every_kind_and_role_is_a_declared_metric_with_a_unit():
    for name in trace.metric_names():
        assert metrics.unit(f"{name}.mean") == "events per flushing call", name
    for name, unit in (("trace_lost_events", "events"), ("ws_pass_extra_cycles", "cycles per pass"),
                       ("ws_lost_cycles_per_flush", "cycles per flush"), ("wake_extra_cycles", "cycles per wake")):
        assert metrics.unit(f"{name}.ci_low") == unit


def _trial(trial, account, labels=None):
    labels = labels or {"mprotect_ro": {"n": 10, "sum": 1000.0, "out": 0, "samples": [100] * 10},
                        "mprotect_rw": {"n": 9, "sum": 900.0, "out": 1, "samples": [100] * 10}}
    return {"trial": trial, "rounds": 10, "cycles": 10000, "spins": 0, "off_cycles": 0, "watchers": 0,
            "spinners": 0, "on_samples": 0, "on_hits": 0, "labels": labels, "tlb": [0, 4], "cal": [0, 0],
            "trace": account}


def _account(initiator=None, others=None, lost=0, marked=True, cpus=(0, 1)):
    return {"counts": {"initiator": _zeros(**(initiator or {})), "others": _zeros(**(others or {}))},
            "roles": trace.roles(cpus), "lost": lost, "marked": marked, "other_events": 0}


def test_rates_are_events_per_flushing_call_and_a_trial_with_drops_is_left_out():
    good = _account(initiator={"local_partial": 20, "ipi_send": 15}, others={"remote_partial": 5})
    dropped = _account(initiator={"local_partial": 20}, lost=3)
    unmarked = _account(initiator={"local_partial": 20}, marked=False)
    res = to_result([_trial(0, good), _trial(1, dropped), _trial(2, unmarked)], rounds=10, timer_overhead=0.0)
    # 20 flushing calls per trial (10 + 9 + 1 left out of the mean but still a call)
    np.testing.assert_allclose(res.metrics["trace_initiator_local_partial"], [1.0, np.nan, np.nan])
    np.testing.assert_allclose(res.metrics["trace_initiator_ipi_send"], [0.75, np.nan, np.nan])
    np.testing.assert_allclose(res.metrics["trace_others_remote_partial"], [0.25, np.nan, np.nan])
    np.testing.assert_allclose(res.metrics["trace_others_switch_full"], [0.0, np.nan, np.nan])
    np.testing.assert_allclose(res.metrics["trace_lost_events"], [0, 3, 0])
    assert set(trace.metric_names()) <= set(res.metrics)
    note = trace.cell_trace([_trial(0, good), _trial(1, dropped), _trial(2, unmarked)])
    assert note.flagged == [1, 2] and note.lost == 3 and "2 of 3 trials" in note.note()
    assert trace.cell_trace([_trial(0, good)]).note() == "ok"
    # one thread: the other role has no CPU, its rates are NaN
    alone = to_result([_trial(0, _account(initiator={"local_full": 20}, cpus=(0,)))], rounds=10, timer_overhead=0.0)
    assert alone.metrics["trace_initiator_local_full"][0] == 1.0
    assert np.isnan(alone.metrics["trace_others_remote_full"]).all()
    # without a trace nothing of it is there
    plain = to_result([dict(_trial(0, None))], rounds=10, timer_overhead=0.0)
    assert not any(name.startswith("trace_") for name in plain.metrics)


def test_refill_loss_per_received_flush():
    labels = {"mprotect_ro": {"n": 10, "sum": 1000.0, "out": 0, "samples": []},
              "mprotect_rw": {"n": 10, "sum": 1000.0, "out": 0, "samples": []},
              "ws_pass": {"n": 20, "sum": 20 * 1500.0, "out": 0, "samples": []},
              "ws_pass_quiet": {"n": 20, "sum": 20 * 500.0, "out": 0, "samples": []},
              "wake": {"n": 10, "sum": 10 * 9000.0, "out": 0, "samples": []},
              "wake_quiet": {"n": 10, "sum": 10 * 6000.0, "out": 0, "samples": []}}
    # 20 passes after a call lost 1000 cycles each; the other CPU took 10 shootdowns and 6
    # switch-in full flushes: 20000 / 16 per flush
    acc = _account(others={"remote_partial": 8, "remote_full": 2, "switch_full": 6, "switch_none": 3})
    res = to_result([_trial(0, acc, labels), _trial(1, _account(lost=1), labels)], rounds=10, timer_overhead=7.0)
    np.testing.assert_allclose(res.metrics["ws_pass_extra_cycles"], [1000.0, 1000.0])
    np.testing.assert_allclose(res.metrics["ws_lost_cycles_per_flush"], [1250.0, np.nan])
    np.testing.assert_allclose(res.metrics["wake_extra_cycles"], [3000.0, 3000.0])


def test_ring_buffer_stats_count_overruns_and_drops():
    # a real per_cpu/cpu0/stats of an instance whose 7 KiB buffer filled in two seconds
    stats = ("entries: 290\noverrun: 0\ncommit overrun: 0\nbytes: 8160\noldest event ts: 11562.195261\n"
             "now ts: 11564.201045\ndropped events: 21629\nread events: 0\n")
    assert trace._stats_lost(stats) == 21629
    assert trace._stats_lost(stats.replace("overrun: 0\n", "overrun: 5\n", 1)) == 21634
    assert trace._stats_lost("entries: 3\noverrun: 0\ncommit overrun: 0\ndropped events: 0\n") == 0
    # a "[LOST n EVENTS]" line inside the trial's window counts too
    lines = UFFD.splitlines()
    at = next(i for i, line in enumerate(lines) if "trial 0 begin" in line) + 3
    cut = "\n".join(lines[:at] + ["CPU:1 [LOST 17 EVENTS]"] + lines[at:])
    assert trace.count_trial(cut, 0, [0, 1])["lost"] == 17
    assert trace.count_trial(cut, 1, [0, 1])["lost"] == 0
    # the end marker lost with the buffer full: the trial is not marked
    no_end = "\n".join(line for line in lines if "trial 0 end" not in line)
    assert not trace.count_trial(no_end, 0, [0, 1])["marked"]


def test_cpumask_and_buffer_size():
    assert trace.cpumask_hex([0, 1]) == "3"
    assert trace.cpumask_hex([1, 35]) == "8,00000002"
    assert trace.buffer_kb(1) == trace.MIN_BUFFER_KB and trace.buffer_kb(10**9) == trace.MAX_BUFFER_KB
    assert trace.buffer_kb(3000) * 1024 >= 3000 * 16 * trace.BYTES_PER_EVENT


def test_without_tracefs_it_says_which_reason(tmp_path, monkeypatch):
    empty = trace.availability(tmp_path)
    assert not empty.usable and "not mounted" in empty.why and str(tmp_path) in empty.why
    (tmp_path / "instances").mkdir()
    (tmp_path / "events" / "tlb" / "tlb_flush").mkdir(parents=True)
    (tmp_path / "events" / "tlb" / "tlb_flush" / "format").write_text("name: tlb_flush\n")
    missing = trace.availability(tmp_path)
    assert not missing.usable and "exceptions:page_fault_user is missing" in missing.why
    monkeypatch.setattr(trace.os, "geteuid", lambda: 1000)
    assert trace.availability(tmp_path).why.startswith("not root")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@needs_cc
@needs_2cpus
def test_measure_without_tracefs_says_so_in_one_line_and_records_the_rest(cache, monkeypatch, capsys):
    monkeypatch.setenv(trace.ENV, str(cache / "no-tracefs"))
    out = cache / "out"
    grid = "[{workload:[mprotect_toggle],threads:[2],others:[busy],pages:[1]}]"
    assert measure_cli.main(["measure=tiny", f"measure.grids={grid}", "--out", str(out), "--host", "h"]) == 0
    printed = capsys.readouterr().out.splitlines()
    said = [line for line in printed if "tracing" in line]
    assert len(said) == 1 and said[0].startswith("tracing off: ") and "cycles and /proc/interrupts" in said[0]
    cells = pd.read_parquet(out / "measure" / "h" / "cells.parquet")
    assert not [c for c in cells.columns if c.startswith("trace_") or c == "measure_trace"]
    assert cells["lat_mprotect_ro.mean"].notna().all() and cells["tlb_per_call.mean"].notna().all()
    manifest = json.loads((out / "measure" / "h" / "manifest.json").read_text())
    assert manifest["trace"]["usable"] is False and "not mounted" in manifest["trace"]["why"]


@needs_cc
@needs_2cpus
@pytest.mark.skipif(not WHY_NOT.usable, reason=f"tracefs unusable here: {WHY_NOT.why}")
def test_a_real_trace_lines_up_with_the_trial_structure(cache):
    from study.engine.machine import Machine
    from study.measure import build
    from study.measure.grid import _cell
    from study.measure.host import topology
    from study.measure.run import probe, run_cell

    binary, _ = build.build()
    timer = float(probe(binary)["timer_overhead"])
    machine = Machine(name="h", sockets=1, cores_per_socket=2, smt=1)
    cpus = topology()
    one = _cell({"workload": "mprotect_toggle", "threads": 1, "pages": 64}, cpus, machine, "t")
    two = _cell({"workload": "refill", "pages": 1, "working_set": 16}, cpus, machine, "t")
    size = dict(trials=2, rounds=40, warmup=5, max_samples=10, seed=1, timer_overhead=timer, nice=-20)
    with trace.Session(Path(WHY_NOT.path), trace.buffer_kb(40)) as session:
        done = run_cell(binary, one, trace=session, **size)
        refill = run_cell(binary, two, trace=session, **size)
        inst = session.dir
    assert not inst.exists(), "the instance is removed"
    for m in (done, refill):
        assert all(t["trace"]["marked"] and t["trace"]["lost"] == 0 for t in m.raw)
    # one thread, 64 pages (past the 33-page ceiling): one full local flush per call, exactly
    res = done.result.metrics
    np.testing.assert_array_equal(res["trace_initiator_local_full"], [1.0, 1.0])
    np.testing.assert_array_equal(res["trace_initiator_local_partial"], [0.0, 0.0])
    assert np.isnan(res["trace_others_remote_full"]).all()
    # refill: every call's shootdown is received (the other thread waits in the mm), never
    # more than the CPU's TLB row counted over the (wider) interrupts window
    for t in refill.raw:
        received = sum(t["trace"]["counts"]["others"][k] for k in ("remote_partial", "remote_full", "remote_none"))
        assert t["trace"]["counts"]["initiator"]["local_partial"] == 80
        assert 0 < received <= t["tlb"][two.cpus[1]]
    assert np.isfinite(refill.result.metrics["ws_pass_extra_cycles"]).all()
    assert os.path.isdir(WHY_NOT.path)
