"""The study's own settings: ``run``, ``ray``, ``limits`` and ``sweep``, each field declared once.

Every field is a ``param()`` (study.params): type, unit, range and one-line doc; the config schema
(study/config/schema.py), the range check (study.params.check) and the words of an error come from
it.  Their values are written once, in conf/config.yaml (a sweep file may size ``run``), so a
default here is OmegaConf's MISSING, but for what a sweep file need not say (its description
and max_cells).  What is not a range, a rule that ties two fields or two nodes
together, is the short ``validate()`` beside its class.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from study.engine.costs import slot_count
from study.engine.machine import build_dataclass
from study.errors import ConfigError
from study.params import check, param
from study.policies import IDEAS

# Groups whose option names a yaml file (conf/<group>/); each has a schema and a builder.
GROUPS = ("machine", "kernel", "workload", "policy")


class Node:
    """A node of the config: ``from_dict``: build from plain data (types: study.engine.machine.build_dataclass), check
    every declared range (study.params.check), then the class's own cross-field rules."""

    @classmethod
    def from_dict(cls, data: Any, prefix: str):
        return check(build_dataclass(cls, data, prefix), prefix).validate(prefix)

    def validate(self, prefix: str):
        return self


@dataclass(frozen=True)
class RunConfig(Node):
    """How much to simulate per cell, from which root seed, and where to put it."""

    replicates: int = param(MISSING, "replicates", "replicates per cell (fixed mode; the starting point in adaptive "
                                                   "mode)", low=1)
    rounds: int = param(MISSING, "rounds", "measured rounds of the workload's loop per replicate", low=1)
    warmup_rounds: int = param(MISSING, "rounds", "unbooked rounds before the measured ones: the means describe the "
                                                  "steady state, not the cold start", low=0)
    seed: int = param(MISSING, "seed", "root seed; every cell's streams derive from it and the cell's identity "
                                       "(SeedSequence entropy: non-negative)", low=0)
    batch_replicates: int = param(MISSING, "replicates", "replicates per simulate_cell call; batch b of a cell is "
                                                         "one random stream, so the batch size fixes the numbers",
                                  low=1)
    adaptive: bool = param(MISSING, "flag", "add batches until the CI target is met (up to max_replicates)")
    ci_target: float = param(MISSING, "share", "relative 95% CI half-width of total_cycles_per_round at which "
                                               "adaptive replication stops", low=0.0, high=1.0, open_low=True,
                             open_high=True)
    max_replicates: int = param(MISSING, "replicates", "most replicates per cell in adaptive mode", low=1)
    max_samples: int = param(MISSING, "samples", "per-call latencies kept per label and cell (medians, p99, plots)",
                             low=0)
    output_dir: str = param(MISSING, "path", "sweeps write to <output_dir>/sweep/<sweep.name>/")

    def validate(self, prefix: str = "run") -> "RunConfig":
        if self.adaptive and self.max_replicates < self.replicates:
            raise ConfigError(f"{prefix}.max_replicates", f"must be >= run.replicates ({self.replicates}) when "
                                                          f"run.adaptive=true, got {self.max_replicates}")
        if not self.output_dir:
            raise ConfigError(f"{prefix}.output_dir", "must be a non-empty path")
        return self


