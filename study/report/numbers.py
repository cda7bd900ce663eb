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


def _decimals(value, model_low, model_high) -> int:
    if _finite(model_low, model_high) and model_high > model_low:
        # two significant digits of the model interval's width set the last digit shown
        return min(max(1 - math.floor(math.log10(model_high - model_low)), 0), 4)
    return max(2 - math.floor(math.log10(abs(value))), 0)   # three significant digits


def speedup(value, model_low=None, model_high=None) -> str:
    """A speedup alone, to the precision of its model interval (``estimate``): ``44×``."""
    if not _finite(value) or value == 0:
        return ratio(value)
    return f"{num(value, _decimals(value, model_low, model_high))}\u00d7"


def estimate(value, low, high, model_low=None, model_high=None) -> str:
    """A speedup printed to the precision its uncertainty allows: its digits follow the model
    interval when there is one (two significant digits of its width), and a Monte Carlo CI that
    would print as ``[44.1, 44.1]`` at that precision becomes ``(Monte Carlo CI ±0.05%)``:
    ``44× (Monte Carlo CI ±0.04%), model [36, 50]``."""
    if not _finite(value) or value == 0:
        return ratio(value, low, high)
    decimals = _decimals(value, model_low, model_high)
    text = f"{num(value, decimals)}\u00d7"
    if _finite(low, high):
        if num(low, decimals) == num(value, decimals) == num(high, decimals):
            half = max(abs(high - value), abs(value - low)) / abs(value) * 100
            text += f" (Monte Carlo CI \u00b1{half:.1g}%)"
        else:
            text += f" {interval(low, high, decimals)}"
    if _finite(model_low, model_high):
        text += f", model {interval(model_low, model_high, decimals)}"
    return text


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
