"""``lyapunov`` and ``lyapunov-series``: chaos indicators of training (METHODS.md §6).

Two analyzers, because one analyzer has one scope and the two questions need different inputs:

- ``lyapunov`` (scope ``group``, the replica mode): the runs of a group (attr ``group``) are a
  reference and replicas trained from W'(0) = W(0) + U(−ε, ε) with the same batch order; the
  distance d(t) = Σ|W(t) − W'(t)| (L1, or the L2 norm) summed over all floating tensors, read one
  tensor at a time, averaged over replicas; Λ is the slope of ln⟨d(t)⟩ per step on its best-R²
  window, saturation excluded (:func:`dynlab.chaos.finite_time_exponent`; Danovski, Soriano &
  Lacasa, arXiv 2404.05782).
- ``lyapunov-series`` (scope ``run``, one trajectory): Rosenstein's largest exponent
  (:func:`dynlab.chaos.max_lyapunov`) of a series of the run: a metric (default the training
  loss), the weight norm ‖W(t)‖₂, or the leading principal components of the parameter trajectory
  (pooled over the chosen tensors, from the T×T Gram matrix accumulated tensor by tensor).

Everything is computed in float64. The numbers come from :mod:`dynlab.chaos`; this module picks
the runs and tensors, reads them, and labels the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers import _blocks
from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Interval, Options, Text, param

if TYPE_CHECKING:
    import xarray as xr


def _floating(view: Any, layers: str, analyzer: str) -> tuple[list[str], dict[str, str]]:
    """(chosen tensor names, {left-out name: reason}): the floating tensors, or ``layers``."""
    tensors = {t.name: t for t in view.tensors}
    if layers.strip():
        wanted = list(dict.fromkeys(n.strip() for n in layers.split(",") if n.strip()))
        unknown = [n for n in wanted if n not in tensors]
        if unknown:
            raise AnalyzerInputError(f"{analyzer}: run '{view.name}' has no tensor "
                                     f"{', '.join(map(repr, unknown))} (layers=…)")
        bad = [n for n in wanted if np.dtype(tensors[n].dtype).kind != "f"]
        if bad:
            raise AnalyzerInputError(f"{analyzer}: tensor(s) {', '.join(bad)} of run '{view.name}' "
                                     "are not floating point")
        return wanted, {n: "not in layers=" for n in tensors if n not in wanted}
    chosen = [n for n, t in tensors.items() if np.dtype(t.dtype).kind == "f"]
    excluded = {n: f"not floating point ({t.dtype})" for n, t in tensors.items() if n not in chosen}
    if not chosen:
        raise AnalyzerInputError(f"{analyzer}: run '{view.name}' has no floating-point tensor")
    return chosen, excluded


def _step_chunks(view: Any, name: str, n_steps: int) -> int:
    """Steps of tensor ``name`` per read so that one read stays within the block budget."""
    info = next(t for t in view.tensors if t.name == name)
    step_bytes = max(1, int(np.prod(info.shape, dtype=np.int64)) * 8)  # as float64
    return max(1, min(n_steps, _blocks.BLOCK_BYTES // step_bytes))


def _gram(view: Any, name: str, n_steps: int) -> np.ndarray:
    """A Aᵀ (T × T) of tensor ``name`` centred over time, A = (T, size), read in slices of its first
    axis (every step of a slice at once) so that one read stays within the block budget."""
    info = next(t for t in view.tensors if t.name == name)
    shape = tuple(info.shape)
    if not shape:
        parts: list[slice | None] = [None]
    else:
        row = max(1, int(np.prod(shape[1:], dtype=np.int64)) * 8 * n_steps)
        per = max(1, _blocks.BLOCK_BYTES // row)
        parts = [slice(a, min(shape[0], a + per)) for a in range(0, shape[0], per)]
    gram = np.zeros((n_steps, n_steps))
    for part in parts:
        kwargs = {} if part is None else {"part": part}
        w = np.asarray(view.read(name, **kwargs), dtype=np.float64).reshape(n_steps, -1)
        w -= w.mean(axis=0)
        gram += w @ w.T
    return gram


def _exponent_error(analyzer: str, target: str, exc: Exception) -> AnalyzerInputError:
    return AnalyzerInputError(f"{analyzer} on '{target}': {exc}")


@dataclass(frozen=True)
class Lyapunov(Analyzer):
    """Finite-time maximal Lyapunov exponent from the divergence of perturbed replicas."""

    name: ClassVar[str] = "lyapunov"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("finite-time maximal Lyapunov exponent of training from the weight "
                                  "distance between a reference run and perturbed replicas")
    scope: ClassVar[str] = "group"
    inputs: ClassVar[tuple[str, ...]] = ("params", "attrs")
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    min_steps: ClassVar[int] = 3
    outputs: ClassVar[dict[str, Output]] = {
        "distance": Output(("step",), "weight units",
                           "replica distance ⟨d(t)⟩ averaged over replicas (L1 or L2 over all tensors)"),
        "replica_distance": Output(("replica", "step"), "weight units",
                                   "distance d(t) between the reference and each replica"),
        "exponent": Output((), "1/step",
                           "finite-time maximal Lyapunov exponent Λ: slope of ln⟨d⟩ on the best window"),
        "r2": Output((), "1", "R² of the line fitted to ln⟨d⟩ on the window"),
    }

    norm: str = param("l1", Options("l1", "l2"), "l1: Σ|W − W'| (paper); l2: √Σ(W − W')²")
    layers: str = param("", Text(), "comma-separated tensor names ('' = every floating tensor)")
    reference: str = param("", Text(), "name of the reference run ('' = the run with attr replica=0, "
                                       "else the first)")
    saturation: float = param(0.1, Interval(float, 0.0, 1.0, closed="left"),
                              "fraction of the range of ln d treated as the saturation plateau")
    min_r2: float = param(0.9, Interval(float, 0.0, 1.0), "R² above which Λ is accepted")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab import chaos
        from dynlab.kernels.chaos import pair_sums

        runs = list(view.runs)
        ref = self._reference(view, runs)
        replicas = [r for r in runs if r is not ref]
        if not replicas:
            raise AnalyzerInputError(f"{self.name}: group '{view.name}' has one run ('{ref.name}'); "
                                     "replica divergence needs a reference and at least one replica")
        steps = reduce(np.intersect1d, [np.asarray(r.steps, dtype=np.int64) for r in runs])
        if len(steps) < self.min_steps:
            raise AnalyzerInputError(f"{self.name}: the runs of group '{view.name}' share {len(steps)} "
                                     f"step(s); at least {self.min_steps} are needed")
        names, excluded = _floating(ref, self.layers, self.name)
        shapes = {t.name: tuple(t.shape) for t in ref.tensors}
        for r in replicas:
            theirs = {t.name: tuple(t.shape) for t in r.tensors}
            wrong = [n for n in names if theirs.get(n) != shapes[n]]
            if wrong:
                raise AnalyzerInputError(f"{self.name}: replica '{r.name}' lacks tensor '{wrong[0]}' "
                                         f"or has another shape than reference '{ref.name}'")
        sums = np.zeros((len(replicas), len(steps)))
        for n in names:  # one tensor, a block of steps at a time: memory ≈ two blocks
            per = _step_chunks(ref, n, len(steps))
            for a in range(0, len(steps), per):
                rows = steps[a:a + per]
                ref_w = ref.read(n, rows).astype(np.float64)
                for i, r in enumerate(replicas):
                    sums[i, a:a + per] += pair_sums(ref_w, r.read(n, rows), self.norm)
        per = sums if self.norm == "l1" else np.sqrt(sums)
        mean = per.mean(axis=0)
        try:
            fte = chaos.finite_time_exponent(steps.astype(np.float64), mean,
                                             saturation=self.saturation, min_r2=self.min_r2)
        except chaos.ChaosInputError as exc:
            raise _exponent_error(self.name, view.name, exc) from None
        attrs: dict[str, Any] = {"reference": ref.name, "norm": self.norm,
                                 "window": [int(steps[fte.index[0]]), int(steps[fte.index[1]])],
                                 "accepted": bool(fte.accepted), "tensors": len(names),
                                 "excluded": excluded}
        eps = {r.name: r.attrs["eps"] for r in replicas if "eps" in r.attrs}
        if eps:
            values = set(map(str, eps.values()))
            attrs["eps"] = next(iter(eps.values())) if len(values) == 1 and len(eps) == len(
                replicas) else eps
        return xr.Dataset(
            {"distance": (("step",), mean), "replica_distance": (("replica", "step"), per),
             "exponent": ((), fte.value), "r2": ((), fte.r2)},
            coords={"step": steps, "replica": np.array([r.name for r in replicas], dtype=str)},
            attrs=attrs)

    def _reference(self, view: Any, runs: list[Any]) -> Any:
        if self.reference:
            for r in runs:
                if r.name == self.reference:
                    return r
            raise AnalyzerInputError(f"{self.name}: group '{view.name}' has no run "
                                     f"'{self.reference}' (reference=…; its runs: "
                                     f"{', '.join(r.name for r in runs)})")
        for r in runs:
            if str(r.attrs.get("replica", "")) == "0":
                return r
        if not runs:
            raise AnalyzerInputError(f"{self.name}: group '{view.name}' has no runs")
        return runs[0]


@dataclass(frozen=True)
class LyapunovSeries(Analyzer):
    """Rosenstein's largest Lyapunov exponent of one series of a run."""

    name: ClassVar[str] = "lyapunov-series"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("largest Lyapunov exponent (Rosenstein) of a run's loss, weight norm "
                                  "or leading principal components of its weight trajectory")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params", "metrics")
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    min_steps: ClassVar[int] = 20
    outputs: ClassVar[dict[str, Output]] = {
        "divergence": Output(("horizon",), "1",
                             "Rosenstein's mean log-divergence y(k) of neighbours k steps ahead"),
        "series": Output(("step", "component"), "series units",
                         "the analysed series (metric, weight norm, or principal-component scores)"),
        "exponent": Output((), "1/step", "largest Lyapunov exponent: slope of y on its fitted window"),
        "r2": Output((), "1", "R² of the line fitted to y on the window"),
    }

    series: str = param("metric", Options("metric", "weight-norm", "pca"),
                        "metric: a recorded metric; weight-norm: ‖W(t)‖₂; pca: leading principal "
                        "components of W(t)")
    metric: str = param("train_loss", Text(), "the metric analysed when series=metric")
    layers: str = param("", Text(), "tensors for weight-norm/pca, comma-separated ('' = all floating)")
    components: int = param(3, Interval(int, 1, 10), "principal components used when series=pca")
    emb_dim: int = param(0, Interval(int, 0, 20), "embedding dimension (0 = by false nearest neighbours "
                                                  "for one series, 1 for several)")
    lag: int = param(0, Interval(int, 0, None), "embedding delay in checkpoints (0 = autocorrelation 1/e)")
    min_tsep: int = param(-1, Interval(int, -1, None), "least separation of neighbours in checkpoints "
                                                       "(-1 = the mean period)")
    trajectory_len: int = param(0, Interval(int, 0, None), "checkpoints each neighbour pair is followed "
                                                           "(0 = automatic; at least 2)")
    saturation: float = param(0.1, Interval(float, 0.0, 1.0, closed="left"),
                              "fraction of the range of y treated as the saturation plateau")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab import chaos

        steps = np.asarray(view.steps, dtype=np.int64)
        values, keep, label, extra = self._series(view, steps)
        steps = steps[keep]
        spacing = np.unique(np.diff(steps))
        if len(steps) < self.min_steps or len(spacing) != 1:
            raise AnalyzerInputError(
                f"{self.name}: run '{view.name}' needs at least {self.min_steps} evenly spaced "
                f"checkpoints with a finite series, got {len(steps)}"
                + ("" if len(spacing) <= 1 else " unevenly spaced"))
        dt = float(spacing[0])
        try:
            res = chaos.max_lyapunov(
                values, dt, emb_dim=self.emb_dim or None, lag=self.lag or None,
                min_tsep=None if self.min_tsep < 0 else self.min_tsep,
                trajectory_len=self.trajectory_len or None, saturation=self.saturation)
        except chaos.ChaosInputError as exc:
            raise _exponent_error(self.name, view.name, exc) from None
        horizon = (np.arange(res.trajectory_len) * spacing[0]).astype(np.int64)
        attrs = {"series": label, "emb_dim": res.emb_dim, "lag": res.lag, "min_tsep": res.min_tsep,
                 "trajectory_len": res.trajectory_len, "n_vectors": res.n_vectors,
                 "window": [int(horizon[res.window[0]]), int(horizon[res.window[1]])], **extra}
        return xr.Dataset(
            {"divergence": (("horizon",), res.divergence),
             "series": (("step", "component"), values.reshape(len(steps), -1)),
             "exponent": ((), res.value), "r2": ((), res.r2)},
            coords={"horizon": horizon, "step": steps,
                    "component": np.arange(values.reshape(len(steps), -1).shape[1], dtype=np.int64)},
            attrs=attrs)

    def _series(self, view: Any, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, dict]:
        """(values (T',) or (T', k) float64, rows kept, label, extra attrs)."""
        if self.series == "metric":
            metrics = view.metrics
            if self.metric not in metrics:
                raise AnalyzerInputError(f"{self.name}: run '{view.name}' has no metric '{self.metric}' "
                                         f"(its metrics: {', '.join(metrics) or 'none'})")
            x = np.asarray(metrics[self.metric], dtype=np.float64)
            keep = np.isfinite(x)
            return x[keep], keep, f"metric {self.metric}", {}
        names, _ = _floating(view, self.layers, self.name)
        if self.series == "weight-norm":
            sq = np.zeros(len(steps))
            for n in names:  # block by block: memory bounded by one block
                for block in _blocks.blocks(view, n):
                    w = block.values.astype(np.float64)
                    sq[block.rows] += np.einsum("ij,ij->i", w, w)
            x = np.sqrt(sq)
            keep = np.isfinite(x)
            return x[keep], keep, "weight norm", {"tensors": len(names)}
        gram = np.zeros((len(steps), len(steps)))
        for n in names:  # centred over time, tensor by tensor, slice by slice: G = Σ_l A_l A_lᵀ
            gram += _gram(view, n, len(steps))
        if not np.isfinite(gram).all():
            raise AnalyzerInputError(f"{self.name}: run '{view.name}' has non-finite weights")
        evals, evecs = np.linalg.eigh(gram)
        order = np.argsort(evals)[::-1][:self.components]
        lam = np.clip(evals[order], 0.0, None)
        scores = evecs[:, order] * np.sqrt(lam)
        scores *= np.where(scores[np.abs(scores).argmax(axis=0), np.arange(len(order))] < 0, -1, 1)
        share = lam / evals.clip(0).sum() if evals.clip(0).sum() > 0 else np.zeros_like(lam)
        return scores, np.ones(len(steps), bool), f"{len(order)} principal components", {
            "explained_variance": [float(v) for v in share], "tensors": len(names)}
