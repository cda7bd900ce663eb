"""The refill curve: what a received flush costs a thread that keeps N pages hot, measured.

``measure``'s refill cells (study.measure.grid HOST ``refill``) run a second thread that
passes over N pages of its own after each of thread 0's mprotect() calls and after no call;
``ws_lost_cycles_per_flush`` is its extra pass time over the flushes its CPU took (the trace's
remote and switch flushes).  A call of 1 page sends a partial shootdown (INVLPG of that
page); one of 64 pages, past the 33-page ceiling, a full one (TLB_FLUSH_ALL).

The engine charges a thread ``page_walk`` cycles per hot entry after each full flush of its
CPU (refill_working_set(), refill_rows()), so below the STLB's reach the full-flush curve is
``intercept + page_walk * N``: ``fit`` estimates the slope by weighted least squares over the
full-flush points with N at most ``stlb_entries``, with its 95% interval, and the same line
for the partial-flush points, which the engine says cost no refill at all.  The STLB's reach
shows in the quiet pass: while N fits, a pass costs a few cycles per page; beyond it, every
page misses even without a flush.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

CELL = re.compile(r"^refill/")
MIN_POINTS = 2
# a quiet pass whose cycles per page exceed this many times the smallest N's: past the reach
REACH_JUMP = 3.0


@dataclass(frozen=True)
class Line:
    slope: float          # cycles per hot entry
    slope_low: float
    slope_high: float
    intercept: float
    points: int

    def as_dict(self) -> dict:
        return dict(slope=self.slope, slope_low=self.slope_low, slope_high=self.slope_high,
                    intercept=self.intercept, points=self.points)


def points(cells, ceiling: int) -> list[dict]:
    """Per refill cell: N, the flush it receives (partial or full), the cycles lost per flush
    (mean and 95% CI over trials) and the quiet pass's cycles per page."""
    out = []
    for _, row in cells.iterrows():
        name = str(row["measure_cell"])
        if not CELL.match(name):
            continue
        n = int(row["workload.working_set"])
        pages = int(row["workload.pages"])
        lost = float(row.get("ws_lost_cycles_per_flush.mean", math.nan))
        quiet = float(row.get("lat_ws_pass_quiet.mean", math.nan))
        out.append(dict(cell=name, entries=n, pages=pages, flush="partial" if pages <= ceiling else "full",
                        lost=lost, lost_low=float(row.get("ws_lost_cycles_per_flush.ci_low", math.nan)),
                        lost_high=float(row.get("ws_lost_cycles_per_flush.ci_high", math.nan)),
                        quiet_per_page=quiet / n if n else math.nan))
    return sorted(out, key=lambda p: (p["flush"], p["entries"]))


def line(pts: list[dict]) -> Line | None:
    """Weighted least squares of lost = a + b * N (weights: 1 / the CI's half-width squared);
    the slope's 95% t interval from the residual scatter (N - 2 degrees of freedom)."""
    from scipy import stats

    pts = [p for p in pts if np.isfinite(p["lost"])]
    if len(pts) < MIN_POINTS:
        return None
    x = np.array([p["entries"] for p in pts], float)
    y = np.array([p["lost"] for p in pts], float)
    half = np.array([(p["lost_high"] - p["lost_low"]) / 2 for p in pts], float)
    half = np.where(np.isfinite(half) & (half > 0), half, np.nanmax(np.r_[half[np.isfinite(half)], 1.0]))
    w = 1.0 / half ** 2
    A = np.column_stack([np.ones_like(x), x]) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    if len(pts) > 2:
        resid = (y - (coef[0] + coef[1] * x)) * np.sqrt(w)
        cov = np.linalg.inv(A.T @ A) * float(resid @ resid) / (len(pts) - 2)
        half_slope = float(stats.t.ppf(0.975, len(pts) - 2) * math.sqrt(max(cov[1, 1], 0.0)))
    else:
        half_slope = math.nan
    return Line(float(coef[1]), float(coef[1] - half_slope), float(coef[1] + half_slope), float(coef[0]), len(pts))


def reach(pts: list[dict]) -> tuple[int | None, int | None]:
    """(the largest N whose quiet pass still fits the STLB, the smallest that does not), from
    the quiet pass's cycles per page; None where the grid does not show it."""
    by_n = sorted({p["entries"]: p["quiet_per_page"] for p in pts if np.isfinite(p["quiet_per_page"])}.items())
    if len(by_n) < 2:
        return None, None
    base = by_n[0][1]
    fits = [n for n, q in by_n if q <= REACH_JUMP * base]
    past = [n for n, q in by_n if q > REACH_JUMP * base]
    return (max(fits) if fits else None), (min(past) if past else None)


def fit(cells, *, ceiling: int, stlb_entries: int) -> dict | None:
    """The refill curve's fit (None without refill cells): the full-flush line below the
    STLB's reach (its slope is ``page_walk``), the partial-flush line, the reach, the points."""
    pts = points(cells, ceiling)
    if not pts:
        return None
    inside = [p for p in pts if p["entries"] <= stlb_entries]
    full = line([p for p in inside if p["flush"] == "full"])
    partial = line([p for p in inside if p["flush"] == "partial"])
    fits, past = reach(pts)
    return dict(points=pts, full=full.as_dict() if full else None, partial=partial.as_dict() if partial else None,
                reach_fits=fits, reach_past=past, stlb_entries=stlb_entries)


def partial_refills(result: dict | None) -> bool:
    """Whether a partial shootdown costs the receiving thread a refill too: the partial line's
    slope, at its 95% low end, above half the full line's (machine.irq_loses_tlb)."""
    partial, full = (result or {}).get("partial"), (result or {}).get("full")
    return bool(partial and full and np.isfinite(partial["slope_low"])
                and partial["slope_low"] > PARTIAL_SHARE * full["slope"])


PARTIAL_SHARE = 0.5


def sentence(result: dict) -> str:
    """The refill curve in one sentence for the command's output and the report."""
    full, partial = result.get("full"), result.get("partial")
    parts = []
    if full:
        parts.append(f"a full flush costs a thread {full['slope']:.1f} [{full['slope_low']:.1f}, "
                     f"{full['slope_high']:.1f}] cycles per hot entry ({full['points']} points up to "
                     f"{result['stlb_entries']} entries): page_walk")
    if partial:
        parts.append(f"a partial (1-page) shootdown costs it {partial['slope']:.1f} [{partial['slope_low']:.1f}, "
                     f"{partial['slope_high']:.1f}] per entry")
    fits, past = result.get("reach_fits"), result.get("reach_past")
    if fits and past:
        parts.append(f"the STLB's reach lies between {fits} and {past} pages (machine fact stlb_entries = "
                     f"{result['stlb_entries']})")
    elif fits:
        parts.append(f"every N up to {fits} fits the STLB (stlb_entries = {result['stlb_entries']})")
    return "refill: " + "; ".join(parts) if parts else "refill: no usable refill cells"
