"""``python -m study measure`` and ``calibrate --from``: structural checks only, never timings.

The benchmark is compiled and run for real (a C compiler and 2 CPUs are needed, as on the
development and CI machines); every number it produces is only checked for shape.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from study.cli import analyze as analyze_cli
from study.cli import calibrate as calibrate_cli
from study.cli import measure as measure_cli
from study.cli import report as report_cli
from study.config import compose
from study.measure import build
from study.measure.host import HostCpu, online_cpus, placement_host_cpus
from study.errors import ConfigError

HOST = "testhost"
needs_cc = pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang")), reason="no C compiler")
needs_2cpus = pytest.mark.skipif(len(online_cpus()) < 2, reason="the tiny grid has 2-thread cells")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("measure")
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "STUDY_CONFIG_DIR")}
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")       # a fresh compile, outside the repository
    os.environ["STUDY_CONFIG_DIR"] = str(root / "userconf")  # the fitted machine goes here
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def measured(env):
    out = env / "out"
    assert measure_cli.main(["measure=tiny", "--out", str(out), "--host", HOST]) == 0
    return out / "measure" / HOST


@needs_cc
@needs_2cpus
def test_tiny_grid_compiles_runs_and_writes_tables(measured, env):
    assert list((env / "cache" / "study" / "bench").glob("bench-*")), "compiled into the cache, not the repo"
    cells = pd.read_parquet(measured / "cells.parquet")
    names = list(cells["measure_cell"])
    assert names == ["mprotect_toggle/t1/p1/d1", "mprotect_toggle/t1/p64/d1",
                     "mprotect_toggle/t2-core-busy/p1/d1", "mprotect_toggle/t2-core-idle/p1/d1"]
    for col in ("lat_mprotect_ro.mean", "lat_mprotect_ro.ci_low", "lat_mprotect_ro.median", "lat_mprotect_ro.p99",
                "tlb_per_call.mean", "cal_per_call.mean", "total_cycles_per_round.mean"):
        assert col in cells and cells[col].notna().all(), col
    assert (cells["replicates"] == 2).all() and (cells["policy"] == "strict").all()
    # one thread: nobody to shoot down; the counts are whole-host, so only the 1-thread cells are exact
    assert (cells.loc[cells["workload.threads"] == 1, "count.tlb_received"] >= 0).all()
    reps = pd.read_parquet(measured / "replicates.parquet")
    assert set(reps["cell_id"]) == set(cells["cell_id"])
    calls = pd.read_parquet(measured / "calls.parquet")
    assert {"mprotect_ro", "mprotect_rw", "write"} <= set(calls["label"])
    manifest = json.loads((measured / "manifest.json").read_text())
    for key in ("kernel_release", "cpu_model", "cpu_flags", "cpus", "pti", "hypervisor", "x2apic", "tsc_hz"):
        assert key in manifest["host"], key
    assert manifest["host"]["tsc_hz"] > 0
    assert len(manifest["loadavg_before"]) == 3 and len(manifest["loadavg_after"]) == 3
    assert manifest["userfaultfd"]["available"] in (True, False)
    assert manifest["spin_rate_per_cycle"] > 0
    # the other threads' on-CPU share at the flushes (heartbeat), per trial: a share where a
    # busy thread watched, NaN where none did (1 thread, idle sleepers)
    busy = cells["measure_cell"] == "mprotect_toggle/t2-core-busy/p1/d1"
    for col in ("other_on_cpu_share.mean", "other_on_cpu_time_share.mean"):
        assert cells.loc[busy, col].between(0.0, 1.0).all(), col
        assert cells.loc[~busy, col].isna().all(), col
    # the kernel's own account when this machine can trace (root, tracefs), else why not
    facts = manifest["trace"]
    assert facts["usable"] in (True, False) and (facts["usable"] or facts["why"])
    if facts["usable"]:
        assert facts["buffer_size_kb"] > 0 and facts["lost_events"] >= 0 and "set_event_pid" in facts["filter"]
        assert set(cells["measure_trace"]) <= {"ok"} | {n for n in cells["measure_trace"] if "lost" in n}
        clean = cells["measure_trace"] == "ok"
        # every flushing call flushes on thread 0's CPU: a partial (1 page) or full (64) local flush
        local = cells["trace_initiator_local_partial.mean"] + cells["trace_initiator_local_full.mean"]
        assert (local[clean] == 1.0).all()
        one = cells["workload.threads"] == 1
        assert cells.loc[one, "trace_others_remote_partial.mean"].isna().all()
        assert not list(Path(facts["tracefs"], "instances").glob(facts["instance"])), "the instance is removed"
    else:
        assert not [c for c in cells.columns if c.startswith("trace_")]


@needs_cc
@needs_2cpus
def test_measurement_alone_analyzes_and_reports_before_calibration(measured, env):
    out = env / "alone"
    assert analyze_cli.main(["--out", str(out), "--measure", str(measured)]) == 0
    cells = pd.read_csv(out / "analysis" / "this_machine_cells.csv")
    assert set(cells["label"]) == {"mprotect_ro", "mprotect_rw"} and cells["mean"].notna().all()
    assert not (out / "analysis" / "this_machine.csv").exists()   # nothing predicted yet
    assert report_cli.main(["--out", str(out)]) == 0
    html = (out / "report" / "report.html").read_text()
    section = html[html.find("This machine</h2>"):]
    assert "not calibrated yet" in section and "mprotect_toggle/t2-core-busy/p1/d1" in section


@needs_cc
@needs_2cpus
def test_calibrate_from_writes_a_named_machine_and_the_report_shows_this_machine(measured, env, capsys):
    assert calibrate_cli.main(["--from", str(measured)]) == 0
    printed = capsys.readouterr().out
    assert "held-out" in printed and "singular value" in printed
    path = env / "userconf" / "machine" / f"{HOST}.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["calibrated"] is True and str(measured) in data["source"]
    assert data["name"] == HOST and data["sockets"] >= 1
    # usable by name in every command
    assert compose([f"machine={HOST}"]).machine.name == HOST
    rows = pd.read_csv(measured / "this_machine.csv")
    assert set(rows["role"]) == {"fit", "held-out"}
    assert {"measured", "predicted", "error", "shootdowns_measured", "shootdowns_model", "relaxed_change",
            "relaxed_change_fit_sd"} <= set(rows)
    assert rows["relaxed_change_fit_sd"].notna().all()
    # the kernel's own account against the engine's, event kind by event kind
    assert "strict baseline: kernel" in printed and "mechanism:" in printed
    mech = pd.read_csv(measured / "mechanism.csv")
    traced = json.loads((measured / "manifest.json").read_text())["trace"]["usable"]
    if traced:
        seen = mech[mech["modelled"] & ((mech["measured"] > 0.01) | (mech["predicted"] > 0.01))]
        assert len(seen) and seen["within"].mean() >= 0.5, seen
        one = mech[(mech["cell"] == "mprotect_toggle/t2-core-busy/p1/d1") & (mech["kind"] == "remote_partial")
                   & (mech["role"] == "others")]
        # the busy thread's shootdowns follow its on-CPU share (a busy CI machine moves both)
        assert len(one) == 1 and one["predicted"].iloc[0] > 0
    else:
        assert mech.empty

    from synthetic import make_sweep

    # beside a sweep's analysis (a small one: the section reads the measurement only)
    out = env / "report"
    make_sweep(out, name="synthetic", grid="small", replicates=4, samples=10)
    assert analyze_cli.main(["--sweep", "synthetic", "--out", str(out), "--measure", str(measured)]) == 0
    assert (out / "analysis" / "this_machine_cells.csv").is_file()
    assert report_cli.main(["--out", str(out)]) == 0
    html = (out / "report" / "report.html").read_text()
    section = html[html.find("This machine</h2>"):]
    assert "held-out" in section and "Shootdowns per flushing call" in section and "relaxed" in section
    assert "mechanism:" in section


def _run(args, env_extra, cwd):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), **env_extra)
    return subprocess.run([sys.executable, "-m", "study", "measure", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_missing_compiler_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    for extra in ({"CC": "/nonexistent/cc"}, {"CC": "", "PATH": str(tmp_path)}):
        res = _run(["measure=tiny", "--out", str(out)], dict(extra, XDG_CACHE_HOME=str(tmp_path / "c")),
                   os.getcwd())
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: CC:") and "compiler" in lines[0]
        assert not out.exists()


@pytest.mark.parametrize("grid, key", [
    ("[{workload:[mprotect_toggle],threads:[1000]}]", "threads"),
    ("[{workload:[mprotect_toggle],threads:[2],placement:[socket]}]", "placement"),
])
def test_impossible_cells_are_one_line_and_write_nothing(tmp_path, grid, key):
    if key == "placement" and len({c for c in online_cpus()}) >= 2 and _sockets() >= 2:
        pytest.skip("this host has two sockets")
    out = tmp_path / "out"
    res = _run(["measure=tiny", f"measure.grids={grid}", "--out", str(out)], {}, os.getcwd())
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], lines
    assert not out.exists()


def _sockets() -> int:
    from study.measure.host import topology
    return len({c.socket for c in topology()})


def test_placements_follow_the_engine_order_on_a_two_socket_smt_host():
    cpus = [HostCpu(cpu, s, c, t) for cpu, (s, c, t) in enumerate(
        [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0), (0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 1)])]
    assert placement_host_cpus(cpus, 8, "smt") == [0, 4, 1, 5, 2, 6, 3, 7]
    assert placement_host_cpus(cpus, 4, "core") == [0, 1, 2, 3]
    assert placement_host_cpus(cpus, 4, "socket") == [0, 2, 1, 3]
    one_socket = [HostCpu(0, 0, 0, 0), HostCpu(1, 0, 1, 0)]
    with pytest.raises(ConfigError, match="possible: core"):
        placement_host_cpus(one_socket, 2, "smt")


def test_compiler_from_cc_must_exist(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(ConfigError, match=r"\$CC"):
        build.find_compiler()


def test_calibrate_from_a_directory_without_a_measurement_is_one_line(tmp_path, capsys):
    assert calibrate_cli.main(["--from", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --from:") and "python -m study measure" in err[0]


def test_on_cpu_share_per_trial_comes_from_the_heartbeat_samples():
    from study.measure.run import to_result
    trial = {"trial": 0, "rounds": 10, "cycles": 1000, "spins": 10, "off_cycles": 250, "watchers": 1, "spinners": 1,
             "on_samples": 20, "on_hits": 5, "labels": {"mprotect_ro": {"n": 10, "sum": 1000.0, "out": 0,
                                                                         "samples": [100] * 10}},
             "tlb": [0, 7], "cal": [0, 0]}
    res = to_result([trial, dict(trial, on_hits=20, off_cycles=0)], rounds=10, timer_overhead=0.0, spin_rate=0.02)
    np.testing.assert_allclose(res.metrics["other_on_cpu_share"], [0.25, 1.0])
    np.testing.assert_allclose(res.metrics["other_on_cpu_time_share"], [0.75, 1.0])
    np.testing.assert_allclose(res.metrics["other_on_cpu_share_spins"], [0.5, 0.5])
    # the TLB row is a separate, measured column
    np.testing.assert_allclose(res.metrics["tlb_per_call"], [0.7, 0.7])
    alone = to_result([dict(trial, watchers=0, spinners=0, on_samples=0, on_hits=0)], rounds=10, timer_overhead=0.0)
    assert np.isnan(alone.metrics["other_on_cpu_share"]).all()
    # uffd_wp's writers watch but do not spin: no spin-rate estimate
    writers = to_result([dict(trial, spinners=0)], rounds=10, timer_overhead=0.0, spin_rate=0.02)
    assert np.isnan(writers.metrics["other_on_cpu_share_spins"]).all()


def test_calibration_predicts_shootdowns_from_the_on_cpu_share_never_from_the_tlb_row():
    import dataclasses

    from study.calibration.host import Target, on_cpu_knob, simulate_targets
    from study.engine.machine import Machine
    from study.policies import STRICT
    from study.workloads.mprotect_toggle import MprotectToggle

    kvm = Machine(name="g", sockets=1, cores_per_socket=2, smt=1, virt="kvm", pv_send_ipi=True, pv_tlb_flush=True,
                  vcpu_preempted_share=0.02)
    assert on_cpu_knob(0.49, kvm) == pytest.approx(0.5)
    assert on_cpu_knob(float("nan"), kvm) == 1.0 and on_cpu_knob(0.995, kvm) == 1.0
    specs = {"c": MprotectToggle(threads=2, pages=1)}
    size = dict(replicates=8, rounds=40, seed=3)

    def shoot(on_cpu, tlb_share):
        t = Target("c", "mprotect_ro", "fit", 5000.0, 4000.0, 6000.0, 5000.0, tlb_share, on_cpu)
        return simulate_targets(kvm, specs, [t], STRICT, **size)[1][0]

    # the measured TLB row does not move the prediction; the measured on-CPU share does
    assert shoot(0.3, 0.0) == shoot(0.3, 0.9)
    low, high = shoot(0.1, 0.5), shoot(0.9, 0.5)
    assert low < high and 0.0 < low and high <= 1.0
    # always on the CPU (the engine alone, no measured share) shoots down at every call but
    # the preempted vCPUs' (vcpu_preempted_share)
    t = Target("c", "mprotect_ro", "fit", 5000.0, 4000.0, 6000.0, 5000.0, 0.2, 0.3)
    alone = simulate_targets(kvm, specs, [t], STRICT, measured_on_cpu=False, **size)[1][0]
    assert alone > high and dataclasses.replace(specs["c"]).on_cpu_share == 1.0


def _grid_cells(grid):
    from study.engine.machine import Machine
    from study.measure.grid import expand, measure_config

    data = dict(yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "conf", "measure", "tiny.yaml"))))
    data["grids"] = grid
    cpus = [HostCpu(0, 0, 0, 0), HostCpu(1, 0, 1, 0)]
    return expand(measure_config(data), cpus, Machine(name="h", sockets=1, cores_per_socket=2, smt=1))


def test_host_loops_are_named_like_the_grid_and_map_onto_the_engine_workload():
    cells = _grid_cells([{"workload": ["refill"], "pages": [1, 64], "working_set": [16, 4096], "rounds": [100]},
                         {"workload": ["lazy_wake"], "working_set": [64]},
                         {"workload": ["mprotect_vma"], "threads": [1, 2], "vma": [1, 9]}])
    by_name = {c.name: c for c in cells}
    assert list(by_name) == ["refill/t2-core-busy/p1/n16", "refill/t2-core-busy/p1/n4096",
                             "refill/t2-core-busy/p64/n16", "refill/t2-core-busy/p64/n4096",
                             "lazy_wake/t2-core-idle/p1/n64", "mprotect_vma/t1/p1/v1", "mprotect_vma/t1/p1/v9",
                             "mprotect_vma/t2-core-busy/p1/v1", "mprotect_vma/t2-core-busy/p1/v9"]
    refill = by_name["refill/t2-core-busy/p64/n4096"]
    assert refill.workload.name == "mprotect_toggle" and refill.workload.working_set == 4096
    assert refill.workload.pages == 64 and refill.rounds == 100 and not refill.modelled
    assert "workload=refill" in refill.bench_args(2, 100, 1, 1, 1) and "ws=4096" in refill.bench_args(2, 100, 1, 1, 1)
    lazy = by_name["lazy_wake/t2-core-idle/p1/n64"]
    assert lazy.others == "idle" and lazy.workload.lazy_share == 1.0 and lazy.workload.lazy_wake_rate == 1.0
    split = by_name["mprotect_vma/t1/p1/v9"]
    assert split.knobs == (("vma", 9),) and split.workload.pages == 1 and split.rounds is None
    # the engine's own workloads stay as they were: modelled, the loop is the workload
    plain = _grid_cells([{"workload": ["mprotect_toggle"], "pages": [1]}])[0]
    assert plain.modelled and plain.loop == "mprotect_toggle" and plain.knobs == () and plain.rounds is None


@pytest.mark.parametrize("grid, key", [
    ({"workload": ["mprotect_toggle"], "working_set": [16]}, "working_set"),
    ({"workload": ["madv_free"], "vma": [4]}, "vma"),
    ({"workload": ["refill"], "threads": [1]}, "threads"),
    ({"workload": ["lazy_wake"], "others": ["busy"]}, "others"),
    ({"workload": ["refill"], "working_set": [0]}, "working_set"),
    ({"workload": ["mprotect_vma"], "pages": [4], "vma": [2]}, "vma"),
    ({"workload": ["refill"], "dirty": [0.0]}, "dirty"),
    ({"workload": ["mprotect_toggle"], "rounds": [0]}, "rounds"),
])
def test_host_loop_settings_out_of_place_are_config_errors(grid, key):
    with pytest.raises(ConfigError) as err:
        _grid_cells([grid])
    assert err.value.key.endswith(key)


def test_calibration_leaves_out_the_cells_the_engine_does_not_model(tmp_path):
    from study.calibration.host import targets
    from study.measure.store import Measurement

    stats = {f"lat_mprotect_ro.{s}": [5000.0, 6000.0] for s in ("mean", "ci_low", "ci_high", "median")}
    cells = pd.DataFrame({"measure_cell": ["mprotect_toggle/t1/p1/d1", "mprotect_vma/t1/p1/v9"],
                          "tlb_per_call.mean": [0.0, 0.0], **stats})
    manifest = {"cells": [{"name": "mprotect_toggle/t1/p1/d1", "modelled": True},
                          {"name": "mprotect_vma/t1/p1/v9", "modelled": False}]}
    found = targets(Measurement(tmp_path, cells, pd.DataFrame(), manifest), ["*"])
    assert [(t.cell, t.role) for t in found] == [("mprotect_toggle/t1/p1/d1", "fit")]


@needs_cc
@needs_2cpus
def test_host_loops_mapping_onto_one_workload_are_distinct_cells(env, tmp_path):
    # mprotect_vma with vma 1 and 3 and mprotect_toggle itself are one engine mprotect_toggle:
    # the table set still has three cells, and reads back whole (analyze checks it)
    from study.results import tables

    out = tmp_path / "out"
    grid = ("[{workload:[mprotect_toggle],pages:[1]},{workload:[mprotect_vma],vma:[1,3]},"
            "{workload:[refill],working_set:[16],rounds:[20]},{workload:[lazy_wake],working_set:[16],rounds:[10]}]")
    assert measure_cli.main(["measure=tiny", f"measure.grids={grid}", "--out", str(out), "--host", HOST]) == 0
    found = tables.read(out / "measure" / HOST, "--measure", "rerun")
    cells = found.cells.set_index("measure_cell")
    assert list(cells.index) == ["mprotect_toggle/t1/p1/d1", "mprotect_vma/t1/p1/v1", "mprotect_vma/t1/p1/v3",
                                 "refill/t2-core-busy/p1/n16", "lazy_wake/t2-core-idle/p1/n16"]
    assert cells["cell_id"].is_unique and set(cells["workload"]) == {"mprotect_toggle"}
    assert cells.loc["refill/t2-core-busy/p1/n16", "rounds"] == 20
    for name in ("refill/t2-core-busy/p1/n16", "lazy_wake/t2-core-idle/p1/n16"):
        for metric in ("lat_ws_pass.mean", "lat_ws_pass_quiet.mean", "ws_pass_extra_cycles.mean"):
            assert np.isfinite(cells.loc[name, metric]), (name, metric)
    assert np.isfinite(cells.loc["lazy_wake/t2-core-idle/p1/n16", "wake_extra_cycles.mean"])
    entries = {c["name"]: c for c in found.manifest["cells"]}
    assert entries["mprotect_vma/t1/p1/v3"]["knobs"] == {"vma": 3} and not entries["mprotect_vma/t1/p1/v3"]["modelled"]
    assert entries["mprotect_toggle/t1/p1/d1"]["modelled"] and entries["mprotect_toggle/t1/p1/d1"]["loop"] == "mprotect_toggle"
    assert set(found.manifest["host_loops"]) == {"mprotect_vma", "refill", "lazy_wake"}
    assert analyze_cli.main(["--out", str(tmp_path / "alone"), "--measure", str(out / "measure" / HOST)]) == 0
