"""Flush policies: a kernel as it is (``strict``) or with the RFC's patches applied.

The RFC "mm: relaxed TLB flushes and other optimizations" (Nadav Amit, July 2022) is applied
patch by patch: one switch per behaviour-changing patch (study.policies.changes.PATCHES), so
that the gain of each can be attributed.  What a switch does is always relative to a kernel
(study.policies.kernel): a patch the kernel already carries (patch 3 in mainline) is a no-op
there, and ``acts_on()`` says so.  ``unsafe`` is a deliberately wrong policy kept as a
negative control for the safety checker.

``behaviour(kernel, policy)`` combines the two into the one flat Behaviour the engines read:
per field, whether the rule applies, whoever brought it.
"""

from __future__ import annotations

from dataclasses import make_dataclass, replace
from typing import Any

from study.engine.machine import build_dataclass
from study.errors import ConfigError
from study.policies.changes import BEHAVIOUR_DOCS, BEHAVIOURS, FACTS, PATCHES  # noqa: F401 (PATCHES: the registry)
from study.policies.kernel import KERNELS, MAINLINE, RFC_BASE, Kernel

SWITCHES: tuple[str, ...] = tuple(p.name for p in PATCHES)
# the RFC's ideas, each behind one switch (on in ``relaxed``); the negative control is not one
IDEAS: tuple[str, ...] = tuple(p.name for p in PATCHES if p.relaxed)
# where each switch comes from in the RFC, for tables and the report
PATCH_OF = {p.name: p for p in PATCHES}
PATCHES_TEXT = {p.name: p.where for p in PATCHES}


def _from_dict(cls, data: dict[str, Any], prefix: str = "policy"):
    """A policy from plain data: a switch left out (or null) takes the value of the preset of the
    policy's name (``relaxed``: every RFC patch of the registry on), else off; so a preset file
    names its preset only, and a new patch needs no edit of it."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"must be a mapping, got {type(data).__name__}")
    name = data.get("name", "strict")
    base = PRESETS.get(name, STRICT) if isinstance(name, str) else STRICT
    filled = {s: getattr(base, s) for s in SWITCHES if data.get(s) is None}
    return build_dataclass(cls, {**data, **filled}, prefix)


def _switches(self) -> dict[str, bool]:
    """The RFC switches (and the negative control) by name."""
    return {k: getattr(self, k) for k in SWITCHES}


Policy = make_dataclass(
    "Policy", [("name", str, "strict")] + [(s, bool, False) for s in SWITCHES], frozen=True,
    namespace={"__doc__": "One flush policy: a switch per entry of study.policies.changes.PATCHES; all off is "
                          "the kernel as it is (strict).",
               "from_dict": classmethod(_from_dict), "switches": _switches})
Policy.__module__ = __name__   # pickled by name (Ray ships cells)

Behaviour = make_dataclass(
    "Behaviour", [(b, bool, False) for b in BEHAVIOURS], frozen=True,
    namespace={"__doc__": "What the engines read: one flag per rule of the flush and fault paths (the kernel's "
                          "facts combined with the policy's patches). Fields: "
                          + "; ".join(f"{k}: {v}" for k, v in BEHAVIOUR_DOCS.items())})
Behaviour.__module__ = __name__


def behaviour(kernel: Kernel, policy) -> Behaviour:
    """The rules that hold on ``kernel`` with ``policy``'s patches applied."""
    on = {name: bool(getattr(policy, name)) for name in SWITCHES}
    for fact in FACTS:
        if getattr(kernel, fact.name):
            for name in fact.behaviours:
                on[name] = True
    return Behaviour(**on)


def acts_on(switch: str, kernel: Kernel) -> bool:
    """Whether switch ``switch`` changes anything on ``kernel`` (False: the kernel carries it already)."""
    return not any(getattr(kernel, f.name) and switch in f.behaviours for f in FACTS)


def merged_in(kernel: Kernel) -> list[str]:
    """The switches ``kernel`` already carries: no-ops on it."""
    return [s for s in SWITCHES if not acts_on(s, kernel)]


def patch_label(switch: str) -> str:
    """``clean_anon_writable (patch 3)``."""
    patch = PATCH_OF.get(switch)
    return patch.label if patch is not None else f"{switch} (?)"


ROLE_STRICT, ROLE_RELAXED, ROLE_UNSAFE, ROLE_OTHER = "strict", "relaxed", "unsafe", "other"


def ablation_role(idea: str) -> str:
    """The role of relaxed with only ``idea`` switched off."""
    return f"relaxed-no-{idea}"


def role(policy) -> str:
    """strict | relaxed | relaxed-no-<idea> | unsafe | other: what a policy is to the comparisons,
    from its switches (not its name), so that an ablation named anything still counts."""
    on = policy.switches()
    if on["unsafe_dirty_demote"]:
        return ROLE_UNSAFE
    if any(on[s] for s in SWITCHES if s not in IDEAS):
        return ROLE_OTHER
    off = [idea for idea in IDEAS if not on[idea]]
    if len(off) == len(IDEAS):
        return ROLE_STRICT
    if not off:
        return ROLE_RELAXED
    return ablation_role(off[0]) if len(off) == 1 else ROLE_OTHER


def without(policy, switch: str):
    """``policy`` with one switch off: the attribution variant of that patch."""
    return replace(policy, **{switch: False})


STRICT = Policy("strict")
RELAXED = Policy("relaxed", **{s: True for s in IDEAS})
UNSAFE = replace(RELAXED, name="unsafe", unsafe_dirty_demote=True)
PRESETS = {p.name: p for p in (STRICT, RELAXED, UNSAFE)}


def preset(name: str):
    """A named policy, or a clear error naming the allowed ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("policy", f"unknown policy {name!r}; allowed: {', '.join(PRESETS)}") from None


__all__ = ["ROLE_OTHER", "ROLE_RELAXED", "ROLE_STRICT", "ROLE_UNSAFE", "ablation_role", "role", "Behaviour", "IDEAS", "KERNELS", "Kernel", "MAINLINE", "PATCHES_TEXT", "PATCH_OF", "PRESETS", "Policy",
           "RELAXED", "RFC_BASE", "STRICT", "SWITCHES", "UNSAFE", "acts_on", "behaviour", "merged_in", "patch_label",
           "preset", "without"]
