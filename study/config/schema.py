"""Structured-config schemas of the nodes the config layer owns: ``run``, ``ray``, ``sweep``, ``limits``.

``machine``, ``kernel``, ``workload`` and ``policy`` stay ``Any`` here: their rules live with
their dataclasses (Machine.from_dict, Kernel.from_dict, workload_from_dict, Policy.from_dict)
and are not repeated.
Every value is MISSING so that study/conf/config.yaml stays the one place defaults are written.
Merging a composed config into ``StudyConfig`` rejects unknown keys, wrong types and absent
values; value ranges are checked afterwards by ``study.config.validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


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
