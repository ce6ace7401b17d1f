"""Declared parameters: each is declared once, with its constraint and a doc line.

The declaration drives validation at construction (messages name the parameter, as in
scikit-learn's ``_param_validation``), parsing of the CLI's ``-p key=value`` strings, the help of
``dynlab analyzers``, and the JSON provenance that is part of a result's cache key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynlab.errors import DynlabError


class ParameterError(DynlabError):
    """A parameter value is invalid, or names no parameter."""


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (``closed="both"``) or with open ends; ``kind`` int or float."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # both | left | right | neither

    def check(self, value: Any) -> Any:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError("an int" if self.kind is int else "a float")
        if self.kind is int and not float(value).is_integer():
            raise TypeError("an int")
        value = self.kind(value)
        if isinstance(value, float) and math.isnan(value):
            raise ValueError("a number, not NaN")
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left")
                                     else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right")
                                      else value < self.high)
        if not (lo_ok and hi_ok):
            raise ValueError(self.describe())
        return value

    def parse(self, text: str) -> Any:
        if self.kind is int:
            try:
                return int(text)
            except ValueError:
                pass
        try:
            value = float(text)
        except ValueError:
            raise TypeError(f"a {self.kind.__name__}") from None
        if self.kind is int:
            if not (math.isfinite(value) and value.is_integer()):
                raise TypeError("an int")
            return int(value)
        return value

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{self.kind.__name__} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def __init__(self, *values: str):
        object.__setattr__(self, "values", tuple(values))

    def check(self, value: Any) -> Any:
        if value not in self.values:
            raise ValueError(f"one of {', '.join(map(repr, self.values))}")
        return value

    def parse(self, text: str) -> Any:
        return text

    def describe(self) -> str:
        return "{" + ", ".join(self.values) + "}"


@dataclass(frozen=True)
class Boolean:
    def check(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value

    def parse(self, text: str) -> Any:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise TypeError("true or false")

    def describe(self) -> str:
        return "bool"


@dataclass(frozen=True)
class Text:
    """Free text, optionally a comma-separated list (``-p layers=a,b``)."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value

    def parse(self, text: str) -> Any:
        return text

    def describe(self) -> str:
        return "str"


Constraint = Interval | Options | Boolean | Text


def param(default: Any, constraint: Constraint, doc: str) -> Any:
    """Declare an analyzer parameter: a dataclass field carrying its constraint and doc line."""
    return dataclasses.field(default=default, metadata={"constraint": constraint, "doc": doc})


def validate(obj: Any) -> None:
    """Check every declared parameter of a (frozen) dataclass instance; normalise numbers."""
    for f in dataclasses.fields(obj):
        constraint = f.metadata.get("constraint")
        if constraint is None:
            continue
        value = getattr(obj, f.name)
        try:
            normalised = constraint.check(value)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"{type(obj).name}: parameter '{f.name}' must be {exc}, got {value!r}") from None
        object.__setattr__(obj, f.name, normalised)


def parse_value(owner: str, field: dataclasses.Field, text: str) -> Any:
    """A CLI string for one parameter, converted by its constraint."""
    try:
        return field.metadata["constraint"].parse(text)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{owner}: parameter '{field.name}' must be {exc}, got {text!r}") from None


def to_json(params: dict[str, Any]) -> str:
    """Canonical JSON of parameter values (sorted keys): provenance and cache key."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
