"""Executors run chunks of cells and hand back results as chunks finish.

Both have one interface: a context manager whose ``run(chunks)`` yields
``(chunk_index, [(cell_id, CellResult, seconds), ...])`` in completion order.  The caller never
depends on that order: results are keyed by cell_id and every cell seeds itself.
``SerialExecutor`` runs in-process (unit tests, debugging); ``RayExecutor`` ships each
chunk as one Ray task, to an embedded local instance or to an existing cluster.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

from study.config.cell import Cell
from study.runner.replicate import Simulate
from study.workloads.result import CellResult

# (cell_id, result, seconds spent computing it)
ChunkResult = list[tuple[str, CellResult, float]]


def run_chunk(cells: list[Cell], simulate: Simulate | None = None) -> ChunkResult:
    """One task's work: its cells, those of one setting together (study.runner.lanes)."""
    from study.runner.lanes import run_cells

    return run_cells(cells, simulate)


class SerialExecutor:
    """Runs chunks one by one in this process."""

    def __init__(self, simulate: Simulate | None = None):
        self.simulate = simulate

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe(self) -> dict:
        return {"executor": "serial", "num_cpus": 1}

    def run(self, chunks: list[list[Cell]]) -> Iterator[tuple[int, ChunkResult]]:
        for index, chunk in enumerate(chunks):
            yield index, run_chunk(chunk, self.simulate)


class RayExecutor:
    """Runs each chunk as a Ray task.

    ``address`` None starts an embedded instance with ``num_cpus`` CPUs (all if None),
    unless $RAY_ADDRESS names a cluster; a ``host:port`` joins that cluster.  Only an
    instance started here is shut down on exit.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, simulate: Simulate | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.simulate = simulate
        self._started = False
        self._task = None

    def __enter__(self) -> "RayExecutor":
        if not self.address:
            # A one-host instance needs no routable address: this Ray switch (read when ray is
            # imported) makes it bind and advertise loopback only, as on macOS/Windows.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        # Ray's own INFO lines (dashboard, "Started a local Ray instance") are noise here;
        # worker output is not forwarded either: errors come back as exceptions.
        options = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                       configure_logging=True)
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, **options)
            else:
                # "local" never attaches to a cluster a `ray start` left running on this host
                ray.init(address="local", num_cpus=self.num_cpus, **options)
            self._started = True
        self._task = ray.remote(num_cpus=1, max_retries=0)(run_chunk)
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def describe(self) -> dict:
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else None
        return {"executor": "ray", "address": self.address or "local", "num_cpus": cpus,
                "ray_version": ray.__version__}

    def run(self, chunks: list[list[Cell]]) -> Iterator[tuple[int, ChunkResult]]:
        import ray

        pending = {self._task.remote(chunk, self.simulate): index for index, chunk in enumerate(chunks)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:  # an error or an interrupt: don't leave work running
                ray.cancel(ref, force=True)
