"""Fisher–Rao geometry of the parameter distribution (METHODS.md §1): histograms on fixed edges,
geodesic distances between them, information rate and length, and the Gaussian estimator.

``_numpy`` is the reference (the definitions); ``_numba`` (CPU, parallel) and ``_torch`` (any
device) implement the heavy kernels — ``histogram_counts``, ``histogram_counts_pair`` (two sets of
edges, one pass over the values), ``histogram_accumulate``, ``row_moments`` and ``distance_matrix``
— with the same results. Backends are imported on demand by :func:`backend`, so importing this
package loads neither numba nor torch. Nothing of dynlab is imported but ``dynlab.errors`` (for a
missing optional dependency).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dynlab.kernels.fisher._numpy import (
    adaptive_anchors,
    adaptive_length,
    bhattacharyya,
    combine_moments,
    distance_from_initial,
    distance_matrix,
    fisher_rao,
    gaussian_length,
    gaussian_rate,
    histogram_accumulate,
    histogram_counts,
    histogram_counts_pair,
    information_length,
    information_rate,
    probabilities,
    row_moments,
)

__all__ = ["BACKENDS", "adaptive_anchors", "adaptive_length", "backend", "bhattacharyya", "combine_moments",
           "distance_from_initial", "distance_matrix",
           "fisher_rao", "gaussian_length", "gaussian_rate", "histogram_accumulate", "histogram_counts",
           "histogram_counts_pair",
           "information_length", "information_rate", "probabilities", "row_moments"]

BACKENDS = ("numpy", "numba", "torch")


def backend(name: str) -> ModuleType:
    """The module of backend ``name`` (one of :data:`BACKENDS`), imported now."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return importlib.import_module(f"dynlab.kernels.fisher._{name}")
