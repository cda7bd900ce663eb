"""Independent tasks on Ray (an embedded local instance, or the cluster ``address`` names), or in
this process: the ensemble's and the conditions' runs.

``map_tasks(fn, jobs)`` yields ``(job, fn(*job))`` in completion order; the callers key results
by the job and every job seeds itself, so the order never changes a number.  The sweep's cells
go through study.runner.executor instead (chunks, retries, the sweep's progress and its failures).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Iterable, Iterator


def map_tasks(fn: Callable, jobs: Iterable[tuple], *, label: str, log: Callable[[str], None],
              ray_address: str | None = None, num_cpus: int | None = None,
              serial: bool = False, every: int = 10) -> Iterator[tuple[tuple, object]]:
    """``fn(*job)`` for each job, one Ray task (one CPU) each, or serially; progress every
    ``every`` jobs to ``log`` as ``<label>: k/n (s)``."""
    jobs = list(jobs)
    start = time.perf_counter()

    def progress(done: int) -> None:
        if done % every == 0 or done == len(jobs):
            log(f"{label}: {done}/{len(jobs)} ({time.perf_counter() - start:.0f} s)")

    if not jobs:
        return
    if serial:
        for done, job in enumerate(jobs, 1):
            yield job, fn(*job)
            progress(done)
        return
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    started = False
    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS")
        options = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                       configure_logging=True)
        ray.init(address=address or "local", **({} if address else {"num_cpus": num_cpus}), **options)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = {task.remote(*job): job for job in jobs}
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            yield job, ray.get(ready[0])
            done += 1
            progress(done)
    finally:
        if started:
            ray.shutdown()
