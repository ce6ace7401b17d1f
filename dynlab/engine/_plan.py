"""Planning: which analyzer runs on which target, in which order, with which parameters.

Analyzers are ordered so that every analyzer comes after those it ``requires`` (which are added
to the plan when not asked for). Each analyzer becomes one task per target: a run for scope
``run``, a group of runs for scope ``group`` (runs sharing the attr ``group``, else all selected
runs as the group ``all``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynlab.analyzers import registry
from dynlab.analyzers._contract import Analyzer
from dynlab.analyzers._params import ParameterError
from dynlab.geometry import cuda_available


@dataclass(frozen=True)
class Task:
    """One analyzer on one target; everything a worker needs, picklable."""

    analyzer: str
    params: dict[str, Any]
    target: str
    runs: tuple[str, ...]
    backend: str
    force: bool = False


@dataclass
class Plan:
    levels: list[list[Task]] = field(default_factory=list)
    #: analyzer → the analyzers it requires (to skip tasks whose dependency failed)
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def tasks(self) -> list[Task]:
        return [t for level in self.levels for t in level]


def order(names: Sequence[str]) -> list[type[Analyzer]]:
    """The analyzers and everything they require, dependencies first."""
    ordered: list[type[Analyzer]] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if any(cls.name == name for cls in ordered):
            return
        if name in visiting:
            raise ParameterError(f"analyzers require each other in a cycle: {' → '.join(chain)}")
        visiting.add(name)
        cls = registry.get(name)
        for dep in cls.requires:
            visit(dep, (*chain, dep))
        visiting.discard(name)
        ordered.append(cls)

    for name in names:
        visit(name, (name,))
    return ordered


def split_params(classes: Sequence[type[Analyzer]], params: Mapping[str, Any] | None
                 ) -> dict[str, dict[str, Any]]:
    """``{"A.key": v, "key": v}`` → per-analyzer values; an unqualified key goes to every analyzer
    declaring it and must be declared by at least one."""
    per: dict[str, dict[str, Any]] = {cls.name: {} for cls in classes}
    declared = {cls.name: {p.name for p in cls.parameters()} for cls in classes}
    for key, value in (params or {}).items():
        owner, dot, pname = key.rpartition(".") if "." in key else ("", "", key)
        if dot and owner in per:
            per[owner][pname] = value
        elif dot:
            raise ParameterError(f"-p {key}: '{owner}' is not among the analyzers being run "
                                 f"({', '.join(per)})")
        else:
            takers = [name for name, names in declared.items() if pname in names]
            if not takers:
                raise ParameterError(f"-p {key}: no analyzer being run has a parameter '{pname}'")
            for name in takers:
                per[name][pname] = value
    for cls in classes:  # validate now, before any work starts
        per[cls.name] = cls.from_params(per[cls.name]).params()
    return per


def targets(cls: type[Analyzer], runs: Sequence[str], attrs: Mapping[str, Mapping[str, Any]]
            ) -> list[tuple[str, tuple[str, ...]]]:
    """``(target name, runs)`` pairs for one analyzer."""
    if cls.scope == "run":
        return [(r, (r,)) for r in runs]
    groups: dict[str, list[str]] = {}
    for r in runs:
        groups.setdefault(str(attrs[r].get("group", "all")), []).append(r)
    return [(g, tuple(members)) for g, members in sorted(groups.items())]


def choose_backend(cls: type[Analyzer], requested: str) -> str:
    """``auto``: torch on a CUDA device, else numba, else numpy — among what the analyzer has."""
    if requested == "auto":
        if "torch" in cls.backends and cuda_available():
            return "torch"
        return "numba" if "numba" in cls.backends else "numpy"
    return requested if requested in cls.backends else "numpy"


def make_plan(names: Sequence[str], runs: Sequence[str], attrs: Mapping[str, Mapping[str, Any]],
              params: Mapping[str, Any] | None, backend: str, force: bool) -> Plan:
    if backend not in ("auto", "numpy", "numba", "torch"):
        raise ParameterError(f"unknown backend '{backend}'; choose auto, numpy, numba or torch")
    classes = order(names)
    per = split_params(classes, params)
    plan = Plan()
    for cls in classes:
        plan.requires[cls.name] = tuple(cls.requires)
        chosen = choose_backend(cls, backend)
        plan.levels.append([Task(cls.name, per[cls.name], target, members, chosen, force)
                            for target, members in targets(cls, runs, attrs)])
    return plan
