"""``python -m study conditions``: where each verdict flips, along the knobs that can flip it.

1. Picks the sweep's settings that need their conditions stated: every headline's (the seed
   setting, the best, the worst, the most threads per workload and kernel) and every setting
   where relaxed loses or the verdict depends on the costs (with the ensemble's intervals when
   ``python -m study ensemble`` has run).
2. Runs each along each of its workload's conditions (study.workloads.spec.Condition: the hot
   sets of its threads' roles, the range against the flush ceiling, the uAPI hint, remote
   access), strict and relaxed at each value on the setting's own random streams, on Ray like
   the sweep (study.runner.conditions; resumable: finished scans are cached under
   ``<out>/conditions/<sweep>/scans/``); then, twice, at points between two neighbours whose
   verdicts differ (at most MAX_CONDITION_VALUES values per knob).
3. Writes ``<out>/conditions/<sweep>/lines.csv`` (per setting, knob and value: the speedup, its
   95% CI and its verdict at the fitted costs) and ``manifest.json`` (which settings, why, how
   they ran).  ``analyze`` reads them: metrics.json carries each headline's conditions, and the
   report states them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from study.cli import EXIT_OK, command, config_error
from study.cli.common import (Parser, add_ray_options, add_sweep_options, check_ray_options, check_size,
                              merge_run_info, require_sweep)
from study.errors import ConfigError

FORMAT_VERSION = 1
RUN_INFO = "conditions_run_info.json"   # timings (not hashed by DVC), beside <out>/conditions/


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m study conditions", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_options(p, "sweep whose verdicts to scan")
    p.add_argument("--replicates", type=int, default=128, help="replicates per value and policy (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=10, help="rounds per replicate, after the cell's warm-up "
                                                          "(default: %(default)s)")
    p.add_argument("--max-settings", type=int, default=400,
                   help="refuse to scan more settings than this (default: %(default)s)")
    add_ray_options(p)
    return p


@command(interrupted="finished scans are kept and reused by the next run")
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_size(args.replicates, args.rounds)
        if args.max_settings < 1:
            raise ConfigError("--max-settings", f"an integer >= 1, got {args.max_settings}")
        check_ray_options(args)
        require_sweep(args.out, args.sweep)
    except ConfigError as err:
        return config_error(err)
    return run(args)


def settings_to_scan(results) -> dict[str, list[str]]:
    """pair_id -> why: the headlines' settings and every losing or cost-dependent one."""
    from study.analysis import headline
    from study.analysis import verdict as rule

    out: dict[str, list[str]] = {}
    _, where = headline.speedups(results)
    for key, info in where.items():
        out.setdefault(info["pair_id"], []).append(f"headline {key}")
    main = results.paired_main
    for row in (main.itertuples(index=False) if not main.empty else []):
        category = rule.category(row.verdict)
        if category in ("loses", "depends"):
            out.setdefault(row.pair_id, []).append(f"{row.verdict}")
    return dict(sorted(out.items()))


