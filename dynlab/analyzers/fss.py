"""``fss``: finite-size scaling across runs of different size (METHODS.md §9).

Runs of a group, each with a size attr (``size_attr``, e.g. width), give a per-step quantity a(ρ)
(``source``, by default fisher-velocity's pooled information rate Γ) over ρ = ln t (or t). The
collapse a = L^{ζ/ν} f((ρ − ρ_c) L^{1/ν}) is fitted by :func:`dynlab.scaling.collapse`
(Houdayer–Hartmann quality S, global search, curvature and bootstrap errors); each run keeps its
own steps (NaN pads). The transition t* of every run (the ``transitions`` result, series detector)
is fitted by :func:`dynlab.scaling.fit_shift`, t*(N) = t*_∞ + c·N^(−1/ν), when at least 3 distinct
sizes have one, weighted by dt* = t*·t_err (transitions' bootstrap std of ln t*) when every run
has it. The raw and collapsed curves are stored for plotting.

Without errors on a, S is a mean squared deviation (``rel_err = 0``), not ≈ 1 for a good collapse;
``rel_err`` > 0 gives every point the error rel_err·|a| (then S ≈ 1 means a collapse within it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Interval, Options, ParameterError, Text, param

if TYPE_CHECKING:
    import xarray as xr

PARAMS = ("x_c", "nu", "zeta")
SHIFT = ("t_inf", "c", "nu")


@dataclass(frozen=True)
class FSS(Analyzer):
    """Data collapse of a per-step quantity across run sizes, and the shift of t* with size."""

    name: ClassVar[str] = "fss"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = ("finite-size scaling across runs of different size: data collapse "
                                  "(Houdayer–Hartmann) of a per-step quantity and the shift of t*")
    scope: ClassVar[str] = "group"
    inputs: ClassVar[tuple[str, ...]] = ("attrs",)
    requires: ClassVar[tuple[str, ...]] = ("fisher-velocity", "transitions")
    backends: ClassVar[tuple[str, ...]] = ("numpy", "numba")
    min_steps: ClassVar[int] = 8
    outputs: ClassVar[dict[str, Output]] = {
        "rho": Output(("run", "point"), "1", "control value ρ = ln t (or t); NaN pads"),
        "value": Output(("run", "point"), "source", "the quantity a(ρ) of each run"),
        "x_scaled": Output(("run", "point"), "1", "L^{1/ν}(ρ − ρ_c) at the fit"),
        "y_scaled": Output(("run", "point"), "source", "L^{−ζ/ν} a at the fit"),
        "params": Output(("param",), "1", "fitted ρ_c, ν, ζ"),
        "errors": Output(("param",), "1", "their errors from the curvature of S (ΔS = S_min)"),
        "boot_errors": Output(("param",), "1", "their bootstrap standard deviations"),
        "t_star": Output(("run",), "step", "each run's transition t* (transitions, series)"),
        "shift": Output(("shift_param",), "1", "fit t*(N) = t_inf + c·N^(−1/ν); NaN with < 3 sizes"),
        "shift_errors": Output(("shift_param",), "1", "its standard errors"),
    }

    size_attr: str = param("width", Text(), "run attr giving the size L")
    source: str = param("fisher-velocity.rate", Text(),
                        "the quantity: <analyzer>.<variable> over step or step_mid (optionally layer)")
    layer: str = param("all", Text(), "the layer to take when the variable has a layer dim")
    rho: str = param("log", Options("log", "linear"), "control parameter: ρ = ln t or ρ = t")
    x_c0: str = param("", Text(), "start for ρ_c ('' = median ρ of the runs' t*, else mid-range)")
    nu0: float = param(1.0, Interval(float, 0.0, None, closed="neither"), "start for ν")
    zeta0: float = param(0.0, Interval(float), "start for ζ")
    fix: str = param("", Text(), "comma-separated parameters held at their start (x_c, nu, zeta)")
    rel_err: float = param(0.0, Interval(float, 0.0, 1.0), "relative error of a; 0 = unweighted")
    n_boot: int = param(20, Interval(int, 0, 1000), "bootstrap refits of the collapse")
    seed: int = param(0, Interval(int, 0, None), "random seed of the bootstrap")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x_c0.strip():
            try:
                ok = math.isfinite(float(self.x_c0))
            except ValueError:
                ok = False
            if not ok:
                raise ParameterError(f"{self.name}: parameter 'x_c0' must be a finite number or '', "
                                     f"got {self.x_c0!r}")
        fix = self._fixed()
        unknown = [f for f in fix if f not in PARAMS]
        if unknown or len(set(fix)) == len(PARAMS):
            raise ParameterError(f"{self.name}: parameter 'fix' must name some of {', '.join(PARAMS)} "
                                 f"and leave one free, got {self.fix!r}")

    def _fixed(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.fix.split(",") if f.strip())

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.scaling import ScalingInputError, collapse, fit_shift

        runs = list(view.runs)
        if len(runs) < 2:
            raise AnalyzerInputError(f"group '{view.name}': fss needs at least 2 runs, got {len(runs)}")
        sizes = np.array([self._size(r) for r in runs])
        series = [self._series(r) for r in runs]
        n = max(len(s[0]) for s in series)
        rho = np.full((len(runs), n), np.nan)
        val = np.full((len(runs), n), np.nan)
        for i, (r, v) in enumerate(series):
            rho[i, :len(r)], val[i, :len(v)] = r, v
        t_star, t_err = np.array([_t_star(r) for r in runs]).T
        fix = self._fixed()
        x_c0 = self._start(rho, t_star)
        dropped = 0
        dy = None
        if self.rel_err > 0:  # a point of value 0 has error 0: certain, so no weight can be given
            zero = val == 0
            dropped = int(zero.sum())
            val = np.where(zero, np.nan, val)
            dy = self.rel_err * np.abs(val)
        try:
            fit = collapse(sizes, rho, val, dy, x_c0=x_c0, nu0=self.nu0, zeta0=self.zeta0, fix=fix,
                           n_boot=self.n_boot, seed=self.seed,
                           backend="numba" if backend == "numba" else "numpy")
        except ScalingInputError as exc:
            raise AnalyzerInputError(f"group '{view.name}': {exc}") from None
        shift, shift_err, chi2 = np.full(3, np.nan), np.full(3, np.nan), None
        ok = np.isfinite(t_star)
        # transitions' t_err is the bootstrap std of ln t*: dt* = t*·t_err, used when every run has one
        dt = t_star * t_err
        weights = bool(ok.any()) and bool(np.all(np.isfinite(dt[ok]) & (dt[ok] > 0)))
        if len(np.unique(sizes[ok])) >= 3:
            try:
                s = fit_shift(sizes[ok], t_star[ok], dt[ok] if weights else None)
                shift, shift_err, chi2 = (np.array([s.t_inf, s.c, s.nu]),
                                          np.array([s.dt_inf, s.dc, s.dnu]), s.chi2)
            except ScalingInputError:
                pass
        return xr.Dataset(
            {
                "rho": (("run", "point"), rho), "value": (("run", "point"), val),
                "x_scaled": (("run", "point"), fit.x), "y_scaled": (("run", "point"), fit.y),
                "params": (("param",), fit.params), "errors": (("param",), fit.errors),
                "boot_errors": (("param",), np.asarray(fit.boot_err, dtype=np.float64)),
                "t_star": (("run",), t_star),
                "shift": (("shift_param",), shift), "shift_errors": (("shift_param",), shift_err),
            },
            coords={"run": np.array([r.name for r in runs], dtype=str), "size": ("run", sizes),
                    "point": np.arange(n), "param": np.array(PARAMS, dtype=str),
                    "shift_param": np.array(SHIFT, dtype=str)},
            attrs={"quality": _json(fit.quality), "start_quality": _json(fit.start_quality),
                   "start": [x_c0, self.nu0, self.zeta0], "fixed": list(fix),
                   "size_attr": self.size_attr, "source": self.source, "rho": self.rho,
                   "weighted": self.rel_err > 0, "shift_chi2": _json(chi2),
                   "dropped_zero_points": dropped, "coverage": _json(fit.coverage),
                   "shift_weighted": weights},
        )

    def _size(self, run: Any) -> float:
        value = run.attrs.get(self.size_attr)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise AnalyzerInputError(f"run '{run.name}' has no positive number attr "
                                     f"'{self.size_attr}' (got {value!r}; set size_attr=…)")
        return float(value)

    def _series(self, run: Any) -> tuple[np.ndarray, np.ndarray]:
        analyzer, _, var = self.source.strip().rpartition(".")
        if not analyzer or not var:
            raise AnalyzerInputError(f"source must be <analyzer>.<variable>, got {self.source!r}")
        try:
            res = run.result(analyzer)
        except Exception as exc:  # the store's error, or a KeyError in memory
            raise AnalyzerInputError(f"run '{run.name}' has no result of '{analyzer}': {exc}") from None
        if var not in res.data_vars:
            raise AnalyzerInputError(f"'{analyzer}' has no variable '{var}'")
        da = res[var]
        if "layer" in da.dims:
            if self.layer not in [str(v) for v in da["layer"].values]:
                raise AnalyzerInputError(f"{self.source} of run '{run.name}' has no layer {self.layer!r}")
            da = da.sel(layer=self.layer)
        if da.ndim != 1 or da.dims[0] not in ("step", "step_mid"):
            raise AnalyzerInputError(f"{self.source} must be a series over step or step_mid, "
                                     f"got dims {da.dims}")
        t = np.asarray(da[da.dims[0]].values, dtype=np.float64)
        v = np.asarray(da.values, dtype=np.float64)
        if self.rho == "log":
            keep = t > 0
            return np.log(t[keep]), v[keep]
        return t, v

    def _start(self, rho: np.ndarray, t_star: np.ndarray) -> float:
        if self.x_c0.strip():
            return float(self.x_c0)
        ok = np.isfinite(t_star) & (t_star > 0)
        if ok.any():
            return float(np.median(np.log(t_star[ok]) if self.rho == "log" else t_star[ok]))
        return float(0.5 * (np.nanmin(rho) + np.nanmax(rho)))


def _t_star(run: Any) -> tuple[float, float]:
    """(t*, std of ln t*) of the run's transitions result (series detector); NaN where missing."""
    try:
        ds = run.result("transitions")
    except Exception:  # no transitions result: no shift fit
        return float("nan"), float("nan")
    if "t_star" not in ds.data_vars or "detector" not in ds.dims:
        return float("nan"), float("nan")
    err = float(ds["t_err"].sel(detector="series")) if "t_err" in ds.data_vars else float("nan")
    return float(ds["t_star"].sel(detector="series")), err


def _json(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None
