"""numpy reference of the per-sample Bhattacharyya distance matrix (METHODS.md §2, InPCA).

    BCₙ(u, v) = Σ_c √(p_u(c|xₙ) · p_v(c|xₙ))
    d_B(u, v) = (1/N) Σₙ −ln clip(BCₙ(u, v), 1e-12, 1)

(Mao et al., PNAS 2024, arXiv 2305.01604: the "intensive" distance between products of N
categorical distributions.) Tiled: √P is taken once per block of samples for all checkpoints, and
BC is formed for ``tile_m × tile_m`` checkpoints × ``tile_n`` samples at a time by a batched matrix
product, so memory is bounded by the tiles (never (m, m′, N)).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BC_MIN", "TILE_M", "TILE_N", "bhattacharyya_matrix", "tile_pairs"]

BC_MIN = 1e-12
TILE_M = 128
TILE_N = 32


def tile_pairs(m: int, m2: int, tile_m: int, symmetric: bool,
               tile_j: int | None = None) -> list[tuple[int, int, int, int]]:
    """(i0, i1, j0, j1) of every checkpoint tile to compute (``tile_m`` rows × ``tile_j`` columns,
    default square); when ``symmetric`` only the tiles reaching the upper triangle (j1 > i0)."""
    tile_j = tile_j or tile_m
    return [(i0, min(i0 + tile_m, m), j0, min(j0 + tile_j, m2))
            for i0 in range(0, m, tile_m) for j0 in range(0, m2, tile_j)
            if not symmetric or min(j0 + tile_j, m2) > i0]


def mirror(out: np.ndarray) -> np.ndarray:
    """Copy the strict upper triangle onto the lower one and zero the diagonal (in place)."""
    iu = np.triu_indices(out.shape[0], 1)
    out[(iu[1], iu[0])] = out[iu]
    np.fill_diagonal(out, 0.0)
    return out


def bhattacharyya_matrix(P: np.ndarray, Q: np.ndarray | None = None, *, tile_m: int = TILE_M,
                         tile_n: int = TILE_N) -> np.ndarray:
    """(m, m′) float64 d_B between the checkpoints of ``P`` (m, N, C) and ``Q`` (m′, N, C), or of
    ``P`` with itself (then exactly symmetric, zero diagonal). Inputs are assumed validated."""
    symmetric = Q is None
    Q = P if Q is None else Q
    m, n, _ = P.shape
    m2 = Q.shape[0]
    out = np.zeros((m, m2))
    pairs = tile_pairs(m, m2, tile_m, symmetric)
    for n0 in range(0, n, tile_n):
        n1 = min(n0 + tile_n, n)
        sp = np.sqrt(np.asarray(P[:, n0:n1], dtype=np.float64)).transpose(1, 0, 2)  # (tn, m, C)
        sq = sp if symmetric else np.sqrt(np.asarray(Q[:, n0:n1], dtype=np.float64)).transpose(1, 0, 2)
        for i0, i1, j0, j1 in pairs:
            bc = np.matmul(sp[:, i0:i1], sq[:, j0:j1].transpose(0, 2, 1))  # (tn, ti, tj)
            out[i0:i1, j0:j1] -= np.log(np.clip(bc, BC_MIN, 1.0, out=bc), out=bc).sum(axis=0)
    out /= n
    return mirror(out) if symmetric else out
