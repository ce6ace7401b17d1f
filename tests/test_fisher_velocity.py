"""fisher-velocity and fisher-distance (METHODS.md §1): analytic Gaussian families, the histogram
estimator's measured bias, backends against the numpy reference, pooled against per layer, the
subsampling check, and the conformance kit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from dynlab import geometry
from dynlab.analyzers import AnalyzerInputError
from dynlab.analyzers.fisher_distance import FisherDistance
from dynlab.analyzers.fisher_velocity import FisherVelocity, UnreliableLengthWarning
from dynlab.testing import MemoryRun, check_analyzer

N = 200_000  # values of the analytic runs
STEPS = 40


def _standard_sample(n: int, seed: int = 0, exact: bool = False) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal(n)
    return (z - z.mean()) / z.std() if exact else z


def _family(kind: str, n: int = N, steps: int = STEPS, exact: bool = False) -> tuple[MemoryRun, float]:
    """A fixed N(0, 1) sample moved coherently: a shift by Δμ = 2σ, or a rescale σ → 2σ, in
    ``steps`` equal steps. Returns the run and the exact information length of the family."""
    z = _standard_sample(n, exact=exact)
    s = np.linspace(0.0, 1.0, steps + 1)[:, None]
    if kind == "shift":
        return MemoryRun(kind, np.arange(steps + 1), {"w": z + 2.0 * s}), 2.0
    return MemoryRun(kind, np.arange(steps + 1), {"w": z * 2.0 ** s}), np.sqrt(2.0) * np.log(2.0)


def _no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


# ---------------------------------------------------------------------------- analytic


def test_gaussian_estimator_shift_gives_delta_mu_over_sigma():
    view, exact = _family("shift")
    ds = FisherVelocity(estimator="gaussian").compute(view)
    length = ds["length"].sel(layer="all").values
    assert length[-1] == pytest.approx(exact, rel=0.02)  # measured: 1.9976 (sample σ = 1.0012)
    z = _standard_sample(N)
    assert length[-1] == pytest.approx(2.0 / z.std(), rel=1e-9)  # exact for the sample's own σ
    # geodesic distance ≤ path length: √2·arccosh(1 + Δμ²/(4σ²)) for a shift
    expected = np.sqrt(2.0) * np.arccosh(1.0 + 4.0 / (4.0 * z.var()))
    assert ds["distance"].sel(layer="all").values[-1] == pytest.approx(expected, rel=1e-9)
    np.testing.assert_array_equal(ds["length"].sel(layer="w"), length)  # one layer: pooled = layer


def test_gaussian_estimator_rescale_distance_is_sqrt2_ln_s():
    view, exact = _family("rescale", exact=True)
    ds = FisherVelocity(estimator="gaussian", per_layer=False).compute(view)
    # a rescale is a geodesic: distance from init = √2·ln 2 exactly; the path length carries the
    # midpoint-rule error (ln r)²/12 per step, r = 2^(1/40) (see geometry.gaussian_rate)
    assert ds["distance"].values[-1, 0] == pytest.approx(exact, rel=1e-12)
    assert ds["length"].values[-1, 0] == pytest.approx(exact, rel=1e-4)


def test_gaussian_rate_matches_the_formula_on_smooth_paths():
    """Γ² = (μ̇² + 2σ̇²)/σ² on μ(t) = 0.5·sin(t/30), σ(t) = exp(t/200), unevenly spaced steps."""
    z = _standard_sample(1000, exact=True)  # sample mean 0 and std 1 exactly: μ, σ are the path's
    steps = np.unique(np.round(np.linspace(0, 14, 120) ** 2)).astype(np.int64)
    t = steps.astype(np.float64)
    w = 0.5 * np.sin(t / 30)[:, None] + np.exp(t / 200)[:, None] * z
    ds = FisherVelocity(estimator="gaussian").compute(MemoryRun("smooth", steps, {"w": w}))
    tm = 0.5 * (t[:-1] + t[1:])
    mu_dot, sigma, sigma_dot = np.cos(tm / 30) / 60, np.exp(tm / 200), np.exp(tm / 200) / 200
    gamma = np.sqrt(mu_dot**2 + 2 * sigma_dot**2) / sigma
    np.testing.assert_allclose(ds["step_mid"].values, tm)
    # central differences at the midpoints: second order in Δt ≤ 27 steps, relative error ≲ 1e-2
    # at the largest steps (measured max 3.3e-3)
    np.testing.assert_allclose(ds["rate"].sel(layer="all").values, gamma, rtol=1e-2)


# measured with seed 0, N = 200 000, 40 steps. The default (⌊P^(1/3)⌋ = 58 bins, adaptive Δt
# with θ = 0.2) meets the 2 % (docs/fisher-accuracy.md has the whole grid). Without the
# adaptive step, the plain histogram over the full min–max range overestimates L: sparse tail
# bins turn single samples crossing an edge into jumps of √p, and the excess adds up over the
# 40 steps (151 bins, METHODS' 2.59·P^(1/3) rule: +16 % / +36 %; 50 bins: +1.6 % / +5.5 %).
# All are regression numbers of a fixed sample: deterministic up to rounding.
HISTOGRAM_BIAS = [
    ("shift", {}, 0.0027),
    ("rescale", {}, -0.0064),
    ("shift", {"adaptive": 0, "bins": 151}, 0.1573),
    ("rescale", {"adaptive": 0, "bins": 151}, 0.3602),
    ("shift", {"adaptive": 0, "bins": 50}, 0.0162),
    ("rescale", {"adaptive": 0, "bins": 50}, 0.0553),
]


@pytest.mark.parametrize(("kind", "params", "measured"), HISTOGRAM_BIAS)
def test_histogram_estimator_bias_is_what_we_measured(kind, params, measured):
    view, exact = _family(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)  # not asserted here
        ds = FisherVelocity(per_layer=False, **params).compute(view, backend="numba")
    rel = float(ds["length"].values[-1, 0]) / exact - 1
    assert rel == pytest.approx(measured, abs=5e-4)  # deterministic (fixed seed): only rounding
    if not params:
        assert abs(rel) < 0.02  # the accuracy requirement, met by the default
    else:
        assert rel > 0  # every pair: an overestimate, never an underestimate, on these families


def test_histogram_reference_end_to_end():
    """Pooled curves of a 3-tensor run against np.histogram of all values concatenated."""
    rng = np.random.default_rng(3)
    steps = np.array([0, 3, 4, 10, 11, 30])
    tensors = {"a.weight": rng.standard_normal((6, 40, 30)) + np.arange(6)[:, None, None] * 0.1,
               "a.bias": rng.standard_normal((6, 40)),
               "b.weight": rng.standard_normal((6, 10, 40)) * (1 + 0.2 * np.arange(6))[:, None, None]}
    view = MemoryRun("ref", steps, tensors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        ds = FisherVelocity(adaptive=0).compute(view)
    pooled = np.concatenate([v.reshape(6, -1) for v in tensors.values()], axis=1)
    n_bins = int(np.floor(pooled.shape[1] ** (1 / 3)))
    edges = np.linspace(pooled.min(), pooled.max(), n_bins + 1)
    p = np.stack([np.histogram(row, edges)[0] for row in pooled]) / pooled.shape[1]
    np.testing.assert_allclose(ds["length"].sel(layer="all"), geometry.information_length(p), rtol=1e-12)
    np.testing.assert_allclose(ds["rate"].sel(layer="all"), geometry.information_rate(p, steps)[0],
                               rtol=1e-12)
    np.testing.assert_allclose(ds["distance"].sel(layer="all"), geometry.distance_from_initial(p),
                               rtol=1e-12)
    assert ds.attrs["bins"]["all"] == n_bins and ds.attrs["range"]["all"] == [pooled.min(), pooled.max()]
    assert ds["layer"].values.tolist() == ["all", *tensors]
    b = tensors["a.bias"]
    edges_b = np.linspace(b.min(), b.max(), int(np.floor(40 ** (1 / 3))) + 1)
    pb = np.stack([np.histogram(row, edges_b)[0] for row in b]) / 40
    np.testing.assert_allclose(ds["length"].sel(layer="a.bias"), geometry.information_length(pb),
                               rtol=1e-12)
    with pytest.warns(UnreliableLengthWarning):  # independent noise on top of the drift
        weights = FisherVelocity(subset="weights", per_layer=False, adaptive=0).compute(view)
    assert weights["layer"].values.tolist() == ["all"]
    assert weights.attrs["excluded"] == {"a.bias": "1-D (bias or norm scale)"}


def test_clip_narrows_the_range_to_end_quantiles():
    view, _ = _family("shift", n=10_000, steps=6)
    ds = FisherVelocity(clip=0.01, per_layer=False).compute(view)
    w = view.read("w")
    lo = min(np.quantile(w[0], 0.01), np.quantile(w[-1], 0.01))
    hi = max(np.quantile(w[0], 0.99), np.quantile(w[-1], 0.99))
    assert ds.attrs["range"]["all"] == pytest.approx([lo, hi], rel=1e-12)
    assert w.min() < lo and hi < w.max()


# ---------------------------------------------------------------------------- backends, layers


def _random_run(seed: int = 5) -> MemoryRun:
    rng = np.random.default_rng(seed)
    steps = np.array([0, 1, 2, 5, 9, 20, 21, 40])
    drift = np.cumsum(rng.standard_normal(8)) * 0.2
    tensors = {"l0.weight": (rng.standard_normal((8, 64, 32)) + drift[:, None, None]).astype(np.float32),
               "l0.bias": rng.standard_normal((8, 64)).astype(np.float32),
               "l1.weight": (rng.standard_normal((8, 16, 64)) * np.exp(drift)[:, None, None])}
    return MemoryRun("random", steps, tensors)


@pytest.mark.parametrize("cls", [FisherVelocity, FisherDistance])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_backends_equal_the_numpy_reference(cls, backend):
    view = _random_run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        ref = cls(bins=30).compute(view, backend="numpy")
        got = cls(bins=30).compute(view, backend=backend)
    xr.testing.assert_allclose(got, ref, rtol=1e-9, atol=0)
    assert got.attrs == ref.attrs


@pytest.mark.parametrize("estimator", ["histogram", "gaussian"])
def test_one_layer_pooled_equals_the_layer(estimator):
    view = _random_run()
    one = MemoryRun("one", view.steps, {"w": view.read("l0.weight")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        ds = FisherVelocity(estimator=estimator).compute(one)
    dm = FisherDistance(estimator=estimator).compute(one)
    for var in ("rate", "length", "distance"):
        np.testing.assert_array_equal(ds[var].sel(layer="all"), ds[var].sel(layer="w"))
    np.testing.assert_array_equal(dm["distance"].sel(layer="all"), dm["distance"].sel(layer="w"))


# ---------------------------------------------------------------------------- subsampling check


def test_subsampling_warning_fires_on_snapshot_noise():
    """Independent samples of one distribution: every increment is the noise floor ≈ √(2B/P), so
    L over every 2nd snapshot is about half of L over all of them (ratio measured ≈ 0.5)."""
    rng = np.random.default_rng(11)
    view = MemoryRun("noise", np.arange(20), {"w": rng.standard_normal((20, 20_000))})
    with pytest.warns(UnreliableLengthWarning, match=r"run 'noise'.*snapshot noise"):
        ds = FisherVelocity(adaptive=0).compute(view)  # every pair: the noise adds up
    assert all(r < 0.9 for r in ds.attrs["subsample_ratio"].values())
    assert float(ds["length"].sel(layer="all")[-1]) > 0.9
    ctx = _no_warnings()
    try:  # the default's adaptive step does not add noise up: L stays near one noise floor
        ds = FisherVelocity().compute(view)
    finally:
        ctx.__exit__(None, None, None)
    assert float(ds["length"].sel(layer="all")[-1]) < 0.1
    with pytest.warns(UnreliableLengthWarning):  # the Gaussian moments are noisy too
        FisherVelocity(estimator="gaussian").compute(view)


def test_subsampling_check_is_quiet_on_a_smooth_large_shift():
    view, _ = _family("shift", n=100_000, steps=20)
    ctx = _no_warnings()
    try:
        ds = FisherVelocity(bins=50).compute(view)
        gauss = FisherVelocity(estimator="gaussian").compute(view)
    finally:
        ctx.__exit__(None, None, None)
    assert ds.attrs["subsample_ratio"]["all"] == pytest.approx(1.0, abs=0.03)
    assert gauss.attrs["subsample_ratio"]["all"] == pytest.approx(1.0, abs=1e-9)  # a shift: exact
    short = FisherVelocity().compute(MemoryRun("two", [0, 1], {"w": view.read("w", [0, 20])}))
    assert short.attrs["subsample_ratio"] == {}  # nothing to subsample with 2 checkpoints


# ---------------------------------------------------------------------------- fisher-distance


def test_distance_matrix_is_pairwise_fisher_rao_of_the_histograms():
    view = _random_run()
    dm = FisherDistance(bins=30).compute(view)
    d = dm["distance"].sel(layer="all").values
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    pooled = np.concatenate([view.read(t.name).reshape(8, -1).astype(np.float64) for t in view.tensors],
                            axis=1)
    p = geometry.histograms(pooled, np.linspace(pooled.min(), pooled.max(), 31), backend="numpy")
    expected = geometry.fisher_rao(p[:, None, :], p[None, :, :])
    np.testing.assert_allclose(d, expected, rtol=1e-12, atol=1e-15)
    assert dm["step"].values.tolist() == dm["step_other"].values.tolist() == view.steps.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        vel = FisherVelocity(bins=30, adaptive=0).compute(view)
    # first row = distance from init; the superdiagonal = the increments of L (every pair)
    np.testing.assert_allclose(d[0], vel["distance"].sel(layer="all"), rtol=1e-12)
    np.testing.assert_allclose(np.cumsum(np.diag(d, 1)), vel["length"].sel(layer="all")[1:], rtol=1e-12)


def test_gaussian_distance_matrix_matches_fisher_velocity():
    view, _ = _family("rescale", n=5000, steps=8, exact=True)
    dm = FisherDistance(estimator="gaussian").compute(view)
    vel = FisherVelocity(estimator="gaussian").compute(view)
    d = dm["distance"].sel(layer="all").values
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    np.testing.assert_allclose(d[0], vel["distance"].sel(layer="all"), rtol=1e-12)
    # a rescale is a geodesic: D[i, j] = √2·|ln(σ_j/σ_i)|
    ln_sigma = np.log(2.0) * np.linspace(0, 1, 9)
    np.testing.assert_allclose(d, np.sqrt(2) * np.abs(ln_sigma[:, None] - ln_sigma[None]), atol=1e-12)


# ---------------------------------------------------------------------------- contract, errors


def test_conformance_kit():
    # the kit's synthetic run is a random walk: the subsampling check rightly warns (ratio ≈ 0.65)
    with pytest.warns(UnreliableLengthWarning):
        check_analyzer(FisherVelocity)
    check_analyzer(FisherDistance)
    smooth, _ = _family("shift", n=20_000, steps=6)
    check_analyzer(FisherVelocity, view=smooth)


@pytest.mark.parametrize("cls", [FisherVelocity, FisherDistance])
def test_refuses_what_it_cannot_analyse(cls):
    with pytest.raises(AnalyzerInputError, match=r"run 'solo' has 1 checkpoint\(s\)"):
        cls().compute(MemoryRun("solo", [0], {"w": np.ones((1, 3, 3))}))
    biases = MemoryRun("flat", [0, 1], {"b": np.ones((2, 3))})
    with pytest.raises(AnalyzerInputError, match="run 'flat': no tensor matches subset=weights"):
        cls(subset="weights").compute(biases)


def test_constant_tensor_gives_zero_or_nan_not_errors():
    view = MemoryRun("const", [0, 1, 2], {"w": np.ones((3, 4, 4))})
    ctx = _no_warnings()
    try:
        hist = FisherVelocity().compute(view)
        gauss = FisherVelocity(estimator="gaussian").compute(view)
    finally:
        ctx.__exit__(None, None, None)
    assert (hist["length"].values == 0).all() and (hist["distance"].values == 0).all()  # never moves
    assert hist.attrs["subsample_ratio"] == {"all": 1.0, "w": 1.0}
    assert np.isnan(gauss["length"].values).all()  # σ = 0: no Gaussian
    assert gauss.attrs["subsample_ratio"] == {}


def test_adaptive_anchors():
    from dynlab.kernels.fisher import adaptive_anchors, adaptive_length, fisher_rao

    # a point mass moving along 6 bins: consecutive snapshots are π apart
    p = np.eye(6)
    np.testing.assert_array_equal(adaptive_anchors(p, 0.0), np.arange(6))
    np.testing.assert_array_equal(adaptive_anchors(p, 1.0), np.arange(6))
    # a slow mix between two distributions: distance grows monotonically from the start
    a, b = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.2, 0.7])
    path = np.stack([(1 - s) * a + s * b for s in np.linspace(0, 1, 21)])
    kept = adaptive_anchors(path, 0.3)
    assert kept[0] == 0 and kept[-1] == 20 and np.all(np.diff(kept) > 0)
    steps = fisher_rao(path[kept[:-2]], path[kept[1:-1]])
    assert np.all(steps >= 0.3)  # every step but the closing one reached θ
    closing = fisher_rao(path[kept[-2]], path[kept[-1]])
    assert closing >= 0.15  # a closing step shorter than θ/2 is merged into the previous one
    length, anchors = adaptive_length(path, np.arange(21.0), 0.3)
    np.testing.assert_array_equal(anchors, kept)
    np.testing.assert_allclose(length[kept][1:], np.cumsum(fisher_rao(path[kept[:-1]], path[kept[1:]])))
    assert length[0] == 0 and np.all(np.diff(length) >= 0)


# ---------------------------------------------------------------------------- kde estimator


@pytest.mark.parametrize("kind", ["shift", "rescale"])
def test_kde_estimator_meets_two_percent_on_coherent_moves(kind):
    """A KDE of a N(μ, σ²) sample is ≈ N(μ, σ² + h²): L is Δμ/√(σ² + h²) for a shift and
    √2·ln(√(4σ₀² + h²)/√(σ₀² + h²)) for σ → 2σ — within 2 % of the true L, and closer still to that
    smoothed value (measured −0.06 % / −0.38 %)."""
    view, exact = _family(kind)
    ds = FisherVelocity(estimator="kde", per_layer=False).compute(view, backend="numba")  # no warning
    length = float(ds["length"].sel(layer="all")[-1])
    h = ds.attrs["kde"]["all"]["h"]
    smoothed = (2.0 / np.sqrt(1 + h * h) if kind == "shift"
                else np.sqrt(2.0) * np.log(np.sqrt(4 + h * h) / np.sqrt(1 + h * h)))
    assert abs(length / exact - 1) < 0.02
    assert abs(length / smoothed - 1) < 0.005


def test_kde_densities_equal_a_direct_kernel_sum():
    """The binned KDE on the grid equals Σ_i φ((w − x_i)/h) evaluated at the cell centres,
    normalised, within the binning error (cells of h/4)."""
    from dynlab.analyzers import _fisher as fs

    x = np.random.default_rng(3).standard_normal((2, 3000)) * [[1.0], [2.0]]
    view = MemoryRun("k", np.arange(2), {"w": x})
    sc = fs.scan(view, ["w"], {}, 0.0)
    grid = fs.kde_grids(sc, 1.0)["w"]
    counts = dict(fs.count(view, ["w"], {"all": grid.edges, "w": grid.edges}, "numpy", True))["w"]
    got = fs.kde_pdfs(counts, grid)
    centres = 0.5 * (grid.edges[1:] + grid.edges[:-1])
    direct = np.exp(-0.5 * ((centres[None, :, None] - x[:, None, :]) / grid.h) ** 2).sum(axis=2)
    direct /= direct.sum(axis=1, keepdims=True)
    assert np.abs(got - direct).max() < 0.02 * direct.max()
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_kde_distance_matrix_matches_fisher_velocity():
    view = _random_run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableLengthWarning)
        vel = FisherVelocity(estimator="kde").compute(view, backend="numba")
        dist = FisherDistance(estimator="kde").compute(view, backend="numba")
    np.testing.assert_allclose(dist["distance"].isel(step=0).values, vel["distance"].T.values,
                               rtol=1e-9, atol=1e-12)
    assert vel.attrs["kde"] == dist.attrs["kde"]


def test_kde_bandwidth_is_silverman_on_the_median_deviation():
    """h = factor·1.06·σ̄·P^(−1/5), σ̄ the median over steps of the (population) standard deviation;
    the grid spans [lo − 4h, hi + 4h] in cells of h/4."""
    from dynlab.analyzers import _fisher as fs

    x = np.random.default_rng(4).standard_normal((3, 500)) * np.array([[1.0], [3.0], [2.0]]) + 7
    sc = fs.scan(MemoryRun("k", np.arange(3), {"w": x}), ["w"], {}, 0.0)
    grid = fs.kde_grids(sc, 0.5)["w"]
    assert grid.h == pytest.approx(0.5 * 1.06 * np.median(x.std(axis=1)) * 500 ** -0.2, rel=1e-12)
    assert grid.edges[0] == pytest.approx(x.min() - 4 * grid.h, rel=1e-12)
    assert grid.edges[-1] == pytest.approx(x.max() + 4 * grid.h, rel=1e-12)
    assert np.diff(grid.edges).max() <= grid.h / fs.KDE_CELLS_PER_H * (1 + 1e-9)


def test_kde_effective_bins_never_exceed_the_grid_cells():
    """A range of many bandwidths (an outlier at one of three steps: the median σ ignores it) caps
    the grid at KDE_GRID[1] cells: the noise floor counts at most that many independent pieces."""
    from dynlab.analyzers import _fisher as fs

    x = np.random.default_rng(5).standard_normal((3, 1000)) * 1e-3
    x[-1, 0] = 1e3
    sc = fs.scan(MemoryRun("k", np.arange(3), {"w": x}), ["w"], {}, 0.0)
    grid = fs.kde_grids(sc, 1.0)["w"]
    assert len(grid.edges) - 1 == fs.KDE_GRID[1]
    assert grid.effective_bins <= len(grid.edges) - 1


def test_kde_on_a_constant_tensor_gives_zero():
    view = MemoryRun("const", [0, 1, 2], {"w": np.full((3, 4, 4), 0.25)})
    ctx = _no_warnings()
    try:
        ds = FisherVelocity(estimator="kde").compute(view)
    finally:
        ctx.__exit__(None, None, None)
    assert (ds["length"].values == 0).all() and (ds["distance"].values == 0).all()
    assert ds.attrs["kde"]["w"]["h"] == pytest.approx(1.06 * 16 ** -0.2)  # no spread: σ̄ = 1


def test_a_layer_without_finite_values_does_not_widen_the_pooled_range():
    from dynlab.analyzers import _fisher as fs

    x = np.random.default_rng(6).uniform(5, 6, (3, 200))
    view = MemoryRun("nan", [0, 1, 2], {"a.weight": np.full((3, 10), np.nan), "b.weight": x})
    sc = fs.scan(view, ["a.weight", "b.weight"], {}, 0.0)
    assert (sc.lo["all"], sc.hi["all"]) == (x.min(), x.max())


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
def test_distance_in_prediction_space(backend):
    """space=predictions: the per-sample Bhattacharyya matrix of the stored predictions. Analytic:
    uniform vs one-hot predictions are ½·ln C apart; a brute-force double loop for the rest."""
    rng = np.random.default_rng(5)
    c, n = 4, 6
    uniform = np.full((n, c), 1 / c)
    onehot = np.eye(c)[rng.integers(0, c, n)]
    mixed = rng.dirichlet(np.ones(c), size=n)
    p = np.stack([uniform, onehot, mixed])
    run = MemoryRun("r", [0, 5, 9], {"w": rng.standard_normal((3, 4))}, predictions=p)
    ds = FisherDistance(space="predictions").compute(run, backend=backend)
    d = ds["distance"].sel(layer="predictions").values
    assert d[0, 1] == pytest.approx(0.5 * np.log(c), rel=1e-12)
    p = run.read_predictions().astype(np.float64)  # as stored: float32
    brute = np.array([[np.mean(-np.log(np.clip(np.sqrt(a * b).sum(axis=1), 1e-12, 1))) for b in p]
                      for a in p])
    np.fill_diagonal(brute, 0.0)  # the kernel's diagonal is exactly 0 (float32 rows sum to 1 ± 1e-7)
    np.testing.assert_allclose(d, brute, rtol=1e-12, atol=1e-15)
    assert ds.attrs["space"] == "predictions" and list(ds["step"].values) == [0, 5, 9]


def test_prediction_space_needs_predictions():
    run = MemoryRun("r", [0, 1], {"w": np.zeros((2, 3))})
    with pytest.raises(AnalyzerInputError, match="run 'r' has no probe predictions"):
        FisherDistance(space="predictions").compute(run)
    check_analyzer(FisherDistance, view=MemoryRun("r", [0, 1, 2], {"w": np.arange(6.0).reshape(3, 2)},
                                                  predictions=np.full((3, 2, 2), 0.5)))
