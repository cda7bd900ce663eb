"""The statistical method and the provenance sections: how the numbers were made, from what."""

from __future__ import annotations

from study.report import numbers as fmt
from study.report import tables
from study.report.doc import Block, Items, Para, Table
from study.report.inputs import Inputs


def method(inputs: Inputs) -> list[Block]:
    m = inputs.summary.get("method", {})
    level = f"{m.get('level', 0.95):.0%}"
    items = [
        "Replicates: each cell runs R independent replicates of many loop iterations; the cells of one setting "
        "(strict, relaxed, ablations) share common random numbers, so replicate r of each saw the same draws "
        "and every comparison is paired on r.",
        f"Per cell: mean of the replicate means with a Student-t {level} CI, median and p99 of the per-call "
        f"samples. A cell is flagged unstable when its CI half-width exceeds "
        f"{fmt.percent(m.get('unstable_rel_half_width'), digits=0)} of its mean.",
        f"Speedup strict/relaxed: ratio of mean per-replicate values, with a {m.get('bootstrap', 'bootstrap')} "
        f"CI ({m.get('bootstrap_resamples')} resamples, fixed seed {m.get('bootstrap_seed')} mixed with the "
        "setting's id, so an interval does not change when the grid grows).",
        f"Monte Carlo CI: the {level} interval above, from the simulation's own randomness at the fitted costs. "
        "It says how precisely the simulation pinned the number for one set of costs, nothing about whether "
        "those costs are right.",
        "Model interval: the 5\u201395% range of the same number over an ensemble of cost parameter sets that all "
        "reproduce the RFC's published table. Ensemble: scrambled Sobol candidates over the priors of "
        "study/calibration/priors.py (log-uniform between each prior's low and high; each with its source); "
        "the published table's Jacobian (d log cell / d log cost) at the fit splits the costs into the few "
        "combinations the table pins and the rest; Gauss\u2013Newton steps move only the pinned combinations "
        "of each candidate to a target drawn within \u00b11.5% of the table, and a candidate is kept only when, "
        "simulated, every one of the 8 cells is within 3% (approximate Bayesian computation with a tolerance). "
        "The unpinned costs keep their prior draws: nothing in the data moves them. Member 0 is the fitted "
        "machine. Each member runs the cells behind the headlines and the crossover on the cell's own random "
        "streams (common random numbers) with fewer replicates and rounds than the sweep; the interval is the "
        "sweep's estimate times the 5\u201395% range of (member / fitted member), so the shorter runs' shared "
        "part cancels and what the costs change remains. It is an interval over plausible machines, not a "
        "probability statement: the priors are ranges, not measured distributions.",
        f"Verdict: relaxed wins, loses or makes no practical difference only when the Monte Carlo CI joined with "
        f"the model interval lies entirely above {1 + m.get('practical_threshold', 0.02):.2f}, below "
        f"1/{1 + m.get('practical_threshold', 0.02):.2f}, or between the two (the practical threshold, "
        f"{m.get('practical_threshold', 0.02):.0%}, study/analysis/verdict.py); when the ensemble's range crosses "
        "a bound it \u201cdepends on\u201d the costs that move it most, and when only the Monte Carlo CI does it is "
        "\u201cunresolved\u201d. Settings the ensemble did not run are judged at the fitted costs and marked so. A "
        "p-value never decides a verdict.",
        f"Tests, in paired.csv (p_holm, d_z) and not in the report's tables, since they decide nothing: "
        f"{m.get('test')}; {m.get('correction')}. "
        f"{m.get('robustness_test')} p values are in paired.csv as a robustness check. Effect sizes: "
        f"{m.get('effect_sizes')}; with thousands of paired replicates they are large for any systematic "
        "difference and say nothing about its size in cycles.",
        "Sensitivity (what drives a headline): over the ensemble's members, per cost, the Spearman rank "
        "correlation between the log cost and the headline, and a given-data estimate of the first-order Sobol "
        "index (the share of the headline's variance across members explained by that cost alone, from "
        "equal-count bins of the cost, less the bins' own noise); sensitivity.csv has every cost for every "
        "headline. Because the pinned combinations tie some costs together, the indices describe the ensemble "
        "the published table allows, not independent inputs; a cost the table pins shows little influence "
        "because it can hardly move.",
        "Crossover: along the chosen knob, the first point where the speedup reaches 1, interpolated linearly in "
        "log(speedup); its CI is the percentile interval of the same computation on each bootstrap draw.",
        "Attribution: per RFC patch, (A_i \u2212 R) / (S \u2212 R) with A_i relaxed without patch i; CIs by resampling "
        "replicate indices jointly across all the arms of a setting.",
    ]
    blocks: list[Block] = [Items(items)]
    blocks += ensemble_table(inputs)
    summary = inputs.table("cells_summary")
    if not summary.empty and "unstable" in summary:
        unstable = summary[summary["unstable"].astype(bool)]
        if unstable.empty:
            blocks.append(Para("No cell is unstable: every reported mean has a CI narrower than the threshold."))
        else:
            rows = [[r["workload"], r["policy"], r["metric"], tables.setting_knobs(r, unstable),
                     fmt.percent(r["rel_half_width"], digits=1)] for _, r in unstable.head(15).iterrows()]
            caption = (f"Unstable cells ({unstable['cell_id'].nunique()} cells, {len(unstable)} metrics): more "
                       "replicates or rounds are needed before quoting them.")
            if len(unstable) > 15:
                caption += " First 15; all are flagged in cells_summary.csv."
            blocks.append(tables.Table(["workload", "policy", "metric", "setting", "CI half-width / mean"], rows,
                                       caption, ["l", "l", "l", "l", "r"]))
    skipped = [p for p in inputs.summary.get("plots", []) if p.get("skipped")]
    if skipped:
        blocks.append(Para("Figures this sweep could not draw: "
                           + "; ".join(f"{p['title']} ({p['note']})" for p in skipped) + "."))
    return blocks


