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


def test_the_search_path_plugin_puts_the_user_directory_before_the_shipped_tree(tmp_path, monkeypatch):
    """hydra_plugins/study_user_config is a SearchPathPlugin: Hydra hands it every search path; on
    the study's tree it puts the user directory right before the tree (first match wins, so a user
    preset of a shipped name replaces it), on another Hydra app's tree it does nothing."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    compose([])   # registers the plugin where an editable install hides it from Hydra's scan (hydra#2359)
    assert "StudyUserConfig" in [p.__name__ for p in Plugins.instance().discover(SearchPathPlugin)]
    user = tmp_path / "mine"
    (user / "policy").mkdir(parents=True)
    (user / "policy" / "strict.yaml").write_text("name: strict\nrelaxed_flush_on_upgrade: true\n")
    other = tmp_path / "other_app"
    other.mkdir()
    (other / "config.yaml").write_text("lr: 0.1\n")
    monkeypatch.setenv("STUDY_CONFIG_DIR", str(user))

    def providers(directory: Path) -> list[tuple[str, str]]:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            return [(s.provider, s.path) for s in GlobalHydra.instance().config_loader().get_sources()]

    study_path = providers(config_dir())
    names = [provider for provider, _ in study_path]
    assert names.index("study-user") == names.index("main") - 1
    assert study_path[names.index("study-user")][1] == str(user.resolve())
    assert "study-user" not in [provider for provider, _ in providers(other)]
    assert build_cell(compose(["policy=strict"])).policy.relaxed_flush_on_upgrade      # the user's file wins
    monkeypatch.setenv("STUDY_CONFIG_DIR", os.devnull)                                  # --no-user-config
    assert "study-user" not in [provider for provider, _ in providers(config_dir())]
    assert not build_cell(compose(["policy=strict"])).policy.relaxed_flush_on_upgrade


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
    # calibrate and the seed table use study.policies.kernel's constants; the configs must agree
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
    from study.config.schema import ROOT_SCHEMA, RunSchema, StudyConfig, SweepSchema

    defaults = yaml.safe_load((config_dir() / "config.yaml").read_text())["defaults"]
    assert defaults[:2] == [ROOT_SCHEMA, "_self_"] and ROOT_SCHEMA == "study_schema"
    cfg = compose(["sweep=quick"])
    assert OmegaConf.get_type(cfg) is StudyConfig and OmegaConf.get_type(cfg.run) is RunSchema
    assert OmegaConf.get_type(cfg.sweep) is SweepSchema and cfg.run.rounds == 200
    assert compose(["sweep=quick", "run.rounds=7"]).run.rounds == 7
    assert compose(["~sweep"]).sweep is None and validate(compose(["~sweep"])).sweep is None


def test_the_group_slots_are_typed_and_each_workload_schema_subclasses_the_workload_schema():
    """Hydra's tutorial 5.1: the root declares each slot's type, each option's schema is a
    subclass of it (as each workload class is of WorkloadSpec), and the schemas are the declared
    dataclasses' own fields."""
    import dataclasses
    import typing

    from study.config.schema import (KernelSchema, MachineSchema, PolicySchema, StudyConfig, WORKLOAD_SCHEMAS,
                                     WorkloadSchema)
    from study.workloads.spec import WORKLOADS, WorkloadSpec

    hints = typing.get_type_hints(StudyConfig)
    assert (hints["machine"], hints["kernel"], hints["workload"], hints["policy"]) == (
        MachineSchema, KernelSchema, WorkloadSchema, PolicySchema)
    assert [f.name for f in dataclasses.fields(WorkloadSchema)] == [f.name for f in dataclasses.fields(WorkloadSpec)]
    for name, cls in WORKLOADS.items():
        schema = WORKLOAD_SCHEMAS[name]
        assert issubclass(schema, WorkloadSchema) and schema is not WorkloadSchema
        assert [f.name for f in dataclasses.fields(schema)] == [f.name for f in dataclasses.fields(cls)]
        assert OmegaConf.get_type(compose([f"workload={name}"]).workload) is schema
    assert OmegaConf.get_type(compose([]).machine) is MachineSchema


@pytest.mark.parametrize("overrides, key, other", [
    (["workload=mprotect_toggle", "workload.write_rate=0.5"], "workload.write_rate", "remote_access_rate"),
    (["workload=uffd_wp", "workload.remote_write_share=0.5"], "workload.remote_write_share", "write_likely"),
    (["workload=madv_free", "workload.writes_per_round=2"], "workload.writes_per_round", "lazy_wake_rate"),
])
def test_a_workload_key_on_the_wrong_workload_is_refused_while_composing(overrides, key, other):
    """The slot holds the chosen option's schema: another workload's knob is an unknown key there,
    refused by Hydra's composition itself (not later), naming the key and the option's keys."""
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert err.value.key == key and err.value.allowed.startswith("unknown key; allowed: ") and other in err.value.allowed
    assert key.split(".")[1] not in err.value.allowed


