"""Intensive PCA (InPCA) of training trajectories in prediction space (METHODS.md §2).

Mao et al., "The training process of many deep networks explores the same low-dimensional
manifold", PNAS 2024 (arXiv 2305.01604). A checkpoint is the product over N probe samples of its
predicted categorical distributions; checkpoints are compared by the per-sample Bhattacharyya
distance d_B (:func:`dynlab.kernels.bhattacharyya.bhattacharyya_matrix`) and the m × m matrix D is
embedded by classical multidimensional scaling that keeps eigenvalues of both signs:

    W = −½ · J D J,  J = I − 11ᵀ/m
    W = V Λ Vᵀ,  |λ₁| ≥ |λ₂| ≥ …,  X = V · √|Λ|    (λ > 0: space-like, λ < 0: time-like)
    D_ij = Σ_k sign(λ_k)(X_ik − X_jk)²                (exactly, with all dimensions)
    χ_k = 1 − √(1 − Σ_{i≤k} λ_i² / ‖W‖²_F)            (explained stress of the top k)

Out-of-sample points (:func:`project`): B = −½(d_p − rowmean(d_p) − d̄ + mean(d̄)),
x = B V diag(1/(sign λ · √|λ|)), with d̄ the column means of D.

Geodesics on the product of spheres (:func:`geodesic`) use ψ = √p per sample and
ψ_λ = [sin((1−λ)θ)ψ_P + sin(λθ)ψ_Q]/sin θ, θ = arccos⟨ψ_P, ψ_Q⟩; :func:`progress` is the λ of the
point of the uniform → one-hot geodesic closest in d_B to a checkpoint. :func:`step_lengths` gives
the length of each step of a trajectory, ds = √((1/N) Σₙ (2·arccos BCₙ)²) (≈ √(8·d_B) for small
steps; the authors' code uses 2√d_B, smaller by √2).

Pure functions on numpy arrays; importing this module loads neither numba nor torch nor scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dynlab.errors import DynlabError
from dynlab.kernels.bhattacharyya import PredictionsError, check_predictions
from dynlab.kernels.bhattacharyya._numpy import BC_MIN

__all__ = ["DENSE_MAX", "Embedding", "InPCAInputError", "embed", "geodesic", "progress", "project",
           "step_lengths"]

DENSE_MAX = 1000  # "auto" uses the dense eigensolver up to this many checkpoints
_SYM_TOL = 1e-8  # max |D − Dᵀ| allowed, relative to max |D|
_ZERO_EIG = 1e-12  # |λ| ≤ max(this, 4·m·eps) · max |λ| is rounding noise: set to 0 (no coordinate)


class InPCAInputError(DynlabError, ValueError):
    """A distance matrix or a parameter that InPCA cannot use."""


@dataclass(frozen=True, eq=False)
class Embedding:
    """The result of :func:`embed` (arrays are read-only).

    coords (m, k): X = V √|Λ|; eigenvalues (k,): signed, by |λ| descending (those at rounding level,
    |λ| ≤ max(1e-12, 4·m·eps)·max|λ|, set to 0); explained_stress (k,):
    χ_1..χ_k; vectors (m, k): the unit eigenvectors V of W, each signed so that its largest-magnitude
    entry is positive; column_means (m,): d̄ of D; grand_mean: mean(d̄); total_stress: ‖W‖²_F.
    """

    coords: np.ndarray
    eigenvalues: np.ndarray
    explained_stress: np.ndarray
    vectors: np.ndarray
    column_means: np.ndarray
    grand_mean: float
    total_stress: float

    @property
    def signature(self) -> np.ndarray:
        """sign(λ) per dimension: +1 space-like, −1 time-like, 0 for a zero eigenvalue."""
        return np.sign(self.eigenvalues)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _distance_matrix(D: Any) -> np.ndarray:
    D = np.asarray(D)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 2:
        raise InPCAInputError(f"D must be a square matrix of at least 2 × 2, got shape {D.shape}")
    if not (np.issubdtype(D.dtype, np.floating) or np.issubdtype(D.dtype, np.integer)):
        raise InPCAInputError(f"D must be real, got dtype {D.dtype}")
    D = D.astype(np.float64)
    if not np.isfinite(D).all():
        raise InPCAInputError("D must be finite")
    scale = float(np.abs(D).max())
    if float(np.abs(D - D.T).max()) > _SYM_TOL * max(scale, 1e-300):
        raise InPCAInputError("D must be symmetric")
    return (D + D.T) / 2  # exactly symmetric for eigh/eigsh


def _double_center(D: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(W = −½ J D J, column means d̄, mean(d̄))."""
    col = D.mean(axis=0)
    grand = float(col.mean())
    W = -0.5 * (D - col[:, None] - col[None, :] + grand)  # D symmetric: row means = column means
    return (W + W.T) / 2, col, grand


