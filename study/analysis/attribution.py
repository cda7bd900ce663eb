"""How much of relaxed's gain each of the RFC's ideas brings.

In a pair with strict (S), full relaxed (R) and relaxed with idea i switched off (A_i),
all on common random numbers, the gain is mean(S) - mean(R) and idea i's contribution is
what switching it off gives back, mean(A_i) - mean(R); its share of the gain is the ratio
of the two.  Shares need not add up to 1: ideas interact (a spurious-fault fix-up only
matters once relaxed promotion leaves stale entries behind), and the remainder is
reported as such.  The pooled share over a workload sums contributions and gains over
the settings where relaxed wins, so that a setting where it loses cannot flip the sign.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis import paired, schema, stats
from study.analysis.arms import Arms

INTERACTION = "interaction (remainder)"


def _draws(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Bootstrap means of each arm: shape (arms, resamples)."""
    return values[:, idx].mean(axis=2)


def attribute(cells: pd.DataFrame, arms: Arms, paired_main: pd.DataFrame, ideas_of_rfc: tuple[str, ...],
              metric: str = schema.MAIN_METRIC, n_resamples: int = stats.N_RESAMPLES,
              level: float = stats.LEVEL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-pair table, pooled per machine and workload table) of each idea's share of the gain;
    ``ideas_of_rfc``: the sweep's ideas (its manifest), in patch order."""
    per_pair, pooled_parts = [], {}
    columns = schema.setting_columns(cells) + ("machine_label",)
    verdicts = dict(zip(paired_main.get("pair_id", []), paired_main.get("verdict", [])))
    settings = cells[cells["role"] == schema.ROLE_STRICT].drop_duplicates("pair_id").set_index("pair_id")
    for pair in settings.index:
        ideas = [i for i in ideas_of_rfc if schema.ablation_role(i) in arms.roles(pair)]
        if not ideas:
            continue
        roles = [schema.ROLE_STRICT, schema.ROLE_RELAXED] + [schema.ablation_role(i) for i in ideas]
        values = arms.aligned(pair, roles, metric)
        if values is None:
            continue
        values = values[:, np.isfinite(values).all(axis=0)]
        if values.shape[1] == 0:
            continue
        idx = stats.resample_indices(values.shape[1], stats.rng_for((pair, "attribution")), n_resamples)
        means, boot = values.mean(axis=1), _draws(values, idx)
        gain, gain_boot = means[0] - means[1], boot[0] - boot[1]
        key = (settings.at[pair, "machine_label"], settings.at[pair, "workload"])
        wins = verdicts.get(pair) == paired.WINS
        # on common random numbers a switch that cannot act in this setting (already merged in the
        # kernel, or nothing in the workload reaches it) leaves every replicate bit-identical to relaxed
        acts = {idea: not np.array_equal(values[k], values[1]) for k, idea in enumerate(ideas, start=2)}
        if wins:
            pooled_parts.setdefault(key, []).append((ideas, means, boot, acts))
        base = {c: settings.at[pair, c] for c in columns}
        shares = {}
        for k, idea in enumerate(ideas, start=2):
            contrib, contrib_boot = means[k] - means[1], boot[k] - boot[1]
            shares[idea] = (contrib, contrib_boot)
        rows = _share_rows(gain, gain_boot, shares, level, len(ideas) == len(ideas_of_rfc))
        per_pair += [dict(base, pair_id=pair, relaxed_wins=wins, acts=acts.get(r["idea"], True), **r) for r in rows]
    pooled = []
    for (machine, workload), parts in sorted(pooled_parts.items()):
        # each patch over the settings where it can act (its switch changes something there)
        for idea in ideas_of_rfc:
            sel = [(ideas.index(idea) + 2, m, b) for ideas, m, b, acts in parts if idea in ideas and acts[idea]]
            offered = sum(1 for ideas, _, _, _ in parts if idea in ideas)
            if not sel:
                if offered:
                    pooled.append(dict(machine_label=machine, workload=workload, settings=0, offered=offered,
                                       idea=idea, acts=False))
                continue
            gain = sum(m[0] - m[1] for _, m, _ in sel)
            gain_boot = sum(b[0] - b[1] for _, _, b in sel)
            share = {idea: (sum(m[k] - m[1] for k, m, _ in sel), sum(b[k] - b[1] for k, _, b in sel))}
            rows = _share_rows(gain, gain_boot, share, level, complete=False)
            pooled += [dict(machine_label=machine, workload=workload, settings=len(sel), offered=offered, acts=True,
                            **r) for r in rows]
    return pd.DataFrame(per_pair), pd.DataFrame(pooled)


def _share_rows(gain, gain_boot, shares: dict, level: float, complete: bool) -> list[dict]:
    rows = []
    total, total_boot = 0.0, np.zeros_like(gain_boot)
    g_low, g_high = stats.percentile_ci(gain_boot, level)
    for idea, (contrib, contrib_boot) in shares.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            share, share_boot = contrib / gain, contrib_boot / gain_boot
        low, high = stats.percentile_ci(share_boot, level)
        c_low, c_high = stats.percentile_ci(contrib_boot, level)
        rows.append(dict(idea=idea, gain=gain, gain_low=float(g_low), gain_high=float(g_high),
                         contribution=contrib, contribution_low=float(c_low), contribution_high=float(c_high),
                         share=share, share_low=float(low), share_high=float(high)))
        total, total_boot = total + share, total_boot + share_boot
    if complete:
        low, high = stats.percentile_ci(1 - total_boot, level)
        rows.append(dict(idea=INTERACTION, gain=gain, gain_low=float(g_low), gain_high=float(g_high),
                         contribution=np.nan, contribution_low=np.nan, contribution_high=np.nan,
                         share=1 - total, share_low=float(low), share_high=float(high)))
    return rows
