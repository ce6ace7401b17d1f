"""An example dynlab analyzer plugin: the norm of every weight tensor at every checkpoint.

Registered in ``pyproject.toml`` under the entry-point group ``dynlab.analyzers``::

    [project.entry-points."dynlab.analyzers"]
    layer-norms = "dynlab_layer_norms:LayerNorms"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from dynlab.analyzers import Analyzer, AnalyzerInputError, Boolean, Options, Output, param

__all__ = ["LayerNorms", "tensor_norms"]


def tensor_norms(values: np.ndarray, ord: str = "fro") -> np.ndarray:
    """Entrywise norm of each checkpoint of one tensor, ``values`` of shape (T, *shape) → (T,).

    fro: ‖vec W‖₂ = sqrt(Σ w²) (the Frobenius norm of a matrix); l1: Σ |w|; max: max |w|.
    Accumulated in float64 whatever the stored dtype.
    """
    flat = np.abs(values.reshape(len(values), -1).astype(np.float64, copy=False))
    if ord == "fro":
        return np.sqrt(np.einsum("ij,ij->i", flat, flat))
    if ord == "l1":
        return flat.sum(axis=1)
    return flat.max(axis=1, initial=0.0)


@dataclass(frozen=True)
class LayerNorms(Analyzer):
    """‖W_l(t)‖ for every weight tensor W_l and every checkpoint t."""

    name = "layer-norms"
    version = "1"  # bump whenever the numbers change: stored results are then recomputed
    description = "Norm of every weight tensor at every checkpoint"
    scope = "run"
    inputs = ("params",)
    outputs = {"norm": Output(("step", "layer"), "same as the weights", "‖W_l(t)‖ (entrywise)")}
    backends = ("numpy",)
    min_steps = 1  # a norm needs only one checkpoint

    ord: str = param("fro", Options("fro", "l1", "max"),
                     "entrywise norm: fro = sqrt(sum w^2), l1 = sum |w|, max = max |w|")
    biases: bool = param(False, Boolean(), "also the 1-D tensors (biases, norm gains)")

    def compute(self, view, *, backend="numpy"):
        chosen = [t for t in view.tensors if self.biases or len(t.shape) >= 2]
        if not chosen:
            raise AnalyzerInputError(f"run '{view.name}' has no weight tensors (ndim >= 2); "
                                     "use -p layer-norms.biases=true for the 1-D ones")
        # one tensor at a time: memory stays near the largest tensor across all steps
        norms = np.stack([tensor_norms(view.read(t.name), self.ord) for t in chosen], axis=1)
        return xr.Dataset(
            {"norm": (("step", "layer"), norms, {"long_name": f"{self.ord} norm"})},
            coords={"step": view.steps, "layer": [t.name for t in chosen]})
