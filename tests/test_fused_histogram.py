"""``histogram_counts_pair``: one pass over the values, counts on two sets of edges (issue 4).

The fused kernel must give exactly what two separate ``histogram_counts`` calls give, and what
np.histogram gives (values clipped into [e_0, e_B], NaN dropped: the documented rule), on every
backend: values exactly on and beside the edges of either set, NaN and ±inf, empty rows, uniform
and non-uniform edges, edge sets far apart, nested or overlapping, rows longer than the numba
work item. And ``count`` (pass 2 of fisher-velocity), which uses it, still gives np.histogram's
counts per layer and pooled.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynlab.analyzers import _blocks
from dynlab.analyzers import _fisher as fs
from dynlab.kernels import fisher as k
from dynlab.kernels.fisher import _numba
from dynlab.testing import MemoryRun

BACKENDS = ["numpy", "numba", "torch"]


def _np_counts(rows, edges) -> np.ndarray:
    """np.histogram per row of the values clipped into [e_0, e_B], NaN dropped."""
    out = []
    for row in rows:
        x = np.asarray(row, dtype=np.float64).ravel()
        out.append(np.histogram(np.clip(x[~np.isnan(x)], edges[0], edges[-1]), bins=edges)[0])
    return np.array(out, dtype=np.int64).reshape(len(rows), len(edges) - 1)


@st.composite
def edge_sets(draw, lo: float, width: float) -> np.ndarray:
    """Strictly increasing float64 edges over [lo, lo + width]: uniform (linspace, the analyzer's
    case and the numba fast path), nearly uniform (the guard band matters) or random."""
    b = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["uniform", "wobble", "random"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "uniform":
        e = np.linspace(lo, lo + width, b + 1)
    elif kind == "wobble":
        e = lo + width / b * (np.arange(b + 1) + rng.uniform(-1e-7, 1e-7, b + 1))
        e[0], e[-1] = lo, lo + width
    else:
        e = np.concatenate([[lo], np.sort(rng.uniform(lo, lo + width, b - 1)), [lo + width]])
    return e if (np.diff(e) > 0).all() else np.linspace(lo, lo + width, b + 1)


@st.composite
def two_edge_sets(draw) -> tuple[np.ndarray, np.ndarray]:
    """Edges A and B: B nested in A, overlapping it, beside it, or far away (offset up to 1e6,
    widths from 1e-4 to 1e3)."""
    lo_a = draw(st.floats(-10, 10))
    width_a = 10.0 ** draw(st.floats(-4, 3))
    relation = draw(st.sampled_from(["same", "nested", "overlap", "disjoint", "far"]))
    if relation == "same":
        lo_b, width_b = lo_a, width_a
    elif relation == "nested":
        lo_b, width_b = lo_a + 0.25 * width_a, 0.5 * width_a
    elif relation == "overlap":
        lo_b, width_b = lo_a + 0.5 * width_a, width_a
    elif relation == "disjoint":
        lo_b, width_b = lo_a + 2 * width_a, 10.0 ** draw(st.floats(-4, 3))
    else:
        lo_b, width_b = draw(st.sampled_from([1e6, -1e6])), 10.0 ** draw(st.floats(-4, 3))
    return draw(edge_sets(lo_a, width_a)), draw(edge_sets(lo_b, width_b))


def _values(rng: np.random.Generator, n: int, edges_a: np.ndarray, edges_b: np.ndarray,
            special: bool) -> np.ndarray:
    """n values: both sets of edges and their float64 neighbours, uniform draws over and around
    both ranges, and (``special``) NaN, ±inf and values beyond both ranges; shuffled."""
    parts = []
    for e in (edges_a, edges_b):
        width = e[-1] - e[0]
        parts += [e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf),
                  rng.uniform(e[0] - 0.1 * width, e[-1] + 0.1 * width, n)]
    if special:
        parts.append(np.array([np.nan, np.inf, -np.inf, np.nan, 1e30, -1e30, 0.0, -0.0]))
    x = np.concatenate(parts)
    return x[rng.permutation(len(x))][:max(n, 1)]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(edges=two_edge_sets(), seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 4),
       width=st.integers(0, 700), dtype=st.sampled_from([np.float64, np.float32]),
       special=st.booleans())
def test_pair_equals_two_histograms_and_np_histogram(backend, edges, seed, rows, width, dtype, special):
    """(T, n) arrays, n = 0 included (empty rows: zero counts)."""
    edges_a, edges_b = edges
    rng = np.random.default_rng(seed)
    x = np.stack([_values(rng, width, edges_a, edges_b, special)[:width] for _ in range(rows)])
    x = x.astype(dtype).reshape(rows, width)
    kernel = k.backend(backend)
    got_a, got_b = kernel.histogram_counts_pair(x, edges_a, edges_b)
    np.testing.assert_array_equal(got_a, kernel.histogram_counts(x, edges_a))
    np.testing.assert_array_equal(got_b, kernel.histogram_counts(x, edges_b))
    np.testing.assert_array_equal(got_a, _np_counts(x, edges_a))
    np.testing.assert_array_equal(got_b, _np_counts(x, edges_b))
    assert got_a.dtype == got_b.dtype == np.int64


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(edges=two_edge_sets(), seed=st.integers(0, 2**32 - 1),
       lengths=st.lists(st.integers(0, 500), min_size=1, max_size=4))
def test_pair_on_rows_of_different_lengths(backend, edges, seed, lengths):
    """A sequence of 1-D rows (any lengths, empty ones included), as ``histogram_counts`` takes."""
    edges_a, edges_b = edges
    rng = np.random.default_rng(seed)
    rows = [_values(rng, n, edges_a, edges_b, True)[:n] for n in lengths]
    got_a, got_b = k.backend(backend).histogram_counts_pair(rows, edges_a, edges_b)
    np.testing.assert_array_equal(got_a, _np_counts(rows, edges_a))
    np.testing.assert_array_equal(got_b, _np_counts(rows, edges_b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pair_on_rows_longer_than_a_work_item(backend):
    """Rows split into several numba items (131,072 values) and batches (1,024), with remainders;
    values on the edges inside the long rows."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2 * _numba._CHUNK + 12_345)).astype(np.float32)
    edges_a, edges_b = np.linspace(-4, 4, 201), np.linspace(-0.5, 3.0, 17)
    x[:, 5_000:5_201] = edges_a.astype(np.float32)
    x[1, -17:] = edges_b.astype(np.float32)
    x[2, _numba._CHUNK - 3:_numba._CHUNK + 3] = np.nan
    got_a, got_b = k.backend(backend).histogram_counts_pair(x, edges_a, edges_b)
    np.testing.assert_array_equal(got_a, _np_counts(x, edges_a))
    np.testing.assert_array_equal(got_b, _np_counts(x, edges_b))


