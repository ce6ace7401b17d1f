"""dynlab.scaling: the Houdayer–Hartmann collapse quality, the collapse fit and the shift fit
(METHODS.md §9).

S against a point-by-point loop written from the definition and against pyfssa's ``quality``;
exact collapses (S = 0); the METHODS §9 example, where a lone Nelder–Mead sticks and the global
search must not; fits against pyfssa's ``autoscale``; ``fit_shift`` against exact data and scipy's
``curve_fit``.
"""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

from dynlab import scaling
from dynlab.errors import DynlabError
from dynlab.scaling import ScalingInputError, collapse, fit_shift, quality

BACKENDS = ["numpy", "numba"]


def logistic_data(seed: int = 0, noise: float = 0.01, truth=(1.0, 2.0, 0.0), n: int = 41):
    """METHODS §9: f(x) = 1/(1+e^(−x)), L = 10, 100, 1000, ρ on n points in [0.9, 1.1]."""
    rng = np.random.default_rng(seed)
    sizes = np.array([10.0, 100.0, 1000.0])
    rho = np.linspace(0.9, 1.1, n)
    x_c, nu, zeta = truth
    a = sizes[:, None] ** (zeta / nu) / (1 + np.exp(-sizes[:, None] ** (1 / nu) * (rho - x_c)))
    da = noise * a
    return sizes, rho, a + rng.standard_normal(a.shape) * da, da


def loop_quality(sizes, rho, a, da, x_c, nu, zeta):
    """The definition, one point at a time (rows may hold NaN = missing)."""
    k = len(sizes)
    rows = []
    for i in range(k):
        r = rho if np.ndim(rho) == 1 else rho[i]
        ok = np.isfinite(r) & np.isfinite(a[i]) & np.isfinite(da[i])
        order = np.argsort(r[ok])
        f = sizes[i] ** (-zeta / nu)
        rows.append((sizes[i] ** (1 / nu) * (r[ok][order] - x_c), f * a[i][ok][order],
                     f * da[i][ok][order]))
    per_size = []
    for i in range(k):
        terms = []
        for j in range(len(rows[i][0])):
            xij = rows[i][0][j]
            pts = []
            for ip in range(k):
                if ip == i:
                    continue
                xp = rows[ip][0]
                for jp in range(len(xp) - 1):
                    if xp[jp] <= xij < xp[jp + 1]:
                        pts += [(xp[q], rows[ip][1][q], rows[ip][2][q]) for q in (jp, jp + 1)]
            if not pts:
                continue
            px, py, pd = (np.array(v) for v in zip(*pts, strict=True))
            w = pd ** -2.0
            # weighted least squares line y = b + m x and the variance of its value at xij
            design = np.stack([np.ones_like(px), px], 1)
            cov = np.linalg.inv(design.T @ (w[:, None] * design))
            b, m = cov @ design.T @ (w * py)
            g = np.array([1.0, xij])
            terms.append((rows[i][1][j] - b - m * xij) ** 2 / (rows[i][2][j] ** 2 + g @ cov @ g))
        if terms:
            per_size.append(np.mean(terms))
    return np.mean(per_size)