def run(args) -> int:
    import pandas as pd

    from study.analysis import conditions, schema
    from study.analysis.load import load_sweep
    from study.analysis.run import compute
    from study.results.files import DirLock, atomic_write_text, check_output_dir
    from study.runner.conditions import Scan, ScanRun, run_scans
    from study.runner.sweep import plan
    from study.workloads.spec import MAX_CONDITION_VALUES

    start = time.perf_counter()
    sweep = load_sweep(args.out, args.sweep)
    results = compute(sweep)
    chosen = settings_to_scan(results)
    if len(chosen) > args.max_settings:
        raise ConfigError("--max-settings", f"sweep {args.sweep!r} has {len(chosen)} settings to scan, more than "
                                            f"{args.max_settings}; raise --max-settings")
    roles = dict(zip(sweep.cells["cell_id"], sweep.cells["role"]))
    try:
        grid = plan([f"sweep={args.sweep}", f"run.output_dir={args.out}"])
    except ConfigError as err:
        return config_error(err)
    pairs: dict[str, dict[str, object]] = {}
    for gc in grid.cells:
        role = roles.get(gc.cell.cell_id)
        if gc.cell.pair_id in chosen and role in (schema.ROLE_STRICT, schema.ROLE_RELAXED):
            pairs.setdefault(gc.cell.pair_id, {})[role] = gc.cell
    pairs = {p: c for p, c in sorted(pairs.items()) if len(c) == 2}
    target = conditions.directory(args.out, args.sweep)
    check_output_dir(target, "--out")
    run_settings = ScanRun(replicates=args.replicates, rounds=args.rounds)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    # pass 1: each condition's own values; pass 2: points between neighbours whose verdicts differ
    scans = []
    for pair, cells in pairs.items():
        strict, relaxed = cells[schema.ROLE_STRICT], cells[schema.ROLE_RELAXED]
        for cond, values in strict.workload.conditions(strict.machine, strict.kernel):
            scans.append((cond, Scan(strict, relaxed, cond.knob, values)))
    log(f"conditions: {len(pairs)} settings, {len(scans)} knobs, "
        f"{sum(len(s.values) for _, s in scans)} values x strict and relaxed")
    with DirLock(target, "--out"):
        done, counts = run_scans([s for _, s in scans], target, run_settings, num_cpus=args.num_cpus,
                                 serial=args.serial, log=log)
        rows = _rows(scans, done)
        for _ in range(conditions.REFINE_PASSES):
            groups = dict(tuple(pd.DataFrame(rows).groupby(["pair_id", "knob"], sort=False)))
            more = []
            for cond, scan in scans:
                line = groups[(scan.pair_id, scan.knob)]
                room = MAX_CONDITION_VALUES - len(line)
                as_int = isinstance(getattr(scan.strict.workload, scan.knob), int)
                extra = [v for v in conditions.refine(line, cond.refine, as_int)
                         if scan.strict.workload.allows(scan.knob, v, scan.strict.machine, scan.strict.kernel)]
                if extra and room > 0:
                    more.append((cond, Scan(scan.strict, scan.relaxed, scan.knob, tuple(extra[:room]))))
            if not more:
                break
            log(f"conditions: narrowing {len(more)} flips with {sum(len(s.values) for _, s in more)} more values")
            done_more, counts_more = run_scans([s for _, s in more], target, run_settings, num_cpus=args.num_cpus,
                                               serial=args.serial, log=log)
            rows += _rows(more, done_more)
            counts = {k: counts[k] + counts_more[k] for k in counts}
        lines = pd.DataFrame(rows).sort_values(["pair_id", "knob", "value"], kind="stable").reset_index(drop=True)
        from study.analysis.figures import save_csv
        from study.results.files import atomic_write

        atomic_write(target / conditions.LINES, lambda tmp: save_csv(lines, tmp))
        manifest = dict(
            format_version=FORMAT_VERSION, kind="study.conditions", sweep=args.sweep, run=run_settings.identity(),
            verdicts="at the fitted costs: the rule of study.analysis.verdict on each value's Monte Carlo CI",
            streams="every value and both policies of a setting on the setting's own batch-0 random streams",
            settings={pair: chosen[pair] for pair in pairs},
            conditions={pair: [s.knob for _, s in scans if s.pair_id == pair] for pair in pairs},
            values=len(lines),
        )
        atomic_write_text(target / conditions.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = round(time.perf_counter() - start, 1)
    _run_info(args, total_s=total, scans_computed=counts["computed"], scans_reused=counts["reused"])
    log(f"conditions: {len(lines)} values of {len(scans)} knobs over {len(pairs)} settings -> {target} ({total} s)")
    return EXIT_OK


def _rows(scans, done) -> list[dict]:
    from study.analysis import conditions

    rows = []
    for _, scan in scans:
        arrays = done[scan.key]
        rows += conditions.value_lines(scan.pair_id, scan.knob, scan.values, arrays["strict"], arrays["relaxed"])
    return rows


def _run_info(args, **fields) -> None:
    merge_run_info(args.out / RUN_INFO, **fields, sweep=args.sweep)


if __name__ == "__main__":
    sys.exit(main())
