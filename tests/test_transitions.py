"""dynlab.transitions: regularised log–log derivatives and the transition detectors (METHODS.md §8).

Crossovers between two power laws with a known t0 (smooth and sharp, with noise) found within 5 %
in ln t; pure power laws (noisy or not) report no transition; the Savitzky–Golay derivatives
against a point-by-point local cubic fit; analytic exponents; invariance under rescaling t and L.
"""

from __future__ import annotations

import numpy as np
import pytest

from dynlab.errors import DynlabError
from dynlab.transitions import TransitionInputError, derivatives, detect

T0, A1, A2 = 100.0, 1.0, 0.3


def smooth_crossover(seed: int, noise: float, n: int = 80, s: float = 2.0, a2: float = A2):
    """L = t^a1 (1 + (t/t0)^s)^((a2 − a1)/s): the exponent y' = a1 + (a2 − a1)·σ(s(ln t − ln t0)),
    whose derivative y'' is most negative exactly at t0; multiplicative noise e^(noise·ε)."""
    rng = np.random.default_rng(seed)
    t = np.geomspace(1, 1e4, n)
    clean = t ** A1 * (1 + (t / T0) ** s) ** ((a2 - A1) / s)
    return t, clean * np.exp(noise * rng.standard_normal(n))


def sharp_crossover(seed: int, noise: float, n: int = 80):
    rng = np.random.default_rng(seed)
    t = np.geomspace(1, 1e4, n)
    clean = np.where(t < T0, t ** A1, T0 ** (A1 - A2) * t ** A2)
    return t, clean * np.exp(noise * rng.standard_normal(n))


def power_law(seed: int, noise: float, n: int = 80):
    rng = np.random.default_rng(seed)
    t = np.geomspace(1, 1e4, n)
    return t, 3 * t ** 0.7 * np.exp(noise * rng.standard_normal(n))


def rel_ln_error(t_star: float) -> float:
    return abs(np.log(t_star) - np.log(T0)) / np.log(T0)


# ---------------------------------------------------------------------------- crossovers found


@pytest.mark.parametrize("noise", [0.01, 0.02])
@pytest.mark.parametrize("seed", range(4))
def test_smooth_crossover_found_within_5_percent(seed, noise):
    r = detect(*smooth_crossover(seed, noise), n_boot=40, seed=seed)
    assert r.found and r.reason == ""
    assert rel_ln_error(r.t_star) < 0.05
    assert r.interval[0] < T0 < r.interval[1]
    # the exponent falls from ≈ a1 to ≈ a2 (the smoothing takes a little of the ends)
    assert 0.5 < r.drop < A1 - A2 + 0.1


@pytest.mark.parametrize("method", ["curvature", "changepoint"])
@pytest.mark.parametrize("seed", range(3))
def test_sharp_crossover_found_by_both_methods(method, seed):
    r = detect(*sharp_crossover(seed, 0.02), method=method, n_boot=30, seed=seed)
    assert r.found
    assert rel_ln_error(r.t_star) < 0.05
    if method == "changepoint":
        # one break (BIC), pieces with the true exponents
        assert len(r.breaks) == 1 and rel_ln_error(r.breaks[0]) < 0.05
        np.testing.assert_allclose(r.exponents, [A1, A2], atol=0.03)
        assert r.drop == pytest.approx(A1 - A2, abs=0.05)


def test_noise_free_crossover_curvature_minimum_at_t0():
    r = detect(*smooth_crossover(0, 0.0, n=200), n_boot=20)
    assert rel_ln_error(r.t_star) < 0.01


# ---------------------------------------------------------------------------- no false transitions


@pytest.mark.parametrize("method", ["curvature", "changepoint"])
@pytest.mark.parametrize(("seed", "noise"), [(0, 0.0), (1, 0.02), (2, 0.05), (3, 0.05)])
def test_pure_power_law_reports_none(method, seed, noise):
    r = detect(*power_law(seed, noise), method=method, n_boot=30, seed=seed)
    assert not r.found and np.isnan(r.t_star) and r.reason
    if noise == 0.0:
        assert abs(r.drop) < 1e-8  # no curvature at all, not merely an uncertain one
    if method == "changepoint":
        assert len(r.breaks) == 0 and r.exponents == pytest.approx([0.7], abs=0.02)


