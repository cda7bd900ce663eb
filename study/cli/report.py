"""``python -m study report``: the HTML and PDF report from ``python -m study analyze``'s files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.cli import EXIT_OK, command
from study.cli.common import Parser


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m study report",
        description="Write <out>/report/report.html (self-contained) and report.pdf from <out>/analysis/.")
    p.add_argument("--out", default=Path("outputs"), type=Path, metavar="DIR",
                   help="outputs directory holding analysis/ (default: %(default)s)")
    return p


@command(interrupted="the previous report is unchanged")
def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # imported here so that --help answers without loading pandas and typst
    from study.report.build import build

    html_path, pdf_path = build(args.out)
    print(f"report written to {html_path} and {pdf_path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
