"""Malformed configurations: exit 2, one line naming the key, nothing written under outputs/."""

from __future__ import annotations

import subprocess
import sys

import pytest

from study.cli import sweep as sweep_cli

BAD = [
    # (overrides, key the message must name)
    (["foo=1"], "foo"),                                             # unknown top-level key
    (["+foo=1"], "foo"),                                            # ... added with +
    (["machine.bogus=1"], "machine.bogus"),                         # unknown machine key
    (["+machine.costs.bogus=1"], "machine.costs.bogus"),
    (["workload.bogus=1"], "workload.bogus"),                       # unknown workload key
    (["policy.bogus=true"], "policy.bogus"),                        # unknown policy key
    (["+run.bogus=1"], "run.bogus"),
    (["+ray.bogus=1"], "ray.bogus"),
    (["+sweep.bogus=1"], "sweep.bogus"),
    (["run.replicates=abc"], "run.replicates"),                     # wrong type
    (["run.adaptive=maybe"], "run.adaptive"),
    (["policy.relaxed_flush_on_upgrade=3"], "policy.relaxed_flush_on_upgrade"),
    (["kernel=nope"], "kernel"),
    (["kernel.clean_anon_writable=3"], "kernel.clean_anon_writable"),
    (["machine.dirty_walk=sometimes"], "machine.dirty_walk"),
    (["workload.threads=many"], "workload.threads"),
    (["workload.threads=49"], "workload.threads"),                  # beyond haswell_2s's 48 CPUs
    (["workload.dirty_ratio=1.5"], "workload.dirty_ratio"),
    (["run.replicates=-4"], "run.replicates"),
    (["run.rounds=0"], "run.rounds"),
    (["run.warmup_rounds=-1"], "run.warmup_rounds"),
    (["run.warmup_rounds=some"], "run.warmup_rounds"),
    (["run.batch_replicates=0"], "run.batch_replicates"),
    (["run.seed=-1"], "run.seed"),
    (["run.ci_target=0"], "run.ci_target"),
    (["run.ci_target=-0.1"], "run.ci_target"),
    (["run.adaptive=true", "run.max_replicates=2"], "run.max_replicates"),
    (["ray.num_cpus=0"], "ray.num_cpus"),
    (["ray.cells_per_task=0"], "ray.cells_per_task"),
    (["sweep.grids=[]"], "sweep.grids"),                            # empty grid
    (["sweep.grids=[{}]"], "sweep.grids[0]"),
    (["sweep.grids=[{policy:[]}]"], "sweep.grids[0].policy"),
    (["sweep.grids=[{bogus:[1]}]"], "sweep.grids[0].bogus"),
    (["workload=nope"], "workload"),                                # unknown workload
    (["policy=nope"], "policy"),                                    # unknown policy
    (["machine=nope"], "machine"),
    (["sweep=nope"], "sweep"),                                      # unknown sweep
    (["workload.placement=diagonal"], "workload.placement"),        # unknown placement
    (["machine.sockets=0"], "machine.sockets"),
    (["machine.costs.invlpg=-5"], "machine.costs.invlpg"),
    (["run.replicates=["], "run.replicates"),                       # unparsable override
    (["~run.rounds"], "run.rounds"),                                # a required key removed
    # errors that only one cell of the grid hits: found before any work
    (["sweep=quick", "sweep.grids=[{workload.threads:[1,2,99]}]"], "sweep.grids[0].workload.threads"),
    (["sweep=quick", "sweep.grids=[{workload:[uffd_wp],workload.threads:[1]}]"], "sweep.grids[0].workload.threads"),
    (["sweep=quick", "sweep.grids=[{workload:[nope]}]"], "sweep.grids[0].workload"),
    (["sweep=quick", "sweep.grids=[{policy.bogus:[true]}]"], "sweep.grids[0].policy.bogus"),
    (["sweep=quick", "sweep.grids=[{workload.placement:[core,diagonal]}]"], "sweep.grids[0].workload.placement"),
    (["sweep=quick", "sweep.grids=[{run.rounds:[10,-1]}]"], "sweep.grids[0].run.rounds"),
]


@pytest.mark.parametrize("overrides,key", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_exits_2_naming_the_key_and_writes_nothing(overrides, key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs"
    code = sweep_cli.main([*overrides, f"run.output_dir={outputs}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {key}: "), err[0]
    assert len(err[0]) > len(f"error: {key}: ") + 5  # says what is allowed
    assert not outputs.exists()
    assert list(tmp_path.iterdir()) == []  # nor anything else (no Hydra run dir, no outputs/)


def test_bad_override_through_python_m_study(tmp_path, study_env):
    proc = subprocess.run([sys.executable, "-m", "study", "sweep", "workload.dirty_ratio=1.5"],
                          cwd=tmp_path, env=study_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: workload.dirty_ratio: must be in [0, 1]")
    assert list(tmp_path.iterdir()) == []
