"""``transitions``: where a training curve changes regime, against the overfitting onset, with the
controls METHODS.md §8 asks for.

The numbers come from :func:`dynlab.transitions.detect` (x = ln t, y = ln of the series; t* at the
minimum of y'', or the largest fall of the exponent between change-point pieces). The series is
another analyzer's result variable, by default ``fisher-velocity``'s information length L of the
pooled parameter distribution. Beside t* the result carries:

- the same detector on the plain displacement ‖θ_t − θ_0‖ (all floating tensors), read from params;
- the overfitting onset t_of = the step of the minimum of the validation loss (``val_metric``, by
  default the first of val_loss, valid_loss, validation_loss, test_loss present), the gap t* − t_of
  and the ratio t*/t_of, for both detectors;
- the first step with full training accuracy when a train accuracy metric exists;
- fisher-velocity's subsampling ratio L(every 2nd)/L(all) of the chosen curve;
- t* over the regularisation factors (smoothing × 0.5…2, see :mod:`dynlab.transitions`).

Claim to test: t* ≈ t_of or t* < t_of, found without test data; the controls say whether the
transition is specific to the Fisher length or just a knee of the displacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Interval, Options, Text, param

if TYPE_CHECKING:
    import xarray as xr

#: validation-loss metric names tried in order (eval_loss: Hugging Face's trainer_state.json)
VAL_METRICS = ("val_loss", "eval_loss", "valid_loss", "validation_loss", "test_loss")
ACC_METRICS = ("train_acc", "train_accuracy", "accuracy", "acc")
DETECTORS = ("series", "displacement")
TIME_DIMS = ("step", "step_mid")


@dataclass(frozen=True)
class Transitions(Analyzer):
    """Transition t* of a training curve, with the overfitting onset and the §8 controls."""

    name: ClassVar[str] = "transitions"
    version: ClassVar[str] = "2"  # 2: eval_loss is a validation loss
    description: ClassVar[str] = ("transition t* where a training curve's power law changes regime "
                                  "(min of d²lnL/dln t²), vs the overfitting onset, with controls")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params", "metrics")
    requires: ClassVar[tuple[str, ...]] = ("fisher-velocity",)
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    min_steps: ClassVar[int] = 8
    outputs: ClassVar[dict[str, Output]] = {
        "value": Output(("time",), "source", "the analysed series y(t) at its own times"),
        "slope": Output(("time",), "1", "local power-law exponent y' = d ln y / d ln t"),
        "curvature": Output(("time",), "1", "y'' = d² ln y / d(ln t)²"),
        "displacement": Output(("step",), "param units", "‖θ_t − θ_0‖ over all floating tensors"),
        "displacement_slope": Output(("step",), "1", "d ln‖θ_t − θ_0‖ / d ln t"),
        "found": Output(("detector",), "1", "whether the detector found a transition"),
        "t_star": Output(("detector",), "step", "transition t* (NaN when none is found)"),
        "t_err": Output(("detector",), "1", "bootstrap standard deviation of ln t*"),
        "t_low": Output(("detector",), "step", "low end of t*'s interval (bootstrap ∪ sensitivity)"),
        "t_high": Output(("detector",), "step", "high end of t*'s interval"),
        "drop": Output(("detector",), "1", "fall of the exponent y' across t*"),
        "gap": Output(("detector",), "step", "t* − t_of (NaN without a validation loss)"),
        "t_sensitivity": Output(("detector", "factor"), "step",
                                "t* candidate at smoothing (or shortest piece) × factor"),
    }

    source: str = param("fisher-velocity.length", Text(),
                        "the series: <analyzer>.<variable> of a result of this run (dims step or "
                        "step_mid, optionally layer)")
    layer: str = param("all", Text(), "the layer coordinate to take when the variable has a layer dim")
    method: str = param("curvature", Options("curvature", "changepoint"),
                        "curvature: min of y''; changepoint: piecewise power laws, BIC")
    smoother: str = param("spline", Options("spline", "savgol"), "regularised derivatives")
    smoothing: float = param(0.25, Interval(float, 0.0, 0.5, closed="right"),
                             "smoothing window as a fraction of the ln t span")
    n_boot: int = param(100, Interval(int, 10, 10000), "bootstrap replicates over snapshots")
    min_drop: float = param(0.1, Interval(float, 0.0, None), "least fall of the exponent for a transition")
    max_width: float = param(0.25, Interval(float, 0.0, 1.0, closed="right"),
                             "widest accepted interval of t*, as a fraction of the ln t span")
    val_metric: str = param("", Text(), f"validation loss metric ('' = first of {', '.join(VAL_METRICS)})")
    acc_metric: str = param("", Text(), f"training accuracy metric ('' = first of {', '.join(ACC_METRICS)})")
    seed: int = param(0, Interval(int, 0, None), "random seed of the bootstrap")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.transitions import TransitionInputError, detect

        steps = np.asarray(view.steps, dtype=np.int64)
        if len(steps) < self.min_steps:
            raise AnalyzerInputError(f"run '{view.name}' has {len(steps)} checkpoint(s); "
                                     f"{self.name} needs at least {self.min_steps}")
        t, y, sub_ratio = self._series(view)
        disp = _displacement(view)
        opts = dict(method=self.method, smoothing=self.smoothing, smoother=self.smoother,
                    n_boot=self.n_boot, min_drop=self.min_drop, max_width=self.max_width, seed=self.seed)
        results = {}
        for det, (tt, yy) in zip(DETECTORS, ((t, y), (steps.astype(np.float64), disp)), strict=True):
            try:
                results[det] = detect(tt, yy, **opts)
            except TransitionInputError as exc:
                what = self.source if det == "series" else "‖θ_t − θ_0‖"
                raise AnalyzerInputError(f"run '{view.name}': {what}: {exc}") from None
        t_of, val_name = self._onset(view, steps)
        t_acc, acc_name = self._full_accuracy(view, steps)
        rs = [results[d] for d in DETECTORS]
        star = np.array([r.t_star for r in rs])
        ds = xr.Dataset(
            {
                "value": (("time",), y),
                "slope": (("time",), _on(t, rs[0].t_grid, rs[0].slope)),
                "curvature": (("time",), _on(t, rs[0].t_grid, rs[0].curvature)),
                "displacement": (("step",), disp),
                "displacement_slope": (("step",), _on(steps.astype(np.float64), rs[1].t_grid, rs[1].slope)),
                "found": (("detector",), np.array([r.found for r in rs])),
                "t_star": (("detector",), star),
                "t_err": (("detector",), np.array([r.t_err for r in rs])),
                "t_low": (("detector",), np.array([r.interval[0] for r in rs])),
                "t_high": (("detector",), np.array([r.interval[1] for r in rs])),
                "drop": (("detector",), np.array([r.drop for r in rs])),
                "gap": (("detector",), star - (np.nan if t_of is None else t_of)),
                "t_sensitivity": (("detector", "factor"), np.stack([r.sensitivity for r in rs])),
            },
            coords={"time": t, "step": steps, "detector": np.array(DETECTORS, dtype=str),
                    "factor": np.array(rs[0].factors)},
            attrs={
                "source": self.source, "layer": self.layer, "method": self.method,
                "val_metric": val_name, "t_of": t_of,
                "ratio": {d: _json(r.t_star / t_of) if t_of else None for d, r in results.items()},
                "acc_metric": acc_name, "t_full_accuracy": t_acc,
                "subsample_ratio": sub_ratio,
                "reason": {d: r.reason for d, r in results.items()},
                "candidate": {d: _json(r.candidate) for d, r in results.items()},
            },
        )
        return ds

    # ------------------------------------------------------------ inputs

    def _series(self, view: Any) -> tuple[np.ndarray, np.ndarray, float | None]:
        analyzer, _, var = self.source.strip().rpartition(".")
        if not analyzer or not var:
            raise AnalyzerInputError(f"source must be <analyzer>.<variable>, got {self.source!r}")
        try:
            res = view.result(analyzer)
        except Exception as exc:  # a missing result: the store's error, or a KeyError in memory
            raise AnalyzerInputError(f"run '{view.name}' has no result of '{analyzer}' "
                                     f"(run it first): {exc}") from None
        if var not in res.data_vars:
            raise AnalyzerInputError(f"'{analyzer}' has no variable '{var}' "
                                     f"(its variables: {', '.join(map(str, res.data_vars))})")
        da = res[var]
        if "layer" in da.dims:
            layers = [str(v) for v in da["layer"].values]
            if self.layer not in layers:
                more = " …" if len(layers) > 8 else ""
                raise AnalyzerInputError(f"{self.source} has no layer {self.layer!r} "
                                         f"(layers: {', '.join(layers[:8])}{more})")
            da = da.sel(layer=self.layer)
        if da.ndim != 1 or da.dims[0] not in TIME_DIMS:
            raise AnalyzerInputError(f"{self.source} must be a series over one of {TIME_DIMS} "
                                     f"(after choosing a layer), got dims {da.dims}")
        t = np.asarray(da[da.dims[0]].values, dtype=np.float64)
        ratio = None
        sr = res.attrs.get("subsample_ratio") if analyzer == "fisher-velocity" else None
        if isinstance(sr, dict) and self.layer in sr:
            ratio = _json(sr[self.layer])
        return t, np.asarray(da.values, dtype=np.float64), ratio

    def _onset(self, view: Any, steps: np.ndarray) -> tuple[float | None, str]:
        v, name = _metric(view, self.val_metric, VAL_METRICS)
        if v is None or not np.isfinite(v).any():
            return None, name
        return float(steps[int(np.nanargmin(v))]), name

    def _full_accuracy(self, view: Any, steps: np.ndarray) -> tuple[float | None, str]:
        acc, name = _metric(view, self.acc_metric, ACC_METRICS)
        if acc is None:
            return None, name
        full = 100.0 if np.nanmax(acc, initial=0.0) > 1.0 + 1e-9 else 1.0  # percent or fraction
        hit = np.flatnonzero(acc >= full - 1e-9)
        return (float(steps[hit[0]]) if len(hit) else None), name


def _displacement(view: Any) -> np.ndarray:
    """‖θ_t − θ_0‖ over every floating (or complex) tensor, read block by block
    (:mod:`dynlab.analyzers._blocks`): memory is one block plus θ_0 of one tensor."""
    from dynlab.analyzers._blocks import blocks

    steps = np.asarray(view.steps)
    total = np.zeros(len(steps))
    for tensor in view.tensors:
        kind = np.dtype(tensor.dtype).kind
        if kind not in "fc":
            continue
        as_type = np.complex128 if kind == "c" else np.float64
        first = np.asarray(view.read(tensor.name, steps[:1]), dtype=as_type).reshape(-1)
        offset = 0  # position of a block's columns in the flattened tensor
        for block in blocks(view, tensor.name):
            w = np.asarray(block.values, dtype=as_type)
            width = w.shape[1]
            if block.rows.stop - block.rows.start == 1 and width < first.size:  # a part of one step
                ref = first[offset:offset + width]
                offset = (offset + width) % first.size
            else:
                ref = first
            total[block.rows] += np.sum(np.abs(w - ref) ** 2, axis=1)
    return np.sqrt(total)


def _on(t: np.ndarray, t_grid: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` on the uniform ln t grid, linearly interpolated in ln t at ``t`` (NaN outside)."""
    out = np.full(len(t), np.nan)
    ok = t > 0
    out[ok] = np.interp(np.log(t[ok]), np.log(t_grid), v, left=np.nan, right=np.nan)
    return out


def _json(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _metric(view: Any, explicit: str, defaults: tuple[str, ...]) -> tuple[np.ndarray | None, str]:
    """(values, name) of the metric ``explicit`` (an error naming the run when it is missing), or
    of the first of ``defaults`` the run records; (None, "") when there is none."""
    metrics = view.metrics
    name = explicit or next((m for m in defaults if m in metrics), "")
    if not name:
        return None, ""
    if name not in metrics:
        raise AnalyzerInputError(f"run '{view.name}' has no metric '{name}' "
                                 f"(metrics: {', '.join(metrics) or 'none'})")
    return np.asarray(metrics[name], dtype=np.float64), name
