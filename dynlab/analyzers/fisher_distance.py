"""``fisher-distance``: pairwise Fisher–Rao geodesic distances between checkpoints of the
distribution of parameter values, pooled and per layer — the input to embeddings.

METHODS.md §1; Thiruthummal, Kim, Shelyag, arXiv 2406.05295. D[i, j] = 2·arccos(Σ_b √(p_i,b p_j,b))
on the same fixed global edges as ``fisher-velocity`` (:mod:`dynlab.analyzers._fisher`), with
the ``distance_matrix`` kernel of the chosen backend (that of :func:`dynlab.geometry.distance_matrix`);
or, with the Gaussian estimator, the closed-form distance between N(μ_i, σ_i²) and N(μ_j, σ_j²).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers import _fisher as fs
from dynlab.analyzers._contract import Output

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class FisherDistance(fs.DistributionParams):
    """Pairwise Fisher–Rao distance matrix between checkpoints of the parameter distribution."""

    name: ClassVar[str] = "fisher-distance"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("pairwise Fisher–Rao geodesic distance between checkpoints of the "
                                  "parameter distribution, pooled and per layer")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params",)
    backends: ClassVar[tuple[str, ...]] = ("numpy", "numba", "torch")
    min_steps: ClassVar[int] = 2
    outputs: ClassVar[dict[str, Output]] = {
        "distance": Output(("layer", "step", "step_other"), "1",
                           "Fisher–Rao geodesic distance between the checkpoints at step and step_other"),
    }

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.kernels import fisher as g

        names, excluded = fs.choose_layers(view, self.subset, self.name)
        steps = np.asarray(view.steps, dtype=np.int64)
        sc = fs.scan(view, names, excluded, self.clip, backend)
        curves = fs.curve_names(sc, self.per_layer)
        attrs: dict[str, Any] = {"estimator": self.estimator, "subset": self.subset,
                                 "range": {c: [sc.lo[c], sc.hi[c]] for c in curves},
                                 "excluded": excluded}
        out = np.full((len(curves), len(steps), len(steps)), np.nan)
        if self.estimator == "histogram":
            edges = fs.edges_for(sc, self.bins, self.max_bins)
            counts = fs.count(view, names, edges, backend, self.per_layer)
            for i, c in enumerate(curves):
                out[i] = g.backend(backend).distance_matrix(g.probabilities(counts[c]))
            attrs["bins"] = {c: len(edges[c]) - 1 for c in curves}
        elif self.estimator == "kde":
            grids = fs.kde_grids(sc, self.bandwidth)
            counts = fs.count(view, names, {c: gr.edges for c, gr in grids.items()}, backend,
                              self.per_layer)
            for i, c in enumerate(curves):
                out[i] = g.backend(backend).distance_matrix(fs.kde_pdfs(counts[c], grids[c]))
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