def test_accelerating_crossover_is_not_a_slowdown():
    # y'' > 0 everywhere that matters: the detector looks for a fall of the exponent only
    r = detect(*smooth_crossover(0, 0.01, a2=1.7), n_boot=20)
    assert not r.found


# ---------------------------------------------------------------------------- derivatives


def test_power_law_derivatives_are_exact():
    t, y = power_law(0, 0.0)
    for smoother in ("savgol", "spline"):
        _, d1, d2 = derivatives(t, y, smoother=smoother)
        ok = np.isfinite(d1)
        assert ok.sum() > 100
        np.testing.assert_allclose(d1[ok], 0.7, atol=1e-8)
        np.testing.assert_allclose(d2[ok], 0.0, atol=1e-7)


def test_savgol_equals_local_cubic_fit():
    """Savitzky–Golay is, by definition, the derivative at the centre of a least-squares cubic
    through the window: check it point by point on the interpolated uniform grid."""
    t, y = smooth_crossover(1, 0.02)
    n_grid, smoothing = 128, 0.2
    t_grid, d1, d2 = derivatives(t, y, smoother="savgol", smoothing=smoothing, n_grid=n_grid)
    x, u = np.log(t), np.log(y)
    grid = np.log(t_grid)
    h = grid[1] - grid[0]
    m = round(smoothing * (x[-1] - x[0]) / h) | 1
    ug = np.interp(grid, x, u)
    half = m // 2
    for j in range(half, n_grid - half):
        if not np.isfinite(d1[j]):
            continue
        z = grid[j - half: j + half + 1] - grid[j]
        c = np.polyfit(z, ug[j - half: j + half + 1], 3)
        assert d1[j] == pytest.approx(c[2], abs=1e-8)
        assert d2[j] == pytest.approx(2 * c[1], abs=1e-6)


def test_spline_exponent_matches_analytic():
    t, y = smooth_crossover(0, 0.0, n=200)
    t_grid, d1, d2 = derivatives(t, y, smoothing=0.1)
    z = 2.0 * (np.log(t_grid) - np.log(T0))
    exact1 = A1 + (A2 - A1) / (1 + np.exp(-z))
    exact2 = 2.0 * (A2 - A1) * np.exp(-z) / (1 + np.exp(-z)) ** 2
    ok = np.isfinite(d1)
    # smoothing bias: the spline flattens the curvature peak by a few per cent at this width
    np.testing.assert_allclose(d1[ok], exact1[ok], atol=0.01)
    np.testing.assert_allclose(d2[ok], exact2[ok], atol=0.03)


# ---------------------------------------------------------------------------- invariances, input


def test_rescaling_time_and_length():
    t, y = smooth_crossover(2, 0.01)
    a = detect(t, y, n_boot=20)
    b = detect(7.0 * t, 0.3 * y, n_boot=20)
    assert b.t_star == pytest.approx(7.0 * a.t_star, rel=1e-8)
    assert b.drop == pytest.approx(a.drop, rel=1e-8)


def test_nonpositive_points_left_out():
    t, y = smooth_crossover(0, 0.01)
    t2 = np.concatenate([[0.0], t])
    y2 = np.concatenate([[0.0], y])  # L(0) = 0 at the first checkpoint
    a, b = detect(t, y, n_boot=20), detect(t2, y2, n_boot=20)
    assert b.n_used == len(t) and b.t_star == a.t_star


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(method="knee"), "method must be"),
    (dict(smoother="tv"), "smoother must be"),
    (dict(smoothing=0.0), "smoothing must be"),
    (dict(n_boot=3), "n_boot"),
    (dict(min_size=2, method="changepoint"), "min_size"),
    (dict(t=np.arange(1.0, 6.0), y=np.arange(1.0, 6.0)), "at least 8"),
    (dict(t=np.ones((3, 10)), y=np.ones(30)), "1-D"),
    (dict(t=np.linspace(10, 1, 20), y=np.ones(20)), "increasing"),
])
def test_bad_input(kwargs, match):
    t, y = smooth_crossover(0, 0.01)
    args = dict(t=t, y=y) | kwargs
    with pytest.raises(TransitionInputError, match=match) as info:
        detect(args.pop("t"), args.pop("y"), **args)
    assert isinstance(info.value, DynlabError)
