"""Comparing answers: one implementation for the tests, the benchmark and the reliability runs.

``matches(answer, pattern)`` is what ``samples/expected.json`` means: a dict pattern names some keys of
the answer, a list pattern is a prefix of the answer (top-k), numbers agree within the tolerance,
anything else is equal. ``same(a, b)`` is the strict form: the same keys, the same lengths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}  # the spec's default
ROUNDING = 1e-6  # answers carry 6 decimals: the last digit may round either way


def _bounds(tolerance: Mapping | float | None) -> tuple[float, float]:
    """(atol, rtol) from a spec's ``{"atol", "rtol"}``, a bare absolute tolerance, or None (the default)."""
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    if isinstance(tolerance, Mapping):
        return float(tolerance.get("atol", 0.0)), float(tolerance.get("rtol", 0.0))
    return float(tolerance), 0.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def difference(
    answer: Any, pattern: Any, tolerance: Mapping | float | None = None, strict: bool = False, where: str = "answer"
) -> str | None:
    """Where ``answer`` first departs from ``pattern``, or None when it matches.

    Args:
        tolerance: ``{"atol", "rtol"}`` (a spec's), a float (absolute), or None for the default.
        strict: every key and every list item must be there, and nothing more (``same``).
        where: the name of ``answer`` in the message.
    """
    if isinstance(pattern, dict):
        if not isinstance(answer, dict):
            return f"{where}: expected an object, got {answer!r:.200}"
        missing = [k for k in pattern if k not in answer]
        extra = [k for k in answer if k not in pattern] if strict else []
        if missing or extra:
            return f"{where}: keys missing {missing}, unexpected {extra}"
        found = (difference(answer[k], pattern[k], tolerance, strict, f"{where}.{k}") for k in pattern)
        return next((d for d in found if d), None)
    if isinstance(pattern, list):
        if not isinstance(answer, list) or len(answer) < len(pattern) or (strict and len(answer) != len(pattern)):
            return f"{where}: expected a list of {len(pattern)}{'' if strict else '+'} items, got {answer!r:.200}"
        found = (difference(answer[i], p, tolerance, strict, f"{where}[{i}]") for i, p in enumerate(pattern))
        return next((d for d in found if d), None)
    if _is_number(pattern):
        atol, rtol = _bounds(tolerance)
        if not _is_number(answer) or abs(answer - pattern) > atol + rtol * abs(pattern) + ROUNDING:
            return f"{where}: {answer!r} is not {pattern!r} (atol {atol:g}, rtol {rtol:g})"
        return None
    if type(answer) is not type(pattern) or answer != pattern:  # True is not 1
        return f"{where}: {answer!r:.200} != {pattern!r:.200}"
    return None


def matches(answer: Any, pattern: Any, tolerance: Mapping | float | None = None) -> bool:
    """Whether ``answer`` has everything ``pattern`` says (see the module docstring)."""
    return difference(answer, pattern, tolerance) is None


def same(answer: Any, reference: Any, tolerance: Mapping | float | None = None) -> bool:
    """Whether two answers have the same structure and, within the tolerance, the same numbers."""
    return difference(answer, reference, tolerance, strict=True) is None
