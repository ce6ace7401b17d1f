"""dynlab.geometry: Fisher–Rao geometry of the parameter distribution (METHODS.md §1).

The Gaussian estimator against analytic shifts and rescales; histograms against np.histogram,
exactly, for every backend; every backend against the numpy reference on hypothesis data; the
metric properties of the Fisher–Rao distance; the run-level quantities against their definitions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynlab import geometry as g
from dynlab.kernels.fisher import _torch

BACKENDS = ["numpy", "numba", "torch"]

# ---------------------------------------------------------------------------- helpers


def _random_pdfs(rng: np.random.Generator, t: int, b: int, sparse: bool = False,
                 duplicates: bool = False) -> np.ndarray:
    """(t, b) random distributions; ``sparse`` zeroes about half the bins (disjoint supports
    happen), ``duplicates`` repeats rows (identical pairs, where arccos forms lose digits)."""
    p = rng.exponential(size=(t, b))
    if sparse:
        p *= rng.random((t, b)) < 0.5
        p[:, rng.integers(b)] += 1e-3  # no empty row
    if duplicates and t > 1:
        p[rng.integers(t, size=t // 2)] = p[0]
    return p / p.sum(axis=1, keepdims=True)


def _edges(rng: np.random.Generator, lo: float, hi: float, b: int, uniform: bool) -> np.ndarray:
    if uniform:
        return np.linspace(lo, hi, b + 1)
    inner = np.sort(rng.uniform(lo, hi, b - 1))
    e = np.concatenate([[lo], inner, [hi]])
    return e if (np.diff(e) > 0).all() else np.linspace(lo, hi, b + 1)


def _np_counts(rows, edges) -> np.ndarray:
    """np.histogram per row of values clipped into [e_0, e_B], NaN dropped: the documented rule."""
    out = []
    for row in rows:
        x = np.asarray(row, dtype=np.float64)
        out.append(np.histogram(np.clip(x[~np.isnan(x)], edges[0], edges[-1]), bins=edges)[0])
    return np.array(out, dtype=np.int64)


# ---------------------------------------------------------------------------- Gaussian estimator


@settings(max_examples=40, deadline=None)
@given(shift=st.floats(-5, 5), sigma=st.floats(0.05, 10), steps=st.integers(1, 200))
def test_gaussian_pure_shift_gives_abs_shift_over_sigma(shift, sigma, steps):
    mu = np.linspace(0.0, shift, steps + 1)
    length = g.gaussian_length(mu, np.full(steps + 1, sigma))
    # σ constant: each step is |Δμ_k|/σ exactly, so only rounding of the sum differs
    assert length[-1] == pytest.approx(abs(shift) / sigma, rel=1e-12, abs=1e-15)
    assert length[0] == 0.0 and np.all(np.diff(length) >= 0)


@pytest.mark.parametrize("s", [0.25, 0.9, 2.0, 10.0])
@pytest.mark.parametrize("steps", [10, 100, 1000])
def test_gaussian_pure_rescale_converges_to_sqrt2_abs_log_s(s, steps):
    sigma = s ** (np.arange(steps + 1) / steps)  # geometric: ratio r = s^(1/steps) per step
    length = g.gaussian_length(np.zeros(steps + 1), sigma)[-1]
    exact = np.sqrt(2) * abs(np.log(s))
    # per step 2√2·tanh(ln r/2) = √2·ln r·(1 − (ln r)²/12 + …): relative error ≤ (ln r)²/12
    bound = (np.log(s) / steps) ** 2 / 12
    assert abs(length - exact) / exact <= bound * (1 + 1e-6) + 1e-13
    assert length == pytest.approx(2 * np.sqrt(2) * steps * np.tanh(abs(np.log(s)) / (2 * steps)), rel=1e-12)


def test_gaussian_rate_on_smooth_path():
    """Γ² = (μ̇² + 2σ̇²)/σ² for μ = sin t, σ = 1.5 + cos t; midpoint differences are second order:
    with Δt = 3/2000 the error is O(Δt²) ≈ 1e-6 of Γ (the derivatives are O(1))."""
    t = np.linspace(0.0, 3.0, 2001) ** 1.1  # non-uniform steps
    rate, mid = g.gaussian_rate(np.sin(t), 1.5 + np.cos(t), t)
    exact = np.sqrt(np.cos(mid) ** 2 + 2 * np.sin(mid) ** 2) / (1.5 + np.cos(mid))
    np.testing.assert_allclose(mid, 0.5 * (t[1:] + t[:-1]))
    np.testing.assert_allclose(rate, exact, rtol=1e-5)
    length = g.gaussian_length(np.sin(t), 1.5 + np.cos(t), t)
    np.testing.assert_allclose(np.diff(length), rate * np.diff(t), rtol=1e-12)


# ---------------------------------------------------------------------------- histograms


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_equals_np_histogram(backend, uniform, dtype):
    edges = np.linspace(-2.0, 3.0, 11) if uniform else np.array([-2.0, -1.5, -0.1, 0.0, 0.3, 2.0, 3.0])
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 3, (4, 500))
    x[0, : len(edges)] = edges  # every edge, including e_0 and e_B = hi (the last, closed bin)
    x[1, : len(edges)] = np.nextafter(edges, -np.inf).clip(-2, 3)  # just below each edge
    x[2, :3] = [3.0, 3.0, -2.0]
    x = x.astype(dtype)
    want = np.stack([np.histogram(row, bins=edges)[0] for row in x])
    got = g.histogram_counts(x, edges, backend)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    # float32 values are compared with the float64 edges exactly, as np.histogram does
    assert got.sum() == x.size


@pytest.mark.parametrize("backend", BACKENDS)
def test_outside_values_are_clipped_into_end_bins_and_nan_dropped(backend):
    edges = np.array([0.0, 1.0, 2.0, 4.0])
    x = np.array([[-5.0, -np.inf, 0.0, 1.0, 3.9, 4.0, 4.5, np.inf, np.nan]])
    # bins [0,1) [1,2) [2,4]: first ← -5, -inf, 0; second ← 1; last ← 3.9, 4, 4.5, inf; NaN dropped
    np.testing.assert_array_equal(g.histogram_counts(x, edges, backend), [[3, 1, 4]])
    np.testing.assert_allclose(g.histograms(x, edges, backend), [[3 / 8, 1 / 8, 4 / 8]], rtol=1e-15)
    assert np.isnan(g.histograms(np.full((1, 3), np.nan), edges, backend)).all()  # nothing counted


@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_edges(backend):
    """e_B − e_0 overflows: numba takes the binary search, the counts are still exact."""
    edges = np.array([-1e308, 0.0, 1e308])
    x = np.array([[-1e308, -1.0, 0.0, 5.0, 1e308, np.inf]])
    np.testing.assert_array_equal(g.histogram_counts(x, edges, backend), [[2, 4]])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 6), n=st.integers(0, 300), b=st.integers(1, 40),
       uniform=st.booleans(), f32=st.booleans(), ragged=st.booleans())
def test_histogram_backends_equal_reference(seed, t, n, b, uniform, f32, ragged):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.integers(-3, 4)
    x = rng.standard_normal((t, n)) * scale
    x[rng.random((t, n)) < 0.05] = np.nan
    edges = _edges(rng, -2 * scale, 1.5 * scale, b, uniform)  # some values fall outside
    if n:
        x.flat[rng.integers(x.size, size=min(n, 5))] = rng.choice(edges, size=min(n, 5))  # on edges
    x = x.astype(np.float32 if f32 else np.float64)
    samples = [row[: rng.integers(n + 1)] for row in x] if ragged else x
    want = _np_counts(samples, edges)
    for backend in BACKENDS:
        np.testing.assert_array_equal(g.histogram_counts(samples, edges, backend), want, err_msg=backend)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 300), wobble=st.sampled_from([0.0, 1e-9, 5e-7]),
       offset=st.sampled_from([0.0, 1e3, -1e6]))
def test_numba_shortcut_far_from_edges_is_exact(seed, b, wobble, offset):
    """The numba fast path trusts ⌊f⌋ away from the edges (``guard_band``); values on, just
    beside and between nearly-uniform edges, far from zero, all land where np.histogram puts them."""
    rng = np.random.default_rng(seed)
    lo, width = offset + rng.uniform(-3, 3), 10.0 ** rng.uniform(-4, 2)
    edges = lo + width * (np.arange(b + 1) + rng.uniform(-wobble, wobble, b + 1))
    edges[0], edges[-1] = lo, lo + width * b
    near = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    x = np.concatenate([near, rng.uniform(edges[0] - width, edges[-1] + width, 5000)])[None, :]
    for dtype in (np.float64, np.float32):
        xs = x.astype(dtype)
        np.testing.assert_array_equal(g.histogram_counts(xs, edges, "numba"), _np_counts(xs, edges))


@pytest.mark.parametrize("top", [1e-306, 1e-310])
def test_numba_counts_on_edges_whose_uniform_scale_overflows(top):
    """Edges over a range so small that B/(e_B − e_0) overflows to inf (subnormal widths): the
    uniform guess (x − e_0)·inf would be NaN at x = e_0; the counts are still np.histogram's."""
    edges = np.linspace(0.0, top, 201)
    if not np.all(np.diff(edges) > 0):
        edges = np.unique(edges)
    x = np.concatenate([edges, edges[:-1] + np.diff(edges) / 2, [-1.0, 1.0]])[None, :]
    np.testing.assert_array_equal(g.histogram_counts(x, edges, "numba"), _np_counts(x, edges))


