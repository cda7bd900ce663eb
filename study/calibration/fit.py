"""Fit a machine's free event costs to the seed's 8 cells with scipy.optimize.

The cells are simulated on the seed's own kernel, the RFC's base (study.seed.SEED_KERNEL).

One parameter set serves both policies and both thread counts.  The objective is the
relative error of each cell plus a weak pull of each parameter towards the centre of its
prior (so that parameters the seed cannot tell apart settle where the evidence puts
them); every parameter stays inside its prior's bounds.  The random streams are fixed
during the fit (common random numbers), so the objective is deterministic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from study.calibration.priors import PRIORS, SCALE
from study.calibration.seed_table import simulate_seed_cells
from study.engine.machine import ByDistance, Machine
from study.seed import SEED_TABLE

PRIOR_WEIGHT = 0.02


def with_costs(machine: Machine, values: dict[str, float]) -> Machine:
    """``machine`` with the named costs replaced; ``x.core`` also sets smt and socket by SCALE."""
    costs = machine.costs
    for name, value in values.items():
        if "." in name:
            field, cls = name.split(".")
            assert cls == "core"
            value = ByDistance(smt=value * SCALE["smt"], core=value, socket=value * SCALE["socket"])
            costs = dataclasses.replace(costs, **{field: value})
        else:
            costs = dataclasses.replace(costs, **{name: value})
    return dataclasses.replace(machine, costs=costs)


def model_cells(machine: Machine, replicates: int, rounds: int, root_seed: int) -> np.ndarray:
    """The model's mean cycles for each cell of SEED_TABLE, in order."""
    results = simulate_seed_cells(machine, replicates=replicates, rounds=rounds, root_seed=root_seed)
    return np.array([np.nanmean(results[c.policy, c.threads].metrics[f"lat_{c.label}"]) for c in SEED_TABLE])


@dataclass
class Fit:
    machine: Machine
    values: dict[str, float]
    residuals: np.ndarray      # relative error per seed cell
    cost: float
    evaluations: int


def fit(machine: Machine, *, replicates: int = 400, rounds: int = 40, root_seed: int = 2022) -> Fit:
    """Least-squares fit of PRIORS' parameters to SEED_TABLE; integer cycles at the end."""
    seed = np.array([c.cycles for c in SEED_TABLE])
    lo = np.array([p.low for p in PRIORS], float)
    hi = np.array([p.high for p in PRIORS], float)
    centre = np.array([p.centre for p in PRIORS], float)
    width = np.log(hi / np.maximum(lo, 1.0))

    def build(x):
        return with_costs(machine, {p.name: float(v) for p, v in zip(PRIORS, x)})

    def residuals(x):
        model = model_cells(build(x), replicates, rounds, root_seed)
        prior = PRIOR_WEIGHT * np.log(np.maximum(x, 1.0) / np.maximum(centre, 1.0)) / width
        return np.concatenate([model / seed - 1.0, prior])

    sol = least_squares(residuals, np.clip(centre, lo, hi), bounds=(lo, hi), x_scale=hi - lo,
                        diff_step=2e-2, xtol=1e-6, ftol=1e-8, max_nfev=200)
    # Costs are integer cycles; round inside the bounds and report the rounded fit.
    x = np.clip(np.rint(sol.x), np.ceil(lo), np.floor(hi))
    fitted = build(x)
    model = model_cells(fitted, replicates, rounds, root_seed)
    return Fit(fitted, {p.name: float(v) for p, v in zip(PRIORS, x)}, model / seed - 1.0,
               float(sol.cost), int(sol.nfev))
