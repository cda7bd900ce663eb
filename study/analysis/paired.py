"""Strict against relaxed, setting by setting, on common random numbers.

For each pair and metric: the speedup strict/relaxed (a ratio of means, > 1 means relaxed
is faster) with a paired bootstrap CI, a paired t test with Holm's correction across the
grid (one family per metric), and Cohen's d_z.  The bootstrap draws of the main metric
are kept: the crossover's interval is computed from the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from study.analysis import schema, stats
from study.analysis import verdict as verdicts
from study.analysis.arms import Arms

ALPHA = 0.05
# the verdict is the practical rule of study.analysis.verdict, never the p-value alone
WINS, LOSES, NO_DIFFERENCE = verdicts.WINS, verdicts.LOSES, verdicts.NO_PRACTICAL


@dataclass
class Comparisons:
    table: pd.DataFrame
    # pair_id -> bootstrap draws of the main metric's speedup (same resample count each)
    boot: dict = field(default_factory=dict)


def compare_metrics(cells: pd.DataFrame) -> list[str]:
    """The main metric first, then every call latency some cell measured."""
    return [schema.MAIN_METRIC] + schema.latency_metrics(cells)


def compare(cells: pd.DataFrame, arms: Arms, control: str = schema.ROLE_STRICT,
            treatment: str = schema.ROLE_RELAXED, n_resamples: int = stats.N_RESAMPLES,
            level: float = stats.LEVEL) -> Comparisons:
    """Paired comparisons of ``control`` vs ``treatment`` in every pair that has both."""
    settings = cells[cells["role"] == control].drop_duplicates("pair_id").set_index("pair_id")
    columns = schema.setting_columns(cells) + ("machine_label",)
    rows, boot = [], {}
    for metric in compare_metrics(cells):
        for pair in settings.index:
            values = arms.aligned(pair, [control, treatment], metric)
            if values is None:
                continue
            a, b = values
            keep = np.isfinite(a) & np.isfinite(b)
            a, b = a[keep], b[keep]
            if a.size == 0:
                continue
            idx = stats.resample_indices(a.size, stats.rng_for((pair, metric)), n_resamples)
            draws = stats.ratio_of_means_boot(a, b, idx)
            low, high = stats.percentile_ci(draws, level)
            test = stats.paired_test(a, b)
            with np.errstate(divide="ignore", invalid="ignore"):
                speedup = a.mean() / b.mean()
            if metric == schema.MAIN_METRIC:
                boot[pair] = draws
            row = {c: settings.at[pair, c] for c in columns}
            row.update(pair_id=pair, metric=metric, n=test.n, control_mean=a.mean(), treatment_mean=b.mean(),
                       speedup=speedup, speedup_low=float(low), speedup_high=float(high),
                       diff_mean=test.mean_diff, t_stat=test.t_stat, p_t=test.p_t, p_wilcoxon=test.p_wilcoxon,
                       d_z=test.d_z, rank_biserial=test.rank_biserial)
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return Comparisons(table=table, boot=boot)
    table["p_holm"] = np.nan
    for metric, idx in table.groupby("metric", sort=True).groups.items():
        table.loc[idx, "p_holm"] = stats.holm(table.loc[idx, "p_t"].to_numpy())
    # at the fitted costs: the Monte Carlo CI against the practical threshold (study.analysis.run
    # re-decides the main metric with the ensemble's interval where the ensemble ran)
    table["verdict"] = [verdicts.decide(s, lo, hi) for s, lo, hi in
                        zip(table["speedup"], table["speedup_low"], table["speedup_high"])]
    table["model_checked"] = False
    table = table.sort_values(["metric", "pair_id"], kind="stable", ignore_index=True)
    return Comparisons(table=table, boot=boot)


def main_table(comparisons: Comparisons) -> pd.DataFrame:
    table = comparisons.table
    if table.empty:
        return table
    return table[table["metric"] == schema.MAIN_METRIC].reset_index(drop=True)
