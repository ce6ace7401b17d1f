"""Per-tensor statistics written at ingest: finite min, finite max, mean and m2 = Σ(x − mean)².

Analyzers that need a run's global range or per-step moments (``fisher-velocity``'s first pass)
read these instead of the data. One parallel pass over the tensor while it is in memory anyway
(:func:`dynlab.kernels.fisher.backend` ``("numba").row_moments``); it also answers "are all values
finite?" (mean and m2 are finite exactly when every value is), which replaces a separate check.
"""

from __future__ import annotations

import numpy as np

#: the four statistics of ``stats[..., i]``, in order
FIELDS = ("min", "max", "mean", "m2")


def tensor_stats(array: np.ndarray) -> np.ndarray:
    """``[finite min, finite max, mean, m2]`` of ``array`` (float64; NaN for complex and empty
    tensors, and min/max NaN when no value is finite)."""
    if array.size == 0 or array.dtype.kind == "c":
        return np.full(len(FIELDS), np.nan)
    from dynlab.kernels.fisher import backend

    lo, hi, mean, m2 = backend("numba").row_moments(np.ascontiguousarray(array).reshape(1, -1))
    return np.array([lo[0], hi[0], mean[0], m2[0]])
