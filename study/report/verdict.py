"""Page 1: the verdict per baseline kernel in plain words, the win/lose map, the headline list.

Every sentence is built from the analysis files (paired.csv, crossover.csv, sensitivity.csv,
metrics.json, analysis.json); a kernel the sweep did not compare gets no paragraph.
"""

from __future__ import annotations

import pandas as pd

from study.analysis import verdict as rule
from study.report import conditions
from study.report import numbers as fmt
from study.report import tables
from study.report.doc import Block, Items, Para
from study.report.inputs import Inputs

TERMS = (
    "Terms used throughout. Strict is a named Linux kernel as it is: `rfc_base`, the RFC's own base "
    "(5.19-rc4, the kernel of the RFC's published table), or `mainline` (today's kernel). Relaxed is that "
    "kernel with the RFC \u201cmm: relaxed TLB flushes and other optimizations\u201d applied. The speedup of a "
    "setting is strict's total cycles per loop iteration (summed over every CPU: the caller, the other "
    "threads and the time remote flush handlers steal) divided by relaxed's: above 1 relaxed is faster. "
    "The RFC's published table is the cover letter's 8 cycles-per-call measurements (Haswell, 1 and 2 "
    "threads); a calibrated machine's costs were fitted to it (a preset marked uncalibrated was not). The Monte Carlo CI (first brackets) is the 95% interval "
    "from the simulation's own randomness. The model interval (\u201cmodel\u201d brackets) is the 5\u201395% "
    "range over an ensemble of cost parameter sets that all reproduce the published table within 3%: the "
    "table pins a few cost combinations and leaves the rest to their priors, and the model interval shows what "
    "that leaves open. A verdict (relaxed wins, relaxed loses, no practical difference) is given only "
    "when both intervals lie beyond (or within) the practical threshold of {threshold:.0%}; otherwise it "
    "depends on the costs named, or is unresolved when only simulation noise straddles the threshold."
)


def _main(inputs: Inputs) -> pd.DataFrame:
    paired = inputs.table("paired")
    if paired.empty:
        return paired
    main = paired[paired["metric"] == "total_cycles_per_round"].copy()
    main["category"] = main["verdict"].map(rule.category)
    return main


def _setting(row) -> str:
    parts = [str(row["workload"])]
    for knob in ("workload.threads", "workload.placement", "workload.dirty_ratio", "workload.working_set",
                 "workload.remote_write_share"):
        value = row.get(knob)
        if value is not None and not pd.isna(value):
            parts.append(f"{knob.split('.', 1)[1]}={fmt.plain(value)}")
    return " ".join(parts)


def _conditions(rows: pd.DataFrame) -> str:
    """Where a set of settings lies, per workload: the knob ranges it covers."""
    out = []
    for workload, group in rows.groupby("workload", sort=True):
        bits = []
        for knob, name in (("workload.threads", "threads"), ("workload.working_set", "working set"),
                           ("workload.dirty_ratio", "dirty ratio"), ("workload.remote_write_share", "remote writes")):
            if knob in group and group[knob].notna().any():
                values = sorted(group[knob].dropna().unique())
                if len(values) == 1:
                    bits.append(f"{name} {fmt.plain(values[0])}")
                else:
                    bits.append(f"{name} {fmt.plain(values[0])}\u2013{fmt.plain(values[-1])}")
        out.append(f"{workload} ({len(group)} settings: {', '.join(bits)})")
    return "; ".join(out)


def _drivers(rows: pd.DataFrame, k: int = 3) -> list[str]:
    names = [n.strip() for text in rows.get("drivers", pd.Series(dtype=str)).fillna("") for n in str(text).split(",")
             if n.strip()]
    return pd.Series(names, dtype=str).value_counts().index.tolist()[:k] if names else []


