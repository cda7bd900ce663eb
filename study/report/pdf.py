"""The PDF rendering through the typst compiler bundled in the ``typst`` package.

The layout is ``templates/report.typ``; the content goes in as JSON through
``sys.inputs``, so no text of the report is ever spliced into typst markup (no escaping
to get wrong).  For byte-identical output the document carries no date, the compiler's
clock is pinned, and only the fonts typst embeds are used, never the system's.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone

import typst

from study.report.doc import Document
from study.report.html import template

# typst's `datetime.today()` and the PDF metadata read this instead of the wall clock.
PINNED_CLOCK = datetime(2022, 7, 18, tzinfo=timezone.utc)  # the RFC's posting date


def typst_source() -> bytes:
    return template("report.typ").encode("utf-8")


def render(doc: Document) -> bytes:
    inputs = {"doc": json.dumps(doc.to_dict(), sort_keys=True)}
    # an empty root: the template reads nothing from disk, and must not be able to
    with tempfile.TemporaryDirectory(prefix="study-report-") as root:
        return typst.compile(typst_source(), format="pdf", root=root, sys_inputs=inputs, ignore_system_fonts=True,
                             timestamp=PINNED_CLOCK)


def headings(doc: Document) -> list[str]:
    """The level-1 headings as typst laid them out, as plain text (the outline's own
    "Contents" heading included): a check that the PDF has every section."""
    inputs = {"doc": json.dumps(doc.to_dict(), sort_keys=True)}
    with tempfile.TemporaryDirectory(prefix="study-report-") as root:
        found = typst.query(typst_source(), "heading.where(level: 1)", field="body", root=root, sys_inputs=inputs,
                            ignore_system_fonts=True, format="json")
    return [_plain(body) for body in (json.loads(found) if isinstance(found, str) else found)]


def _plain(content) -> str:
    """The text of a typst content value as query() returns it (text, raw or a sequence)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_plain(c) for c in content)
    if isinstance(content, dict):
        if "text" in content:
            return _plain(content["text"])
        if "children" in content:
            return _plain(content["children"])
        if "body" in content:
            return _plain(content["body"])
    return ""
