"""torch Fisher–Rao kernels, device-agnostic: the GPU path (run on CPU in the tests).

Everything is computed on one device: that of the input tensor, else the ``device`` argument
(default CPU). Inputs are moved there chunk by chunk (at most ``chunk`` values at a time, in
float64: float32 → float64 is exact, so comparisons with the float64 edges are numpy's), so memory
on the device stays bounded by the chunk, the counts and the edges. Results come back as numpy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from dynlab.errors import require

__all__ = ["distance_matrix", "histogram_accumulate", "histogram_counts", "histogram_counts_pair",
           "leave_a_core", "row_moments"]

_CHUNK = 1 << 22
_ROWS = 256  # rows of the distance matrix computed at once


def _torch():
    return require("torch", "torch")


def leave_a_core() -> contextlib.AbstractContextManager[None]:
    """The numba backend's thread limit beside a block reader (``_numba.leave_a_core``); nothing
    here: torch's thread count is the whole process's, not the calling thread's, so it is left
    alone (and on a GPU the device does the counting)."""
    return contextlib.nullcontext()


def _device(data: Any, device: Any) -> Any:
    torch = _torch()
    if isinstance(data, torch.Tensor):
        return data.device
    if isinstance(data, Sequence) and len(data) and isinstance(data[0], torch.Tensor):
        return data[0].device
    return torch.device(device if device is not None else "cpu")


def _as_tensor(values: Any, device: Any):
    """float64 tensor on ``device`` (numpy float16/ints converted on the way)."""
    torch = _torch()
    if not isinstance(values, torch.Tensor):
        values = np.ascontiguousarray(values)
        if not values.flags.writeable:  # torch warns on read-only memory (zarr reads, broadcasts)
            values = values.copy()
        values = torch.from_numpy(values)
    return values.to(device=device, dtype=torch.float64)


def _add_block(counts, block, edges) -> None:
    """Add the per-row counts of ``block`` (r, n) into ``counts`` (r, B), both on one device.
    NaN goes to an extra slot past the last row, dropped."""
    torch = _torch()
    rows, nbins = block.shape[0], edges.shape[0] - 1
    idx = (torch.bucketize(block, edges, right=True) - 1).clamp_(0, nbins - 1)  # x = e_B → last bin
    idx += torch.arange(rows, device=block.device).unsqueeze(1) * nbins
    idx = torch.where(torch.isnan(block), rows * nbins, idx)
    counts += torch.bincount(idx.reshape(-1), minlength=rows * nbins + 1)[:-1].view(rows, nbins)


def _accumulate(counts, values: Any, edges, chunk: int) -> None:
    """Add the counts of ``values`` (any shape) into the device tensor ``counts`` (B,)."""
    torch = _torch()
    flat = values.reshape(-1) if isinstance(values, torch.Tensor) else np.asarray(values).reshape(-1)
    for s in range(0, flat.shape[0], chunk):
        _add_block(counts.unsqueeze(0), _as_tensor(flat[s:s + chunk], edges.device).unsqueeze(0), edges)


def histogram_counts(samples: Any, edges: np.ndarray, device: Any = None, chunk: int = _CHUNK) -> np.ndarray:
    """Counts (T, B) int64, as :func:`dynlab.kernels.fisher._numpy.histogram_counts`.

    ``samples``: (T, N) numpy array or tensor, or a sequence of 1-D arrays or tensors.
    """
    torch = _torch()
    dev = _device(samples, device)
    e = torch.as_tensor(edges, dtype=torch.float64, device=dev)
    out = torch.zeros((len(samples), len(edges) - 1), dtype=torch.int64, device=dev)
    if getattr(samples, "ndim", 1) == 2 and samples.shape[1] > 0:
        rows = max(1, chunk // samples.shape[1])  # whole rows per block, ≈ chunk values
        if samples.shape[1] <= chunk:
            for s in range(0, len(samples), rows):
                _add_block(out[s:s + rows], _as_tensor(samples[s:s + rows], dev), e)
            return out.cpu().numpy()
    for t in range(len(samples)):
        _accumulate(out[t], samples[t], e, chunk)
    return out.cpu().numpy()


def histogram_counts_pair(samples: Any, edges_a: np.ndarray, edges_b: np.ndarray, device: Any = None,
                          chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Counts on two sets of edges, as :func:`dynlab.kernels.fisher._numpy.histogram_counts_pair`
    (two calls of :func:`histogram_counts`: the interface of the numba backend's single pass)."""
    return (histogram_counts(samples, edges_a, device, chunk),
            histogram_counts(samples, edges_b, device, chunk))


