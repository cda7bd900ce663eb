"""``python -m study report``: the HTML and PDF report from ``python -m study analyze``'s files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.cli import EXIT_OK, config_error
from study.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study report",
        description="Write <out>/report/report.html (self-contained) and report.pdf from <out>/analysis/.")
    p.add_argument("--out", default=Path("outputs"), type=Path, metavar="DIR",
                   help="outputs directory holding analysis/ (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # imported here so that --help answers without loading pandas and typst
    from study.report.build import build

    try:
        html_path, pdf_path = build(args.out)
    except ConfigError as err:
        return config_error(err)
    print(f"report written to {html_path} and {pdf_path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
