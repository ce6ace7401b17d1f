"""Chaos indicators (METHODS.md §6): delay embedding, nearest neighbours beyond a temporal
separation (KD-tree), Rosenstein's mean log-divergence, replica distances and the best-R² window.

``_numpy`` holds every kernel (numpy, and scipy's cKDTree for the neighbour search, imported on
first use). Nothing of dynlab is imported; validation lives in :mod:`dynlab.chaos`.
"""

from __future__ import annotations

from dynlab.kernels.chaos._numpy import (
    autocorrelation_lag,
    delay_embed,
    divergence_curve,
    false_nearest_fraction,
    line_fit,
    mean_period,
    nearest_beyond,
    pair_sums,
    window_fits,
)

__all__ = ["autocorrelation_lag", "delay_embed", "divergence_curve", "false_nearest_fraction",
           "line_fit", "mean_period", "nearest_beyond", "pair_sums", "window_fits"]
