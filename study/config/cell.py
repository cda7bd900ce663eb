"""One cell of the study: a machine, a kernel, a workload, a policy and the run settings, with its identity.

A cell's identity is the sha256 of its canonical JSON (sorted keys, floats as Python prints
them, after validation so that ``1`` and ``1.0`` in YAML agree).  Three digests matter:

* ``cell_id``: everything that changes the numbers (policy and run settings included, and
  the study/numpy versions), so a cached result is only ever reused for the same question;
* ``pair_id``: the same without the policy, so strict, relaxed and ablation cells of one
  setting (one kernel) can be paired;
* the stream key: machine, kernel, workload and rounds only.  The random streams of batch ``b`` are
  ``SeedSequence(seed, spawn_key=(*stream_words, b))``: never derived from a cell's position
  or the worker that ran it, shared by every policy of a setting (common random numbers,
  replicate r of strict paired with replicate r of relaxed), and unchanged when more
  batches are added.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

import study
from study.config.settings import RunConfig
from study.policies.kernel import RFC_BASE, Kernel
from study.engine.machine import Machine
from study.policies import Policy
from study.workloads.spec import WorkloadSpec

# Bump when the meaning of a cell's numbers changes without its config changing.
CELL_FORMAT = 2   # 2: kernels, RFC patch switches, honest page states
ID_HEX = 16


def canonical_json(data: Any) -> str:
    """The one spelling of ``data`` that is hashed (sorted keys, no whitespace, no NaN, -0.0 as 0.0)."""
    return json.dumps(_canonical(data), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _canonical(data: Any) -> Any:
    """-0.0 and 0.0 are one number: one identity, one random stream."""
    if isinstance(data, float) and data == 0.0:
        return 0.0
    if isinstance(data, dict):
        return {k: _canonical(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_canonical(v) for v in data]
    return data


def digest(data: Any) -> bytes:
    return hashlib.sha256(canonical_json(data).encode()).digest()


@dataclass(frozen=True)
class Cell:
    """A validated cell, ready for simulate_cell."""

    machine: Machine
    workload: WorkloadSpec
    policy: Policy
    run: RunConfig
    # the strict baseline; ``policy`` applies the RFC's patches to it
    kernel: Kernel = RFC_BASE

    def run_identity(self) -> dict[str, Any]:
        """The run settings that change the numbers (never output_dir; CI knobs only if adaptive)."""
        run = self.run
        ident = {"seed": run.seed, "rounds": run.rounds, "warmup_rounds": run.warmup_rounds,
                 "replicates": run.replicates,
                 "batch_replicates": run.batch_replicates, "max_samples": run.max_samples,
                 "adaptive": run.adaptive}
        if run.adaptive:
            ident.update(ci_target=run.ci_target, max_replicates=run.max_replicates)
        return ident

    def identity(self, with_policy: bool = True) -> dict[str, Any]:
        """Everything a cell's numbers depend on, as plain data."""
        ident = {
            "format": CELL_FORMAT,
            "versions": {"study": study.__version__, "numpy": np.__version__},
            "machine": dataclasses.asdict(self.machine),
            "kernel": dataclasses.asdict(self.kernel),
            "workload": {"class": type(self.workload).__name__, **dataclasses.asdict(self.workload)},
            "run": self.run_identity(),
        }
        if with_policy:
            ident["policy"] = dataclasses.asdict(self.policy)
        return ident

    @cached_property
    def cell_id(self) -> str:
        return digest(self.identity()).hex()[:ID_HEX]

    @cached_property
    def pair_id(self) -> str:
        return digest(self.identity(with_policy=False)).hex()[:ID_HEX]

    @cached_property
    def lane_key(self) -> str:
        """Cells that may run as lanes of one lockstep pass (study.runner.lanes): the pair_id's
        identity without the workload's LANE_FIELDS (study.workloads.simulate_lanes)."""
        ident = self.identity(with_policy=False)
        for name in type(self.workload).LANE_FIELDS:
            ident["workload"].pop(name)
        return digest(ident).hex()[:ID_HEX]

    @cached_property
    def stream_words(self) -> tuple[int, ...]:
        """Four 32-bit words of the stream key (machine, kernel, workload, rounds; no policy)."""
        key = {"machine": dataclasses.asdict(self.machine),
               "kernel": dataclasses.asdict(self.kernel),
               "workload": {"class": type(self.workload).__name__, **dataclasses.asdict(self.workload)},
               "rounds": self.run.rounds}
        raw = digest(key)[:16]
        return tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(0, 16, 4))

    def seed(self, batch: int) -> np.random.SeedSequence:
        """The SeedSequence of batch ``batch`` of this cell."""
        return np.random.SeedSequence(self.run.seed, spawn_key=(*self.stream_words, batch))

    def batch_sizes(self, replicates: int | None = None) -> list[int]:
        """Replicates per batch for ``replicates`` in total (default: run.replicates)."""
        total = self.run.replicates if replicates is None else replicates
        size = self.run.batch_replicates
        return [min(size, total - start) for start in range(0, total, size)]

    def describe(self) -> dict[str, Any]:
        """The cell's config as plain data (for manifests and the ``run`` command)."""
        return {"machine": dataclasses.asdict(self.machine),
                "kernel": dataclasses.asdict(self.kernel),
                "workload": dataclasses.asdict(self.workload),
                "policy": dataclasses.asdict(self.policy),
                "run": dataclasses.asdict(self.run)}
