"""numba (CPU, parallel) per-sample Bhattacharyya distance matrix; same results as ``_numpy.py``
up to summation order (and fused multiply-adds).

For each block of ``tile_n`` samples, √P (and √Q) is computed once for all checkpoints (in
float64; the classes padded with zeros to a multiple of ``_K`` = 5, which adds exact zeros); √Q is
laid out (samples, classes, checkpoints) so the innermost loop runs over contiguous columns and
vectorises. The checkpoint tiles (``tile_m`` rows × 4·``tile_m`` columns: long vector loops; for a
symmetric matrix only those reaching the upper triangle, each row starting at the diagonal) are
spread over threads, each writing its own block of the result (no shared writes, no atomics: the
result does not depend on the number of threads).

Inside a tile (a register block): 4 rows × 5 classes of √P are held in 20 scalars while a vector
of columns runs through 20 multiply-adds per 5 loads of √Q, so each load and store of a partial
sum serves 5 multiply-adds; the last 5 classes clip and multiply into the running product in the
same loop. The function is compiled with ``fastmath={"contract"}`` only: a·b + c may become one
fused multiply-add (one rounding instead of two); nothing else is relaxed (no reassociation, no
approximate log).

The logarithm, not the multiply-adds, would dominate (m²N logs for m²NC multiply-adds), so the
clipped coefficients are multiplied instead: Σ ln BCₙ = ln Π BCₙ. With BCₙ ∈ [1e-12, 1] a product
of ``_GROUP`` = 24 factors stays ≥ 1e-288, a normal float64 (no underflow); after each group the
product is split exactly into its mantissa (kept, in [1, 2)) and its binary exponent (added to an
integer), so one log per pair and block of samples remains: ln Π = ln mantissa + exponent · ln 2.
Rounding of the product adds ≈ 24 ulp per group, far below the 1e-10 parity bar.
"""

from __future__ import annotations

import numba
import numpy as np

from dynlab.kernels.bhattacharyya._numpy import BC_MIN, mirror, tile_pairs

__all__ = ["TILE_M", "TILE_N", "bhattacharyya_matrix"]

TILE_M = 64
TILE_N = 240
_GROUP = 24  # 1e-12 ** 24 = 1e-288 > 2.2e-308: the product of a group never underflows
_K = 5  # classes per register block (the kernel below is written out for 5)
_WIDE = 4  # tiles are tile_m rows × 4·tile_m columns: long vector loops over columns
_MANTISSA = (1 << 52) - 1  # float64 bits: sign (0 here), 11 exponent bits (bias 1023), 52 mantissa bits
_ONE = 1023 << 52  # exponent bits of 1.0
_LN2 = np.log(2.0)


@numba.njit(parallel=True, cache=True)
def _sqrt_block(x, y, n0, n1, sa, sb):  # pragma: no cover - compiled
    """sa[n − n0, i, c] = √x[i, n, c] and sb[n − n0, c, j] = √y[j, n, c] (float64, columns of sb
    contiguous), for n in [n0, n1); padding classes untouched. One parallel region per block."""
    c_dim = x.shape[2]
    for n in numba.prange(n0, n1):
        for i in range(x.shape[0]):
            for k in range(c_dim):
                sa[n - n0, i, k] = np.sqrt(np.float64(x[i, n, k]))
        for j in range(y.shape[0]):
            for k in range(c_dim):
                sb[n - n0, k, j] = np.sqrt(np.float64(y[j, n, k]))


