"""Hydra's command-line habits: --help, --cfg job, --info, -m sub-grids, interpolations, hints."""

import subprocess
import sys

import pytest
import yaml

from study.cli import sweep as sweep_cli
from study.cli.sweep import split_sweep_overrides
from study.config import ConfigError, build_cell, compose, validate
from study.runner import plan


def _study(*args, env):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_help_lists_commands_groups_options_and_keys(study_env):
    done = _study("--help", env=study_env)
    assert done.returncode == 0
    out = done.stdout
    for word in ("run", "sweep", "analyze", "report", "compare", "haswell_2s", "sapphire_rapids_2s", "mainline",
                 "uffd_wp", "unsafe", "present_day", "run.{replicates,rounds", "ray.{address", "--cfg job", "-m"):
        assert word in out, word


# What ``--help`` must not load: each takes a large share of a second to import.
HEAVY = ("numpy", "pandas", "scipy", "ray", "matplotlib", "hydra", "omegaconf")
_HELP_PROBE = """
import runpy, sys
sys.argv = ["python -m study", *sys.argv[1:]]
try:
    runpy.run_module("study", run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
else:
    code = 0
print("EXIT", code or 0, file=sys.stderr)
print("LOADED", " ".join(sorted({m.split(".")[0] for m in sys.modules} & set(%r))), file=sys.stderr)
""" % (HEAVY,)


def test_every_commands_help_loads_no_heavy_library(study_env):
    """``python -m study <cmd> --help`` answers without importing numpy, pandas, scipy, ray,
    matplotlib or Hydra: a check of the modules loaded, not of the time taken."""
    from study.cli import commands

    names = commands()
    assert {"run", "sweep", "analyze", "report", "calibrate", "seed-table", "measure", "ensemble", "compare"} <= set(names)
    for name in [None, *names]:
        args = ["--help"] if name is None else [name, "--help"]
        done = subprocess.run([sys.executable, "-c", _HELP_PROBE, *args], capture_output=True, text=True,
                              env=study_env, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert lines[-2] == "EXIT 0", (name, done.stderr)
        assert "usage" in done.stdout.lower(), (name, done.stdout)
        loaded = lines[-1].split()[1:]
        assert loaded == [], f"{name} --help loaded {loaded}"


def test_cfg_job_prints_the_composed_config_and_writes_nothing(study_env, tmp_path):
    done = _study("run", "--cfg", "job", "policy=relaxed", "workload.threads=4",
                  f"run.output_dir={tmp_path / 'out'}", env=study_env)
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load(done.stdout)
    assert cfg["policy"]["name"] == "relaxed" and cfg["workload"]["threads"] == 4
    assert not (tmp_path / "out").exists()
    bad = _study("run", "--cfg", "job", "workload.threads=x", env=study_env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "workload.threads" in bad.stderr
    info = _study("sweep", "--info", env=study_env)
    assert info.returncode == 0 and "package:" in info.stdout and "present_day" in info.stdout


def test_multirun_builds_one_sub_grid_with_hydras_parser():
    rest, grid = split_sweep_overrides(["workload.threads=1,2", "policy=strict,relaxed", "sweep=quick",
                                        "workload.pages=range(1,3)", "kernel=glob(rfc*)"])
    assert rest == ["sweep=quick"]
    assert grid == {"workload.threads": [1, 2], "policy": ["strict", "relaxed"], "workload.pages": [1, 2],
                    "kernel": ["rfc_base"]}
    p = plan(rest, grid=grid)
    assert p.settings.sweep.name == "adhoc" and len(p.cells) == 8
    assert {(c.cell.workload.threads, c.cell.policy.name) for c in p.cells} == {
        (1, "strict"), (1, "relaxed"), (2, "strict"), (2, "relaxed")}
    assert {c.cell.run.rounds for c in p.cells} == {200}  # the selected sweep's run settings


def test_multirun_bad_axis_is_one_line_and_nothing_written(tmp_path, capsys):
    code = sweep_cli.main(["-m", "workload.threads=1,x", f"run.output_dir={tmp_path / 'o'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "workload.threads" in err[0]
    assert not (tmp_path / "o").exists()


def test_comma_without_m_keeps_hydras_hints():
    with pytest.raises(ConfigError) as info:
        compose(["workload.threads=1,2"])
    assert info.value.key == "workload.threads"
    assert "key=[value1,value2]" in info.value.allowed and "sweep -m" in info.value.allowed


def test_interpolations_mean_the_same_in_every_node(monkeypatch):
    monkeypatch.setenv("THREADS", "4")
    monkeypatch.setenv("ROUNDS", "7")
    cell = build_cell(compose(["workload.threads=${oc.env:THREADS}", "run.rounds=${oc.env:ROUNDS}"]))
    assert cell.workload.threads == 4 and cell.run.rounds == 7
    monkeypatch.setenv("THREADS", "many")
    with pytest.raises(ConfigError, match="workload.threads"):
        validate(compose(["workload.threads=${oc.env:THREADS}"]))
