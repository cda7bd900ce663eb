"""Structured-config schemas: the typed slots of the root config, and one schema per group option.

Hydra's structured-config pattern (its tutorial 5.1, one schema per option of a group): the root
schema ``StudyConfig``, stored as ``study_schema`` and first in conf/config.yaml's defaults list,
types every slot (``machine: MachineSchema``, ``kernel: KernelSchema``, ``workload:
WorkloadSchema``, ``policy: PolicySchema``, ``run``, ``ray``, ``limits``, ``sweep``), and each group
file names its own schema first in its defaults list (``machine_schema``; a workload's
``<name>_schema``, a subclass of ``WorkloadSchema`` as its class is one of WorkloadSpec).  Hydra and
OmegaConf check every key and type while composing, whichever file or override sets it, and a
key of one workload given to another is refused naming it.  The sweep group has no schema of its
own: its files are ``@package _global_`` (they set ``sweep`` and may size ``run``), typed by the
root's ``sweep`` slot; ``~sweep`` leaves it null.

The schemas are derived from the declared dataclasses (Machine, Costs, ByDistance, Kernel, Policy,
every workload class; RunConfig, RayConfig, LimitsConfig, SweepConfig): same fields, types,
defaults and inheritance, so the two never disagree.  One type differs on purpose: a switch
(``bool``) is ``Any`` here, because OmegaConf's BooleanNode reads ``1``, ``3``, ``"yes"`` or ``"on"``
as true; study.engine.machine.coerce, which builds every node, is the one place a switch must be
``true`` or ``false``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from study.errors import ConfigError

from study.config.settings import LimitsConfig, RayConfig, RunConfig, SweepConfig
from study.engine.machine import Machine
from study.policies import SWITCHES, Policy
from study.policies.kernel import Kernel
from study.workloads.spec import WORKLOADS, WorkloadSpec

_MIRRORS: dict[type, type] = {}


def mirror(cls: type, unset: tuple[str, ...] = ()) -> type:
    """The schema of dataclass ``cls``: a plain (not frozen) dataclass with its fields, types and
    defaults, a subclass of the schema of ``cls``'s dataclass base; a nested dataclass field gets
    the nested dataclass's schema, and a switch the type ``Any`` (see the module's doc).  The
    fields in ``unset`` default to null: their builder fills them in."""
    if cls in _MIRRORS:
        return _MIRRORS[cls]
    hints = typing.get_type_hints(cls)
    bases = tuple(mirror(b) for b in cls.__bases__ if dataclasses.is_dataclass(b))
    prototype = cls()
    fields = []
    for f in dataclasses.fields(cls):
        kind, default = hints[f.name], getattr(prototype, f.name)
        if dataclasses.is_dataclass(kind):
            fields.append((f.name, mirror(kind), field(default_factory=functools.partial(_schema_instance, default))))
        else:
            fields.append((f.name, _schema_type(kind), field(default=None if f.name in unset else default)))
    schema = dataclasses.make_dataclass(f"{cls.__name__.removesuffix('Config').removesuffix('Spec')}Schema", fields,
                                        bases=bases, namespace={"__doc__": f"Schema of {cls.__module__}.{cls.__qualname__}."})
    schema.__module__ = __name__
    _MIRRORS[cls] = schema
    return schema


def _schema_type(kind: Any) -> Any:
    """A field's type in its schema: its own, but ``Any`` for a switch (see the module's doc), and
    ``Optional[Any]`` for an optional mapping: OmegaConf 2.3 fails merging an override into a
    typed null ``Dict`` node (omegaconf#1360; ``ray.runtime_env={pip: [numpy]}``)."""
    if kind is bool:
        return Any
    if typing.get_origin(kind) is typing.Union and any(typing.get_origin(a) is dict for a in typing.get_args(kind)):
        return Optional[Any]
    return kind


def _schema_instance(value: Any) -> Any:
    """A dataclass instance as an instance of its schema (nested ones too)."""
    return mirror(type(value))(**{f.name: _schema_instance(v) if dataclasses.is_dataclass(v := getattr(value, f.name))
                                  else v for f in dataclasses.fields(value)})


MachineSchema = mirror(Machine)
KernelSchema = mirror(Kernel)
# a switch a policy file leaves out is null, and takes its preset's value when the policy is
# built (study.policies: a preset file names its preset only, so a new patch edits none)
PolicySchema = mirror(Policy, unset=SWITCHES)
WorkloadSchema = mirror(WorkloadSpec)
WORKLOAD_SCHEMAS: dict[str, type] = {name: mirror(cls) for name, cls in WORKLOADS.items()}
RunSchema, RaySchema, LimitsSchema, SweepSchema = map(mirror, (RunConfig, RayConfig, LimitsConfig, SweepConfig))


@dataclass
class StudyConfig:
    """The whole composed config: a typed slot per group and per settings node."""

    machine: MachineSchema = MISSING
    kernel: KernelSchema = MISSING
    workload: WorkloadSchema = MISSING
    policy: PolicySchema = MISSING
    run: RunSchema = field(default_factory=RunSchema)
    ray: RaySchema = field(default_factory=RaySchema)
    limits: LimitsSchema = field(default_factory=LimitsSchema)
    # only `python -m study sweep` needs one; `run` may compose with `~sweep`
    sweep: Optional[SweepSchema] = None
    # only `python -m study measure` composes one (+measure=NAME; study/measure/grid.py checks it)
    measure: Optional[Any] = None


# Hydra ConfigStore entries: (group, name) -> schema.  A group file names its schema first in
# its defaults list (``defaults: [machine_schema, _self_]``).
SCHEMA_SUFFIX = "_schema"
ROOT_SCHEMA = "study" + SCHEMA_SUFFIX
CONFIG_STORE: dict[tuple[str | None, str], type] = {
    (None, ROOT_SCHEMA): StudyConfig,
    ("machine", "machine" + SCHEMA_SUFFIX): MachineSchema,
    ("kernel", "kernel" + SCHEMA_SUFFIX): KernelSchema,
    ("policy", "policy" + SCHEMA_SUFFIX): PolicySchema,
    **{("workload", name + SCHEMA_SUFFIX): schema for name, schema in WORKLOAD_SCHEMAS.items()},
}
_STORED_IN: list = []   # the ConfigStore the schemas were stored in


def register() -> None:
    """Store the schemas in Hydra's ConfigStore, once per process (Hydra is imported here, when a
    config is first composed, never when the CLI starts)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    if _STORED_IN and _STORED_IN[0] is store:
        return
    for (group, name), schema in CONFIG_STORE.items():
        store.store(group=group, name=name, node=schema)
    _STORED_IN[:] = [store]


# --------------------------------------------------------------------------- what a schema allows

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}


def explain(err) -> ConfigError:
    """OmegaConf's exception as one ConfigError: ``full_key`` names the key, and the schema says
    what is allowed there (the keys of the node that refused it, ``object_type``, or the key's
    declared type)."""
    from omegaconf.errors import (ConfigKeyError, InterpolationResolutionError, InterpolationValidationError,
                                  MissingMandatoryValue)

    key = err.full_key or str(err.key or "config")
    if isinstance(err, InterpolationResolutionError) and not isinstance(err, InterpolationValidationError):
        return ConfigError(key, f"cannot resolve: {str(err).splitlines()[0]}")
    if isinstance(err, (ConfigKeyError, AttributeError)):
        schema = err.object_type if dataclasses.is_dataclass(err.object_type) else None
        allowed = ", ".join(f.name for f in dataclasses.fields(schema)) if schema else "none"
        if schema is WorkloadSchema:  # a file without a defaults list: only the knobs every workload has
            allowed += (f" (a workload's own knobs need its schema first in the file's defaults list, e.g. "
                        f"defaults: [uffd_wp{SCHEMA_SUFFIX}, _self_])")
        return ConfigError(key, f"unknown key; allowed: {allowed}")
    if isinstance(err, MissingMandatoryValue):
        return ConfigError(key, "missing; every key of conf/config.yaml must have a value")
    kind, optional = _optional(_declared(err, key))
    base = typing.get_origin(kind) or kind
    got = f", got {err.value!r}" if err.value is not None else ""
    if dataclasses.is_dataclass(base):
        return ConfigError(key, f"must be a mapping of {', '.join(f.name for f in dataclasses.fields(base))}{got}")
    if base in _TYPE_WORDS:
        return ConfigError(key, f"must be {_TYPE_WORDS[base]}{' or null' if optional else ''}{got}")
    return ConfigError(key, str(err).splitlines()[0])


def _declared(err, key: str) -> Any:
    """The declared type of ``key``: from the node that refused it, else down the root schema."""
    leaf = key.rpartition(".")[2]
    if dataclasses.is_dataclass(err.object_type) and leaf in (hints := typing.get_type_hints(err.object_type)):
        return hints[leaf]
    kind: Any = StudyConfig
    for part in key.split("."):
        kind = _optional(kind)[0]
        if not dataclasses.is_dataclass(kind):
            return None
        kind = typing.get_type_hints(kind).get(part.split("[", 1)[0])
    return kind


def _optional(kind: Any) -> tuple[Any, bool]:
    """``Optional[X]`` -> (X, True); any other type -> (it, False)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return kind, False