@numba.njit(parallel=True, cache=True, fastmath={"contract"})
def _accumulate(sa, sb, tn, pairs, symmetric, out):  # pragma: no cover - compiled
    """out[i, j] −= Σ_{n < tn} ln clip(Σ_c sa[n, i, c]·sb[n, c, j]) over the tiles in ``pairs``;
    the class axis of sa and sb is padded with zeros to a multiple of 5.

    Per tile, per group of ``_GROUP`` samples: 4 rows at a time, the coefficients of each sample
    are summed 5 classes at a time (20 scalars of sa, 5 vectors of sb): partial sums in ``bc``
    (the first classes write it), and the last classes finish the sums, clip them and
    multiply them into ``prod`` in the same loop. After each group the exponent of ``prod`` moves
    to ``expo``; one log per pair at the end. Leftover rows (tile height not a multiple of 4)
    take a plain loop. With ``symmetric``, each row block starts at the diagonal (the lower
    triangle is overwritten by ``mirror``)."""
    cp = sa.shape[2]
    for t in numba.prange(pairs.shape[0]):
        i0, i1, j0, j1 = pairs[t, 0], pairs[t, 1], pairs[t, 2], pairs[t, 3]
        ti, tj = i1 - i0, j1 - j0
        full = ti - ti % 4
        prod = np.ones((ti, tj))
        bits_2d = prod.view(np.int64)
        expo = np.zeros((ti, tj), dtype=np.int64)
        bc = np.empty((4, tj))
        for g0 in range(0, tn, _GROUP):
            g1 = min(g0 + _GROUP, tn)
            for ib in range(0, full, 4):
                i = i0 + ib
                js = max(0, i - j0) if symmetric else 0  # first column needed by these rows
                jn = j0 + js
                p0, p1, p2, p3 = prod[ib, js:], prod[ib + 1, js:], prod[ib + 2, js:], prod[ib + 3, js:]
                q0, q1, q2, q3 = bc[0, js:], bc[1, js:], bc[2, js:], bc[3, js:]
                for n in range(g0, g1):
                    for c in range(0, cp, 5):
                        a00, a01, a02, a03, a04 = sa[n, i, c], sa[n, i, c + 1], sa[n, i, c + 2], \
                            sa[n, i, c + 3], sa[n, i, c + 4]
                        a10, a11, a12, a13, a14 = sa[n, i + 1, c], sa[n, i + 1, c + 1], \
                            sa[n, i + 1, c + 2], sa[n, i + 1, c + 3], sa[n, i + 1, c + 4]
                        a20, a21, a22, a23, a24 = sa[n, i + 2, c], sa[n, i + 2, c + 1], \
                            sa[n, i + 2, c + 2], sa[n, i + 2, c + 3], sa[n, i + 2, c + 4]
                        a30, a31, a32, a33, a34 = sa[n, i + 3, c], sa[n, i + 3, c + 1], \
                            sa[n, i + 3, c + 2], sa[n, i + 3, c + 3], sa[n, i + 3, c + 4]
                        b0, b1, b2 = sb[n, c, jn:j1], sb[n, c + 1, jn:j1], sb[n, c + 2, jn:j1]
                        b3, b4 = sb[n, c + 3, jn:j1], sb[n, c + 4, jn:j1]
                        if c + 5 < cp:  # not the last classes: partial sums into bc
                            if c == 0:
                                for jj in range(tj - js):
                                    x0, x1, x2, x3, x4 = b0[jj], b1[jj], b2[jj], b3[jj], b4[jj]
                                    q0[jj] = a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3 + a04 * x4
                                    q1[jj] = a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3 + a14 * x4
                                    q2[jj] = a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3 + a24 * x4
                                    q3[jj] = a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3 + a34 * x4
                            else:
                                for jj in range(tj - js):
                                    x0, x1, x2, x3, x4 = b0[jj], b1[jj], b2[jj], b3[jj], b4[jj]
                                    q0[jj] = q0[jj] + a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3 + a04 * x4
                                    q1[jj] = q1[jj] + a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3 + a14 * x4
                                    q2[jj] = q2[jj] + a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3 + a24 * x4
                                    q3[jj] = q3[jj] + a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3 + a34 * x4
                        else:  # the last classes: finish BC, clip, multiply into prod
                            if c == 0:
                                bc[:, js:] = 0.0
                            for jj in range(tj - js):
                                x0, x1, x2, x3, x4 = b0[jj], b1[jj], b2[jj], b3[jj], b4[jj]
                                s0 = q0[jj] + a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3 + a04 * x4
                                s1 = q1[jj] + a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3 + a14 * x4
                                s2 = q2[jj] + a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3 + a24 * x4
                                s3 = q3[jj] + a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3 + a34 * x4
                                p0[jj] *= min(max(s0, BC_MIN), 1.0)
                                p1[jj] *= min(max(s1, BC_MIN), 1.0)
                                p2[jj] *= min(max(s2, BC_MIN), 1.0)
                                p3[jj] *= min(max(s3, BC_MIN), 1.0)
            for ii in range(full, ti):
                p_row = prod[ii]
                for n in range(g0, g1):
                    for jj in range(max(0, i0 + ii - j0) if symmetric else 0, tj):
                        s = 0.0
                        for c in range(cp):
                            s += sa[n, i0 + ii, c] * sb[n, c, j0 + jj]
                        p_row[jj] *= min(max(s, BC_MIN), 1.0)
            for ii in range(ti):  # prod = mantissa · 2^exponent: keep the mantissa in [1, 2)
                for jj in range(tj):
                    bits = bits_2d[ii, jj]
                    expo[ii, jj] += (bits >> 52) - 1023
                    bits_2d[ii, jj] = (bits & _MANTISSA) | _ONE
        for ii in range(ti):
            for jj in range(tj):
                out[i0 + ii, j0 + jj] -= np.log(prod[ii, jj]) + expo[ii, jj] * _LN2


def bhattacharyya_matrix(P: np.ndarray, Q: np.ndarray | None = None, *, tile_m: int = TILE_M,
                         tile_n: int = TILE_N) -> np.ndarray:
    """(m, m′) float64 d_B of ``P`` (m, N, C) against ``Q`` (m′, N, C) or itself (then exactly
    symmetric, zero diagonal); see ``_numpy.bhattacharyya_matrix``. Inputs are assumed validated
    (float32 or float64, C-contiguous)."""
    symmetric = Q is None
    Q = P if Q is None else Q
    m, n, c = P.shape
    m2 = Q.shape[0]
    cp = -(-c // _K) * _K  # zero classes: 0·x adds exactly nothing
    pairs = np.array(tile_pairs(m, m2, tile_m, symmetric, _WIDE * tile_m), dtype=np.int64).reshape(-1, 4)
    out = np.zeros((m, m2))
    tn_max = min(tile_n, n)
    sa = np.zeros((tn_max, m, cp))
    sb = np.zeros((tn_max, cp, m2))
    for n0 in range(0, n, tile_n):
        n1 = min(n0 + tile_n, n)
        _sqrt_block(P, Q, n0, n1, sa, sb)
        _accumulate(sa, sb, n1 - n0, pairs, symmetric, out)
    out /= n
    return mirror(out) if symmetric else out
