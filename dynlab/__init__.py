"""dynlab: neural-network training as a dynamical system, analysed over stored checkpoints.

The public API is imported lazily so that ``import dynlab`` stays cheap (no zarr, torch, numba).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dynlab._version import __version__

_LAZY = {
    "open_store": "dynlab.api",
    "ingest": "dynlab.api",
    "probe": "dynlab.api",
    "Recorder": "dynlab.api",
    "run": "dynlab.api",
    "results": "dynlab.api",
    "Store": "dynlab.store",
    "Run": "dynlab.store",
    "DynlabError": "dynlab.errors",
}

__all__ = ["DynlabError", "Recorder", "Run", "Store", "__version__", "ingest", "open_store",
           "probe", "results", "run"]

if TYPE_CHECKING:  # pragma: no cover
    from dynlab.api import Recorder, ingest, open_store, probe, results, run
    from dynlab.errors import DynlabError
    from dynlab.store import Run, Store


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dynlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