def kernel_paragraph(kernel: str, main: pd.DataFrame, machine: str) -> str:
    n = len(main)
    counts = main["category"].value_counts()
    wins, loses = main[main["category"] == "wins"], main[main["category"] == "loses"]
    none, depends = main[main["category"] == "none"], main[main["category"] == "depends"]
    text = [f"On `{kernel}` ({machine}), over {n} settings: relaxed wins in {counts.get('wins', 0)}, loses in "
            f"{counts.get('loses', 0)}, makes no practical difference in {counts.get('none', 0)}"]
    if counts.get("depends", 0):
        text[-1] += f", and depends on the costs in {counts.get('depends', 0)}"
    if counts.get("unresolved", 0):
        text[-1] += f" ({counts.get('unresolved', 0)} unresolved by the simulation noise)"
    text[-1] += "."
    if not wins.empty:
        best = wins.loc[wins["speedup"].idxmax()]
        text.append(f"Where it wins, it saves {fmt.percent(1 - 1 / wins['speedup'].median(), digits=0)} of the cycles "
                    f"at the median and up to {fmt.percent(1 - 1 / best['speedup'], digits=0)} "
                    f"({fmt.ratio(best['speedup'])} at {_setting(best)}); the wins are in {_conditions(wins)}.")
    if not loses.empty:
        worst = loses.loc[loses["speedup"].idxmin()]
        text.append(f"It loses in {_conditions(loses)}; the worst is {fmt.ratio(worst['speedup'])} at "
                    f"{_setting(worst)}, where relaxed costs {fmt.percent(1 / worst['speedup'] - 1, digits=0)} more.")
    else:
        text.append("It loses in none of these settings.")
    if not none.empty:
        text.append(f"No practical difference (within {rule.THRESHOLD:.0%}) in {_conditions(none)}.")
    checked = main[main.get("model_checked", pd.Series(False, index=main.index)).astype(bool)]
    if len(checked):
        robust = checked[checked["category"].isin(["wins", "loses", "none"])]
        sentence = (f"Robustness: {len(checked)} of these settings were re-run over the whole ensemble of cost "
                    f"parameter sets; the verdict holds across it in {len(robust)}")
        if not depends.empty:
            sentence += (f", and in {len(depends)} it flips inside the ensemble, mostly with "
                         f"{', '.join(f'`{d}`' for d in _drivers(depends)) or 'the costs'}")
        text.append(sentence + "; the other settings' verdicts hold at the fitted costs only.")
    else:
        text.append("Robustness: no setting was re-run over the ensemble; the verdicts hold at the fitted costs only.")
    return " ".join(text)


def section(inputs: Inputs) -> list[Block]:
    main = _main(inputs)
    blocks: list[Block] = []
    if main.empty:
        return [Para("The sweep has no strict/relaxed pairs: there is nothing to give a verdict on.")]
    from study.report.sections import figure

    line = bottom_line(inputs)
    if line:
        blocks.append(Para("In short: " + line))
    blocks += figure(inputs, "verdict_map")
    machines = {m["machine_label"]: m for m in inputs.summary.get("machines", [])}
    for (label, kernel), rows in main.groupby(["machine_label", "kernel"], sort=True):
        calibrated = bool(machines.get(label, {}).get("machine_calibrated", True))
        machine = label if calibrated else f"{label}, an uncalibrated what-if machine"
        blocks.append(Para(kernel_paragraph(str(kernel), rows, machine)))
    blocks.append(Para(TERMS.format(threshold=rule.THRESHOLD)))
    return blocks


MOST = "_most_threads"


def _where(info: dict) -> str:
    """``48 threads`` and, when the setting names one, its dirty ratio (0: a range never written
    again, a corner worth saying)."""
    knobs = info.get("knobs") or {}
    bits = [f"{knobs['threads']} threads"] if "threads" in knobs else []
    if "dirty_ratio" in knobs:
        never = " (a range never written again)" if float(knobs["dirty_ratio"]) == 0 else ""
        bits.append(f"dirty ratio {knobs['dirty_ratio']}{never}")
    return ", ".join(bits)


