"""Structured-config schemas of every node: ``run``, ``ray``, ``sweep``, ``limits`` and the groups
``machine`` (with ``costs`` and its per-distance-class costs), ``kernel``, ``policy`` and ``workload``
(one schema per workload kind: a tagged union on ``name``).

``run``/``ray``/``sweep``/``limits``: every value is MISSING so that conf/config.yaml stays
the one place their defaults are written.  Their root, StudyConfig, is registered as
``study_schema`` and is first in config.yaml's defaults list (Hydra's schema for a primary
config), so composing checks their keys and types.  The sweep group has no schema of its own:
its files are ``@package _global_`` (they set ``sweep`` and may size ``run``), so the root
schema's ``sweep`` node types them, whichever file or override sets it, and ``~sweep`` leaves it
None.  The group schemas mirror the engine's frozen
dataclasses (Machine, Costs, ByDistance, Kernel, Policy, MprotectToggle, UffdWp, MadvFree):
same fields, types and defaults, generated here so the engine stays free of OmegaConf and the
two can never disagree.  They are registered in Hydra's ConfigStore (``register()``) as
``machine/machine_schema``, ``kernel/kernel_schema``, ``policy/policy_schema`` and
``workload/<kind>_schema``, and the group yaml files start from them through their defaults
list; ``study.config.validate`` merges every group into its schema again whatever the yaml's
defaults list (a user preset may have none).  Merging rejects unknown keys and wrong types,
naming the key; value ranges and cross-field rules stay with the engine's builders
(Machine.from_dict, Kernel.from_dict, workload_from_dict, Policy.from_dict).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from study.policies.kernel import Kernel
from study.engine.machine import ByDistance, Costs, Machine
from study.policies import Policy
from study.workloads.spec import WORKLOADS


@dataclass
class RunConfig:
    """How much to simulate per cell, from which root seed, and where to put it."""

    replicates: int = MISSING
    # operations (rounds of the workload's loop) per replicate
    rounds: int = MISSING
    # unbooked rounds before the measured ones: the means describe the steady state, not
    # the cold start (empty TLBs, every CPU current, the tlb_gen line on CPU 0)
    warmup_rounds: int = MISSING
    seed: int = MISSING
    # replicates per simulate_cell call; batch b of a cell is one random stream, so the
    # batch size (not the Ray chunking) fixes the numbers
    batch_replicates: int = MISSING
    adaptive: bool = MISSING
    # relative 95% CI half-width of the main metric at which adaptive replication stops
    ci_target: float = MISSING
    max_replicates: int = MISSING
    max_samples: int = MISSING
    output_dir: str = MISSING


@dataclass
class RayConfig:
    """Where the cells run."""

    # None: a local instance, or the cluster named by $RAY_ADDRESS
    address: Optional[str] = MISSING
    # CPUs of the local instance; None = all cores (ignored when joining a cluster)
    num_cpus: Optional[int] = MISSING
    cells_per_task: int = MISSING
    # the dashboard of the instance started here (needs `pip install study[dashboard]`)
    include_dashboard: bool = MISSING
    # Ray's runtime_env for the tasks (working_dir, py_modules, pip, env_vars, ...); None: nothing
    # for a local instance, and the study package itself (py_modules) when joining a cluster
    runtime_env: Optional[Dict[str, Any]] = MISSING


@dataclass
class SweepConfig:
    """A named list of sub-grids; each sub-grid maps dotted config keys to lists of values."""

    name: str = MISSING
    description: str = ""
    grids: List[Dict[str, List[Any]]] = MISSING
    # most cells (grid points before duplicates are dropped) a sweep may plan; a bigger grid
    # is refused before it is expanded unless this is raised explicitly
    max_cells: int = 10000


@dataclass
class LimitsConfig:
    """Upper bounds checked before any work; each can be raised explicitly (limits.<key>=N)."""

    # replicates per cell (run.replicates, run.max_replicates, run.batch_replicates)
    replicates: int = MISSING
    # run.rounds
    rounds: int = MISSING
    # estimated engine memory of one batch (batch_replicates x CPUs x pages), MiB
    batch_memory_mb: int = MISSING
    # CPUs of a machine (sockets x cores_per_socket x smt)
    cpus: int = MISSING
    # ray.num_cpus at most this; None = this host's CPU count
    ray_num_cpus: Optional[int] = MISSING


@dataclass
class StudyConfig:
    """The whole composed config."""

    machine: Any = MISSING
    kernel: Any = MISSING
    workload: Any = MISSING
    policy: Any = MISSING
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # only `python -m study sweep` needs one; `run` may compose with `~sweep`
    sweep: Optional[SweepConfig] = None
    # only `python -m study measure` composes one (+measure=NAME; study/measure/grid.py checks it)
    measure: Optional[Any] = None


# --------------------------------------------------------------------------- group schemas

_MIRRORS: dict[type, type] = {}


def _schema_instance(value: Any) -> Any:
    """An engine dataclass instance as an instance of its schema (nested ones too)."""
    schema = mirror(type(value))
    return schema(**{f.name: _schema_instance(v) if dataclasses.is_dataclass(v := getattr(value, f.name)) else v
                     for f in dataclasses.fields(value)})


def mirror(cls: type, name: str | None = None) -> type:
    """The schema of engine dataclass ``cls``: a plain (not frozen) dataclass with the same fields,
    types and defaults; a nested dataclass field gets the nested dataclass's schema."""
    if cls in _MIRRORS:
        return _MIRRORS[cls]
    hints = typing.get_type_hints(cls)
    prototype = cls()
    fields = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            default = getattr(prototype, f.name)
            fields.append((f.name, mirror(kind), field(default_factory=lambda d=default: _schema_instance(d))))
        else:
            fields.append((f.name, kind, field(default=getattr(prototype, f.name))))
    name = name or f"{cls.__name__}Schema"
    schema = dataclasses.make_dataclass(name, fields, namespace={"__doc__": f"Schema of {cls.__module__}.{cls.__qualname__}."})
    schema.__module__ = __name__
    _MIRRORS[cls] = schema
    return schema


