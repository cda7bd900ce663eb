"""The conditions a verdict holds under: where, along each knob that can flip it, it flips.

``python -m study conditions`` runs every headline's setting, and every setting where relaxed
loses or the verdict depends on the costs, along each of its workload's ``CONDITIONS`` (the
hot sets of its threads' roles, the range against the flush ceiling, the uAPI hint, remote
access; study.workloads.spec.Condition): strict and relaxed at a row of values, the setting's
own value among them, everything else as the setting has it, on the setting's own random
streams (study.runner.conditions).  Between two neighbours whose verdicts differ it adds three
points (geometric or linear, as the condition says), twice, so a flip of a hot set scanned at
0, 16, 64, 256, 1024 is located to within a factor of about 1.1, and one of a range of pages to
about 1/16 of the gap between its neighbours.

Per value (``lines``): the speedup (strict / relaxed total cycles per round), its 95% paired
bootstrap CI over replicates, and its verdict by study.analysis.verdict's rule on that CI
alone: the verdicts of a scan hold at the fitted costs.  Per setting and knob (``summarize``):
the segments of scanned values with one verdict, the range around the setting's own value over
which its verdict holds, and the break-even, the value at which the speedup crosses 1
(interpolated linearly between the two scanned values around it), nearest the setting's value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from study.analysis import stats
from study.analysis import verdict as rule

LINES = "lines.csv"
MANIFEST = "manifest.json"
# added between two neighbours whose verdicts differ, in each of REFINE_PASSES passes (at most
# study.workloads.spec.MAX_CONDITION_VALUES values per knob in all)
REFINE_POINTS = 3
REFINE_PASSES = 2


def directory(out: Path, sweep_name: str) -> Path:
    return Path(out) / "conditions" / sweep_name


# ------------------------------------------------------------------ per value


def value_lines(pair_id: str, knob: str, values, strict: np.ndarray, relaxed: np.ndarray) -> list[dict]:
    """One row per value: the speedup with its paired bootstrap CI and its verdict at the fitted costs."""
    rows = []
    for i, value in enumerate(values):
        a, b = np.asarray(strict[i], float), np.asarray(relaxed[i], float)
        point = float(a.mean() / b.mean())
        idx = stats.resample_indices(a.size, stats.rng_for((pair_id, knob, repr(value))))
        low, high = stats.percentile_ci(stats.ratio_of_means_boot(a, b, idx))
        verdict = rule.decide(point, float(low), float(high))
        rows.append(dict(pair_id=pair_id, knob=knob, value=_number(value), value_text=_text(value),
                         speedup=point, speedup_low=float(low), speedup_high=float(high),
                         strict_mean=float(a.mean()), relaxed_mean=float(b.mean()), replicates=int(a.size),
                         verdict=verdict, category=rule.category(verdict)))
    return rows


def _number(value) -> float:
    return float(value) if not isinstance(value, str) else math.nan


def _text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 or value == 0 else repr(value)
    return str(value)


def refine(lines: pd.DataFrame, how: str, as_int: bool) -> list:
    """Values to add between neighbours of one (setting, knob) line whose verdicts differ."""
    if how == "none" or lines.empty:
        return []
    line = lines.sort_values("value")
    values, cats = line["value"].to_numpy(float), line["category"].to_numpy(str)
    have = set(values.tolist())
    out: list = []
    for j in range(1, len(values)):
        if cats[j] == cats[j - 1]:
            continue
        a, b = values[j - 1], values[j]
        if how == "geometric":
            lo = max(a, 1.0)
            points = np.geomspace(lo, b, REFINE_POINTS + 2)[1:-1] if b > lo else np.array([])
            if a < 1.0 <= b:
                points = np.concatenate([[1.0], points])
        else:
            points = np.linspace(a, b, REFINE_POINTS + 2)[1:-1]
        for p in points:
            p = float(round(p)) if as_int else float(round(p, 6))
            if a < p < b and p not in have:
                have.add(p)
                out.append(int(p) if as_int else p)
    return sorted(out)


# ------------------------------------------------------------------ per setting and knob


def segments(line: pd.DataFrame) -> list[dict]:
    """Maximal runs of neighbouring scanned values with one verdict category."""
    line = line.sort_values("value")
    out: list[dict] = []
    for row in line.itertuples(index=False):
        if out and out[-1]["category"] == row.category:
            seg = out[-1]
            seg.update(high=row.value, high_text=row.value_text,
                       speedup_min=min(seg["speedup_min"], row.speedup), speedup_max=max(seg["speedup_max"], row.speedup))
        else:
            out.append(dict(category=row.category, verdict=row.verdict, low=row.value, low_text=row.value_text,
                            high=row.value, high_text=row.value_text, speedup_min=row.speedup,
                            speedup_max=row.speedup))
    return out


def break_evens(line: pd.DataFrame) -> list[float]:
    """Knob values where the speedup crosses 1 between two scanned neighbours (linear in the knob)."""
    line = line.sort_values("value")
    x, logs = line["value"].to_numpy(float), np.log(line["speedup"].to_numpy(float))
    out = []
    for j in range(1, len(x)):
        l0, l1 = logs[j - 1], logs[j]
        if np.isfinite(l0) and np.isfinite(l1) and (l0 > 0) != (l1 > 0) and l0 != l1:
            out.append(float(x[j - 1] + (x[j] - x[j - 1]) * l0 / (l0 - l1)))
    return out


def summarize(lines: pd.DataFrame, at: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Per (pair_id, knob): the verdict at the setting's value ``at[(pair_id, knob)]``, the range
    it holds over, the neighbours where it flips, the break-even nearest it, and the segments."""
    rows = []
    if lines.empty:
        return pd.DataFrame()
    for (pair, knob), line in lines.groupby(["pair_id", "knob"], sort=True):
        line = line.sort_values("value").reset_index(drop=True)
        here = at.get((pair, knob), math.nan)
        segs = segments(line)
        own = next((s for s in segs if s["low"] <= here <= s["high"]), None)
        values = line["value"].to_numpy(float)
        crossings = break_evens(line)
        nearest = min(crossings, key=lambda v: abs(v - here)) if crossings and math.isfinite(here) else math.nan
        row = dict(pair_id=pair, knob=knob, at=here, scanned_low=float(values.min()), scanned_high=float(values.max()),
                   values=len(values), flips=len(segs) - 1, break_even=nearest,
                   segments=json.dumps([{k: v for k, v in s.items()} for s in segs], default=float))
        if own is not None:
            i = segs.index(own)
            row.update(verdict=own["verdict"], category=own["category"], holds_low=own["low"],
                       holds_high=own["high"],
                       flips_below_at=segs[i - 1]["high"] if i > 0 else math.nan,
                       verdict_below=segs[i - 1]["verdict"] if i > 0 else "",
                       flips_above_at=segs[i + 1]["low"] if i + 1 < len(segs) else math.nan,
                       verdict_above=segs[i + 1]["verdict"] if i + 1 < len(segs) else "")
        row["text"] = sentence(knob, segs, nearest)
        rows.append(row)
    return pd.DataFrame(rows)


