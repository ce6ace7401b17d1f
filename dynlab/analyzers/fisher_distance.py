"""``fisher-distance``: pairwise Fisher–Rao geodesic distances between checkpoints of the
distribution of parameter values, pooled and per layer — the input to embeddings.

METHODS.md §1; Thiruthummal, Kim, Shelyag, arXiv 2406.05295. D[i, j] = 2·arccos(Σ_b √(p_i,b p_j,b))
on the same fixed global edges as ``fisher-velocity`` (:mod:`dynlab.analyzers._fisher`), with
the ``distance_matrix`` kernel of the chosen backend (that of :func:`dynlab.geometry.distance_matrix`);
or, with the Gaussian estimator, the closed-form distance between N(μ_i, σ_i²) and N(μ_j, σ_j²).

``space=predictions``: the distance between checkpoints in prediction space instead (METHODS.md
§2; Mao et al., PNAS 2024), from the run's stored probe predictions P (T, N, C): the per-sample
Bhattacharyya distance d_B(i, j) = (1/N) Σₙ −ln Σ_c √(p_i(c|xₙ) p_j(c|xₙ)) of
:func:`dynlab.geometry.bhattacharyya_matrix` (the kernel ``inpca`` uses), one curve named
``predictions``. d_B ≈ s²/8 for a small per-sample Fisher–Rao arc s (2·arccos convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers import _fisher as fs
from dynlab.analyzers._contract import AnalyzerInputError, Output
from dynlab.analyzers._params import Options, param

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class FisherDistance(fs.DistributionParams):
    """Pairwise Fisher–Rao distance matrix between checkpoints of the parameter distribution."""

    name: ClassVar[str] = "fisher-distance"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = ("pairwise Fisher–Rao geodesic distance between checkpoints of the "
                                  "parameter distribution, pooled and per layer")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params", "probe/predictions")
    backends: ClassVar[tuple[str, ...]] = ("numpy", "numba", "torch")
    min_steps: ClassVar[int] = 2
    outputs: ClassVar[dict[str, Output]] = {
        "distance": Output(("layer", "step", "step_other"), "1",
                           "Fisher–Rao geodesic distance between the checkpoints at step and "
                           "step_other (space=predictions: per-sample Bhattacharyya distance, nat)"),
    }

    space: str = param("params", Options("params", "predictions"),
                       "params: distribution of parameter values; predictions: per-sample "
                       "Bhattacharyya distance of the stored probe predictions (the other "
                       "parameters are then unused)")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.kernels import fisher as g

        if self.space == "predictions":
            return _prediction_distances(view, backend)
        names, excluded = fs.choose_layers(view, self.subset, self.name)
        steps = np.asarray(view.steps, dtype=np.int64)
        sc = fs.scan(view, names, excluded, self.clip, backend)
        curves = fs.curve_names(sc, self.per_layer)
        attrs: dict[str, Any] = {"space": "params", "estimator": self.estimator,
                                 "subset": self.subset, "range": {c: [sc.lo[c], sc.hi[c]] for c in curves},
                                 "excluded": excluded}
        out = np.full((len(curves), len(steps), len(steps)), np.nan)
        if self.estimator == "histogram":
            edges = fs.edges_for(sc, self.bins, self.max_bins)
            for c, counts in fs.count(view, names, edges, backend, self.per_layer):
                out[curves.index(c)] = g.backend(backend).distance_matrix(g.probabilities(counts))
            attrs["bins"] = {c: len(edges[c]) - 1 for c in curves}
        elif self.estimator == "kde":
            grids = fs.kde_grids(sc, self.bandwidth)
            for c, counts in fs.count(view, names, {c: gr.edges for c, gr in grids.items()},
                                      backend, self.per_layer):
                out[curves.index(c)] = g.backend(backend).distance_matrix(
                    fs.kde_pdfs(counts, grids[c]))
            attrs["kde"] = {c: {"h": grids[c].h, "grid": len(grids[c].edges) - 1} for c in curves}
        else:
            for i, c in enumerate(curves):
                mu, sd = sc.mean[c], sc.std[c]
                if fs.gaussian_ok(mu, sd):  # else NaN: a constant or non-finite tensor
                    # symmetric and zero on the diagonal exactly: the formula is, in floating point
                    out[i] = fs.gaussian_distance(mu[:, None], sd[:, None], mu[None], sd[None])
        return xr.Dataset(
            {"distance": (("layer", "step", "step_other"), out)},
            coords={"layer": np.array(curves, dtype=str), "step": steps, "step_other": steps},
            attrs=attrs,
        )


def _prediction_distances(view: Any, backend: str) -> xr.Dataset:
    """d_B between every pair of the run's checkpoints in prediction space (one curve)."""
    import xarray as xr

    from dynlab import geometry

    if not getattr(view, "has_predictions", False):
        raise AnalyzerInputError(
            f"run '{view.name}' has no probe predictions for every checkpoint (store them with "
            "dynlab probe, Recorder.log(..., predictions=…) or a predictions/ sidecar)")
    predictions = np.asarray(view.read_predictions())
    distance = geometry.bhattacharyya_matrix(predictions, backend=backend)
    steps = np.asarray(view.steps, dtype=np.int64)
    return xr.Dataset(
        {"distance": (("layer", "step", "step_other"), distance[None])},
        coords={"layer": np.array(["predictions"]), "step": steps, "step_other": steps},
        attrs={"space": "predictions", "distance": "per-sample Bhattacharyya d_B (nat)",
               "samples": int(predictions.shape[1]), "classes": int(predictions.shape[2])},
    )
