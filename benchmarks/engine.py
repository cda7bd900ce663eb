"""Engine throughput: replicate-operations per second, vectorized vs the scalar reference.

    python benchmarks/engine.py

One operation is one call of the workload (for the seed loop: mprotect(PROT_READ),
mprotect(PROT_READ|PROT_WRITE), the write), counted per replicate.  Runs on one core.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from study.engine.machine import Machine, placement_cpus  # noqa: E402
from study.engine.reference import ScalarBatch  # noqa: E402
from study.engine.vector import VectorEngine  # noqa: E402
from study.policies import RELAXED, RFC_BASE, STRICT, behaviour  # noqa: E402
from study.workloads import lazy_cpus, run_workload  # noqa: E402
from study.workloads.mprotect_toggle import MprotectToggle  # noqa: E402

MACHINE = Machine(name="bench", sockets=2, cores_per_socket=12, smt=2)


def ops_per_round(spec: MprotectToggle) -> int:
    """Calls per round of mprotect_toggle: two mprotects, the writes, the remote touches."""
    return 2 + spec.pages * spec.dirty_ratio + 2 * (spec.threads - 1) * spec.remote_access_rate


def throughput(engine_cls, spec, policy, replicates, rounds, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        cpus = placement_cpus(MACHINE, spec.threads, spec.placement)
        engine = engine_cls(MACHINE, behaviour(RFC_BASE, policy), cpus, spec.pages, replicates, working_set=spec.working_set,
                            lazy=lazy_cpus(spec))
        start = time.perf_counter()
        run_workload(engine, spec, rounds=rounds, seed=np.random.SeedSequence(1))
        best = min(best, time.perf_counter() - start)
    return replicates * rounds * ops_per_round(spec) / best


def main():
    seed = MprotectToggle(threads=2, pages=1)
    print("seed workload, 2 threads, 1 page (mprotect_toggle)")
    for policy in (STRICT, RELAXED):
        vec = throughput(VectorEngine, seed, policy, 8192, 100, repeat=5)
        ref = throughput(ScalarBatch, seed, policy, 256, 20, repeat=3)
        print(f"  {policy.name:8s} vectorized {vec / 1e6:6.2f} M replicate-ops/s   "
              f"scalar {ref / 1e3:7.1f} k replicate-ops/s   speed-up {vec / ref:6.0f}x")
    big = MprotectToggle(threads=16, pages=64, remote_access_rate=0.5, remote_write_share=0.5, working_set=64)
    print("16 threads, 64 pages, remote access rate 0.5, write share 0.5, working set 64")
    for policy in (STRICT, RELAXED):
        vec = throughput(VectorEngine, big, policy, 1024, 10, repeat=1)
        print(f"  {policy.name:8s} vectorized {vec / 1e6:6.2f} M replicate-ops/s")


if __name__ == "__main__":
    main()