def sentence(knob: str, segs: list[dict], break_even: float) -> str:
    """``working_set: relaxed wins at 0–32, relaxed loses at 45–1024 (break-even ≈ 38)``."""
    if not segs:
        return f"{knob}: not scanned"

    def span(s):
        return s["low_text"] if s["low_text"] == s["high_text"] else f"{s['low_text']}\u2013{s['high_text']}"

    if len(segs) == 1:
        text = f"{knob}: {segs[0]['verdict']} over the whole range scanned ({span(segs[0])})"
    else:
        text = f"{knob}: " + ", ".join(f"{s['verdict']} at {span(s)}" for s in segs)
    if math.isfinite(break_even):
        text += f" (break-even \u2248 {_round(break_even)})"
    return text


def _round(x: float) -> str:
    if abs(x) >= 10:
        return f"{x:.0f}"
    return f"{x:.2g}"


# ------------------------------------------------------------------ reading the stage's output


def load(out: Path, sweep_name: str) -> tuple[pd.DataFrame, dict] | None:
    """(lines, manifest) of ``<out>/conditions/<sweep>/``, or None when the stage has not run."""
    path = directory(out, sweep_name)
    if not (path / LINES).exists() or not (path / MANIFEST).exists():
        return None
    manifest = json.loads((path / MANIFEST).read_text())
    lines = pd.read_csv(path / LINES, dtype={"pair_id": str, "value_text": str})
    return lines, manifest


def build(sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per setting and knob: ``summarize()``, per value: the lines) of the sweep's settings, from
    ``<out>/conditions/<sweep>/``; empty frames when the stage has not run.  Lines of settings
    the sweep no longer has (a pair_id names a setting whole) are left out."""
    found = load(sweep.path.parent.parent, sweep.name)
    if found is None:
        return pd.DataFrame(), pd.DataFrame()
    lines, _ = found
    cells = sweep.cells.drop_duplicates("pair_id").set_index("pair_id")
    lines = lines[lines["pair_id"].isin(cells.index)].reset_index(drop=True)
    at = {}
    for pair, knob in lines[["pair_id", "knob"]].drop_duplicates().itertuples(index=False):
        column = f"workload.{knob}"
        value = cells.at[pair, column] if column in cells.columns else math.nan
        at[(pair, knob)] = float(value) if value is not None and not pd.isna(value) else math.nan
    return summarize(lines, at), lines


def for_headlines(summary: pd.DataFrame, where: dict) -> tuple[dict, dict]:
    """(metrics.json numbers, words) of each headline's conditions: per knob the setting's value,
    the range its verdict holds over, the break-even and the number of flips; the words name the
    knobs that flip it (``sentence()``) and those it holds over throughout."""
    numbers, words = {}, {}
    if summary.empty:
        return numbers, words
    for key, info in where.items():
        rows = summary[summary["pair_id"] == info["pair_id"]]
        if rows.empty:
            continue
        numbers[key] = {r.knob: dict(at=r.at, holds_low=getattr(r, "holds_low", math.nan),
                                     holds_high=getattr(r, "holds_high", math.nan), break_even=r.break_even,
                                     flips=int(r.flips))
                        for r in rows.itertuples(index=False)}
        words[key] = dict(flips=[r.text for r in rows.itertuples(index=False) if r.flips > 0],
                          holds=[r.knob for r in rows.itertuples(index=False) if r.flips == 0])
    return numbers, words
