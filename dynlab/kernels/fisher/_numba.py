"""numba (CPU, parallel) Fisher–Rao kernels: histograms on fixed edges and the distance matrix.

Same results as the numpy reference (``_numpy.py``): counts exactly, distances up to summation
order. Work is split into items of at most ``_CHUNK`` values of one snapshot, each counted into its
own private row (no shared writes, no atomics), then the items of a snapshot are summed; so one
huge snapshot and many small ones both use every thread, and the result does not depend on the
number of threads.

Histograms bin an item ``_BATCH`` values at a time in two loops: first guesses for the whole batch
(branch-free, vectorised; for float32 values in float32 arithmetic where :func:`guard_band32`
allows it, twice the lanes), then the increments. A single loop that computes a bin and increments
it at once is 2–2.5 × slower here: the CPU cannot start the next value's load-add-store before the
previous increment's address is known, since two increments may hit the same count.
``histogram_counts_pair`` bins one batch on two sets of edges (the per-layer and the pooled
histogram of ``fisher-velocity``) while it is in cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numba
import numpy as np

__all__ = ["distance_matrix", "histogram_accumulate", "histogram_counts", "histogram_counts_pair",
           "is_uniform", "leave_a_core", "row_moments"]

_CHUNK = 1 << 17
_BATCH = 1024  # values binned at a time within an item (two int64 buffers in L1)
_SQRT2 = np.sqrt(2.0)


@contextlib.contextmanager
def leave_a_core() -> Iterator[None]:
    """Within the context, the kernels called from this thread run on one thread fewer than numba's
    pool (at least one): the core left over is the block reader's (``dynlab.analyzers._blocks``
    reads the next block while these count the current one). numba's thread count is per calling
    thread, so other threads are unaffected. Why: a kernel splits its items evenly between its
    threads, and when the reader takes one thread's core the others wait at the end of the call.
    On 2 cores, counting a 4.6 GB run took 4.59 s on one thread against 4.98 s on two
    (docs/benchmarks.md, "fisher-velocity end to end")."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, before - 1))
    try:
        yield
    finally:
        numba.set_num_threads(before)


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


def guard_band32(edges: np.ndarray, band: float) -> float:
    """The guard band for guesses computed in float32 (float32 values only): ``band`` widened by
    a bound on how far float32's f = (x − ê_0)·ŝ, ê_0 and ŝ the float32 roundings of e_0 and
    B/(e_B − e_0), may lie from float64's f, where ``band`` holds. Four roundings of relative
    size ≤ 2⁻²⁴ — of e_0 (absolute |e_0|·s·2⁻²⁴ in f), the difference, the scale and the product
    (each ≤ B·2⁻²⁴ where a guess is taken, 0 < f < B − 1) — bounded with a factor 4 to spare:
    2⁻²² (|e_0|·s + B + 1). 0.5 (never use the float32 guesses) when that leaves less than half
    of every bin certain: a range far from 0 for its width, or more than ~2²¹ bins."""
    nbins = len(edges) - 1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lo = float(edges[0])
        scale = nbins / (float(edges[-1]) - lo)
        widened = band + 2.0 ** -22 * (abs(lo) * scale + nbins + 1)
        representable = abs(lo) < 1e38 and scale < 1e38  # finite in float32
    return widened if representable and np.isfinite(widened) and widened < 0.25 else 0.5


@numba.njit(nogil=True, cache=True, inline="always")
def _grid(edges):  # pragma: no cover (jit)
    """(e_0, B/(e_B − e_0), B − 1): the uniform grid of ``edges`` the guesses use."""
    nbins = edges.shape[0] - 1
    lo = edges[0]
    return lo, nbins / (edges[nbins] - lo), np.float64(nbins - 1)


