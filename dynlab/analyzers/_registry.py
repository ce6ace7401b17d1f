"""The analyzer registry: entry points in the group ``dynlab.analyzers``.

Built-ins register exactly like third-party plugins (dynlab's own ``pyproject.toml`` declares
them), so there is one door. Loading is lazy: ``names()`` reads only the entry-point metadata; an
analyzer's module is imported when it is used. A plugin that fails to import is reported with a
warning naming it, and every other analyzer keeps working.
"""

from __future__ import annotations

import warnings
from functools import cache, lru_cache
from importlib.metadata import EntryPoint, entry_points

from dynlab.analyzers._contract import SCOPES, Analyzer
from dynlab.analyzers._params import ParameterError
from dynlab.errors import DynlabWarning

GROUP = "dynlab.analyzers"


class PluginWarning(DynlabWarning):
    """An analyzer plugin could not be loaded."""


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the first distribution to claim a name keeps it
    return found


def names() -> list[str]:
    """Names of all registered analyzers (not imported)."""
    return sorted(_entry_points())


def refresh() -> None:
    """Forget cached entry points (after installing a plugin in the same process)."""
    _entry_points.cache_clear()
    _loaded.cache_clear()


@cache
def _loaded(name: str) -> type[Analyzer] | None:
    ep = _entry_points()[name]
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not break the others
        warnings.warn(f"analyzer plugin '{name}' ({ep.value}) failed to load: "
                      f"{type(exc).__name__}: {exc}", PluginWarning, stacklevel=3)
        return None
    problem = _contract_problem(name, cls)
    if problem:
        warnings.warn(f"analyzer plugin '{name}' ({ep.value}) is not a dynlab analyzer: {problem}",
                      PluginWarning, stacklevel=3)
        return None
    return cls


def _contract_problem(name: str, cls: object) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, Analyzer)):
        return "not a subclass of dynlab.analyzers.Analyzer"
    if cls.name != name:
        return f"its name is '{cls.name}', but it is registered as '{name}'"
    if cls.scope not in SCOPES:
        return f"scope must be one of {SCOPES}, not {cls.scope!r}"
    return None


def get(name: str) -> type[Analyzer]:
    """The analyzer class registered as ``name``; a one-line error listing the valid names."""
    if name not in _entry_points():
        raise ParameterError(f"unknown analyzer '{name}'; available: {', '.join(names()) or 'none'}")
    cls = _loaded(name)
    if cls is None:
        raise ParameterError(f"analyzer '{name}' is installed but failed to load (see the warning)")
    return cls


def available() -> dict[str, type[Analyzer]]:
    """Every analyzer that loads, by name (broken plugins are warned about and left out)."""
    return {n: cls for n in names() if (cls := _loaded(n)) is not None}
