"""Invalid values generated from a parameter's declared constraint (as scikit-learn generates
them from ``_param_validation`` constraints): each must be refused with a ``ParameterError``."""

from __future__ import annotations

import math
from typing import Any

from dynlab.analyzers import Boolean, Interval, Options, Text

NOT_AN_OPTION = "__not-an-option__"


def invalid_values(constraint: Any, default: Any) -> list[tuple[str, Any]]:
    """``(what is wrong, Python value)`` pairs that ``constraint`` must reject."""
    if isinstance(constraint, Interval):
        out: list[tuple[str, Any]] = [("wrong type (str)", "1"), ("wrong type (bool)", True),
                                      ("wrong type (None)", None)]
        lo, hi, closed = constraint.low, constraint.high, constraint.closed
        if lo is not None and math.isfinite(lo):
            out.append(("below the interval", lo if closed in ("right", "neither")
                        else _below(constraint.kind, lo)))
        if hi is not None and math.isfinite(hi):
            out.append(("above the interval", hi if closed in ("left", "neither")
                        else _above(constraint.kind, hi)))
        if constraint.kind is int:
            out.append(("not an integer", float(default) + 0.5))
        else:
            out.append(("NaN", math.nan))
        return out
    if isinstance(constraint, Options):
        return [("unknown option", NOT_AN_OPTION), ("wrong type (int)", 1)]
    if isinstance(constraint, Boolean):
        return [("wrong type (str)", "true"), ("wrong type (int)", 1)]
    if isinstance(constraint, Text):
        return [("wrong type (int)", 1), ("wrong type (None)", None)]
    return []


def invalid_texts(constraint: Any) -> list[tuple[str, str]]:
    """``(what is wrong, CLI string)`` pairs that ``from_params`` must reject."""
    if isinstance(constraint, Interval):
        return [("not a number", "not-a-number"), *([("not an integer", "2.5")]
                                                    if constraint.kind is int else [])]
    if isinstance(constraint, Options):
        return [("unknown option", NOT_AN_OPTION)]
    if isinstance(constraint, Boolean):
        return [("neither true nor false", "maybe")]
    return []


def _below(kind: type, low: float) -> Any:
    return int(low) - 1 if kind is int else math.nextafter(float(low), -math.inf)


def _above(kind: type, high: float) -> Any:
    return int(high) + 1 if kind is int else math.nextafter(float(high), math.inf)
