"""dynlab.chaos: Rosenstein's largest Lyapunov exponent and the replica indicators (METHODS.md §6).

Known systems with analytic exponents (logistic map, Hénon map, a contracting rotation, exact
exponential divergence); the KD-tree neighbour search against a plain O(N²) search written here;
the peer library nolds (``lyap_r``) on the same series at matched parameters; the replica
distances against their definition; bad input refused with a ChaosInputError.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynlab import chaos
from dynlab.errors import DynlabError
from dynlab.kernels import chaos as k

# ---------------------------------------------------------------------------- systems


def logistic(n: int, r: float = 4.0, x0: float = 0.1) -> np.ndarray:
    x = np.empty(n)
    x[0] = x0
    for i in range(1, n):
        x[i] = r * x[i - 1] * (1 - x[i - 1])
    return x


def henon(n: int, a: float = 1.4, b: float = 0.3, burn: int = 100) -> np.ndarray:
    xy = np.empty((n + burn, 2))
    xy[0] = 0.1
    for i in range(1, n + burn):
        xy[i] = 1 - a * xy[i - 1, 0] ** 2 + xy[i - 1, 1], b * xy[i - 1, 0]
    return xy[burn:]


def spiral(n: int, contraction: float = 0.99, angle: float = 0.3) -> np.ndarray:
    """x_{n+1} = c·R(θ)·x_n: every distance shrinks by c per step, λ = ln c exactly."""
    z = contraction ** np.arange(n) * np.exp(1j * angle * np.arange(n))
    return np.c_[z.real, z.imag]


def nolds():
    with warnings.catch_warnings():  # nolds imports pkg_resources, which warns at import
        warnings.simplefilter("ignore")
        import nolds as mod
    return mod


def brute_neighbours(points: np.ndarray, min_tsep: int) -> np.ndarray:
    """The definition: argmin over j with |i − j| > min_tsep of ‖p_i − p_j‖, O(N²)."""
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    i = np.arange(len(points))
    d[np.abs(i[:, None] - i[None, :]) <= min_tsep] = np.inf
    return d.argmin(axis=1)


def brute_curve(points: np.ndarray, nb: np.ndarray, length: int) -> np.ndarray:
    out = []
    for kk in range(length):
        d = [math.dist(points[i + kk], points[j + kk]) for i, j in enumerate(nb)]
        out.append(np.mean([math.log(v) for v in d if v > 0]))
    return np.array(out)


# ---------------------------------------------------------------------------- known systems


def test_logistic_map_gives_ln2():
    res = chaos.max_lyapunov(logistic(2000))
    assert res.emb_dim == 1 and res.lag == 1  # a 1-D map; uncorrelated at lag 1
    assert res.value == pytest.approx(math.log(2), rel=0.05)
    assert res.r2 > 0.99


@pytest.mark.parametrize("series", ["x", "xy"])
def test_henon_map(series):
    xy = henon(3000)
    res = chaos.max_lyapunov(xy[:, 0] if series == "x" else xy)
    assert res.emb_dim == (2 if series == "x" else 1)  # false neighbours vanish at m = 2
    assert res.value == pytest.approx(0.419, rel=0.10)


def test_contracting_linear_system_is_negative():
    res = chaos.max_lyapunov(spiral(1500))
    assert res.value < 0
    # every pair distance shrinks by exactly 0.99 per step: the curve is a line of slope ln 0.99
    assert res.value == pytest.approx(math.log(0.99), rel=1e-6)
    assert res.r2 == pytest.approx(1.0, abs=1e-9)


def test_exponential_divergence_through_finite_time_exponent(rng):
    t = np.arange(300) * 0.5
    d = 1e-8 * np.exp(0.3 * t) * (1 + 0.01 * rng.standard_normal(len(t)))
    fte = chaos.finite_time_exponent(t, d)
    assert fte.value == pytest.approx(0.3, rel=0.01)
    assert fte.accepted and fte.r2 > 0.999


def test_saturation_and_transient_are_excluded(rng):
    """A flat start (the perturbation aligning), growth, then saturation at 10: the window sits on
    the growth, and Λ is its rate."""
    t = np.arange(400) * 0.5
    grow = 1e-8 * np.exp(0.3 * (t - 10)) / (1 + 1e-8 * np.exp(0.3 * (t - 10)) / 10.0)
    d = np.where(t < 10, 1e-8, grow) * (1 + 0.01 * rng.standard_normal(len(t)))
    fte = chaos.finite_time_exponent(t, d)
    assert fte.value == pytest.approx(0.3, rel=0.02)
    assert fte.window[0] >= 5 and fte.window[1] < 80  # starts near the kink, ends before the plateau
    # with saturation=0 the plateau counts and the slope drops
    assert chaos.finite_time_exponent(t, d, saturation=0.0, min_points=300).value < 0.2


def test_noise_is_not_accepted(rng):
    t = np.arange(200.0)
    fte = chaos.finite_time_exponent(t, 1 + 0.01 * rng.standard_normal(200))
    assert not fte.accepted and abs(fte.value) < 0.05


def test_dt_rescales_the_exponent():
    x = logistic(1500)
    one, half = chaos.max_lyapunov(x), chaos.max_lyapunov(x, dt=0.5)
    assert half.value == pytest.approx(2 * one.value, rel=1e-12)
    assert half.window == one.window
    np.testing.assert_allclose(half.time, 0.5 * one.time)


# ---------------------------------------------------------------------------- against references


@pytest.mark.parametrize("min_tsep", [0, 3, 40])
def test_kdtree_neighbours_equal_brute_force(rng, min_tsep):
    pts = rng.standard_normal((600, 3)).cumsum(axis=0) * 0.1 + rng.standard_normal((600, 3))
    np.testing.assert_array_equal(k.nearest_beyond(pts, min_tsep, chunk=64),
                                  brute_neighbours(pts, min_tsep))


def test_rosenstein_curve_equals_brute_force():
    x = logistic(800, x0=0.3)
    res = chaos.max_lyapunov(x, emb_dim=2, lag=1, min_tsep=5, trajectory_len=15)
    pts = k.delay_embed(x[:, None], 2, 1)
    nb = brute_neighbours(pts[:len(pts) - 14], 5)
    np.testing.assert_allclose(res.divergence, brute_curve(pts, nb, 15), rtol=1e-12)


@pytest.mark.parametrize("system", ["logistic", "henon"])
def test_matches_nolds_at_matched_parameters(system):
    x = logistic(1500) if system == "logistic" else henon(1500)[:, 0]
    emb_dim = 1 if system == "logistic" else 2
    params = {"emb_dim": emb_dim, "lag": 1, "min_tsep": 5, "trajectory_len": 10}
    le, (ks, curve, _) = nolds().lyap_r(x, fit="poly", debug_data=True, **params)
    ours = chaos.max_lyapunov(x, fit="all", **params)
    # the same algorithm on the same neighbours: the curves agree to rounding (no ties here)
    np.testing.assert_allclose(ours.divergence[ks], curve, rtol=1e-10)
    # the same curve and the same least-squares line over all of it: the same slope, to rounding
    assert ours.value == pytest.approx(le, rel=1e-9)
    # and dynlab's automatic choices land within 5 % of nolds at those same parameters
    auto = chaos.max_lyapunov(x)
    le_auto = nolds().lyap_r(x, emb_dim=auto.emb_dim, lag=auto.lag, min_tsep=auto.min_tsep,
                             trajectory_len=auto.window[1] + 1, fit="poly", fit_offset=auto.window[0])
    # (nolds' shorter trajectory_len leaves it a few more neighbour pairs: ~0.2 % apart)
    assert auto.value == pytest.approx(le_auto, rel=0.01)


def test_window_fits_equal_polyfit(rng):
    t = np.sort(rng.uniform(0, 50, 40))
    y = 0.2 * t + rng.standard_normal(40)
    starts, ends = np.array([0, 3, 10]), np.array([12, 25, 39])
    slope, intercept, r2 = k.window_fits(t, y, starts, ends)
    for a, i in enumerate(starts):
        for b, j in enumerate(ends):
            s, c = np.polyfit(t[i:j + 1], y[i:j + 1], 1)
            r = np.corrcoef(t[i:j + 1], y[i:j + 1])[0, 1] ** 2
            np.testing.assert_allclose([slope[a, b], intercept[a, b], r2[a, b]], [s, c, r],
                                       rtol=1e-9)


# ---------------------------------------------------------------------------- automatic choices


def test_lag_of_a_sine_is_the_1_over_e_crossing():
    period = 200
    x = np.sin(2 * np.pi * np.arange(4000) / period)
    # acf(k) ≈ cos(2πk/P) (1 − k/N): first below 1/e near P·arccos(1/e)/(2π)
    expected = period * math.acos(1 / math.e) / (2 * math.pi)
    assert abs(chaos.choose_lag(x) - expected) <= 1.5
    assert chaos.choose_min_tsep(x) == period  # the mean period of a pure tone


def test_embedding_dimension_from_false_neighbours():
    assert chaos.choose_emb_dim(logistic(2000)) == 1
    assert chaos.choose_emb_dim(henon(2000)[:, 0]) == 2
    assert chaos.choose_emb_dim(henon(500)) == 1  # multivariate: used as it is


# ---------------------------------------------------------------------------- replicas


def test_divergence_is_the_mean_distance(rng):
    ref = rng.standard_normal((7, 3, 4))
    reps = ref[None] + rng.standard_normal((5, 7, 3, 4)) * 1e-3
    l1 = np.abs(reps - ref).sum(axis=(2, 3))
    np.testing.assert_allclose(chaos.replica_distances(ref, reps), l1, rtol=1e-13)
    np.testing.assert_allclose(chaos.divergence(ref, list(reps)), l1.mean(0), rtol=1e-13)
    l2 = np.sqrt(((reps - ref) ** 2).sum(axis=(2, 3))).mean(0)
    np.testing.assert_allclose(chaos.divergence(ref, reps, norm="l2"), l2, rtol=1e-13)


def test_replica_of_a_linear_map_diverges_at_its_rate(rng):
    """W(t+1) = A·W(t) with A's top eigenvalue 1.2: d(t) grows like 1.2^t, Λ = ln 1.2."""
    a = np.diag([1.2, 0.3, 0.2])  # the contracting directions die out within a few steps
    ref, rep = [rng.standard_normal(3)], [None]
    rep[0] = ref[0] + rng.uniform(-1e-8, 1e-8, 3)
    for _ in range(60):
        ref.append(a @ ref[-1])
        rep.append(a @ rep[-1])
    d = chaos.divergence(np.array(ref), [np.array(rep)])
    fte = chaos.finite_time_exponent(np.arange(61.0), d)
    assert fte.value == pytest.approx(math.log(1.2), rel=0.01)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.01, 100), st.floats(-1, 1))
