"""Information geometry of the parameter distribution: the public math API (METHODS.md §1).

Pure functions on arrays, usable without a store. The distribution p(w, t) of a network's
parameter values at snapshot t is a histogram on **fixed** bin edges (the same for the whole run);
consecutive histograms are compared by the Fisher–Rao geodesic distance on the probability simplex,

    dL_k = 2·arccos(BC_k),  BC_k = Σ_b √(p_k,b · p_k+1,b)      (Bhattacharyya coefficient)

giving the information rate Γ = dL/Δt and the information length L = Σ dL (Thiruthummal, Kim,
Shelyag, arXiv 2406.05295). The Gaussian estimator uses Γ² = (μ̇² + 2σ̇²)/σ² instead.

Distances are computed in the equivalent chord form 4·arcsin(‖√p − √q‖/2), exact at zero and
accurate for nearby distributions (see :func:`fisher_rao`).

Backends (``backend=``) for the heavy kernels — :func:`histogram_counts`, :func:`histograms`,
:func:`histogram_accumulate`, :func:`distance_matrix`: ``"numpy"`` (the reference), ``"numba"``
(CPU, parallel), ``"torch"`` (any device: that of a tensor input, else ``device=``, default CPU),
and ``"auto"``: torch when the input is a tensor or a CUDA device is present, else numba. Checking
for CUDA imports torch when it is installed (once). Every backend gives the same counts, and the
same distances up to summation order (≈ 1e-13 relative). Importing this module loads neither numba
nor torch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dynlab.kernels import bhattacharyya as _kb
from dynlab.kernels import fisher as _k
from dynlab.kernels import rfim as _kr

__all__ = ["BACKENDS", "bhattacharyya", "bhattacharyya_matrix", "cuda_available",
           "distance_from_initial", "distance_matrix", "fisher_rao", "gaussian_length", "gaussian_rate",
           "histogram_accumulate", "histogram_counts", "histograms", "information_length",
           "information_rate", "probabilities", "resolve_backend", "rfim_quadratic"]

BACKENDS = ("auto", *_k.BACKENDS)
_NORM_TOL = 1e-6  # |Σp − 1| allowed: float32 pdfs carry ≈ 1e-7·√B


# ---------------------------------------------------------------------------- validation


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


@cache
def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device (checked once). On Linux without a GPU
    device file (NVIDIA's ``/dev/nvidia*``, ROCm's ``/dev/kfd``) the answer is no without importing
    torch, which would cost every ``dynlab run --backend auto`` about a second and 200 MB."""
    if importlib.util.find_spec("torch") is None:
        return False
    if sys.platform.startswith("linux") and not _gpu_device_files():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _gpu_device_files() -> bool:
    dev = Path("/dev")
    return any(dev.glob("nvidia*")) or (dev / "kfd").exists()


