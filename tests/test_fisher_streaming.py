"""The streaming structure of the Fisher analyzers (issue 4, point 4): block reading, the moments
kernel of pass 1 on every backend, and backend parity at the analyzer level on random runs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dynlab
from dynlab.analyzers import _blocks
from dynlab.analyzers.fisher_distance import FisherDistance
from dynlab.analyzers.fisher_velocity import FisherVelocity, UnreliableLengthWarning
from dynlab.kernels import fisher as k
from dynlab.testing import MemoryRun

BACKENDS = ["numpy", "numba", "torch"]


# ---------------------------------------------------------------------------- moments kernel


def _moments_reference(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """The definition, row by row, in float64."""
    out = []
    for row in np.asarray(x, dtype=np.float64):
        finite = row[np.isfinite(row)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)
        with np.errstate(invalid="ignore"):
            out.append((lo, hi, row.mean(), ((row - row.mean()) ** 2).sum()))
    return tuple(np.array(c) for c in zip(*out, strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", [1, 7, 300_001])
def test_row_moments_equal_the_definition(backend, width):
    rng = np.random.default_rng(width)
    x = (rng.standard_normal((4, width)) * 3 + 100).astype(np.float32)  # offset: cancellation test
    got = k.backend(backend).row_moments(x)
    for g, r in zip(got, _moments_reference(x), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_moments_keep_the_mean_under_a_large_offset(backend):
    """Values 10⁶ ± 10⁻³: the mean within 5·10⁻⁷ σ of the exactly rounded one (math.fsum), as
    numpy's pairwise sum (a plain running sum of 10⁶ such values is off by ≈ 1.5·10⁻⁶ σ)."""
    import math

    x = 1e6 + np.random.default_rng(9).standard_normal((2, 1_000_000)) * 1e-3
    exact = np.array([math.fsum(row) / row.size for row in x])
    _, _, mean, m2 = k.backend(backend).row_moments(x)
    assert np.abs(mean - exact).max() < 5e-7 * 1e-3
    np.testing.assert_allclose(m2, ((x - exact[:, None]) ** 2).sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_moments_skip_non_finite_in_the_range_and_flag_the_moments(backend):
    x = np.random.default_rng(1).standard_normal((3, 1000))
    x[0, 10] = np.nan
    x[1, :] = np.inf
    x[2, 3] = -np.inf
    lo, hi, mean, m2 = k.backend(backend).row_moments(x)
    ref_lo, ref_hi, _, _ = _moments_reference(x)
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)
    assert not np.isfinite(mean).any() and not np.isfinite(m2).any()


def test_combine_moments_equals_the_moments_of_the_union():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 50)) + 5, rng.standard_normal((3, 70)) * 2
    _, _, ma, qa = k.row_moments(a)
    _, _, mb, qb = k.row_moments(b)
    n, mean, m2 = k.combine_moments(50, ma, qa, 70, mb, qb)
    _, _, mean_ref, m2_ref = k.row_moments(np.hstack([a, b]))
    assert np.all(n == 120)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12)
    np.testing.assert_allclose(m2, m2_ref, rtol=1e-12)
    n, mean, m2 = k.combine_moments(np.zeros(3), np.zeros(3), np.zeros(3), 70, mb, qb)
    np.testing.assert_array_equal(mean, mb)
    np.testing.assert_array_equal(m2, qb)


def test_combine_moments_with_an_empty_side_keeps_the_other():
    """n = 0 on either side contributes nothing, whatever its (undefined, e.g. NaN) moments are."""
    mean, m2 = np.array([1.5, -2.0]), np.array([4.0, 0.5])
    nan = np.full(2, np.nan)
    for n, mu, q in (k.combine_moments(7, mean, m2, 0, nan, nan),
                     k.combine_moments(0, nan, nan, 7, mean, m2)):
        assert np.all(n == 7)
        np.testing.assert_array_equal(mu, mean)
        np.testing.assert_array_equal(q, m2)


# ---------------------------------------------------------------------------- blocks


class CountingView:
    """A view that records every read: (tensor, steps, part)."""

    def __init__(self, view):
        self._view, self.reads = view, []

    def __getattr__(self, name):
        return getattr(self._view, name)

    def read(self, tensor, steps=None, *, part=None):
        self.reads.append((tensor, tuple(np.asarray(steps).tolist()), part))
        return self._view.read(tensor, steps, part=part)


@pytest.fixture
def stored_run(tmp_path):
    """A run in a real store with a tensor of several row chunks (2 MiB each)."""
    rng = np.random.default_rng(3)
    store = dynlab.open_store(tmp_path / "s.zarr", mode="a")
    run = store.create_run("r")
    for step in range(5):
        run.append(step, {"big.weight": rng.standard_normal((1500, 1000)).astype(np.float32),
                          "big.bias": rng.standard_normal(1500).astype(np.float32)})
    return store.run("r")


