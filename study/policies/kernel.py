"""Kernels: the strict baselines the RFC is measured against, as plain documented facts.

A kernel is what ``strict`` means: the flush and fault behaviour of a named Linux tree as far
as it concerns this study.  Its fields are the registry's facts (study.policies.changes.FACTS:
each names its kernel function and the commit that brought it); the presets are the files of
conf/kernel/.  ``relaxed`` is a kernel with the RFC's patches applied (study.policies), and the
engines never see a Kernel: they read the Behaviour that study.policies.behaviour() derives.
"""

from __future__ import annotations

from dataclasses import make_dataclass
from typing import Any

from study.engine.machine import build_dataclass
from study.errors import ConfigError
from study.policies.changes import FACTS


def _from_dict(cls, data: dict[str, Any], prefix: str = "kernel"):
    kernel = build_dataclass(cls, data, prefix)
    if not kernel.name or not kernel.name.replace("-", "_").isidentifier():
        raise ConfigError(f"{prefix}.name", f"must be a plain name, got {kernel.name!r}")
    return kernel


def _facts(self) -> dict[str, bool]:
    """The behaviour-changing facts by name."""
    return {f.name: getattr(self, f.name) for f in FACTS}


Kernel = make_dataclass(
    "Kernel",
    [("name", str, "rfc_base"),
     # the tree, in words (for tables and the report)
     ("release", str, "5.19-rc4 + MM_CP_TRY_CHANGE_WRITABLE (dirty exclusive anon only)")]
    + [(f.name, bool, False) for f in FACTS],
    frozen=True,
    namespace={"__doc__": "One strict baseline: which facts of study.policies.changes.FACTS it carries.",
               "from_dict": classmethod(_from_dict), "facts": _facts})
Kernel.__module__ = __name__   # pickled by name (Ray ships cells)

RFC_BASE = Kernel(uffd_access_hints=True)
MAINLINE = Kernel(name="mainline", release="mainline as of v6.3+ (flush path as far as this study models it)",
                  clean_anon_writable=True, uffd_unprotect_writable=True, fix_spurious_fault=False,
                  flush_skips_tlb_gen_read=True)
KERNELS = {k.name: k for k in (RFC_BASE, MAINLINE)}
FACT_NAMES = tuple(f.name for f in FACTS)