def histogram_accumulate(counts: Any, values: Any, edges: np.ndarray, device: Any = None,
                         chunk: int = _CHUNK) -> Any:
    """Add the counts of ``values`` into ``counts`` (B,) in place and return it.

    ``counts`` may be a numpy int64 array or an int64 tensor (kept on its device: the streaming
    form for a GPU, with no copy back per chunk).
    """
    torch = _torch()
    dev = counts.device if isinstance(counts, torch.Tensor) else _device(values, device)
    e = torch.as_tensor(edges, dtype=torch.float64, device=dev)
    add = torch.zeros(len(edges) - 1, dtype=torch.int64, device=dev)
    _accumulate(add, values, e, chunk)
    if isinstance(counts, torch.Tensor):
        counts += add
    else:
        counts += add.cpu().numpy()
    return counts


def row_moments(samples: Any, device: Any = None, chunk: int = _CHUNK
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, mean, m2)`` per row, as :func:`dynlab.kernels.fisher._numpy.row_moments`:
    blocks of whole rows (≈ ``chunk`` values) moved to the device in float64, and a row longer
    than ``chunk`` in pieces combined exactly (Chan et al.)."""
    from dynlab.kernels.fisher._numpy import combine_moments

    torch = _torch()
    dev = _device(samples, device)
    n_rows, width = samples.shape[0], samples.shape[1]
    lo, hi = np.full(n_rows, np.inf), np.full(n_rows, -np.inf)
    n, mean, m2 = np.zeros(n_rows), np.zeros(n_rows), np.zeros(n_rows)
    rows, cols = max(1, chunk // max(width, 1)), min(width, chunk)
    for r in range(0, n_rows, rows):
        sel = slice(r, r + rows)
        for c in range(0, width, cols):
            x = _as_tensor(samples[sel, c:c + cols], dev)
            finite = torch.isfinite(x)
            lo[sel] = np.fmin(lo[sel], torch.where(finite, x, np.inf).amin(dim=1).cpu().numpy())
            hi[sel] = np.fmax(hi[sel], torch.where(finite, x, -np.inf).amax(dim=1).cpu().numpy())
            mu_b = x.mean(dim=1, keepdim=True)
            m2_b = ((x - mu_b) ** 2).sum(dim=1)
            n[sel], mean[sel], m2[sel] = combine_moments(n[sel], mean[sel], m2[sel], x.shape[1],
                                                         mu_b[:, 0].cpu().numpy(), m2_b.cpu().numpy())
    none = lo > hi
    lo[none] = hi[none] = np.nan
    return lo, hi, mean, m2


def distance_matrix(pdfs: Any, device: Any = None) -> np.ndarray:
    """(T, T) Fisher–Rao distances 4·arcsin(‖√p_i − √p_j‖/2), as the numpy reference.

    ``torch.cdist`` without its matrix-multiplication shortcut (which would cancel digits exactly
    as √P·√Pᵀ does), a block of ``_ROWS`` rows at a time.
    """
    torch = _torch()
    dev = _device(pdfs, device)
    u = torch.sqrt(_as_tensor(pdfs, dev))
    out = torch.empty((u.shape[0], u.shape[0]), dtype=torch.float64, device=dev)
    for s in range(0, u.shape[0], _ROWS):
        h = torch.cdist(u[s:s + _ROWS], u, compute_mode="donot_use_mm_for_euclid_dist")
        out[s:s + _ROWS] = 4.0 * torch.arcsin(0.5 * h.clamp(max=np.sqrt(2.0)))
    return out.cpu().numpy()
