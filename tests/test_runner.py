"""The runner with the serial executor and a fake engine: grids, replication, stats, cache, tables."""

from __future__ import annotations

import json
import shutil
import math

import numpy as np
import pandas as pd
import pytest
from conftest import fake_simulate
from scipy import stats as sps

from study.config import build_cell, compose
from study.runner import SerialExecutor, plan, run, run_cell
from study.runner.grid import expand
from study.runner.replicate import merge
from study.results.summary import relative_half_width, summarize, t_interval
from study.runner.store import CellStore, code_fingerprint
from study.results.tables import read_meta
from study.seed import SEED_MACHINE, SEED_WORKLOAD
from study.workloads.result import CellResult


def _plan(*overrides):
    return plan(list(overrides))


# --- grids -----------------------------------------------------------------------------

def test_quick_grid_expands_in_order_with_uffd_only_from_two_threads():
    p = _plan("sweep=quick")
    points = [(gc.cell.workload.name, gc.cell.workload.threads, gc.cell.policy.name) for gc in p.cells]
    assert points == [("mprotect_toggle", 1, "strict"), ("mprotect_toggle", 1, "relaxed"),
                      ("mprotect_toggle", 2, "strict"), ("mprotect_toggle", 2, "relaxed"),
                      ("uffd_wp", 2, "strict"), ("uffd_wp", 2, "relaxed")]
    assert [gc.grid for gc in p.cells] == [0, 0, 0, 0, 1, 1]


def test_command_line_field_overrides_reach_every_selected_workload_but_grid_wins():
    p = _plan("sweep=quick", "workload.pages=3", "workload.threads=5")
    assert {gc.cell.workload.pages for gc in p.cells} == {3}
    assert sorted({gc.cell.workload.threads for gc in p.cells}) == [1, 2]


def test_duplicate_grid_points_are_dropped():
    cells, dropped = expand(_plan("sweep=quick").settings.sweep.__class__(
        name="dup", grids=[{"policy": ["strict", "strict"]}, {"workload.threads": [2]}]), [])
    assert len(cells) == 1 and dropped == 2


def test_seed_table_sweep_is_the_seed_benchmark():
    p = _plan("sweep=seed_table")
    assert len(p.cells) == 4  # x 2 labels (mprotect_ro, mprotect_rw) = the 8 seed cells
    for gc in p.cells:
        assert gc.cell.machine.name == SEED_MACHINE
        for key, value in SEED_WORKLOAD.items():
            assert getattr(gc.cell.workload, key) == value, key
    assert sorted((gc.cell.workload.threads, gc.cell.policy.name) for gc in p.cells) == [
        (1, "relaxed"), (1, "strict"), (2, "relaxed"), (2, "strict")]


def test_default_sweep_validates_and_covers_the_design():
    p = _plan("sweep=default")
    cells = [gc.cell for gc in p.cells]
    assert {c.workload.name for c in cells} == {"mprotect_toggle", "uffd_wp", "madv_free"}
    assert {1, 2, 4, 8, 16}.issubset({c.workload.threads for c in cells})
    assert {c.workload.placement for c in cells} == {"smt", "core", "socket"}
    assert min(c.workload.threads for c in cells if c.workload.name == "uffd_wp") >= 2
    assert len({c.workload.dirty_ratio for c in cells}) >= 2
    # every setting is run under both policies, so every pair_id has a strict and a relaxed cell
    by_pair: dict[str, set] = {}
    for c in cells:
        by_pair.setdefault(c.pair_id, set()).add(c.policy.name)
    assert all({"strict", "relaxed"} <= names for names in by_pair.values())
    # attribution: relaxed with exactly one RFC switch off
    ablated = {k for c in cells if c.policy.name == "relaxed" for k, v in c.policy.switches().items()
               if not v and k != "unsafe_dirty_demote"}
    assert {"relaxed_flush_on_upgrade", "fix_spurious_fault", "no_flush_clean_wrprotect", "uffd_unprotect_mkdirty", "clean_anon_writable", "uffd_unprotect_writable"} <= ablated
    # the seed cells are in it
    seed_ids = {gc.cell.cell_id for gc in _plan("sweep=seed_table", *_run_of(p)).cells}
    assert seed_ids <= {c.cell_id for c in cells}


def _run_of(p):
    run_cfg = p.settings.run
    return [f"run.rounds={run_cfg.rounds}", f"run.replicates={run_cfg.replicates}",
            f"run.batch_replicates={run_cfg.batch_replicates}"]


# --- replication -----------------------------------------------------------------------