def bottom_line(inputs: Inputs) -> str:
    """At most five sentences a kernel developer can quote: per kernel what relaxed does at the
    most threads of each workload, the RFC's own setting, why the largest loss happens (the
    engine's counters) and what the losses rest on."""
    speed, where = inputs.metrics.get("speedup", {}), inputs.summary.get("where", {})
    machines = {m["machine_label"]: m for m in inputs.summary.get("machines", [])}
    sentences = []
    kernels: dict[str, list[tuple[str, dict, dict]]] = {}
    for key, info in where.items():
        if key.endswith(MOST) and key in speed:
            kernels.setdefault(str(info.get("kernel", "")), []).append((key, info, speed[key]))
    for kernel, items in sorted(kernels.items()):
        parts = []
        for key, info, entry in sorted(items, key=lambda t: -t[2]["value"]):
            category = rule.category(str(info.get("verdict", "")))
            word = {"wins": "faster", "loses": "slower: relaxed loses", "none": "no practical difference",
                    "depends": "depends on the costs"}.get(category, str(info.get("verdict", "")))
            at = _where(info)
            speedup = fmt.speedup(entry["value"], entry.get("model_low"), entry.get("model_high"))
            parts.append(f"{speedup} for {info.get('workload')}{' at ' + at if at else ''} ({word})")
        label = items[0][1].get("machine", "")
        what_if = not machines.get(label, {}).get("machine_calibrated", True)
        sentences.append(f"On `{kernel}`{' (an uncalibrated what-if machine)' if what_if else ''}, relaxed is "
                         + "; ".join(parts) + ".")
    seed, seed_where = speed.get("seed_setting"), where.get("seed_setting")
    if seed and seed_where:
        errors = [abs(c.get("rel_error", float("nan"))) for c in inputs.metrics.get("seed", {}).values()
                  if isinstance(c, dict)]
        calibrated = machines.get(seed_where.get("machine", ""), {}).get("machine_calibrated", True)
        how = (f"with the RFC's 8 published cells reproduced within {fmt.percent(max(errors), digits=1)}"
               if calibrated and errors else "on costs not fitted to the RFC's table")
        sentences.append(f"At the RFC's own setting (the mprotect loop, 2 threads, 1 page, `{seed_where.get('kernel')}`) "
                         f"it is {fmt.speedup(seed['value'], seed.get('model_low'), seed.get('model_high'))}, {how}.")
    losing = [(key, info, speed[key]) for items in kernels.values() for key, info, _ in items
              if rule.category(str(info.get("verdict", ""))) in ("loses", "depends") and info.get("mechanism")]
    if losing:
        key, info, entry = min(losing, key=lambda t: t[2]["value"])
        sentences.append(f"Where it loses most ({info.get('workload')} on `{info.get('kernel')}`, "
                         f"{fmt.speedup(entry['value'], entry.get('model_low'), entry.get('model_high'))}), "
                         f"{info['mechanism']}.")
        drivers = [d.strip() for _, i, _ in losing for d in str(i.get("drivers", "")).split(",") if d.strip()]
        ident = inputs.table("identifiability")
        prior = set(ident.loc[ident["status"] == "prior only", "name"]) if not ident.empty else set()
        unpinned = [d for d in dict.fromkeys(drivers) if d in prior]
        if unpinned:
            sentences.append("These losses rest on costs no published number pins ("
                             + ", ".join(f"`{d}`" for d in unpinned[:3])
                             + ": set by their priors), and on the threads' hot sets, whose break-even values "
                               "each headline below states.")
    return " ".join(sentences[:5])


def _both(entry: dict, digits_ratio: bool = True) -> str:
    if digits_ratio:
        if fmt.interval(entry.get("model_low"), entry.get("model_high")) == "[CI n/a]":
            return fmt.estimate(entry.get("value"), entry.get("ci_low"), entry.get("ci_high")) \
                + ", model interval not run"
        return fmt.estimate(entry.get("value"), entry.get("ci_low"), entry.get("ci_high"), entry.get("model_low"),
                            entry.get("model_high"))
    else:
        text = f"{fmt.num(entry.get('value'), 3)} {fmt.interval(entry.get('ci_low'), entry.get('ci_high'), 3)}"
        model = fmt.interval(entry.get("model_low"), entry.get("model_high"), 3)
    return text + (f", model {model}" if "n/a" not in model else ", model interval not run")


def _span(value) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    if value == float("inf"):
        return "never (wins throughout)"
    if value == float("-inf"):
        return "from the smallest value"
    return fmt.num(value, 3)


