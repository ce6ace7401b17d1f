"""dynlab.geometry.rfim_quadratic and dynlab.kernels.rfim: the RFIM quadratic form (METHODS.md §3).

Against (a) analytic answers: a linear layer with unit Gaussian noise gives the mean squared change
of its outputs; the softmax RFIM vanishes along a constant shift of the logits; (b) a brute-force
numpy reference that forms Λ(x) ⊗ x̃x̃ᵀ explicitly; (c) a Fisher information computed with torch
autograd from the log-likelihood of each output model (float64), Σ_y p(y) ∇log p(y) ∇log p(y)ᵀ
summed over every outcome y (Gaussians by the 2-point Gauss–Hermite rule per dimension, exact for
the quadratic score products). Every backend equals the numpy reference on hypothesis data.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynlab import geometry
from dynlab.errors import DynlabError
from dynlab.kernels.rfim import BACKENDS, OUTPUTS, RFIMInputError, rfim_quadratic

torch.set_num_threads(1)


def layer(rng: np.random.Generator, n: int, h_in: int, h_out: int, t: int | None = None,
          scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random float64 (X, W, dW, b, db); with ``t`` a batch of t steps."""
    lead = () if t is None else (t,)
    return {"X": rng.standard_normal((*lead, n, h_in)),
            "W": scale * rng.standard_normal((*lead, h_out, h_in)),
            "dW": 0.1 * rng.standard_normal((*lead, h_out, h_in)),
            "b": rng.standard_normal((*lead, h_out)), "db": 0.1 * rng.standard_normal((*lead, h_out))}


def call(d: dict, output: str, **kw):
    return rfim_quadratic(d["dW"], d["X"], output=output, W=d["W"], db=d["db"], b=d["b"], **kw)


# ---------------------------------------------------------------------------- brute force


def lam(a: np.ndarray, output: str, noise: float, damping: float) -> np.ndarray:
    """Λ(a) (H_out, H_out) written out from METHODS.md §3's table."""
    if output == "linear":
        return np.eye(len(a)) / noise**2
    if output == "relu":
        return np.diag((a > 0).astype(float)) / noise**2
    if output == "sigmoid":
        with np.errstate(over="ignore"):  # saturated units: e^(−a) = inf gives ν = 0, right
            nu = 1 / (1 + np.exp(-a))
        return np.diag(nu * (1 - nu))
    if output == "tanh":
        return np.diag(1 - np.tanh(a) ** 2)
    eta = np.exp(a - a.max())
    eta /= eta.sum()
    return np.diag(eta) - np.outer(eta, eta) + damping * np.eye(len(a))


def brute_force(d: dict, output: str, noise: float = 1.0, damping: float = 1e-6) -> float:
    """vec(ΔW̃)ᵀ [(1/N) Σₙ Λ(aₙ) ⊗ x̃ₙx̃ₙᵀ] vec(ΔW̃), the Kronecker product formed explicitly
    (row-major vec of ΔW̃ = [ΔW | Δb], matching x̃ = (x, 1))."""
    X, W, b = d["X"], d["W"], d["b"]
    theta = np.concatenate([d["dW"], d["db"][:, None]], axis=1).reshape(-1)
    g = np.zeros((theta.size, theta.size))
    for x in X:
        xt = np.append(x, 1.0)
        g += np.kron(lam(W @ x + b, output, noise, damping), np.outer(xt, xt))
    return float(theta @ (g / len(X)) @ theta)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_equals_the_explicit_kronecker_product(name, output):
    rng = np.random.default_rng(1)
    d = layer(rng, n=7, h_in=3, h_out=4, scale=2.0)
    want = brute_force(d, output, noise=0.8, damping=1e-3)
    got = call(d, output, noise=0.8, damping=1e-3, backend=name)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------------- analytic


@pytest.mark.parametrize("name", BACKENDS)
def test_linear_unit_noise_is_the_mean_squared_output_change(name):
    """v² of a linear layer with unit noise = (1/N) Σₙ ‖(W+ΔW)xₙ + b + Δb − (W xₙ + b)‖², exactly."""
    rng = np.random.default_rng(2)
    d = layer(rng, n=53, h_in=6, h_out=5)
    before = d["X"] @ d["W"].T + d["b"]
    after = d["X"] @ (d["W"] + d["dW"]).T + (d["b"] + d["db"])
    want = np.mean(np.sum((after - before) ** 2, axis=1))
    assert call(d, "linear", backend=name, chunk=10) == pytest.approx(want, rel=1e-12)


def test_noise_scales_gaussian_models_only():
    rng = np.random.default_rng(3)
    d = layer(rng, n=20, h_in=4, h_out=3)
    for output in OUTPUTS:
        ratio = call(d, output, noise=0.5) / call(d, output, noise=1.0)
        assert ratio == pytest.approx(4.0 if output in ("linear", "relu") else 1.0, rel=1e-12)


