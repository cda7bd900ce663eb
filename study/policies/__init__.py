"""Flush policies: which PTE changes need which kind of TLB flush.

``strict`` is mainline (pte_needs_flush semantics, synchronous shootdown).  ``relaxed`` is
the RFC "mm: relaxed TLB flushes and other optimizations", each of its ideas behind its own
switch so that the gain of each can be attributed.  ``unsafe`` is a deliberately wrong
policy kept as a negative control for the safety checker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from study.engine.machine import build_dataclass
from study.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    """One flush policy.  All switches off is mainline."""

    name: str = "strict"
    # RFC patches 9-11: permission added (RO->RW) -> relaxed flush: ++tlb_gen and a local
    # flush only, no IPIs; remote CPUs keep stale, more restrictive entries.
    relaxed_promote: bool = False
    # RFC patch 8: a spurious fault on a CPU whose local generation lags mm->tlb_gen does one
    # full local flush and catches up (flush_tlb_fix_spurious_fault), instead of one fault per page.
    spurious_fixup: bool = False
    # RFC patch 12: RW->RO on a clean PTE needs no flush (the dirty-bit walk re-checks the PTE).
    clean_no_flush: bool = False
    # RFC patches 1-2: UFFDIO_WRITEPROTECT unprotect sets Dirty and Accessed on the PTE it
    # maps writable, so the first write takes neither a fault nor the dirty-bit walk.
    uffd_dirty_hint: bool = False
    # Negative control, never safe: no flush at all on a *dirty* RW->RO.
    unsafe_dirty_demote: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "policy") -> "Policy":
        return build_dataclass(cls, data, prefix)

    def switches(self) -> dict[str, bool]:
        """The RFC switches (and the negative control) by name."""
        return {k: getattr(self, k) for k in SWITCHES}


SWITCHES = ("relaxed_promote", "spurious_fixup", "clean_no_flush", "uffd_dirty_hint", "unsafe_dirty_demote")

STRICT = Policy("strict")
RELAXED = Policy("relaxed", relaxed_promote=True, spurious_fixup=True, clean_no_flush=True, uffd_dirty_hint=True)
UNSAFE = replace(RELAXED, name="unsafe", unsafe_dirty_demote=True)
PRESETS = {p.name: p for p in (STRICT, RELAXED, UNSAFE)}


def preset(name: str) -> Policy:
    """A named policy, or a clear error naming the allowed ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("policy", f"unknown policy {name!r}; allowed: {', '.join(PRESETS)}") from None
