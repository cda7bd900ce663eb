"""The registry of flush and fault behaviours: the RFC's patches and the kernels' own facts.

Everything else is derived from the two tuples below: the ``Policy`` switches and their
presets (study.policies), the ``Kernel`` facts (study.policies.kernel), the flat
``Behaviour`` the engines read (one field per behaviour, the kernel's facts already combined
with the policy's patches: ``behaviour()``), ``acts_on``/``merged_in``, the attribution
variants the runner plans ("relaxed with one patch off": ``policy.without``), and the tables of
docs/model.md and docs/usage.md (tools/docs_tables.py; tests/test_docs.py checks them).

A ``Patch`` is one switch of the RFC "mm: relaxed TLB flushes and other optimizations" (Nadav
Amit, July 2022; patch k is message 20220718120212.3180-(k+1)-namit@vmware.com), or the
negative control.  A ``Fact`` is what a named kernel tree does on its own, with the commit
that brought it; a fact that is an RFC patch merged on its own names the behaviours it turns
on, so that the patch is a no-op on a kernel carrying it.

Adding a patch: one ``Patch`` here (its name becomes the switch, the Behaviour field and the
sweep's attribution variant), the rule in both engines, and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    """One policy switch: an RFC patch (or patches), or the negative control."""

    name: str          # the switch (a Policy field) and the Behaviour field it turns on
    patches: str       # "1", "9-11"; "" for the negative control
    title: str         # the patch's subject line
    function: str      # the kernel function whose rule it changes
    doc: str           # what the engine does when it is on, in one line
    relaxed: bool = True   # on in the ``relaxed`` preset (False: the negative control)

    @property
    def label(self) -> str:
        """``clean_anon_writable (patch 3)``."""
        return f"{self.name} ({self.where})"

    @property
    def where(self) -> str:
        if not self.patches:
            return "negative control"
        return f"patch{'es' if '-' in self.patches or ',' in self.patches else ''} {self.patches}"


@dataclass(frozen=True)
class Fact:
    """One behaviour a kernel tree carries or not (a Kernel field)."""

    name: str                  # the Kernel field
    commit: str                # where it came from: commit and release
    function: str
    doc: str
    # the Behaviour fields a kernel carrying it turns on; empty: its own field of that name
    turns_on: tuple[str, ...] = ()
    # False: a fact of the kernel's interface that the configuration checks (a flag the uAPI
    # has or not), no rule of the engines
    engine: bool = True

    @property
    def behaviours(self) -> tuple[str, ...]:
        if not self.engine:
            return ()
        return self.turns_on or (self.name,)


PATCHES: tuple[Patch, ...] = (
    Patch("uffd_unprotect_mkdirty", "1", "userfaultfd: set dirty and young on writeprotect",
          "change_pte_range() (uffd_wp_resolve)",
          "UFFDIO_WRITEPROTECT unprotect with the write-likely hint sets Accessed, and Dirty only where it "
          "makes the PTE writable (the MM_CP_TRY_CHANGE_WRITABLE branch, can_change_pte_writable() allowing): "
          "that write takes no dirty-bit walk"),
    Patch("uffd_unprotect_writable", "2", "userfaultfd: try to map write-unprotected pages",
          "uffd_wp_range()",
          "unprotect with the hint passes MM_CP_TRY_CHANGE_WRITABLE: the PTE is mapped writable when "
          "can_change_pte_writable() allows"),
    Patch("clean_anon_writable", "3", "mm/mprotect: allow exclusive anon pages to be writable",
          "can_change_pte_writable()",
          "mprotect(PROT_READ|PROT_WRITE) maps a clean exclusive anonymous PTE writable too"),
    Patch("fix_spurious_fault", "8", "x86/mm: introduce flush_tlb_fix_spurious_fault",
          "flush_tlb_fix_spurious_fault() from handle_pte_fault()",
          "on the \"nothing changed\" branch of handle_pte_fault(), a CPU whose local generation lags "
          "mm->tlb_gen does one full local flush and catches up"),
    Patch("relaxed_flush_on_upgrade", "9-11", "mm: introduce relaxed TLB flushes (9, 10, 11)",
          "flush_tlb_mm_range()",
          "a PTE change that only adds permission (RW set) takes a relaxed flush: ++tlb_gen and a local "
          "flush, no mask scan, no IPIs"),
    Patch("no_flush_clean_wrprotect", "12", "x86/tlb: no flush on PTE change from RW->RO when PTE is clean",
          "pte_flush_type()",
          "RW->RO of a clean PTE needs no flush: relies on the dirty-bit walk faulting on a read-only PTE "
          "(Machine.dirty_walk)"),
    Patch("strict_extends_span", "13", "mm/mprotect: do not check flush type if a strict is needed",
          "change_pte_range()",
          "once a PTE of the walk needs a strict flush (tlb->strict), every later present PTE of the walk is "
          "flushed strictly without pte_flush_type(): the flushed span reaches the end of the walk"),
    Patch("unsafe_dirty_demote", "", "negative control (never safe)", "pte_flush_type()",
          "no flush at all on a dirty RW->RO: a stale dirty writable entry lets a write land on a "
          "read-only page", relaxed=False),
)

FACTS: tuple[Fact, ...] = (
    Fact("clean_anon_writable", "v6.2, \"mm/mprotect: allow clean exclusive anon pages to be writable\"",
         "can_change_pte_writable()",
         "a clean private exclusive anonymous PTE may be mapped writable by mprotect(PROT_READ|PROT_WRITE); "
         "the RFC's base requires pte_dirty() (64fe24a3e05e, 5.19): a clean page stays read-only and its next "
         "write takes do_wp_page() -> wp_page_reuse()",
         turns_on=("clean_anon_writable",)),
    Fact("uffd_unprotect_writable",
         "931298e103c2 \"mm/userfaultfd: rely on vma->vm_page_prot in uffd_wp_range()\" (v6.3)",
         "uffd_wp_range()",
         "every UFFDIO_WRITEPROTECT unprotect adds MM_CP_TRY_CHANGE_WRITABLE (no hint needed); the RFC's base "
         "only clears the uffd-wp bit (\"Leave the write bit to be handled by PF interrupt handler\")",
         turns_on=("uffd_unprotect_writable", "uffd_unprotect_writable_unhinted")),
    Fact("fix_spurious_fault", "RFC patch 8 only (x86 defines flush_tlb_fix_spurious_fault() as a no-op)",
         "flush_tlb_fix_spurious_fault()",
         "a spurious fault on a CPU behind mm->tlb_gen flushes it; a no-op on every kernel this study names",
         turns_on=("fix_spurious_fault",)),
    Fact("uffd_access_hints",
         "the RFC's own tree: Nadav Amit's \"userfaultfd: support access/write hints\" (mm-unstable, June 2022; "
         "never in a release)",
         "mwriteprotect_range()",
         "UFFDIO_WRITEPROTECT takes UFFD_FLAGS_ACCESS_LIKELY / UFFD_FLAGS_WRITE_LIKELY, the hints the RFC's patches "
         "1-2 act on; released kernels' uAPI has only UFFDIO_WRITEPROTECT_MODE_WP and MODE_DONTWAKE",
         engine=False),
    Fact("flush_skips_tlb_gen_read", "aa44284960d5 \"x86/mm/tlb: Avoid reading mm_tlb_gen when possible\" (v6.0)",
         "flush_tlb_func()",
         "return before reading mm->tlb_gen when the request is already <= the CPU's generation; recorded, "
         "without effect here: operations are atomic, so every target is behind the request it receives"),
)

# Behaviour fields that only a kernel fact turns on (no policy switch of that name)
_FACT_ONLY = tuple(dict.fromkeys(b for f in FACTS for b in f.behaviours
                                 if b not in {p.name for p in PATCHES}))
BEHAVIOURS: tuple[str, ...] = tuple(p.name for p in PATCHES) + _FACT_ONLY
# the words of each behaviour: its patch's, else those of the fact that turns it on alone
BEHAVIOUR_DOCS: dict[str, str] = {
    **{f.name: f.doc for f in FACTS if f.behaviours == (f.name,)},
    "uffd_unprotect_writable_unhinted": "every unprotect (hint or not) tries to map the PTE writable",
    **{p.name: p.doc for p in PATCHES},
}