ByDistanceSchema = mirror(ByDistance)
CostsSchema = mirror(Costs)
MachineSchema = mirror(Machine)
KernelSchema = mirror(Kernel)
PolicySchema = mirror(Policy)
# the tagged union: the schema of a workload is chosen by its ``name``
WORKLOAD_SCHEMAS: dict[str, type] = {name: mirror(cls) for name, cls in WORKLOADS.items()}

# Hydra ConfigStore entries: (group, name) -> schema.  A group file names its schema first in
# its defaults list (``defaults: [machine_schema, _self_]``).
SCHEMA_SUFFIX = "_schema"
CONFIG_STORE: dict[tuple[str, str], type] = {
    ("machine", "machine" + SCHEMA_SUFFIX): MachineSchema,
    ("kernel", "kernel" + SCHEMA_SUFFIX): KernelSchema,
    ("policy", "policy" + SCHEMA_SUFFIX): PolicySchema,
    **{("workload", name + SCHEMA_SUFFIX): schema for name, schema in WORKLOAD_SCHEMAS.items()},
}


ROOT_SCHEMA = "study" + SCHEMA_SUFFIX


def register(typed: bool = True) -> None:
    """Store the schemas in Hydra's ConfigStore (called before each composition; Hydra is
    imported here, never when the CLI starts).  ``typed=False`` stores the root schema empty
    (study.config.compose composes so to explain a value the root schema refused).

    Storing converts every schema to a config, a tenth of a composition's time; when the
    store still holds the very entries of the last call with the same ``typed``, they are
    kept (Hydra hands out copies of stored entries, never the entries themselves)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    if _REGISTERED.get("typed") == typed and _REGISTERED.get("store") is store and all(
            _stored(store, group, name) is node for (group, name), node in _REGISTERED["nodes"].items()):
        return
    store.store(name=ROOT_SCHEMA, node=StudyConfig if typed else {})
    for (group, name), schema in CONFIG_STORE.items():
        store.store(group=group, name=name, node=schema)
    _REGISTERED.update(typed=typed, store=store, nodes={
        (group, name): _stored(store, group, name) for group, name in [(None, ROOT_SCHEMA), *CONFIG_STORE]})


# What the last register() stored: its ``typed``, the store, and each (group, name) -> entry.
_REGISTERED: dict[str, Any] = {}


def _stored(store, group: str | None, name: str):
    """The entry of the ConfigStore at ``group/name`` (None when absent)."""
    node = store.repo
    for part in (group.split("/") if group else []):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get(f"{name}.yaml") if isinstance(node, dict) else None


def group_schema(group: str, data: Any) -> type:
    """The schema of one group's node (a workload's by its ``name``)."""
    if group == "workload":
        name = data.get("name") if isinstance(data, dict) else None
        return WORKLOAD_SCHEMAS.get(name) if isinstance(name, str) else None
    return {"machine": MachineSchema, "kernel": KernelSchema, "policy": PolicySchema}[group]
