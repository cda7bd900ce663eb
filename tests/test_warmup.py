"""Warm start: after run.warmup_rounds unbooked rounds the means describe the steady state.

With the config's warm-up, the mean over measured rounds 1-10 and the mean over rounds 91-100
of the same replicates agree: they differ by less than Z standard errors of their difference
(each window's standard error from its replicates; a stationary cell fails this once in about
16,000 draws, so a fixed seed does not pass or fail by luck).  Without a warm-up they do not
(the start-up transient the warm-up exists for, over a hundred standard errors in the first
cell), so the check can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from study.config import compose
from study.engine.machine import Machine
from study.policies import RELAXED
from study.workloads import simulate_cell, workload_from_dict

R = 256
Z = 4.0   # two-sided: P(|N(0, 1)| > 4) = 6.3e-5
# cells with the largest start-up transients of the default sweep's kinds (relaxed: stale
# generations pile up on the other CPUs over the first rounds)
CELLS = [
    ["workload=mprotect_toggle", "workload.threads=16"],
    ["workload=madv_free", "workload.threads=16"],
    ["workload=uffd_wp", "workload.threads=8"],
    ["workload=mprotect_toggle", "workload.threads=8", "workload.pages=4", "workload.remote_access_rate=1.0",
     "workload.remote_write_share=0.5", "workload.working_set=256"],
]


def _windows(overrides, warmup):
    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    machine = Machine.from_dict(cfg["machine"])
    spec = workload_from_dict(cfg["workload"], machine)
    run = dict(replicates=R, rounds=10, seed=np.random.SeedSequence(3))
    first = simulate_cell(machine, spec, RELAXED, warmup_rounds=warmup, **run)
    last = simulate_cell(machine, spec, RELAXED, warmup_rounds=warmup + 90, **run)
    return first.metrics["total_cycles_per_round"], last.metrics["total_cycles_per_round"]


def _z(a, b):
    """The difference of the windows' means in standard errors of that difference."""
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return abs(a.mean() - b.mean()) / se


@pytest.mark.parametrize("overrides", CELLS, ids=lambda o: " ".join(o))
def test_rounds_1_to_10_agree_with_91_to_100_after_warmup(overrides):
    warmup = OmegaConf.to_container(compose([]), resolve=True)["run"]["warmup_rounds"]
    assert warmup > 0
    first, last = _windows(overrides, warmup)
    assert _z(first, last) < Z, (first.mean(), last.mean(), _z(first, last))


def test_without_warmup_the_transient_shows():
    first, last = _windows(CELLS[0], 0)
    assert _z(first, last) > Z, (first.mean(), last.mean(), _z(first, last))