def _knob_value(value):
    """A y value as read back from the CSV (mixed columns come back as text): a number when it is one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _members_text(lo, hi) -> str:
    if lo == float("-inf") and hi == float("inf"):
        return "some members of the ensemble lose from the smallest value, others win throughout"
    return f"across the ensemble the boundary ranges from {_span(lo)} to {_span(hi)} (5\u201395%)"


def crossover_items(inputs: Inputs) -> list[str]:
    """Each crossover line: where relaxed stops winning, or that it wins/loses over the whole range,
    and whether every member of the ensemble agrees (else what moves it)."""
    boundary = inputs.table("crossover")
    sens = inputs.table("sensitivity")
    items = []
    for r in (boundary.to_dict("records") if not boundary.empty else []):
        x = tables.knob_title(r["x"])
        y_value = _knob_value(r["y_value"])
        at = f" at {tables.knob_title(r['y'])} = {fmt.plain(y_value)}" if isinstance(r["y"], str) else ""
        where = f"{r['workload']}{at} ({r['machine_label']}), along {x} {fmt.plain(r['x_min'])}\u2013{fmt.plain(r['x_max'])}"
        if r["status"] == "crosses":
            entry = dict(value=r["boundary"], ci_low=r["boundary_low"], ci_high=r["boundary_high"],
                         model_low=r.get("model_low"), model_high=r.get("model_high"))
            if r.get("interpolated", True) in (False, "False"):
                # the grid points around it are far apart: a number between them would be invented
                text = (f"{where}: relaxed stops winning between {x} = {fmt.plain(r['below'])} and "
                        f"{fmt.plain(r['above'])} (the grid has nothing in between)")
            else:
                text = f"{where}: relaxed stops winning at {x} = {_both(entry, digits_ratio=False)}"
        else:
            # the boundary is +inf (never crosses) or -inf (already below 1), and so is its CI when every
            # bootstrap draw agrees
            text = (f"{where}: {r['status']} (boundary {fmt.num(r['boundary'])} "
                    f"{fmt.interval(r['boundary_low'], r['boundary_high'], 3)})")
        lo, hi = r.get("model_low"), r.get("model_high")
        if lo is None or pd.isna(lo):
            items.append(text + "; not run over the ensemble.")
            continue
        if lo == hi and r["status"] != "crosses":
            items.append(text + "; the same in every member of the ensemble.")
            continue
        from study.analysis.grid import format_value

        y = f"_{str(r['y']).split('.', 1)[1]}={format_value(y_value)}" if isinstance(r["y"], str) else ""
        key = f"crossover {r['workload']}_{str(r['x']).split('.', 1)[1]}{y}"
        top = sens[(sens["quantity"] == key) & (sens["rank"] <= 3)]["parameter"].tolist() if not sens.empty else []
        drivers = ", ".join(f"`{t}`" for t in top) or "the costs"
        items.append(text + f"; {_members_text(lo, hi)}: it depends on {drivers}.")
    return items


def headlines(inputs: Inputs) -> list[Block]:
    """The headline list: each with its Monte Carlo CI, its model interval and its verdict."""
    m = inputs.metrics
    speed, where = m.get("speedup", {}), inputs.summary.get("where", {})
    names = {"seed_setting": "At the setting of the RFC's published table (mprotect loop, 2 threads, 1 page)",
             "best": "Best setting", "worst": "Worst setting"}
    items = []
    for key, entry in speed.items():
        info = where.get(key, {})
        title = names.get(key)
        if title is None:
            title = (f"{info.get('workload', key)} on `{info.get('kernel', '?')}` at the most threads"
                     if info.get("workload") else key.replace("_", " "))
        drivers = (f"; moved most by {info['drivers']}" if info.get("drivers")
                   and not str(info.get("verdict", "")).startswith(rule.DEPENDS) else "")
        why = f" Why: {info['mechanism']}." if info.get("mechanism") else ""
        items.append(f"{title}: {_both(entry)} \u2014 {info.get('verdict', '?')} "
                     f"(`{info.get('setting', '?')}`, {info.get('machine', '?')}{drivers}).{why} "
                     f"{conditions.headline_text(info)}.")
    items += crossover_items(inputs)
    sens = inputs.table("sensitivity")
    if not sens.empty:
        top = sens[sens["rank"] == 1]
        named = top["parameter"].value_counts()
        items.append("What drives the headlines across the ensemble: "
                     + ", ".join(f"`{p}` is the first driver of {c} of {len(top)} headlines" for p, c in named.items())
                     + " (Figure \u201cWhat drives each headline\u201d, sensitivity.csv).")
    seed = inputs.table("seed_table")
    if not seed.empty:
        worst = seed.loc[seed["rel_error"].abs().idxmax()]
        items.append(f"The RFC's published table: the fitted model reproduces its 8 cells within "
                     f"{fmt.percent(abs(worst['rel_error']), digits=2)} (worst: mprotect({worst['call']}), "
                     f"{worst['threads']} thread(s), {worst['policy']}) "
                     f"{fmt.interval(worst['ci_low'] / worst['seed_cycles'] - 1, worst['ci_high'] / worst['seed_cycles'] - 1, 2, 100, '%')}.")
    ens = inputs.summary.get("ensemble") or {}
    if ens:
        items.append(f"The ensemble: {ens['members']} cost parameter sets, every one reproducing the published table "
                     f"within {fmt.percent(ens['max_abs_seed_cell_error'], digits=1)} (median member "
                     f"{fmt.percent(ens['median_abs_seed_cell_error'], digits=1)}), run on {ens['cells']} cells "
                     f"({ens['settings']} settings) [intervals: see \u201cStatistical method\u201d].")
    if not items:
        return [Para("The sweep has no strict/relaxed pairs to summarize.")]
    from study.report.sections import figure

    return [Para("Each headline: the estimate, its 95% Monte Carlo CI in brackets, the model interval (5\u201395% "
                 "over the ensemble) after \u201cmodel\u201d, the verdict with the practical threshold of "
                 f"{rule.THRESHOLD:.0%}, and the conditions it holds under: along each knob that can flip it, "
                 "where it does (section \u201cThe conditions of each verdict\u201d)."),
            Items(items)] + figure(inputs, "sensitivity")
