"""``build``: analysis files in, ``report.html`` and ``report.pdf`` out."""

from __future__ import annotations

from pathlib import Path

from study.report import content, html, inputs, pdf


def build(out: Path) -> tuple[Path, Path]:
    """Write ``<out>/report/report.html`` and ``report.pdf`` from ``<out>/analysis/``."""
    doc = content.build(inputs.load(out))
    target = Path(out) / "report"
    target.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = target / "report.html", target / "report.pdf"
    html_path.write_text(html.render(doc), encoding="utf-8")
    pdf_path.write_bytes(pdf.render(doc))
    return html_path, pdf_path
