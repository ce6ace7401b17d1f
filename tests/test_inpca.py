"""dynlab.inpca: InPCA embedding, out-of-sample projection, geodesics and progress (METHODS.md §2).

The METHODS toy check (four models on one geodesic); the isometry with all dimensions; the
Euclidean case against its analytic configuration; eigsh against the dense solver; the geodesic's
endpoints, normalisation and constant speed; progress against a brute-force minimisation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from dynlab import inpca
from dynlab.errors import DynlabError
from dynlab.kernels.bhattacharyya import PredictionsError, bhattacharyya_matrix


def random_predictions(rng: np.random.Generator, m: int, n: int, c: int) -> np.ndarray:
    return rng.dirichlet(np.full(c, 0.7), size=(m, n))


def trajectory(rng: np.random.Generator, m: int, n: int = 40, c: int = 5) -> np.ndarray:
    """m checkpoints drifting from near-uniform to sharper predictions (a training-like path)."""
    logits = rng.standard_normal((n, c))
    scale = np.linspace(0.05, 3.0, m)[:, None, None]
    z = scale * logits + 0.3 * rng.standard_normal((m, n, c))
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def signed_squared(X: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Σ_k sign(λ_k)(X_ik − X_jk)², by a plain double loop."""
    m = len(X)
    out = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            out[i, j] = float(np.sum(np.sign(lam) * (X[i] - X[j]) ** 2))
    return out


# ---------------------------------------------------------------------------- the toy check


def toy_models() -> np.ndarray:
    """METHODS §2: 3 samples × 3 classes; uniform, the geodesic points λ = 0.33 and 0.66 from
    uniform to Q, and Q = 0.98·I + 0.01 with rows renormalised."""
    uniform = np.full((3, 3), 1 / 3)
    q = 0.98 * np.eye(3) + 0.01
    q /= q.sum(axis=1, keepdims=True)
    return np.stack([uniform, inpca.geodesic(uniform, q, 0.33), inpca.geodesic(uniform, q, 0.66), q])


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
def test_methods_toy_check(backend):
    D = bhattacharyya_matrix(toy_models(), backend=backend)
    off = D[np.triu_indices(4, 1)]  # (0,1), (0,2), (0,3), (1,2), (1,3), (2,3)
    np.testing.assert_allclose(off, [0.036532, 0.151892, 0.376146, 0.036532, 0.156788, 0.038810],
                               rtol=0, atol=5e-7)  # METHODS prints 6 decimals
    e = inpca.embed(D, 4)
    lam = e.eigenvalues  # printed to 5 decimals, then 3 significant digits
    assert lam[0] == pytest.approx(0.20619, abs=5e-6) and lam[3] == 0
    np.testing.assert_allclose(lam[1:3], [-0.007173, 0.000158], rtol=0, atol=5e-7)
    np.testing.assert_allclose(e.explained_stress[:2], [0.965223, 0.999234], rtol=0, atol=5e-7)
    np.testing.assert_array_equal(e.signature, [1, -1, 1, 0])


# ---------------------------------------------------------------------------- embedding


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(2, 30))
def test_all_dimensions_reproduce_D_exactly(seed, m):
    """D_ij = Σ_k sign(λ_k)(X_ik − X_jk)², with eigenvalues of both signs (d_B is not Euclidean)."""
    D = bhattacharyya_matrix(random_predictions(np.random.default_rng(seed), m, 7, 3), backend="numpy")
    e = inpca.embed(D)
    assert e.coords.shape == (m, m)
    np.testing.assert_allclose(signed_squared(e.coords, e.eigenvalues), D, rtol=0, atol=1e-10)
    assert np.all(np.diff(np.abs(e.eigenvalues)) <= 0)
    assert np.all(np.diff(e.explained_stress) >= -1e-15) and e.explained_stress[-1] == pytest.approx(1)
    np.testing.assert_allclose(inpca.project(D, e), e.coords, rtol=0, atol=1e-10)


