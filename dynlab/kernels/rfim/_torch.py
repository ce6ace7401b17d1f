"""torch RFIM quadratic form, device-agnostic: the GPU path (run on CPU in the tests). Same results
as ``_numpy.py`` up to summation order.

Everything runs on the device of ``X`` when it is a tensor, else on ``device`` (default CPU), in
float64. Blocks of (steps × samples) with at most ``chunk`` rows in all are moved there at a time,
δz and a are one batched matrix product each, and Λ is applied in the numerically safe forms of
``_numpy.py``; device memory is O(chunk · H_out) besides the weights. The result comes back as a
float64 numpy array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dynlab.errors import require

__all__ = ["CHUNK", "quadratic"]

CHUNK = 8192  # rows (step, sample) per block


def _on(x: Any, device: Any, rows: tuple[slice, ...] = ()):
    """x[rows] as a float64 tensor on ``device`` (numpy slices are copied, tensors moved)."""
    torch = require("torch", "torch")
    part = x[rows] if rows else x
    if not isinstance(part, torch.Tensor):
        part = np.ascontiguousarray(part)
        if not part.flags.writeable:  # torch warns on read-only memory
            part = part.copy()
        part = torch.from_numpy(part)
    return part.to(device=device, dtype=torch.float64)


def _sech2(a):
    e = (-2.0 * a.abs()).exp()
    return 4.0 * e / (1.0 + e) ** 2


def _per_sample(dz, a, output: str, noise: float, damping: float):
    """δzᵀ Λ(a) δz over the last axis of ``dz`` and ``a`` (..., H_out)."""
    sq = dz * dz
    if output == "linear":
        return sq.sum(-1) / noise**2
    if output == "relu":
        return (sq * (a > 0)).sum(-1) / noise**2
    if output == "sigmoid":
        return (0.25 * _sech2(0.5 * a) * sq).sum(-1)
    if output == "tanh":
        return (_sech2(a) * sq).sum(-1)
    eta = a.softmax(dim=-1)
    centred = dz - (eta * dz).sum(-1, keepdim=True)
    return (eta * centred * centred).sum(-1) + damping * sq.sum(-1)


def quadratic(dW: Any, X: Any, W: Any, db: Any, b: Any, output: str, noise: float, damping: float,
              chunk: int = CHUNK, device: Any = None) -> np.ndarray:
    """(T,) float64, as :func:`dynlab.kernels.rfim._numpy.quadratic`; numpy arrays or tensors."""
    torch = require("torch", "torch")
    if isinstance(X, torch.Tensor):
        device = X.device
    device = torch.device(device if device is not None else "cpu")
    T, N, _ = X.shape
    nb = min(N, chunk)
    tb = max(1, chunk // nb)
    total = torch.zeros(T, dtype=torch.float64, device=device)
    with torch.no_grad():
        for t0 in range(0, T, tb):
            ts = slice(t0, t0 + tb)
            dwt = _on(dW, device, (ts,)).transpose(1, 2)  # (tb, H_in, H_out)
            wt = None if output == "linear" else _on(W, device, (ts,)).transpose(1, 2)
            dbt = None if db is None else _on(db, device, (ts,)).unsqueeze(1)
            bt = None if b is None or output == "linear" else _on(b, device, (ts,)).unsqueeze(1)
            for n0 in range(0, N, nb):
                x = _on(X, device, (ts, slice(n0, n0 + nb)))  # (tb, nb, H_in)
                dz = torch.bmm(x, dwt)
                if dbt is not None:
                    dz += dbt
                a = None
                if wt is not None:
                    a = torch.bmm(x, wt)
                    if bt is not None:
                        a += bt
                total[ts] += _per_sample(dz, a, output, noise, damping).sum(-1)
    return (total / N).cpu().numpy()
