"""Relative Fisher information (RFIM) of one layer as a quadratic form (METHODS.md §3; Sun & Nielsen,
ICML 2017):

    ΔW̃ᵀ ḡ ΔW̃ = E_x[δz(x)ᵀ Λ(x) δz(x)],   δz = ΔW x + Δb (= ΔW̃ x̃, x̃ = (x, 1)),

the mean over probe inputs x of the Fisher information of the layer's output model, Λ(x) ⊗ x̃x̃ᵀ,
applied to a change ΔW̃ = (ΔW, Δb) of its weights — without forming the Kronecker product.
``_numpy`` is the reference and states Λ per output model; ``_numba`` (CPU, parallel over samples)
and ``_torch`` (any device) give the same numbers up to summation order (≈ 1e-15 relative). All
work on blocks of samples: memory O(chunk · H_out), never (N, H_out, H_in).

:func:`rfim_quadratic` validates and dispatches; backends are imported on demand, so importing this
package loads neither numba nor torch. Nothing of dynlab is imported but ``dynlab.errors``.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any

import numpy as np

from dynlab.errors import DynlabError

__all__ = ["BACKENDS", "OUTPUTS", "RFIMInputError", "backend", "rfim_quadratic"]

BACKENDS = ("numpy", "numba", "torch")
#: output models: the nonlinearity (and noise model) that follows the layer
OUTPUTS = ("softmax", "sigmoid", "tanh", "relu", "linear")


class RFIMInputError(DynlabError, ValueError):
    """Weights, weight changes or inputs of the wrong shape, not real, or not finite."""


def backend(name: str) -> ModuleType:
    """The module of backend ``name`` (one of :data:`BACKENDS`), imported now."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return importlib.import_module(f"dynlab.kernels.rfim._{name}")


_load = backend  # rfim_quadratic's parameter ``backend`` shadows the function


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _real(x: Any, what: str, keep_tensor: bool) -> Any:
    """A float32/float64 numpy array, or (``keep_tensor``) a floating tensor; real values only."""
    if _is_tensor(x):
        if x.is_complex():
            raise RFIMInputError(f"{what} must be real, got {x.dtype}")
        if not keep_tensor:
            x = x.detach().cpu().numpy()
        elif not x.is_floating_point():
            return x.double()
        else:
            return x
    x = np.asarray(x)
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                   or np.issubdtype(x.dtype, np.integer)):
        raise RFIMInputError(f"{what} must hold real numbers, got dtype {x.dtype}")
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _finite(x: Any, what: str) -> None:
    """Raise unless every value is finite (checked one leading slice at a time: bounded memory)."""
    for part in x:
        ok = bool(part.isfinite().all()) if _is_tensor(part) else bool(np.isfinite(part).all())
        if not ok:
            raise RFIMInputError(f"{what} contains NaN or inf")


def rfim_quadratic(dW: Any, X: Any, *, output: str, W: Any = None, db: Any = None, b: Any = None,
                   noise: float = 1.0, damping: float = 1e-6, backend: str = "numpy",
                   chunk: int | None = None, device: Any = None) -> float | np.ndarray:
    """E_x[δzᵀ Λ δz]: the RFIM quadratic form of a layer for the weight change ``dW`` (METHODS §3).

    One step: ``dW`` (H_out, H_in), ``X`` (N, H_in) the layer's inputs on N probe samples, ``W``
    (H_out, H_in) the weights Λ is evaluated at, ``db``, ``b`` (H_out,) the bias change and bias
    (None: no bias) → a float. A batch of T steps: ``dW``, ``W`` (T, H_out, H_in), ``X`` (T, N,
    H_in), ``db``, ``b`` (T, H_out) → float64 (T,). δz = dW x + db, a = W x + b, and Λ(a) by
    ``output``: "linear" I/s², "relu" diag 1[a>0]/s² (Gaussian noise, s = ``noise``), "sigmoid"
    diag ν(1−ν) (Bernoulli), "tanh" diag(1 − tanh² a) (±1 units), "softmax" diag η − ηηᵀ +
    ``damping``·I (categorical; the damping applies to softmax only, whose RFIM is singular along
    δz ∝ 1). ``W`` is needed for every output but "linear" (where it is ignored).

    ``backend``: "numpy" (reference), "numba" (CPU, parallel over samples), "torch" (the device of
    a tensor ``X``, else ``device``, default CPU). ``chunk``: samples (rows) per block, the backend's
    default if None. Inputs may be float32; everything is computed in float64.
    """
    mod = _load(backend)
    if output not in OUTPUTS:
        raise RFIMInputError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    keep = backend == "torch"
    X = _real(X, "X", keep)
    single = X.ndim == 2
    if X.ndim not in (2, 3) or min(X.shape) < 1:
        raise RFIMInputError(f"X must be (N, H_in) or (T, N, H_in) with none empty, got shape "
                             f"{tuple(X.shape)}")
    lead = () if single else (int(X.shape[0]),)
    h_in = int(X.shape[-1])
    dW = _real(dW, "dW", keep)
    if dW.ndim != len(lead) + 2 or tuple(dW.shape[:-2]) != lead or dW.shape[-1] != h_in \
            or dW.shape[-2] < 1:
        want = "(T, H_out, H_in)" if lead else "(H_out, H_in)"
        raise RFIMInputError(f"dW must be {want} with H_in = {h_in} (from X), got shape "
                             f"{tuple(dW.shape)}")
    h_out = int(dW.shape[-2])
    if output != "linear" and W is None:
        raise RFIMInputError(f"output={output!r} needs the weights W (Λ depends on a = W x + b)")
    arrays = {"dW": dW, "X": X}
    for name, value, shape in (("W", W, (*lead, h_out, h_in)), ("db", db, (*lead, h_out)),
                               ("b", b, (*lead, h_out))):
        if value is None or (output == "linear" and name in ("W", "b")):
            arrays[name] = None
            continue
        value = _real(value, name, keep)
        if tuple(value.shape) != shape:
            raise RFIMInputError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
        arrays[name] = value
    for name, value in (("noise", noise), ("damping", damping)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RFIMInputError(f"{name} must be a finite number, got {value!r}")
    if noise <= 0 or damping < 0:
        raise RFIMInputError(f"noise must be > 0 and damping ≥ 0, got noise={noise}, damping={damping}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise RFIMInputError(f"chunk must be a positive integer, got {chunk!r}")
    for name, value in arrays.items():
        if value is not None:
            _finite(value if value.ndim > 1 else value[None], name)
    if single:
        arrays = {k: None if v is None else v[None] for k, v in arrays.items()}
    kwargs: dict[str, Any] = {"chunk": chunk or mod.CHUNK}
    if keep:
        kwargs["device"] = device
    out = mod.quadratic(arrays["dW"], arrays["X"], arrays["W"], arrays["db"], arrays["b"], output,
                        float(noise), float(damping), **kwargs)
    return float(out[0]) if single else out