def test_time_like_dimensions_appear_for_bhattacharyya_distances():
    """d_B is not Euclidean: a training-like path has a negative eigenvalue; all dimensions still
    reproduce D (the isometry with a mixed signature)."""
    D = bhattacharyya_matrix(trajectory(np.random.default_rng(4), 40), backend="numpy")
    e = inpca.embed(D)
    assert (e.eigenvalues < 0).any()
    np.testing.assert_allclose(signed_squared(e.coords, e.eigenvalues), D, rtol=0, atol=1e-10)


def test_euclidean_configuration_is_recovered():
    """D of squared Euclidean distances of points in R³: three positive eigenvalues, the rest 0;
    explained stress 1 at k = 3; the coordinates reproduce the points up to a rigid motion, and a
    new point projected from its distances has the right distances to all the others."""
    rng = np.random.default_rng(5)
    pts = rng.standard_normal((12, 3)) * [3.0, 2.0, 1.0]
    new = rng.standard_normal((4, 3))
    D = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    e = inpca.embed(D, 5)
    assert (e.eigenvalues[:3] > 0).all() and np.all(e.eigenvalues[3:] == 0)
    assert e.explained_stress[2] == pytest.approx(1.0, abs=1e-12)
    X = e.coords[:, :3]
    np.testing.assert_allclose(((X[:, None] - X[None]) ** 2).sum(-1), D, rtol=0, atol=1e-10)
    d_new = ((new[:, None] - pts[None]) ** 2).sum(-1)
    x_new = inpca.project(d_new, e)[:, :3]
    np.testing.assert_allclose(((x_new[:, None] - X[None]) ** 2).sum(-1), d_new, rtol=0, atol=1e-10)
    np.testing.assert_allclose(inpca.project(d_new[0], e), inpca.project(d_new, e)[0], atol=1e-15)


