"""Fit a machine's event costs to the seed's 8 cells, and say which of them the cells pin.

The cells are simulated on the seed's own kernel, the RFC's base (study.seed.SEED_KERNEL).

One parameter set serves both policies and both thread counts.  The fit works in log space
(theta = log cycles), so its answer does not depend on units: the residuals are
log(model / seed) per cell plus a weak pull of each theta towards its prior's centre, in
units of the prior's log-width (so that parameters the seed cannot tell apart settle where
their priors put them).  Every parameter stays inside its prior's bounds.  The random
streams are fixed during the fit (common random numbers), so the objective is deterministic.

The identifiability analysis is the Jacobian J[c, p] = d log(cell c) / d theta_p at the fit:
its singular values say how many parameter combinations the 8 cells determine, the right
singular vectors above a threshold say which combinations, and a parameter whose weight in
those vectors is small is set by its prior alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from study.calibration.priors import PRIORS, SCALE
from study.calibration.seed_table import simulate_seed_cells
from study.engine.machine import ByDistance, Machine
from study.seed import SEED_TABLE

PRIOR_WEIGHT = 0.02
# A combination is pinned when doubling it moves the 8 cells' logs by more than ~1.4% in
# Euclidean norm (singular value * log 2 > 0.014): about the run-to-run noise of a cycle
# count, so a weaker direction could move a factor 2 without the seed's numbers noticing.
PINNED_SINGULAR_VALUE = 0.02
# A parameter is "pinned (in combination)" when most of its weight lies in pinned
# directions, "prior only" when almost none does.
PINNED_SHARE, PRIOR_ONLY_SHARE = 0.5, 0.1
# log-space step of the central differences
JACOBIAN_STEP = 0.05


def cost_value(machine: Machine, name: str) -> float:
    value = machine.costs
    for part in name.split("."):
        value = getattr(value, part)
    return float(value)


def with_costs(machine: Machine, values: dict[str, float]) -> Machine:
    """``machine`` with the named costs replaced; ``x.core`` also sets smt and socket by SCALE."""
    costs = machine.costs
    for name, value in values.items():
        if "." in name:
            field_name, cls = name.split(".")
            assert cls == "core"
            value = ByDistance(smt=value * SCALE["smt"], core=value, socket=value * SCALE["socket"])
            costs = dataclasses.replace(costs, **{field_name: value})
        else:
            costs = dataclasses.replace(costs, **{name: value})
    return dataclasses.replace(machine, costs=costs)


def model_cells(machine: Machine, replicates: int, rounds: int, root_seed: int) -> np.ndarray:
    """The model's mean cycles for each cell of SEED_TABLE, in order."""
    results = simulate_seed_cells(machine, replicates=replicates, rounds=rounds, root_seed=root_seed)
    return np.array([np.nanmean(results[c.policy, c.threads].metrics[f"lat_{c.label}"]) for c in SEED_TABLE])


