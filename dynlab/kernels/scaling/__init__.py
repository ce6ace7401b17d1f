"""Finite-size-scaling kernels (METHODS.md §9): the scaling of the data and the Houdayer–Hartmann
quality of a data collapse.

``_numpy`` is the reference: S vectorised over the points, with a Python loop over pairs of sizes
only (k² iterations for k sizes). ``_numba`` computes scaling and S in one compiled pass
(``quality_flat``, ≈ 50× faster on small data, where a fit spends its time in thousands of
evaluations). :func:`backend` imports a backend on demand, so importing this package does not load
numba. Nothing of dynlab is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from dynlab.kernels.scaling._numpy import master_curve, quality, scale

__all__ = ["BACKENDS", "backend", "master_curve", "numba_available", "quality", "scale"]

BACKENDS = ("numpy", "numba")


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def backend(name: str) -> ModuleType:
    """The module of backend ``name`` (one of :data:`BACKENDS`), imported now."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return importlib.import_module(f"dynlab.kernels.scaling._{name}")