# ---------------------------------------------------------------------------- the quality S


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quality_equals_point_by_point_loop(backend, seed):
    # irregular, different grids per size, some missing points, 4 sizes
    rng = np.random.default_rng(seed)
    sizes = np.array([8.0, 16.0, 32.0, 64.0])
    rho = np.sort(rng.uniform(0.5, 1.5, (4, 30)), axis=1)
    a = np.tanh(sizes[:, None] ** 0.7 * (rho - 1.02)) * sizes[:, None] ** 0.1
    a += 0.05 * rng.standard_normal(a.shape)
    da = rng.uniform(0.02, 0.08, a.shape)
    a[rng.random(a.shape) < 0.1] = np.nan
    perm = rng.permutation(30)  # unsorted input is sorted by the API
    params = dict(x_c=0.98, nu=1.3, zeta=0.2)
    got = quality(sizes, rho[:, perm], a[:, perm], da[:, perm], backend=backend, **params)
    assert got == pytest.approx(loop_quality(sizes, rho, a, da, **params), rel=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_collapse_has_zero_quality(backend):
    # a linear master curve is reproduced exactly by the two-point lines: S = 0 at the truth only
    sizes = np.array([4.0, 16.0, 64.0])
    rho = np.linspace(-1, 1, 25)
    a = sizes[:, None] ** (0.5 / 1.5) * (sizes[:, None] ** (1 / 1.5) * (rho - 0.1) * 2 + 3)
    da = np.full_like(a, 0.01)
    assert quality(sizes, rho, a, da, x_c=0.1, nu=1.5, zeta=0.5, backend=backend) < 1e-18
    assert quality(sizes, rho, a, da, x_c=0.1, nu=1.5, zeta=0.6, backend=backend) > 1.0


def test_quality_independent_of_size_order():
    sizes, rho, a, da = logistic_data()
    p = dict(x_c=1.01, nu=1.9, zeta=0.05)
    perm = [2, 0, 1]
    assert quality(sizes[perm], rho, a[perm], da[perm], **p) == pytest.approx(
        quality(sizes, rho, a, da, **p), rel=1e-12)


def test_scale_formula():
    sizes, rho, a, da = logistic_data()
    x, y, dy = scaling.scale(sizes, rho, a, da, x_c=1.0, nu=2.0, zeta=0.4)
    np.testing.assert_allclose(x, np.sqrt(sizes)[:, None] * (rho - 1.0), rtol=1e-14)
    np.testing.assert_allclose(y, sizes[:, None] ** -0.2 * a, rtol=1e-14)
    np.testing.assert_allclose(dy, sizes[:, None] ** -0.2 * da, rtol=1e-14)


# ---------------------------------------------------------------------------- pyfssa, the peer


@pytest.fixture
def fssa(monkeypatch):
    """pyfssa 0.7.6 on numpy 2 / scipy 1.17, through three shims (its source is not edited)."""
    import scipy.optimize._optimize as sopt

    monkeypatch.setattr(np, "asfarray", lambda a, dtype=float: np.asarray(a, dtype=dtype), raising=False)
    monkeypatch.setattr(np, "int", int, raising=False)
    stand_in = types.ModuleType("scipy.optimize.optimize")
    stand_in.OptimizeResult = sopt.OptimizeResult
    stand_in._status_message = sopt._status_message
    stand_in.wrap_function = sopt._wrap_scalar_function
    monkeypatch.setitem(sys.modules, "scipy.optimize.optimize", stand_in)
    with warnings.catch_warnings():  # pkg_resources deprecation at import
        warnings.simplefilter("ignore")
        import fssa
    return fssa


@pytest.mark.parametrize("params", [(1.0, 2.0, 0.0), (1.013, 1.86, 0.097), (0.95, 1.8, 0.1),
                                    (1.05, 3.0, -0.3)])
def test_quality_equals_fssa(fssa, params):
    sizes, rho, a, da = logistic_data()
    theirs = fssa.quality(*fssa.scaledata(sizes, rho, a, da, *params))
    for backend in BACKENDS:
        ours = quality(sizes, rho, a, da, x_c=params[0], nu=params[1], zeta=params[2], backend=backend)
        assert ours == pytest.approx(theirs, rel=1e-10)


def test_methods_example_global_search_beats_lone_nelder_mead(fssa):
    """METHODS §9: from (0.95, 1.8, 0.1) a lone Nelder–Mead sticks; the global search reaches S ≈ 1
    with the truth inside the error bars, and agrees with pyfssa started at the truth."""
    sizes, rho, a, da = logistic_data()
    start = (0.95, 1.8, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyfssa's own RuntimeWarnings (empty slices)
        stuck = fssa.autoscale(sizes, rho, a, da, *start)
        near = fssa.autoscale(sizes, rho, a, da, 1.0, 2.0, 0.0)
    res = collapse(sizes, rho, a, da, x_c0=start[0], nu0=start[1], zeta0=start[2])
    assert stuck.fun > 2.0  # the local minimum this example is about (S = 5.8 on this noise)
    assert 0.5 < res.quality < 1.5
    assert res.quality <= near.fun + 1e-9  # at least as good as pyfssa from the truth
    truth = np.array([1.0, 2.0, 0.0])
    # the curvature errors (ΔS = S_min convention) and the bootstrap both cover the truth
    assert np.all(np.abs(res.params - truth) < res.errors)
    assert np.all(np.abs(res.params - truth) < 3 * res.boot_err)
    # pyfssa's fit from the truth: the same exponents within the combined errors
    ours, theirs = res.params, np.asarray(near.x)
    assert np.all(np.abs(ours - theirs) < np.hypot(res.errors, near.errors))
    assert np.all(res.boot_err < res.errors)  # the ΔS = S_min convention is the conservative one


@pytest.mark.parametrize("start", [(1.0, 2.0, 0.0), (1.05, 2.2, -0.1), (0.92, 1.0, 0.5), (1.08, 6.0, 1.0)])
def test_collapse_from_near_and_far_starts(start):
    sizes, rho, a, da = logistic_data(seed=3)
    res = collapse(sizes, rho, a, da, x_c0=start[0], nu0=start[1], zeta0=start[2], n_boot=0)
    ref = quality(sizes, rho, a, da, x_c=1.0, nu=2.0, zeta=0.0)
    assert res.quality <= ref  # never worse than the truth itself
    assert np.all(np.abs(res.params - [1.0, 2.0, 0.0]) < res.errors)
    assert np.isnan(res.boot_err).all() and res.boot.shape == (0, 3)
    assert res.quality == pytest.approx(quality(sizes, rho, a, da, x_c=res.x_c, nu=res.nu, zeta=res.zeta))


def test_collapse_per_size_grids_missing_points_and_order():
    rng = np.random.default_rng(5)
    sizes = np.array([8.0, 16.0, 32.0, 64.0])
    truth = (0.3, 1.5, 0.6)
    rho = np.sort(rng.uniform(-0.2, 0.8, (4, 80)), axis=1)
    big = sizes[:, None]
    clean = big ** (truth[2] / truth[1]) * np.tanh(big ** (1 / truth[1]) * (rho - truth[0]))
    da = 0.01 + 0.01 * np.abs(clean)
    a = clean + rng.standard_normal(clean.shape) * da
    a[rng.random(a.shape) < 0.15] = np.nan
    res = collapse(sizes, rho, a, da, x_c0=0.25, nu0=1.7, zeta0=0.5, n_boot=5)
    # S(truth) = 1.36 here: the two-point lines miss some of tanh's curvature at this sampling
    assert res.quality <= quality(sizes, rho, a, da, x_c=0.3, nu=1.5, zeta=0.6) < 1.5
    assert np.all(np.abs(res.params - truth) < res.errors)
    # scaled data come back in the input's layout, NaN where missing
    assert res.y.shape == a.shape and np.array_equal(np.isnan(res.y), np.isnan(a))
    perm = [3, 1, 0, 2]
    again = collapse(sizes[perm], rho[perm], a[perm], da[perm], x_c0=0.25, nu0=1.7, zeta0=0.5, n_boot=0)
    np.testing.assert_allclose(again.params, res.params, rtol=1e-3, atol=1e-4)


def test_fix_keeps_parameters():
    sizes, rho, a, da = logistic_data(seed=1)
    res = collapse(sizes, rho, a, da, x_c0=0.97, nu0=2.3, zeta0=0.0, fix=("zeta",), n_boot=3)
    assert res.zeta == 0.0 and res.dzeta == 0.0 and np.all(res.boot[:, 2] == 0.0)
    assert abs(res.x_c - 1) < res.dx_c and abs(res.nu - 2) < res.dnu


def test_unweighted_collapse():
    sizes, rho, a, _ = logistic_data(seed=2, noise=0.002)
    res = collapse(sizes, rho, a, None, x_c0=1.02, nu0=1.8, zeta0=0.05, n_boot=0)
    assert abs(res.x_c - 1) < 0.01 and abs(res.nu - 2) < 0.2 and abs(res.zeta) < 0.05


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(sizes=[10.0]), "at least 2 sizes"),
    (dict(sizes=[10.0, -1.0, 5.0]), "positive"),
    (dict(y=np.ones((2, 41))), r"\(k, n\)"),
    (dict(dy=np.zeros((3, 41))), "dy must be positive"),
    (dict(fix=("rho",)), "unknown parameter"),
    (dict(fix=("x_c", "nu", "zeta")), "no parameter"),
    (dict(nu0=-1.0), "nu0 > 0"),
    (dict(bounds={"nu": (0.0, 2.0)}), "low > 0"),
    (dict(grid=1), "grid must be"),
])
def test_bad_input(kwargs, match):
    sizes, rho, a, da = logistic_data()
    args = dict(sizes=sizes, x=rho, y=a, dy=da, x_c0=1.0, nu0=2.0, zeta0=0.0, n_boot=0) | kwargs
    with pytest.raises(ScalingInputError, match=match) as info:
        collapse(**args)
    assert isinstance(info.value, DynlabError)


