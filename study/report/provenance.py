"""The statistical method and the provenance sections: how the numbers were made, from what."""

from __future__ import annotations

import yaml

from study.report import numbers as fmt
from study.report import tables
from study.report.doc import Block, Code, Items, Para
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
        f"Test: {m.get('test')}; {m.get('correction')}; a setting counts as a win or a loss when the adjusted p "
        f"is below {m.get('alpha')}. {m.get('robustness_test')} p values are in paired.csv as a robustness "
        f"check. Effect sizes: {m.get('effect_sizes')}.",
        "Crossover: along the chosen knob, the first point where the speedup reaches 1, interpolated linearly in "
        "log(speedup); its CI is the percentile interval of the same computation on each bootstrap draw.",
        "Attribution: per RFC patch, (A_i \u2212 R) / (S \u2212 R) with A_i relaxed without patch i; CIs by resampling "
        "replicate indices jointly across all the arms of a setting.",
    ]
    blocks: list[Block] = [Items(items)]
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
        blocks.append(Para("The run, Ray, limits and sweep settings of the sweep (resolved):"))
        blocks.append(Code(yaml.safe_dump(settings, sort_keys=True, default_flow_style=False, width=100)))
    return blocks


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
