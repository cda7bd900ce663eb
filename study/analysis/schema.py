"""The sweep's table layout as the analysis reads it: column names and how cells pair up.

The sweep writes one row per cell with dotted column names (``workload.threads``,
``total_cycles_per_round.ci_low``, ``count.ipis``); this module is the one place that
spells them, so a renamed column breaks here with a clear message and nowhere else.
"""

from __future__ import annotations

import pandas as pd

from study.policies import RELAXED, SWITCHES
from study.workloads import LABELS

MAIN_METRIC = "total_cycles_per_round"
# where the cycles of one loop iteration go: the caller, the other threads' own accesses
# (spurious faults, working-set refills), and flush_tlb_func handlers stealing time
CYCLE_PARTS = ("initiator_cycles_per_round", "other_cycles_per_round", "stolen_cycles_per_round")
ROUND_METRICS = (MAIN_METRIC,) + CYCLE_PARTS
LATENCY_METRICS = tuple(f"lat_{label}" for label in LABELS)
STATS = ("mean", "ci_low", "ci_high", "median", "p99", "n")

# The knobs of a setting.  Cells of one pair_id agree on all of them and differ only in
# the policy; NaN means the knob does not apply to the workload.
WORKLOAD_KNOBS = (
    "workload.threads",
    "workload.placement",
    "workload.pages",
    "workload.dirty_ratio",
    "workload.working_set",
    "workload.lazy_share",
    "workload.remote_access_rate",
    "workload.remote_write_share",
    "workload.write_rate",
    "workload.writes_per_round",
    "workload.fault_roundtrip",
)
# the kernel is part of a setting: strict is that kernel, relaxed that kernel with the RFC
SETTING_COLUMNS = ("machine", "machine_calibrated", "kernel", "workload") + WORKLOAD_KNOBS
# The RFC's ideas, each behind one switch; the negative control is not one of them.
IDEAS = tuple(s for s in SWITCHES if getattr(RELAXED, s))
POLICY_COLUMNS = tuple(f"policy.{s}" for s in SWITCHES)

# a knob column may be missing (a sweep of one workload): it reads as "does not apply"
CELL_REQUIRED = ("cell_id", "pair_id", "machine", "policy", "workload", "replicates", "rounds",
                 f"{MAIN_METRIC}.mean")
REPLICATE_REQUIRED = ("cell_id", "pair_id", "policy", "replicate", "metric", "value")
CALL_REQUIRED = ("cell_id", "label", "latency")

# Roles a cell plays inside its pair, derived from its switches rather than its name so
# that an ablation named anything still counts.
ROLE_STRICT = "strict"
ROLE_RELAXED = "relaxed"
ROLE_UNSAFE = "unsafe"
ROLE_OTHER = "other"


def ablation_role(idea: str) -> str:
    """The role of a relaxed cell with only ``idea`` switched off."""
    return f"relaxed-no-{idea}"


def policy_role(row: pd.Series) -> str:
    """strict | relaxed | relaxed-no-<idea> | unsafe | other, from the policy switches."""
    if not all(c in row.index for c in POLICY_COLUMNS):
        return {"strict": ROLE_STRICT, "relaxed": ROLE_RELAXED, "unsafe": ROLE_UNSAFE}.get(row["policy"], ROLE_OTHER)
    on = {s: bool(row[f"policy.{s}"]) for s in SWITCHES}
    if on["unsafe_dirty_demote"]:
        return ROLE_UNSAFE
    off = [idea for idea in IDEAS if not on[idea]]
    extra = [s for s in SWITCHES if on[s] and s not in IDEAS]
    if extra:
        return ROLE_OTHER
    if len(off) == len(IDEAS):
        return ROLE_STRICT
    if not off:
        return ROLE_RELAXED
    if len(off) == 1:
        return ablation_role(off[0])
    return ROLE_OTHER


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Metric names present in a cells table (those with a ``.mean`` column)."""
    return sorted(c[: -len(".mean")] for c in cells.columns if c.endswith(".mean"))


def varied_knobs(frame: pd.DataFrame) -> list[str]:
    """Workload knobs that take more than one value in ``frame`` (NaN counts as a value)."""
    return [k for k in WORKLOAD_KNOBS if k in frame.columns and frame[k].nunique(dropna=False) > 1]


def machine_label(name: str, calibrated: bool, kernel: str | None = None) -> str:
    """How a machine (and the kernel it runs) is named everywhere it is reported.

    Uncalibrated presets say so; the kernel is part of the label so that every grouping,
    table, caption and headline built on it names the strict baseline it is about."""
    label = name if calibrated else f"{name} (uncalibrated preset)"
    return label if kernel is None else f"{label}, kernel {kernel}"
