"""Turn a composed config into typed, checked objects, or one ConfigError naming the key.

One path for every node: types and unknown keys come from the schemas of study/config/schema.py
(checked while composing through Hydra's ConfigStore, and again here by an OmegaConf merge:
``run``/``ray``/``limits``/``sweep`` into StudyConfig, each group into its own schema, a
workload's chosen by its ``name``); ranges are checked here (run, ray, limits,
sweep) or by the groups' builders (Machine.from_dict, workload_from_dict, ...), which only
check ranges and cross-field rules and build.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from study.config.cell import Cell
from study.config.compose import type_message
from study.config.schema import LimitsConfig, RayConfig, RunConfig, StudyConfig, SweepConfig, group_schema
from study.engine.costs import slot_count
from study.policies.kernel import Kernel
from study.engine.machine import Machine
from study.errors import ConfigError
from study.policies import Policy
from study.workloads.spec import workload_from_dict

# Groups whose option names a yaml file; each has a schema (study/config/schema.py) and a builder.
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
    limits: LimitsConfig | None = None

    def cell(self) -> Cell:
        return Cell(self.machine, self.workload, self.policy, self.run, self.kernel)


def validate(cfg: DictConfig | dict) -> Settings:
    """Check every key, type and range of ``cfg``; raise ConfigError on the first bad one."""
    typed = structured(cfg)
    limits = check_limits(typed.limits)
    check_run(typed.run)
    check_ray(typed.ray, limits)
    if typed.sweep is not None:
        check_sweep(typed.sweep)
    machine, workload, policy, kernel = build_parts(typed.machine, typed.workload, typed.policy, typed.kernel)
    check_bounds(machine, workload, typed.run, limits)
    return Settings(machine, workload, policy, typed.run, typed.ray, typed.sweep, kernel, limits)


def build_cell(cfg: DictConfig | dict) -> Cell:
    """The one cell a composed config describes (for ``python -m study run``)."""
    return validate(cfg).cell()


def structured(cfg: DictConfig | dict) -> StudyConfig:
    """Merge ``cfg`` into the schemas: unknown keys, wrong types and absent values fail here.

    Interpolations are resolved first, everywhere alike: ``${oc.env:N}`` giving ``"4"`` is then
    read by the schema of its key (an int field takes ``4``, refuses ``"many"``), whether the
    key is ``run.rounds`` or ``workload.threads``.  The groups (machine, kernel, workload,
    policy) come back as plain data merged into their schemas, ready for ``build_parts``.
    """
    _check_grid_shape(cfg)
    data = _resolved(cfg)
    if not isinstance(data, dict):
        raise ConfigError("config", f"must be a mapping, got {type(data).__name__}")
    for node, schema in (("run", RunConfig), ("ray", RayConfig), ("limits", LimitsConfig)):
        if isinstance(data.get(node), dict):
            strict_bools(schema, data[node], node)
    try:
        # the groups are ``Any`` in StudyConfig: merged as they are here, checked below
        merged = OmegaConf.merge(OmegaConf.structured(StudyConfig), data)
        typed = OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = err.full_key or str(err.key)
        raise ConfigError(key, f"unknown key; allowed: {_allowed_at(key)}") from None
    except MissingMandatoryValue as err:
        raise ConfigError(err.full_key or "config", "missing; every key of conf/config.yaml must have a value") from None
    except OmegaConfBaseException as err:
        raise ConfigError(err.full_key or "config", type_message(str(err).splitlines()[0])) from None
    if typed.measure is not None:
        raise ConfigError("measure", "unknown key; only `python -m study measure` reads a measure grid")
    for group in GROUPS:
        setattr(typed, group, group_data(group, data[group]))
    return typed


def _resolved(cfg: DictConfig | dict) -> Any:
    """``cfg`` as plain data with every interpolation resolved; one that cannot be names its key."""
    if not isinstance(cfg, (DictConfig, ListConfig)):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(err.full_key or "config", f"cannot resolve: {str(err).splitlines()[0]}") from None


# (group, canonical JSON of its data) -> the data merged into its schema.  Checking is a pure
# function of the data, and a sweep checks the same machine or workload for hundreds of cells.
_CHECKED: dict[tuple[str, str], dict] = {}
_BASES: dict[type, DictConfig] = {}


def group_data(group: str, node: Any, prefix: str | None = None) -> dict:
    """One group's node merged into its schema, as plain data: an unknown key or a wrong type
    is a ConfigError naming the key (``machine.costs.invlpg``) and what is allowed."""
    prefix = prefix or group
    node = _resolved(node)
    if not isinstance(node, dict):
        raise ConfigError(prefix, f"must be a mapping (choose an option: {group}=<name>), got {node!r}")
    try:
        key = (group, json.dumps(node, sort_keys=True, default=repr))
    except (TypeError, ValueError):
        key = None
    if key is not None and key in _CHECKED:
        return copy.deepcopy(_CHECKED[key])
    schema = group_schema(group, node)
    if schema is None:
        from study.workloads.spec import WORKLOADS

        raise ConfigError(f"{prefix}.name", f"unknown workload {node.get('name')!r}; allowed: {', '.join(WORKLOADS)}")
    strict_bools(schema, node, prefix)
    if schema not in _BASES:
        _BASES[schema] = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(_BASES[schema], node)
        data = OmegaConf.to_container(merged, resolve=True)
    except ConfigKeyError as err:
        where = err.full_key or str(err.key)
        raise ConfigError(f"{prefix}.{where}", f"unknown key; allowed: {allowed_keys(schema, where)}") from None
    except OmegaConfBaseException as err:
        dotted = err.full_key or _not_a_mapping(schema, node)
        where = f"{prefix}.{dotted}" if dotted else prefix
        raise ConfigError(where, _type_message(err, schema, dotted)) from None
    if key is not None:
        if len(_CHECKED) > 4096:
            _CHECKED.clear()
        _CHECKED[key] = copy.deepcopy(data)
    return data


def strict_bools(schema: type, node: dict, prefix: str) -> None:
    """A switch is ``true`` or ``false`` (or that text, as an interpolation gives it): OmegaConf
    would read ``3`` or ``"yes"`` as true, and a typo must not switch a patch on."""
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        kind = hints.get(key)
        if kind is bool and not isinstance(value, bool) and not (
                isinstance(value, str) and value.strip().lower() in ("true", "false")):
            raise ConfigError(f"{prefix}.{key}", f"must be true or false, got {value!r}")
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            strict_bools(kind, value, f"{prefix}.{key}")


def _not_a_mapping(schema: type, node: dict, where: str = "") -> str:
    """The first key whose schema is a mapping (``costs``, ``costs.ipi_deliver``) but whose value
    is not: OmegaConf's merge error does not say which."""
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        kind = hints.get(key)
        if dataclasses.is_dataclass(kind):
            dotted = f"{where}{key}"
            if not isinstance(value, dict):
                return dotted
            inner = _not_a_mapping(kind, value, dotted + ".")
            if inner:
                return inner
    return ""