@numba.njit(nogil=True, cache=True, inline="always")
def _guesses(values, uniform, lo, scale, top, band, idx):  # pragma: no cover (jit)
    """idx[i] = ⌊f⌋, f = (x_i − e_0)·scale, for a value certainly in that bin — 0 < f < B−1 and
    f farther than ``band`` from an integer (:func:`guard_band`) — else −1 (NaN, ±inf, outside,
    near an edge, or edges that are not uniform: :func:`_exact` decides). Branch-free, so LLVM
    vectorises it."""
    if not uniform:
        idx[:values.shape[0]] = -1
        return
    high = 1.0 - band
    for i in range(values.shape[0]):
        f = (np.float64(values[i]) - lo) * scale
        inside = (f > 0.0) & (f < top)  # False for NaN and ±inf too
        f = f if inside else 0.0  # int() of NaN or ±inf is undefined
        j = np.int64(f)
        r = f - j
        idx[i] = j if inside & (r > band) & (r < high) else -1


@numba.njit(nogil=True, cache=True, inline="always")
def _guesses32(values, lo, scale, top, band, idx):  # pragma: no cover (jit)
    """:func:`_guesses` in float32 arithmetic on float32 ``values`` into int32 ``idx`` (twice the
    lanes of float64, and float32 → int32 conversion vectorises where float64 → int64 does not
    without AVX-512): ``lo``, ``scale``, ``top`` are float32 and ``band`` is
    :func:`guard_band32`, which covers the float32 rounding."""
    high = np.float32(1.0) - band
    zero = np.float32(0.0)
    for i in range(values.shape[0]):
        f = (values[i] - lo) * scale
        inside = (f > zero) & (f < top)  # False for NaN and ±inf too
        f = f if inside else zero
        j = np.int32(f)
        r = f - np.float32(j)
        idx[i] = j if inside & (r > band) & (r < high) else np.int32(-1)


@numba.njit(nogil=True, cache=True, inline="always")
def _grid32(edges, band32):  # pragma: no cover (jit)
    """:func:`_grid` rounded to float32, and the float32 guard band."""
    lo, scale, top = _grid(edges)
    return np.float32(lo), np.float32(scale), np.float32(top), np.float32(band32)


@numba.njit(nogil=True, cache=True, inline="always")
def _increment(batch, idx, counts, edges, uniform, lo, scale):  # pragma: no cover (jit)
    """counts[bin of each value] += 1: the guess where there is one, else :func:`_exact`."""
    for i in range(batch.shape[0]):
        k = np.int64(idx[i])
        if k < 0:
            k = _exact(np.float64(batch[i]), edges, uniform, lo, scale)
            if k < 0:  # NaN
                continue
        counts[np.uint64(k)] += 1  # unsigned: no negative-index wraparound


@numba.njit(nogil=True, cache=True, inline="always")
def _increment_pair(batch, idx_a, counts_a, edges_a, uniform_a, lo_a, scale_a,
                    idx_b, counts_b, edges_b, uniform_b, lo_b, scale_b):  # pragma: no cover (jit)
    """:func:`_increment` on two sets of edges in one loop (a NaN is in neither)."""
    for i in range(batch.shape[0]):
        k = np.int64(idx_a[i])
        if k < 0:
            k = _exact(np.float64(batch[i]), edges_a, uniform_a, lo_a, scale_a)
            if k < 0:  # NaN: in neither
                continue
        counts_a[np.uint64(k)] += 1
        k = np.int64(idx_b[i])
        if k < 0:
            k = _exact(np.float64(batch[i]), edges_b, uniform_b, lo_b, scale_b)
        counts_b[np.uint64(k)] += 1


