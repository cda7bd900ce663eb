"""Turn a composed config into typed, checked objects, or one ConfigError naming the key.

Types and unknown keys of ``run``/``ray``/``sweep`` come from the schemas (OmegaConf merge);
ranges are checked here.  ``machine``, ``kernel``, ``workload`` and ``policy`` go to their own
builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from study.config.cell import Cell
from study.config.schema import RayConfig, RunConfig, StudyConfig, SweepConfig
from study.engine.kernel import Kernel
from study.engine.machine import Machine
from study.errors import ConfigError
from study.policies import Policy
from study.workloads.spec import workload_from_dict

# Groups whose option names a yaml file and whose fields are checked by the from_dict builders.
GROUPS = ("machine", "kernel", "workload", "policy")


@dataclass(frozen=True)
class Settings:
    """A validated config: the built cell parts plus the typed run/ray/sweep nodes."""

    machine: Machine
    workload: Any  # a WorkloadSpec subclass
    policy: Policy
    run: RunConfig
    ray: RayConfig
    sweep: SweepConfig | None
    kernel: Kernel

    def cell(self) -> Cell:
        return Cell(self.machine, self.workload, self.policy, self.run, self.kernel)


def validate(cfg: DictConfig | dict) -> Settings:
    """Check every key, type and range of ``cfg``; raise ConfigError on the first bad one."""
    typed = structured(cfg)
    check_run(typed.run)
    check_ray(typed.ray)
    if typed.sweep is not None:
        check_sweep(typed.sweep)
    machine, workload, policy, kernel = build_parts(typed.machine, typed.workload, typed.policy, typed.kernel)
    return Settings(machine, workload, policy, typed.run, typed.ray, typed.sweep, kernel)


def build_cell(cfg: DictConfig | dict) -> Cell:
    """The one cell a composed config describes (for ``python -m study run``)."""
    return validate(cfg).cell()


def structured(cfg: DictConfig | dict) -> StudyConfig:
    """Merge ``cfg`` into the schema: unknown keys, wrong types and absent values fail here."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(StudyConfig), cfg)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = err.full_key or str(err.key)
        raise ConfigError(key, f"unknown key; allowed: {_allowed_at(key)}") from None
    except MissingMandatoryValue as err:
        raise ConfigError(err.full_key or "config", "missing; every key of conf/config.yaml must have a value") from None
    except OmegaConfBaseException as err:
        raise ConfigError(err.full_key or "config", str(err).splitlines()[0]) from None


def _allowed_at(key: str) -> str:
    parent = key.rpartition(".")[0]
    schema = {"": StudyConfig, "run": RunConfig, "ray": RayConfig, "sweep": SweepConfig}.get(parent)
    if schema is None:
        return "see study/config/schema.py"
    return ", ".join(schema.__dataclass_fields__)


def check_run(run: RunConfig, prefix: str = "run") -> RunConfig:
    """Ranges of the run settings."""
    for key in ("replicates", "rounds", "batch_replicates", "max_replicates"):
        if getattr(run, key) < 1:
            raise ConfigError(f"{prefix}.{key}", f"must be an integer >= 1, got {getattr(run, key)}")
    if run.warmup_rounds < 0:
        raise ConfigError(f"{prefix}.warmup_rounds", f"must be an integer >= 0, got {run.warmup_rounds}")
    if run.seed < 0:
        # SeedSequence entropy must be non-negative
        raise ConfigError(f"{prefix}.seed", f"must be an integer >= 0, got {run.seed}")
    if not 0.0 < run.ci_target < 1.0:
        raise ConfigError(f"{prefix}.ci_target", f"must be a relative half-width in (0, 1), got {run.ci_target}")
    if run.max_samples < 0:
        raise ConfigError(f"{prefix}.max_samples", f"must be an integer >= 0, got {run.max_samples}")
    if run.adaptive and run.max_replicates < run.replicates:
        raise ConfigError(f"{prefix}.max_replicates",
                          f"must be >= run.replicates ({run.replicates}) when run.adaptive=true, got {run.max_replicates}")
    if not run.output_dir:
        raise ConfigError(f"{prefix}.output_dir", "must be a non-empty path")
    return run


def check_ray(ray: RayConfig) -> RayConfig:
    if ray.num_cpus is not None and ray.num_cpus < 1:
        raise ConfigError("ray.num_cpus", f"must be null (all cores) or an integer >= 1, got {ray.num_cpus}")
    if ray.cells_per_task < 1:
        raise ConfigError("ray.cells_per_task", f"must be an integer >= 1, got {ray.cells_per_task}")
    if ray.address is not None and not ray.address.strip():
        raise ConfigError("ray.address", "must be null or host:port")
    return ray


def check_sweep(sweep: SweepConfig) -> SweepConfig:
    """The grid's shape; its values are checked cell by cell when the grid is expanded."""
    if not sweep.name or not sweep.name.replace("-", "_").isidentifier():
        raise ConfigError("sweep.name", f"must be a plain name (letters, digits, _ or -), got {sweep.name!r}")
    if not sweep.grids:
        raise ConfigError("sweep.grids", "must hold at least one sub-grid (a mapping of dotted keys to value lists)")
    for i, grid in enumerate(sweep.grids):
        if not grid:
            raise ConfigError(f"sweep.grids[{i}]", "an empty sub-grid; give at least one axis, e.g. policy: [strict, relaxed]")
        for axis, values in grid.items():
            where = f"sweep.grids[{i}].{axis}"
            root = axis.split(".", 1)[0]
            if root not in GROUPS and root != "run":
                raise ConfigError(where, "unknown axis; allowed: machine, kernel, workload, policy (options) "
                                         "or dotted keys under machine., kernel., workload., policy., run.")
            if axis in ("run.output_dir",):
                raise ConfigError(where, "not a grid axis (outputs of one sweep live in one place)")
            if not values:
                raise ConfigError(where, "must list at least one value")
            if axis in GROUPS and not all(isinstance(v, str) for v in values):
                raise ConfigError(where, f"values name {axis} options (yaml files in conf/{axis}/), got {list(values)!r}")
    return sweep


def build_parts(machine: Any, workload: Any, policy: Any, kernel: Any) -> tuple[Machine, Any, Policy, Kernel]:
    """Machine, workload, policy and kernel through their own builders (which raise ConfigError)."""
    machine_obj = Machine.from_dict(_plain(machine, "machine"), prefix="machine")
    workload_obj = workload_from_dict(_plain(workload, "workload"), machine_obj, prefix="workload")
    policy_obj = Policy.from_dict(_plain(policy, "policy"), prefix="policy")
    kernel_obj = Kernel.from_dict(_plain(kernel, "kernel"), prefix="kernel")
    return machine_obj, workload_obj, policy_obj, kernel_obj


def _plain(node: Any, key: str) -> dict:
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, dict):
        raise ConfigError(key, f"must be a mapping (choose an option: {key}=<name>), got {node!r}")
    return node
