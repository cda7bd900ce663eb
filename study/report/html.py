"""The HTML rendering: one self-contained file that opens offline.

Figures go in as ``data:`` URIs rather than inline ``<svg>``: each matplotlib SVG
defines its own glyph and clip-path ids, and separate documents cannot clash.  The page
uses no web fonts, scripts or links outside itself.
"""

from __future__ import annotations

import base64
import html
from importlib import resources
from string import Template

from study.report.doc import Code, Document, Figure, Heading, Items, Note, Para, Table


def template(name: str) -> str:
    return resources.files("study.report").joinpath("templates", name).read_text(encoding="utf-8")


def inline(text: str) -> str:
    """Escape ``text``; spans between backticks become <code>."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


class _Numbers:
    """Section, figure and table numbers, counted the way the PDF counts them."""

    def __init__(self):
        self.section = [0, 0]
        self.figure = 0
        self.table = 0

    def heading(self, level: int) -> str:
        if level == 1:
            self.section = [self.section[0] + 1, 0]
            return f"{self.section[0]}."
        self.section[1] += 1
        return f"{self.section[0]}.{self.section[1]}."


def render(doc: Document) -> str:
    numbers = _Numbers()
    body, toc = [], []
    for block in doc.blocks:
        if isinstance(block, Heading):
            number = numbers.heading(block.level)
            tag = "h2" if block.level == 1 else "h3"
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            body.append(f"<{tag}{anchor}>{number} {inline(block.text)}</{tag}>")
            if block.level == 1:
                toc.append(f'<li><a href="#{html.escape(block.anchor)}">{inline(block.text)}</a></li>')
        elif isinstance(block, Para):
            body.append(f"<p>{inline(block.text)}</p>")
        elif isinstance(block, Note):
            body.append(f'<div class="note">{inline(block.text)}</div>')
        elif isinstance(block, Items):
            body.append("<ul>\n" + "\n".join(f"<li>{inline(i)}</li>" for i in block.items) + "\n</ul>")
        elif isinstance(block, Table):
            numbers.table += 1
            body.append(_table(block, numbers.table))
        elif isinstance(block, Figure):
            numbers.figure += 1
            body.append(_figure(block, numbers.figure))
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    page = Template(template("report.html"))
    return page.substitute(title=html.escape(doc.title), subtitle=inline(doc.subtitle), css=template("report.css"),
                           toc="\n".join(toc), body="\n".join(body))


def _table(table: Table, number: int) -> str:
    """The table; when the PDF's rows were cut, every row, in a collapsible block (no script: the page
    stays a self-contained document)."""
    align = table.align if len(table.align) == len(table.header) else ["l"] * len(table.header)
    head = "".join(f'<th class="{a}">{inline(h)}</th>' for h, a in zip(table.header, align))
    body = table.full_rows or table.rows
    rows = "\n".join("<tr>" + "".join(f'<td class="{a}">{inline(c)}</td>' for c, a in zip(row, align)) + "</tr>"
                     for row in body)
    html_table = (f'<div class="table-wrap"><table>\n<caption>Table {number}: {inline(table.caption)}'
                  f"</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table></div>")
    if not table.full_rows:
        return html_table
    return (f"<details>\n<summary>Table {number}: all {len(body)} rows </summary>\n"
            f"{html_table}\n</details>")


def _figure(figure: Figure, number: int) -> str:
    data = base64.b64encode(figure.svg.encode("utf-8")).decode("ascii")
    return (f'<figure id="fig-{html.escape(figure.name)}">\n'
            f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(figure.caption)}">\n'
            f"<figcaption>Figure {number}: {inline(figure.caption)}</figcaption>\n</figure>")
