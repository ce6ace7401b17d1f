"""numpy reference of the RFIM quadratic form of one layer (METHODS.md §3; Sun & Nielsen, "Relative
Fisher Information and Natural Gradient for Learning Large Modular Models", ICML 2017).

For a layer z = W x + b followed by an output model p(y | z), the relative Fisher information of
its parameters θ = W̃ = (W, b) given the input x̃ = (x, 1) is Λ(x) ⊗ x̃x̃ᵀ, so for a change ΔW̃

    ΔW̃ᵀ ḡ ΔW̃ = E_x[δz(x)ᵀ Λ(x) δz(x)],   δz = ΔW x + Δb,   a = W x + b,

with Λ per output model (``output``):

    linear   I/s²                          (y ~ N(a, s² I))
    relu     diag 1[a > 0] / s²            (y ~ N(relu a, s² I))
    sigmoid  diag ν(1−ν),  ν = σ(a)        (independent Bernoulli units)
    tanh     diag (1 − tanh² a)            (independent ±1 units with mean tanh a)
    softmax  diag η − ηηᵀ + damping·I,  η = softmax(a)   (one categorical variable)

The Kronecker product is never formed: δz and a are computed for ``chunk`` samples at a time
(memory O(chunk·H_out)). Written with the numerically safe forms: sech² a = 4e/(1+e)², e = e^(−2|a|)
(no overflow, no 1 − tanh² cancellation); ν(1−ν) = sech²(a/2)/4; the softmax form as a variance
Σ_c η_c (δz_c − η·δz)² (never negative, no cancellation when δz is nearly a constant shift).

Inputs are assumed validated (``dynlab.kernels.rfim.rfim_quadratic`` does that): batched shapes
dW (T, H_out, H_in), X (T, N, H_in), W like dW or None (linear only), db and b (T, H_out) or None.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["CHUNK", "per_sample", "pre_activations", "quadratic"]

CHUNK = 4096  # samples per block: δz and a are (CHUNK, H_out) float64


def _sech2(a: np.ndarray) -> np.ndarray:
    """sech² a = 1 − tanh² a = 4e/(1 + e)², e = exp(−2|a|)."""
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / (1.0 + e) ** 2


def per_sample(dz: np.ndarray, a: np.ndarray | None, output: str, noise: float,
               damping: float) -> np.ndarray:
    """δzᵀ Λ(a) δz for each row of ``dz`` and ``a`` (n, H_out), float64 (n,)."""
    sq = dz * dz
    if output == "linear":
        return sq.sum(axis=1) / noise**2
    if output == "relu":
        return np.where(a > 0, sq, 0.0).sum(axis=1) / noise**2
    if output == "sigmoid":
        return (0.25 * _sech2(0.5 * a) * sq).sum(axis=1)
    if output == "tanh":
        return (_sech2(a) * sq).sum(axis=1)
    if output == "softmax":
        eta = np.exp(a - a.max(axis=1, keepdims=True))
        eta /= eta.sum(axis=1, keepdims=True)
        centred = dz - (eta * dz).sum(axis=1, keepdims=True)
        return (eta * centred * centred).sum(axis=1) + damping * sq.sum(axis=1)
    raise ValueError(f"unknown output model {output!r}")


def pre_activations(dW: np.ndarray, X: np.ndarray, W: np.ndarray | None, db: np.ndarray | None,
                    b: np.ndarray | None, need_a: bool, chunk: int = CHUNK
                    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(t, δz, a) for each step t and block of ``chunk`` samples: δz = X dWᵀ + db and (if
    ``need_a``, else None) a = X Wᵀ + b, float64 (n, H_out): two BLAS products per block."""
    T, N, _ = X.shape
    for t in range(T):
        dwt = np.asarray(dW[t], dtype=np.float64).T
        wt = np.asarray(W[t], dtype=np.float64).T if need_a else None
        for n0 in range(0, N, chunk):
            x = np.asarray(X[t, n0:n0 + chunk], dtype=np.float64)
            dz = x @ dwt
            if db is not None:
                dz += db[t]
            a = None
            if wt is not None:
                a = x @ wt
                if b is not None:
                    a += b[t]
            yield t, dz, a


def quadratic(dW: np.ndarray, X: np.ndarray, W: np.ndarray | None, db: np.ndarray | None,
              b: np.ndarray | None, output: str, noise: float, damping: float,
              chunk: int = CHUNK) -> np.ndarray:
    """(T,) float64: for each t, (1/N) Σₙ δzₙᵀ Λ(aₙ) δzₙ with δz = dW[t] xₙ + db[t] and
    a = W[t] xₙ + b[t], xₙ = X[t, n] (the module docstring gives Λ)."""
    out = np.zeros(X.shape[0])
    for t, dz, a in pre_activations(dW, X, W, db, b, output != "linear", chunk):
        out[t] += per_sample(dz, a, output, noise, damping).sum()
    return out / X.shape[1]
