"""dvc.yaml: the sweep -> analyze -> report stages, their deps and outs, and the plots they declare."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from study.analysis.synthetic import make_sweep
from study.cli import analyze as analyze_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dvc():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _paths(entries):
    """Paths of a dvc.yaml deps/outs/metrics list (plain strings or one-key mappings)."""
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def _inside(path: str, other: str) -> bool:
    a, b = Path(path).parts, Path(other).parts
    return a[: len(b)] == b or b[: len(a)] == a


def test_stages_run_the_cli_in_order(dvc):
    stages = dvc["stages"]
    assert list(stages) == ["sweep", "ensemble", "analyze", "report"]
    assert stages["ensemble"]["cmd"].startswith("python -m study ensemble --sweep default")
    assert stages["sweep"]["cmd"] == "python -m study sweep sweep=default"
    assert stages["analyze"]["cmd"].startswith("python -m study analyze --sweep default")
    assert stages["report"]["cmd"].startswith("python -m study report")
    sweep_outs = _paths(stages["sweep"]["outs"]) + _paths(stages["ensemble"]["outs"])
    assert all(any(_inside(d, o) for o in sweep_outs) for d in _paths(stages["analyze"]["deps"])
               if d.startswith("outputs/"))
    analyze_outs = _paths(stages["analyze"]["outs"]) + _paths(stages["analyze"]["metrics"])
    assert {d for d in _paths(stages["report"]["deps"]) if d.startswith("outputs/")} <= set(analyze_outs)


def test_no_stage_writes_into_its_own_deps(dvc):
    for name, stage in dvc["stages"].items():
        outs = _paths(stage.get("outs")) + _paths(stage.get("metrics"))
        for out in outs:
            assert out.startswith("outputs/"), (name, out)
            for dep in _paths(stage["deps"]):
                assert not _inside(out, dep), (name, out, dep)
    ignored = (ROOT / ".dvcignore").read_text()
    assert "__pycache__/" in ignored, "Python's bytecode in study/ would change the stages' deps"


def test_deps_and_params_exist(dvc):
    for stage in dvc["stages"].values():
        for dep in _paths(stage["deps"]):
            assert dep.startswith("outputs/") or (ROOT / dep).exists(), dep
        for param in stage.get("params", []):
            for file, keys in param.items():
                data = yaml.safe_load((ROOT / file).read_text())
                for key in keys or []:
                    assert key in data, (file, key)


def test_metrics_are_uncached_json(dvc):
    metrics = dvc["stages"]["analyze"]["metrics"]
    assert metrics == [{"outputs/metrics.json": {"cache": False}}]


def test_declared_plots_name_columns_the_csvs_have(dvc, tmp_path):
    make_sweep(tmp_path, name="synthetic")
    assert analyze_cli.main(["--sweep", "synthetic", "--out", str(tmp_path)]) == 0
    declared = {}
    for entry in dvc["plots"]:
        (path, spec), = entry.items()
        declared[path] = spec
    written = {f"outputs/analysis/plots/{p.name}" for p in (tmp_path / "analysis" / "plots").glob("*.csv")}
    assert set(declared) == written
    for path, spec in declared.items():
        columns = set(pd.read_csv(tmp_path / path.removeprefix("outputs/"), nrows=1).columns)
        ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
        assert {spec["x"], *ys} <= columns, (path, spec)