def test_long_rows_split_into_items_and_chunks():
    """Rows longer than the numba work item and the torch chunk: the splitting changes nothing."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 300_000)).astype(np.float32)
    edges = np.linspace(-4, 4, 201)
    want = _np_counts(x, edges)
    np.testing.assert_array_equal(g.histogram_counts(x, edges, "numba"), want)
    np.testing.assert_array_equal(_torch.histogram_counts(x, edges, chunk=70_001), want)
    np.testing.assert_array_equal(_torch.histogram_counts(x, edges, chunk=300_000), want)
    np.testing.assert_array_equal(_torch.histogram_counts(x[:, :50], edges, chunk=7),
                                  _np_counts(x[:, :50], edges))


@pytest.mark.parametrize("backend", BACKENDS)
def test_streaming_accumulation_equals_one_pass(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 11, 13))  # a tensor read chunk by chunk along its first axis
    edges = np.sort(rng.uniform(-3, 3, 17))
    counts = np.zeros(16, dtype=np.int64)
    for chunk in x:
        assert g.histogram_accumulate(counts, chunk, edges, backend) is counts
    np.testing.assert_array_equal(counts, _np_counts([x.ravel()], edges)[0])


def test_torch_inputs_stay_tensors_on_their_device():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 100))
    edges = np.linspace(-3, 3, 9)
    want = _np_counts(x, edges)
    assert g.resolve_backend("auto", torch.from_numpy(x)) == "torch"
    np.testing.assert_array_equal(g.histogram_counts(torch.from_numpy(x), edges), want)
    np.testing.assert_array_equal(g.histogram_counts(list(torch.from_numpy(x)), edges, "torch"), want)
    np.testing.assert_array_equal(g.histogram_counts(torch.from_numpy(x), edges, "numba"), want)
    counts = torch.zeros(8, dtype=torch.int64)
    for row in torch.from_numpy(x):
        g.histogram_accumulate(counts, row, edges, "torch", device="cpu")
    np.testing.assert_array_equal(counts.numpy(), want.sum(axis=0))
    read_only = np.broadcast_to(x[0], (2, 100))  # e.g. a zarr read: no warning from torch
    np.testing.assert_array_equal(g.histogram_counts(read_only, edges, "torch"), want[[0, 0]])


# ---------------------------------------------------------------------------- distances


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 30), sparse=st.booleans())
def test_fisher_rao_is_a_metric(seed, b, sparse):
    rng = np.random.default_rng(seed)
    p, q, r = _random_pdfs(rng, 3, b, sparse)
    d = g.fisher_rao
    assert d(p, q) == d(q, p)  # the chord ‖√p − √q‖ is symmetric term by term
    assert d(p, p) == 0.0
    assert 0.0 <= d(p, q) <= np.pi
    # the arc metric on the sphere of √p; 1e-12 covers rounding of the three distances
    assert d(p, r) <= d(p, q) + d(q, r) + 1e-12
    # the definition 2·arccos(BC): near BC = 1 the arccos form itself is only good to √(2ε) ≈ 1e-8
    bc = np.sum(np.sqrt(p * q))
    assert d(p, q) == pytest.approx(2 * np.arccos(np.clip(bc, 0, 1)), abs=1e-7)
    assert g.bhattacharyya(p, q) == pytest.approx(-np.log(bc), rel=1e-9, abs=1e-12)


def test_fisher_rao_extremes_and_broadcasting():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert g.fisher_rao([1.0, 0.0], [0.0, 1.0]) == pytest.approx(np.pi, rel=1e-15)  # disjoint
        assert g.bhattacharyya([1.0, 0.0], [0.0, 1.0]) == np.inf
    p = _random_pdfs(np.random.default_rng(5), 4, 6)
    np.testing.assert_array_equal(g.fisher_rao(p[0], p), [g.fisher_rao(p[0], row) for row in p])
    np.testing.assert_allclose(g.fisher_rao(p.T, p.T, axis=0), 0.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 12), b=st.integers(1, 40), sparse=st.booleans(),
       duplicates=st.booleans())
def test_distance_matrix_backends_equal_reference(seed, t, b, sparse, duplicates):
    p = _random_pdfs(np.random.default_rng(seed), t, b, sparse, duplicates)
    ref = g.distance_matrix(p, "numpy")
    np.testing.assert_array_equal(ref, ref.T)
    np.testing.assert_array_equal(np.diag(ref), 0.0)
    pairwise = np.array([[g.fisher_rao(a, c) for c in p] for a in p])
    np.testing.assert_allclose(ref, pairwise, rtol=1e-12, atol=0)
    for backend in ("numba", "torch"):
        # float64; only the order of the Σ(√p_i − √p_j)² differs: relative error ≲ B·ε ≈ 1e-14
        np.testing.assert_allclose(g.distance_matrix(p, backend), ref, rtol=1e-12, atol=0, err_msg=backend)


# ---------------------------------------------------------------------------- along a run


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 10), b=st.integers(1, 20))
def test_rate_length_and_distance_from_initial(seed, t, b):
    rng = np.random.default_rng(seed)
    p = _random_pdfs(rng, t, b)
    times = np.cumsum(rng.uniform(0.1, 5, t))
    dl = np.array([g.fisher_rao(p[k], p[k + 1]) for k in range(t - 1)])
    rate, mid = g.information_rate(p, times)
    np.testing.assert_allclose(rate, dl / np.diff(times), rtol=1e-15)
    np.testing.assert_allclose(mid, (times[1:] + times[:-1]) / 2, rtol=1e-15)
    length = g.information_length(p, times)
    assert length[0] == 0.0 and length.shape == (t,)
    np.testing.assert_allclose(length, np.concatenate([[0.0], np.cumsum(dl)]), rtol=1e-15)
    dist = g.distance_from_initial(p)
    np.testing.assert_array_equal(dist, [g.fisher_rao(p[0], row) for row in p])
    assert np.all(dist <= length + 1e-12)  # a geodesic is no longer than the path


# ---------------------------------------------------------------------------- the API's checks


def test_rejects_bad_input():
    edges = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="backend"):
        g.histogram_counts(np.ones((2, 3)), edges, "cupy")
    with pytest.raises(ValueError, match="increasing"):
        g.histogram_counts(np.ones((2, 3)), edges[::-1], "numpy")
    with pytest.raises(ValueError, match="at least 2"):
        g.histogram_counts(np.ones((2, 3)), [1.0], "numpy")
    with pytest.raises(ValueError, match=r"\(T, N\)"):
        g.histogram_counts(np.ones(3), edges, "numpy")
    with pytest.raises(ValueError, match="1-D"):
        g.histogram_counts([np.ones((2, 2))], edges, "numpy")
    with pytest.raises(ValueError, match="int64"):
        g.histogram_accumulate(np.zeros(4), np.ones(3), edges, "numpy")
    with pytest.raises(ValueError, match="sum to 1"):
        g.fisher_rao([1.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        g.distance_matrix([[1.5, -0.5]], "numpy")
    with pytest.raises(ValueError, match="increasing"):
        g.information_rate(np.full((2, 2), 0.5), [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        g.gaussian_rate([0.0, 1.0], [1.0, 0.0], [0.0, 1.0])


def test_import_geometry_is_lazy():
    probe = "import dynlab.geometry, sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert not {"numba", "torch"} & set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_auto_backend_checks_for_a_gpu_without_importing_torch_when_linux_shows_none(monkeypatch):
    """``cuda_available`` answers no from the device files alone (no torch import: ≈ 1 s and
    200 MB per ``dynlab run``) on Linux without /dev/nvidia* or /dev/kfd, and asks torch when
    the device files are there."""
    import subprocess
    import sys

    from dynlab import geometry

    code = ("import sys; import dynlab.geometry as g; g._gpu_device_files = lambda: False; "
            "print(g.cuda_available(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = "False False" if sys.platform.startswith("linux") else None
    if expected:
        assert out.stdout.split() == expected.split()
    pytest.importorskip("torch")
    import torch

    monkeypatch.setattr(geometry, "_gpu_device_files", lambda: True)
    geometry.cuda_available.cache_clear()
    try:
        assert geometry.cuda_available() is bool(torch.cuda.is_available())
    finally:
        geometry.cuda_available.cache_clear()
