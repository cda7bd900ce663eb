"""The Python API (study.load, study.run_cell, study.run_sweep) and `python -m study compare`."""

import re

import pytest

import study
from study.cli import compare as compare_cli
from study.errors import ConfigError
from study.runner import plan, run
from study.runner.executor import SerialExecutor

from conftest import fake_simulate


def _sweep(out, *overrides):
    p = plan(["sweep=quick", f"run.output_dir={out}", *overrides])
    return run(p, executor=SerialExecutor(fake_simulate), simulate=fake_simulate, log=lambda m: None, progress=False)


def test_load_gives_tidy_frames_with_settings_and_units(tmp_path):
    _sweep(tmp_path)
    res = study.load(tmp_path / "sweep" / "quick")
    assert res.name == "quick" and len(res.cells) == 6
    assert {"machine", "kernel", "workload", "policy", "workload.threads", "metric", "value", "replicate"} \
        <= set(res.replicates.columns)
    assert len(res.replicates) == res.replicates[["cell_id", "metric", "replicate"]].drop_duplicates().shape[0]
    assert {"latency", "label", "policy", "workload.threads"} <= set(res.calls.columns)
    assert res.cells.attrs["units"]["total_cycles_per_round.mean"] == "cycles per round"
    assert res.cells.attrs["units"]["lat_write.mean"] == "cycles per call"
    assert res.cells.attrs["units"]["machine.costs.invlpg"] == "cycles"
    assert res.calls.attrs["units"]["latency"] == "cycles per call"
    assert study.load(tmp_path).name == "quick"  # an outputs directory with one sweep
    with pytest.raises(ConfigError):
        study.load(tmp_path / "absent")


def test_load_reads_the_replicates_only_when_asked_and_checks_them_then(tmp_path, monkeypatch):
    from study.results import tables

    _sweep(tmp_path)
    reads = []
    real = tables.read_replicates
    monkeypatch.setattr(tables, "read_replicates", lambda *a, **k: reads.append(1) or real(*a, **k))
    res = study.load(tmp_path / "sweep" / "quick")
    assert len(res.cells) == 6 and reads == []          # the cells frame alone
    first = res.replicates
    assert reads == [1] and res.replicates is first     # read once, then kept
    # a replicates table of other cells (hash and manifest left consistent) is refused when read
    import json
    import pandas as pd
    from study.results.files import sha256_file

    path = tmp_path / "sweep" / "quick"
    reps = pd.read_parquet(path / "replicates.parquet")
    reps = reps[reps["cell_id"] != reps["cell_id"].iloc[0]]
    reps.to_parquet(path / "replicates.parquet")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["replicates.parquet"] = sha256_file(path / "replicates.parquet")
    (path / "manifest.json").write_text(json.dumps(manifest))
    lazy = study.load(path)
    with pytest.raises(ConfigError, match="list different cells"):
        lazy.replicates


def test_run_cell_from_a_notebook_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = study.run_cell(["run.replicates=4", "run.batch_replicates=4", "run.rounds=3"])
    assert result.replicates == 4 and list(tmp_path.iterdir()) == []


def test_compare_prints_both_runs_side_by_side(tmp_path, capsys):
    _sweep(tmp_path / "a")
    _sweep(tmp_path / "b", "run.seed=7")
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b"), "--all"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " B/A " in line and not line.startswith("metric")]
    assert len(rows) == 6 and all(" A " in r and "[" in r for r in rows)
    assert "6 settings in both runs" in out
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --metric:")


def test_compare_reads_any_sweep_directory_and_compares_speedups(tmp_path, capsys):
    import shutil

    _sweep(tmp_path / "a")
    _sweep(tmp_path / "b", "run.seed=7")
    copy = tmp_path / "elsewhere" / "mine"
    shutil.copytree(tmp_path / "a" / "sweep" / "quick", copy)   # not under <out>/sweep/
    assert study.load(copy).name == "mine" and len(study.load(copy).cells) == 6
    assert compare_cli.main([str(copy), str(tmp_path / "b"), "--speedups", "--all"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " B/A " in line]
    assert len(rows) == 3 and all(re.search(r"A \d+\.\d+x \[.*\] \(.*\)  B \d+\.\d+x", r) for r in rows), rows
    assert "3 settings in both runs" in out


@pytest.mark.parametrize("lo, hi, word", [(0.95, 0.97, "faster"), (1.03, 1.05, "slower"),
                                          (0.99, 1.01, "no practical change"), (0.995, 1.03, "not significant"),
                                          (1.001, 1.003, "no practical change")])
def test_compare_needs_the_practical_threshold_to_call_a_change(lo, hi, word):
    assert compare_cli.verdict(lo, hi, 0.02) == word
