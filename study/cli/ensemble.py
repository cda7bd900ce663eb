"""``python -m study ensemble``: the model's uncertainty, as parameter sets and as runs.

1. Builds (or reuses) ``<out>/ensemble/<machine>.json``: cost parameter sets of the
   calibrated machine that all reproduce the RFC's published table within the tolerance
   (study/calibration/ensemble.py; deterministic, fixed Sobol seed).
2. Runs every member on the cells behind the sweep's headlines and crossover grids, on Ray
   like the sweep, every member on the same random streams (study/runner/ensemble.py;
   resumable: finished cells are cached under ``<out>/ensemble/runs/<sweep>/cells/``), and
   writes ``members.parquet`` (cell_id, pair_id, role, member, metric, mean) and
   ``manifest.json`` beside it.  ``analyze`` reads them for the model-uncertainty intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from study.cli import EXIT_OK, EXIT_USAGE, command, config_error
from study.cli.common import (Parser, add_ray_options, add_sweep_options, check_ray_options, check_size,
                              merge_run_info, require_sweep)

# members of the ensemble: each runs every headline cell; the Sobol candidates grow with it
MAX_MEMBERS = 256
from study.errors import ConfigError

FORMAT_VERSION = 1
# timings and reuse counts (not hashed by DVC): <out>/ensemble_run_info.json
RUN_INFO = "ensemble_run_info.json"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m study ensemble", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_options(p, "sweep whose headlines to run")
    p.add_argument("--members", type=int, default=24, help="parameter sets, the fitted one included (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.03,
                   help="every seed cell within this relative error (default: %(default)s)")
    p.add_argument("--replicates", type=int, default=8, help="replicates per member and cell (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=10, help="rounds per replicate (default: %(default)s)")
    add_ray_options(p)
    p.add_argument("--members-only", action="store_true", help="build the parameter sets only, run nothing")
    return p


@command(interrupted="finished cells' member results are kept and reused by the next run")
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if not 2 <= args.members <= MAX_MEMBERS:
            raise ConfigError("--members", f"an integer in [2, {MAX_MEMBERS}] (member 0 is the fitted machine), "
                                           f"got {args.members}")
        if not 0 < args.tolerance < 1:
            raise ConfigError("--tolerance", "a relative error in (0, 1), e.g. 0.03")
        check_size(args.replicates, args.rounds)
        check_ray_options(args)
        if not args.members_only:
            require_sweep(args.out, args.sweep)
    except ConfigError as err:
        return config_error(err)
    return run(args)


def _run_info(args, **fields) -> None:
    merge_run_info(args.out / RUN_INFO, **fields, sweep=args.sweep)


def _calibration_code() -> str:
    """sha256 of the sources that decide the members (calibration, the seed table, the engine's code)."""
    import hashlib

    import study
    from study.runner.store import code_fingerprint

    root = Path(study.__file__).resolve().parent
    h = hashlib.sha256(code_fingerprint().encode())
    for path in sorted((root / "calibration").glob("*.py")) + [root / "seed.py"]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _ensemble(machine, args):
    """Reuse ``<out>/ensemble/<machine>.json`` when it was built for this machine and these settings."""
    from study.calibration import ensemble
    from study.calibration.fit import cost_value
    from study.results.files import atomic_write_text

    path = args.out / "ensemble" / f"{machine.name}.json"
    if path.exists():
        try:
            old = ensemble.from_dict(json.loads(path.read_text()))
            fitted = {n: cost_value(machine, n) for n in old.members[0].values}
            if (old.settings.get("members") == args.members and old.settings.get("tolerance") == args.tolerance
                    and old.settings.get("code") == _calibration_code() and old.members[0].values == fitted):
                print(f"ensemble: reusing {path} ({len(old.members)} members)", file=sys.stderr)
                return old, path
        except (ValueError, KeyError, json.JSONDecodeError):
            pass
    start = time.perf_counter()
    print(f"ensemble: building {args.members} parameter sets of {machine.name} (seed cells within "
          f"{args.tolerance:.0%}) ...", file=sys.stderr, flush=True)
    built = ensemble.build(machine, members=args.members, tolerance=args.tolerance)
    data = built.as_dict()
    data["settings"]["code"] = _calibration_code()
    _run_info(args, build_s=round(time.perf_counter() - start, 1))
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    print(f"ensemble: {len(built.members)} members from {built.candidates} candidates "
          f"(worst seed cell {data['max_abs_cell_error']:.1%}) -> {path}", file=sys.stderr)
    return built, path


def run(args) -> int:
    import pandas as pd

    from study.calibration.fit import with_costs
    from study.config import build_cell, compose
    from study.runner.ensemble import EnsembleRun, run_ensemble
    from study.results.files import atomic_write, atomic_write_text
    from study.seed import SEED_MACHINE

    machine = build_cell(compose([f"machine={SEED_MACHINE}"])).machine
    members, members_path = _ensemble(machine, args)
    if args.members_only:
        return EXIT_OK

    from study.analysis import schema, uncertainty
    from study.analysis.load import load_sweep
    from study.analysis.run import compute
    from study.runner.sweep import plan

    sweep = load_sweep(args.out, args.sweep)
    results = compute(sweep)
    chosen = uncertainty.targets(results, machine.name)
    cells = sweep.cells
    roles = dict(zip(cells["cell_id"], cells["role"]))
    try:
        grid = plan([f"sweep={args.sweep}", f"run.output_dir={args.out}"])
    except ConfigError as err:
        return config_error(err)
    picked = [gc.cell for gc in grid.cells if gc.cell.pair_id in chosen
              and roles.get(gc.cell.cell_id) in (schema.ROLE_STRICT, schema.ROLE_RELAXED)]
    if not picked:
        print(f"error: --sweep: sweep {args.sweep!r} has no headline or crossover settings on {machine.name}",
              file=sys.stderr)
        return EXIT_USAGE
    jobs = [(cell, [with_costs(cell.machine, m.values) for m in members.members]) for cell in picked]
    settings = EnsembleRun(replicates=args.replicates, rounds=args.rounds)
    directory = args.out / "ensemble" / "runs" / args.sweep
    start = time.perf_counter()
    runs, timings = run_ensemble(jobs, members.digest(), directory, settings, num_cpus=args.num_cpus,
                                 serial=args.serial)
    rows = []
    for cell in picked:
        for metric, values in runs[cell.cell_id].items():
            for member, row in enumerate(values):
                rows.append(dict(cell_id=cell.cell_id, pair_id=cell.pair_id, role=roles[cell.cell_id],
                                 member=member, metric=metric, mean=float(row.mean())))
    frame = pd.DataFrame(rows)
    atomic_write(directory / "members.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    manifest = dict(
        format_version=FORMAT_VERSION, kind="study.ensemble_runs", sweep=args.sweep, machine=machine.name,
        ensemble=str(members_path), ensemble_digest=members.digest(), run=settings.identity(),
        streams="every member runs each cell on the cell's own batch-0 random streams (common random numbers)",
        settings={pair: why for pair, why in chosen.items()},
        cells=len(picked), members=[m.as_dict() for m in members.members],
    )
    atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=1, default=str) + "\n")
    total_s = round(time.perf_counter() - start, 1)
    _run_info(args, compute_s=round(timings["compute_s"], 1), total_s=total_s,
              cells_computed=timings["cells_computed"], cells_reused=timings["cells_reused"],
              member_cell_runs=timings["cells_computed"] * len(members.members))
    print(f"ensemble: {len(picked)} cells ({len(chosen)} settings) x {len(members.members)} members -> {directory} "
          f"({total_s} s)", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
