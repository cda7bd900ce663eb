"""Model uncertainty: the headlines re-evaluated over the ensemble of cost parameter sets.

The ensemble (study.calibration.ensemble) holds parameter sets that all reproduce the RFC's
published table within its tolerance; ``python -m study ensemble`` runs each of them on the
cells behind the headlines and the crossover, every member on the same random streams
(common random numbers).  This module turns those runs into:

* per setting, each member's speedup strict/relaxed (ratio of mean total cycles per round);
* the **model-uncertainty interval** of a headline: the sweep's point estimate times the
  5-95% range over members of (member speedup / fitted member's speedup).  The ensemble runs
  fewer replicates and rounds than the sweep; on common random numbers the ratio to the fitted
  member (member 0, the calibrated machine) removes what the shorter run shares with it and
  keeps what the costs change;
* per crossover line, each member's boundary (the same interpolation as the sweep's);
* **what drives it**: per headline quantity and cost, the Spearman rank correlation between
  the member's log cost and the quantity, and a given-data estimate of the first-order Sobol
  index (the share of the quantity's variance over the ensemble explained by that cost alone:
  Var(E[Y | X_i]) / Var(Y), E[Y | X_i] estimated over equal-count bins of X_i).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from study.analysis import crossover, schema

QUANTILES = (0.05, 0.95)
TOP_DRIVERS = 3


@dataclass
class MemberRuns:
    frame: pd.DataFrame                # cell_id, pair_id, role, member, metric, mean
    manifest: dict
    costs: pd.DataFrame                # member x cost (cycles)

    @property
    def members(self) -> int:
        return len(self.costs)


def load(out: Path, sweep_name: str) -> MemberRuns | None:
    """``<out>/ensemble/runs/<sweep>/``, or None when the ensemble stage has not run."""
    path = Path(out) / "ensemble" / "runs" / sweep_name
    if not (path / "members.parquet").exists() or not (path / "manifest.json").exists():
        return None
    manifest = json.loads((path / "manifest.json").read_text())
    costs = pd.DataFrame([m["costs"] for m in manifest["members"]])
    return MemberRuns(pd.read_parquet(path / "members.parquet"), manifest, costs)


def member_speedups(runs: MemberRuns, metric: str = schema.MAIN_METRIC) -> pd.DataFrame:
    """[pair_id x member] speedup strict/relaxed of ``metric``."""
    f = runs.frame[runs.frame["metric"] == metric]
    table = f.pivot_table(index=["pair_id", "member"], columns="role", values="mean")
    if schema.ROLE_STRICT not in table or schema.ROLE_RELAXED not in table:
        return pd.DataFrame()
    speed = (table[schema.ROLE_STRICT] / table[schema.ROLE_RELAXED]).unstack("member")
    return speed.sort_index(axis=1)


def interval(point: float, draws: np.ndarray) -> tuple[float, float]:
    """point x the 5-95% range of draws / draws[0] (member 0 is the fitted machine)."""
    draws = np.asarray(draws, float)
    if draws.size < 2 or not np.isfinite(draws[0]) or draws[0] == 0:
        return np.nan, np.nan
    ratio = draws / draws[0]
    ratio = ratio[np.isfinite(ratio)]
    lo, hi = np.quantile(ratio, QUANTILES)
    return float(point * lo), float(point * hi)


def scaled(point: float, draws: np.ndarray) -> np.ndarray:
    draws = np.asarray(draws, float)
    return point * draws / draws[0]


def first_order(x: np.ndarray, y: np.ndarray, bins: int | None = None) -> float:
    """Given-data first-order Sobol index of y on x: Var(E[y | bin of x]) / Var(y)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = y.size
    if n < 8 or np.var(y) == 0:
        return np.nan
    bins = bins or max(2, int(round(np.sqrt(n) / 1.5)))
    order = np.argsort(x, kind="stable")
    groups = np.array_split(y[order], bins)
    means = np.array([g.mean() for g in groups])
    weights = np.array([g.size for g in groups]) / n
    between = float(np.sum(weights * (means - y.mean()) ** 2))
    # subtract the between-bin variance pure noise would give (each bin mean's own variance)
    noise = float(np.sum(weights * np.array([g.var(ddof=1) / g.size if g.size > 1 else 0 for g in groups])))
    return float(max(between - noise, 0.0) / np.var(y))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return np.nan
    rx = pd.Series(x[ok]).rank().to_numpy()
    ry = pd.Series(y[ok]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return np.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def sensitivity(costs: pd.DataFrame, quantity: np.ndarray) -> pd.DataFrame:
    """Per cost: Spearman rho and first-order index of ``quantity`` (one value per member)."""
    rows = []
    y = np.log(np.asarray(quantity, float))
    for name in costs.columns:
        x = np.log(costs[name].to_numpy(float))
        rows.append(dict(parameter=name, spearman=spearman(x, y), first_order=first_order(x, y)))
    frame = pd.DataFrame(rows)
    frame["abs_spearman"] = frame["spearman"].abs()
    return frame.sort_values(["abs_spearman", "parameter"], ascending=[False, True], kind="stable",
                             ignore_index=True)


def drivers(costs: pd.DataFrame, quantity: np.ndarray, k: int = TOP_DRIVERS) -> list[str]:
    """The ``k`` costs whose rank correlation with the quantity is largest (|rho| >= 0.3)."""
    if len(costs) < 4:
        return []
    table = sensitivity(costs, quantity)
    return [r.parameter for r in table.itertuples() if np.isfinite(r.spearman) and abs(r.spearman) >= 0.3][:k]


def member_boundaries(runs: MemberRuns, paired_main: pd.DataFrame, cross: crossover.Crossover) -> pd.DataFrame:
    """Per crossover line (machine, workload, y value): each member's boundary along x, scaled.

    A member's line is the sweep's speedups times (member speedup / fitted member's speedup)
    at each x, so the boundary moves only by what the costs change.
    """
    speed = member_speedups(runs)
    rows = []
    for (machine, workload), (x, y, part) in cross.grids.items():
        for y_value, line in (part.groupby(y, sort=True, dropna=False) if y else [(None, part)]):
            line = line.sort_values(x, kind="stable")
            if len(line) < 2 or not all(p in speed.index for p in line["pair_id"]):
                continue
            draws = np.column_stack([scaled(s, speed.loc[p].to_numpy())
                                     for s, p in zip(line["speedup"], line["pair_id"])])
            xs = line[x].to_numpy(float)
            per_member = crossover.first_crossing(xs, draws)
            rows.append(dict(machine_label=machine, workload=workload, x=x, y=y, y_value=y_value,
                             boundaries=per_member, pairs=list(line["pair_id"])))
    return pd.DataFrame(rows)


def boundary_interval(per_member: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(np.asarray(per_member, float), QUANTILES, method="inverted_cdf")
    return float(lo), float(hi)


def targets(results, machine: str) -> dict[str, list[str]]:
    """The settings (pair_ids) behind the headlines and the crossover on ``machine``, with why."""
    from study.analysis import headline

    main = results.paired_main
    on_machine = set(main.loc[main["machine"] == machine, "pair_id"]) if not main.empty else set()
    out: dict[str, list[str]] = {}
    _, where = headline.speedups(results)
    for key, info in where.items():
        if info["pair_id"] in on_machine:
            out.setdefault(info["pair_id"], []).append(f"headline {key}")
    for (label, workload), (_, _, part) in results.crossover.grids.items():
        for pair in part["pair_id"]:
            if pair in on_machine:
                out.setdefault(pair, []).append(f"crossover {workload} ({label})")
    return dict(sorted(out.items()))


def attach(main: pd.DataFrame, runs: MemberRuns | None) -> pd.DataFrame:
    """The main comparison table with the model interval, its drivers and the verdict re-decided.

    Settings the ensemble did not run keep their verdict at the fitted costs (model_checked False).
    """
    from study.analysis import verdict as verdicts

    main = main.copy()
    for column, default in (("model_low", np.nan), ("model_high", np.nan), ("model_members", 0),
                            ("drivers", ""), ("model_checked", False)):
        main[column] = default
    if runs is None or main.empty:
        return main
    speed = member_speedups(runs)
    costs = runs.costs
    for i, row in main.iterrows():
        if row["pair_id"] not in speed.index:
            continue
        draws = speed.loc[row["pair_id"]].to_numpy(float)
        low, high = interval(row["speedup"], draws)
        names = drivers(costs, scaled(row["speedup"], draws))
        main.at[i, "model_low"], main.at[i, "model_high"] = low, high
        main.at[i, "model_members"] = int(np.isfinite(draws).sum())
        main.at[i, "drivers"] = ", ".join(names)
        main.at[i, "model_checked"] = True
        main.at[i, "verdict"] = verdicts.decide(row["speedup"], row["speedup_low"], row["speedup_high"], low, high,
                                                drivers=names)
    return main


def crossover_model(boundary: pd.DataFrame, per_member: pd.DataFrame) -> pd.DataFrame:
    """The boundary table with the 5-95% range of the members' boundaries (model_low/high)."""
    boundary = boundary.copy()
    boundary["model_low"], boundary["model_high"] = np.nan, np.nan
    if boundary.empty or per_member.empty:
        return boundary
    for i, row in boundary.iterrows():
        match = per_member[(per_member["machine_label"] == row["machine_label"])
                           & (per_member["workload"] == row["workload"])
                           & ((per_member["y_value"] == row["y_value"])
                              | (per_member["y_value"].isna() & pd.isna(row["y_value"])))]
        if match.empty:
            continue
        boundary.at[i, "model_low"], boundary.at[i, "model_high"] = boundary_interval(match.iloc[0]["boundaries"])
    return boundary


def quantities(results, where: dict, crossover_keys) -> dict[str, np.ndarray]:
    """Per headline (speedup keys, crossover keys): one value per member (NaN-free where defined)."""
    runs = results.members
    out: dict[str, np.ndarray] = {}
    if runs is None:
        return out
    speed = member_speedups(runs)
    main = results.paired_main.set_index("pair_id")
    for key, info in where.items():
        pair = info["pair_id"]
        if pair in speed.index:
            out[f"speedup {key}"] = scaled(main.at[pair, "speedup"], speed.loc[pair].to_numpy(float))
    per_member = results.crossover_members
    if per_member is not None and not per_member.empty:
        for row in per_member.itertuples(index=False):
            key = crossover_keys(row)
            lo, hi = results.crossover.grids[(row.machine_label, row.workload)][2][row.x].agg(["min", "max"])
            out[f"crossover {key}"] = np.clip(np.asarray(row.boundaries, float), lo, hi)
    return out


def sensitivity_table(results, where: dict, crossover_keys) -> pd.DataFrame:
    """quantity, parameter, spearman, first_order, rank: what moves each headline across the ensemble."""
    runs = results.members
    frames = []
    for name, values in quantities(results, where, crossover_keys).items():
        if np.nanstd(values) == 0:
            continue
        table = sensitivity(runs.costs, values if not name.startswith("crossover") else np.exp(values))
        table.insert(0, "quantity", name)
        table["rank"] = np.arange(1, len(table) + 1)
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["quantity", "parameter", "spearman", "first_order", "abs_spearman", "rank"])
    return pd.concat(frames, ignore_index=True)
