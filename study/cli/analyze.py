"""``python -m study analyze``: statistics, plots and metrics.json from one sweep's tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.cli import EXIT_OK, command
from study.cli.common import Parser


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m study analyze",
        description="Analyze <out>/sweep/<NAME>/ into <out>/analysis/ and <out>/metrics.json (or --into DIR). "
                    "The default pipeline's analysis (sweep default, a DVC output) is never overwritten by "
                    "another sweep's: give that one --into DIR.")
    p.add_argument("--sweep", default="default", metavar="NAME", help="sweep to analyze (default: %(default)s)")
    p.add_argument("--out", default=Path("outputs"), type=Path, metavar="DIR",
                   help="outputs directory holding sweep/<NAME>/ (default: %(default)s)")
    p.add_argument("--into", type=Path, default=None, metavar="DIR",
                   help="write analysis/ and metrics.json into DIR instead of --out (then: report --out DIR)")
    p.add_argument("--seed-table", type=Path, default=None, metavar="FILE",
                   help="seed table JSON of `python -m study seed-table`, "
                        "used only if the sweep lacks the seed's cells")
    p.add_argument("--measure", type=Path, default=None, metavar="DIR",
                   help="a measurement of this machine (outputs/measure/<host>) for the report's "
                        "\"This machine\" section")
    return p


@command(interrupted="the previous analysis is unchanged")
def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # imported here so that --help answers without loading pandas and matplotlib
    from study.analysis.run import analyze

    if args.measure is not None:   # fail on a bad measurement before writing anything
        from study.analysis import measured

        measured.load_cells(args.measure)
    if args.measure is not None and not (args.out / "sweep" / args.sweep / "cells.parquet").exists():
        target = measured.write_alone(args.measure, args.out)
        print(f"no sweep {args.sweep!r} under {args.out}/sweep/: analyzing the measurement {args.measure} only")
        print(f"this machine written to {target}/")
        return EXIT_OK
    into = args.into if args.into is not None else args.out
    guard_default(into, args.sweep, args.out)
    target = analyze(args.out, args.sweep, args.seed_table, measure=args.measure, into=into)
    if args.measure is not None:
        print(f"this machine: {target / 'this_machine.json'}")
    print(f"analysis of sweep {args.sweep!r} written to {target}/ and {into / 'metrics.json'}")
    return EXIT_OK


DEFAULT_SWEEP = "default"   # the DVC pipeline's sweep: its analysis is a pipeline output


def guard_default(into: Path, sweep: str, out: Path) -> None:
    """Refuse to write another sweep's analysis over the default pipeline's."""
    import json

    from study.errors import ConfigError

    if sweep == DEFAULT_SWEEP:
        return
    summary = into / "analysis" / "analysis.json"
    try:
        held = json.loads(summary.read_text()).get("sweep") if summary.is_file() else None
    except (OSError, ValueError):
        return   # not an analysis this code wrote: the writer's own checks decide
    if held == DEFAULT_SWEEP:
        raise ConfigError("--into", f"{into}/analysis holds the default pipeline's analysis (sweep "
                                    f"{DEFAULT_SWEEP!r}, a DVC output); write sweep {sweep!r} elsewhere: "
                                    f"--into {out / sweep}")


if __name__ == "__main__":
    sys.exit(main())
