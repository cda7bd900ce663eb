"""The one validation pass: a composed config to built, checked objects, or one ConfigError naming the key.

Composing (study.config.compose) has checked every key and type against the typed schemas.  This
pass reads the composition once, as plain data with every interpolation resolved (a value an
interpolation gives is then typed by its key's schema, wherever the key is), and builds each node
from its declaration, each the same way:

* ``build_dataclass`` (study.engine.machine): the types, and the one check that a switch is
  ``true`` or ``false``; a key its class does not have (``+run.bogus=1``: Hydra adds keys given
  with ``+`` even to a typed node) is refused there too;
* ``study.params.check``: every declared range (the declaration's words make the error);
* the class's own cross-field rules (Machine.validate, WorkloadSpec.validate, RunConfig.validate,
  ...), then the rules across nodes (RayConfig.check_host, LimitsConfig.check_cell).

A grid's cells are built by the same functions (study.runner.grid), from the composition of their
group options with the grid point's values set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from study.config.cell import Cell
from study.config.schema import StudyConfig, explain
from study.config.settings import LimitsConfig, RayConfig, RunConfig, SweepConfig
from study.engine.machine import Machine
from study.errors import ConfigError
from study.policies import Policy
from study.policies.kernel import Kernel
from study.workloads.spec import WorkloadSpec, workload_from_dict

__all__ = ["Settings", "build_cell", "build_parts", "resolved", "validate"]


@dataclass(frozen=True)
class Settings:
    """A validated config: the built cell parts plus the run, ray, sweep and limits nodes."""

    machine: Machine
    workload: WorkloadSpec
    policy: Policy
    run: RunConfig
    ray: RayConfig
    sweep: SweepConfig | None
    kernel: Kernel
    limits: LimitsConfig

    def cell(self) -> Cell:
        return Cell(self.machine, self.workload, self.policy, self.run, self.kernel)


def validate(cfg: DictConfig | dict) -> Settings:
    """Check every key, type, range and rule of ``cfg``; raise ConfigError on the first bad one."""
    data = resolved(cfg)
    if not isinstance(data, dict):
        raise ConfigError("config", f"must be a mapping, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(StudyConfig)]
    for key in data:
        if key not in known:
            raise ConfigError(str(key), f"unknown key; allowed: {', '.join(known)}")
    if data.get("measure") is not None:
        raise ConfigError("measure", "unknown key; only `python -m study measure` reads a measure grid")
    limits = LimitsConfig.from_dict(data.get("limits"), "limits")
    run = RunConfig.from_dict(data.get("run"), "run")
    ray = RayConfig.from_dict(data.get("ray"), "ray")
    ray.check_host(limits)
    sweep = SweepConfig.from_dict(data["sweep"], "sweep") if data.get("sweep") is not None else None
    machine, workload, policy, kernel = build_parts(*(data.get(g) for g in ("machine", "workload", "policy", "kernel")))
    limits.check_cell(machine, workload, run)
    return Settings(machine, workload, policy, run, ray, sweep, kernel, limits)


def build_cell(cfg: DictConfig | dict) -> Cell:
    """The one cell a composed config describes (for ``python -m study run``)."""
    return validate(cfg).cell()


def resolved(cfg: DictConfig | dict) -> Any:
    """``cfg`` as plain data, every interpolation resolved; a value that cannot be names its key."""
    if not isinstance(cfg, (DictConfig, ListConfig)):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise explain(err) from None


def build_parts(machine: Any, workload: Any, policy: Any, kernel: Any) -> tuple[Machine, Any, Policy, Kernel]:
    """Machine, workload, policy and kernel from plain data, each built and checked by its own
    builder; any of them raises ConfigError naming the key."""
    for group, node in (("machine", machine), ("workload", workload), ("policy", policy), ("kernel", kernel)):
        if not isinstance(node, dict):
            raise ConfigError(group, f"must be a mapping (choose an option: {group}=<name>), got {node!r}")
    machine_obj = Machine.from_dict(machine, prefix="machine")
    workload_obj = workload_from_dict(workload, machine_obj, prefix="workload")
    kernel_obj = Kernel.from_dict(kernel, prefix="kernel")
    workload_obj.check_kernel(kernel_obj, prefix="workload")
    return machine_obj, workload_obj, Policy.from_dict(policy, prefix="policy"), kernel_obj