def resolve_backend(backend: str = "auto", data: Any = None) -> str:
    """The backend ``"auto"`` stands for (torch for tensor ``data`` or with CUDA, else numba)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    first = data[0] if isinstance(data, (list, tuple)) and data else data
    return "torch" if _is_tensor(first) or cuda_available() else "numba"


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)


def _check_real(x: np.ndarray, what: str) -> None:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{what} must be real numbers, got dtype {x.dtype}")


def _edges(edges: Any) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries, got shape {e.shape}")
    if not np.isfinite(e).all() or not (e[1:] > e[:-1]).all():
        raise ValueError("edges must be finite and strictly increasing")
    return e


def _samples(samples: Any, keep_tensors: bool) -> np.ndarray | list:
    """(T, N) array, or a list of 1-D arrays (tensors kept as they are for the torch backend)."""
    if keep_tensors and _is_tensor(samples):
        if samples.ndim != 2:
            raise ValueError(f"samples must be (T, N), got shape {tuple(samples.shape)}")
        return samples
    if isinstance(samples, np.ndarray) or _is_tensor(samples):
        arr = _to_numpy(samples)
        if arr.ndim != 2:
            raise ValueError(f"samples must be (T, N) or a sequence of 1-D arrays, got shape {arr.shape}")
        _check_real(arr, "samples")
        return arr
    if not isinstance(samples, Sequence):
        raise ValueError("samples must be (T, N) or a sequence of 1-D arrays")
    rows = []
    for row in samples:
        if keep_tensors and _is_tensor(row):
            ok = row.ndim == 1
        else:
            row = _to_numpy(row)
            _check_real(row, "samples")
            ok = row.ndim == 1
        if not ok:
            raise ValueError("each snapshot in a sequence of samples must be 1-D")
        rows.append(row)
    return rows


def _pdfs(p: Any, axis: int = -1, what: str = "pdfs") -> np.ndarray:
    p = np.asarray(_to_numpy(p), dtype=np.float64)
    if (p < 0).any():
        raise ValueError(f"{what} must be non-negative")
    sums = p.sum(axis=axis)
    if (np.abs(sums - 1.0) > _NORM_TOL).any():  # NaN rows (empty histograms) pass and stay NaN
        raise ValueError(f"{what} must sum to 1 along axis {axis} (normalise with probabilities())")
    return p


def _series(pdfs: Any) -> np.ndarray:
    p = _pdfs(pdfs)
    if p.ndim != 2 or len(p) < 1:
        raise ValueError(f"pdfs must be (T, B) with T ≥ 1, got shape {p.shape}")
    return p


def _times(t: Any, n: int) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"t must have shape ({n},), got {t.shape}")
    if not np.isfinite(t).all() or not (np.diff(t) > 0).all():
        raise ValueError("t must be finite and strictly increasing")
    return t


# ---------------------------------------------------------------------------- histograms


def histogram_counts(samples: Any, edges: Any, backend: str = "auto", device: Any = None) -> np.ndarray:
    """Counts (T, B) int64 of each snapshot on the fixed ``edges`` (B+1,).

    ``samples``: (T, N) (one row per snapshot) or a sequence of T 1-D arrays (lengths may differ);
    numpy arrays, or tensors for the torch backend. Bins are numpy's: [e_b, e_b+1), the last one
    closed [e_B−1, e_B]; for values inside the edges the counts equal ``np.histogram(row, edges)``.
    Values outside [e_0, e_B] (±inf included) are **clipped into the end bins** — with edges over
    the run's global min/max (METHODS.md §1) nothing is outside; with quantile-clipped edges the
    end bins hold the tails. NaN is not counted.
    """
    e = _edges(edges)
    name = resolve_backend(backend, samples)
    rows = _samples(samples, keep_tensors=name == "torch")
    kernel = _k.backend(name)
    if name == "torch":
        return kernel.histogram_counts(rows, e, device=device)
    return kernel.histogram_counts(rows, e)


def histograms(samples: Any, edges: Any, backend: str = "auto", device: Any = None) -> np.ndarray:
    """Probabilities (T, B) float64: :func:`histogram_counts` normalised per snapshot (a snapshot
    with nothing counted gives a NaN row)."""
    return probabilities(histogram_counts(samples, edges, backend, device))


def histogram_accumulate(counts_row: Any, values: Any, edges: Any, backend: str = "auto",
                         device: Any = None) -> Any:
    """Add the counts of one chunk of ``values`` (any shape) into ``counts_row`` (B,) in place.

    The streaming form of :func:`histogram_counts` (same bins, clipping and NaN rule), for a tensor
    read chunk by chunk: start from ``np.zeros(B, np.int64)``, accumulate every chunk, then
    :func:`probabilities`. ``counts_row`` is an int64 numpy array, or for the torch backend also an
    int64 tensor, which stays on its device. Returns ``counts_row``.
    """
    e = _edges(edges)
    name = resolve_backend(backend, values)
    if _is_tensor(counts_row):
        if name != "torch":
            raise ValueError("a tensor counts_row needs backend='torch'")
        shape, dtype_ok = tuple(counts_row.shape), str(counts_row.dtype) == "torch.int64"
    else:
        if not isinstance(counts_row, np.ndarray):
            raise ValueError("counts_row must be an int64 numpy array (updated in place)")
        shape, dtype_ok = counts_row.shape, counts_row.dtype == np.int64
    if shape != (len(e) - 1,) or not dtype_ok:
        raise ValueError(f"counts_row must be int64 of shape ({len(e) - 1},), got {shape}")
    if name == "torch":
        return _k.backend(name).histogram_accumulate(counts_row, values, e, device=device)
    values = _to_numpy(values)
    _check_real(values, "values")
    return _k.backend(name).histogram_accumulate(counts_row, values, e)


def probabilities(counts: Any, axis: int = -1) -> np.ndarray:
    """Counts normalised to sum 1 along ``axis`` (float64); an all-zero row becomes NaN."""
    counts = _to_numpy(counts)
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    return _k.probabilities(counts, axis)


# ---------------------------------------------------------------------------- distances


def fisher_rao(p: Any, q: Any, axis: int = -1) -> np.ndarray:
    """Fisher–Rao geodesic distance 2·arccos(clip(Σ√(p·q), 0, 1)) in [0, π] between discrete
    distributions along ``axis`` (broadcasting over the others).

    Computed as 4·arcsin(H/2), H = ‖√p − √q‖ clipped to [0, √2]: the same number for normalised
    inputs, exactly 0 for identical ones, and accurate for nearby ones, where the arccos form
    turns an error ε in BC into √(2ε). Inputs must be non-negative and sum to 1 within 1e-6.
    """
    return _k.fisher_rao(_pdfs(p, axis, "p"), _pdfs(q, axis, "q"), axis)


def bhattacharyya(p: Any, q: Any, axis: int = -1) -> np.ndarray:
    """Bhattacharyya distance −ln Σ√(p·q) in [0, inf]: ``inf`` (no warning) for disjoint supports.

    Computed as −log1p(−H²/2), H = ‖√p − √q‖ (BC = 1 − H²/2 for normalised inputs), so BC is
    effectively clipped to [0, 1]. Inputs as for :func:`fisher_rao`.
    """
    return _k.bhattacharyya(_pdfs(p, axis, "p"), _pdfs(q, axis, "q"), axis)


def distance_matrix(pdfs: Any, backend: str = "auto", device: Any = None) -> np.ndarray:
    """(T, T) Fisher–Rao distances between all pairs of snapshots of ``pdfs`` (T, B): symmetric,
    zero diagonal; entry (i, j) is ``fisher_rao(pdfs[i], pdfs[j])``. Rows of NaN give NaN."""
    name = resolve_backend(backend, pdfs)
    p = _series(pdfs)
    if name == "torch":
        return _k.backend(name).distance_matrix(pdfs if _is_tensor(pdfs) else p, device=device)
    return _k.backend(name).distance_matrix(p)


# ---------------------------------------------------------------------------- along a run


def information_rate(pdfs: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    """(Γ (T−1,), t_mid (T−1,)): Γ(t_k+½) = dL_k/(t_k+1 − t_k), dL_k = 2·arccos(min(BC_k, 1)) the
    Fisher–Rao distance of consecutive snapshots, t_k+½ = (t_k + t_k+1)/2. ``t`` strictly increasing."""
    p = _series(pdfs)
    return _k.information_rate(p, _times(t, len(p)))


def information_length(pdfs: Any, t: Any = None) -> np.ndarray:
    """L (T,): L(t_k) = Σ_{j<k} dL_j, L[0] = 0. It does not depend on the times; ``t``, if given,
    is only checked (as in :func:`information_rate`)."""
    p = _series(pdfs)
    if t is not None:
        _times(t, len(p))
    return _k.information_length(p)


def distance_from_initial(pdfs: Any) -> np.ndarray:
    """D (T,): geodesic distance 2·arccos(Σ√(p_0·p_k)) of each snapshot from the first (a
    distance, not the path length L; D ≤ L)."""
    return _k.distance_from_initial(_series(pdfs))


# ---------------------------------------------------------------------------- Gaussian estimator


def _gaussian(mu: Any, sigma: Any) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or mu.shape != sigma.shape or len(mu) < 1:
        raise ValueError(f"mu and sigma must be 1-D of one length, got {mu.shape} and {sigma.shape}")
    if not np.isfinite(mu).all() or not (np.isfinite(sigma) & (sigma > 0)).all():
        raise ValueError("mu must be finite and sigma finite and positive")
    return mu, sigma


def gaussian_rate(mu: Any, sigma: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    """(Γ (T−1,), t_mid (T−1,)) of the Gaussian estimator, Γ² = (μ̇² + 2σ̇²)/σ² (METHODS.md §1).

    Discretised at the midpoints t_k+½: μ̇ = Δμ/Δt, σ̇ = Δσ/Δt (central differences) and
    σ = (σ_k + σ_k+1)/2, second order in Δt. A pure shift is exact at any step size; a rescale by
    r = σ_k+1/σ_k per step gives 2√2·tanh(ln r/2) for √2·ln r, a relative error ≈ (ln r)²/12.
    """
    mu, sigma = _gaussian(mu, sigma)
    return _k.gaussian_rate(mu, sigma, _times(t, len(mu)))


def gaussian_length(mu: Any, sigma: Any, t: Any = None) -> np.ndarray:
    """Cumulative L (T,) of the Gaussian estimator, L[0] = 0 (Σ Γ·Δt of :func:`gaussian_rate`;
    independent of ``t``, which is only checked if given)."""
    mu, sigma = _gaussian(mu, sigma)
    if t is not None:
        _times(t, len(mu))
    return _k.gaussian_length(mu, sigma)


# ---------------------------------------------------------------------------- prediction space


def bhattacharyya_matrix(P: Any, Q: Any = None, backend: str = "auto", device: Any = None,
                         tile_m: int | None = None, tile_n: int | None = None) -> np.ndarray:
    """(m, m′) per-sample Bhattacharyya distances between checkpoints' predictions (METHODS.md §2;
    Mao et al., PNAS 2024)::

        d_B(u, v) = (1/N) Σₙ −ln clip(Σ_c √(p_u(c|xₙ) p_v(c|xₙ)), 1e-12, 1)

    ``P`` (m, N, C) class probabilities of m checkpoints on N probe samples, ``Q`` (m′, N, C) or
    None (P with itself: exactly symmetric, zero diagonal). Tiled over checkpoints and samples
    (memory never (m, m, N)); validation (shapes, NaN, negative values, rows summing to 1 within
    1e-3) and the backends in :mod:`dynlab.kernels.bhattacharyya`.
    """
    return _kb.bhattacharyya_matrix(P, Q, backend=resolve_backend(backend, P), tile_m=tile_m,
                                    tile_n=tile_n, device=device)


# ---------------------------------------------------------------------------- relative Fisher


def rfim_quadratic(dW: Any, X: Any, *, output: str, W: Any = None, db: Any = None, b: Any = None,
                   noise: float = 1.0, damping: float = 1e-6, backend: str = "auto",
                   device: Any = None, chunk: int | None = None) -> float | np.ndarray:
    """The relative Fisher information of a layer as a quadratic form in its weight change
    (METHODS.md §3; Sun & Nielsen, ICML 2017)::

        ΔW̃ᵀ ḡ ΔW̃ = (1/N) Σₙ δzₙᵀ Λ(aₙ) δzₙ,   δz = ΔW x + Δb,   a = W x + b

    over the layer's inputs xₙ = ``X[n]`` on N probe samples, without forming ḡ = E_x[Λ ⊗ x̃x̃ᵀ].
    Λ by ``output`` (the model of the layer's output): "linear" I/s², "relu" diag 1[a>0]/s² (both
    with Gaussian noise s = ``noise``), "sigmoid" diag ν(1−ν), "tanh" diag(1 − tanh² a), "softmax"
    diag η − ηηᵀ + ``damping``·I (η = softmax a; damping applies to softmax only).

    Shapes: ``dW``, ``W`` (H_out, H_in), ``X`` (N, H_in), ``db``, ``b`` (H_out,) or None → float;
    or a batch of T steps with a leading T on every argument → float64 (T,). ``W`` is needed for
    every output but "linear". A conv layer: its weight reshaped to (C_out, C_in·kh·kw) against
    unfolded input patches. ``backend`` and ``device`` as for :func:`distance_matrix` ("auto":
    torch for a tensor ``X`` or with CUDA, else numba); validation and backends in
    :mod:`dynlab.kernels.rfim`.
    """
    return _kr.rfim_quadratic(dW, X, output=output, W=W, db=db, b=b, noise=noise, damping=damping,
                              backend=resolve_backend(backend, X), chunk=chunk, device=device)