# ---------------------------------------------------------------------------- shift of t*


def test_fit_shift_exact():
    n = np.array([16.0, 32.0, 64.0, 128.0, 256.0])
    t = 5.0 - 3.0 * n ** (-1 / 1.5)
    res = fit_shift(n, t, np.full(5, 0.01))
    assert (res.t_inf, res.c, res.nu) == pytest.approx((5.0, -3.0, 1.5), rel=1e-6)
    assert res.chi2 < 1e-12 and res.dof == 2
    np.testing.assert_allclose(res.predict(n), t, rtol=1e-9)


def test_fit_shift_matches_curve_fit():
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(4)
    n = np.array([8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
    dt = np.full(6, 0.05)
    t = 4.0 + 6.0 * n ** (-1 / 0.8) + rng.standard_normal(6) * dt
    res = fit_shift(n, t, dt)
    popt, pcov = curve_fit(lambda x, a, c, nu: a + c * x ** (-1 / nu), n, t, p0=(res.t_inf, res.c, res.nu),
                           sigma=dt, absolute_sigma=True)
    np.testing.assert_allclose([res.t_inf, res.c, res.nu], popt, rtol=1e-4)
    np.testing.assert_allclose([res.dt_inf, res.dc, res.dnu], np.sqrt(np.diag(pcov)), rtol=1e-3)
    assert abs(res.t_inf - 4.0) < 3 * res.dt_inf and abs(res.nu - 0.8) < 3 * res.dnu


def test_fit_shift_bad_input():
    with pytest.raises(ScalingInputError, match="at least 3"):
        fit_shift([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ScalingInputError, match="positive"):
        fit_shift([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 0.0, 1.0])


def test_fit_shift_errors_undefined_when_it_interpolates_without_errors():
    """3 sizes, 3 parameters, no dt_star: χ² = 0 carries no scale, so the errors are NaN (not the
    errors of an arbitrary unit weight); with dt_star they come from it."""
    n = np.array([16.0, 64.0, 256.0])
    t = 5.0 - 3.0 * n ** (-1 / 1.5)
    bare = fit_shift(n, t)
    assert (bare.t_inf, bare.c, bare.nu) == pytest.approx((5.0, -3.0, 1.5), rel=1e-6)
    assert np.isnan([bare.dt_inf, bare.dc, bare.dnu]).all() and bare.dof == 0
    weighted = fit_shift(n, t, np.full(3, 0.01))
    assert np.isfinite([weighted.dt_inf, weighted.dc, weighted.dnu]).all()
    # errors scale with dt_star when the fit interpolates
    twice = fit_shift(n, t, np.full(3, 0.02))
    np.testing.assert_allclose([twice.dt_inf, twice.dc, twice.dnu],
                               2 * np.array([weighted.dt_inf, weighted.dc, weighted.dnu]), rtol=1e-6)


def test_coverage_counts_the_points_another_size_brackets():
    from dynlab.scaling import coverage

    a, b, c = np.array([0.0, 1.0, 2.0]), np.array([1.5, 2.5, 3.5]), np.array([10.0, 11.0])
    # a: 2.0 ∈ [1.5, 3.5); b: 1.5 ∈ [0, 2); c: none → 2 of 8
    assert coverage([a, b, c]) == pytest.approx(2 / 8)
    assert coverage([a, a + 100]) == 0.0
    rng = np.random.default_rng(0)
    xs = [np.sort(rng.uniform(-k, k, 20)) for k in (1, 2, 4)]
    brute = np.mean([any(j != i and xs[j][0] <= v < xs[j][-1] for j in range(3))
                     for i in range(3) for v in xs[i]])
    assert coverage(xs) == pytest.approx(brute)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_quality_at_extreme_exponents_is_not_an_exception(backend):
    """ν → 0 with ζ > 0 underflows L^(−ζ/ν) to 0: the weights 1/dy² overflow. S must come out
    as a number or inf (the optimizer then moves away), never a ZeroDivisionError (the numba
    kernel once raised it inside the demo's fit)."""
    from dynlab.scaling import quality

    sizes = np.array([16.0, 32.0, 64.0])
    x = np.linspace(0.0, 4.0, 30)
    y = np.stack([np.exp(-x) * s for s in sizes])
    s = quality(sizes, x, y, 0.2 * y, x_c=1.0, nu=0.0074, zeta=0.83, backend=backend)
    assert np.isnan(s) or s >= 0
