"""How many warm-up rounds the start-up transient needs: the evidence for run.warmup_rounds.

    python benchmarks/warmup.py              # the default sweep's kinds of cell (~3 min on one core)

For each cell and policy: the mean of total_cycles_per_round over 5 measured rounds after w
unbooked warm-up rounds, against the same after 60 (the steady state), as a relative
difference and in units of the two CIs' combined half-width (z).  A cold start is far off
(|z| up to ~180); from one warm-up round on every cell agrees with its steady state within
its CIs.  The config's default (conf/config.yaml) keeps a margin over that.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from study.config import compose  # noqa: E402
from study.engine.machine import Machine  # noqa: E402
from study.policies import RELAXED, STRICT  # noqa: E402
from study.results.summary import t_interval  # noqa: E402
from study.workloads import simulate_cell, workload_from_dict  # noqa: E402

CELLS = [
    ["workload=mprotect_toggle", "workload.threads=16"],
    ["workload=mprotect_toggle", "workload.threads=48", "workload.placement=socket"],
    ["workload=madv_free", "workload.threads=16"],
    ["workload=madv_free", "workload.threads=48"],
    ["workload=uffd_wp", "workload.threads=2"],
    ["workload=uffd_wp", "workload.threads=4", "workload.dirty_ratio=0.0"],
    ["workload=uffd_wp", "workload.threads=8"],
    ["workload=uffd_wp", "workload.threads=16"],
    # the remote-writer contrast: relaxed leaves the other CPUs generations behind
    ["workload=mprotect_toggle", "workload.threads=8", "workload.pages=4", "workload.remote_access_rate=1.0",
     "workload.remote_write_share=0.5", "workload.working_set=256"],
    ["workload=mprotect_toggle", "workload.threads=8", "workload.pages=4", "workload.remote_access_rate=1.0",
     "workload.remote_write_share=0.1", "workload.working_set=1024"],
]
WARMUPS = (0, 1, 2, 3, 5, 10, 20)
STEADY, ROUNDS, REPLICATES = 60, 5, 480


def window(machine, spec, policy, warmup):
    res = simulate_cell(machine, spec, policy, replicates=REPLICATES, rounds=ROUNDS,
                        seed=np.random.SeedSequence(3), warmup_rounds=warmup)
    mean, lo, hi, _ = t_interval(res.metrics["total_cycles_per_round"])
    return mean, (hi - lo) / 2


def main():
    print(f"mean of rounds 1-{ROUNDS} after w warm-up rounds vs after {STEADY}; {REPLICATES} replicates; "
          f"relative difference (z = difference / combined CI half-width)")
    for overrides in CELLS:
        cfg = OmegaConf.to_container(compose(overrides), resolve=True)
        machine = Machine.from_dict(cfg["machine"])
        spec = workload_from_dict(cfg["workload"], machine)
        for policy in (STRICT, RELAXED):
            ref, ref_hw = window(machine, spec, policy, STEADY)
            cols = []
            for w in WARMUPS:
                mean, hw = window(machine, spec, policy, w)
                cols.append(f"w{w}: {100 * (mean / ref - 1):+6.2f}% ({(mean - ref) / np.hypot(hw, ref_hw):+6.1f})")
            print(f"{' '.join(o.split('=', 1)[1] for o in overrides):70s} {policy.name:7s} " + "  ".join(cols),
                  flush=True)


if __name__ == "__main__":
    main()
