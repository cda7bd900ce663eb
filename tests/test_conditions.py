"""The conditions of a verdict: which knobs a setting is scanned along, where a scan says the verdict
flips, and that the flip it reports is where the engine's own runs put it."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from study.analysis import conditions
from study.config import config_dir
from study.config.presets import load_machine
from study.policies import RELAXED, STRICT
from study.policies.kernel import MAINLINE, RFC_BASE
from study.runner.conditions import Scan, ScanRun, run_scan
from study.workloads import WORKLOADS, simulate_lanes
from study.workloads.mprotect_toggle import MprotectToggle
from study.workloads.uffd_wp import UffdWp

HASWELL = load_machine(config_dir() / "machine" / "haswell_2s.yaml")


def knobs(spec, kernel=RFC_BASE):
    return {cond.knob: values for cond, values in spec.conditions(HASWELL, kernel)}


# ------------------------------------------------------------------ what a setting is scanned along


def test_every_workload_declares_its_conditions_on_its_own_knobs():
    for name, cls in WORKLOADS.items():
        assert cls.CONDITIONS, name
        assert all(c.knob in cls.knobs() for c in cls.CONDITIONS), name


def test_the_scan_includes_the_settings_own_value_and_the_machines_ceiling():
    scanned = knobs(MprotectToggle(threads=4, working_set=100, pages=5))
    assert 100 in scanned["working_set"] and list(scanned["working_set"]) == sorted(scanned["working_set"])
    ceiling = HASWELL.tlb_single_page_flush_ceiling
    assert {5, ceiling, ceiling + 1} <= set(scanned["pages"])


def test_a_role_without_a_thread_is_not_scanned():
    assert "working_set" not in knobs(MprotectToggle(threads=1))
    assert "sleeper_working_set" not in knobs(MprotectToggle(threads=4))
    assert "sleeper_working_set" in knobs(MprotectToggle(threads=4, lazy_share=0.5))


def test_the_hint_is_scanned_only_on_a_kernel_that_has_it():
    assert knobs(UffdWp(threads=4))["write_likely"] == (False, True)
    assert "write_likely" not in knobs(UffdWp(threads=4), MAINLINE)


def test_values_the_configuration_refuses_are_left_out():
    small = dataclasses.replace(HASWELL, tlb_single_page_flush_ceiling=600)
    scanned = {c.knob: v for c, v in MprotectToggle(threads=2).conditions(small, RFC_BASE)}
    assert max(scanned["pages"]) <= 512   # the pages knob's bound


# ------------------------------------------------------------------ reading a scan


def line(values, speedups, pair="p", knob="working_set", spread=0.001):
    """value_lines() of a scan whose speedup at each value is known: relaxed = strict / speedup, with
    a little jitter per replicate so the CI is narrow but not empty."""
    rng = np.random.default_rng(0)
    strict = 1000 * (1 + spread * rng.standard_normal((len(values), 64)))
    relaxed = strict / np.asarray(speedups)[:, None]
    return pd.DataFrame(conditions.value_lines(pair, knob, values, strict, relaxed))


def test_segments_and_the_break_even():
    values = [0, 16, 64, 256, 1024]
    frame = line(values, [1.5, 1.3, 1.01, 0.8, 0.5])
    cats = list(frame["category"])
    assert cats == ["wins", "wins", "none", "loses", "loses"]
    segs = conditions.segments(frame)
    assert [(s["category"], s["low"], s["high"]) for s in segs] == [("wins", 0, 16), ("none", 64, 64),
                                                                  ("loses", 256, 1024)]
    (crossing,) = conditions.break_evens(frame)
    # log(1.01) / (log(1.01) - log(0.8)) of the way from 64 to 256
    assert crossing == pytest.approx(64 + 192 * math.log(1.01) / (math.log(1.01) - math.log(0.8)), rel=1e-3)
    summary = conditions.summarize(frame, {("p", "working_set"): 16.0}).iloc[0]
    assert summary["category"] == "wins" and (summary["holds_low"], summary["holds_high"]) == (0, 16)
    assert summary["flips_above_at"] == 64 and summary["flips"] == 2
    assert summary["text"].startswith("working_set: relaxed wins at 0\u201316, no practical difference at 64, "
                                      "relaxed loses at 256\u20131024 (break-even \u2248")


def test_a_verdict_that_holds_throughout_says_so():
    frame = line([1, 8, 33, 34, 128], [0.5, 0.5, 0.6, 0.7, 0.7], knob="pages")
    summary = conditions.summarize(frame, {("p", "pages"): 1.0}).iloc[0]
    assert summary["flips"] == 0 and math.isnan(summary["break_even"])
    assert summary["text"] == "pages: relaxed loses over the whole range scanned (1\u2013128)"


def test_refinement_adds_points_only_between_neighbours_that_differ():
    frame = line([0, 16, 64, 256, 1024], [1.5, 1.3, 1.01, 0.8, 0.5])
    added = conditions.refine(frame, "geometric", as_int=True)
    assert all(isinstance(v, int) for v in added)
    assert [v for v in added if v < 64] == [23, 32, 45]      # between 16 (wins) and 64 (none)
    assert [v for v in added if v > 64] == [91, 128, 181]    # between 64 (none) and 256 (loses)
    assert conditions.refine(frame, "none", as_int=True) == []
    # from 0, the geometric points start at 1
    assert conditions.refine(line([0, 16], [1.5, 0.5]), "geometric", as_int=True)[0] == 1
    # two neighbours one apart leave no room
    assert conditions.refine(line([33, 34], [0.5, 1.5], knob="pages"), "linear", as_int=True) == []


# ------------------------------------------------------------------ the engine's own runs


def test_the_reported_flip_is_where_the_engine_puts_it():
    """mprotect_toggle at 8 threads on rfc_base: relaxed loses once the other threads keep enough
    hot (each takes a full flush per round).  The scan's break-even along working_set lies between
    two values where direct runs of the engine, strict beside relaxed, give the two verdicts."""
    from study.config import build_cell, compose

    cell = build_cell(compose(["workload=mprotect_toggle", "workload.threads=8", "run.replicates=64",
                               "run.rounds=10"]))
    strict, relaxed = (dataclasses.replace(cell, policy=p) for p in (STRICT, RELAXED))
    run = ScanRun(replicates=64, rounds=10)
    values = (0, 16, 64, 256, 1024)
    arrays = run_scan(Scan(strict, relaxed, "working_set", values), run)
    frame = pd.DataFrame(conditions.value_lines(strict.pair_id, "working_set", values, arrays["strict"],
                                                arrays["relaxed"]))
    (crossing,) = conditions.break_evens(frame)
    assert 16 < crossing < 256

    def speedup(ws):
        workload = dataclasses.replace(cell.workload, working_set=ws)
        a, b = simulate_lanes(cell.machine, workload, [(STRICT, cell.machine), (RELAXED, cell.machine)],
                              replicates=64, rounds=10, seed=np.random.SeedSequence(99), kernel=cell.kernel,
                              warmup_rounds=cell.run.warmup_rounds, max_samples=0)
        return a.metrics["total_cycles_per_round"].mean() / b.metrics["total_cycles_per_round"].mean()

    assert speedup(int(crossing * 0.8)) > 1 > speedup(int(crossing * 1.25) + 1)


# ------------------------------------------------------------------ the command


def _study(*args, cwd, env, ok=True):
    done = subprocess.run([sys.executable, "-m", "study", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    if ok:
        assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.parametrize("args, key", [
    (["--replicates", "1"], "--replicates"),
    (["--rounds", "0"], "--rounds"),
    (["--max-settings", "0"], "--max-settings"),
    (["--sweep", "nonesuch"], "--sweep"),
    (["--num-cpus", "100000"], "--num-cpus"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, study_env, args, key):
    done = _study("conditions", "--out", str(tmp_path / "out"), *args, cwd=tmp_path, env=study_env, ok=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and key in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_stage_scans_every_headline_and_a_rerun_gives_the_same_bytes(tmp_path, study_env):
    out = tmp_path / "out"
    _study("sweep", "sweep=quick", f"run.output_dir={out}", "ray.num_cpus=1", cwd=tmp_path, env=study_env)
    args = ("conditions", "--sweep", "quick", "--out", str(out), "--replicates", "16", "--rounds", "3")
    _study(*args, "--serial", cwd=tmp_path, env=study_env)
    target = out / "conditions" / "quick"
    first = (target / "lines.csv").read_bytes()
    manifest = json.loads((target / "manifest.json").read_text())
    lines = pd.read_csv(target / "lines.csv", dtype={"pair_id": str})
    cells = pd.read_parquet(out / "sweep" / "quick" / "cells.parquet")
    # quick's 2-thread settings are headlines (the seed setting, the most threads of each workload)
    two = set(cells.loc[cells["workload.threads"] == 2, "pair_id"])
    assert two <= set(manifest["settings"]) <= set(cells["pair_id"])
    assert set(lines["pair_id"]) == set(manifest["settings"])
    # the cached scans are reused, on Ray this time, and the bytes are the same
    _study(*args, cwd=tmp_path, env=study_env)
    assert (target / "lines.csv").read_bytes() == first
    info = json.loads((out / "conditions_run_info.json").read_text())
    assert info["scans_computed"] == 0 and info["scans_reused"] > 0
    _study("analyze", "--sweep", "quick", "--out", str(out), cwd=tmp_path, env=study_env)
    metrics = json.loads((out / "metrics.json").read_text())
    seed = metrics["conditions"]["seed_setting"]
    assert set(seed) >= {"working_set", "initiator_working_set", "pages"}
    assert all({"at", "holds_low", "holds_high", "break_even", "flips"} <= set(v) for v in seed.values())
    assert seed["working_set"]["at"] == 0
