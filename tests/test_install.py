"""A non-editable install carries the top-level conf/ inside the package (study.conf): the commands
compose the shipped tree from any working directory, and a stray ./conf/ there changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what a source distribution of the project holds: enough to build the wheel
SOURCES = ("pyproject.toml", "setup.py", "README.md", "study", "conf", "hydra_plugins")


def _copy_sources(target: Path) -> Path:
    target.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
def test_a_non_editable_install_composes_the_shipped_tree_from_anywhere(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, study = venv / "bin" / "python", venv / "bin" / "study"
    # the test environment's dependencies, after the new environment's own packages (a path in a
    # .pth file: its own .pth files, the editable install's hook among them, are not run)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the package is built as `pip install .` builds it (an isolated build, setuptools from the index)
    source = _copy_sources(tmp_path / "source")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
                   check=True, cwd=tmp_path)
    shutil.rmtree(source)   # nothing may be read from the source tree after the install

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "conf" / "policy").mkdir(parents=True)
    # a Hydra project's own tree: were it read, every command would fail on its unknown key
    (elsewhere / "conf" / "config.yaml").write_text("defaults:\n  - _self_\nlr: 0.1\n")
    (elsewhere / "conf" / "policy" / "strict.yaml").write_text("name: strict\nrelaxed_flush_on_upgrade: true\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "STUDY_CONFIG_DIR": str(tmp_path / "none")}

    def run(*args, timeout=180):
        res = subprocess.run([str(study), *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=timeout)
        assert res.returncode == 0, res.stderr
        return res

    where = subprocess.run([str(python), "-c", "import study, study.config.paths as p; "
                            "print(study.__file__); print(p.config_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and Path(where[1]).is_relative_to(venv)
    assert Path(where[1], "config.yaml").is_file() and Path(where[1], "workload", "uffd_wp.yaml").is_file()

    # Hydra's own scan of the hydra_plugins namespace package finds the study's search-path plugin
    found = subprocess.run([str(python), "-c", "from hydra.core.plugins import Plugins; "
                            "from hydra.plugins.search_path_plugin import SearchPathPlugin; "
                            "print(*[p.__module__ for p in Plugins.instance().discover(SearchPathPlugin)])"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert "hydra_plugins.study_user_config" in found and Path(where[0]).parents[1].joinpath(
        "hydra_plugins", "study_user_config", "__init__.py").is_file()

    assert "config groups" in run("--help").stdout
    out = run("run", "run.replicates=2", "run.batch_replicates=2", "run.rounds=2", "run.warmup_rounds=0",
              f"run.output_dir={tmp_path / 'out'}").stdout
    assert "policy strict" in out
    record = json.loads(next((tmp_path / "out" / "run").glob("*.json")).read_text())
    assert record["config"]["policy"]["relaxed_flush_on_upgrade"] is False   # the shipped strict, not the stray one
    # a user preset of a shipped name replaces it (the plugin puts --config-dir first on the search path)
    mine = tmp_path / "mine"
    (mine / "policy").mkdir(parents=True)
    (mine / "policy" / "strict.yaml").write_text("name: strict\nrelaxed_flush_on_upgrade: true\n")
    shown = run("run", "--config-dir", str(mine), "--cfg", "job").stdout
    assert "relaxed_flush_on_upgrade: true" in shown
    run("sweep", "sweep=quick", "ray.num_cpus=1", f"run.output_dir={tmp_path / 'out'}", timeout=300)
    assert (tmp_path / "out" / "sweep" / "quick" / "manifest.json").is_file()
