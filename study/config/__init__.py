"""The config layer: compose conf/ with Hydra, validate it, and build cells from it.

    cfg = compose(["workload=uffd_wp", "workload.threads=4"])   # DictConfig, keys and types checked
    settings = validate(cfg)                                     # built, every range and rule checked
    cell = build_cell(cfg)                                       # Machine, WorkloadSpec, Policy, RunConfig

Every bad key anywhere (Hydra override, schema, builders) raises ``study.errors.ConfigError``.
Names load on first use (Hydra and the engine take a second to import; ``--help`` must not wait).
"""

import importlib

from study.config.compose import compose
from study.config.paths import config_dir, user_config_dir
from study.errors import ConfigError

_LAZY = {
    "Cell": "cell", "canonical_json": "cell",
    "GROUPS": "settings", "LimitsConfig": "settings", "RayConfig": "settings", "RunConfig": "settings",
    "SweepConfig": "settings",
    "StudyConfig": "schema",
    "Settings": "validation", "build_cell": "validation", "build_parts": "validation", "validate": "validation",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"study.config.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'study.config' has no attribute {name!r}")


__all__ = [
    "Cell", "ConfigError", "GROUPS", "LimitsConfig", "RayConfig", "RunConfig", "Settings", "StudyConfig",
    "SweepConfig", "build_cell", "build_parts", "canonical_json", "compose", "config_dir", "user_config_dir",
    "validate",
]
