"""numba (CPU, parallel) RFIM quadratic form; same results as ``_numpy.py`` up to summation order
(≈ 1e-15 relative).

For each step and block of ``chunk`` samples, δz = X dWᵀ + db and a = X Wᵀ + b are two BLAS matrix
products (multi-threaded already, and an order of magnitude faster than any loop written here:
a hand-written numba triple loop measured 10–20× slower than BLAS at H_in = 784, H_out = 256); the
per-sample quadratic form δzᵀ Λ(a) δz, with its exponentials, is then one pass over the block in a
numba loop parallel over samples, fused (no temporaries, where numpy makes several passes). Each
sample writes its own slot and the slots are summed in a fixed order: the result does not depend
on the number of threads. Memory O(chunk · H_out).
"""

from __future__ import annotations

import numba
import numpy as np

from dynlab.kernels.rfim._numpy import CHUNK, pre_activations

__all__ = ["CHUNK", "KINDS", "quadratic"]

KINDS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4}


@numba.njit(parallel=True, cache=True)
def _per_sample(dz, a, kind, inv_s2, damping, out):  # pragma: no cover - compiled
    """out[n] = dz[n]ᵀ Λ(a[n]) dz[n] (see ``_numpy.per_sample``); ``a`` unread when linear."""
    n, h = dz.shape
    for r in numba.prange(n):
        q = 0.0
        if kind == 0:
            for j in range(h):
                q += dz[r, j] * dz[r, j]
            q *= inv_s2
        elif kind == 1:
            for j in range(h):
                if a[r, j] > 0.0:
                    q += dz[r, j] * dz[r, j]
            q *= inv_s2
        elif kind == 2 or kind == 3:
            half = 0.5 if kind == 2 else 1.0  # ν(1−ν) = sech²(a/2)/4, 1 − tanh² a = sech² a
            scale = 1.0 if kind == 2 else 4.0
            for j in range(h):
                e = np.exp(-2.0 * abs(half * a[r, j]))
                q += scale * e / ((1.0 + e) * (1.0 + e)) * dz[r, j] * dz[r, j]
        else:
            top = a[r, 0]
            for j in range(1, h):
                top = max(top, a[r, j])
            z = 0.0
            mean = 0.0
            sq = 0.0
            for j in range(h):
                e = np.exp(a[r, j] - top)
                z += e
                mean += e * dz[r, j]
                sq += dz[r, j] * dz[r, j]
            mean /= z
            for j in range(h):
                c = dz[r, j] - mean
                q += np.exp(a[r, j] - top) * c * c
            q = q / z + damping * sq
        out[r] = q


def quadratic(dW: np.ndarray, X: np.ndarray, W: np.ndarray | None, db: np.ndarray | None,
              b: np.ndarray | None, output: str, noise: float, damping: float,
              chunk: int = CHUNK) -> np.ndarray:
    """(T,) float64, as :func:`dynlab.kernels.rfim._numpy.quadratic` (the same BLAS blocks)."""
    kind = KINDS[output]
    out = np.zeros(X.shape[0])
    slots = np.empty(min(X.shape[1], chunk))
    for t, dz, a in pre_activations(dW, X, W, db, b, kind != 0, chunk):
        part = slots[:len(dz)]
        _per_sample(dz, dz if a is None else a, kind, 1.0 / noise**2, float(damping), part)
        out[t] += part.sum()
    return out / X.shape[1]
