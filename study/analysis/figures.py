"""Writing a figure and its data so that the same input gives the same bytes.

matplotlib's SVG carries a date and random ids unless told otherwise: the date is dropped
(``metadata={'Date': None}``), ids are salted with a fixed string (``svg.hashsalt``), and
text is drawn as paths so that the picture does not depend on the fonts of whoever opens
it (the report embeds these SVGs in HTML and in the PDF).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from study.analysis import schema  # noqa: E402

RC = {
    "svg.hashsalt": "study",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.dpi": 100,
    "path.simplify": False,
}
SVG_METADATA = {"Date": None, "Creator": "study"}
WIDTH = 7.0  # inches: the PDF's text width, so the figure is not scaled down much

_PALETTE = sns.color_palette("colorblind", 10)
# One colour per policy role in every plot: strict, relaxed and the negative control fixed,
# the first ablations (in patch order) from the rest of the palette.
ROLE_COLORS = {schema.ROLE_STRICT: _PALETTE[3], schema.ROLE_RELAXED: _PALETTE[0], schema.ROLE_UNSAFE: _PALETTE[7]}


def role_colors(ideas) -> dict:
    """ROLE_COLORS and a colour for the ablation of each of the sweep's ``ideas``."""
    return {**ROLE_COLORS, **{schema.ablation_role(idea): _PALETTE[i] for i, idea in zip((1, 2, 4, 8), ideas)}}
PART_COLORS = dict(zip(schema.CYCLE_PARTS, (_PALETTE[0], _PALETTE[2], _PALETTE[3])))


@contextmanager
def style():
    """seaborn's look with the deterministic SVG settings, without touching global state."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper"), **RC}
    with plt.rc_context(rc):
        yield


def save_svg(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    plt.close(fig)


def save_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV with a fixed float format and line ending, so reruns compare byte for byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")
