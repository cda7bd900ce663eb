"""An ensemble of cost parameter sets that all reproduce the seed's table: the model's uncertainty.

The fit (study.calibration.fit) gives one parameter point, but the seed's 8 cells pin only a
few combinations of the 18 costs (the identifiability analysis).  Every conclusion drawn at
the fitted point alone would hide that the costs the data leave free could be elsewhere in
their priors.  The ensemble makes that uncertainty explicit:

1. **Basis.** The Jacobian J = d log(cell) / d log(cost) at the fit and its SVD split the log
   cost space into the k pinned directions (singular value >= PINNED_SINGULAR_VALUE) and the
   rest.
2. **Candidates.** A scrambled Sobol sequence (scipy.stats.qmc, fixed seed) of dimension
   18 + 8: the first 18 coordinates are the costs, uniform in log between each prior's low and
   high (the priors say "within a factor of ..."); the last 8 are a target offset per seed
   cell, uniform in +-TARGET_SPREAD (log), so that the pinned combinations also vary within
   what the data allow instead of sitting at the fit.
3. **Projection.** Starting from the candidate, Gauss-Newton steps move only the pinned
   coordinates (theta += V_p^T dc, dc = lstsq(J V_p^T, target - r) with r the simulated
   log(model/seed)), clip to the priors' bounds and round to integer cycles.  The unpinned
   coordinates keep their prior draw: nothing in the data could move them.
4. **Acceptance** (approximate Bayesian computation with a tolerance): a candidate joins the
   ensemble only if, simulated on the fit's common random numbers, every seed cell is within
   ``tolerance`` (default 3%) of the published value.  Candidates are taken in Sobol order until
   ``members`` are accepted (deterministic); member 0 is the fitted machine itself.

Pure rejection from the 18-dimensional prior would accept almost nothing (the pinned
combinations span a factor of several in the prior box but must sit within 3%); the projection
spends the simulations where the data constrain and leaves the prior where they do not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import qmc

from study.calibration.fit import Identifiability, cost_value, identifiability, model_cells, with_costs
from study.calibration.priors import PRIORS, SCALE
from study.engine.machine import Machine
from study.seed import SEED_KERNEL, SEED_TABLE

FORMAT_VERSION = 1
KIND = "study.ensemble"
TOLERANCE = 0.03
TARGET_SPREAD = 0.015      # pinned combinations: each cell's log target drawn in +-1.5%
NEWTON_STEPS = 4
SOBOL_SEED = 20220719


@dataclass
class Member:
    index: int
    values: dict[str, float]          # cost name -> cycles (the PRIORS' names)
    cell_errors: list[float]          # model/seed - 1 per SEED_TABLE cell
    steps: int                        # Gauss-Newton steps it took (0: the fit itself)

    def as_dict(self) -> dict:
        return {"index": self.index, "costs": self.values, "cell_errors": self.cell_errors, "steps": self.steps}


@dataclass
class Ensemble:
    machine: str
    members: list[Member]
    candidates: int
    settings: dict
    identifiability: dict = field(default_factory=dict)

    def machines(self, base: Machine) -> list[Machine]:
        return [with_costs(base, m.values) for m in self.members]

    def spread(self) -> list[dict]:
        """Per cost: members' 5-95% range against the prior's, in log (1.0: spans the whole prior)."""
        out = []
        for p in PRIORS:
            v = np.array([m.values[p.name] for m in self.members], float)
            lo, hi = np.quantile(v, [0.05, 0.95])
            out.append(dict(name=p.name, prior_low=p.low, prior_high=p.high, min=float(v.min()),
                            q05=float(lo), median=float(np.median(v)), q95=float(hi), max=float(v.max()),
                            span_of_prior=float(np.log(hi / lo) / np.log(p.high / p.low))))
        return out

    def as_dict(self) -> dict:
        errors = np.array([m.cell_errors for m in self.members])
        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "machine": self.machine,
            "kernel": SEED_KERNEL,
            "method": "Sobol candidates over the priors (log-uniform), Gauss-Newton projection of the pinned "
                      "directions of the seed cells' Jacobian onto a target inside the tolerance, accepted when "
                      "every seed cell is within the tolerance (ABC); member 0 is the fitted machine",
            "settings": self.settings,
            "candidates": self.candidates,
            "accepted": len(self.members),
            # member 0 (the fit) is not a candidate: the rate is over the Sobol candidates tried
            "acceptance_rate": (len(self.members) - 1) / max(self.candidates, 1),
            "max_abs_cell_error": float(np.max(np.abs(errors))) if errors.size else None,
            "seed_cells": [f"{c.call} {c.threads}T {c.policy}" for c in SEED_TABLE],
            "scale": SCALE,
            "identifiability": self.identifiability,
            "spread": self.spread(),
            "members": [m.as_dict() for m in self.members],
        }

    def digest(self) -> str:
        """Identity of the members' costs (a run of the ensemble is reused only for the same members)."""
        costs = [m.values for m in self.members]
        return hashlib.sha256(json.dumps(costs, sort_keys=True).encode()).hexdigest()[:16]


