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

from study.analysis import series
from study.analysis import attribution, cells, crossover, headline, identifiability, paired, plots, seedtable, stats
from study.analysis.arms import Arms
from study.analysis.figures import save_csv
from study.analysis.load import Sweep, load_sweep
from study.analysis.results import Results
from study.runner.outdir import DirLock, check_output_dir, recover_swap, sha256_file, swap_directory
from study.runner.store import atomic_write_text

FORMAT_VERSION = 1
TABLES = ("seed_table", "cells_summary", "paired", "crossover", "attribution", "attribution_pairs",
          "identifiability")
VERSIONED = ("study", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "seaborn")


def compute(sweep: Sweep, seed_fallback: Path | None = None) -> Results:
    arms = Arms(sweep.replicates, sweep.cells)
    comparisons = paired.compare(sweep.cells, arms)
    main = paired.main_table(comparisons)
    per_pair, pooled = attribution.attribute(sweep.cells, arms, main)
    seed = seedtable.build(sweep.cells, seed_fallback)
    ident, ident_summary = identifiability.build(sweep.manifest, seed)
    return Results(sweep=sweep, summary=cells.summarize_cells(sweep.cells), comparisons=comparisons,
                   paired_main=main, crossover=crossover.find(main, comparisons.boot),
                   attribution_pairs=per_pair, attribution=pooled, seed=seed,
                   identifiability=ident, identifiability_summary=ident_summary)


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
    (outdir.swap_directory), under the directory's lock: a failure or a kill leaves the
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
                  attribution_pairs=results.attribution_pairs, identifiability=results.identifiability)
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
    )
    summary["files"] = {p.relative_to(target).as_posix(): sha256_file(p)
                        for p in sorted(target.rglob("*")) if p.is_file()}
    _write_json(target / "analysis.json", headline.clean(summary))


def analyze(out: Path, sweep_name: str, seed_table: Path | None = None, measure: Path | None = None) -> Path:
    """Analyze ``<out>/sweep/<sweep_name>/`` and write the results under ``out``.

    ``seed_table`` (``python -m study seed-table``'s JSON) is read only when given and only
    if the sweep lacks seed cells: by default the analysis is a function of the sweep alone.
    """
    out = Path(out)
    sweep = load_sweep(out, sweep_name)
    return write(compute(sweep, seed_fallback=seed_table), out, measure)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
