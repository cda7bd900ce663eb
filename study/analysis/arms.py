"""Per-replicate values of the cells of one pair, aligned on the replicate index.

Cells of one pair_id ran on common random numbers, so replicate r of every policy saw the
same draws; aligning on r is what makes the comparisons paired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class Arms:
    """Lookup of per-replicate values by (metric, cell) and by (pair, role)."""

    def __init__(self, replicates: pd.DataFrame, cells: pd.DataFrame):
        # One stable sort by replicate for the whole table, then each (metric, cell) as positions
        # into it: within a group that is the group's own stable sort (ties keep their row
        # order), without a sort and an index per group (a sweep has tens of thousands).
        reps = replicates[["cell_id", "metric", "replicate", "value"]].sort_values("replicate", kind="stable")
        values = reps.set_index("replicate")["value"]
        groups = reps.groupby(["metric", "cell_id"], sort=True, observed=True).indices
        self._values = {key: values.iloc[rows] for key, rows in groups.items()}
        # (pair, role) -> cell_id; the first cell wins if a sweep repeats a role in a pair
        self._cell = {}
        for pair, role, cell in zip(cells["pair_id"], cells["role"], cells["cell_id"]):
            self._cell.setdefault((pair, role), cell)

    def cell(self, pair, role):
        return self._cell.get((pair, role))

    def roles(self, pair) -> set[str]:
        return {role for (p, role) in self._cell if p == pair}

    def aligned(self, pair, roles: list[str], metric: str) -> np.ndarray | None:
        """Array of shape (len(roles), n) over the replicates every role has, or None."""
        series = []
        for role in roles:
            cell = self.cell(pair, role)
            values = self._values.get((metric, cell)) if cell is not None else None
            if values is None:
                return None
            series.append(values)
        common = series[0].index
        for s in series[1:]:
            common = common.intersection(s.index)
        if len(common) == 0:
            return None
        return np.vstack([s.loc[common].to_numpy(dtype=float) for s in series])