@numba.njit(nogil=True, cache=True, inline="always")
def _exact(x, edges, uniform, lo, scale):  # pragma: no cover (jit)
    """numpy's bin of ``x`` on ``edges``, values outside clipped into the end bins; −1 for NaN.
    Uniform edges: the guess ⌊f⌋ corrected against the edges; others: binary search."""
    nbins = edges.shape[0] - 1
    last = nbins - 1
    if np.isnan(x):
        return np.int64(-1)
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
        return np.int64(k)
    a = 0  # largest k ≤ B−1 with edges[k] ≤ x, or 0
    b = nbins
    while b - a > 1:
        m = (a + b) >> 1
        if x >= edges[m]:
            a = m
        else:
            b = m
    return np.int64(a)


@numba.njit(parallel=True, nogil=True, cache=True)
def _count(flat, item_start, item_stop, row_items, edges, uniform, band, narrow, band32,
           out):  # pragma: no cover (jit)
    """Counts of each row on ``edges`` into ``out`` (rows laid end to end in ``flat``, split into
    items; see the module docstring). Each batch of an item is binned in two loops: the
    vectorised first guesses (:func:`_guesses`; float32 values with ``narrow``:
    :func:`_guesses32`), then the increments, with :func:`_exact` for the values a guess left
    open. (One loop doing both waits on the increments: the next load of a count cannot start
    before the previous increment's address is known.)"""
    nbins = edges.shape[0] - 1
    n_items = item_start.shape[0]
    partial = np.zeros((n_items, nbins), dtype=np.int64)
    lo, scale, top = _grid(edges)
    lo32, scale32, top32, b32 = _grid32(edges, band32)
    for it in numba.prange(n_items):
        counts = partial[it]
        idx = np.empty(_BATCH, dtype=np.int64)
        idx32 = np.empty(_BATCH, dtype=np.int32)
        for a in range(item_start[it], item_stop[it], _BATCH):
            batch = flat[a:min(a + _BATCH, item_stop[it])]
            if narrow:
                _guesses32(batch, lo32, scale32, top32, b32, idx32)
                _increment(batch, idx32, counts, edges, uniform, lo, scale)
            else:
                _guesses(batch, uniform, lo, scale, top, band, idx)
                _increment(batch, idx, counts, edges, uniform, lo, scale)
    for t in numba.prange(out.shape[0]):
        for it in range(row_items[t], row_items[t + 1]):
            for b in range(nbins):
                out[t, b] += partial[it, b]


@numba.njit(parallel=True, nogil=True, cache=True)
def _count_pair(flat, item_start, item_stop, row_items, narrow,
                edges_a, uniform_a, band_a, band32_a, out_a,
                edges_b, uniform_b, band_b, band32_b, out_b):  # pragma: no cover (jit)
    """:func:`_count` on two sets of edges at once: each batch is read from memory once, binned
    on both (the values are in cache for the second), and both counts are incremented in one loop."""
    nbins_a = edges_a.shape[0] - 1
    nbins_b = edges_b.shape[0] - 1
    n_items = item_start.shape[0]
    partial_a = np.zeros((n_items, nbins_a), dtype=np.int64)
    partial_b = np.zeros((n_items, nbins_b), dtype=np.int64)
    lo_a, scale_a, top_a = _grid(edges_a)
    lo_b, scale_b, top_b = _grid(edges_b)
    lo32_a, scale32_a, top32_a, b32_a = _grid32(edges_a, band32_a)
    lo32_b, scale32_b, top32_b, b32_b = _grid32(edges_b, band32_b)
    for it in numba.prange(n_items):
        counts_a = partial_a[it]
        counts_b = partial_b[it]
        idx_a = np.empty(_BATCH, dtype=np.int64)
        idx_b = np.empty(_BATCH, dtype=np.int64)
        idx32_a = np.empty(_BATCH, dtype=np.int32)
        idx32_b = np.empty(_BATCH, dtype=np.int32)
        for a in range(item_start[it], item_stop[it], _BATCH):
            batch = flat[a:min(a + _BATCH, item_stop[it])]
            if narrow:
                _guesses32(batch, lo32_a, scale32_a, top32_a, b32_a, idx32_a)
                _guesses32(batch, lo32_b, scale32_b, top32_b, b32_b, idx32_b)
                _increment_pair(batch, idx32_a, counts_a, edges_a, uniform_a, lo_a, scale_a,
                                idx32_b, counts_b, edges_b, uniform_b, lo_b, scale_b)
            else:
                _guesses(batch, uniform_a, lo_a, scale_a, top_a, band_a, idx_a)
                _guesses(batch, uniform_b, lo_b, scale_b, top_b, band_b, idx_b)
                _increment_pair(batch, idx_a, counts_a, edges_a, uniform_a, lo_a, scale_a,
                                idx_b, counts_b, edges_b, uniform_b, lo_b, scale_b)
    for t in numba.prange(out_a.shape[0]):
        for it in range(row_items[t], row_items[t + 1]):
            for b in range(nbins_a):
                out_a[t, b] += partial_a[it, b]
            for b in range(nbins_b):
                out_b[t, b] += partial_b[it, b]


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