@pytest.mark.parametrize("output", OUTPUTS)
def test_quadratic_in_the_change_and_zero_without_one(output):
    rng = np.random.default_rng(4)
    d = layer(rng, n=15, h_in=4, h_out=3)
    assert call(d, output) > 0
    scaled = dict(d, dW=-3 * d["dW"], db=-3 * d["db"])
    assert call(scaled, output) == pytest.approx(9 * call(d, output), rel=1e-12)
    assert call(dict(d, dW=0 * d["dW"], db=0 * d["db"]), output) == 0.0


def test_softmax_is_blind_to_a_shift_of_all_logits_but_for_damping():
    """δz ∝ 1 (equal rows of ΔW, equal Δb) leaves softmax unchanged: Λ·1 = 0, so only the damping
    term damping·‖δz‖² remains."""
    rng = np.random.default_rng(5)
    d = layer(rng, n=12, h_in=4, h_out=5)
    row = rng.standard_normal(4)
    shift = dict(d, dW=np.tile(row, (5, 1)), db=np.full(5, 0.3))
    dz2 = np.mean(np.sum((d["X"] @ shift["dW"].T + shift["db"]) ** 2, axis=1))
    for name in BACKENDS:
        assert call(shift, "softmax", damping=0.0, backend=name) == pytest.approx(0.0, abs=1e-13)
        assert call(shift, "softmax", damping=1e-2, backend=name) == pytest.approx(1e-2 * dz2, rel=1e-9)


@pytest.mark.parametrize("name", BACKENDS)
def test_saturated_units_are_finite(name):
    """|a| ≫ 700: no overflow; Λ → 0 for sigmoid/tanh and softmax becomes one-hot."""
    rng = np.random.default_rng(6)
    d = layer(rng, n=9, h_in=3, h_out=4, scale=1e4)
    for output in OUTPUTS:
        got = call(d, output, backend=name)
        assert np.isfinite(got) and got >= 0
        # the brute force's 1 − tanh² a rounds to 0 where the kernel's sech² keeps ≈ 4e^(−2|a|)
        assert got == pytest.approx(brute_force(d, output), rel=1e-9, abs=1e-50)


# ---------------------------------------------------------------------------- autograd Fisher


def _outcomes(output: str, a: torch.Tensor, noise: float) -> list:
    """Every outcome y of the output model at pre-activation ``a`` (H,), as functions z ↦ log p(y | z)
    with y fixed; for Gaussians the 2-point Gauss–Hermite nodes y = f(a) ± s per dimension (equal
    weights, exact for the score's outer product, which is quadratic in y)."""
    f64 = torch.float64
    logsig = torch.nn.functional.logsigmoid
    if output == "softmax":
        return [lambda z, c=c: torch.log_softmax(z, 0)[c] for c in range(a.shape[0])]
    grid = [torch.tensor(y, dtype=f64) for y in itertools.product((-1.0, 1.0), repeat=a.shape[0])]
    if output == "sigmoid":  # independent Bernoulli units, y ∈ {0, 1}^H
        return [lambda z, y=(y + 1) / 2: (y * logsig(z) + (1 - y) * logsig(-z)).sum() for y in grid]
    if output == "tanh":  # independent ±1 units with mean tanh a
        return [lambda z, y=y: torch.log((1 + y * torch.tanh(z)) / 2).sum() for y in grid]
    f = torch.relu if output == "relu" else (lambda z: z)
    mu = f(a).detach()
    return [lambda z, y=mu + noise * e: -((y - f(z)) ** 2).sum() / (2 * noise**2) for e in grid]


def autograd_fisher(d: dict, output: str, noise: float = 1.0) -> np.ndarray:
    """F = (1/N) Σₙ Σ_y p(y | xₙ) ∇_θ log p(y | xₙ) ∇_θ log p(y | xₙ)ᵀ over θ = (vec W, b)."""
    X = torch.tensor(d["X"], dtype=torch.float64)
    h_out, h_in = d["W"].shape
    theta = torch.tensor(np.concatenate([d["W"].reshape(-1), d["b"]]), requires_grad=True)
    F = torch.zeros((theta.numel(), theta.numel()), dtype=torch.float64)
    for x in X:
        z = theta[:h_out * h_in].view(h_out, h_in) @ x + theta[h_out * h_in:]
        outcomes = _outcomes(output, z, noise)
        for logp in outcomes:
            lp = logp(z)
            (score,) = torch.autograd.grad(lp, theta, retain_graph=True)
            gaussian = output in ("linear", "relu")  # equal Gauss–Hermite weights, else p(y)
            p = 1.0 / len(outcomes) if gaussian else float(torch.exp(lp.detach()))
            F += p * torch.outer(score, score)
    return (F / len(X)).numpy()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_equals_the_autograd_fisher_of_the_output_model(name, output):
    rng = np.random.default_rng(7)
    d = layer(rng, n=6, h_in=3, h_out=3, scale=1.5)
    noise = 0.7
    F = autograd_fisher(d, output, noise)
    # θ = (vec W, b): reorder the change to that layout
    dtheta = np.concatenate([d["dW"].reshape(-1), d["db"]])
    want = dtheta @ F @ dtheta
    got = call(d, output, noise=noise, damping=0.0, backend=name)
    assert got == pytest.approx(want, rel=1e-8)
    assert want > 1e-4  # the comparison is not between two zeros


