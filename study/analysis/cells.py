"""Per-cell summaries: mean with its 95% CI, median, p99, and whether the cell is unstable.

The sweep already wrote these statistics per cell; this step puts them in one long table
(one row per cell and metric) and flags cells whose interval is too wide, relative to the
mean, to be quoted: more replicates or rounds would be needed there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis import schema, stats

# A cell is unstable when its CI half-width exceeds this share of its mean.
UNSTABLE_REL_HALF_WIDTH = 0.05

ID_COLUMNS = ("cell_id", "pair_id", "machine", "machine_label", "policy", "role")


def summary_metrics(cells: pd.DataFrame) -> list[str]:
    """Metrics worth a per-cell summary: cycles per round and call latencies, where measured."""
    present = set(schema.metric_columns(cells))
    rounds = [m for m in schema.ROUND_METRICS if m in present and cells[f"{m}.mean"].notna().any()]
    return rounds + schema.latency_metrics(cells)


def summarize_cells(cells: pd.DataFrame, threshold: float = UNSTABLE_REL_HALF_WIDTH) -> pd.DataFrame:
    """Long table: one row per (cell, metric) the cell measured."""
    frames = []
    ids = list(dict.fromkeys([c for c in ID_COLUMNS if c in cells.columns] + list(schema.setting_columns(cells)[2:])))
    for metric in summary_metrics(cells):
        part = cells[ids].copy()
        part["metric"] = metric
        for st in schema.STATS:
            column = f"{metric}.{st}"
            part[st] = cells[column] if column in cells.columns else np.nan
        part = part[part["mean"].notna()]
        part["rel_half_width"] = [stats.relative_half_width(m, lo, hi)
                                  for m, lo, hi in zip(part["mean"], part["ci_low"], part["ci_high"])]
        part["unstable"] = part["rel_half_width"] > threshold
        frames.append(part)
    if not frames:
        return pd.DataFrame(columns=ids + ["metric", *schema.STATS, "rel_half_width", "unstable"])
    return pd.concat(frames, ignore_index=True).sort_values(["metric", "pair_id", "cell_id"], kind="stable",
                                                              ignore_index=True)
