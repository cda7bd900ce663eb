"""Flush policies: a kernel as it is (``strict``) or with the RFC's patches applied.

The RFC "mm: relaxed TLB flushes and other optimizations" (Nadav Amit, July 2022) is
applied patch by patch: one switch per behaviour-changing patch, so that the gain of each
can be attributed.  What a switch does is always relative to a kernel
(study.engine.kernel): a patch that kernel already carries (patch 3 in mainline) is a
no-op there, and ``acts_on()`` says so.  ``unsafe`` is a deliberately wrong policy kept as
a negative control for the safety checker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from study.engine.kernel import Kernel
from study.engine.machine import build_dataclass
from study.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    """One flush policy.  All switches off is the kernel as it is (strict)."""

    name: str = "strict"
    # RFC patch 1 "userfaultfd: set dirty and young on writeprotect": UFFDIO_WRITEPROTECT
    # unprotect with the write-likely hint (UFFD_FLAGS_WRITE_LIKELY, the uffd_wp workload's
    # ``write_likely``) sets Dirty and Accessed on the PTE, so the first write takes no
    # dirty-bit walk and can_change_pte_writable() sees a dirty PTE.
    uffd_unprotect_mkdirty: bool = False
    # RFC patch 2 "userfaultfd: try to map write-unprotected pages": with the hint, unprotect
    # passes MM_CP_TRY_CHANGE_WRITABLE and maps the PTE writable if can_change_pte_writable().
    uffd_unprotect_writable: bool = False
    # RFC patch 3 "mm/mprotect: allow exclusive anon pages to be writable": mprotect maps a
    # *clean* exclusive anonymous PTE writable too (merged on its own in v6.2).
    clean_anon_writable: bool = False
    # RFC patch 8 "x86/mm: introduce flush_tlb_fix_spurious_fault": on the "nothing changed"
    # branch of handle_pte_fault(), a CPU whose local generation lags mm->tlb_gen does one
    # full local flush and catches up.
    fix_spurious_fault: bool = False
    # RFC patches 9-11 "relaxed TLB flushes": a PTE change that only adds permission (RW
    # set) takes a relaxed flush: ++tlb_gen and a local flush, no mask scan, no IPIs.
    relaxed_flush_on_upgrade: bool = False
    # RFC patch 12 "x86/tlb: no flush on PTE change from RW->RO when PTE is clean": relies
    # on the dirty-bit walk faulting on a read-only PTE (Machine.dirty_walk).
    no_flush_clean_wrprotect: bool = False
    # Negative control, never safe: no flush at all on a *dirty* RW->RO.
    unsafe_dirty_demote: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "policy") -> "Policy":
        return build_dataclass(cls, data, prefix)

    def switches(self) -> dict[str, bool]:
        """The RFC switches (and the negative control) by name."""
        return {k: getattr(self, k) for k in SWITCHES}


SWITCHES = ("uffd_unprotect_mkdirty", "uffd_unprotect_writable", "clean_anon_writable", "fix_spurious_fault",
            "relaxed_flush_on_upgrade", "no_flush_clean_wrprotect", "unsafe_dirty_demote")
# The RFC patch (or patches) behind each switch, for tables and the report.
PATCHES = {
    "uffd_unprotect_mkdirty": "patch 1",
    "uffd_unprotect_writable": "patch 2",
    "clean_anon_writable": "patch 3",
    "fix_spurious_fault": "patch 8",
    "relaxed_flush_on_upgrade": "patches 9-11",
    "no_flush_clean_wrprotect": "patch 12",
    "unsafe_dirty_demote": "negative control",
}
# Switches a kernel may already carry as a fact of its own (same name on Kernel).
_MERGED_AS = {"uffd_unprotect_writable": "uffd_unprotect_writable", "clean_anon_writable": "clean_anon_writable",
              "fix_spurious_fault": "fix_spurious_fault"}


def acts_on(switch: str, kernel: Kernel) -> bool:
    """Whether RFC switch ``switch`` changes anything on ``kernel`` (False: already merged there)."""
    fact = _MERGED_AS.get(switch)
    return not (fact is not None and getattr(kernel, fact))


def merged_in(kernel: Kernel) -> list[str]:
    """The switches ``kernel`` already carries: no-ops on it."""
    return [s for s in SWITCHES if not acts_on(s, kernel)]


def patch_label(switch: str) -> str:
    """``clean_anon_writable (patch 3)``."""
    return f"{switch} ({PATCHES.get(switch, '?')})"


STRICT = Policy("strict")
RELAXED = Policy("relaxed", **{s: True for s in SWITCHES if s != "unsafe_dirty_demote"})
UNSAFE = replace(RELAXED, name="unsafe", unsafe_dirty_demote=True)
PRESETS = {p.name: p for p in (STRICT, RELAXED, UNSAFE)}


def preset(name: str) -> Policy:
    """A named policy, or a clear error naming the allowed ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("policy", f"unknown policy {name!r}; allowed: {', '.join(PRESETS)}") from None
