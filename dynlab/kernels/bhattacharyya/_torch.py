"""torch per-sample Bhattacharyya distance matrix, device-agnostic: the GPU path (run on CPU in
the tests). Same results as ``_numpy.py`` up to summation order.

Everything runs on the device of ``P`` when it is a tensor, else on ``device`` (default CPU). Blocks
of ``tile_n`` samples of all checkpoints are moved there at a time and their square roots taken
once, in float64; BC of ``tile_m × tile_m`` checkpoints is a batched matrix product (tn, ti, tj),
and the logarithm is taken of the product of up to 24 clipped coefficients (Σ ln = ln Π; no
underflow, see ``_numba.py``), all in float64 (float32 would cost ≈ 1e-7 absolute per sample:
too coarse for the small distances between neighbouring checkpoints). Device memory is bounded
by the tiles. The result comes back as a float64 numpy array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dynlab.errors import require
from dynlab.kernels.bhattacharyya._numpy import BC_MIN, mirror, tile_pairs

__all__ = ["TILE_M", "TILE_N", "bhattacharyya_matrix"]

TILE_M = 128
TILE_N = 24
_GROUP = 24  # 1e-12 ** 24 = 1e-288 > 2.2e-308: the product of a group never underflows


def _block(x: Any, n0: int, n1: int, device: Any):
    """√x[:, n0:n1] as float64 (tn, m, C) on ``device``."""
    torch = require("torch", "torch")
    if not isinstance(x, torch.Tensor):
        part = np.ascontiguousarray(x[:, n0:n1])
        x, n0, n1 = torch.from_numpy(part), 0, part.shape[1]
    x = x[:, n0:n1].to(device=device, dtype=torch.float64)  # may be x itself: no in-place sqrt_
    return x.sqrt().transpose(0, 1)


def bhattacharyya_matrix(P: Any, Q: Any = None, *, tile_m: int = TILE_M, tile_n: int = TILE_N,
                         device: Any = None) -> np.ndarray:
    """(m, m′) float64 d_B of ``P`` (m, N, C) against ``Q`` (m′, N, C) or itself (then exactly
    symmetric, zero diagonal); numpy arrays or tensors. Inputs are assumed validated."""
    torch = require("torch", "torch")
    if isinstance(P, torch.Tensor):
        device = P.device
    device = torch.device(device if device is not None else "cpu")
    symmetric = Q is None
    m, n, _ = P.shape
    m2 = m if symmetric else Q.shape[0]
    out = torch.zeros((m, m2), dtype=torch.float64, device=device)
    pairs = tile_pairs(m, m2, tile_m, symmetric)
    with torch.no_grad():
        for n0 in range(0, n, tile_n):
            n1 = min(n0 + tile_n, n)
            sp = _block(P, n0, n1, device)
            sq = sp if symmetric else _block(Q, n0, n1, device)
            for i0, i1, j0, j1 in pairs:
                bc = torch.bmm(sp[:, i0:i1], sq[:, j0:j1].transpose(1, 2))  # (tn, ti, tj)
                for group in bc.clamp_(BC_MIN, 1.0).split(_GROUP):  # Σ ln BCₙ = ln Π BCₙ
                    out[i0:i1, j0:j1] -= group.prod(dim=0).log_()
    res = (out / n).cpu().numpy()
    return mirror(res) if symmetric else res