@pytest.mark.parametrize("k", [1, 4, 10])
def test_eigsh_equals_dense(k):
    D = bhattacharyya_matrix(trajectory(np.random.default_rng(6), 80), backend="numba")
    dense, sparse = inpca.embed(D, k, solver="dense"), inpca.embed(D, k, solver="eigsh")
    np.testing.assert_allclose(sparse.eigenvalues, dense.eigenvalues, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(sparse.coords, dense.coords, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sparse.explained_stress, dense.explained_stress, rtol=0, atol=1e-12)
    np.testing.assert_allclose(inpca.embed(D, k).coords, dense.coords, atol=0)  # auto: dense, m ≤ 1000


def test_auto_uses_eigsh_for_many_checkpoints():
    """m > DENSE_MAX: the partial solver, checked against the analytic Euclidean configuration."""
    pts = np.random.default_rng(12).standard_normal((inpca.DENSE_MAX + 50, 2)) * [2.0, 1.0]
    D = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    e = inpca.embed(D, 3)
    assert e.eigenvalues[2] == 0 and (e.eigenvalues[:2] > 0).all()
    X = e.coords[:, :2]
    np.testing.assert_allclose(((X[:, None] - X[None]) ** 2).sum(-1), D, rtol=0, atol=1e-9)


def test_permuting_checkpoints_permutes_coordinates():
    D = bhattacharyya_matrix(trajectory(np.random.default_rng(7), 30), backend="numba")
    perm = np.random.default_rng(8).permutation(30)
    a, b = inpca.embed(D, 3), inpca.embed(D[np.ix_(perm, perm)], 3)
    np.testing.assert_allclose(b.coords, a.coords[perm], rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-12)


def test_training_like_trajectory_is_low_dimensional():
    D = bhattacharyya_matrix(trajectory(np.random.default_rng(9), 60), backend="numba")
    e = inpca.embed(D, 3)
    assert e.explained_stress[0] > 0.8 and e.coords.shape == (60, 3)
    assert not e.coords.flags.writeable


def test_coincident_points_have_nothing_to_explain():
    e = inpca.embed(np.zeros((3, 3)), 2)
    np.testing.assert_array_equal(e.coords, 0.0)
    np.testing.assert_array_equal(e.explained_stress, 1.0)


@pytest.mark.parametrize(("D", "kwargs", "match"), [
    (np.zeros((3, 4)), {}, "square"),
    (np.zeros((1, 1)), {}, "square"),
    (np.array([[0.0, 1.0], [2.0, 0.0]]), {}, "symmetric"),
    (np.array([[0.0, np.nan], [np.nan, 0.0]]), {}, "finite"),
    (np.zeros((3, 3)), {"n_components": 0}, "n_components"),
    (np.zeros((3, 3)), {"n_components": 4}, "n_components"),
    (np.zeros((3, 3)), {"n_components": 1.5}, "n_components"),
    (np.zeros((3, 3)), {"solver": "lobpcg"}, "solver"),
    (np.zeros((3, 3)), {"n_components": 2, "solver": "eigsh"}, "eigsh"),
])
def test_bad_embed_input_is_refused(D, kwargs, match):
    with pytest.raises(inpca.InPCAInputError, match=match) as info:
        inpca.embed(D, **kwargs)
    assert isinstance(info.value, DynlabError)


def test_bad_project_input_is_refused():
    e = inpca.embed(np.array([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(inpca.InPCAInputError, match="distances to the embedded"):
        inpca.project(np.zeros((2, 3)), e)
    with pytest.raises(inpca.InPCAInputError, match="finite"):
        inpca.project(np.array([np.nan, 0.0]), e)


# ---------------------------------------------------------------------------- geodesic


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), c=st.integers(1, 6))
def test_geodesic_endpoints_normalisation_and_speed(seed, n, c):
    rng = np.random.default_rng(seed)
    P, Q = random_predictions(rng, 2, n, c)
    lams = np.linspace(0, 1, 7)
    G = inpca.geodesic(P, Q, lams)
    assert G.shape == (7, n, c)
    np.testing.assert_allclose(G[0], P, rtol=0, atol=1e-14)
    np.testing.assert_allclose(G[-1], Q, rtol=0, atol=1e-14)
    np.testing.assert_allclose(G.sum(-1), 1.0, rtol=0, atol=1e-14)
    assert (G >= 0).all()
    # constant speed on each sphere: the angle from P is λθ (analytic), computed per sample
    theta = np.arccos(np.clip(np.sum(np.sqrt(P * Q), -1), -1, 1))
    angle = np.arccos(np.clip(np.sum(np.sqrt(P[None] * G), -1), -1, 1))
    np.testing.assert_allclose(angle, lams[:, None] * theta[None], rtol=0, atol=1e-7)
    np.testing.assert_allclose(inpca.geodesic(P, Q, 0.4), inpca.geodesic(P, Q, [0.4])[0], atol=0)


def test_geodesic_between_identical_points_stays_put():
    P = random_predictions(np.random.default_rng(10), 1, 4, 3)[0]
    np.testing.assert_allclose(inpca.geodesic(P, P, [0.0, 0.3, 1.0]), np.stack([P] * 3), atol=1e-15)


def test_bad_geodesic_input_is_refused():
    P = np.full((2, 3), 1 / 3)
    with pytest.raises(inpca.InPCAInputError, match="lam"):
        inpca.geodesic(P, P, 1.5)
    with pytest.raises(inpca.InPCAInputError, match="one shape"):
        inpca.geodesic(P, np.full((2, 2), 0.5), 0.5)
    with pytest.raises(PredictionsError, match="sum to 1"):
        inpca.geodesic(P, np.full((2, 3), 0.5), 0.5)


# ---------------------------------------------------------------------------- progress


def test_progress_of_points_on_the_uniform_to_labels_geodesic():
    n, c = 9, 4
    labels = np.arange(n) % c
    uniform, onehot = np.full((n, c), 1 / c), np.eye(c)[labels]
    lams = np.array([0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
    got = inpca.progress(inpca.geodesic(uniform, onehot, lams), labels)
    np.testing.assert_allclose(got, lams, rtol=0, atol=1e-9)
    assert inpca.progress(uniform, labels) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_progress_is_the_closest_point_in_bhattacharyya_distance(seed):
    """Against a bounded scalar minimisation of d_B(P_t, G(λ)), d_B by the numpy kernel."""
    rng = np.random.default_rng(seed)
    n, c = 12, 3
    labels = rng.integers(0, c, n)
    P = trajectory(rng, 4, n, c)
    uniform, onehot = np.full((n, c), 1 / c), np.eye(c)[labels]

    def dist(lam: float, t: int) -> float:
        g = inpca.geodesic(uniform, onehot, lam)
        return float(bhattacharyya_matrix(P[t:t + 1], g[None], backend="numpy")[0, 0])

    got = inpca.progress(P, labels)
    for t in range(4):
        ref = minimize_scalar(dist, bounds=(0, 1), args=(t,), method="bounded",
                              options={"xatol": 1e-10}).x
        # the objective is flat at its minimum: compare the distances, then the λ loosely
        assert dist(got[t], t) <= dist(ref, t) + 1e-12
        assert got[t] == pytest.approx(ref, abs=1e-5)
        for lam in np.linspace(0, 1, 11):
            assert dist(got[t], t) <= dist(lam, t) + 1e-12


def test_bad_progress_input_is_refused():
    P = np.full((2, 3, 4), 0.25)
    with pytest.raises(inpca.InPCAInputError, match="labels"):
        inpca.progress(P, np.array([0, 1]))
    with pytest.raises(inpca.InPCAInputError, match="labels"):
        inpca.progress(P, np.array([0, 1, 4]))
    with pytest.raises(inpca.InPCAInputError, match="labels"):
        inpca.progress(P, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(PredictionsError, match="NaN"):
        inpca.progress(np.full((2, 3, 4), np.nan), np.array([0, 1, 2]))
    assert math.isfinite(inpca.progress(P[0], np.array([0, 1, 2])))


# ---------------------------------------------------------------------------- step lengths


def test_step_lengths():
    """Analytic: uniform → one-hot on every sample is 2·arccos(1/√C); along a geodesic, steps of
    Δλ are Δλ times the whole length; small steps ≈ √(8·d_B); against a plain loop."""
    n, c = 6, 4
    labels = np.arange(n) % c
    uniform, onehot = np.full((n, c), 1 / c), np.eye(c)[labels]
    full = 2 * np.arccos(1 / np.sqrt(c))
    assert inpca.step_lengths(np.stack([uniform, onehot]))[0] == pytest.approx(full, rel=1e-12)
    G = inpca.geodesic(uniform, onehot, np.linspace(0, 1, 11))
    np.testing.assert_allclose(inpca.step_lengths(G, chunk=3), full / 10, rtol=1e-7)
    rng = np.random.default_rng(11)
    P = random_predictions(rng, 5, n, c)
    want = [math.sqrt(np.mean([(2 * math.acos(min(1.0, float(np.sum(np.sqrt(P[t, k] * P[t + 1, k])))))) ** 2
                               for k in range(n)])) for t in range(4)]
    np.testing.assert_allclose(inpca.step_lengths(P, chunk=2), want, rtol=1e-12)
    near = np.stack([P[0], inpca.geodesic(P[0], P[1], 1e-3)])
    d_b = bhattacharyya_matrix(near, backend="numpy")[0, 1]
    assert inpca.step_lengths(near)[0] == pytest.approx(math.sqrt(8 * d_b), rel=1e-3)
    assert inpca.step_lengths(P[:1]).shape == (0,)