@dataclass
class Identifiability:
    """What the seed's cells determine about the parameters, at one parameter point."""

    parameters: list[str]
    jacobian: np.ndarray                 # [cells, parameters], d log cell / d log parameter
    singular_values: np.ndarray
    directions: np.ndarray               # right singular vectors as rows, [k, parameters]
    threshold: float = PINNED_SINGULAR_VALUE
    sources: dict = field(default_factory=dict)

    @property
    def n_pinned(self) -> int:
        return int(np.count_nonzero(self.singular_values >= self.threshold))

    def pinned_share(self) -> dict[str, float]:
        """Per parameter: the share of its unit vector that lies in the pinned directions."""
        v = self.directions[:self.n_pinned]
        return {p: float(np.sum(v[:, i] ** 2)) for i, p in enumerate(self.parameters)}

    def status(self) -> dict[str, str]:
        out = {}
        for p, share in self.pinned_share().items():
            out[p] = ("pinned (in combination)" if share >= PINNED_SHARE
                      else "prior only" if share < PRIOR_ONLY_SHARE else "partly pinned")
        return out

    def combinations(self, min_weight: float = 0.15, k: int | None = None) -> list[str]:
        """Each pinned direction (or the first ``k``) as a product of parameter powers (signs
        fixed so the largest weight is positive), e.g. ``invlpg^0.71 * flush_full^-0.70``."""
        out = []
        for k in range(self.n_pinned if k is None else k):
            v = self.directions[k]
            v = v if v[np.argmax(np.abs(v))] > 0 else -v
            order = np.argsort(-np.abs(v))
            terms = [f"{self.parameters[i]}^{v[i]:+.2f}" for i in order if abs(v[i]) >= min_weight]
            out.append(" * ".join(terms))
        return out

    def as_dict(self) -> dict:
        """The table as plain data (for the calibration's JSON output and the report)."""
        share, status = self.pinned_share(), self.status()
        return {
            "cells": [f"{c.call} {c.threads}T {c.policy}" for c in SEED_TABLE],
            "parameters": self.parameters,
            "singular_values": [float(s) for s in self.singular_values],
            "threshold": self.threshold,
            "threshold_meaning": "a direction is pinned when doubling it moves the cells' logs by more than "
                                 f"{self.threshold * np.log(2) * 100:.1f}% (Euclidean norm over the cells); "
                                 "J = d log(cell) / d log(cost)",
            "pinned_combinations": self.combinations(),
            "directions": self.combinations(k=len(self.singular_values)),
            "per_parameter": [{"name": p, "pinned_share": round(share[p], 4), "status": status[p],
                               "source": self.sources.get(p, "")} for p in self.parameters],
            "jacobian": [[float(x) for x in row] for row in self.jacobian],
        }


def identifiability(machine: Machine, *, replicates: int = 400, rounds: int = 40,
                    root_seed: int = 2022, priors=PRIORS) -> Identifiability:
    """The Jacobian of the seed cells w.r.t. the log of every prior's parameter, and its SVD."""
    names = [p.name for p in priors]
    x0 = np.array([cost_value(machine, n) for n in names])
    J = np.zeros((len(SEED_TABLE), len(names)))
    for i, name in enumerate(names):
        cols = []
        for sign in (+1, -1):
            x = dict(zip(names, x0))
            x[name] = x0[i] * np.exp(sign * JACOBIAN_STEP)
            cols.append(np.log(model_cells(with_costs(machine, x), replicates, rounds, root_seed)))
        J[:, i] = (cols[0] - cols[1]) / (2 * JACOBIAN_STEP)
    _, s, vt = np.linalg.svd(J, full_matrices=True)
    return Identifiability(names, J, s, vt, sources={p.name: p.source for p in priors})


@dataclass
class Fit:
    machine: Machine
    values: dict[str, float]
    residuals: np.ndarray      # relative error per seed cell
    cost: float
    evaluations: int


def fit(machine: Machine, *, replicates: int = 400, rounds: int = 40, root_seed: int = 2022) -> Fit:
    """Least-squares fit of PRIORS' parameters to SEED_TABLE in log space; integer cycles at the end."""
    seed = np.array([c.cycles for c in SEED_TABLE])
    lo = np.log(np.array([p.low for p in PRIORS], float))
    hi = np.log(np.array([p.high for p in PRIORS], float))
    centre = np.log(np.array([p.centre for p in PRIORS], float))
    width = hi - lo

    def build(theta):
        return with_costs(machine, {p.name: float(v) for p, v in zip(PRIORS, np.exp(theta))})

    def residuals(theta):
        model = model_cells(build(theta), replicates, rounds, root_seed)
        prior = PRIOR_WEIGHT * (theta - centre) / width
        return np.concatenate([np.log(model / seed), prior])

    sol = least_squares(residuals, np.clip(centre, lo, hi), bounds=(lo, hi),
                        diff_step=2e-2, xtol=1e-8, ftol=1e-10, max_nfev=400)
    # Costs are integer cycles; round inside the bounds and report the rounded fit.
    x = np.clip(np.rint(np.exp(sol.x)), np.ceil(np.exp(lo)), np.floor(np.exp(hi)))
    fitted = with_costs(machine, {p.name: float(v) for p, v in zip(PRIORS, x)})
    model = model_cells(fitted, replicates, rounds, root_seed)
    return Fit(fitted, {p.name: float(v) for p, v in zip(PRIORS, x)}, model / seed - 1.0,
               float(sol.cost), int(sol.nfev))