def ensemble_table(inputs: Inputs) -> list[Block]:
    """The ensemble's members against the priors: what the published table pins, what it leaves free."""
    ens = inputs.summary.get("ensemble") or {}
    spread = ens.get("spread") or []
    if not spread:
        return [Para("No ensemble ran (python -m study ensemble): the report's intervals cover Monte Carlo noise "
                     "only, and every verdict holds at the fitted costs only.")]
    rows = [[f"`{r['name']}`", r.get("status", ""), f"{fmt.num(r['prior_low'])}\u2013{fmt.num(r['prior_high'])}",
             f"{fmt.num(r['q05'])}\u2013{fmt.num(r['q95'])}", fmt.percent(r["span_of_prior"], digits=0)]
            for r in spread]
    run = ens.get("run") or {}
    caption = (f"The ensemble: {ens['members']} cost parameter sets (member 0 the fitted machine), every one within "
               f"{fmt.percent(ens['max_abs_seed_cell_error'], digits=1)} of each of the published table's 8 cells "
               f"(median member {fmt.percent(ens['median_abs_seed_cell_error'], digits=1)}); per cost its prior, the "
               f"members' 5\u201395% range and the share of the prior's (log) width that range spans, beside what "
               f"the published table pins (identifiability). Members ran {ens.get('cells')} cells at "
               f"{run.get('replicates')} replicates \u00d7 {run.get('rounds')} rounds; outputs/ensemble/ has every "
               "member's costs and errors.")
    return [Table(["cost", "published table pins it", "prior (cycles)", "members 5\u201395%", "span of prior"], rows,
                  caption, ["l", "l", "r", "r", "r"])]