def test_numba_single_and_pair_agree_value_by_value():
    """A value binned near an edge by the exact path and one binned by the vectorised guess are
    counted alike in both kernels: every single value, one at a time, lands in the same bin."""
    edges_a = np.linspace(-1.0, 1.0, 11)
    edges_b = np.linspace(0.05, 0.35, 4)
    values = np.concatenate([edges_a, edges_b, np.nextafter(edges_a, 2), np.nextafter(edges_b, -2),
                             [np.nan, np.inf, -np.inf, 0.2, -0.95]])
    for v in values:
        row = np.array([[v]])
        a, b = _numba.histogram_counts_pair(row, edges_a, edges_b)
        np.testing.assert_array_equal(a, _numba.histogram_counts(row, edges_a))
        np.testing.assert_array_equal(b, _numba.histogram_counts(row, edges_b))
        np.testing.assert_array_equal(a, _np_counts(row, edges_a))
        np.testing.assert_array_equal(b, _np_counts(row, edges_b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_count_per_layer_and_pooled_equal_np_histogram(backend, monkeypatch):
    """Pass 2 with per_layer on (the fused kernel) and off: per layer np.histogram on the layer's
    edges, pooled the sum over layers of np.histogram on the pooled edges; blocks of a few rows
    (small ``BLOCK_BYTES``) so counts of several blocks add up."""
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 2_000)
    rng = np.random.default_rng(5)
    tensors = {"a": rng.standard_normal((6, 30, 20)).astype(np.float32),
               "b": (3 + 0.1 * rng.standard_normal((6, 700))).astype(np.float32),
               "c": rng.uniform(-1, 1, (6, 5))}
    tensors["a"][2, 0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    view = MemoryRun("r", np.arange(6), tensors)
    edges = {fs.POOLED: np.linspace(-3.0, 3.5, 41), "a": np.linspace(-2.5, 2.5, 13),
             "b": np.linspace(2.7, 3.3, 9), "c": np.linspace(-1.0, 1.0, 3)}
    rows = {n: v.reshape(6, -1) for n, v in tensors.items()}
    pooled = sum(_np_counts(r, edges[fs.POOLED]) for r in rows.values())
    both = dict(fs.count(view, list(tensors), edges, backend, per_layer=True))
    only = dict(fs.count(view, list(tensors), edges, backend, per_layer=False))
    np.testing.assert_array_equal(both[fs.POOLED], pooled)
    np.testing.assert_array_equal(only[fs.POOLED], pooled)
    assert set(only) == {fs.POOLED}
    for name, r in rows.items():
        np.testing.assert_array_equal(both[name], _np_counts(r, edges[name]))


def test_count_hands_out_each_layer_before_reading_the_next():
    """Pass 2 streams: a layer's counts come out before the next tensor is read (so a caller that
    reduces each curve holds one layer's counts, not the run's), the pooled counts last; and the
    caller's own code runs with every numba thread (outside ``leave_a_core``)."""
    import numba

    from dynlab.analyzers import _fisher as fs

    rng = np.random.default_rng(5)
    tensors = {n: rng.standard_normal((4, 50)) for n in ("a", "b", "c")}
    view = MemoryRun("s", np.arange(4), tensors)
    reads: list[str] = []
    real_read = view.read

    def read(name, *args, **kwargs):
        reads.append(name)
        return real_read(name, *args, **kwargs)

    view.read = read
    edges = {n: np.linspace(-4.0, 4.0, 9) for n in (fs.POOLED, *tensors)}
    threads = numba.get_num_threads()
    order = []
    for curve, counts in fs.count(view, list(tensors), edges, "numba", per_layer=True):
        order.append(curve)
        assert numba.get_num_threads() == threads
        if curve != fs.POOLED:
            assert reads[-1] == curve  # nothing of the next tensor read yet
            np.testing.assert_array_equal(counts, _np_counts(tensors[curve], edges[curve]))
    assert order == ["a", "b", "c", fs.POOLED]


def test_leave_a_core_limits_this_thread_only_and_restores():
    """Inside the context this thread's numba kernels get one thread fewer (at least one); other
    threads keep theirs; the count comes back on exit, also after an error. The numpy and torch
    backends offer the same context, doing nothing."""
    import threading

    import numba

    full = numba.get_num_threads()
    seen = {}
    with _numba.leave_a_core():
        seen["inside"] = numba.get_num_threads()
        other = threading.Thread(target=lambda: seen.update(other=numba.get_num_threads()))
        other.start()
        other.join()
    assert seen == {"inside": max(1, full - 1), "other": full}
    assert numba.get_num_threads() == full
    with pytest.raises(RuntimeError), _numba.leave_a_core():
        raise RuntimeError("inside")
    assert numba.get_num_threads() == full
    for backend in ("numpy", "torch"):
        with k.backend(backend).leave_a_core():
            assert numba.get_num_threads() == full


def _float32_near_edges(rng, edges, n):
    """float32 values on every float32 rounding of an edge and a few ulps either side, and
    values uniform over the range, shuffled."""
    e32 = edges.astype(np.float32)
    steps = np.arange(-3, 4, dtype=np.float32)
    near = (e32[:, None] + steps[None, :] * np.spacing(np.abs(e32))[:, None]).ravel()
    spread = rng.uniform(edges[0], edges[-1], n).astype(np.float32)
    x = np.concatenate([near, spread])
    rng.shuffle(x)
    return x


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), offset=st.sampled_from([0.0, 0.5, 1.0, -3.0, 40.0, 1e4]),
       width=st.sampled_from([1e-3, 1e-2, 1.0, 7.3]), nbins=st.integers(1, 400))
