"""The config layer: compose study/conf/ with Hydra, validate it, and build cells from it.

    cfg = compose(["workload=uffd_wp", "workload.threads=4"])   # DictConfig
    settings = validate(cfg)                                     # typed, checked
    cell = build_cell(cfg)                                       # Machine, WorkloadSpec, Policy, RunConfig

Every bad key anywhere (Hydra override, schema, builders) raises ``study.errors.ConfigError``.
"""

from study.config.cell import Cell, canonical_json
from study.config.compose import compose, config_dir
from study.config.schema import RayConfig, RunConfig, StudyConfig, SweepConfig
from study.config.validate import GROUPS, Settings, build_cell, build_parts, validate
from study.errors import ConfigError

__all__ = [
    "Cell", "ConfigError", "GROUPS", "RayConfig", "RunConfig", "Settings", "StudyConfig", "SweepConfig",
    "build_cell", "build_parts", "canonical_json", "compose", "config_dir", "validate",
]
