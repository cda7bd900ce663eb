"""The report's outline: its title, its sections in order, and what fills each."""

from __future__ import annotations

from study.report import conditions, provenance, sections, this_machine, verdict
from study.report.doc import Document, Heading, Outline
from study.report.inputs import Inputs

TITLE = "When do relaxed TLB flushes beat strict TLB shootdowns?"

# (anchor, title, builder); the titles are the report's contract with its readers and tests.
SECTIONS = (
    ("verdict", "Verdict", verdict.section),
    ("summary", "Headline numbers", verdict.headlines),
    ("question", "The question and the model", sections.question),
    ("seed", "The seed's table reproduced", sections.seed_section),
    ("scaling", "Scaling with threads and placement", sections.scaling),
    ("workloads", "The workloads", sections.workloads),
    ("loses", "Where relaxed loses", sections.loses),
    ("conditions", "The conditions of each verdict", conditions.section),
    ("attribution", "Per-patch attribution", sections.attribution),
    ("this-machine", "This machine", this_machine.section),
    ("method", "Statistical method", provenance.method),
    ("provenance", "Provenance", provenance.provenance),
)
SECTION_TITLES = tuple(title for _, title, _ in SECTIONS)
# page 1 is the verdict and the headlines; the PDF's table of contents follows them
OUTLINE_AFTER = "summary"


def build(inputs: Inputs) -> Document:
    man = inputs.manifest
    fingerprint = str(man.get("code_fingerprint") or "unknown")[:12]
    versions = man.get("versions", {}) if isinstance(man.get("versions"), dict) else {}
    subtitle = (f"Sweep {inputs.summary.get('sweep')} \u00b7 study {versions.get('study', '?')} \u00b7 "
                f"code {fingerprint} \u00b7 machine {sections.machines_text(inputs).replace('`', '')}")
    doc = Document(title=TITLE, subtitle=subtitle)
    for anchor, title, make in SECTIONS:
        doc.add(Heading(title, level=1, anchor=anchor))
        doc.add(*make(inputs))
        if anchor == OUTLINE_AFTER:
            doc.add(Outline())
    return doc