def provenance(inputs: Inputs) -> list[Block]:
    man = inputs.manifest
    config = man.get("config", {}) if isinstance(man.get("config"), dict) else {}
    resolved = man.get("resolved", {}) if isinstance(man.get("resolved"), dict) else {}
    pairs = [
        ("sweep", str(inputs.summary.get("sweep"))),
        ("description", str(man.get("description", "\u2014"))),
        ("overrides", " ".join(man.get("overrides", []) or []) or "\u2014"),
        ("root seed", str(man.get("root_seed", "\u2014"))),
        ("code fingerprint", str(man.get("code_fingerprint", "\u2014"))),
        ("sweep table format", str(man.get("format_version", "\u2014"))),
        ("versions (sweep)", _flat(man.get("versions", {}))),
        ("versions (analysis)", _flat(inputs.summary.get("analysis_versions", {}))),
        ("machines", ", ".join(resolved.get("machine", {})) or "\u2014"),
        ("kernels", ", ".join(resolved.get("kernel", {})) or "\u2014"),
        ("workloads", ", ".join(resolved.get("workload", {})) or "\u2014"),
        ("policies", ", ".join(resolved.get("policy", {})) or "\u2014"),
    ]
    blocks: list[Block] = [tables.key_values(pairs, "How this sweep was made (from its manifest.json).")]
    blocks.append(Para(f"Timings, host, executor and git revision of the run are in "
                       f"`sweep/{inputs.summary.get('sweep')}/{man.get('run_info', 'run_info.json')}`, outside the "
                       "reproducible outputs: the same inputs give byte-identical tables, analysis and report."))
    for key, machine in (resolved.get("machine") or {}).items():
        if not isinstance(machine, dict):
            continue
        label = "calibrated" if machine.get("calibrated") else "uncalibrated preset"
        topo = (f"{machine.get('sockets')} sockets \u00d7 {machine.get('cores_per_socket')} cores \u00d7 "
                f"{machine.get('smt')} SMT, {machine.get('apic_mode')}, PTI {'on' if machine.get('pti') else 'off'}, "
                f"virt {machine.get('virt', 'none')}, dirty walk {machine.get('dirty_walk')}")
        blocks.append(Para(f"Machine `{key}` as it ran ({label}; {machine.get('source', 'no source given')}): "
                           f"{topo}. Event costs (cycles): {_costs(machine.get('costs', {}))}."))
    for key, kernel in (resolved.get("kernel") or {}).items():
        if isinstance(kernel, dict):
            blocks.append(Para(f"Kernel `{key}`: {_flat({k: v for k, v in kernel.items() if k != 'name'})}."))
    # The base config's machine/kernel/workload/policy are only the defaults a grid axis may
    # replace: shown, they would name a machine that never ran.  The resolved parts are above.
    settings = {k: v for k, v in config.items() if k not in ("machine", "kernel", "workload", "policy")}
    if settings:
        blocks.append(Para("The run, Ray, limits and sweep settings of the sweep, compactly (every key is in the "
                           "sweep's manifest.json and in the header of cells.parquet):"))
        blocks.append(tables.key_values([(k, _compact(v)) for k, v in sorted(settings.items())],
                                        "Resolved settings: one row per group; nested keys dotted, "
                                        "the sweep's grids counted rather than listed."))
    return blocks


def _compact(value, prefix: str = "") -> str:
    """A config group in one paragraph: ``key=value`` pairs, nested keys dotted, long lists counted."""
    if isinstance(value, dict):
        parts = []
        for k, v in sorted(value.items()):
            if k == "grids" and isinstance(v, list):
                parts.append(f"{prefix}grids=[{len(v)} sub-grids: see conf/sweep]")
            elif isinstance(v, dict):
                parts.append(_compact(v, f"{prefix}{k}."))
            else:
                parts.append(f"{prefix}{k}={_compact(v)}")
        return " ".join(p for p in parts if p)
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]" if len(value) <= 8 else f"[{len(value)} values]"
    return str(value)


def _costs(costs: dict) -> str:
    parts = []
    for name, value in costs.items():
        if isinstance(value, dict):
            parts.append(f"{name} " + "/".join(f"{k} {v:g}" for k, v in value.items()))
        else:
            parts.append(f"{name} {value:g}" if isinstance(value, (int, float)) else f"{name} {value}")
    return ", ".join(parts) or "\u2014"


def _timings(timings: dict) -> str:
    if not timings:
        return "\u2014"
    return ", ".join(f"{k} {v:.1f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sorted(timings.items()))


def _flat(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in sorted(value.items())) or "\u2014"
    return str(value)
