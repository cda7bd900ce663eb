"""``python -m study sweep [overrides]``: run a named grid of study/conf/sweep/ on Ray."""

from __future__ import annotations

import sys

from study.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, command
from study.config import config_dir


def usage() -> str:
    sweeps = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
    return ("usage: python -m study sweep [sweep=<name>] [key=value ...]\n"
            f"  sweeps: {', '.join(sweeps)} (study/conf/sweep/; default: default)\n"
            "  e.g.   python -m study sweep sweep=quick ray.num_cpus=2 run.output_dir=/tmp/out\n"
            "  writes <run.output_dir>/sweep/<name>/{cells.parquet,cells.csv,replicates.parquet,"
            "calls.parquet,manifest.json}")


@command(interrupted="finished cells are kept and reused by the next run; the previous tables are unchanged")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return EXIT_OK
    flags = [a for a in argv if a.startswith("-") and not a.startswith("~")]
    if flags:
        print(f"error: {flags[0]}: not an option; give Hydra overrides key=value (see --help)", file=sys.stderr)
        return EXIT_USAGE
    # Imported here so that `--help` and bad usage answer without loading the engine.
    from study.runner import plan, run
    from study.runner.sweep import SweepFailed

    sweep_plan = plan(argv)  # bad input: ConfigError -> one line, exit 2, nothing written
    for warning in sweep_plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        run(sweep_plan)
    except SweepFailed as err:
        print(f"error: sweep {sweep_plan.name}: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