@dataclass(frozen=True)
class LimitsConfig(Node):
    """Upper bounds checked before any work; each can be raised explicitly (limits.<key>=N)."""

    replicates: int = param(MISSING, "replicates", "most run.replicates, run.max_replicates and run.batch_replicates",
                            low=1)
    rounds: int = param(MISSING, "rounds", "most run.rounds", low=1)
    batch_memory_mb: int = param(MISSING, "MiB", "most estimated engine memory of one batch (batch_replicates x CPUs "
                                                 "x pages)", low=1)
    cpus: int = param(MISSING, "CPUs", "most CPUs of a machine (sockets x cores_per_socket x smt)", low=1)
    ray_num_cpus: Optional[int] = param(MISSING, "CPUs", "most ray.num_cpus; null = this host's CPU count", low=1)

    def check_cell(self, machine, workload, run: RunConfig, prefix: str = "run") -> None:
        """The cell within the limits: CPUs, replicates, rounds, batch memory, and cycles that fit in int64."""
        if machine.n_cpus > self.cpus:
            raise ConfigError("machine.sockets", f"the machine has {machine.n_cpus} CPUs (sockets x cores_per_socket "
                                                 f"x smt), more than limits.cpus={self.cpus}; raise limits.cpus")
        for key in ("replicates", "batch_replicates", "max_replicates"):
            if getattr(run, key) > self.replicates:
                raise ConfigError(f"{prefix}.{key}", f"{getattr(run, key)} is more than limits.replicates="
                                                     f"{self.replicates}; raise limits.replicates to go further")
        if run.rounds > self.rounds:
            raise ConfigError(f"{prefix}.rounds", f"{run.rounds} is more than limits.rounds={self.rounds}; "
                                                  "raise limits.rounds to go further")
        batch = min(run.batch_replicates, max(run.replicates, run.max_replicates if run.adaptive else 0))
        need = batch_bytes(machine, workload, batch) / 2**20
        if need > self.batch_memory_mb:
            raise ConfigError(f"{prefix}.batch_replicates",
                              f"one batch of {batch} replicates x {workload.threads} CPUs x {workload.pages} pages "
                              f"needs ~{need:.0f} MiB, more than limits.batch_memory_mb={self.batch_memory_mb}; "
                              "lower run.batch_replicates or raise limits.batch_memory_mb")
        # a generous ceiling on the events of a round (the workload's bound); jitter multiplies a
        # cost by at most ~e^(5 sigma)
        events = workload.events_per_round(machine.n_cpus)
        sigma = max(machine.jitter_sigma, machine.ipi_jitter_sigma)
        worst = run.rounds * (events * max(max_cost(machine.costs), 1.0) * math.exp(5 * sigma)
                              + workload.booked_cycles_per_round())
        if worst > CYCLE_CEILING:
            raise ConfigError(f"{prefix}.rounds", f"{run.rounds} rounds of this cell could count up to {worst:.2g} "
                                                  "cycles, beyond the int64 counters; lower run.rounds, costs or "
                                                  "working_set")


# Bytes per replicate of the engine's state: per CPU and page (TLB valid/writable/dirty),
# per page (PTE bits), per CPU (generation, working set, masks) and per random slot; with
# temporaries, x4.  An estimate to refuse hopeless batches, not an accounting.
_BYTES_CPU_PAGE, _BYTES_PAGE, _BYTES_CPU, _BYTES_SLOT, _TEMPS = 3, 4, 40, 2, 4
# Integer cycles are int64: a replicate's total must stay far below 2**63.
CYCLE_CEILING = 2.0 ** 60


def batch_bytes(machine, workload, batch: int) -> int:
    """Estimated engine memory of one batch of ``batch`` replicates."""
    c, p = workload.threads, workload.pages
    per_replicate = c * p * _BYTES_CPU_PAGE + p * _BYTES_PAGE + c * _BYTES_CPU + slot_count(machine.n_cpus) * _BYTES_SLOT
    return _TEMPS * batch * per_replicate


def max_cost(costs) -> float:
    """The largest base cost of any event (every field of Costs, per distance class too)."""
    values = []
    for f in dataclasses.fields(costs):
        value = getattr(costs, f.name)
        values += dataclasses.astuple(value) if dataclasses.is_dataclass(value) else [value]
    return max(map(float, values), default=0.0)


def host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# the fields of Ray's RuntimeEnv (ray.runtime_env.RuntimeEnv) a study run may set
RUNTIME_ENV_KEYS = ("working_dir", "py_modules", "py_executable", "pip", "uv", "conda", "container", "image_uri",
                    "env_vars", "excludes", "worker_process_setup_hook", "config", "nsight")


@dataclass(frozen=True)
class RayConfig(Node):
    """Where the cells run."""

    address: Optional[str] = param(MISSING, "host:port", "null: a local Ray instance (or $RAY_ADDRESS); host:port: "
                                                         "that cluster")
    num_cpus: Optional[int] = param(MISSING, "CPUs", "CPUs of the local instance; null = all cores (ignored when "
                                                     "joining a cluster)", low=1)
    cells_per_task: int = param(MISSING, "cells", "cells per Ray task (work is shipped in chunks, not cell by cell)",
                                low=1)
    include_dashboard: bool = param(MISSING, "flag", "the Ray dashboard of a local instance (needs "
                                                     "pip install \"study[dashboard]\")")
    runtime_env: Optional[Dict[str, Any]] = param(MISSING, "mapping", "Ray's runtime_env for the tasks; null: on a "
                                                                      "cluster, ship the study package (py_modules)")

    def validate(self, prefix: str = "ray") -> "RayConfig":
        if self.address is not None and not self.address.strip():
            raise ConfigError(f"{prefix}.address", "must be null or host:port")
        unknown = sorted(set(self.runtime_env or ()) - set(RUNTIME_ENV_KEYS))
        if unknown:
            raise ConfigError(f"{prefix}.runtime_env.{unknown[0]}", f"unknown key; allowed: {', '.join(RUNTIME_ENV_KEYS)}")
        if self.include_dashboard and (importlib.util.find_spec("aiohttp") is None
                                       or importlib.util.find_spec("opencensus") is None):
            raise ConfigError(f"{prefix}.include_dashboard", 'the dashboard needs Ray\'s extras: '
                                                             'pip install "study[dashboard]"')
        return self

    def check_host(self, limits: LimitsConfig) -> None:
        """Every Ray CPU is a worker process with its own copy of the engine's arrays: a local
        instance gets at most limits.ray_num_cpus (default: this host's CPUs)."""
        most = limits.ray_num_cpus or host_cpus()
        if self.num_cpus is not None and not self.address and self.num_cpus > most:
            raise ConfigError("ray.num_cpus", f"{self.num_cpus} is more than this host's {most} CPUs "
                                              f"(one worker process each); raise limits.ray_num_cpus to oversubscribe")


