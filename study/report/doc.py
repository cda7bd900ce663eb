"""The document model both renderers read: a title and a flat list of blocks.

Text is plain; a span between backticks is code (a kernel symbol, a knob name).  Every
table cell is already a formatted string, so HTML and PDF print the same digits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


class Block:
    """Base of every block; each subclass names its ``kind`` for the renderers."""

    kind: str


@dataclass
class Heading(Block):
    text: str
    level: int = 1
    anchor: str = ""
    kind: str = "heading"


@dataclass
class Para(Block):
    text: str
    kind: str = "para"


@dataclass
class Note(Block):
    """A boxed remark: a caveat the reader must not miss (e.g. an uncalibrated machine)."""

    text: str
    kind: str = "note"


@dataclass
class Items(Block):
    items: list[str]
    kind: str = "items"


@dataclass
class Table(Block):
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    # per column: "l" (text) or "r" (numbers)
    align: list[str] = field(default_factory=list)
    kind: str = "table"
    # every row when ``rows`` is cut for the PDF: the HTML shows these (collapsible, sortable)
    full_rows: list[list[str]] = field(default_factory=list)


@dataclass
class Figure(Block):
    name: str
    svg: str
    caption: str
    kind: str = "figure"


@dataclass
class Code(Block):
    text: str
    kind: str = "code"


@dataclass
class Outline(Block):
    """The table of contents (the PDF prints it here; the HTML keeps its own in the header)."""

    kind: str = "outline"


@dataclass
class Document:
    title: str
    subtitle: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def to_dict(self) -> dict:
        return dict(title=self.title, subtitle=self.subtitle, blocks=[asdict(b) for b in self.blocks])
