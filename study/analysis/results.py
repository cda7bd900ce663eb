"""Everything one analysis run computed, handed to the plots and the writers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from study.analysis.crossover import Crossover
from study.analysis.load import Sweep
from study.analysis.paired import Comparisons


@dataclass
class Results:
    sweep: Sweep
    summary: pd.DataFrame            # per cell and metric: mean, CI, median, p99, unstable
    comparisons: Comparisons         # strict vs relaxed, every metric
    paired_main: pd.DataFrame        # the same, main metric only
    crossover: Crossover
    attribution_pairs: pd.DataFrame  # per pair and idea
    attribution: pd.DataFrame        # pooled per machine and workload
    seed: pd.DataFrame               # the seed table reproduced
    # what the seed's cells pin about the machine's costs (per parameter) and its summary
    identifiability: pd.DataFrame = field(default_factory=pd.DataFrame)
    identifiability_summary: dict = field(default_factory=dict)
    # the ensemble's member runs (study.analysis.uncertainty.MemberRuns) or None
    members: object = None
    crossover_members: object = None            # per crossover line: each member's boundary
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)
    # where each scanned setting's verdict flips along its conditions (study.analysis.conditions):
    # per setting and knob, and per value
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    condition_lines: pd.DataFrame = field(default_factory=pd.DataFrame)
    # per setting: where the cycles moved and the events behind it (study.analysis.why)
    why: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def cells(self) -> pd.DataFrame:
        return self.sweep.cells
