"""The report's figures: each is a function of the analysis results returning a Plot.

``render_all`` draws them in a fixed order and writes ``<name>.svg`` and ``<name>.csv``
(the exact data drawn, knob columns without their ``workload.`` prefix) for every plot the
sweep has cells for; a plot it lacks cells for
is skipped with a note instead of failing the run, so a small sweep still gets a report.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from study.analysis import figures
from study.analysis.plots import attribution, crossover, scaling, seed, verdicts, workloads
from study.analysis.plots.common import Plot
from study.analysis.results import Results

PLOTS = (
    verdicts.verdict_map,
    verdicts.sensitivity,
    seed.plot,
    scaling.latency_threads,
    scaling.speedup_threads,
    scaling.latency_ecdf,
    scaling.cycle_breakdown,
    workloads.dirty_ratio,
    workloads.panels,
    crossover.plot,
    attribution.plot,
)


def plain_name(column: str) -> str:
    """``workload.threads`` -> ``threads`` in the plots' CSVs: dvc plots (vega-lite) would read
    a dot in a field name as a nested field."""
    return column.split(".", 1)[1] if column.startswith("workload.") else column


def render_all(results: Results, out: Path) -> list[dict]:
    """Draw every plot into ``out``; return one index record per plot (skipped ones too)."""
    index = []
    for make in PLOTS:
        with figures.style():
            made = make(results)
            for plot in made if isinstance(made, list) else [made]:
                record = dict(name=plot.name, title=plot.title, caption=plot.caption, note=plot.note,
                              skipped=plot.skipped, svg=None, csv=None)
                if not plot.skipped:
                    if plot.tight:
                        plot.fig.tight_layout()
                    figures.save_svg(plot.fig, out / f"{plot.name}.svg")
                    figures.save_csv(plot.data.rename(columns=plain_name), out / f"{plot.name}.csv")
                    record.update(svg=f"{plot.name}.svg", csv=f"{plot.name}.csv")
                index.append(record)
            plt.close("all")
    return index