# ---------------------------------------------------------------------------- backends


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(0, 3), n=st.integers(1, 40), h_in=st.integers(1, 6),
       h_out=st.integers(1, 6), output=st.sampled_from(OUTPUTS), bias=st.booleans(),
       chunk=st.integers(1, 17), single=st.booleans(), name=st.sampled_from(("numba", "torch")))
def test_every_backend_equals_the_reference(seed, t, n, h_in, h_out, output, bias, chunk, single,
                                            name):
    rng = np.random.default_rng(seed)
    d = layer(rng, n, h_in, h_out, t=t or None, scale=3.0)
    if single:
        d["X"] = d["X"].astype(np.float32)
    if not bias:
        d["b"] = d["db"] = None
    want = call(d, output, backend="numpy", chunk=chunk)
    got = call(d, output, backend=name, chunk=chunk)
    ref = call(d, output, backend="numpy")  # the default chunk: blocking changes nothing
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-300)
    np.testing.assert_allclose(ref, want, rtol=1e-11, atol=1e-300)
    if t:
        assert np.shape(got) == (t,)
        for k in range(t):  # a batch is the steps one at a time
            one = {key: None if v is None else v[k] for key, v in d.items()}
            assert call(one, output, backend="numpy") == pytest.approx(want[k], rel=1e-12)


def test_torch_keeps_tensors_and_geometry_picks_the_backend():
    rng = np.random.default_rng(8)
    d = layer(rng, n=30, h_in=5, h_out=4, t=2)
    want = call(d, "softmax")
    tensors = {k: torch.tensor(v) for k, v in d.items()}
    np.testing.assert_allclose(call(tensors, "softmax", backend="torch"), want, rtol=1e-12)
    got = geometry.rfim_quadratic(tensors["dW"], tensors["X"], output="softmax", W=tensors["W"],
                                  db=tensors["db"], b=tensors["b"])  # auto: a tensor → torch
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(geometry.rfim_quadratic(d["dW"], d["X"], output="softmax", W=d["W"],
                                                       db=d["db"], b=d["b"], backend="numpy"), want)


def test_numpy_memory_is_bounded_by_the_chunk():
    """N·H_out = 2e6 float64 (16 MB) would be one δz; with chunk=256 the peak stays far below."""
    rng = np.random.default_rng(9)
    X = rng.standard_normal((20_000, 8))
    dW, W = rng.standard_normal((100, 8)), rng.standard_normal((100, 8))
    tracemalloc.start()
    rfim_quadratic(dW, X, output="softmax", W=W, backend="numpy", chunk=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"X": np.zeros(4)}, "X must be"),
    ({"X": np.zeros((0, 3))}, "X must be"),
    ({"dW": np.zeros((2, 4))}, "dW must be"),
    ({"dW": np.zeros((2, 2, 3))}, "dW must be"),
    ({"W": None}, "needs the weights W"),
    ({"W": np.zeros((3, 3))}, "W must have shape"),
    ({"b": np.zeros(3)}, "b must have shape"),
    ({"X": np.full((5, 3), np.nan)}, "X contains NaN"),
    ({"dW": np.full((2, 3), np.inf)}, "dW contains NaN"),
    ({"X": np.zeros((5, 3), dtype=complex)}, "real numbers"),
    ({"output": "gelu"}, "output must be one of"),
    ({"noise": 0.0}, "noise must be > 0"),
    ({"damping": -1.0}, "damping"),
    ({"noise": float("nan")}, "finite"),
    ({"chunk": 0}, "chunk"),
])
def test_invalid_inputs_are_one_line_errors(kwargs, message):
    args = {"dW": np.zeros((2, 3)), "X": np.zeros((5, 3)), "W": np.zeros((2, 3)), "b": np.zeros(2),
            "output": "softmax", **kwargs}
    with pytest.raises(RFIMInputError, match=message) as info:
        rfim_quadratic(args.pop("dW"), args.pop("X"), **args)
    assert isinstance(info.value, DynlabError) and "\n" not in str(info.value)


def test_linear_ignores_w_and_b_and_unknown_backend_is_refused():
    rng = np.random.default_rng(10)
    d = layer(rng, n=5, h_in=2, h_out=2)
    assert call(d, "linear") == rfim_quadratic(d["dW"], d["X"], output="linear", db=d["db"])
    with pytest.raises(ValueError, match="backend"):
        call(d, "linear", backend="cuda")


def test_importing_the_kernel_is_lazy():
    code = ("import sys, json, dynlab.kernels.rfim, dynlab.geometry; "
            "print(json.dumps([m for m in ('numba', 'torch') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