def from_dict(data: dict) -> Ensemble:
    if data.get("kind") != KIND or data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"not a {KIND} version {FORMAT_VERSION} file")
    members = [Member(m["index"], {k: float(v) for k, v in m["costs"].items()}, list(m["cell_errors"]), m["steps"])
               for m in data["members"]]
    return Ensemble(data["machine"], members, data["candidates"], data["settings"], data.get("identifiability", {}))


def build(machine: Machine, *, members: int = 32, tolerance: float = TOLERANCE, sobol_seed: int = SOBOL_SEED,
          replicates: int = 400, rounds: int = 40, root_seed: int = 2022, max_candidates: int | None = None,
          ident: Identifiability | None = None, log=lambda s: None) -> Ensemble:
    """The ensemble of ``members`` parameter sets (member 0: ``machine`` itself); see the module doc."""
    names = [p.name for p in PRIORS]
    lo = np.log([p.low for p in PRIORS])
    hi = np.log([p.high for p in PRIORS])
    seed = np.log([c.cycles for c in SEED_TABLE])
    ident = ident or identifiability(machine, replicates=replicates, rounds=rounds, root_seed=root_seed)
    k = ident.n_pinned
    vp = ident.directions[:k]                        # [k, P]
    a = ident.jacobian @ vp.T                        # [cells, k]: pinned coordinates -> log cells

    def simulate(theta: np.ndarray) -> np.ndarray:
        values = dict(zip(names, np.exp(theta)))
        return np.log(model_cells(with_costs(machine, values), replicates, rounds, root_seed)) - seed

    def integer(theta: np.ndarray) -> np.ndarray:
        cycles = np.clip(np.rint(np.exp(theta)), np.ceil(np.exp(lo)), np.floor(np.exp(hi)))
        return np.log(cycles)

    theta0 = np.array([cost_value(machine, n) for n in names], float)
    r0 = simulate(np.log(theta0))
    accepted = [Member(0, dict(zip(names, theta0.tolist())), (np.exp(r0) - 1).tolist(), 0)]
    limit = max_candidates or 8 * members
    sampler = qmc.Sobol(d=len(names) + len(SEED_TABLE), scramble=True, seed=sobol_seed)
    u = sampler.random_base2(int(np.ceil(np.log2(limit))))[:limit]
    tried = 0
    for row in u:
        if len(accepted) >= members:
            break
        tried += 1
        theta = integer(lo + row[:len(names)] * (hi - lo))
        target = (2 * row[len(names):] - 1) * TARGET_SPREAD
        for step in range(1, NEWTON_STEPS + 1):
            r = simulate(theta)
            dc, *_ = np.linalg.lstsq(a, target - r, rcond=None)
            theta = integer(theta + vp.T @ dc)
            errors = np.exp(simulate(theta)) - 1
            if np.all(np.abs(errors) <= tolerance):
                accepted.append(Member(len(accepted), dict(zip(names, np.exp(theta).round().tolist())),
                                       errors.tolist(), step))
                break
        log(f"candidate {tried}: max cell error {np.max(np.abs(errors)) * 100:.1f}%; {len(accepted)}/{members} members")
    settings = dict(members=members, tolerance=tolerance, sobol_seed=sobol_seed, target_spread=TARGET_SPREAD,
                    newton_steps=NEWTON_STEPS, replicates=replicates, rounds=rounds, root_seed=root_seed,
                    max_candidates=limit, prior="log-uniform on [low, high] of study/calibration/priors.py")
    summary = dict(singular_values=[float(s) for s in ident.singular_values], n_pinned=k,
                   threshold=ident.threshold, pinned_combinations=ident.combinations(),
                   status=ident.status())
    return Ensemble(machine.name, accepted, tried, settings, summary)
