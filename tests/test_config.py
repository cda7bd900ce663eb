"""The config layer: compose, validate, build a cell, and the identity that seeds it."""

from __future__ import annotations

import importlib.resources
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

import study

from study.config import Cell, ConfigError, RunConfig, build_cell, compose, config_dir, validate
from study.engine.machine import Machine
from study.policies import Policy
from study.workloads.mprotect_toggle import MprotectToggle
from study.workloads.uffd_wp import UffdWp


def test_compose_and_validate_give_typed_objects():
    settings = validate(compose([]))
    assert isinstance(settings.machine, Machine)
    assert isinstance(settings.workload, MprotectToggle)
    assert isinstance(settings.policy, Policy) and settings.policy.name == "strict"
    assert isinstance(settings.run, RunConfig) and settings.run.replicates >= 1
    assert settings.ray.address is None and settings.ray.cells_per_task >= 1
    assert settings.sweep.name == "default"


def test_build_cell_applies_group_and_field_overrides():
    cell = build_cell(compose(["workload=uffd_wp", "workload.threads=4", "policy=relaxed", "run.rounds=7"]))
    assert isinstance(cell.workload, UffdWp) and cell.workload.threads == 4
    assert cell.policy.name == "relaxed" and cell.policy.no_flush_clean_wrprotect
    assert cell.kernel.name == "rfc_base"
    assert build_cell(compose(["kernel=mainline"])).kernel.clean_anon_writable
    assert cell.run.rounds == 7


def test_sweep_file_sizes_run_but_command_line_wins():
    assert validate(compose(["sweep=quick"])).run.rounds == 200
    assert validate(compose(["sweep=quick", "run.rounds=9"])).run.rounds == 9