def test_blocks_read_every_chunk_once_aligned_to_the_store(stored_run):
    assert stored_run.chunk_rows("big.weight") == 524  # 2 MiB of 1000 float32 per row
    view = CountingView(stored_run)
    budget = 3 * 2**20  # one step of the tensor (6 MB) does not fit: parts of whole chunks
    got = list(_blocks.blocks(view, "big.weight", max_bytes=budget))
    parts = [p for _, _, p in view.reads]
    assert all(p.start % 524 == 0 for p in parts) and {p.stop - p.start for p in parts} == {524}
    assert len(got) == 5 * 3  # 1500 rows = 3 chunks per step
    values = np.concatenate([b.values.reshape(-1) for b in got])
    np.testing.assert_array_equal(values, stored_run.read("big.weight").reshape(-1))
    assert max(b.values.nbytes for b in got) <= budget


def test_blocks_of_several_steps_when_a_step_fits(stored_run):
    got = list(_blocks.blocks(stored_run, "big.bias", max_bytes=2 * 1500 * 4))
    assert [b.rows for b in got] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    np.testing.assert_array_equal(np.vstack([b.values for b in got]), stored_run.read("big.bias"))


class ScriptedView:
    """A view of one tensor whose reads can fail or be slow, recording the threads that read."""

    def __init__(self, n_steps=6, fail_at=None, delay=0.0):
        self._run = MemoryRun("s", np.arange(n_steps), {"w": np.arange(n_steps * 40.0).reshape(n_steps, 40)})
        self.fail_at, self.delay, self.calls = fail_at, delay, 0

    def __getattr__(self, name):
        return getattr(self._run, name)

    def read(self, tensor, steps=None, *, part=None):
        import time

        self.calls += 1
        time.sleep(self.delay)
        if self.calls == self.fail_at:
            raise OSError("disk error")
        return self._run.read(tensor, steps, part=part)


def _reader_threads():
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("dynlab-read")]


def test_blocks_reader_error_reaches_the_consumer_and_no_thread_is_left():
    view = ScriptedView(fail_at=3)
    got = []
    with pytest.raises(OSError, match="disk error"):
        for block in _blocks.blocks(view, "w", max_bytes=40 * 8):
            got.append(block.rows.start)
    assert got == [0, 1] and not _reader_threads()


def test_blocks_closed_early_stop_reading_and_leave_no_thread():
    view = ScriptedView(delay=0.02)
    for block in _blocks.blocks(view, "w", max_bytes=40 * 8):
        assert block.rows == slice(0, 1)
        break
    assert not _reader_threads()
    assert view.calls <= 2  # the block handed out and at most the one prefetched


def test_blocks_of_a_view_without_steps_are_none():
    class NoSteps(ScriptedView):
        steps = np.zeros(0, dtype=np.int64)

    assert list(_blocks.blocks(NoSteps(), "w", max_bytes=40 * 8)) == []


@pytest.mark.parametrize("cls", [FisherVelocity, FisherDistance])
@pytest.mark.parametrize("estimator", ["histogram", "gaussian"])
def test_small_blocks_give_the_same_result(stored_run, monkeypatch, cls, estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        whole = cls(estimator=estimator).compute(stored_run, backend="numba")
        monkeypatch.setattr(_blocks, "BLOCK_BYTES", 1 << 20)
        parts = cls(estimator=estimator).compute(stored_run, backend="numba")
    xr.testing.assert_allclose(parts, whole, rtol=1e-9, atol=1e-12)  # summation order only


# ---------------------------------------------------------------------------- backend parity


@st.composite
def random_runs(draw):
    """Runs of 2–9 steps with 1–3 tensors of random shape, scale and drift."""
    n_steps = draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 5, n_steps))
    tensors = {}
    for i in range(draw(st.integers(1, 3))):
        shape = tuple(draw(st.lists(st.integers(1, 40), min_size=1, max_size=2)))
        drift = np.cumsum(rng.standard_normal(n_steps)) * draw(st.floats(0.0, 1.0))
        scale = np.exp(np.cumsum(rng.standard_normal(n_steps)) * 0.1)
        x = rng.standard_normal((n_steps, *shape)) * scale.reshape(-1, *[1] * len(shape))
        tensors[f"l{i}.weight"] = (x + drift.reshape(-1, *[1] * len(shape))).astype(
            draw(st.sampled_from([np.float32, np.float64])))
    return MemoryRun("random", steps, tensors)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=random_runs(), cls=st.sampled_from([FisherVelocity, FisherDistance]),
       estimator=st.sampled_from(["histogram", "gaussian", "kde"]),
       backend=st.sampled_from(["numba", "torch"]))