_GRID_SHAPE = "a list of sub-grids, each a mapping of dotted keys to lists of values, e.g. [{policy: [strict, relaxed]}]"


@dataclass(frozen=True)
class SweepConfig(Node):
    """A named list of sub-grids; each sub-grid maps dotted config keys to lists of values."""

    name: str = param(MISSING, "name", "the sweep; its tables go to <run.output_dir>/sweep/<name>/")
    description: str = param("", "text", "what the sweep asks, in words")
    grids: List[Any] = param(MISSING, "sub-grids", _GRID_SHAPE)
    max_cells: int = param(10000, "cells", "most cells (grid points before duplicates are dropped) a sweep may "
                                           "plan; a bigger grid is refused before it is expanded", low=1)

    def validate(self, prefix: str = "sweep") -> "SweepConfig":
        """The name and the grid's shape; its values are checked cell by cell when it is expanded."""
        if not self.name or not self.name.replace("-", "_").isidentifier():
            raise ConfigError(f"{prefix}.name", f"must be a plain name (letters, digits, _ or -), got {self.name!r}")
        if not self.grids:
            raise ConfigError(f"{prefix}.grids", "must hold at least one sub-grid (a mapping of dotted keys to "
                                                 "value lists)")
        for i, grid in enumerate(self.grids):
            if not isinstance(grid, dict):
                raise ConfigError(f"{prefix}.grids[{i}]", f"must be a mapping of dotted keys to lists of values; "
                                                          f"got {_short(grid)}")
            if not grid:
                raise ConfigError(f"{prefix}.grids[{i}]", "an empty sub-grid; give at least one axis, e.g. "
                                                          "policy: [strict, relaxed]")
            for axis, values in grid.items():
                where = f"{prefix}.grids[{i}].{axis}"
                if not isinstance(values, list):
                    raise ConfigError(where, f"must be a list of values, e.g. [{_short(values)}]; got {_short(values)}")
                if axis.split(".", 1)[0] not in (*GROUPS, "run"):
                    raise ConfigError(where, "unknown axis; allowed: machine, kernel, workload, policy (options) "
                                             "or dotted keys under machine., kernel., workload., policy., run.")
                if axis == "run.output_dir":
                    raise ConfigError(where, "not a grid axis (outputs of one sweep live in one place)")
                if not values:
                    raise ConfigError(where, "must list at least one value")
                if axis == WITHOUT:
                    bad = [v for v in values if v != EACH and v not in IDEAS]
                    if bad:
                        raise ConfigError(where, f"names the RFC patches to switch off one at a time: {EACH} or any "
                                                 f"of {', '.join(IDEAS)}; got {bad[0]!r}")
                if axis in GROUPS and not all(isinstance(v, str) for v in values):
                    raise ConfigError(where, f"values name {axis} options (yaml files in conf/{axis}/), got {values!r}")
        return self

    def subgrids(self) -> list[dict]:
        """The sub-grids as they are expanded: a sub-grid with a ``policy.without`` axis becomes one
        sub-grid per patch it names (``each``: every RFC idea of the registry, in patch order),
        with that patch's switch off (``policy.<switch>: [false]``): the attribution variants,
        "relaxed minus one patch", derived from the registry rather than spelled in the sweep."""
        out = []
        for grid in self.grids:
            if WITHOUT not in grid:
                out.append(grid)
                continue
            named = [v for v in grid[WITHOUT]]
            switches = list(dict.fromkeys(s for v in named for s in (IDEAS if v == EACH else (v,))))
            rest = {k: v for k, v in grid.items() if k != WITHOUT}
            out += [{**rest, f"policy.{s}": [False]} for s in switches]
        return out


# the grid axis of the attribution variants, and its value for every RFC patch (SweepConfig.subgrids)
WITHOUT, EACH = "policy.without", "each"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
