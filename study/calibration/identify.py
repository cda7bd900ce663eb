"""Identifiability of a least-squares fit: which parameter combinations the data pin.

Given the Jacobian of the data residuals (log model / measured, one row per target) with
respect to the parameters in prior units (log cost divided by the log-width of its prior
range, so 1 = the whole prior range), the singular values say how strongly each
combination of parameters moves the data, and a Gaussian approximation of the posterior
(data noise ``sigma`` in log units, prior sd ``prior_sd`` in prior units) says how much
each single parameter's uncertainty shrinks from its prior: ``shrink`` near 0 means the
data pin it, near 1 means only the prior sets it.  Reusable by any fit in this package.

Not yet unified with study.calibration.fit.Identifiability (the seed fit's table: Jacobian
by central differences in log-cost units, a singular-value threshold and per-parameter
pinned shares, which the report's seed section and calibration.json read field by field).
One implementation would take this module's Jacobian-in-prior-units and posterior, and
give the seed fit its threshold view on top; left for a change that can re-check the
report's seed section.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PINNED_BELOW = 0.5


@dataclass
class Identifiability:
    names: list[str]
    singular_values: np.ndarray          # descending
    directions: np.ndarray               # rows: right singular vectors, same order
    shrink: np.ndarray                   # posterior sd / prior sd per parameter
    sigma: float
    prior_sd: float
    covariance: np.ndarray               # Gaussian posterior covariance, prior units

    def pinned(self) -> list[str]:
        return [n for n, s in zip(self.names, self.shrink) if s < PINNED_BELOW]

    def prior_only(self) -> list[str]:
        return [n for n, s in zip(self.names, self.shrink) if s >= PINNED_BELOW]

    def combination(self, i: int, top: int = 3) -> str:
        """The i-th direction as its largest loadings, e.g. ``+0.71 ipi_send +0.70 irq_entry_exit``."""
        v = self.directions[i]
        order = np.argsort(-np.abs(v))[:top]
        return " ".join(f"{v[j]:+.2f} {self.names[j]}" for j in order if abs(v[j]) >= 0.05)

    def as_dict(self) -> dict:
        return {
            "sigma": self.sigma, "prior_sd": self.prior_sd,
            "singular_values": [float(s) for s in self.singular_values],
            "combinations": [self.combination(i) for i in range(len(self.singular_values))],
            "shrink": {n: float(s) for n, s in zip(self.names, self.shrink)},
            "pinned": self.pinned(), "prior_only": self.prior_only(),
        }


def identifiability(jac: np.ndarray, names: list[str], *, sigma: float = 0.05,
                    prior_sd: float = 0.5) -> Identifiability:
    """Singular values of ``jac`` and each parameter's posterior-to-prior sd ratio."""
    jac = np.asarray(jac, float)
    _, s, vt = np.linalg.svd(jac, full_matrices=True)
    k = len(names)
    sv = np.zeros(k)
    sv[:len(s)] = s
    hessian = jac.T @ jac / sigma ** 2 + np.eye(k) / prior_sd ** 2
    covariance = np.linalg.inv(hessian)
    post_sd = np.sqrt(np.diag(covariance))
    return Identifiability(list(names), sv, vt, post_sd / prior_sd, sigma, prior_sd, covariance)


def propagated_sd(gradients: np.ndarray, ident: Identifiability) -> np.ndarray:
    """Standard deviation of quantities with the given gradients (rows, per parameter in prior
    units) under the posterior covariance: how much the fit's own uncertainty moves them."""
    g = np.atleast_2d(np.asarray(gradients, float))
    return np.sqrt(np.einsum("ij,jk,ik->i", g, ident.covariance, g))


def print_table(ident: Identifiability, out=print) -> None:
    out(f"{'#':>3s} {'singular value':>14s}  combination (largest loadings)")
    for i, s in enumerate(ident.singular_values):
        out(f"{i:3d} {s:14.3g}  {ident.combination(i)}")
    out(f"\n{'parameter':22s} {'posterior/prior sd':>18s}  set by")
    for n, s in zip(ident.names, ident.shrink):
        out(f"{n:22s} {s:18.2f}  {'data' if s < PINNED_BELOW else 'prior'}")
