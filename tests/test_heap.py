"""study.engine.heap: the engine's temporaries reuse the heap instead of faulting in fresh pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# One engine run in a fresh process (keep_heap() acts once per process): whether the
# thresholds were set, and the page faults the run took.
RUN = """
import json, resource
import numpy as np
from study.engine import heap
from study.engine.machine import Machine, placement_cpus
from study.engine.vector import VectorEngine
from study.workloads import lazy_cpus, run_workload
from study.workloads.mprotect_toggle import MprotectToggle
from study.policies import RFC_BASE, STRICT, behaviour

machine = Machine(name="t", sockets=2, cores_per_socket=12, smt=2)
spec = MprotectToggle(threads=2, pages=1)
engine = VectorEngine(machine, behaviour(RFC_BASE, STRICT), placement_cpus(machine, 2, spec.placement), 1, 8192,
                      lazy=lazy_cpus(spec))
run_workload(engine, spec, rounds=2, seed=np.random.SeedSequence(1))   # the heap grows to its size
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run_workload(engine, spec, rounds=30, seed=np.random.SeedSequence(2))
print(json.dumps({"kept": heap.keep_heap(), "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _run(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", RUN], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"), reason="glibc's malloc")
def test_the_engine_keeps_its_heap_unless_the_environment_sets_the_thresholds():
    kept = _run()
    # glibc's defaults, fixed (as a user's MALLOC_TRIM_THRESHOLD_ does): keep_heap() stands aside
    default = _run(MALLOC_TRIM_THRESHOLD_=str(128 * 1024))
    assert kept["kept"] is True
    assert default["kept"] is False
    # 30 rounds of 8192 replicates: every freed temporary's pages went back to the kernel and
    # were faulted in again, unless the heap is kept
    assert default["faults"] > 20 * max(kept["faults"], 100), (kept, default)
