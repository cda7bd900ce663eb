"""The seed's benchmark simulated: model beside the published numbers, cell by cell."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from study.policies.kernel import KERNELS, Kernel
from study.engine.machine import Machine
from study.policies import preset
from study.seed import SEED_KERNEL, SEED_TABLE, SEED_WORKLOAD
from study.workloads import simulate_cell, workload_from_dict

# the events each call's latency is explained by, and what each costs the initiator
EVENTS = ("ipis", "remote_partial", "remote_full", "local_partial", "local_full", "tlb_gen_xfers",
          "strict_flushes", "relaxed_flushes")


@dataclass
class SeedRow:
    call: str
    threads: int
    policy: str
    seed_cycles: float
    model_cycles: float
    ci_low: float
    ci_high: float
    rel_error: float
    events_per_call: dict

    def as_dict(self):
        return asdict(self)


def simulate_seed_cells(machine: Machine, *, replicates: int, rounds: int, root_seed: int = 2022,
                        label_counters: bool = False, kernel: Kernel | None = None):
    """Run the seed workload for both policies at 1 and 2 threads; results keyed by (policy, threads).

    Strict and relaxed at one thread count share their random streams, so their difference
    comes from the policy alone.  The kernel defaults to the seed's own, the RFC's base.
    """
    kernel = KERNELS[SEED_KERNEL] if kernel is None else kernel
    out = {}
    for threads in (1, 2):
        workload = workload_from_dict(dict(SEED_WORKLOAD, threads=threads), machine)
        for policy in ("strict", "relaxed"):
            out[policy, threads] = simulate_cell(
                machine, workload, preset(policy), replicates=replicates, rounds=rounds,
                seed=np.random.SeedSequence(root_seed, spawn_key=(threads,)), label_counters=label_counters,
                kernel=kernel)
    return out


def mean_ci(values: np.ndarray, level: float = 0.95):
    """Mean and t-interval over replicates."""
    values = values[~np.isnan(values)]
    mean = float(values.mean())
    half = float(stats.sem(values) * stats.t.ppf(0.5 + level / 2, values.size - 1)) if values.size > 1 else 0.0
    return mean, mean - half, mean + half


def seed_table(machine: Machine, *, replicates: int = 2000, rounds: int = 100, root_seed: int = 2022,
               kernel: Kernel | None = None):
    """The 8 cells of the seed's table with the model's mean, 95% CI and relative error."""
    results = simulate_seed_cells(machine, replicates=replicates, rounds=rounds, root_seed=root_seed,
                                  label_counters=True, kernel=kernel)
    rows = []
    for cell in SEED_TABLE:
        res = results[cell.policy, cell.threads]
        mean, lo, hi = mean_ci(res.metrics[f"lat_{cell.label}"])
        books = res.label_counters[cell.label]
        calls = replicates * rounds
        rows.append(SeedRow(cell.call, cell.threads, cell.policy, cell.cycles, mean, lo, hi,
                            mean / cell.cycles - 1.0,
                            {k: books.get(k, 0) / calls for k in EVENTS}))
    return rows


def headline_changes(rows):
    """Relaxed vs strict at 2 threads for each call: (model change, seed change)."""
    by = {(r.call, r.threads, r.policy): r for r in rows}
    out = {}
    for call in ("PROT_READ", "PROT_READ|PROT_WRITE"):
        s, r = by[call, 2, "strict"], by[call, 2, "relaxed"]
        out[call] = (r.model_cycles / s.model_cycles - 1.0, r.seed_cycles / s.seed_cycles - 1.0)
    return out
