"""``inpca``: the prediction-space geometry of a group of runs (METHODS.md §2; Mao et al., PNAS
2024, arXiv 2305.01604).

Every checkpoint of every run in the group is a point P = ∏ₙ p(·|xₙ) given by its stored class
probabilities on a fixed probe set (``probe/predictions``, (T, N, C) per run). The per-sample
Bhattacharyya distance between all pairs of checkpoints of all runs,

    d_B(u, v) = (1/N) Σₙ −ln Σ_c √(p_u(c|xₙ) p_v(c|xₙ)),

(:func:`dynlab.geometry.bhattacharyya_matrix`, tiled; numpy / numba / torch) is embedded by InPCA
(:func:`dynlab.inpca.embed`): the runs embed **together**, so their trajectories share one set of
axes. Per checkpoint also: its progress λ ∈ [0, 1] along the geodesic from uniform predictions
to the one-hot labels (when the run stores ``probe/labels``) and the length of each step on the
product of spheres (:func:`dynlab.inpca.step_lengths`) divided by the step in t (the speed).

Memory: the predictions of all checkpoints of the group are held at once ((Σ T) × N × C float32)
plus the (Σ T)² distance matrix; the distance computation itself is tiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Interval, Options, param

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class InPCA(Analyzer):
    """Joint InPCA embedding of the prediction-space trajectories of a group of runs."""

    name: ClassVar[str] = "inpca"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("InPCA of the runs' predictions on a probe set: Bhattacharyya "
                                  "distances between all checkpoints, embedded together; progress "
                                  "and speed in prediction space")
    scope: ClassVar[str] = "group"
    inputs: ClassVar[tuple[str, ...]] = ("probe/predictions",)
    backends: ClassVar[tuple[str, ...]] = ("numpy", "numba", "torch")
    min_steps: ClassVar[int] = 2
    outputs: ClassVar[dict[str, Output]] = {
        "coords": Output(("run", "step", "component"), "√nat",
                         "InPCA coordinates of each checkpoint (NaN where a run has no such step)"),
        "eigenvalues": Output(("component",), "nat",
                              "signed eigenvalues of −½·J D J by |λ|: > 0 space-like, < 0 time-like"),
        "explained_stress": Output(("component",), "1",
                                   "χ_k = 1 − √(1 − Σ_{i≤k} λ_i² / ‖W‖²_F) of the first k components"),
        "progress": Output(("run", "step"), "1",
                           "λ of the closest point on the uniform → one-hot-labels geodesic "
                           "(NaN without probe labels)"),
        "speed": Output(("run", "step"), "1/step",
                        "prediction-space step length from the previous checkpoint / Δt "
                        "(NaN at the first)"),
    }

    n_components: int = param(3, Interval(int, 1, 50), "InPCA components kept")
    solver: str = param("auto", Options("auto", "dense", "eigsh"),
                        "eigensolver: dense, partial (eigsh, largest |λ|) or auto by size")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab import geometry, inpca

        runs = list(view.runs)
        predictions, labels = [], []
        for run in runs:
            if not getattr(run, "has_predictions", False):
                raise AnalyzerInputError(
                    f"run '{run.name}' has no probe predictions for every checkpoint (store them "
                    "with dynlab probe, Recorder.log(..., predictions=…) or a predictions/ sidecar)")
            predictions.append(np.asarray(run.read_predictions()))
            labels.append(run.probe_labels)
        shapes = {p.shape[1:] for p in predictions}
        if len(shapes) != 1:
            raise AnalyzerInputError(f"group '{view.name}': the runs' probe predictions differ in "
                                     f"(samples, classes): {sorted(shapes)}; InPCA needs one probe set")
        stacked = np.concatenate(predictions)
        distances = geometry.bhattacharyya_matrix(stacked, backend=backend)
        k = min(self.n_components, len(stacked))
        emb = inpca.embed(distances, k, solver=self.solver)

        steps = np.unique(np.concatenate([np.asarray(r.steps, dtype=np.int64) for r in runs]))
        coords = np.full((len(runs), len(steps), k), np.nan)
        progress = np.full((len(runs), len(steps)), np.nan)
        speed = np.full((len(runs), len(steps)), np.nan)
        start = 0
        for i, (run, p, lab) in enumerate(zip(runs, predictions, labels, strict=True)):
            cols = np.searchsorted(steps, np.asarray(run.steps, dtype=np.int64))
            coords[i, cols] = emb.coords[start:start + len(p), :k]
            start += len(p)
            if lab is not None:
                progress[i, cols] = inpca.progress(p, lab)
            dt = np.diff(np.asarray(run.steps, dtype=np.float64))
            speed[i, cols[1:]] = inpca.step_lengths(p) / dt
        return xr.Dataset(
            {"coords": (("run", "step", "component"), coords),
             "eigenvalues": (("component",), np.asarray(emb.eigenvalues[:k], dtype=np.float64)),
             "explained_stress": (("component",), np.asarray(emb.explained_stress[:k])),
             "progress": (("run", "step"), progress), "speed": (("run", "step"), speed)},
            coords={"run": np.array([r.name for r in runs], dtype=str), "step": steps,
                    "component": np.arange(1, k + 1)},
            attrs={"checkpoints": len(stacked), "samples": int(stacked.shape[1]),
                   "classes": int(stacked.shape[2]),
                   "space_like": int((np.asarray(emb.eigenvalues[:k]) > 0).sum()),
                   "labels": [r.name for r, lab in zip(runs, labels, strict=True) if lab is not None]},
        )
