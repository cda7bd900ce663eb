"""One analysis run: load a sweep, compute every table, draw every plot, write the files.

Writes, all deterministic for a given sweep:
  <out>/metrics.json                 headline numbers with CIs (dvc metrics)
  <out>/analysis/analysis.json       method, plot index, provenance (the sweep's manifest)
  <out>/analysis/*.csv               the tables the report prints
  <out>/analysis/plots/<name>.svg    figures, each with <name>.csv beside it (dvc plots)
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from study.analysis import (attribution, cells, conditions, crossover, headline, identifiability, paired, plots,
                            seedtable, series, stats, uncertainty, verdict, why)
from study.analysis.arms import Arms
from study.analysis.figures import save_csv
from study.analysis.load import Sweep, load_sweep
from study.analysis.results import Results
from study.results.files import DirLock, check_output_dir, recover_swap, sha256_file, swap_directory
from study.results.files import atomic_write_text

FORMAT_VERSION = 1
TABLES = ("seed_table", "cells_summary", "paired", "crossover", "attribution", "attribution_pairs",
          "identifiability", "sensitivity", "conditions", "condition_lines", "why")
VERSIONED = ("study", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "seaborn")


def compute(sweep: Sweep, seed_fallback: Path | None = None) -> Results:
    arms = Arms(sweep.replicates, sweep.cells)
    comparisons = paired.compare(sweep.cells, arms)
    # the ensemble's runs (python -m study ensemble), when present: model-uncertainty intervals
    runs = uncertainty.load(sweep.path.parent.parent, sweep.name)
    main = uncertainty.attach(paired.main_table(comparisons), runs)
    comparisons.table = _with_model(comparisons.table, main)
    per_pair, pooled = attribution.attribute(sweep.cells, arms, main, sweep.meaning.ideas)
    seed = seedtable.build(sweep.cells, seed_fallback)
    ident, ident_summary = identifiability.build(sweep.manifest, seed)
    cross = crossover.find(main, comparisons.boot, sweep.meaning)
    per_member = uncertainty.member_boundaries(runs, main, cross) if runs is not None else None
    if per_member is not None:
        cross.boundary = uncertainty.crossover_model(cross.boundary, per_member)
    results = Results(sweep=sweep, summary=cells.summarize_cells(sweep.cells), comparisons=comparisons,
                      paired_main=main, crossover=cross,
                      attribution_pairs=per_pair, attribution=pooled, seed=seed,
                      identifiability=ident, identifiability_summary=ident_summary, members=runs,
                      crossover_members=per_member)
    _, where = headline.speedups(results)
    results.sensitivity = uncertainty.sensitivity_table(results, where, headline.crossover_key)
    results.conditions, results.condition_lines = conditions.build(sweep)
    results.why = why.table(sweep.cells, main, per_pair, sweep.meaning)
    return results


def _with_model(table, main):
    """The main metric's rows of the comparison table carry the model columns and verdict of ``main``."""
    if table.empty:
        return table
    extra = ["model_low", "model_high", "model_members", "drivers", "model_checked"]
    table = table.drop(columns=[c for c in extra if c in table.columns])
    merged = table.merge(main[["pair_id", "metric", "verdict"] + extra].rename(columns={"verdict": "_v"}),
                         on=["pair_id", "metric"], how="left")
    merged["verdict"] = merged["_v"].where(merged["_v"].notna(), merged["verdict"])
    merged["model_checked"] = merged["model_checked"].fillna(False).astype(bool)
    merged["model_members"] = merged["model_members"].fillna(0).astype(int)
    merged["drivers"] = merged["drivers"].fillna("")
    return merged.drop(columns="_v")


def method() -> dict:
    return dict(
        level=stats.LEVEL,
        bootstrap_resamples=stats.N_RESAMPLES,
        bootstrap_seed=stats.BOOTSTRAP_SEED,
        bootstrap="paired percentile bootstrap over replicate indices (common random numbers)",
        test="paired t test (two-sided) on per-replicate differences strict - relaxed",
        robustness_test="Wilcoxon signed-rank (two-sided)",
        correction="Holm-Bonferroni across the settings of the grid, one family per metric",
        alpha=paired.ALPHA,
        practical_threshold=verdict.THRESHOLD,
        verdict_rule="relaxed wins / loses / no practical difference only when the Monte Carlo CI joined with "
                     "the model-uncertainty interval lies beyond (or within) the practical threshold; otherwise "
                     "'depends on <costs>' (the ensemble crosses it) or 'unresolved' (the simulation noise does)",
        model_interval="5-95% over the ensemble of cost parameter sets (python -m study ensemble), each member "
                       "on the cell's own random streams; point x member/fitted-member ratio",
        effect_sizes="Cohen's d_z; matched-pairs rank-biserial correlation",
        unstable_rel_half_width=cells.UNSTABLE_REL_HALF_WIDTH,
    )