def allowed_keys(schema: type, dotted: str) -> str:
    """The keys of the (nested) schema that holds ``dotted``."""
    *parents, _ = dotted.split(".")
    for part in parents:
        hints = typing.get_type_hints(schema)
        if part not in hints or not dataclasses.is_dataclass(hints[part]):
            break
        schema = hints[part]
    return ", ".join(f.name for f in dataclasses.fields(schema))


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_message(err: OmegaConfBaseException, schema: type, dotted: str | None) -> str:
    """OmegaConf's complaint, said as the expected type when the key's type is known."""
    text = str(err).splitlines()[0]
    kind = None
    if dotted:
        node_schema = schema
        for part in dotted.split("."):
            hints = typing.get_type_hints(node_schema) if dataclasses.is_dataclass(node_schema) else {}
            kind = hints.get(part)
            node_schema = kind
    if kind in _TYPE_WORDS:
        value = getattr(err, "value", None)
        return f"must be {_TYPE_WORDS[kind]}, got {value!r}" if value is not None else f"must be {_TYPE_WORDS[kind]} ({text})"
    if dataclasses.is_dataclass(kind):
        return f"must be a mapping of {', '.join(f.name for f in dataclasses.fields(kind))}"
    return text


def _check_grid_shape(cfg: DictConfig | dict) -> None:
    """``sweep.grids`` must be a list of mappings of keys to lists; say where it is not.

    (The schema merge would name ``config`` or the wrong node for these.)
    """
    sweep = cfg.get("sweep") if isinstance(cfg, (dict, DictConfig)) else None
    if not isinstance(sweep, (dict, DictConfig)) or "grids" not in sweep:
        return
    try:
        grids = sweep["grids"]
    except OmegaConfBaseException:
        return  # an interpolation error: the merge below names it
    if grids is None:
        return
    shape = "a list of sub-grids, each a mapping of dotted keys to lists of values, e.g. [{policy: [strict, relaxed]}]"
    if not isinstance(grids, (list, ListConfig)):
        raise ConfigError("sweep.grids", f"must be {shape}; got {_short(grids)}")
    for i, grid in enumerate(grids):
        if not isinstance(grid, (dict, DictConfig)):
            raise ConfigError(f"sweep.grids[{i}]", f"must be a mapping of dotted keys to lists of values; got {_short(grid)}")
        for axis, values in grid.items():
            if not isinstance(values, (list, ListConfig)):
                raise ConfigError(f"sweep.grids[{i}].{axis}", f"must be a list of values, e.g. [{_short(values)}]; "
                                                            f"got {_short(values)}")