def test_time_rescaling_rescales_the_finite_time_exponent(scale, lam):
    t = np.arange(50.0)
    d = np.exp(lam * t + 0.01 * np.sin(7 * t))
    one, scaled = chaos.finite_time_exponent(t, d), chaos.finite_time_exponent(t * scale, d)
    assert scaled.value == pytest.approx(one.value / scale, rel=1e-6, abs=1e-12)
    assert scaled.index == one.index


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call", [
    lambda: chaos.max_lyapunov(np.zeros((5, 2, 2))),
    lambda: chaos.max_lyapunov(np.r_[np.nan, np.ones(50)]),
    lambda: chaos.max_lyapunov(np.ones(5)),
    lambda: chaos.max_lyapunov(logistic(100), dt=0),
    lambda: chaos.max_lyapunov(logistic(100), emb_dim=0),
    lambda: chaos.max_lyapunov(logistic(100), lag=1.5),
    lambda: chaos.max_lyapunov(logistic(100), fit="ransac"),
    lambda: chaos.max_lyapunov(logistic(100), fit=(5, 2)),
    lambda: chaos.max_lyapunov(logistic(60), min_tsep=20, trajectory_len=20),
    lambda: chaos.finite_time_exponent([0, 1, 1], [1, 2, 3]),
    lambda: chaos.finite_time_exponent([0, 1, 2], [1, 2]),
    lambda: chaos.finite_time_exponent([0, 1, 2, 3], [0, 0, 0, 1]),
    lambda: chaos.divergence(np.zeros((3, 2)), []),
    lambda: chaos.divergence(np.zeros((3, 2)), [np.zeros((3, 3))]),
    lambda: chaos.divergence(np.zeros((3, 2)), [np.zeros((3, 2))], norm="max"),
])
def test_bad_input_is_a_clear_error(call):
    with pytest.raises(chaos.ChaosInputError) as info:
        call()
    assert isinstance(info.value, DynlabError) and "\n" not in str(info.value)


