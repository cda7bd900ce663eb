"""Provenance that is true: a grid on a non-default machine names that machine, with its costs."""

import json

import pandas as pd
import pytest
import yaml

from study.cli import analyze as analyze_cli
from study.cli import report as report_cli
from study.config import config_dir
from study.runner import plan, run
from study.runner.executor import SerialExecutor

TINY = ["run.replicates=4", "run.batch_replicates=4", "run.rounds=2", "run.max_samples=16"]


@pytest.mark.slow
def test_present_day_manifest_tables_and_report_name_the_machine_that_ran(tmp_path):
    out = tmp_path / "outputs"
    p = plan(["sweep=present_day", *TINY, f"run.output_dir={out}"])
    run(p, executor=SerialExecutor(), log=lambda m: None, progress=False)  # the real engine, tiny settings
    shipped = yaml.safe_load((config_dir() / "machine" / "sapphire_rapids_2s.yaml").read_text())
    directory = out / "sweep" / "present_day"

    manifest = json.loads((directory / "manifest.json").read_text())
    assert list(manifest["resolved"]["machine"]) == ["sapphire_rapids_2s"]
    ran = manifest["resolved"]["machine"]["sapphire_rapids_2s"]
    assert ran["costs"]["invlpg"] == shipped["costs"]["invlpg"]
    assert ran["costs"]["ipi_deliver"]["socket"] == shipped["costs"]["ipi_deliver"]["socket"]
    assert list(manifest["resolved"]["kernel"]) == ["mainline"]
    assert {c["resolved"]["machine"] for c in manifest["cells"]} == {"sapphire_rapids_2s"}
    for key in ("host", "timings", "git_revision", "cells_reused"):   # not in the hashed set
        assert key not in manifest
    info = json.loads((directory / "run_info.json").read_text())
    assert info["cells_computed"] == len(manifest["cells"]) and "total_s" in info["timings"]
    assert "run_info.json" not in manifest["files"]

    cells = pd.read_parquet(directory / "cells.parquet")
    assert set(cells["machine"]) == {"sapphire_rapids_2s"}
    assert (cells["machine.costs.invlpg"] == shipped["costs"]["invlpg"]).all()
    assert (cells["machine.sockets"] == shipped["sockets"]).all()
    assert cells["kernel.clean_anon_writable"].all()  # mainline maps clean exclusive anon pages writable

    assert analyze_cli.main(["--sweep", "present_day", "--out", str(out)]) == 0
    assert report_cli.main(["--out", str(out)]) == 0
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "Machine <code>sapphire_rapids_2s</code> as it ran (uncalibrated preset" in html
    assert f"invlpg {shipped['costs']['invlpg']:g}" in html
    assert "Machine <code>haswell_2s</code>" not in html and "haswell_2s (calibrated)" not in html
