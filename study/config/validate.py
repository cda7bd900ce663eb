"""Turn a composed config into typed, checked objects, or one ConfigError naming the key.

Types and unknown keys of ``run``/``ray``/``sweep`` come from the schemas (OmegaConf merge);
ranges are checked here.  ``machine``, ``kernel``, ``workload`` and ``policy`` go to their own
builders.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from study.config.cell import Cell
from study.config.schema import LimitsConfig, RayConfig, RunConfig, StudyConfig, SweepConfig
from study.engine.costs import slot_count
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
    """Merge ``cfg`` into the schema: unknown keys, wrong types and absent values fail here."""
    _check_grid_shape(cfg)
    cfg = _decode_interpolations(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(StudyConfig), cfg)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = err.full_key or str(err.key)
        raise ConfigError(key, f"unknown key; allowed: {_allowed_at(key)}") from None
    except MissingMandatoryValue as err:
        raise ConfigError(err.full_key or "config", "missing; every key of study/conf/config.yaml must have a value") from None
    except OmegaConfBaseException as err:
        raise ConfigError(err.full_key or "config", str(err).splitlines()[0]) from None


def _decode_interpolations(cfg: DictConfig | dict) -> DictConfig | dict:
    """``workload.threads=${oc.env:THREADS}`` as ``workload.threads=4``: an interpolation that
    resolves to text is read as a command-line value would be (``4`` an int, ``true`` a bool).

    The typed nodes (run, ray, limits) get this from their schema's conversion; the groups
    built by their own dataclass builders (machine, kernel, workload, policy) get it here, so
    an interpolation means the same everywhere.
    """
    if not isinstance(cfg, DictConfig):
        return cfg
    cfg = cfg.copy()

    def walk(node: DictConfig, where: str) -> None:
        for key in list(node.keys()):
            full = f"{where}.{key}"
            if OmegaConf.is_interpolation(node, key):
                try:
                    value = node[key]
                except OmegaConfBaseException as err:
                    raise ConfigError(full, f"cannot resolve {OmegaConf.to_container(node)[key]!r} "
                                            f"({str(err).splitlines()[0]})") from None
                if isinstance(value, str):
                    try:
                        value = yaml.safe_load(value) if value.strip() else value
                    except yaml.YAMLError:
                        pass
                with open_dict(node):
                    node[key] = value
            else:
                child = node._get_node(key)
                if isinstance(child, DictConfig):
                    walk(child, full)

    for group in GROUPS:
        if isinstance(cfg.get(group), DictConfig):
            walk(cfg[group], group)
    return cfg


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
                raise ConfigError(where, f"values name {axis} options (yaml files in study/conf/{axis}/), got {list(values)!r}")
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
    # a generous ceiling on events per round: each page and each working-set entry of each
    # thread, a few syscalls and faults, and per target CPU an IPI and a handler; jitter
    # multiplies a cost by at most ~e^(5 sigma)
    events = (workload.pages + workload.working_set + 16) * (workload.threads + 2) + 4 * machine.n_cpus
    for key in ("writes_per_round",):
        events += getattr(workload, key, 0) * 4
    sigma = max(machine.jitter_sigma, machine.ipi_jitter_sigma)
    worst = run.rounds * events * max(max_cost(machine), 1.0) * math.exp(5 * sigma)
    if worst + getattr(workload, "fault_roundtrip", 0.0) * run.rounds * events > _CYCLE_CEILING:
        raise ConfigError(f"{prefix}.rounds", f"{run.rounds} rounds of this cell could count up to {worst:.2g} cycles, "
                                              "beyond the int64 counters; lower run.rounds, costs or working_set")


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
