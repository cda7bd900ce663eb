"""How numbers are printed: every estimate beside its 95% CI, in one style throughout."""

from __future__ import annotations

import math

MINUS = "\u2212"  # a real minus sign, not a hyphen


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite(*values) -> bool:
    return all(not _missing(v) and math.isfinite(v) for v in values)


def num(value, digits: int = 0) -> str:
    """A number with a real minus sign; an em dash when missing, ±∞ when unbounded."""
    if _missing(value):
        return "\u2014"
    if math.isinf(value):
        return "+\u221e" if value > 0 else f"{MINUS}\u221e"
    return f"{value:.{digits}f}".replace("-", MINUS)


def interval(low, high, digits: int = 0, scale: float = 1.0, unit: str = "") -> str:
    """``[low, high]`` (a comma, not a dash, so negative ends read right); an interval
    that could not be computed says so."""
    if _missing(low) or _missing(high):
        return "[CI n/a]"
    return f"[{num(low * scale, digits)}{unit}, {num(high * scale, digits)}{unit}]"


def cycles(value, low=None, high=None) -> str:
    text = num(value, 0)
    return text if low is None and high is None else f"{text} {interval(low, high, 0)}"


def ratio(value, low=None, high=None) -> str:
    """A speedup: ``1.43× [1.42, 1.44]``."""
    if not _finite(value):
        return num(value)
    text = f"{num(value, 3 if abs(value) < 10 else 1)}\u00d7"
    return text if low is None else f"{text} {interval(low, high, 3 if abs(value) < 10 else 1)}"


def percent(value, low=None, high=None, digits: int = 1, signed: bool = False) -> str:
    """A share or a change in percent: ``−44.2% [−44.4%, −44.0%]``."""
    if not _finite(value):
        return num(value)
    sign = "+" if signed and value > 0 else ""
    text = f"{sign}{num(value * 100, digits)}%"
    return text if low is None else f"{text} {interval(low, high, digits, 100.0, '%')}"


def pvalue(p) -> str:
    if not _finite(p):
        return "\u2014"
    if p < 1e-4:
        return "<0.0001"
    return f"{p:.4f}"


def plain(value, digits: int = 3) -> str:
    """A knob value as set: integers without a decimal point; a knob that does not apply, a dash."""
    if isinstance(value, float) and math.isnan(value):
        return "\u2014"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
