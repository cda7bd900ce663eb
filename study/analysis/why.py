"""Why a setting comes out as it does: where the cycles moved between strict and relaxed, the
events behind that move, and the RFC patch that moves it most.

Every part is the engine's own book (study/results/metrics.py): the caller's cycles and the
other threads', each split into their refills and the rest, and the cycles remote flush
handlers steal.  The part that moved most in the direction of the verdict is named with the
counters (study/engine/ops.py COUNTERS, per round) that changed most and belong to it, and
the patch whose switching-off moves the setting most in that direction (the per-setting
attribution: study/analysis/attribution.py).  Nothing here is a rule about the kernel: it
reads what the engine counted.
"""

from __future__ import annotations

import math

import pandas as pd

from study.analysis import schema
from study.engine.ops import COUNTERS

# part -> (its words, how it is computed from the per-round metrics, the counters it owes to)
PARTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "other_refill": ("the other threads' refills of their hot sets", ("other_refill_cycles_per_round",), (),
                     ("remote_full", "switch_full", "ws_refills")),
    "initiator_refill": ("the caller's refill of its own hot set", ("initiator_refill_cycles_per_round",), (),
                         ("local_full", "ws_refills")),
    "stolen": ("the time flush handlers take from the other CPUs", ("stolen_cycles_per_round",), (),
               ("ipis", "remote_partial", "remote_full")),
    "initiator_own": ("the caller's own work", ("initiator_cycles_per_round",), ("initiator_refill_cycles_per_round",),
                      ("ipis", "local_full", "local_partial", "invlpg", "invpcid", "dirty_walks", "reuse_faults",
                       "strict_flushes")),
    "other_own": ("the other threads' own work", ("other_cycles_per_round",), ("other_refill_cycles_per_round",),
                  ("spurious_faults", "uffd_faults", "reuse_faults", "dirty_walks", "switch_full")),
}


def _part(row, plus, minus) -> float:
    total = 0.0
    for name in plus:
        total += float(row.get(f"{name}.mean", math.nan))
    for name in minus:
        value = row.get(f"{name}.mean", math.nan)
        total -= 0.0 if pd.isna(value) else float(value)
    return total


COLUMNS = ("pair_id", "part", "part_change", "total_change", "counter", "counter_strict", "counter_relaxed",
           "counter_change", "patch", "patch_at", "text")


def table(cells: pd.DataFrame, main: pd.DataFrame, attribution: pd.DataFrame | None, meaning=None) -> pd.DataFrame:
    """One row per strict/relaxed setting of ``main`` (the paired main-metric table): its
    mechanism (``explain``)."""
    rows = []
    for pair_id in main["pair_id"].drop_duplicates() if not main.empty else []:
        found = explain(cells, pair_id, attribution, meaning)
        if found is not None:
            rows.append({k: found.get(k) for k in COLUMNS} | {"pair_id": pair_id})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def explain(cells: pd.DataFrame, pair_id: str, attribution: pd.DataFrame | None = None, meaning=None) -> dict | None:
    """The mechanism of setting ``pair_id``: the part of the cycles that moved most in the
    direction of the verdict (relaxed minus strict, cycles per round), the counter of that part
    that changed most, and the patch that moves the setting most; with ``text``, one clause."""
    rows = cells[cells["pair_id"] == pair_id]
    strict = rows[rows["role"] == schema.ROLE_STRICT]
    relaxed = rows[rows["role"] == schema.ROLE_RELAXED]
    if strict.empty or relaxed.empty:
        return None
    s, r = strict.iloc[0], relaxed.iloc[0]
    change = {name: _part(r, plus, minus) - _part(s, plus, minus) for name, (_, plus, minus, _) in PARTS.items()}
    change = {k: v for k, v in change.items() if not math.isnan(v)}
    if not change:
        return None
    total = float(r["total_cycles_per_round.mean"] - s["total_cycles_per_round.mean"])
    loses = total > 0
    part = max(change, key=lambda k: change[k] if loses else -change[k])
    words, _, _, owed = PARTS[part]
    counter, delta, before, after = None, 0.0, math.nan, math.nan
    for name in owed:
        col = f"count.{name}"
        if col not in rows:
            continue
        d = float(r[col] - s[col])
        if abs(d) > abs(delta):
            counter, delta, before, after = name, d, float(s[col]), float(r[col])
    patch, patch_at = _patch(attribution, pair_id, loses), None
    if patch is None:
        patch, patch_at = _patch_nearby(cells, attribution, s, loses)
    out = dict(part=part, part_words=words, part_change=change[part], total_change=total, counter=counter,
               counter_change=delta, counter_strict=before, counter_relaxed=after, patch=patch, patch_at=patch_at)
    out["text"] = sentence(out, meaning)
    return out


