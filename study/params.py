"""A knob, a machine fact or a run setting is declared once: its type, unit, range and words.

    threads: int = param(2, "threads", "application threads of the mm; thread 0 initiates", low=1)

``param()`` is a dataclass field whose metadata carries the declaration; everything else reads
it from there: ``check()`` (the one range checker, whose error names the key and what is
allowed), ``describe()`` (the declarations as data, for manifests, docs and ``--help``), the
config schemas (study/config) and the analysis's knob lists (through the sweep's manifest).

Ranges are data: ``low``/``high`` (inclusive unless ``open_low``/``open_high``), or ``choices``.
A bound that depends on another field (threads at most the machine's CPUs) is the class's
cross-field rule, in its ``validate()``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass, field
from typing import Any

from study.errors import ConfigError

META = "study.param"


@dataclass(frozen=True)
class Param:
    """The declaration of one field: unit, words and allowed values."""

    unit: str
    doc: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple | None = None

    def allowed(self) -> str:
        """What the field allows, in the words of the one-line error."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        lo = None if self.low is None else f"{'>' if self.open_low else '>='} {_num(self.low)}"
        hi = None if self.high is None else f"{'<' if self.open_high else '<='} {_num(self.high)}"
        if lo and hi:
            left = "(" if self.open_low else "["
            right = ")" if self.open_high else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        return lo or hi or "any value"

    def admits(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True   # types are the schema's business; ranges apply to numbers
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return False
        return True


def _num(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:g}"


def param(default: Any = MISSING, unit: str = "", doc: str = "", *, low: float | None = None,
          high: float | None = None, open_low: bool = False, open_high: bool = False,
          choices: tuple | None = None, default_factory: Any = MISSING):
    """A dataclass field declared with its unit, its one-line doc and its range."""
    meta = {META: Param(unit, doc, low, high, open_low, open_high, tuple(choices) if choices is not None else None)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def declaration(f: dataclasses.Field) -> Param | None:
    """The Param of a dataclass field, or None for a field declared without one."""
    return f.metadata.get(META)


def check(obj: Any, prefix: str) -> Any:
    """Every declared field of dataclass ``obj`` (nested ones too) within its range, else one
    ConfigError naming ``prefix.field`` and what it allows; returns ``obj``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check(value, f"{prefix}.{f.name}")
            continue
        spec = declaration(f)
        if spec is not None and not spec.admits(value):
            unit = f" {spec.unit}" if spec.unit and spec.choices is None and spec.unit not in ("share", "flag") else ""
            raise ConfigError(f"{prefix}.{f.name}", f"must be {spec.allowed()}{unit}, got {value!r}")
    return obj


def undeclared(cls: type) -> list[str]:
    """Fields of ``cls`` (a dataclass) without a declaration, or with an empty unit or doc."""
    out = []
    for f in dataclasses.fields(cls):
        spec = declaration(f)
        if spec is None or not spec.unit or not spec.doc:
            out.append(f.name)
    return out


def describe(cls: type, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """The declared fields of ``cls`` as plain data: type, default, unit, doc and range."""
    out = {}
    for f in dataclasses.fields(cls):
        spec = declaration(f)
        if spec is None or f.name in skip:
            continue
        default = f.default if f.default is not MISSING else None
        out[f.name] = {"type": _type_name(f.type), "default": default, "unit": spec.unit, "doc": spec.doc,
                       "allowed": spec.allowed()}
    return out


def _type_name(kind: Any) -> str:
    name = getattr(kind, "__name__", None) or str(kind)
    return name.replace("typing.", "")