def test_a_user_workload_preset_is_typed_by_the_schema_its_defaults_list_names(tmp_path, monkeypatch):
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "mine.yaml").write_text("defaults: [uffd_wp_schema, _self_]\nname: uffd_wp\n"
                                                     "threads: 4\nremote_access_rate: 0.5\n")
    monkeypatch.setenv("STUDY_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        compose(["workload=mine"])
    assert err.value.key == "workload.remote_access_rate" and "write_rate" in err.value.allowed


@pytest.mark.parametrize("override, cls, field", [
    ("machine.costs.invlpg=-5", "Costs", "invlpg"),
    ("machine.costs.ipi_deliver.socket=1e9", "ByDistance", "socket"),
    ("machine.jitter_sigma=2", "Machine", "jitter_sigma"),
    ("run.ci_target=1.5", "RunConfig", "ci_target"),
    ("run.warmup_rounds=-1", "RunConfig", "warmup_rounds"),
    ("ray.cells_per_task=0", "RayConfig", "cells_per_task"),
    ("limits.batch_memory_mb=0", "LimitsConfig", "batch_memory_mb"),
    ("workload.pages=600", "MprotectToggle", "pages"),
    ("workload.lazy_share=-0.5", "MprotectToggle", "lazy_share"),
])
def test_one_pass_names_the_key_and_the_declared_range(override, cls, field):
    """A value of the right type out of its range passes composition; the one validation pass
    refuses it in one line naming the key and the range its declaration (study.params) gives."""
    import dataclasses

    from study.config import settings
    from study.engine import machine
    from study.params import declaration
    from study.workloads.mprotect_toggle import MprotectToggle

    owner = {**vars(machine), **vars(settings), "MprotectToggle": MprotectToggle}[cls]
    spec = declaration(next(f for f in dataclasses.fields(owner) if f.name == field))
    key = override.split("=")[0]
    cfg = compose([override])   # keys and types are fine: composition accepts it
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == key
    assert err.value.allowed.startswith(f"must be {spec.allowed()}") and ", got " in err.value.allowed


def test_every_field_of_the_machine_and_the_settings_is_declared_with_unit_and_doc():
    from study.config.settings import LimitsConfig, RayConfig, RunConfig, SweepConfig
    from study.engine.machine import ByDistance, Costs
    from study.params import undeclared

    for cls in (Machine, Costs, ByDistance, RunConfig, RayConfig, LimitsConfig, SweepConfig):
        assert undeclared(cls) == [], cls


@pytest.mark.parametrize("where, text, key", [
    ("override", "policy.relaxed_flush_on_upgrade=3", "policy.relaxed_flush_on_upgrade"),
    ("override", "run.adaptive=yes", "run.adaptive"),
    ("override", "machine.pti=1", "machine.pti"),
    ("machine", "name: mine\npti: 'on'\n", "machine.pti"),
    ("sweep", "sweep: {name: mine, grids: [{policy: [strict]}]}\nray: {include_dashboard: 1}\n",
     "ray.include_dashboard"),
])
def test_a_switch_is_true_or_false_wherever_it_is_set(where, text, key, tmp_path, monkeypatch):
    """OmegaConf reads 1, 3, yes and on as true; the one check of a switch (the builder's) refuses
    them from the command line, a preset and a sweep file alike."""
    overrides = [text]
    if where != "override":
        (tmp_path / where).mkdir()
        (tmp_path / where / "mine.yaml").write_text(("# @package _global_\n" if where == "sweep" else "") + text)
        monkeypatch.setenv("STUDY_CONFIG_DIR", str(tmp_path))
        overrides = [f"{where}=mine"]
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert err.value.key == key and err.value.allowed.startswith("must be true or false, got ")
    node, name = key.split(".")
    built = validate(compose([f"{key}=${{oc.env:SWITCH,false}}"]))   # the text an interpolation gives
    assert getattr(getattr(built, node), name) is False


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


def test_a_policy_file_names_its_preset_and_the_registry_fills_the_switches():
    """conf/policy/relaxed.yaml lists no switch: every RFC patch of the registry is on, so a new
    patch needs no edit of the preset files; an override still switches one off."""
    from study.policies import IDEAS, RELAXED, SWITCHES, UNSAFE

    assert build_cell(compose(["policy=relaxed"])).policy == RELAXED
    assert build_cell(compose(["policy=unsafe"])).policy == UNSAFE
    assert not any(build_cell(compose(["policy=strict"])).policy.switches().values())
    off = build_cell(compose(["policy=relaxed", "policy.clean_anon_writable=false"])).policy
    assert [s for s in SWITCHES if getattr(off, s) != getattr(RELAXED, s)] == ["clean_anon_writable"]
    for name in ("strict", "relaxed", "unsafe"):
        data = yaml.safe_load((config_dir() / "policy" / f"{name}.yaml").read_text())
        assert not set(data) & set(SWITCHES), name
    assert len(IDEAS) == sum(getattr(RELAXED, s) for s in SWITCHES)


def test_policy_without_each_is_one_sub_grid_per_rfc_patch():
    """The attribution variants come from the registry: ``policy.without: [each]`` expands to one
    sub-grid per idea, that switch off; a name that is no idea is refused naming the axis."""
    from study.policies import IDEAS
    from study.runner import plan

    p = plan(["sweep=quick", "run.replicates=2", "run.batch_replicates=2"], name="abl",
             grid={"policy": ["relaxed"], "policy.without": ["each"]})
    switched_off = [next(k for k, v in gc.cell.policy.switches().items() if not v and k in IDEAS) for gc in p.cells]
    assert switched_off == list(IDEAS) and [gc.grid for gc in p.cells] == list(range(len(IDEAS)))
    assert [dict(gc.point)[f"policy.{s}"] for gc, s in zip(p.cells, IDEAS)] == [False] * len(IDEAS)
    with pytest.raises(ConfigError) as err:
        plan(["sweep=quick"], name="abl", grid={"policy": ["relaxed"], "policy.without": ["unsafe_dirty_demote"]})
    assert err.value.key == "sweep.grids[0].policy.without"