def _zero_level(lam: np.ndarray, m: int) -> float:
    return max(_ZERO_EIG, 4 * m * np.finfo(np.float64).eps) * float(np.abs(lam).max(initial=0.0))


def _eigen(W: np.ndarray, k: int, solver: str) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenpairs of largest |λ| of symmetric W, by |λ| descending."""
    m = W.shape[0]
    if solver == "auto":
        solver = "dense" if m <= DENSE_MAX or k >= m - 1 else "eigsh"
    if solver == "eigsh" and k >= m - 1:
        raise InPCAInputError(f"solver='eigsh' needs n_components < m − 1 = {m - 1}, got {k}")
    if solver == "dense":
        lam, vec = np.linalg.eigh(W)
    else:
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(0).standard_normal(m)  # deterministic; not ∝ 1 (W·1 = 0)
        lam, vec = eigsh(W, k=k, which="LM", v0=v0)
    order = np.argsort(-np.abs(lam), kind="stable")[:k]
    lam, vec = lam[order], vec[:, order]
    lam = np.where(np.abs(lam) <= _zero_level(lam, m), 0.0, lam)  # e.g. the 1-vector's λ = 0 of J D J
    flip = np.sign(vec[np.abs(vec).argmax(axis=0), np.arange(vec.shape[1])])
    return lam, vec * np.where(flip == 0, 1.0, flip)


def embed(D: Any, n_components: int | None = None, *, solver: str = "auto") -> Embedding:
    """InPCA embedding of the m × m distance matrix ``D`` (symmetric, e.g. from
    ``bhattacharyya_matrix``) in the ``n_components`` dimensions of largest |λ| (all m if None).

    ``solver``: "dense" (``numpy.linalg.eigh``, all eigenpairs), "eigsh" (ARPACK
    ``scipy.sparse.linalg.eigsh(which="LM")``, the k largest-magnitude ones; needs k < m − 1) or
    "auto" (dense up to :data:`DENSE_MAX` checkpoints or when k ≥ m − 1, else eigsh). Both give the
    same eigenpairs up to the sign convention fixed here (largest entry of each vector positive).
    """
    D = _distance_matrix(D)
    m = D.shape[0]
    k = m if n_components is None else n_components
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= m:
        raise InPCAInputError(f"n_components must be an integer in [1, {m}], got {n_components!r}")
    if solver not in ("auto", "dense", "eigsh"):
        raise InPCAInputError(f"solver must be one of 'auto', 'dense', 'eigsh', got {solver!r}")
    W, col, grand = _double_center(D)
    lam, vec = _eigen(W, int(k), solver)
    total = float(np.sum(W * W))
    if total > 0:
        explained = 1.0 - np.sqrt(np.clip(1.0 - np.cumsum(lam**2) / total, 0.0, 1.0))
    else:  # all points coincide: nothing to explain
        explained = np.ones(len(lam))
    return Embedding(coords=_readonly(vec * np.sqrt(np.abs(lam))), eigenvalues=_readonly(lam),
                     explained_stress=_readonly(explained), vectors=_readonly(vec),
                     column_means=_readonly(col), grand_mean=grand, total_stress=total)


def project(D_new_to_old: Any, embedding: Embedding) -> np.ndarray:
    """Coordinates (m_new, k) of new points from their distances (m_new, m) to the m embedded ones
    (METHODS.md §2 step 5): B = −½(d_p − rowmean(d_p) − d̄ + mean(d̄)),
    x = B V diag(1/(sign λ · √|λ|)); 0 along a zero eigenvalue. An embedded point's own row of D
    gives back its coordinates. A 1-D ``D_new_to_old`` (m,) gives a 1-D result (k,)."""
    d = np.asarray(D_new_to_old, dtype=np.float64)
    m = embedding.vectors.shape[0]
    single = d.ndim == 1
    d = d[None] if single else d
    if d.ndim != 2 or d.shape[1] != m:
        raise InPCAInputError(f"D_new_to_old must be (new, {m}) distances to the embedded points, "
                              f"got shape {np.shape(D_new_to_old)}")
    if not np.isfinite(d).all():
        raise InPCAInputError("D_new_to_old must be finite")
    B = -0.5 * (d - d.mean(axis=1, keepdims=True) - embedding.column_means[None, :] + embedding.grand_mean)
    lam = embedding.eigenvalues
    big = lam != 0  # embed() set rounding-level eigenvalues to exactly 0
    scale = np.where(big, np.sign(lam) * np.sqrt(np.abs(lam)), 1.0)
    x = np.where(big, (B @ embedding.vectors) / scale, 0.0)
    return x[0] if single else x


def _unit_roots(p: np.ndarray, what: str) -> np.ndarray:
    """ψ = √p normalised per sample (rows summing to 1 ± 1e-3 give exact unit vectors)."""
    arr = check_predictions(p[None] if p.ndim == 2 else p, what)
    psi = np.sqrt(np.asarray(arr, dtype=np.float64))
    psi /= np.linalg.norm(psi, axis=-1, keepdims=True)
    return psi[0] if p.ndim == 2 else psi


def geodesic(P: Any, Q: Any, lam: Any) -> np.ndarray:
    """Points of the geodesic from ``P`` to ``Q`` (both (N, C) class probabilities) on the product
    of spheres ψ = √p: per sample, ψ_λ = [sin((1−λ)θ)ψ_P + sin(λθ)ψ_Q]/sin θ, θ = arccos⟨ψ_P, ψ_Q⟩
    (ψ_λ = ψ_P where θ = 0), returned as p_λ = ψ_λ², (N, C) for a scalar ``lam`` and (L, N, C)
    for ``lam`` of shape (L,). λ ∈ [0, 1]; λ = 0 gives P and λ = 1 gives Q (up to rounding; rows
are renormalised to sum to 1 first)."""
    P, Q = np.asarray(P), np.asarray(Q)
    if P.ndim != 2 or P.shape != Q.shape:
        raise InPCAInputError(f"P and Q must both be (samples, classes) of one shape, got {P.shape} "
                              f"and {Q.shape}")
    lam_arr = np.asarray(lam, dtype=np.float64)
    if lam_arr.ndim > 1 or not np.all((lam_arr >= 0) & (lam_arr <= 1)):
        raise InPCAInputError("lam must be a number or a 1-D array of numbers in [0, 1]")
    a, b = _unit_roots(P, "P"), _unit_roots(Q, "Q")
    theta = np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0))[..., None]  # (N, 1)
    sin_t = np.sin(theta)
    moving = sin_t > 0
    safe = np.where(moving, sin_t, 1.0)
    lams = np.atleast_1d(lam_arr)[:, None, None]
    wa = np.where(moving, np.sin((1 - lams) * theta) / safe, 1.0 - lams)
    wb = np.where(moving, np.sin(lams * theta) / safe, lams)
    psi = wa * a + wb * b
    out = psi * psi
    return out[0] if lam_arr.ndim == 0 else out


def progress(P: Any, labels: Any, *, tol: float = 1e-12) -> np.ndarray | float:
    """Progress λ ∈ [0, 1] of each checkpoint of ``P`` (m, N, C) (or one, (N, C)): the λ of the point
    G(λ) of the geodesic from uniform predictions (1/C) to the one-hot ``labels`` (N,) that is
    closest in d_B to the checkpoint (0: ignorance, 1: the labels).

    Uniform → one-hot has the same angle θ = arccos(1/√C) for every sample, so with φ = λθ,
    ⟨ψ_t,n, ψ_λ,n⟩ = [a_n sin(θ−φ) + b_n sin φ]/sin θ, a_n = Σ_c √p_t,n,c/√C, b_n = √p_t,n,yₙ, and
    d_B(P_t, G(λ)) = (1/N) Σ_n −ln of it (clipped at 1e-12) is convex in φ: its derivative is
    bisected to ``tol`` (relative to θ).
    """
    arr = np.asarray(P)
    single = arr.ndim == 2
    arr = np.asarray(check_predictions(arr[None] if single else arr, "P"), dtype=np.float64)
    m, n, c = arr.shape
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() >= c)):
        raise InPCAInputError(f"labels must be ({n},) integers in [0, {c}), got shape {y.shape}, "
                              f"dtype {y.dtype}")
    if c < 2:
        raise PredictionsError("progress needs at least 2 classes")
    psi = np.sqrt(arr)
    a = psi.sum(axis=-1) / np.sqrt(c)  # (m, N), ≥ 1/√C > 0
    b = np.take_along_axis(psi, y[None, :, None].repeat(m, 0), axis=-1)[..., 0]
    theta = np.arccos(1 / np.sqrt(c))

    def slope(phi: np.ndarray) -> np.ndarray:  # d/dφ of Σ_n −ln max(g_n(φ), 1e-12 sin θ)
        ph = phi[:, None]
        g = a * np.sin(theta - ph) + b * np.sin(ph)
        dg = -a * np.cos(theta - ph) + b * np.cos(ph)
        return -np.sum(np.where(g > BC_MIN * np.sin(theta), dg / np.maximum(g, 1e-300), 0.0), axis=1)

    lo, hi = np.zeros(m), np.full(m, theta)
    for _ in range(int(np.ceil(np.log2(1 / tol))) + 1):
        mid = (lo + hi) / 2
        up = slope(mid) > 0
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    lam = (lo + hi) / (2 * theta)
    return float(lam[0]) if single else lam


def step_lengths(P: Any, *, chunk: int = 64) -> np.ndarray:
    """Length (T−1,) of each step of the trajectory ``P`` (T, N, C) on the product of spheres,
    intensive: ds_t = √((1/N) Σₙ (2·arccos BCₙ(t, t+1))²), the Fisher–Rao geodesic distance of the
    product of N categoricals divided by √N (the convention of ``dynlab.geometry``: 2·arccos BC per
    distribution). For small steps ds ≈ √(8·d_B); the InPCA authors' code uses 2√d_B instead (a
    factor √2 smaller) — this choice is documented in docs/inpca.md. ``chunk`` steps at a time."""
    arr = check_predictions(P, "P")
    if arr.shape[0] < 2:
        return np.zeros(0)
    arr = np.asarray(arr)
    out = np.empty(arr.shape[0] - 1)
    for t0 in range(0, arr.shape[0] - 1, chunk):
        t1 = min(t0 + chunk, arr.shape[0] - 1)
        s = np.sqrt(np.asarray(arr[t0:t1 + 1], dtype=np.float64))
        bc = np.clip(np.sum(s[:-1] * s[1:], axis=-1), 0.0, 1.0)  # (steps, N)
        out[t0:t1] = np.sqrt(np.mean((2 * np.arccos(bc)) ** 2, axis=-1))
    return out
