"""The verdict on one comparison: relaxed wins, loses, makes no practical difference, or it depends.

Statistical significance alone never makes a verdict: a 1.002x speedup can be certain and
still irrelevant.  A verdict needs the whole range the result could take -- the Monte Carlo
CI (simulation noise) joined with the model-uncertainty interval (the 5-95% range over the
ensemble of cost parameter sets that all reproduce the RFC's published table) -- to lie on
one side of a practical threshold (default 2%, in log-symmetric form: a speedup above
1.02 wins, below 1/1.02 loses, inside both bounds is no practical difference):

* the whole range above 1 + threshold: "relaxed wins";
* the whole range below 1 / (1 + threshold): "relaxed loses";
* the whole range within [1 / (1 + threshold), 1 + threshold]: "no practical difference";
* otherwise, when the ensemble's range crosses a bound: "depends on <the cost parameters
  that move it most across the ensemble>";
* otherwise (only the Monte Carlo CI crosses a bound): "unresolved (simulation noise)".

Without an ensemble interval the same rule runs on the Monte Carlo CI alone: the verdict
holds at the fitted costs only (tables say so in their ``model_checked`` column).
"""

from __future__ import annotations

import math
from typing import Iterable

THRESHOLD = 0.02
WINS, LOSES, NO_PRACTICAL = "relaxed wins", "relaxed loses", "no practical difference"
DEPENDS = "depends on"
UNRESOLVED = "unresolved (simulation noise)"


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def decide(point: float, ci_low: float, ci_high: float, model_low: float | None = None,
           model_high: float | None = None, *, threshold: float = THRESHOLD,
           drivers: Iterable[str] = ()) -> str:
    """The verdict on a speedup (strict/relaxed; > 1: relaxed faster); see the module doc."""
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    if not _finite(point):
        return UNRESOLVED
    up, down = 1.0 + threshold, 1.0 / (1.0 + threshold)
    lows = [v for v in (point, ci_low, model_low) if _finite(v)]
    highs = [v for v in (point, ci_high, model_high) if _finite(v)]
    lo, hi = min(lows), max(highs)
    has_model = _finite(model_low, model_high)
    if lo > up:
        return WINS
    if hi < down:
        return LOSES
    if lo >= down and hi <= up:
        return NO_PRACTICAL
    if has_model and (min(model_low, point) < up < max(model_high, point)
                      or min(model_low, point) < down < max(model_high, point)):
        names = [d for d in drivers if d]
        return f"{DEPENDS} {', '.join(names) if names else 'the cost parameters'}"
    return UNRESOLVED


def category(verdict: str) -> str:
    """wins / loses / none / depends / unresolved: the map's colour for a verdict."""
    if verdict.startswith(WINS):
        return "wins"
    if verdict.startswith(LOSES):
        return "loses"
    if verdict.startswith(NO_PRACTICAL):
        return "none"
    if verdict.startswith(DEPENDS):
        return "depends"
    return "unresolved"
