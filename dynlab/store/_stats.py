"""Per-tensor statistics written at ingest: finite min, finite max, mean and m2 = Σ(x − mean)².

Analyzers that need a run's global range or per-step moments (``fisher-velocity``'s first pass)
read these instead of the data. Computed while the tensor is in memory anyway, with numpy (no
numba here: importing it would add ≈ 120 MB to every ingest process), in float64 pieces of
``PIECE`` values combined exactly (Chan, Golub & LeVeque 1979), so the temporary memory is a few
MB whatever the tensor. It also answers "are all values finite?" (from the plain min and max,
which NaN and ±inf reach), which replaces a separate check; the mean and m2 cannot answer it: m2
overflows for finite values near the float64 limit.
"""

from __future__ import annotations

import numpy as np

#: the four statistics of ``stats[..., i]``, in order
FIELDS = ("min", "max", "mean", "m2")
PIECE = 1 << 20


def tensor_stats(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """``([finite min, finite max, mean, m2], every value finite)`` of ``array`` (float64; NaN for
    complex and empty tensors, min and max NaN when no value is finite, mean and m2 non-finite
    when a value is, or when they overflow)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.size == 0:
        return np.full(len(FIELDS), np.nan), True
    if flat.dtype.kind == "c":
        return np.full(len(FIELDS), np.nan), bool(np.isfinite(flat).all())
    lo, hi = float(flat.min()), float(flat.max())
    all_finite = bool(np.isfinite(lo) and np.isfinite(hi))
    if not all_finite:  # rare: a NaN or ±inf somewhere
        finite = flat[np.isfinite(flat)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
    n, mean, m2 = 0, 0.0, 0.0
    piece = np.empty(min(PIECE, flat.size), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, flat.size, PIECE):
            values = piece[: min(PIECE, flat.size - start)]
            np.copyto(values, flat[start:start + PIECE], casting="unsafe")
            n_b, mean_b = values.size, float(values.mean())
            values -= mean_b
            m2_b = float(np.dot(values, values))
            if n == 0:
                n, mean, m2 = n_b, mean_b, m2_b
            else:  # Chan et al.: δ = μ_b − μ, μ += δ·n_b/n', m2 += m2_b + δ²·n·n_b/n'
                delta, total = mean_b - mean, n + n_b
                mean += delta * n_b / total
                m2 += m2_b + delta * delta * n * n_b / total
                n = total
    return np.array([lo, hi, mean, m2]), all_finite