def _bands(flat: np.ndarray, edges: np.ndarray) -> tuple[bool, float, float]:
    """(uniform, the float64 guard band, the float32 one) of ``edges`` (0.5: no guesses)."""
    uniform = is_uniform(edges)
    band = guard_band(edges) if uniform else 0.5
    band32 = guard_band32(edges, band) if uniform and flat.dtype == np.float32 else 0.5
    return uniform, band, band32


def _count_rows(flat: np.ndarray, lengths: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    start, stop, row_items = _items(np.asarray(lengths, dtype=np.int64))
    uniform, band, band32 = _bands(flat, edges)
    _count(flat, start, stop, row_items, edges, uniform, band, band32 < 0.5, band32, out)


def histogram_counts(samples: np.ndarray | Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Counts (T, B) int64, as :func:`dynlab.kernels.fisher._numpy.histogram_counts`."""
    out = np.zeros((len(samples), len(edges) - 1), dtype=np.int64)
    if isinstance(samples, np.ndarray) and samples.ndim == 2:
        _count_rows(_flat(samples), np.full(len(samples), samples.shape[1]), edges, out)
    else:
        for t, row in enumerate(samples):
            histogram_accumulate(out[t], row, edges)
    return out


def _count_rows_pair(flat: np.ndarray, lengths: np.ndarray, edges_a: np.ndarray, out_a: np.ndarray,
                     edges_b: np.ndarray, out_b: np.ndarray) -> None:
    start, stop, row_items = _items(np.asarray(lengths, dtype=np.int64))
    uniform_a, band_a, band32_a = _bands(flat, edges_a)
    uniform_b, band_b, band32_b = _bands(flat, edges_b)
    narrow = band32_a < 0.5 and band32_b < 0.5  # float32 guesses on both, or on neither
    _count_pair(flat, start, stop, row_items, narrow,
                edges_a, uniform_a, band_a, band32_a, out_a,
                edges_b, uniform_b, band_b, band32_b, out_b)


def histogram_counts_pair(samples: np.ndarray | Sequence[np.ndarray], edges_a: np.ndarray,
                          edges_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts on two sets of edges, as :func:`dynlab.kernels.fisher._numpy.histogram_counts_pair`,
    in one pass over ``samples``: each value is read from memory once and binned on both."""
    out_a = np.zeros((len(samples), len(edges_a) - 1), dtype=np.int64)
    out_b = np.zeros((len(samples), len(edges_b) - 1), dtype=np.int64)
    if isinstance(samples, np.ndarray) and samples.ndim == 2:
        _count_rows_pair(_flat(samples), np.full(len(samples), samples.shape[1]), edges_a, out_a,
                         edges_b, out_b)
    else:
        for t, row in enumerate(samples):
            flat = _flat(row)
            _count_rows_pair(flat, np.array([flat.size]), edges_a, out_a[t:t + 1], edges_b,
                             out_b[t:t + 1])
    return out_a, out_b


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
