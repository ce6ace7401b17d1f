"""dynlab.kernels.bhattacharyya: the per-sample Bhattacharyya distance matrix (METHODS.md §2).

Every backend against a brute-force triple loop written here, on hypothesis data (m ≠ m′, tiles
smaller than and not dividing the inputs, disjoint supports that hit the clip, float32); analytic
values; exact symmetry; bounded memory; input validation; lazy imports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynlab.errors import DynlabError
from dynlab.kernels.bhattacharyya import BACKENDS, PredictionsError, bhattacharyya_matrix

torch.set_num_threads(1)


def brute_force(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """d_B(u, v) = (1/N) Σₙ −ln clip(Σ_c √(p_u p_v), 1e-12, 1), one pair and one sample at a time."""
    m, n, c = P.shape
    out = np.zeros((m, Q.shape[0]))
    for u in range(m):
        for v in range(Q.shape[0]):
            total = 0.0
            for k in range(n):
                bc = sum(math.sqrt(float(P[u, k, j]) * float(Q[v, k, j])) for j in range(c))
                total -= math.log(min(max(bc, 1e-12), 1.0))
            out[u, v] = total / n
    return out


def random_predictions(rng: np.random.Generator, m: int, n: int, c: int, sparse: bool = False,
                       dtype=np.float64) -> np.ndarray:
    """(m, n, c) class probabilities; ``sparse`` zeroes most classes (disjoint supports: BC = 0)."""
    p = rng.dirichlet(np.full(c, 0.5), size=(m, n))
    if sparse:
        p = np.where(rng.random((m, n, c)) < 0.6, 0.0, p)
        p[..., 0] += (p.sum(-1) == 0)  # no empty row
        p /= p.sum(-1, keepdims=True)
    return p.astype(dtype)


# ---------------------------------------------------------------------------- parity


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 9), m2=st.integers(1, 7), n=st.integers(1, 30),
       c=st.integers(1, 6), tile_m=st.integers(1, 5), tile_n=st.integers(1, 40), sparse=st.booleans(),
       single=st.booleans())
def test_every_backend_equals_brute_force(seed, m, m2, n, c, tile_m, tile_n, sparse, single):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if single else np.float64
    P = random_predictions(rng, m, n, c, sparse, dtype)
    Q = random_predictions(rng, m2, n, c, sparse, dtype)
    P_copy, Q_copy = P.copy(), Q.copy()
    want_pq, want_pp = brute_force(P, Q), brute_force(P, P)
    np.fill_diagonal(want_pp, 0.0)  # the brute force's diagonal is −ln min(Σp, 1) ≈ 1e-8 in float32
    for name in BACKENDS:
        got = bhattacharyya_matrix(P, Q, backend=name, tile_m=tile_m, tile_n=tile_n)
        assert got.shape == (m, m2) and got.dtype == np.float64
        np.testing.assert_allclose(got, want_pq, rtol=0, atol=1e-10, err_msg=name)
        sym = bhattacharyya_matrix(P, backend=name, tile_m=tile_m, tile_n=tile_n)
        np.testing.assert_allclose(sym, want_pp, rtol=0, atol=1e-10, err_msg=name)
        assert np.array_equal(sym, sym.T) and not np.diagonal(sym).any()
        assert np.array_equal(P, P_copy) and np.array_equal(Q, Q_copy), f"{name} changed its input"


@pytest.mark.parametrize("name", BACKENDS)
def test_default_tiles_on_a_larger_input(name):
    """Default tile sizes, several tiles of checkpoints and samples; against the numpy reference
    with tiles smaller than the input in every direction (itself checked above)."""
    rng = np.random.default_rng(1)
    P = random_predictions(rng, 150, 300, 10)
    want = bhattacharyya_matrix(P, backend="numpy", tile_m=37, tile_n=29)
    np.testing.assert_allclose(bhattacharyya_matrix(P, backend=name), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bhattacharyya_matrix(P[:70], P[50:], backend=name), want[:70, 50:],
                               rtol=0, atol=1e-12)


def test_torch_tensors_and_mixed_inputs():
    """Tensors (on their own device, here the CPU) give the numpy numbers; a numpy Q is moved to P's
    device; tensors given to the other backends are converted."""
    rng = np.random.default_rng(2)
    P, Q = random_predictions(rng, 6, 20, 4), random_predictions(rng, 5, 20, 4)
    want = brute_force(P, Q)
    tp = torch.from_numpy(P.copy())
    for got in (bhattacharyya_matrix(tp, torch.from_numpy(Q), backend="torch", tile_m=2, tile_n=7),
                bhattacharyya_matrix(tp, Q, backend="torch"),
                bhattacharyya_matrix(P, Q, backend="torch", device="cpu"),
                bhattacharyya_matrix(tp, torch.from_numpy(Q), backend="numba")):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    assert np.array_equal(tp.numpy(), P)  # the tensor is not changed in place


@pytest.mark.parametrize("c", [1, 2, 5, 7, 10, 12])
@pytest.mark.parametrize("tile_m", [3, 6, 64])
def test_numba_register_blocks_against_the_reference(c, tile_m):
    """The numba kernel's 4-row × 5-class register blocks: classes padded with zeros (C not a
    multiple of 5), tile heights not a multiple of 4 (leftover rows), several sample blocks and
    groups; against the numpy reference (itself checked against the brute force above) to 1e-12
    relative — the kernel may fuse multiply-adds, nothing else is relaxed."""
    rng = np.random.default_rng(c * 100 + tile_m)
    P, Q = random_predictions(rng, 23, 530, c), random_predictions(rng, 17, 530, c)
    for a, b in ((P, None), (P, Q)):
        want = bhattacharyya_matrix(a, b, backend="numpy")
        got = bhattacharyya_matrix(a, b, backend="numba", tile_m=tile_m, tile_n=250)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", BACKENDS)
def test_long_runs_of_tiny_coefficients(name):
    """Disjoint supports on every one of 1,000 samples (default tiles: several sample blocks of
    groups of 24 products of 1e-12, the numba kernel's exponent bookkeeping) give exactly
    12 ln 10; half disjoint, half identical 6 ln 10; uniform against one-hot ½ ln C."""
    c, n = 4, 1000
    onehot = np.eye(c)[np.arange(n) % c]
    other = np.eye(c)[(np.arange(n) + 1) % c]
    half = np.where(np.arange(n)[:, None] < n // 2, other, onehot)
    uniform = np.full((n, c), 1 / c)
    D = bhattacharyya_matrix(np.stack([onehot, other, half, uniform]), backend=name)
    assert D[0, 1] == pytest.approx(12 * np.log(10), rel=1e-13)
    assert D[0, 2] == pytest.approx(6 * np.log(10), rel=1e-13)
    assert D[0, 3] == pytest.approx(0.5 * np.log(c), rel=1e-13)


# ---------------------------------------------------------------------------- analytic values


@pytest.mark.parametrize("name", BACKENDS)
def test_analytic_values(name):
    """Uniform vs one-hot: BC = 1/√C, d_B = ½ ln C. Disjoint supports: BC clipped to 1e-12,
    d_B = 12 ln 10. Identical: 0. Half the samples identical, half uniform vs one-hot: the mean."""
    c, n = 5, 8
    uniform = np.full((n, c), 1 / c)
    onehot = np.eye(c)[np.arange(n) % c]
    other = np.eye(c)[(np.arange(n) + 1) % c]
    mixed = np.where(np.arange(n)[:, None] < n // 2, uniform, onehot)
    D = bhattacharyya_matrix(np.stack([uniform, onehot, other, mixed]), backend=name, tile_m=3, tile_n=3)
    assert D[0, 1] == pytest.approx(0.5 * np.log(c), abs=1e-14)
    assert D[1, 2] == pytest.approx(12 * np.log(10), abs=1e-12)
    assert D[0, 3] == pytest.approx(0.25 * np.log(c), abs=1e-14)
    same = bhattacharyya_matrix(np.stack([onehot, uniform]), np.stack([onehot, uniform]), backend=name)
    np.testing.assert_allclose(np.diagonal(same), 0.0, atol=1e-15)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(2, 8))
def test_permutation_equivariant_and_non_negative(seed, m):
    rng = np.random.default_rng(seed)
    P = random_predictions(rng, m, 11, 3)
    perm = rng.permutation(m)
    D = bhattacharyya_matrix(P, backend="numba", tile_m=3)
    np.testing.assert_allclose(bhattacharyya_matrix(P[perm], backend="numba", tile_m=3),
                               D[np.ix_(perm, perm)], rtol=0, atol=1e-14)
    assert (D >= 0).all()


# ---------------------------------------------------------------------------- memory


def test_numpy_memory_is_bounded_by_the_tiles():
    """(m, m, N) float64 would be 58 MB here; the tiled reference stays within a few MB."""
    P = random_predictions(np.random.default_rng(3), 60, 2000, 3)
    tracemalloc.start()
    try:
        bhattacharyya_matrix(P, backend="numpy", tile_m=16, tile_n=16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4e6, peak


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("P", "Q", "match"), [
    (np.full((3, 4), 0.25), None, "checkpoints, samples, classes"),
    (np.zeros((0, 4, 2)), None, "none empty"),
    (np.full((2, 3, 2), np.nan), None, "NaN"),
    (np.array([[[1.5, -0.5]]]), None, "non-negative"),
    (np.full((2, 3, 2), 0.6), None, "sum to 1"),
    (np.full((2, 3, 2), np.inf), None, "sum to 1"),
    (np.full((2, 3, 2), 0.5), np.full((2, 4, 2), 0.5), "same"),
    (np.full((2, 3, 2), 0.5), np.full((2, 3, 2), np.nan), "Q contains NaN"),
    (np.full((2, 3, 2), "a"), None, "real"),
])
@pytest.mark.parametrize("name", BACKENDS)
def test_bad_input_is_refused(P, Q, match, name):
    with pytest.raises(PredictionsError, match=match) as info:
        bhattacharyya_matrix(P, Q, backend=name)
    assert isinstance(info.value, DynlabError) and "\n" not in str(info.value)


def test_bad_tensor_input_and_parameters_are_refused():
    with pytest.raises(PredictionsError, match="NaN"):
        bhattacharyya_matrix(torch.full((2, 3, 2), float("nan")), backend="torch")
    with pytest.raises(PredictionsError, match="sum to 1"):
        bhattacharyya_matrix(torch.full((2, 3, 2), 0.4), backend="torch")
    ok = np.full((2, 3, 2), 0.5)
    with pytest.raises(ValueError, match="backend"):
        bhattacharyya_matrix(ok, backend="cuda")
    with pytest.raises(ValueError, match="tile_n"):
        bhattacharyya_matrix(ok, tile_n=0)


def test_rows_off_by_less_than_the_tolerance_are_accepted():
    """float16 softmax rows sum to 1 within ≈ 1e-3; they are used as given (not renormalised)."""
    P = np.full((2, 3, 2), 0.5004)
    D = bhattacharyya_matrix(P, np.full((1, 3, 2), 0.5), backend="numpy")
    np.testing.assert_allclose(D, 0.0, atol=1e-15)  # BC = 1.0008·… clipped to 1


def test_import_is_lazy():
    code = ("import sys, json, dynlab.inpca, dynlab.kernels.bhattacharyya;"
            "print(json.dumps([m for m in ('numba', 'torch', 'scipy') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
