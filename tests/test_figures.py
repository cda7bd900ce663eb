"""Every drawn point of the report's line figures is one cell or one paired setting, never the
mean of two kernels (or machines, or policy variants) that share an x value."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from study.analysis import figures
from study.analysis.load import load_sweep
from study.analysis.plots import common, scaling, verdicts, workloads
from study.analysis.run import compute
from study.policies import MAINLINE, RFC_BASE
from synthetic import KERNEL_SHOOTDOWN_SCALE, make_sweep

# each line figure: its y column and the column the CSV holds its x in
LINE_FIGURES = {"latency_threads": (scaling.latency_threads, "mean", "workload.threads"),
                "speedup_threads": (scaling.speedup_threads, "speedup", "workload.threads")}


@pytest.fixture(scope="module")
def two_kernels(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_kernels")
    make_sweep(out, name="two", grid="full", replicates=4, rounds=200, samples=20, kernels=(RFC_BASE, MAINLINE))
    return compute(load_sweep(out, "two"))


def _drawn(fig) -> list[tuple[float, float]]:
    """(x, y) of every marker of every data line the figure drew (reference lines excluded)."""
    points = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_transform() != ax.transData:   # axhline: parity, in axes coordinates
                continue
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            points += [(a, b) for a, b in zip(x, y) if np.isfinite(a) and np.isfinite(b)]
    return points


def _check_one_row_per_point(plot, y: str, x: str) -> None:
    data = plot.data[np.isfinite(plot.data[y].astype(float))]
    drawn = _drawn(plot.fig)
    # seaborn's legend handles are lines without data on the axes; a pooled point would be a
    # mean no row has, and the figure would draw fewer points than the rows it wrote
    assert len(drawn) == len(data), (plot.name, len(drawn), len(data))
    for px, py in drawn:
        rows = data[np.isclose(data[x].astype(float), px) & np.isclose(data[y].astype(float), py, rtol=1e-12)]
        assert len(rows) >= 1, (plot.name, px, py)


@pytest.mark.parametrize("name", list(LINE_FIGURES))
def test_line_figures_draw_each_kernel_as_its_own_line(two_kernels, name):
    make, y, x = LINE_FIGURES[name]
    with figures.style():
        plot = make(two_kernels)
    assert not plot.skipped, plot.note
    assert plot.data["machine_label"].nunique() == 2
    _check_one_row_per_point(plot, y, x)
    plt.close("all")


def test_workload_panels_draw_each_kernel_as_its_own_line(two_kernels):
    with figures.style():
        plots = [p for p in workloads.panels(two_kernels) if not p.skipped]
    assert plots
    for plot in plots:
        _check_one_row_per_point(plot, "mean", "x_value")
    plt.close("all")


def test_the_speedups_of_two_kernels_stay_apart(two_kernels):
    """The toy's second kernel pays more for a shootdown: at 8 threads the two speedups differ, and
    both numbers are drawn, not their mean."""
    with figures.style():
        plot = scaling.speedup_threads(two_kernels)
    data = plot.data
    at8 = data[(data["workload"] == "mprotect_toggle") & (data["workload.threads"] == 8)
               & (data["workload.placement"] == "core")]
    assert at8["machine_label"].nunique() == 2
    low, high = sorted(at8["speedup"])
    assert high > low * 1.02, (low, high, KERNEL_SHOOTDOWN_SCALE)
    drawn_y = {round(b, 9) for _, b in _drawn(plot.fig)}
    assert round(low, 9) in drawn_y and round(high, 9) in drawn_y
    assert round((low + high) / 2, 9) not in drawn_y
    plt.close("all")


def test_the_line_helper_refuses_rows_it_would_average(two_kernels):
    frame = pd.DataFrame({"x": [1, 1, 2], "role": ["strict"] * 3, "mean": [1.0, 2.0, 3.0],
                          "ci_low": [0.9, 1.9, 2.9], "ci_high": [1.1, 2.1, 3.1]})
    fig, axes = common.new_figure(1)
    with pytest.raises(ValueError, match="each drawn point must be one cell"):
        common.lines_with_ci(axes[0][0], frame, "x", "role", {"strict": "k"})
    plt.close(fig)


def test_the_verdict_map_hatches_settings_not_run(two_kernels):
    with figures.style():
        plot = verdicts.verdict_map(two_kernels)
    hatched = [p for ax in plot.fig.axes for p in ax.patches if p.get_hatch()]
    # the toy runs uffd_wp at 2, 4, 8 threads only: its row at 1 thread is not run on either kernel
    assert len(hatched) >= 2
    labels = [t.get_text() for legend in plot.fig.legends for t in legend.get_texts()]
    assert "not run" in labels
    plt.close("all")
