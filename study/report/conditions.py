"""The conditions each verdict holds under: the knob values where it flips, from conditions.csv.

``python -m study conditions`` ran every headline's setting and every setting where relaxed loses
or the verdict depends on the costs along the knobs that can flip it (study.analysis.conditions);
this section states, per setting, where each flips, and page 1 carries each headline's.
"""

from __future__ import annotations

import pandas as pd

from study.report import tables
from study.report.doc import Block, Para, Table
from study.report.inputs import Inputs

NOT_SCANNED = "conditions not scanned (run `python -m study conditions`, then `analyze`)"


def headline_text(info: dict) -> str:
    """The conditions of one headline (its ``where`` entry in analysis.json), as one sentence."""
    cond = info.get("conditions")
    if not cond:
        return NOT_SCANNED
    parts = []
    if cond.get("flips"):
        parts.append("; ".join(cond["flips"]))
    if cond.get("holds"):
        parts.append("it holds over the whole range scanned of " + ", ".join(f"`{k}`" for k in cond["holds"]))
    return "Conditions at the fitted costs: " + "; ".join(parts)


def _knob_texts(rows: pd.DataFrame, flipping: bool) -> str:
    picked = rows[(rows["flips"] > 0) == flipping]
    if flipping:
        return "; ".join(picked["text"]) or "\u2014"
    return ", ".join(picked["knob"]) or "\u2014"


def section(inputs: Inputs) -> list[Block]:
    summary, paired = inputs.table("conditions"), inputs.table("paired")
    intro = Para(
        "A verdict holds under conditions: the hot sets of the threads (every full flush of a CPU costs its "
        "thread one page walk per entry it keeps hot), the range against the 33-page flush ceiling, the uAPI "
        "hint, remote access. `python -m study conditions` runs each headline's setting, and every setting "
        "where relaxed loses or the verdict depends on the costs, along each such knob of its workload: strict "
        "and relaxed at a row of values (the setting's own among them), everything else as the setting has it, "
        "on the setting's own random streams; between two values whose verdicts differ it adds points twice. "
        "Each value's verdict follows the rule of the Verdict section on its Monte Carlo CI alone, so these "
        "hold at the fitted costs; the break-even is where the speedup crosses 1, interpolated between the two "
        "values around it. conditions.csv holds every setting and knob, condition_lines.csv every value.")
    if summary.empty:
        return [intro, Para("The conditions were not scanned for this sweep: " + NOT_SCANNED + ".")]
    main = paired[paired["metric"] == "total_cycles_per_round"] if not paired.empty else paired
    rows, full = [], []
    for pair, group in summary.groupby("pair_id", sort=False):
        setting = main[main["pair_id"] == pair]
        if setting.empty:
            continue
        s = setting.iloc[0]
        label = f"{s['workload']} on `{s.get('kernel', '?')}`, {tables.setting_knobs(s, main[main['workload'] == s['workload']])}"
        rows.append((float(s["speedup"]), [label, str(s["verdict"]), _knob_texts(group, True),
                                          _knob_texts(group, False)]))
    rows.sort(key=lambda r: r[0])
    body = [r for _, r in rows]
    limit = 25
    caption = ("Where each verdict flips, slowest setting first: per knob the verdict over each run of values "
               "(and the break-even); the last column lists the knobs along which the verdict holds over the "
               "whole range scanned.")
    if len(body) > limit:
        caption += f" The PDF shows the first {limit} of {len(body)} settings; the HTML and conditions.csv hold all."
        body, full = body[:limit], body
    return [intro, Table(["setting", "verdict", "where it flips", "holds throughout along"], body, caption,
                         ["l", "l", "l", "l"], full_rows=full)]