def test_float32_guesses_count_exactly_on_ranges_far_from_zero(seed, offset, width, nbins):
    """float32 values take the float32 guesses (``guard_band32``) when the band allows it; counts
    equal np.histogram's on float64, also for values on and a few ulps beside every edge of a
    range far from 0 for its width (where float32's f = (x − e_0)·s is off by up to ≈ |e_0|·s·2⁻²⁴
    bins), single and pair."""
    rng = np.random.default_rng(seed)
    lo = offset - width * rng.uniform(0, 1)
    edges = np.linspace(lo, lo + width, nbins + 1)
    other = np.linspace(lo - width * 0.3, lo + width * 1.2, 37)
    x = _float32_near_edges(rng, edges, 3000).reshape(1, -1)
    np.testing.assert_array_equal(_numba.histogram_counts(x, edges), _np_counts(x, edges))
    a, b = _numba.histogram_counts_pair(x, edges, other)
    np.testing.assert_array_equal(a, _np_counts(x, edges))
    np.testing.assert_array_equal(b, _np_counts(x, other))


def test_guard_band32_widens_with_the_offset_and_gives_up_where_float32_cannot_tell():
    """The float32 band is the float64 band plus 2⁻²² (|e_0|·s + B + 1); 0.5 (no float32
    guesses) when that reaches a quarter of a bin, or e_0 or the scale overflow float32."""
    edges = np.linspace(-0.1, 0.1, 201)
    band = _numba.guard_band(edges)
    assert _numba.guard_band32(edges, band) == pytest.approx(
        band + 2.0 ** -22 * (0.1 * 1000 + 201), rel=1e-9)
    assert 0 < _numba.guard_band32(np.linspace(1.0, 1.001, 201), band) < 0.25  # |e_0|·s = 2e5
    assert _numba.guard_band32(np.linspace(1000.0, 1000.001, 201), band) == 0.5  # |e_0|·s = 2e8
    assert _numba.guard_band32(np.linspace(0.0, 1.0, 2**22), band) == 0.5  # too many bins
    assert _numba.guard_band32(np.linspace(1e39, 2e39, 11), band) == 0.5  # not a float32