def _short(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_at(key: str) -> str:
    parent = key.rpartition(".")[0]
    schema = {"": StudyConfig, "run": RunConfig, "ray": RayConfig, "sweep": SweepConfig,
              "limits": LimitsConfig}.get(parent)
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


def check_limits(limits: LimitsConfig) -> LimitsConfig:
    for key in ("replicates", "rounds", "batch_memory_mb", "cpus"):
        if getattr(limits, key) < 1:
            raise ConfigError(f"limits.{key}", f"must be an integer >= 1, got {getattr(limits, key)}")
    if limits.ray_num_cpus is not None and limits.ray_num_cpus < 1:
        raise ConfigError("limits.ray_num_cpus", f"must be null (this host's CPUs) or >= 1, got {limits.ray_num_cpus}")
    return limits


def host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_ray(ray: RayConfig, limits: LimitsConfig | None = None) -> RayConfig:
    if ray.num_cpus is not None and ray.num_cpus < 1:
        raise ConfigError("ray.num_cpus", f"must be null (all cores) or an integer >= 1, got {ray.num_cpus}")
    if ray.num_cpus is not None and limits is not None and not ray.address:
        # every Ray CPU is a worker process with its own copy of the engine's arrays
        most = limits.ray_num_cpus or host_cpus()
        if ray.num_cpus > most:
            raise ConfigError("ray.num_cpus", f"{ray.num_cpus} is more than this host's {most} CPUs "
                                              f"(one worker process each); raise limits.ray_num_cpus to oversubscribe")
    if ray.cells_per_task < 1:
        raise ConfigError("ray.cells_per_task", f"must be an integer >= 1, got {ray.cells_per_task}")
    if ray.address is not None and not ray.address.strip():
        raise ConfigError("ray.address", "must be null or host:port")
    if ray.runtime_env is not None:
        unknown = sorted(set(ray.runtime_env) - RUNTIME_ENV_KEYS)
        if unknown:
            raise ConfigError(f"ray.runtime_env.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(RUNTIME_ENV_KEYS))}")
    if ray.include_dashboard:
        import importlib.util

        if importlib.util.find_spec("aiohttp") is None or importlib.util.find_spec("opencensus") is None:
            raise ConfigError("ray.include_dashboard", 'the dashboard needs Ray\'s extras: pip install "study[dashboard]"')
    return ray


# the fields of Ray's RuntimeEnv (ray.runtime_env.RuntimeEnv) a study run may set
RUNTIME_ENV_KEYS = {"working_dir", "py_modules", "py_executable", "pip", "uv", "conda", "container", "image_uri",
                    "env_vars", "excludes", "worker_process_setup_hook", "config", "nsight"}


def check_sweep(sweep: SweepConfig) -> SweepConfig:
    """The grid's shape; its values are checked cell by cell when the grid is expanded."""
    if not sweep.name or not sweep.name.replace("-", "_").isidentifier():
        raise ConfigError("sweep.name", f"must be a plain name (letters, digits, _ or -), got {sweep.name!r}")
    if sweep.max_cells < 1:
        raise ConfigError("sweep.max_cells", f"must be an integer >= 1, got {sweep.max_cells}")
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


# Bytes per replicate of the engine's state: per CPU and page (TLB valid/writable/dirty),
# per page (PTE bits), per CPU (generation, working set, masks) and per random slot; with
# temporaries, x4.  An estimate to refuse hopeless batches, not an accounting.
_BYTES_CPU_PAGE, _BYTES_PAGE, _BYTES_CPU, _BYTES_SLOT, _TEMPS = 3, 4, 40, 2, 4
# Integer cycles are int64: a replicate's total must stay far below 2**63.
_CYCLE_CEILING = 2.0 ** 60


def batch_bytes(machine, workload, batch: int) -> int:
    """Estimated engine memory of one batch of ``batch`` replicates."""
    c, p = workload.threads, workload.pages
    slots = slot_count(machine.n_cpus)
    per_replicate = c * p * _BYTES_CPU_PAGE + p * _BYTES_PAGE + c * _BYTES_CPU + slots * _BYTES_SLOT
    return _TEMPS * batch * per_replicate


def max_cost(machine) -> float:
    """The largest base cost of any event (generic over the Costs fields)."""
    import dataclasses

    values = []
    for f in dataclasses.fields(machine.costs):
        v = getattr(machine.costs, f.name)
        values += list(dataclasses.astuple(v)) if dataclasses.is_dataclass(v) else [v]
    return max([float(v) for v in values if isinstance(v, (int, float))] or [0.0])


def check_bounds(machine, workload, run: RunConfig, limits: LimitsConfig | None, prefix: str = "run") -> None:
    """The limits: CPUs, replicates, rounds, batch memory, and cycles that fit in int64."""
    if limits is None:
        return
    if machine.n_cpus > limits.cpus:
        raise ConfigError("machine.sockets", f"the machine has {machine.n_cpus} CPUs (sockets x cores_per_socket "
                                             f"x smt), more than limits.cpus={limits.cpus}; raise limits.cpus")
    for key in ("replicates", "batch_replicates", "max_replicates"):
        if getattr(run, key) > limits.replicates:
            raise ConfigError(f"{prefix}.{key}", f"{getattr(run, key)} is more than limits.replicates="
                                                 f"{limits.replicates}; raise limits.replicates to go further")
    if run.rounds > limits.rounds:
        raise ConfigError(f"{prefix}.rounds", f"{run.rounds} is more than limits.rounds={limits.rounds}; "
                                              "raise limits.rounds to go further")
    batch = min(run.batch_replicates, max(run.replicates, run.max_replicates if run.adaptive else 0))
    need = batch_bytes(machine, workload, batch) / 2**20
    if need > limits.batch_memory_mb:
        raise ConfigError(f"{prefix}.batch_replicates",
                          f"one batch of {batch} replicates x {workload.threads} CPUs x {workload.pages} pages needs "
                          f"~{need:.0f} MiB, more than limits.batch_memory_mb={limits.batch_memory_mb}; "
                          "lower run.batch_replicates or raise limits.batch_memory_mb")
    # a generous ceiling on the events of a round (the workload's bound); jitter multiplies a
    # cost by at most ~e^(5 sigma)
    events = workload.events_per_round(machine.n_cpus)
    sigma = max(machine.jitter_sigma, machine.ipi_jitter_sigma)
    worst = run.rounds * (events * max(max_cost(machine), 1.0) * math.exp(5 * sigma)
                          + workload.booked_cycles_per_round())
    if worst > _CYCLE_CEILING:
        raise ConfigError(f"{prefix}.rounds", f"{run.rounds} rounds of this cell could count up to {worst:.2g} cycles, "
                                              "beyond the int64 counters; lower run.rounds, costs or working_set")


def build_parts(machine: Any, workload: Any, policy: Any, kernel: Any) -> tuple[Machine, Any, Policy, Kernel]:
    """Machine, workload, policy and kernel: each merged into its schema (keys and types), then
    built by its own builder (ranges and cross-field rules); either raises ConfigError."""
    machine_obj = Machine.from_dict(group_data("machine", machine), prefix="machine")
    workload_obj = workload_from_dict(group_data("workload", workload), machine_obj, prefix="workload")
    policy_obj = Policy.from_dict(group_data("policy", policy), prefix="policy")
    kernel_obj = Kernel.from_dict(group_data("kernel", kernel), prefix="kernel")
    return machine_obj, workload_obj, policy_obj, kernel_obj
