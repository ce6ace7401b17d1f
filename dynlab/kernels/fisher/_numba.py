"""numba (CPU, parallel) Fisher–Rao kernels: histograms on fixed edges and the distance matrix.

Same results as the numpy reference (``_numpy.py``): counts exactly, distances up to summation
order. Work is split into items of at most ``_CHUNK`` values of one snapshot, each counted into its
own private row (no shared writes, no atomics), then the items of a snapshot are summed; so one
huge snapshot and many small ones both use every thread, and the result does not depend on the
number of threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

__all__ = ["distance_matrix", "histogram_accumulate", "histogram_counts", "is_uniform", "row_moments"]

_CHUNK = 1 << 17
_SQRT2 = np.sqrt(2.0)


def is_uniform(edges: np.ndarray) -> bool:
    """Whether the fast path's first guess floor((x − e_0)·B/(e_B − e_0)) is within a bin of the
    answer: bin widths equal to 1e-6 of a width, and a finite scale B/(e_B − e_0). (The guess is
    corrected against ``edges`` either way, so this only decides speed, never the counts; but a
    scale that overflows — subnormal widths — would make the guess NaN, whose int is undefined.)"""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # edges near ±1e308 or 0
        widths = np.diff(edges)
        mean = (edges[-1] - edges[0]) / len(widths)
        scale = len(widths) / (edges[-1] - edges[0])
    return bool(np.isfinite(mean) and np.isfinite(scale)
                and np.all(np.abs(widths - mean) <= 1e-6 * mean))


def guard_band(edges: np.ndarray) -> float:
    """How far the uniform grid f = (x − e_0)·B/(e_B − e_0) may put an edge from an integer:
    max_k |f(e_k) − k|, plus 1e-9 for the rounding of f itself (≈ 1e-16·B). A value whose f has a
    fractional part farther than this from 0 and 1 is certainly in bin ⌊f⌋: no comparison with
    the edges is needed."""
    nbins = len(edges) - 1
    with np.errstate(over="ignore", invalid="ignore"):
        f = (edges - edges[0]) * (nbins / (edges[-1] - edges[0]))
        band = float(np.max(np.abs(f - np.arange(nbins + 1)))) + 1e-9
    return band if np.isfinite(band) and band < 0.25 else 0.5  # 0.5: never take the shortcut


@numba.njit(parallel=True, nogil=True, cache=True)
def _count(flat, item_start, item_stop, row_items, edges, uniform, band, out):  # pragma: no cover
    nbins = edges.shape[0] - 1
    n_items = item_start.shape[0]
    partial = np.zeros((n_items, nbins), dtype=np.int64)
    lo = edges[0]
    scale = nbins / (edges[nbins] - lo)
    last = nbins - 1
    top = np.float64(last)
    for it in numba.prange(n_items):
        counts = partial[it]
        for i in range(item_start[it], item_stop[it]):
            x = np.float64(flat[i])
            if uniform:
                f = (x - lo) * scale
                if f > 0.0 and f < top:  # False for NaN and ±inf too
                    j = np.uint64(f)  # unsigned: no negative-index wraparound in the hot path
                    r = f - j
                    if r > band and r < 1.0 - band:  # far from both edges: bin ⌊f⌋ for sure
                        counts[j] += 1
                        continue
            if np.isnan(x):
                continue
            if uniform:
                f = (x - lo) * scale  # clipped in floating point first: int() of ±inf is undefined
                if f < 0.0:
                    f = 0.0
                elif f > last:
                    f = last
                k = int(f)
                while k > 0 and x < edges[k]:
                    k -= 1
                while k < last and x >= edges[k + 1]:
                    k += 1
            else:  # largest k ≤ B−1 with edges[k] ≤ x, or 0
                a = 0
                b = nbins
                while b - a > 1:
                    m = (a + b) >> 1
                    if x >= edges[m]:
                        a = m
                    else:
                        b = m
                k = a
            counts[k] += 1
    for t in numba.prange(out.shape[0]):
        for it in range(row_items[t], row_items[t + 1]):
            for b in range(nbins):
                out[t, b] += partial[it, b]


def _items(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows of ``lengths`` laid end to end into items of ≤ _CHUNK values: (start, stop, the
    first item of each row (T+1,))."""
    per_row = -(-lengths // _CHUNK)
    row_items = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    row = np.repeat(np.arange(len(lengths)), per_row)
    within = np.arange(row_items[-1]) - row_items[row]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    start = offsets[row] + within * _CHUNK
    stop = np.minimum(start + _CHUNK, offsets[row + 1])
    return start.astype(np.int64), stop.astype(np.int64), row_items


def _flat(values: np.ndarray) -> np.ndarray:
    """Contiguous 1-D float32 or float64 (one compiled specialisation each)."""
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    return np.ascontiguousarray(values).reshape(-1)


def _count_rows(flat: np.ndarray, lengths: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    start, stop, row_items = _items(np.asarray(lengths, dtype=np.int64))
    uniform = is_uniform(edges)
    _count(flat, start, stop, row_items, edges, uniform, guard_band(edges) if uniform else 0.5, out)


def histogram_counts(samples: np.ndarray | Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Counts (T, B) int64, as :func:`dynlab.kernels.fisher._numpy.histogram_counts`."""
    out = np.zeros((len(samples), len(edges) - 1), dtype=np.int64)
    if isinstance(samples, np.ndarray) and samples.ndim == 2:
        _count_rows(_flat(samples), np.full(len(samples), samples.shape[1]), edges, out)
    else:
        for t, row in enumerate(samples):
            histogram_accumulate(out[t], row, edges)
    return out


def histogram_accumulate(counts: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add the counts of one chunk of ``values`` (any shape) into ``counts`` (B,) in place."""
    flat = _flat(values)
    out = np.zeros((1, len(edges) - 1), dtype=np.int64)
    _count_rows(flat, np.array([flat.size]), edges, out)
    counts += out[0]
    return counts


@numba.njit(parallel=True, nogil=True, cache=True)
def _moments(flat, item_start, item_stop, row_items, out):  # pragma: no cover (jit)
    n_items = item_start.shape[0]
    part = np.empty((n_items, 4))  # finite lo, finite hi, mean, m2 of each item
    for it in numba.prange(n_items):
        a, b = item_start[it], item_stop[it]
        lo, hi, s = np.inf, -np.inf, 0.0
        shift = np.float64(flat[a])  # summing x − x_a: a plain sum keeps its digits under an offset
        if not np.isfinite(shift):
            shift = 0.0
        for i in range(a, b):
            x = np.float64(flat[i])
            s += x - shift
            if np.isfinite(x):
                lo = min(lo, x)
                hi = max(hi, x)
        mean = shift + s / (b - a)
        m2 = 0.0
        for i in range(a, b):  # two passes over an item that sits in cache: no cancellation
            d = np.float64(flat[i]) - mean
            m2 += d * d
        part[it, 0], part[it, 1], part[it, 2], part[it, 3] = lo, hi, mean, m2
    for t in numba.prange(out.shape[0]):
        lo, hi, n, mean, m2 = np.inf, -np.inf, 0.0, 0.0, 0.0
        for it in range(row_items[t], row_items[t + 1]):
            lo = min(lo, part[it, 0])
            hi = max(hi, part[it, 1])
            nb = np.float64(item_stop[it] - item_start[it])
            if n == 0.0:
                n, mean, m2 = nb, part[it, 2], part[it, 3]
            else:  # Chan et al.: see _numpy.combine_moments
                delta = part[it, 2] - mean
                total = n + nb
                mean += delta * nb / total
                m2 += part[it, 3] + delta * delta * n * nb / total
                n = total
        if lo > hi:
            lo, hi = np.nan, np.nan
        out[t, 0], out[t, 1], out[t, 2], out[t, 3] = lo, hi, mean, m2


def row_moments(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, mean, m2)`` per row, as :func:`dynlab.kernels.fisher._numpy.row_moments`
    (equal up to summation order)."""
    samples = np.asarray(samples)
    start, stop, row_items = _items(np.full(len(samples), samples.shape[1], dtype=np.int64))
    out = np.empty((len(samples), 4))
    _moments(_flat(samples), start, stop, row_items, out)
    return out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy(), out[:, 3].copy()


@numba.njit(parallel=True, nogil=True, cache=True)
def _pairwise(u, sqrt2):  # pragma: no cover (jit)
    n, nbins = u.shape
    out = np.zeros((n, n))
    for i in numba.prange(n):
        for j in range(i + 1, n):
            s = 0.0
            for b in range(nbins):
                d = u[i, b] - u[j, b]
                s += d * d
            h = np.sqrt(s)
            if h > sqrt2:
                h = sqrt2
            v = 4.0 * np.arcsin(0.5 * h)
            out[i, j] = v
            out[j, i] = v
    return out


def distance_matrix(pdfs: np.ndarray) -> np.ndarray:
    """(T, T) Fisher–Rao distances, as :func:`dynlab.kernels.fisher._numpy.distance_matrix`."""
    u = np.ascontiguousarray(np.sqrt(np.asarray(pdfs, dtype=np.float64)))
    out = _pairwise(u, _SQRT2)
    np.fill_diagonal(out, np.where(np.isnan(u).any(axis=1), np.nan, 0.0))
    return out
