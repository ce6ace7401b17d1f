"""Per-sample Bhattacharyya distance between checkpoints' predictions (METHODS.md §2, InPCA):

    d_B(u, v) = (1/N) Σₙ −ln clip(Σ_c √(p_u(c|xₙ) · p_v(c|xₙ)), 1e-12, 1)

for P (m, N, C) — the class probabilities of m checkpoints on the same N probe samples — against
itself or Q (m′, N, C) (Mao et al., PNAS 2024, arXiv 2305.01604). ``_numpy`` is the reference;
``_numba`` (CPU, parallel) and ``_torch`` (any device, chunked) give the same numbers up to
summation order (≈ 1e-15). All tile over checkpoints and samples: memory never grows as m·m′·N.

:func:`bhattacharyya_matrix` validates and dispatches; backends are imported on demand, so importing
this package loads neither numba nor torch. Nothing of dynlab is imported but ``dynlab.errors``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from dynlab.errors import DynlabError

__all__ = ["BACKENDS", "PredictionsError", "backend", "bhattacharyya_matrix", "check_predictions"]

BACKENDS = ("numpy", "numba", "torch")
SUM_TOL = 1e-3  # |Σ_c p − 1| allowed: float16 softmax outputs carry ≈ 1e-3
_CHECK_ROWS = 1 << 20  # probability rows (n, c) checked at a time: bounded temporary memory


class PredictionsError(DynlabError, ValueError):
    """Class probabilities of the wrong shape, negative, NaN, or rows not summing to 1."""


def backend(name: str):
    """The module of backend ``name`` (one of :data:`BACKENDS`), imported now."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return importlib.import_module(f"dynlab.kernels.bhattacharyya._{name}")


_load = backend


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def check_predictions(P: Any, what: str = "P") -> Any:
    """``P`` as a C-contiguous float32/float64 numpy array (tensors are kept, on their device),
    after checking: shape (m, N, C) with m, N, C ≥ 1; no NaN; non-negative; each row sums to 1
    within 1e-3. Raises :class:`PredictionsError`. Checked in row chunks (bounded memory)."""
    tensor = _is_tensor(P)
    if not tensor:
        P = np.asarray(P)
        if not (np.issubdtype(P.dtype, np.floating) or np.issubdtype(P.dtype, np.integer)) \
                or P.dtype == np.bool_:
            raise PredictionsError(f"{what} must hold real probabilities, got dtype {P.dtype}")
        if P.dtype not in (np.float32, np.float64):
            P = P.astype(np.float64)
        P = np.ascontiguousarray(P)
    elif P.is_complex() or not P.is_floating_point():
        P = P.double()
    if P.ndim != 3 or min(P.shape) < 1:
        raise PredictionsError(f"{what} must be (checkpoints, samples, classes) with none empty, "
                               f"got shape {tuple(P.shape)}")
    rows = P.reshape(-1, P.shape[-1])
    step = max(1, _CHECK_ROWS // P.shape[-1])
    for r0 in range(0, rows.shape[0], step):
        r = rows[r0:r0 + step]
        if bool((r != r).any()):
            raise PredictionsError(f"{what} contains NaN")
        if bool((r < 0).any()):
            raise PredictionsError(f"{what} must be non-negative")
        s = r.double().sum(-1) if tensor else r.sum(-1, dtype=np.float64)
        dev = float((s - 1).abs().max()) if tensor else float(np.abs(s - 1).max())
        if not dev <= SUM_TOL:  # also catches ±inf
            raise PredictionsError(f"each row of {what} must sum to 1 over classes (within {SUM_TOL}); "
                                   f"found a row off by {dev:.3g}")
    return P


def bhattacharyya_matrix(P: Any, Q: Any = None, backend: str = "numba", *,
                         tile_m: int | None = None, tile_n: int | None = None,
                         device: Any = None) -> np.ndarray:
    """(m, m′) float64 matrix of d_B between the checkpoints of ``P`` (m, N, C) and ``Q`` (m′, N, C);
    with ``Q=None`` of ``P`` with itself: then exactly symmetric with a zero diagonal.

    ``backend``: "numpy" (reference), "numba" (CPU, parallel), "torch" (device of a tensor ``P``,
    else ``device``, default CPU). ``tile_m`` × ``tile_m`` checkpoints (numba: ``tile_m`` ×
    4·``tile_m``) and ``tile_n`` samples are processed at a time (backend defaults if None).
    Inputs are validated (:func:`check_predictions`) and must agree in samples and classes. d_B is
    not a metric (no triangle inequality).
    """
    mod = _load(backend)
    if backend != "torch" and (_is_tensor(P) or _is_tensor(Q)):
        P = P if not _is_tensor(P) else P.detach().cpu().numpy()
        Q = Q if not _is_tensor(Q) else Q.detach().cpu().numpy()
    P = check_predictions(P, "P")
    if Q is not None:
        Q = check_predictions(Q, "Q")
        if tuple(Q.shape[1:]) != tuple(P.shape[1:]):
            raise PredictionsError(f"P and Q must have the same (samples, classes), got "
                                   f"{tuple(P.shape[1:])} and {tuple(Q.shape[1:])}")
    for name, value in (("tile_m", tile_m), ("tile_n", tile_n)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    kwargs = {"tile_m": tile_m or mod.TILE_M, "tile_n": tile_n or mod.TILE_N}
    if backend == "torch":
        kwargs["device"] = device  # a numpy Q is moved to P's device block by block
    return mod.bhattacharyya_matrix(P, Q, **kwargs)
