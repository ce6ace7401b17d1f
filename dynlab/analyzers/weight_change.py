"""``weight-change``: layer-wise relative weight change and its WeightScale clustering.

METHODS.md §4; Agrawal et al., arXiv 2011.06735 (RWC) and arXiv 2107.07005 (WeightScale). The
numbers come from :mod:`dynlab.kernels.weight_change`; this module picks the layers, reads them
one at a time, and labels the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Boolean, Interval, Options, Text, param

if TYPE_CHECKING:
    import xarray as xr

#: a dotted name component naming a normalisation layer: anything containing "norm"
#: (``norm1``, ``LayerNorm``, ``batch_norm``), or ``bn``/``ln`` alone, with digits, or with an
#: ``_`` suffix (``bn1``, ``ln_f``, ``ln_2``)
_NORM_COMPONENT = re.compile(r".*norm.*|(bn|ln)(\d+|_\w*)?", re.IGNORECASE)


def is_norm_layer(name: str) -> bool:
    """Whether a tensor name belongs to a normalisation layer (see ``_NORM_COMPONENT``)."""
    return any(_NORM_COMPONENT.fullmatch(part) for part in name.split("."))


def select_layers(tensors: Any, include: str) -> tuple[list[str], dict[str, str]]:
    """``(selected names in source order, {excluded name: reason})`` for the automatic choice.

    ``include="weights"``: floating tensors with ndim > 1 that are not normalisation layers
    (biases, norm scales and other 1-D tensors are left out). ``include="all"``: every floating
    tensor. Non-floating tensors (step counters, ``num_batches_tracked``) are always left out.
    """
    chosen: list[str] = []
    excluded: dict[str, str] = {}
    for t in tensors:
        if np.dtype(t.dtype).kind not in "fc":
            excluded[t.name] = f"not floating point ({t.dtype})"
        elif include == "all":
            chosen.append(t.name)
        elif len(t.shape) < 2:
            excluded[t.name] = f"{len(t.shape)}-D (bias or norm scale)"
        elif is_norm_layer(t.name):
            excluded[t.name] = "normalisation layer"
        else:
            chosen.append(t.name)
    return chosen, excluded


@dataclass(frozen=True)
class WeightChange(Analyzer):
    """Relative weight change per layer between consecutive checkpoints, clustered (WeightScale)."""

    name: ClassVar[str] = "weight-change"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("relative weight change of each layer between checkpoints, and "
                                  "the layers clustered by it (WeightScale)")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params",)
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    min_steps: ClassVar[int] = 2
    outputs: ClassVar[dict[str, Output]] = {
        "rwc": Output(("step", "layer"), "1",
                      "relative weight change from the previous checkpoint to this step"),
        "cluster": Output(("layer",), "1",
                          "WeightScale cluster of each layer; -1: not clustered (first/last layer "
                          "with drop_ends, or no finite RWC)"),
        "cluster_curve": Output(("label", "step"), "1",
                                "mean cleaned RWC curve of the layers with each cluster label"),
        "inertia": Output(("k",), "1",
                          "k-means within-cluster sum of squares of the cleaned RWC for K clusters"),
    }

    form: str = param("norm", Options("norm", "elementwise"),
                      "norm: ‖Δw‖₁/‖w‖₁ (paper); elementwise: mean |Δwᵢ|/|wᵢ| over wᵢ ≠ 0 (authors' code)")
    include: str = param("weights", Options("weights", "all"),
                         "weights: float tensors with ndim > 1, not norm layers; all: every float tensor")
    layers: str = param("", Text(), "comma-separated tensor names to use instead ('' = by include)")
    k_max: int = param(6, Interval(int, 1, 20), "largest number of clusters tried")
    drop_ends: bool = param(True, Boolean(), "leave the first and last layer out of the clustering")
    seed: int = param(0, Interval(int, 0, None), "random seed of the k-means++ initialisation")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        # one backend: the work is one pass over each layer, bounded by reading the store
        import xarray as xr

        from dynlab.kernels.weight_change import relative_weight_change, weightscale

        steps = np.asarray(view.steps)
        if len(steps) < 2:
            raise AnalyzerInputError(f"run '{view.name}' has {len(steps)} checkpoint(s); "
                                     f"{self.name} needs at least 2")
        names, excluded = self._layers(view)
        rwc = np.stack([relative_weight_change(view.read(n), self.form) for n in names])
        ws = weightscale(rwc, k_max=self.k_max, drop_ends=self.drop_ends, seed=self.seed)
        later = steps[1:]
        return xr.Dataset(
            {
                "rwc": (("step", "layer"), rwc.T),
                "cluster": (("layer",), ws.labels),
                "cluster_curve": (("label", "step"), ws.curves),
                "inertia": (("k",), ws.inertia),
            },
            coords={"step": later, "layer": np.array(names, dtype=str),
                    "label": np.arange(ws.chosen_k, dtype=np.int64), "k": ws.k},
            attrs={"chosen_k": int(ws.chosen_k), "form": self.form, "excluded": excluded,
                   "unclustered": [n for n, c in zip(names, ws.labels, strict=True) if c < 0]},
        )

    def _layers(self, view: Any) -> tuple[list[str], dict[str, str]]:
        tensors = list(view.tensors)
        if self.layers.strip():
            known = {t.name: t for t in tensors}
            wanted = [n.strip() for n in self.layers.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in known]
            if unknown:
                raise AnalyzerInputError(
                    f"run '{view.name}' has no tensor {', '.join(map(repr, unknown))} "
                    f"(layers=…; its tensors: {_short([t.name for t in tensors])})")
            ints = [n for n in wanted if np.dtype(known[n].dtype).kind not in "fc"]
            if ints:
                raise AnalyzerInputError(f"run '{view.name}': tensor(s) {', '.join(ints)} are not "
                                         "floating point; relative weight change needs weights")
            names = list(dict.fromkeys(wanted))
            return names, {t.name: "not in layers=" for t in tensors if t.name not in names}
        names, excluded = select_layers(tensors, self.include)
        if not names:
            raise AnalyzerInputError(
                f"run '{view.name}': no tensor matches include={self.include} (weights need ndim > 1 "
                "and no norm name); try -p weight-change.include=all or layers=…")
        return names, excluded


def _short(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