@pytest.mark.parametrize("every", [1, 2, 5, 10])
def test_finite_time_exponent_finds_the_burst_after_a_flat_stretch(every):
    """ln d flat (slow drift) for 300 iterations, then growing at 0.3 per iteration until it
    saturates: Λ is the burst's 0.3, whatever the recording interval. (The first window rule
    took the long, smooth, flat stretch: Λ ≈ 0.005.)"""
    t = np.arange(0, 400, every, dtype=float)
    rng = np.random.default_rng(every)
    y = np.where(t < 300, -18 + 0.001 * t, -17.7 + 0.3 * (t - 300))
    y = np.minimum(y, -2.0) + rng.normal(0, 0.02, t.size)
    fit = chaos.finite_time_exponent(t, np.exp(y))
    assert fit.value == pytest.approx(0.3, rel=0.03)
    assert 290 <= fit.window[0] <= 320 and fit.accepted


def test_finite_time_exponent_without_growth_is_the_overall_slope():
    t = np.arange(200.0)
    y = -10 + 0.002 * t + np.random.default_rng(0).normal(0, 0.01, t.size)  # 0.4 nats in all
    fit = chaos.finite_time_exponent(t, np.exp(y))
    assert fit.value == pytest.approx(0.002, abs=2e-4)
    assert fit.window[0] == 0.0 and fit.window[1] > 150  # all but the saturation cut
