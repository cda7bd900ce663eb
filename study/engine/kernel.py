"""Kernels: the strict baselines the RFC is measured against, as plain documented facts.

A kernel is what ``strict`` means: the flush and fault behaviour of a named Linux tree as
far as it concerns this study.  ``relaxed`` is that kernel with the RFC's patches applied
(study.policies).  The engine receives a Kernel as plain data and never looks anything up.

Every field names the kernel function it stands for and, where confirmed, the commit or
release that introduced it; docs/model.md carries the same facts with their sources and
marks the ones that could not be confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from study.engine.machine import build_dataclass
from study.errors import ConfigError


@dataclass(frozen=True)
class Kernel:
    """One strict baseline: which protection changes touch the PTE, and how faults are fixed up."""

    name: str = "rfc_base"
    # the tree, in words (for tables and the report)
    release: str = "5.19-rc4 + MM_CP_TRY_CHANGE_WRITABLE (dirty exclusive anon only)"
    # mm/mprotect.c can_change_pte_writable(): a *clean* private exclusive anonymous PTE may
    # be mapped writable by mprotect(PROT_READ|PROT_WRITE).  False on the RFC's base
    # (64fe24a3e05e, 5.19: "if (pte_protnone(pte) || !pte_dirty(pte)) return false"): a clean
    # page stays read-only and its next write takes do_wp_page() -> wp_page_reuse().
    # True since "mm/mprotect: allow clean exclusive anon pages to be writable" (v6.2; this
    # is the RFC's patch 3, merged on its own).
    clean_anon_writable: bool = False
    # mm/userfaultfd.c uffd_wp_range(): UFFDIO_WRITEPROTECT unprotect adds
    # MM_CP_TRY_CHANGE_WRITABLE and maps the PTE writable when can_change_pte_writable()
    # allows.  False on the RFC's base (change_pte_range(): uffd_wp_resolve only clears the
    # uffd-wp bit, "Leave the write bit to be handled by PF interrupt handler"); True since
    # 931298e103c2 "mm/userfaultfd: rely on vma->vm_page_prot in uffd_wp_range()" (v6.3).
    uffd_unprotect_writable: bool = False
    # flush_tlb_fix_spurious_fault(): arch/x86/include/asm/pgtable.h defines it as a no-op on
    # every kernel this study names; the RFC's patch 8 makes it flush a CPU behind tlb_gen.
    fix_spurious_fault: bool = False
    # flush_tlb_func(): return before reading mm->tlb_gen when the request's new_tlb_gen is
    # already <= the CPU's local generation (aa44284960d5 "x86/mm/tlb: Avoid reading
    # mm_tlb_gen when possible", tip x86/mm June 2022, in v6.0).  Recorded, without effect
    # in this engine: operations are atomic, so every target of a shootdown is behind the
    # request it receives and reads mm->tlb_gen on either kernel.
    flush_skips_tlb_gen_read: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "kernel") -> "Kernel":
        kernel = build_dataclass(cls, data, prefix)
        if not kernel.name or not kernel.name.replace("-", "_").isidentifier():
            raise ConfigError(f"{prefix}.name", f"must be a plain name, got {kernel.name!r}")
        return kernel

    def facts(self) -> dict[str, bool]:
        """The behaviour-changing facts by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), bool)}


RFC_BASE = Kernel()
MAINLINE = Kernel(name="mainline", release="mainline as of v6.3+ (flush path as far as this study models it)",
                  clean_anon_writable=True, uffd_unprotect_writable=True, fix_spurious_fault=False,
                  flush_skips_tlb_gen_read=True)
KERNELS = {k.name: k for k in (RFC_BASE, MAINLINE)}
