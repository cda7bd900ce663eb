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
        description="Analyze <out>/sweep/<NAME>/ into <out>/analysis/ and <out>/metrics.json.")
    p.add_argument("--sweep", default="default", metavar="NAME", help="sweep to analyze (default: %(default)s)")
    p.add_argument("--out", default=Path("outputs"), type=Path, metavar="DIR",
                   help="outputs directory holding sweep/<NAME>/ (default: %(default)s)")
    p.add_argument("--seed-table", type=Path, default=None, metavar="FILE",
                   help="seed table JSON of `python -m study seed-table`, "
                        "used only if the sweep lacks the seed's cells")
    return p


@command(interrupted="the previous analysis is unchanged")
def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # imported here so that --help answers without loading pandas and matplotlib
    from study.analysis.run import analyze

    target = analyze(args.out, args.sweep, args.seed_table)
    print(f"analysis of sweep {args.sweep!r} written to {target}/ and {args.out / 'metrics.json'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