def test_a_stray_conf_in_the_working_directory_changes_nothing(tmp_path, monkeypatch):
    """Every Hydra project has ./conf/config.yaml; it must not replace the study's configs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDY_CONFIG_DIR", str(tmp_path / "nowhere"))
    before = OmegaConf.to_container(compose([]))
    (tmp_path / "conf" / "policy").mkdir(parents=True)
    (tmp_path / "conf" / "config.yaml").write_text("defaults:\n  - _self_\nlr: 0.1\n")
    (tmp_path / "conf" / "policy" / "strict.yaml").write_text("name: strict\nrelaxed_flush_on_upgrade: true\n")
    assert config_dir() == Path(str(importlib.resources.files("study.conf")))
    assert not config_dir().is_relative_to(tmp_path)
    assert OmegaConf.to_container(compose([])) == before
    assert not build_cell(compose([])).policy.relaxed_flush_on_upgrade


def test_user_config_dir_adds_presets_and_overrides_shipped_ones(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    (user / "policy").mkdir(parents=True)
    (user / "policy" / "mine.yaml").write_text("name: mine\nrelaxed_flush_on_upgrade: true\n")
    (user / "sweep").mkdir()
    (user / "sweep" / "tiny.yaml").write_text((config_dir() / "sweep" / "quick.yaml").read_text())
    shipped = yaml.safe_load((config_dir() / "machine" / "haswell_2s.yaml").read_text())
    (user / "machine").mkdir()
    (user / "machine" / "haswell_2s.yaml").write_text(yaml.safe_dump({**shipped, "calibrated": False}))
    monkeypatch.setenv("STUDY_CONFIG_DIR", str(user))
    assert build_cell(compose(["policy=mine"])).policy.name == "mine"
    assert validate(compose(["sweep=tiny"])).sweep is not None
    assert not build_cell(compose(["machine=haswell_2s"])).machine.calibrated  # the user's file wins
    monkeypatch.delenv("STUDY_CONFIG_DIR")
    assert build_cell(compose(["machine=haswell_2s"])).machine.calibrated


def test_config_dir_flag_is_the_environment_variable(tmp_path, monkeypatch, capsys):
    from study.cli import take_config_dir

    monkeypatch.delenv("STUDY_CONFIG_DIR", raising=False)
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "mine.yaml").write_text("name: mine\n")
    assert take_config_dir(["--config-dir", str(tmp_path), "policy=mine"]) == ["policy=mine"]
    assert os.environ["STUDY_CONFIG_DIR"] == str(tmp_path.resolve())
    assert build_cell(compose(["policy=mine"])).policy.name == "mine"
    with pytest.raises(ConfigError, match="--config-dir"):
        take_config_dir([f"--config-dir={tmp_path / 'absent'}"])
    (tmp_path / "config.yaml").write_text("defaults: []\n")
    with pytest.raises(ConfigError, match="config.yaml"):
        compose([])


def test_compose_never_creates_hydra_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    validate(compose(["sweep=quick"]))
    assert list(tmp_path.iterdir()) == []


def _cell(*overrides: str) -> Cell:
    return build_cell(compose(list(overrides)))


def test_cell_id_covers_policy_and_run_but_pair_id_not_policy():
    strict, relaxed = _cell("policy=strict"), _cell("policy=relaxed")
    assert strict.cell_id != relaxed.cell_id
    assert strict.pair_id == relaxed.pair_id
    assert strict.stream_words == relaxed.stream_words  # common random numbers
    assert _cell("run.replicates=3").cell_id != strict.cell_id
    assert _cell("run.seed=1").cell_id != strict.cell_id
    assert _cell("workload.threads=3").pair_id != strict.pair_id
    # the kernel changes the numbers: its own pairs and streams; strict/relaxed of one kernel pair up
    main_s, main_r = _cell("kernel=mainline", "policy=strict"), _cell("kernel=mainline", "policy=relaxed")
    assert main_s.pair_id == main_r.pair_id != strict.pair_id
    assert main_s.stream_words == main_r.stream_words != strict.stream_words


def test_identity_ignores_what_does_not_change_numbers():
    base = _cell()
    assert _cell("run.output_dir=/elsewhere").cell_id == base.cell_id
    assert _cell("run.ci_target=0.5").cell_id == base.cell_id            # fixed mode ignores it
    assert _cell("workload.dirty_ratio=1").cell_id == _cell("workload.dirty_ratio=1.0").cell_id
    adaptive = _cell("run.adaptive=true")
    assert adaptive.cell_id != base.cell_id
    assert _cell("run.adaptive=true", "run.ci_target=0.5").cell_id != adaptive.cell_id


def test_streams_come_from_identity_and_batch_not_position():
    cell = _cell("workload.threads=3")
    seed = cell.seed(5)
    assert seed.entropy == cell.run.seed
    assert seed.spawn_key == (*cell.stream_words, 5)
    assert all(0 <= w < 2**32 for w in cell.stream_words)
    again = _cell("workload.threads=3")
    assert np.array_equal(seed.generate_state(4), again.seed(5).generate_state(4))
    assert not np.array_equal(cell.seed(0).generate_state(4), cell.seed(1).generate_state(4))
    # more replicates add batches but leave the streams of the existing ones alone
    assert _cell("workload.threads=3", "run.replicates=64").stream_words == cell.stream_words


def test_batch_sizes_split_replicates():
    cell = _cell("run.replicates=10", "run.batch_replicates=4")
    assert cell.batch_sizes() == [4, 4, 2]
    assert cell.batch_sizes(8) == [4, 4]


def test_validate_names_the_key_of_a_bad_value():
    with pytest.raises(ConfigError) as info:
        validate(compose(["workload.lazy_share=2"]))
    assert info.value.key == "workload.lazy_share"


def test_kernel_files_match_the_kernels_the_code_names():
    # calibrate and the seed table use study.engine.kernel's constants; the configs must agree
    from study.policies.kernel import KERNELS
    for name, kernel in KERNELS.items():
        assert build_cell(compose([f"kernel={name}"])).kernel == kernel


def test_ray_runtime_env_is_checked_and_a_cluster_gets_the_package():
    from study.runner.executor import RayExecutor

    with pytest.raises(ConfigError, match="ray.runtime_env.nope"):
        validate(compose(["ray.runtime_env={nope: 1}"]))
    env = validate(compose(["ray.runtime_env={pip: [numpy], env_vars: {A: b}}"])).ray.runtime_env
    assert env == {"pip": ["numpy"], "env_vars": {"A": "b"}}
    assert RayExecutor().runtime_env is None  # a local instance shares this host's files
    shipped = RayExecutor("10.0.0.1:6379").runtime_env["py_modules"]
    assert shipped == [str(Path(study.__file__).resolve().parent)]
    assert RayExecutor("10.0.0.1:6379", runtime_env={"pip": ["numpy"]}).runtime_env == {"pip": ["numpy"]}


def test_every_group_file_starts_from_its_registered_schema():
    """Hydra's structured-config schema pattern: each shipped group file names its schema first."""
    from study.config.schema import CONFIG_STORE

    for group in ("machine", "kernel", "policy", "workload"):
        for path in sorted((config_dir() / group).glob("*.yaml")):
            defaults = yaml.safe_load(path.read_text())["defaults"]
            schema = f"{path.stem}_schema" if group == "workload" else f"{group}_schema"
            assert defaults == [schema, "_self_"], path
            assert (group, schema) in CONFIG_STORE


