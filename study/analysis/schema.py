"""The sweep's table layout as the analysis reads it: column names and what they mean.

The sweep writes one row per cell with dotted column names (``workload.threads``,
``total_cycles_per_round.ci_low``, ``count.ipis``), and a manifest that says what they mean
(study.results.tables.meaning): the workloads it ran with their knobs, calls and report hooks,
the RFC switches and which are ideas, each cell's policy role.  This module is the one place
that spells the columns; the knobs, switches and call labels of a sweep are read from its
columns and its manifest, never from today's code, so a sweep written before a workload or a
patch was added still reads as it was written.
"""

from __future__ import annotations

import pandas as pd

from study.policies import ROLE_OTHER, ROLE_RELAXED, ROLE_STRICT, ROLE_UNSAFE, ablation_role  # noqa: F401
from study.results.metrics import MAIN as MAIN_METRIC
from study.results.metrics import STATS  # noqa: F401

# where the cycles of one loop iteration go: the caller, the other threads' own accesses
# (spurious faults, working-set refills), and flush_tlb_func handlers stealing time
CYCLE_PARTS = ("initiator_cycles_per_round", "other_cycles_per_round", "stolen_cycles_per_round")
ROUND_METRICS = (MAIN_METRIC,) + CYCLE_PARTS
KNOB_PREFIX, POLICY_PREFIX, LATENCY_PREFIX = "workload.", "policy.", "lat_"
# the columns of a setting beside its knobs: the kernel is part of it (strict is that kernel,
# relaxed that kernel with the RFC)
SETTING_BASE = ("machine", "machine_calibrated", "kernel", "workload")

CELL_REQUIRED = ("cell_id", "pair_id", "machine", "machine_calibrated", "kernel", "policy", "workload",
                 "replicates", "rounds", f"{MAIN_METRIC}.mean")
REPLICATE_REQUIRED = ("cell_id", "pair_id", "policy", "replicate", "metric", "value")
CALL_REQUIRED = ("cell_id", "label", "latency")


class Meaning:
    """The manifest's ``meaning``: what the sweep's columns mean, as the code that wrote it said."""

    def __init__(self, data: dict):
        self.data = data or {}

    @property
    def workloads(self) -> dict[str, dict]:
        """name -> the workload's description (knobs, calls, crossover, panel, title, about)."""
        return self.data.get("workloads", {})

    @property
    def ideas(self) -> tuple[str, ...]:
        """The RFC's ideas (the switches ``relaxed`` turns on), in patch order."""
        return tuple(self.data.get("ideas", ()))

    def switch(self, name: str) -> dict:
        return self.data.get("switches", {}).get(name, {})

    def patch(self, name: str) -> str:
        """``patch 3`` for a switch, ``?`` for a name the sweep does not know."""
        return self.switch(name).get("where", "?")

    def patch_label(self, name: str) -> str:
        """``clean_anon_writable (patch 3)``."""
        return f"{name} ({self.patch(name)})"

    def knob(self, column: str, workload: str | None = None) -> dict:
        """A knob's declaration (``unit``, ``doc``) from the first workload that has it."""
        name = column.split(".", 1)[1] if column.startswith(KNOB_PREFIX) else column
        for w, desc in self.workloads.items():
            if (workload is None or w == workload) and name in desc.get("knobs", {}):
                return desc["knobs"][name]
        return {}

    def crossover(self, workload: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The knobs a workload's crossover looks along (x) and splits by (y), most telling first."""
        desc = self.workloads.get(workload, {})
        return tuple(desc.get("crossover", ())), tuple(desc.get("crossover_y", ()))

    def calls(self) -> dict[str, dict]:
        """label -> the call's description, over every workload of the sweep."""
        out: dict[str, dict] = {}
        for desc in self.workloads.values():
            for label, call in desc.get("calls", {}).items():
                out.setdefault(label, call)
        return out

    def call_text(self, label: str) -> str:
        return self.calls().get(label, {}).get("text", label)


def knob_columns(frame: pd.DataFrame) -> list[str]:
    """The knob columns of a cells (or derived) table, in the writer's order."""
    return [c for c in frame.columns if isinstance(c, str) and c.startswith(KNOB_PREFIX)]


def policy_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if isinstance(c, str) and c.startswith(POLICY_PREFIX)]


def setting_columns(frame: pd.DataFrame) -> tuple[str, ...]:
    """What a setting is: machine, kernel, workload and every knob; cells of one pair_id agree on
    all of them and differ only in the policy (NaN: the knob does not apply to the workload)."""
    return tuple(c for c in SETTING_BASE if c in frame.columns) + tuple(knob_columns(frame))


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Metric names present in a cells table (those with a ``.mean`` column)."""
    return sorted(c[: -len(".mean")] for c in cells.columns if c.endswith(".mean"))


def latency_metrics(cells: pd.DataFrame) -> list[str]:
    """The call latencies some cell of the table measured (``lat_<label>``), by label."""
    return [m for m in metric_columns(cells) if m.startswith(LATENCY_PREFIX) and cells[f"{m}.mean"].notna().any()]


def varied_knobs(frame: pd.DataFrame) -> list[str]:
    """Knobs that take more than one value in ``frame`` (NaN counts as a value)."""
    return [k for k in knob_columns(frame) if frame[k].nunique(dropna=False) > 1]


def machine_label(name: str, calibrated: bool, kernel: str | None = None) -> str:
    """How a machine (and the kernel it runs) is named everywhere it is reported.

    Uncalibrated presets say so; the kernel is part of the label so that every grouping,
    table, caption and headline built on it names the strict baseline it is about."""
    label = name if calibrated else f"{name} (uncalibrated preset)"
    return label if kernel is None else f"{label}, kernel {kernel}"


def label_kernel(label: str) -> str:
    """The kernel a machine label names (machine_label's ``, kernel K``), or the label itself."""
    return str(label).rsplit(", kernel ", 1)[-1]