class Recorder:
    """A fake engine that remembers the seeds and sizes it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, machine, workload, policy, *, replicates, rounds, seed, max_samples=2048, kernel=None,
                 warmup_rounds=0):
        self.calls.append((policy.name, replicates, seed.spawn_key))
        return fake_simulate(machine, workload, policy, replicates=replicates, rounds=rounds, seed=seed,
                             max_samples=max_samples)


def test_fixed_replication_runs_batches_with_their_own_seeds():
    cell = build_cell(compose(["run.replicates=10", "run.batch_replicates=4"]))
    rec = Recorder()
    result = run_cell(cell, rec)
    assert result.replicates == 10
    assert [r for _, r, _ in rec.calls] == [4, 4, 2]
    assert [k for _, _, k in rec.calls] == [cell.seed(b).spawn_key for b in range(3)]
    assert result.metrics[CellResult.MAIN_METRIC].shape == (10,)


def test_policies_of_one_setting_share_streams():
    strict = build_cell(compose(["policy=strict"]))
    relaxed = build_cell(compose(["policy=relaxed"]))
    a, b = run_cell(strict, fake_simulate), run_cell(relaxed, fake_simulate)
    diff = a.metrics[CellResult.MAIN_METRIC] - b.metrics[CellResult.MAIN_METRIC]
    np.testing.assert_allclose(diff, 300.0)  # same noise, replicate by replicate


def test_adaptive_replication_adds_batches_until_the_target():
    loose = build_cell(compose(["run.adaptive=true", "run.replicates=4", "run.batch_replicates=4",
                                "run.ci_target=0.5", "run.max_replicates=64"]))
    assert run_cell(loose, fake_simulate).replicates == 4  # already within 50%
    tight = build_cell(compose(["run.adaptive=true", "run.replicates=4", "run.batch_replicates=4",
                                "run.ci_target=0.0005", "run.max_replicates=64"]))
    result = run_cell(tight, fake_simulate)
    rel = relative_half_width(result.metrics[CellResult.MAIN_METRIC])
    assert result.replicates == 64 or rel < 0.0005
    assert result.replicates > 4
    medium = build_cell(compose(["run.adaptive=true", "run.replicates=4", "run.batch_replicates=4",
                                 "run.ci_target=0.002", "run.max_replicates=400"]))
    result = run_cell(medium, fake_simulate)
    assert relative_half_width(result.metrics[CellResult.MAIN_METRIC]) < 0.002
    fewer = merge([fake_simulate(medium.machine, medium.workload, medium.policy, replicates=4,
                                 rounds=medium.run.rounds, seed=medium.seed(b)) for b in range(result.replicates // 4 - 1)], 2048)
    assert relative_half_width(fewer.metrics[CellResult.MAIN_METRIC]) >= 0.002  # stopped at the first batch that met it


def test_merge_keeps_a_sample_prefix_and_fills_missing_metrics():
    a = CellResult(2, 10, {"m": np.array([1.0, 2.0])}, {"c": np.array([1, 2])}, {"x": np.arange(3)})
    b = CellResult(1, 10, {}, {"c": np.array([3])}, {"x": np.arange(10, 14)})
    merged = merge([a, b], max_samples=5)
    np.testing.assert_array_equal(merged.metrics["m"], [1.0, 2.0, np.nan])
    np.testing.assert_array_equal(merged.counters["c"], [1, 2, 3])
    np.testing.assert_array_equal(merged.samples["x"], [0, 1, 2, 10, 11])


# --- statistics ------------------------------------------------------------------------

def test_t_interval_matches_scipy_and_drops_nan():
    values = np.array([10.0, 12.0, np.nan, 11.0, 15.0])
    mean, low, high, n = t_interval(values)
    finite = values[~np.isnan(values)]
    lo, hi = sps.t.interval(0.95, len(finite) - 1, loc=finite.mean(), scale=sps.sem(finite))
    assert n == 4 and mean == pytest.approx(finite.mean())
    assert (low, high) == (pytest.approx(lo), pytest.approx(hi))
    assert math.isnan(t_interval(np.array([1.0]))[1])
    assert t_interval(np.array([np.nan]))[3] == 0


def test_summary_takes_latency_spread_from_per_call_samples():
    result = CellResult(3, 4, {"lat_write": np.array([10.0, 20.0, 30.0]), "other": np.array([1.0, 2.0, 3.0])},
                        {"ipis": np.array([4, 8, 12])}, {"write": np.arange(1, 101)})
    row = summarize(result)
    assert row["lat_write.median"] == pytest.approx(50.5)
    assert row["lat_write.p99"] == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert row["lat_write.mean"] == pytest.approx(20.0) and row["lat_write.n"] == 3
    assert row["other.median"] == 2.0
    assert row["count.ipis"] == pytest.approx(2.0)  # mean per replicate per round


# --- cache -----------------------------------------------------------------------------

def test_store_round_trips_exactly_and_rejects_other_code(tmp_path):
    cell = build_cell(compose(["run.replicates=3"]))
    result = run_cell(cell, fake_simulate)
    store = CellStore(tmp_path, "abc")
    store.save(cell.cell_id, result)
    back = store.load(cell.cell_id)
    for name in result.metrics:
        np.testing.assert_array_equal(back.metrics[name], result.metrics[name])
    for name in result.samples:
        np.testing.assert_array_equal(back.samples[name], result.samples[name])
    assert back.replicates == 3 and back.rounds == result.rounds
    assert CellStore(tmp_path, "other-code").load(cell.cell_id) is None
    store.path(cell.cell_id).write_bytes(b"torn")
    assert store.load(cell.cell_id) is None
    assert list(tmp_path.glob(".*")) == []  # no temporary files left behind


def test_fingerprint_tells_engines_apart():
    assert code_fingerprint(fake_simulate) != code_fingerprint(Recorder.__call__)


# --- a whole sweep, serially -----------------------------------------------------------

def _sweep(tmp_path, *overrides, per_task=4, messages=None):
    p = _plan("sweep=quick", f"run.output_dir={tmp_path}", f"ray.cells_per_task={per_task}", *overrides)
    log = (messages.append if messages is not None else lambda m: None)
    return run(p, executor=SerialExecutor(fake_simulate), simulate=fake_simulate, log=log, progress=False)


def _tables(directory):
    return {name: pd.read_parquet(directory / f"{name}.parquet") for name in ("cells", "replicates", "calls")}


def test_sweep_writes_self_describing_tables(tmp_path):
    outcome = _sweep(tmp_path)
    out = tmp_path / "sweep" / "quick"
    assert outcome.directory == out and outcome.computed == 6 and outcome.reused == 0
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 6
    for col in ["cell_id", "pair_id", "sweep", "machine", "machine_calibrated", "kernel", "machine.dirty_walk", "policy", "policy.relaxed_flush_on_upgrade",
                "policy.no_flush_clean_wrprotect", "workload", "workload.threads", "workload.write_rate",
                "workload.remote_access_rate", "replicates", "rounds", "total_cycles_per_round.mean",
                "total_cycles_per_round.ci_low", "total_cycles_per_round.ci_high", "total_cycles_per_round.median",
                "total_cycles_per_round.p99", "total_cycles_per_round.n", "lat_write.p99", "count.ipis"]:
        assert col in cells.columns, col
    assert cells["sweep"].eq("quick").all()
    # knobs that do not apply are empty
    uffd = cells[cells["workload"] == "uffd_wp"]
    assert uffd["workload.remote_access_rate"].isna().all() and uffd["workload.write_rate"].notna().all()
    assert cells.loc[cells["workload"] == "mprotect_toggle", "workload.write_rate"].isna().all()
    assert uffd["lat_mprotect_ro.mean"].isna().all() and (uffd["lat_mprotect_ro.n"] == 0).all()
    # pairs: strict and relaxed of a setting share pair_id
    assert cells.groupby("pair_id")["policy"].apply(lambda s: sorted(s)).tolist() == [["relaxed", "strict"]] * 3
    csv = pd.read_csv(out / "cells.csv")
    assert list(csv.columns) == list(cells.columns) and len(csv) == 6
    np.testing.assert_allclose(csv["total_cycles_per_round.mean"], cells["total_cycles_per_round.mean"])

    reps = pd.read_parquet(out / "replicates.parquet")
    assert list(reps.columns) == ["cell_id", "pair_id", "policy", "replicate", "metric", "value"]
    main = reps[reps["metric"] == CellResult.MAIN_METRIC]
    assert len(main) == 6 * 4
    calls = pd.read_parquet(out / "calls.parquet")
    assert list(calls.columns) == ["cell_id", "label", "latency"] and calls["latency"].dtype == np.int64

    meta = read_meta(out / "cells.parquet")
    assert meta["format_version"] == 2 and meta["sweep"] == "quick" and meta["root_seed"] == 20220719
    assert meta["config"]["run"]["rounds"] == 200 and "numpy" in meta["versions"]
    # every metric column's unit, from the metric registry
    assert meta["units"]["lat_mprotect_ro.mean"] == "cycles per call"
    assert meta["units"]["total_cycles_per_round.ci_low"] == "cycles per round"
    assert meta["units"]["count.ipis"] == "events per round" and meta["units"]["lat_write.n"] == "replicates"
    assert read_meta(out / "calls.parquet")["units"] == {"latency": "cycles per call"}
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("format_version", "config", "root_seed", "sweep", "cells", "versions", "resolved", "meaning"):
        assert key in manifest, key
    # what the set means, as the code that wrote it says: its workloads, switches, roles
    meaning = manifest["meaning"]
    assert sorted(meaning["workloads"]) == ["mprotect_toggle", "uffd_wp"]
    assert meaning["workloads"]["uffd_wp"]["knobs"]["write_rate"]["unit"] == "chance per step"
    assert meaning["workloads"]["uffd_wp"]["calls"]["uffd_protect"]["flushes"] is True
    assert "unsafe_dirty_demote" not in meaning["ideas"] and "clean_anon_writable" in meaning["ideas"]
    assert meaning["kernels"]["rfc_base"]["carries"] == []
    assert {c["role"] for c in manifest["cells"]} == {"strict", "relaxed"}
    assert [c["cell_id"] for c in manifest["cells"]] == cells["cell_id"].tolist()
    info = json.loads((out / "run_info.json").read_text())  # what differs run to run, outside the set
    for key in ("git_revision", "host", "timings", "cells_reused", "cells_computed", "finished_utc"):
        assert key in info and key not in manifest, key
    assert info["cells_computed"] == 6 and info["host"]["cpus"] >= 1


def test_same_inputs_give_byte_identical_tables_and_manifest(tmp_path):
    """A fresh run and a resumed one write the same bytes: nothing run-dependent is hashed."""
    names = ("cells.parquet", "cells.csv", "replicates.parquet", "calls.parquet", "manifest.json")
    out = tmp_path / "sweep" / "quick"
    _sweep(tmp_path)
    first = {name: (out / name).read_bytes() for name in names}
    info = [json.loads((out / "run_info.json").read_text())]
    shutil.rmtree(out)  # a fresh run (no cached cells), same output_dir (it is part of the config)
    _sweep(tmp_path)
    assert {name: (out / name).read_bytes() for name in names} == first
    _sweep(tmp_path)  # the rerun reuses every cell
    assert {name: (out / name).read_bytes() for name in names} == first
    info.append(json.loads((out / "run_info.json").read_text()))
    assert info[0]["cells_computed"] == 6 and info[1]["cells_reused"] == 6


def test_rerun_reuses_every_cell_and_gives_the_same_tables(tmp_path):
    _sweep(tmp_path)
    first = _tables(tmp_path / "sweep" / "quick")
    messages: list[str] = []
    outcome = _sweep(tmp_path, messages=messages)
    assert outcome.reused == 6 and outcome.computed == 0
    assert any("reused 6 cells, computing 0" in m for m in messages)
    for name, frame in _tables(tmp_path / "sweep" / "quick").items():
        pd.testing.assert_frame_equal(frame, first[name])


def test_changed_config_recomputes_and_missing_cells_are_filled(tmp_path):
    _sweep(tmp_path)
    cache = tmp_path / "sweep" / "quick" / "cells"
    victims = sorted(cache.glob("*.npz"))[:2]
    for path in victims:
        path.unlink()
    messages: list[str] = []
    _sweep(tmp_path, messages=messages)
    assert any("reused 4 cells, computing 2" in m for m in messages)
    messages.clear()
    _sweep(tmp_path, "run.rounds=201", messages=messages)
    assert any("reused 0 cells, computing 6" in m for m in messages)


def test_tables_do_not_depend_on_chunking(tmp_path):
    _sweep(tmp_path / "a", per_task=1)
    _sweep(tmp_path / "b", per_task=5)
    a, b = _tables(tmp_path / "a" / "sweep" / "quick"), _tables(tmp_path / "b" / "sweep" / "quick")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])


def test_executor_completion_order_does_not_matter(tmp_path):
    class Reversed(SerialExecutor):
        def run(self, chunks):
            yield from reversed(list(super().run(chunks)))

    p = _plan("sweep=quick", f"run.output_dir={tmp_path / 'r'}", "ray.cells_per_task=1")
    run(p, executor=Reversed(fake_simulate), simulate=fake_simulate, log=lambda m: None, progress=False)
    _sweep(tmp_path / "s", per_task=1)
    a, b = _tables(tmp_path / "r" / "sweep" / "quick"), _tables(tmp_path / "s" / "sweep" / "quick")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])


# --- the long tables, built from whole arrays ------------------------------------------

def _irregular_rows():
    """Grid cells of sweep=quick with results of uneven shapes: metrics of other lengths than
    the replicates, an empty metric, an empty and a missing sample label."""
    rows = []
    for i, gc in enumerate(_plan("sweep=quick").cells):
        n = 3 + i
        metrics = {CellResult.MAIN_METRIC: np.arange(n, dtype=np.float64) + i,
                   "lat_write": np.linspace(0.0, 1.0, n + 2), "other_cycles_per_round": np.zeros(0)}
        if i % 2:
            metrics["lat_mprotect_ro"] = np.full(n, np.nan)
        samples = {"write": np.arange(i * 5, dtype=np.int64)}
        if i % 3 == 0:
            samples["mprotect_ro"] = np.arange(7, dtype=np.int64) * 3
        rows.append((gc, CellResult(replicates=n, rounds=10 + i, metrics=metrics,
                                    counters={"ipis": np.arange(n) * 10}, samples=samples)))
    return rows


def _part_by_part(rows):
    """The long tables as one frame per (cell, metric) or (cell, label), concatenated."""
    from study.results.summary import metric_order

    reps, calls = [], []
    texts: dict[str, dict] = {"cell_id": {}, "pair_id": {}, "policy": {}, "metric": {}}  # in order of parts
    for gc, result in rows:
        arrays = [(m, np.asarray(result.metrics[m], np.float64)) for m in metric_order(result.metrics)]
        arrays += [(f"count.{c}", np.asarray(v, np.float64) / result.rounds) for c, v in result.counters.items()]
        for name, values in arrays:
            for key, text in (("cell_id", gc.cell.cell_id), ("pair_id", gc.cell.pair_id),
                              ("policy", gc.cell.policy.name), ("metric", name)):
                texts[key].setdefault(text)
            reps.append(pd.DataFrame({"cell_id": gc.cell.cell_id, "pair_id": gc.cell.pair_id,
                                      "policy": gc.cell.policy.name, "replicate": np.arange(values.size),
                                      "metric": name, "value": values}))
        for label, samples in result.samples.items():
            calls.append(pd.DataFrame({"cell_id": gc.cell.cell_id, "label": label,
                                       "latency": np.asarray(samples, np.int64)}))
    reps = pd.concat(reps, ignore_index=True)
    for col in ("cell_id", "pair_id", "policy", "metric"):
        reps[col] = pd.Categorical(reps[col], categories=pd.Index(list(texts[col]), dtype="string"))
    reps = reps.astype({"replicate": "int64", "value": "float64"})
    calls = pd.concat(calls, ignore_index=True).astype({"cell_id": "string", "label": "string", "latency": "int64"})
    return reps, calls


def test_long_tables_are_the_part_by_part_tables_whatever_the_shapes(tmp_path):
    from study.results.tables import calls_table, replicates_table, write_parquet

    rows = _irregular_rows()
    reps, calls = _part_by_part(rows)
    pd.testing.assert_frame_equal(replicates_table(rows), reps)
    pd.testing.assert_frame_equal(calls_table(rows), calls)
    assert replicates_table(rows)["replicate"].tolist() == reps["replicate"].tolist()
    for name, frame, expected in (("r", replicates_table(rows), reps), ("c", calls_table(rows), calls)):
        write_parquet(frame, tmp_path / f"{name}.parquet", {"k": 1})
        write_parquet(expected, tmp_path / f"{name}-expected.parquet", {"k": 1})
        assert (tmp_path / f"{name}.parquet").read_bytes() == (tmp_path / f"{name}-expected.parquet").read_bytes()


def test_cells_table_with_summaries_worked_out_before_is_the_same():
    from study.results.tables import cells_table

    rows = [(gc, run_cell(gc.cell, fake_simulate)) for gc in _plan("sweep=quick").cells]
    early = {gc.cell.cell_id: summarize(result) for gc, result in rows[::2]}
    pd.testing.assert_frame_equal(cells_table("quick", rows, early), cells_table("quick", rows))


def test_an_executor_that_fails_to_stop_fails_the_sweep_after_the_tables(tmp_path):
    class Stuck(SerialExecutor):
        def __exit__(self, *exc):
            raise RuntimeError("could not stop")

    p = _plan("sweep=quick", f"run.output_dir={tmp_path}")
    with pytest.raises(RuntimeError, match="could not stop"):
        run(p, executor=Stuck(fake_simulate), simulate=fake_simulate, log=lambda m: None, progress=False)
    assert (tmp_path / "sweep" / "quick" / "manifest.json").is_file()
