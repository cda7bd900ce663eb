"""The config layer: compose conf/ with Hydra, validate it, and build cells from it.

    cfg = compose(["workload=uffd_wp", "workload.threads=4"])   # DictConfig
    settings = validate(cfg)                                     # typed, checked
    cell = build_cell(cfg)                                       # Machine, WorkloadSpec, Policy, RunConfig

Every bad key anywhere (Hydra override, schema, builders) raises ``study.errors.ConfigError``.
Names load on first use (Hydra and the engine take a second to import; ``--help`` must not wait).
"""

import importlib
import sys
import types

from study.config.compose import compose
from study.config.paths import config_dir, user_config_dir
from study.errors import ConfigError

_LAZY = {
    "Cell": "cell", "canonical_json": "cell",
    "RayConfig": "schema", "RunConfig": "schema", "StudyConfig": "schema", "SweepConfig": "schema",
    "GROUPS": "validate", "Settings": "validate", "build_cell": "validate", "build_parts": "validate",
    "validate": "validate",
}


class _Package(types.ModuleType):
    """``study.config.validate`` and ``study.config.compose`` are both modules and functions:
    importing the module must not replace the package's function of that name."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name or (
                isinstance(value, types.ModuleType) and name == "compose"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"study.config.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'study.config' has no attribute {name!r}")


__all__ = [
    "Cell", "ConfigError", "GROUPS", "RayConfig", "RunConfig", "Settings", "StudyConfig", "SweepConfig",
    "build_cell", "build_parts", "canonical_json", "compose", "config_dir", "user_config_dir", "validate",
]
