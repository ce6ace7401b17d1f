"""numba (CPU, parallel) per-sample Bhattacharyya distance matrix; same results as ``_numpy.py``
up to summation order.

For each block of ``tile_n`` samples, √P (and √Q) is computed once for all checkpoints (in
float64, laid out so the innermost loop runs over contiguous columns and vectorises); then the
checkpoint tiles (``tile_m`` × ``tile_m``, only the upper ones for a symmetric matrix) are spread
over threads, each writing its own block of the result (no shared writes, no atomics: the result
does not depend on the number of threads).

The logarithm, not the multiply-adds, would dominate (m²N logs for m²NC multiply-adds), so the
clipped coefficients of ``_GROUP`` consecutive samples are multiplied before one log is taken:
Σ ln BCₙ = ln Π BCₙ, and with BCₙ ∈ [1e-12, 1] a product of 24 factors stays ≥ 1e-288, a normal
float64 (no underflow). Rounding of the product adds ≈ 24 ulp, far below the 1e-10 parity bar.
"""

from __future__ import annotations

import numba
import numpy as np

from dynlab.kernels.bhattacharyya._numpy import BC_MIN, mirror, tile_pairs

__all__ = ["TILE_M", "TILE_N", "bhattacharyya_matrix"]

TILE_M = 64
TILE_N = 240
_GROUP = 24  # 1e-12 ** 24 = 1e-288 > 2.2e-308: the product of a group never underflows


@numba.njit(parallel=True, cache=True)
def _sqrt_rows(x, n0, n1, out):  # pragma: no cover - compiled
    """out[n − n0, i, c] = √x[i, n, c] (float64), for n in [n0, n1)."""
    m, _, c = x.shape
    for i in numba.prange(m):
        for n in range(n0, n1):
            for k in range(c):
                out[n - n0, i, k] = np.sqrt(np.float64(x[i, n, k]))


@numba.njit(parallel=True, cache=True)
def _sqrt_cols(x, n0, n1, out):  # pragma: no cover - compiled
    """out[n − n0, c, j] = √x[j, n, c] (float64), for n in [n0, n1): columns contiguous."""
    m, _, c = x.shape
    for n in numba.prange(n0, n1):
        for j in range(m):
            for k in range(c):
                out[n - n0, k, j] = np.sqrt(np.float64(x[j, n, k]))


@numba.njit(parallel=True, cache=True)
def _accumulate(sa, sb, tn, pairs, out):  # pragma: no cover - compiled
    """out[i, j] −= Σ_{n < tn} ln clip(Σ_c sa[n, i, c]·sb[n, c, j]) over the tiles in ``pairs``.

    Four rows at a time share each load of sb (a 4 × tile register block; the jj loops vectorise)."""
    c_dim = sa.shape[2]
    for t in numba.prange(pairs.shape[0]):
        i0, i1, j0, j1 = pairs[t, 0], pairs[t, 1], pairs[t, 2], pairs[t, 3]
        ti, tj = i1 - i0, j1 - j0
        prod = np.ones((ti, tj))
        bc = np.empty((4, tj))
        for n in range(tn):
            for ib in range(0, ti, 4):
                rows = min(4, ti - ib)
                bc[:] = 0.0
                for c in range(c_dim):
                    b_row = sb[n, c, j0:j1]
                    if rows == 4:
                        a0, a1 = sa[n, i0 + ib, c], sa[n, i0 + ib + 1, c]
                        a2, a3 = sa[n, i0 + ib + 2, c], sa[n, i0 + ib + 3, c]
                        for jj in range(tj):
                            b = b_row[jj]
                            bc[0, jj] += a0 * b
                            bc[1, jj] += a1 * b
                            bc[2, jj] += a2 * b
                            bc[3, jj] += a3 * b
                    else:
                        for r in range(rows):
                            a = sa[n, i0 + ib + r, c]
                            for jj in range(tj):
                                bc[r, jj] += a * b_row[jj]
                for r in range(rows):
                    p_row = prod[ib + r]
                    for jj in range(tj):
                        p_row[jj] *= min(max(bc[r, jj], BC_MIN), 1.0)
            if (n + 1) % _GROUP == 0 or n == tn - 1:
                for ii in range(ti):
                    for jj in range(tj):
                        out[i0 + ii, j0 + jj] -= np.log(prod[ii, jj])
                        prod[ii, jj] = 1.0


def bhattacharyya_matrix(P: np.ndarray, Q: np.ndarray | None = None, *, tile_m: int = TILE_M,
                         tile_n: int = TILE_N) -> np.ndarray:
    """(m, m′) float64 d_B of ``P`` (m, N, C) against ``Q`` (m′, N, C) or itself (then exactly
    symmetric, zero diagonal); see ``_numpy.bhattacharyya_matrix``. Inputs are assumed validated
    (float32 or float64, C-contiguous)."""
    symmetric = Q is None
    Q = P if Q is None else Q
    m, n, c = P.shape
    m2 = Q.shape[0]
    pairs = np.array(tile_pairs(m, m2, tile_m, symmetric), dtype=np.int64).reshape(-1, 4)
    out = np.zeros((m, m2))
    tn_max = min(tile_n, n)
    sa = np.empty((tn_max, m, c))
    sb = np.empty((tn_max, c, m2))
    for n0 in range(0, n, tile_n):
        n1 = min(n0 + tile_n, n)
        _sqrt_rows(P, n0, n1, sa)
        _sqrt_cols(Q, n0, n1, sb)
        _accumulate(sa, sb, n1 - n0, pairs, out)
    out /= n
    return mirror(out) if symmetric else out
