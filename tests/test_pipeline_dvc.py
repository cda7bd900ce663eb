"""dvc.yaml: the sweep -> analyze -> report stages, their deps and outs, and the plots they declare."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from study.analysis.series import FIGURES


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
    assert list(stages) == ["sweep", "ensemble", "conditions", "analyze", "report"]
    assert stages["ensemble"]["cmd"].startswith("python -m study ensemble --sweep default")
    assert stages["conditions"]["cmd"].startswith("python -m study conditions --sweep default")
    assert stages["sweep"]["cmd"] == "python -m study sweep sweep=default --no-user-config"
    assert stages["analyze"]["cmd"].startswith("python -m study analyze --sweep default")
    assert stages["report"]["cmd"].startswith("python -m study report")
    # each stage reads only what the stages before it wrote
    written = []
    for name in ("sweep", "ensemble", "conditions", "analyze"):
        reads = [d for d in _paths(stages[name]["deps"]) if d.startswith("outputs/")]
        assert all(any(_inside(d, o) for o in written) for d in reads), name
        written += _paths(stages[name]["outs"])
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


@pytest.fixture(scope="module")
def analyzed(synthetic_out):
    return synthetic_out  # conftest: the full synthetic sweep, analyzed (read-only)


def test_declared_plots_are_the_series_the_analysis_writes(dvc, analyzed):
    declared = {}
    for entry in dvc["plots"]:
        (path, spec), = entry.items()
        declared[path] = spec
    written = {f"outputs/analysis/series/{p.name}" for p in (analyzed / "analysis" / "series").iterdir()}
    assert set(declared) == written
    for path, spec in declared.items():
        files = sorted((analyzed / path.removeprefix("outputs/")).glob("*.csv"))
        assert files, path
        for file in files:
            frame = pd.read_csv(file)
            ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
            assert {spec["x"], *ys} <= set(frame.columns), (file, spec)
            # one series per file: its position axis (x, y for bars, the quantile of an ECDF) has no
            # repeated value
            position = FIGURES[path.rsplit("/", 1)[1]].unique_axis
            assert not frame[position].duplicated().any(), file


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is the `pipeline` extra")
def test_dvc_plots_show_draws_each_series_with_the_declared_axes(dvc, analyzed, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(analyzed / "analysis", project / "outputs" / "analysis")
    (project / "dvc.yaml").write_text(yaml.safe_dump({"plots": dvc["plots"]}))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=project, check=True)
    done = subprocess.run(["dvc", "plots", "show", "--json"], cwd=project, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    shown = shown.get("data", shown)
    assert not shown.get("errors")
    for entry in dvc["plots"]:
        (path, spec), = entry.items()
        files = sorted((project / path).glob("*.csv"))
        for file in files:
            key = file.relative_to(project).as_posix()
            assert key in shown, key
            if file.name == "none.csv":   # a figure this sweep cannot draw: it must draw nothing
                assert pd.read_csv(file).empty, key
                assert all(not r["content"]["data"]["values"] for r in shown[key]), key
                continue
            (render,) = shown[key]
            content = render["content"]
            ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
            text = json.dumps(content["encoding"]) + json.dumps(content.get("layer", []))
            rows = content["data"]["values"]
            assert f'"field": "{spec["x"]}"' in text, key
            if len(ys) == 1:
                assert f'"field": "{ys[0]}"' in text, key
            else:  # several y columns of one file: dvc stacks them, one line per column
                assert '"field": "dvc_inferred_y_value"' in text and {r["field"] for r in rows} == set(ys), key
            assert len(rows) == len(pd.read_csv(file)) * len(ys), key


def test_every_stage_command_takes_its_flags(dvc):
    # A stage whose command rejects one of its flags fails only when `dvc repro` reaches it;
    # check every stage's words against the command's own parser (after the global flags
    # every command takes: --config-dir, --no-user-config), without running anything.
    import importlib
    import shlex

    from study.cli import take_config_dir

    for name, stage in dvc["stages"].items():
        words = shlex.split(stage["cmd"])
        assert words[:3] == ["python", "-m", "study"], name
        module = importlib.import_module(f"study.cli.{words[3].replace('-', '_')}")
        if any(w.split("=")[0] in ("--config-dir", "--no-user-config") for w in words[4:]):
            # the global flags are taken by study.cli.command, which wraps main (functools.wraps)
            assert hasattr(module.main, "__wrapped__"), f"{name}: {words[3]} does not take the global flags"
        rest = take_config_dir(words[4:])
        if hasattr(module, "parser"):
            module.parser().parse_args(rest)   # a ConfigError (one-line error) fails the test
        else:   # Hydra-style commands: overrides only
            assert all("=" in w for w in rest), (name, rest)


def test_dvc_yaml_is_what_the_code_and_the_figure_declarations_say():
    """Each stage's code deps are its command's import closure and the plots are the figures'
    declarations (tools/dvc_yaml.py); a new module or figure without a regenerated dvc.yaml fails."""
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "dvc_yaml.py"), "--check"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is the `pipeline` extra")
def test_dvc_reads_the_pipeline():
    """DVC itself parses dvc.yaml (a key given twice, which YAML loaders accept, is an error to it)."""
    res = subprocess.run(["dvc", "stage", "list"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert {line.split()[0] for line in res.stdout.splitlines() if line.strip()} == {
        "sweep", "ensemble", "conditions", "analyze", "report"}
