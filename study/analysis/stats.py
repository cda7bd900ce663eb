"""The statistics, on plain numpy arrays: t intervals, paired bootstrap, paired tests, Holm.

Replicates of the cells of one pair share common random numbers, so replicate r of strict
and replicate r of relaxed saw the same jitter draws: every comparison here is paired, and
every bootstrap resamples replicate *indices*, never the two arms independently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
N_RESAMPLES = 2000
# Fixed so that the same sweep always gives the same intervals; the pair's id is mixed in
# so that a pair's interval does not change when other pairs join the grid.
BOOTSTRAP_SEED = 20220718


def mean_ci(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval; a single value has an unbounded interval."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, -np.inf, np.inf)
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return (mean, mean - half, mean + half)


def relative_half_width(mean: float, low: float, high: float) -> float:
    """CI half-width over |mean|: 0 for an exact zero, inf when the mean is 0 but the CI is not."""
    half = (high - low) / 2
    if not np.isfinite(half):
        return np.inf
    if mean == 0:
        return 0.0 if half == 0 else np.inf
    return abs(half / mean)


def rng_for(key: object, seed: int = BOOTSTRAP_SEED) -> np.random.Generator:
    """A generator that depends only on the fixed seed and ``key`` (e.g. a pair id)."""
    return np.random.default_rng([seed, zlib.crc32(str(key).encode())])


def resample_indices(n: int, rng: np.random.Generator, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """``n_resamples`` x ``n`` replicate indices drawn with replacement."""
    return rng.integers(0, n, size=(n_resamples, n))


def percentile_ci(boot: np.ndarray, level: float = LEVEL, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap draws, ignoring draws that came out undefined."""
    alpha = (1 - level) / 2
    with np.errstate(all="ignore"):
        low = np.nanquantile(boot, alpha, axis=axis)
        high = np.nanquantile(boot, 1 - alpha, axis=axis)
    return low, high


def ratio_of_means_boot(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """mean(a)/mean(b) on each row of paired resample indices ``idx``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return a[idx].mean(axis=1) / b[idx].mean(axis=1)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of arm ``a`` against arm ``b`` over the same replicates."""

    n: int
    mean_diff: float      # mean of a - b
    t_stat: float
    p_t: float            # paired t test, two-sided
    p_wilcoxon: float     # Wilcoxon signed-rank, two-sided (robustness check)
    d_z: float            # Cohen's d_z: mean(a - b) / sd(a - b)
    rank_biserial: float  # matched-pairs rank-biserial correlation, in [-1, 1]


def paired_test(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Paired t test (the primary test), Wilcoxon signed-rank, and two effect sizes.

    The t test is primary because each replicate's value is already a mean over many
    rounds (close to normal), and with the few replicates a sweep affords the Wilcoxon
    test cannot reach small p values (its smallest two-sided p is 2 / 2**n).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    if n == 0:
        return PairedTest(0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else np.nan
    if n < 2:
        t_stat, p_t, d_z = np.nan, np.nan, np.nan
    elif sd == 0:
        # identical differences: no noise to test against
        t_stat = 0.0 if mean == 0 else np.copysign(np.inf, mean)
        p_t = 1.0 if mean == 0 else 0.0
        d_z = 0.0 if mean == 0 else np.copysign(np.inf, mean)
    else:
        t_stat = mean / (sd / np.sqrt(n))
        p_t = float(2 * stats.t.sf(abs(t_stat), n - 1))
        d_z = mean / sd
    return PairedTest(n, mean, float(t_stat), float(p_t), _wilcoxon_p(d), float(d_z), rank_biserial(d))


def _wilcoxon_p(d: np.ndarray) -> float:
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return 1.0
    return float(stats.wilcoxon(nonzero, alternative="two-sided").pvalue)


def rank_biserial(d: np.ndarray) -> float:
    """(W+ - W-) / (W+ + W-) over the ranks of |d|, zero differences dropped."""
    d = np.asarray(d, float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    total = ranks.sum()
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / total)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p values (step-down, monotone); NaN stays NaN and is not counted.

    The i-th smallest of m p values is multiplied by (m - i + 1), then a running maximum
    keeps the adjusted values in the order of the raw ones, and 1 caps them.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out