def test_every_backend_equals_the_numpy_reference_on_random_runs(view, cls, estimator, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noise warnings and constant-tensor NaNs are not the point
        ref = cls(estimator=estimator).compute(view, backend="numpy")
        got = cls(estimator=estimator).compute(view, backend=backend)
    xr.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------- statistics at ingest


class WithoutStats:
    """A store run that hides its ingest-time statistics (as a store of an older dynlab)."""

    def __init__(self, run):
        self._run = run

    def __getattr__(self, name):
        if name == "stats":
            raise AttributeError(name)
        return getattr(self._run, name)


def test_ingest_writes_the_statistics_of_every_tensor(stored_run):
    stats = stored_run.stats
    assert stats.shape == (5, 2, 4)
    for i, t in enumerate(stored_run.tensors):
        x = stored_run.read(t.name).reshape(5, -1)
        ref = np.stack(_moments_reference(x), axis=1)
        np.testing.assert_allclose(stats[:, i], ref, rtol=1e-9)


def test_replace_rewrites_the_statistics(stored_run):
    new = {"big.weight": np.full((1500, 1000), 2.0, np.float32),
           "big.bias": np.arange(1500.0, dtype=np.float32)}
    stored_run.replace(3, new)
    np.testing.assert_array_equal(stored_run.stats[3, 0], [2.0, 2.0, 2.0, 0.0])
    np.testing.assert_allclose(stored_run.stats[3, 1], [0.0, 1499.0, 749.5, np.var(np.arange(1500.0)) * 1500])


def test_a_run_without_statistics_for_every_step_reports_none(stored_run, tmp_path):
    import zarr

    group = zarr.open_group(tmp_path / "s.zarr" / "runs" / "r", mode="a")
    group["stats"][2] = np.nan  # as if step 2 had been written by an older dynlab
    assert dynlab.open_store(tmp_path / "s.zarr").run("r").stats is None


def test_one_tensor_without_finite_values_keeps_the_statistics(tmp_path):
    """An all-NaN (or empty) tensor has an all-NaN statistics row; that is not a step written by an
    older dynlab, so the other tensors' stored statistics stay usable."""
    store = dynlab.open_store(tmp_path / "s.zarr", mode="a")
    run = store.create_run("r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the store's non-finite warning
        for step in range(3):
            run.append(step, {"w": np.full(10, float(step), np.float32),
                              "dead": np.full(4, np.nan, np.float32),
                              "empty": np.zeros(0, np.float32)})
    stats = store.run("r").stats
    assert stats is not None
    np.testing.assert_array_equal(stats[:, 0, 0], [0.0, 1.0, 2.0])
    assert np.isnan(stats[:, 1:]).all()


def test_stored_statistics_replace_the_first_pass(stored_run):
    """With the statistics in the store, the Gaussian estimator reads no tensor data at all and the
    histogram reads every block once (its counting pass); without them, one more pass."""
    fast, slow = CountingView(stored_run), CountingView(WithoutStats(stored_run))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)  # pure noise: not the point here
        FisherVelocity(estimator="gaussian").compute(fast, backend="numba")
        assert fast.reads == []
        FisherVelocity(estimator="gaussian").compute(slow, backend="numba")
        assert len(slow.reads) == 2  # one block per tensor: the run is small
        FisherVelocity().compute(fast, backend="numba")
    assert len(fast.reads) == 2


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_stored_statistics_give_the_result_of_a_data_pass(stored_run, clip):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        for estimator in ("histogram", "gaussian", "kde"):
            fast = FisherVelocity(estimator=estimator, clip=clip).compute(stored_run, backend="numba")
            slow = FisherVelocity(estimator=estimator, clip=clip).compute(WithoutStats(stored_run),
                                                                          backend="numba")
            xr.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_stored_statistics_equal_a_data_pass_with_non_finite_values_and_float16(tmp_path):
    """NaN and ±inf in some steps (finite range, non-finite moments) and a float16 tensor: the
    statistics written at ingest and the moments kernel agree, so every estimator gives the
    result of the data pass."""
    rng = np.random.default_rng(8)
    store = dynlab.open_store(tmp_path / "s.zarr", mode="a")
    run = store.create_run("r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the store's non-finite warning
        for step in range(4):
            w = rng.standard_normal((30, 20)).astype(np.float32) + step
            w[0, 0] = [0.0, 1.0, np.nan, np.inf][step] if step >= 2 else w[0, 0]
            run.append(step, {"a.weight": w, "b.weight": (rng.standard_normal(50) * 3).astype(np.float16),
                              "c.count": np.arange(5)})
    run = store.run("r")
    assert run.stats is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cls in (FisherVelocity, FisherDistance):
            for estimator in ("histogram", "gaussian", "kde"):
                fast = cls(estimator=estimator).compute(run, backend="numba")
                for backend in ("numpy", "numba"):
                    slow = cls(estimator=estimator).compute(WithoutStats(run), backend=backend)
                    xr.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