def overview(results: Results) -> dict:
    """What the sweep covered, for the report's opening paragraph."""
    cells = results.cells
    return dict(
        cells=len(cells),
        settings=int(cells["pair_id"].nunique()),
        workloads=sorted(cells["workload"].unique()),
        roles=sorted(cells["role"].unique()),
        replicates=[int(cells["replicates"].min()), int(cells["replicates"].max())],
        rounds=[int(cells["rounds"].min()), int(cells["rounds"].max())],
    )


def versions() -> dict:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write(results: Results, out: Path, measure: Path | None = None) -> Path:
    """Write everything under ``out``; the analysis directory is replaced whole, never merged.

    The new directory is built beside the old one and swapped in only when complete
    (study.results.files.swap_directory), under the directory's lock: a failure or a kill leaves the
    previous analysis as it was.  ``analysis.json`` records the sha256 of every other file.
    """
    target = Path(out) / "analysis"
    check_output_dir(target, "--out")
    with DirLock(target, "--out"):
        recover_swap(target)
        swap_directory(target, lambda staging: _write_into(results, staging, measure))
        metrics = json.loads((target / "analysis.json").read_text())["metrics"]
        atomic_write_text(Path(out) / "metrics.json",
                          json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return target


def _write_into(results: Results, target: Path, measure: Path | None = None) -> None:
    (target / "plots").mkdir(parents=True)
    if measure is not None:   # "This machine": inside the set, hashed with it
        from study.analysis import measured

        measured.write_into(measure, target)
    frames = dict(seed_table=results.seed, cells_summary=results.summary, paired=results.comparisons.table,
                  crossover=results.crossover.boundary, attribution=results.attribution,
                  attribution_pairs=results.attribution_pairs, identifiability=results.identifiability,
                  sensitivity=results.sensitivity, conditions=results.conditions,
                  condition_lines=results.condition_lines, why=results.why)
    for name in TABLES:
        save_csv(frames[name], target / f"{name}.csv")
    index = plots.render_all(results, target / "plots")
    series.write_series(target / "plots", target / "series")  # one file per series, for dvc plots
    metrics, where = headline.headline(results)
    columns = ["machine", "machine_calibrated", "kernel", "machine_label"]
    columns += [c for c in ("machine.dirty_walk",) if c in results.cells.columns]
    machines = results.cells[columns].drop_duplicates("machine_label")
    summary = dict(
        format_version=FORMAT_VERSION,
        sweep=results.sweep.name,
        # the sweep's manifest less its per-cell listing (the cells table has that)
        manifest={k: v for k, v in results.sweep.manifest.items() if k != "cells"},
        method=method(),
        analysis_versions=versions(),
        machines=machines.sort_values("machine").to_dict("records"),
        overview=overview(results),
        plots=index,
        tables={name: f"{name}.csv" for name in TABLES},
        where=where,
        metrics=metrics,
        identifiability=results.identifiability_summary,
        ensemble=ensemble_summary(results),
    )
    summary["files"] = {p.relative_to(target).as_posix(): sha256_file(p)
                        for p in sorted(target.rglob("*")) if p.is_file()}
    _write_json(target / "analysis.json", headline.clean(summary))


def analyze(out: Path, sweep_name: str, seed_table: Path | None = None, measure: Path | None = None,
            into: Path | None = None) -> Path:
    """Analyze ``<out>/sweep/<sweep_name>/`` and write the results under ``into`` (default ``out``).

    ``seed_table`` (``python -m study seed-table``'s JSON) is read only when given and only
    if the sweep lacks seed cells: by default the analysis is a function of the sweep alone.
    """
    out = Path(out)
    sweep = load_sweep(out, sweep_name)
    return write(compute(sweep, seed_fallback=seed_table), Path(into) if into is not None else out, measure)


def ensemble_summary(results: Results) -> dict:
    """The ensemble behind the model intervals: where it came from, its members' fit, its spread."""
    runs = results.members
    if runs is None:
        return {}
    m = runs.manifest
    costs = runs.costs
    errors = [max(abs(e) for e in member["cell_errors"]) for member in m["members"]]
    return dict(members=len(m["members"]), ensemble=m.get("ensemble"), run=m.get("run"), settings=len(m["settings"]),
                cells=m.get("cells"), max_abs_seed_cell_error=max(errors),
                median_abs_seed_cell_error=float(sorted(errors)[len(errors) // 2]),
                cost_ranges={c: [float(costs[c].min()), float(costs[c].max())] for c in costs.columns},
                spread=_spread(costs, results.identifiability))


def _spread(costs, ident) -> list[dict]:
    """Per cost: the prior's range, the members' 5-95% range, and the share of the prior's log-width it spans."""
    import numpy as np

    from study.calibration.priors import PRIORS

    status = dict(zip(ident["name"], ident["status"])) if not ident.empty and "status" in ident else {}
    out = []
    for p in PRIORS:
        if p.name not in costs:
            continue
        lo, hi = np.quantile(costs[p.name].to_numpy(float), [0.05, 0.95])
        out.append(dict(name=p.name, prior_low=p.low, prior_high=p.high, q05=float(lo), q95=float(hi),
                        span_of_prior=float(np.log(hi / lo) / np.log(p.high / p.low)), status=status.get(p.name, "")))
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