@pytest.mark.parametrize("text, key", [
    ("name: mine\nsockets: 1\nbogus: 3\n", "machine.bogus"),                       # unknown key
    ("name: mine\ncosts: {ipi_deliver: {numa: 5}}\n", "machine.costs.ipi_deliver.numa"),
    ("name: mine\ncosts: {invlpg: lots}\n", "machine.costs.invlpg"),               # wrong type
    ("name: mine\npti: 1\n", "machine.pti"),                                       # a switch is true/false
])
def test_a_user_preset_without_defaults_list_is_checked_by_the_schema(text, key, tmp_path, monkeypatch):
    (tmp_path / "machine").mkdir()
    (tmp_path / "machine" / "mine.yaml").write_text(text)
    monkeypatch.setenv("STUDY_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        validate(compose(["machine=mine"]))
    assert err.value.key == key


def test_the_workload_schema_is_chosen_by_name():
    with pytest.raises(ConfigError) as err:
        validate(compose(["workload=uffd_wp", "workload.remote_access_rate=0.5"]))
    assert err.value.key == "workload.remote_access_rate" and "write_rate" in err.value.allowed
    with pytest.raises(ConfigError) as err:
        validate(compose(["workload.name=uffd_wp"]))  # mprotect_toggle's keys under uffd_wp's name
    assert err.value.key == "workload.remote_access_rate"


def test_the_root_config_starts_from_the_registered_root_schema():
    """Hydra's schema for a primary config: study_schema first, then _self_ before the groups
    (a sweep file sizes `run`; the command line still wins)."""
    from study.config.schema import ROOT_SCHEMA, StudyConfig, SweepConfig

    defaults = yaml.safe_load((config_dir() / "config.yaml").read_text())["defaults"]
    assert defaults[:2] == [ROOT_SCHEMA, "_self_"] and ROOT_SCHEMA == "study_schema"
    cfg = compose(["sweep=quick"])
    assert OmegaConf.get_type(cfg) is StudyConfig and OmegaConf.get_type(cfg.run) is RunConfig
    assert OmegaConf.get_type(cfg.sweep) is SweepConfig and cfg.run.rounds == 200
    assert compose(["sweep=quick", "run.rounds=7"]).run.rounds == 7
    assert compose(["~sweep"]).sweep is None and validate(compose(["~sweep"])).sweep is None


@pytest.mark.parametrize("text, key", [
    ("sweep: {name: mine, grids: [{policy: strict}]}\n", "sweep.grids[0].policy"),   # grid shape
    ("sweep: {name: mine, grids: [{policy: [strict]}], bogus: 1}\n", "sweep.bogus"),  # unknown key
    ("sweep: {name: mine, grids: [{policy: [strict]}]}\nrun: {rounds: many}\n", "run.rounds"),
    ("sweep: {name: mine, grids: [{policy: [strict]}]}\nrun: {adaptive: 1}\n", "run.adaptive"),  # a switch
    ("sweep: {name: mine, grids: [{policy: [strict]}]}\nray: {include_dashboard: 'no'}\n", "ray.include_dashboard"),
])
def test_a_user_sweep_file_is_checked_by_the_root_schema(text, key, tmp_path, monkeypatch):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "mine.yaml").write_text("# @package _global_\n" + text)
    monkeypatch.setenv("STUDY_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        validate(compose(["sweep=mine"]))
    assert err.value.key == key


def test_a_null_node_set_from_the_command_line():
    """Overrides into a node the config leaves null (OmegaConf 2.3 fails on typed null nodes)."""
    assert validate(compose(["ray.runtime_env={pip: [numpy]}"])).ray.runtime_env == {"pip": ["numpy"]}
    with pytest.raises(ConfigError) as err:
        compose(["~sweep", "sweep.name=x"])
    assert err.value.key == "sweep"
