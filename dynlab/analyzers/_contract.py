"""The analyzer contract (DESIGN.md, "Analyzers").

An analyzer is a frozen dataclass whose fields are its parameters, each declared once with
:func:`~dynlab.analyzers.param`; class attributes give its kebab-case ``name`` (= entry-point name
= CLI name), ``version`` (bumped whenever its numbers change), a one-line ``description``, declared
``inputs``, the analyzers it ``requires``, its ``scope`` and its ``outputs``. One pure method,
``compute(view, *, backend)``, returns an :class:`xarray.Dataset` with named dims.

    @dataclass(frozen=True)
    class LayerNorms(Analyzer):
        name = "layer-norms"
        version = "1"
        description = "Frobenius norm of every weight tensor at every step"
        outputs = {"norm": Output(("step", "layer"), "1", "‖W_l(t)‖_F")}

        ord: str = param("fro", Options("fro", "nuc"), "matrix norm")

        def compute(self, view, *, backend="numpy"):
            ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from dynlab.analyzers._params import ParameterError, parse_value, to_json, validate

if TYPE_CHECKING:
    import xarray as xr

#: Inputs an analyzer may declare (DESIGN.md); ``result:<analyzer>`` is added by ``requires``.
INPUTS = ("params", "metrics", "probe/predictions", "probe/activations", "attrs")
SCOPES = ("run", "group")


class TensorLike(Protocol):
    name: str
    shape: tuple[int, ...]
    dtype: str


class RunView(Protocol):
    """What an analyzer may read of one run: the store's ``Run`` and the testing kit's
    ``MemoryRun`` both provide it, so analyzers never touch zarr."""

    name: str

    @property
    def steps(self) -> np.ndarray: ...
    @property
    def tensors(self) -> Sequence[TensorLike]: ...
    @property
    def attrs(self) -> Mapping[str, Any]: ...
    @property
    def metrics(self) -> Mapping[str, np.ndarray]: ...
    def read(self, tensor: str, steps: Sequence[int] | None = None, *,
             part: slice | None = None) -> np.ndarray: ...
    def result(self, analyzer: str) -> xr.Dataset: ...


class GroupView(Protocol):
    """The runs of a group-scope analyzer's target, in a stable order."""

    name: str
    runs: Sequence[RunView]


@dataclass(frozen=True)
class Output:
    """A declared output variable: its dims, units and a doc line."""

    dims: tuple[str, ...]
    units: str
    doc: str


@dataclass(frozen=True)
class ParamInfo:
    name: str
    default: Any
    constraint: str
    doc: str


class AnalyzerInputError(ParameterError):
    """The run cannot be analysed as asked (too few checkpoints, no such tensor, …)."""


@dataclass(frozen=True)
class Analyzer:
    """Base class of every analyzer, built-in or plugin."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params",)
    requires: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[Mapping[str, Output]] = {}
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    #: fewest checkpoints a run needs for this analyzer to mean anything
    min_steps: ClassVar[int] = 2

    def __post_init__(self) -> None:
        validate(self)

    # ------------------------------------------------------------ declaration helpers

    @classmethod
    def parameters(cls) -> list[ParamInfo]:
        """The declared parameters with their defaults, constraints and docs."""
        return [ParamInfo(f.name, f.default, f.metadata["constraint"].describe(), f.metadata["doc"])
                for f in dataclasses.fields(cls) if "constraint" in f.metadata]

    def params(self) -> dict[str, Any]:
        """Current parameter values (JSON-serialisable)."""
        return {p.name: getattr(self, p.name) for p in self.parameters()}

    def params_json(self) -> str:
        return to_json(self.params())

    @classmethod
    def from_params(cls, values: Mapping[str, Any] | None = None) -> Analyzer:
        """Build from Python values or CLI strings; unknown names are an error listing the valid."""
        fields = {f.name: f for f in dataclasses.fields(cls) if "constraint" in f.metadata}
        kwargs = {}
        for key, value in (values or {}).items():
            if key not in fields:
                valid = ", ".join(fields) or "none"
                raise ParameterError(f"{cls.name}: no parameter '{key}' (parameters: {valid})")
            kwargs[key] = parse_value(cls.name, fields[key], value) if isinstance(value, str) and (
                not _is_text(fields[key])) else value
        return cls(**kwargs)

    # ------------------------------------------------------------ the work

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        """Analyse ``view`` (a RunView, or a GroupView for scope ``group``)."""
        raise NotImplementedError(f"{type(self).__name__}.compute")


def _is_text(field: dataclasses.Field) -> bool:
    from dynlab.analyzers._params import Options, Text

    return isinstance(field.metadata["constraint"], (Text, Options))