def _patch(attribution: pd.DataFrame | None, pair_id: str, loses: bool) -> str | None:
    """The patch whose switching-off moves the setting most in the verdict's direction: the
    most negative contribution where relaxed loses (switching it off would cost less), the most
    positive where it wins."""
    if attribution is None or attribution.empty or "contribution" not in attribution:
        return None
    rows = attribution[(attribution["pair_id"] == pair_id) & attribution["acts"].astype(bool)]
    rows = rows[rows["contribution"].notna() & (rows["contribution"] != 0)]
    if rows.empty:
        return None
    pick = rows.loc[rows["contribution"].idxmin()] if loses else rows.loc[rows["contribution"].idxmax()]
    if (pick["contribution"] < 0) != loses:
        return None
    return str(pick["idea"])


THREADS = "workload.threads"


def _patch_nearby(cells: pd.DataFrame, attribution: pd.DataFrame | None, strict_row, loses: bool):
    """Where the sweep ran no ablation at this setting: the patch that drives the setting that
    differs from it in the thread count only (the nearest such count), and that count."""
    if attribution is None or attribution.empty or THREADS not in cells:
        return None, None
    same = cells[(cells["role"] == schema.ROLE_STRICT) & (cells["machine_label"] == strict_row["machine_label"])
                 & (cells["workload"] == strict_row["workload"])]
    for knob in schema.knob_columns(cells):
        if knob == THREADS:
            continue
        value = strict_row.get(knob)
        same = same[same[knob].isna()] if pd.isna(value) else same[same[knob] == value]
    same = same[same["pair_id"].isin(set(attribution["pair_id"]))]
    if same.empty:
        return None, None
    order = (same[THREADS] - strict_row[THREADS]).abs().sort_values(kind="stable").index
    for index in order:
        patch = _patch(attribution, same.at[index, "pair_id"], loses)
        if patch is not None:
            return patch, int(same.at[index, THREADS])
    return None, None


def sentence(why: dict, meaning=None) -> str:
    """``relaxed costs 20,307 cycles per round more, most of it in the other threads' refills of
    their hot sets (+20,150): 47.0 more full flushes in a remote flush_tlb_func per round
    (0 -> 47.0); patch 1 (relaxed_flush_on_upgrade) drives it``."""
    more = why["total_change"] > 0
    text = (f"relaxed costs {abs(why['total_change']):,.0f} cycles per round {'more' if more else 'less'}, "
            f"most of it in {why['part_words']} ({why['part_change']:+,.0f})")
    if why["counter"] and abs(why["counter_change"]) >= 0.005:
        unit, words = COUNTERS[why["counter"]]
        text += (f": `{why['counter']}` {why['counter_strict']:.3g} \u2192 {why['counter_relaxed']:.3g} {unit} "
                 f"per round ({words})")
    if why["patch"]:
        label = meaning.patch_label(why["patch"]) if meaning is not None else why["patch"]
        at = f" (at {why['patch_at']} threads, where the sweep switched each patch off)" if why.get("patch_at") else ""
        text += f"; {label} drives it{at}"
    return text
