"""``python -m study sweep [overrides]``: run a named grid of conf/sweep/ on Ray."""

from __future__ import annotations

import sys
import traceback

from study.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, config_error
from study.config import ConfigError, config_dir


def usage() -> str:
    sweeps = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
    return ("usage: python -m study sweep [sweep=<name>] [key=value ...]\n"
            f"  sweeps: {', '.join(sweeps)} (conf/sweep/; default: default)\n"
            "  e.g.   python -m study sweep sweep=quick ray.num_cpus=2 run.output_dir=/tmp/out\n"
            "  writes <run.output_dir>/sweep/<name>/{cells.parquet,cells.csv,replicates.parquet,"
            "calls.parquet,manifest.json}")


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return EXIT_OK
    flags = [a for a in argv if a.startswith("-") and not a.startswith("~")]
    if flags:
        print(f"error: {flags[0]}: not an option; give Hydra overrides key=value\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    # Imported here so that `--help` and bad usage answer without loading the engine.
    from study.runner import plan, run

    try:
        sweep_plan = plan(argv)
    except ConfigError as err:
        return config_error(err)
    try:
        run(sweep_plan)
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept and reused by the next run", file=sys.stderr)
        return 130
    except ConfigError as err:
        return config_error(err)
    except Exception:
        traceback.print_exc()
        print("error: sweep failed; finished cells are kept and reused by the next run", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
