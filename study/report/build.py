"""``build``: analysis files in, ``report.html`` and ``report.pdf`` out."""

from __future__ import annotations

from pathlib import Path

from study.report import content, html, inputs, pdf
from study.results.files import DirLock, check_output_dir, recover_swap, swap_directory


def build(out: Path) -> tuple[Path, Path]:
    """Write ``<out>/report/report.html`` and ``report.pdf`` from ``<out>/analysis/``.

    Both files are rendered before anything is written, then swapped in as one directory
    under its lock: the report on disk is the previous pair or the new pair, never a mix.
    """
    target = Path(out) / "report"
    check_output_dir(target, "--out")
    doc = content.build(inputs.load(out))
    page, paper = html.render(doc), pdf.render(doc)

    def write(staging: Path) -> None:
        (staging / "report.html").write_text(page, encoding="utf-8")
        (staging / "report.pdf").write_bytes(paper)

    with DirLock(target, "--out"):
        recover_swap(target)
        swap_directory(target, write)
    return target / "report.html", target / "report.pdf"
