"""Per-cell summaries: 95% t-intervals over replicates, medians and p99 of per-call latencies."""

from __future__ import annotations

import functools
import math

import numpy as np

from study.workloads.result import CellResult

CONFIDENCE = 0.95
STATS = ("mean", "ci_low", "ci_high", "median", "p99", "n")


def t_interval(values: np.ndarray) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; the interval is NaN below two values."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    n = int(finite.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(finite.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(_t_quantile(n - 1) * finite.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


@functools.lru_cache(maxsize=None)
def _t_quantile(dof: int) -> np.float64:
    """Student's t quantile of the interval for ``dof`` degrees of freedom: one scipy call per
    distinct count (a sweep's cells share a few), and scipy loads only when an interval is
    computed (a Ray worker never needs it outside adaptive replication)."""
    from scipy import stats

    return stats.t.ppf(0.5 + CONFIDENCE / 2, dof)


def relative_half_width(values: np.ndarray) -> float:
    """95% CI half-width / |mean|: what adaptive replication drives below run.ci_target."""
    mean, low, high, n = t_interval(values)
    if n < 2:
        return math.inf
    half = (high - low) / 2
    if mean == 0:
        return 0.0 if half == 0 else math.inf
    return half / abs(mean)


def summarize(result: CellResult) -> dict[str, float]:
    """``M.<stat>`` for every metric and ``count.C`` (mean per replicate per round) per counter.

    ``lat_<label>`` metrics take their median and p99 from the per-call samples of the label
    (a per-replicate mean hides the tail); the other metrics from the per-replicate values.
    """
    row: dict[str, float] = {}
    for name in metric_order(result.metrics):
        values = result.metrics[name]
        mean, low, high, n = t_interval(values)
        spread = _spread_source(name, values, result.samples)
        row[f"{name}.mean"] = mean
        row[f"{name}.ci_low"] = low
        row[f"{name}.ci_high"] = high
        row[f"{name}.median"] = float(np.median(spread)) if spread.size else math.nan
        row[f"{name}.p99"] = float(np.percentile(spread, 99)) if spread.size else math.nan
        row[f"{name}.n"] = n
    for name, totals in result.counters.items():
        row[f"count.{name}"] = float(np.mean(np.asarray(totals, dtype=np.float64) / result.rounds))
    return row


def _spread_source(name: str, values: np.ndarray, samples: dict[str, np.ndarray]) -> np.ndarray:
    label = name[len("lat_"):] if name.startswith("lat_") else None
    if label is not None and label in samples:
        return np.asarray(samples[label], dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    return values[~np.isnan(values)]


def metric_order(metrics) -> list[str]:
    """The main metric first, then the others by name: a stable column order."""
    main = CellResult.MAIN_METRIC
    return ([main] if main in metrics else []) + sorted(m for m in metrics if m != main)
