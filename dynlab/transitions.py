"""Transitions in training curves: where a power law L ∝ t^α changes regime (METHODS.md §8).

With x = ln t and y = ln L(t), the local exponent is y' = dy/dx and the transition t* = e^{x*} is
where the motion slows down most sharply: the minimum of y'' = d²y/dx² (Thiruthummal, Kim, Shelyag,
arXiv 2406.05295). Two detectors:

- ``"curvature"``: regularised derivatives on a uniform grid in x, by a Savitzky–Golay filter
  (cubic, window = ``smoothing`` × the ln t span, on y linearly interpolated onto the grid; Savitzky
  & Golay 1964) or a cubic smoothing spline through the snapshots themselves (penalty λ∫y''², with
  λ = (n/span)·(window/4)⁴, i.e. an equivalent-kernel bandwidth (λ·span/n)^{1/4} of a quarter
  window; Silverman 1984). x* is the minimum of y'' (refined by a parabola through the three grid
  points around it), looked for at least half a window away from the ends, where both smoothers
  are biased.
- ``"changepoint"``: y piecewise linear in x (piecewise power laws) by an exact dynamic-programming
  search (``ruptures.Dynp``, breaks on every ⌈n/100⌉-th snapshot) for k = 0…``max_breaks`` breaks,
  k chosen by BIC on the residual variance, n·ln(RSS_k/n) + (3k + 2)·ln n (slope and intercept per
  piece, one location per break). t* is the break with the largest fall of the exponent, at the
  crossing of the two fitted lines.

Uncertainty: a bootstrap over snapshots (each replicate keeps the distinct snapshots of a draw
with replacement, ≈ 63 %, and runs the detector again) and the sensitivity to the regularisation
(smoothing × 0.5…2, or the shortest piece × 0.5…2). ``interval`` spans the 2.5–97.5 % bootstrap
quantiles and every sensitivity value. A transition is *found* only when the exponent falls by at
least ``min_drop`` across it, the bootstrap locates it in most replicates, and the interval is
narrower than ``max_width`` × the ln t span; otherwise ``t_star`` is NaN and ``reason`` says why
(``candidate`` keeps the location the detector would have given).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dynlab.errors import DynlabError

__all__ = ["METHODS", "SMOOTHERS", "Transition", "TransitionInputError", "derivatives", "detect"]

METHODS = ("curvature", "changepoint")
SMOOTHERS = ("savgol", "spline")
_SENSITIVITY = (0.5, 0.75, 1.0, 1.5, 2.0)


class TransitionInputError(DynlabError, ValueError):
    """The series or the options given to :func:`detect` are unusable."""


@dataclass(frozen=True)
class Transition:
    """The result of :func:`detect`; times in the units of ``t``.

    ``t_star``: the transition (NaN when not ``found``); ``t_err``: standard deviation of ln t* over
    the bootstrap (a relative error of t*); ``interval``: (low, high) in t; ``drop``: the fall of
    the local exponent across t*, and ``drop_err`` its bootstrap standard deviation; ``boot``: t*
    of every replicate (NaN where none); ``sensitivity``: t* at each regularisation factor of
    ``factors``; ``t_grid``, ``slope`` (y'), ``curvature`` (y''): the regularised derivatives on
    the uniform ln t grid (NaN within half a window of the ends); ``breaks``, ``exponents``: the
    change-point breaks (t) and the exponent of every piece (``"changepoint"`` only).
    """

    method: str
    found: bool
    t_star: float
    t_err: float
    interval: tuple[float, float]
    drop: float
    drop_err: float
    candidate: float
    reason: str
    boot: np.ndarray = field(repr=False)
    factors: tuple[float, ...] = field(repr=False)
    sensitivity: np.ndarray = field(repr=False)
    t_grid: np.ndarray = field(repr=False)
    slope: np.ndarray = field(repr=False)
    curvature: np.ndarray = field(repr=False)
    breaks: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    exponents: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    n_used: int = 0


# ---------------------------------------------------------------------------- input


def _series(t: Any, y: Any, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(ln t, ln y) of the points with t > 0 and y > 0, both finite."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.ndim != 1 or t.shape != y.shape:
        raise TransitionInputError(f"t and y must be 1-D of one length, got {t.shape} and {y.shape}")
    ok = np.isfinite(t) & np.isfinite(y) & (t > 0) & (y > 0)
    t, y = t[ok], y[ok]
    if len(t) < min_points:
        raise TransitionInputError(f"need at least {min_points} points with t > 0 and y > 0 "
                                   f"(finite), got {len(t)}")
    if not (np.diff(t) > 0).all():
        raise TransitionInputError("t must be strictly increasing")
    return np.log(t), np.log(y)


# ---------------------------------------------------------------------------- derivatives


def _grid(x: np.ndarray, n_grid: int) -> np.ndarray:
    return np.linspace(x[0], x[-1], n_grid)


def _derivs(x: np.ndarray, u: np.ndarray, window: float, smoother: str, n_grid: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, y', y'') with ``window`` the smoothing width in x; NaN within window/2 of the ends."""
    grid = _grid(x, n_grid)
    h = grid[1] - grid[0]
    if smoother == "savgol":
        from scipy.signal import savgol_filter

        m = max(round(window / h) | 1, 5)  # odd, ≥ polyorder + 2
        m = min(m, n_grid - (1 - n_grid % 2))
        ug = np.interp(grid, x, u)
        d1 = savgol_filter(ug, m, 3, deriv=1, delta=h, mode="interp")
        d2 = savgol_filter(ug, m, 3, deriv=2, delta=h, mode="interp")
    else:
        from scipy.interpolate import make_smoothing_spline

        lam = len(x) / (x[-1] - x[0]) * (window / 4) ** 4
        spl = make_smoothing_spline(x, u, lam=lam)
        d1, d2 = spl.derivative(1)(grid), spl.derivative(2)(grid)
    edge = (grid < x[0] + window / 2) | (grid > x[-1] - window / 2)
    d1 = np.where(edge, np.nan, d1)
    d2 = np.where(edge, np.nan, d2)
    return grid, d1, d2


def derivatives(t: Any, y: Any, *, smoothing: float = 0.25, smoother: str = "spline", n_grid: int = 256
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regularised local exponent and its derivative of a series: ``(t_grid, y', y'')``.

    x = ln t, y = ln y; ``t_grid`` = e^x on a uniform grid of ``n_grid`` points; the smoothing
    window is ``smoothing`` × the ln t span (see the module docstring). NaN within half a window
    of the ends.
    """
    _check_options(smoothing, smoother, n_grid)
    x, u = _series(t, y, 5)
    grid, d1, d2 = _derivs(x, u, smoothing * (x[-1] - x[0]), smoother, n_grid)
    return np.exp(grid), d1, d2


def _check_options(smoothing: float, smoother: str, n_grid: int) -> None:
    if smoother not in SMOOTHERS:
        raise TransitionInputError(f"smoother must be one of {SMOOTHERS}, got {smoother!r}")
    if not 0 < smoothing <= 0.5:
        raise TransitionInputError(f"smoothing must be in (0, 0.5] (a fraction of the ln t span), "
                                   f"got {smoothing}")
    if int(n_grid) != n_grid or n_grid < 16:
        raise TransitionInputError(f"n_grid must be an integer ≥ 16, got {n_grid}")


def _curvature_min(grid: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> tuple[float, float]:
    """(x*, drop): the minimum of y'' (parabola-refined) and the fall of y' across the region
    around it where y'' < 0."""
    if not np.isfinite(d2).any():
        return float("nan"), float("nan")
    j = int(np.nanargmin(d2))
    xs = grid[j]
    if 0 < j < len(d2) - 1 and np.isfinite(d2[j - 1]) and np.isfinite(d2[j + 1]):
        den = d2[j - 1] - 2 * d2[j] + d2[j + 1]
        if den > 0:
            xs += 0.5 * (d2[j - 1] - d2[j + 1]) / den * (grid[1] - grid[0])
    if not d2[j] < 0:
        return float(xs), 0.0
    lo, hi = j, j
    while lo > 0 and np.isfinite(d2[lo - 1]) and d2[lo - 1] < 0:
        lo -= 1
    while hi < len(d2) - 1 and np.isfinite(d2[hi + 1]) and d2[hi + 1] < 0:
        hi += 1
    return float(xs), float(d1[lo] - d1[hi])


# ---------------------------------------------------------------------------- change points


def _loglinear_cost():
    """A ruptures cost: RSS of a least-squares line y = a + b·x on a segment, O(1) by prefix sums."""
    from ruptures.base import BaseCost
    from ruptures.exceptions import NotEnoughPoints

    class CostLogLinear(BaseCost):
        model = "dynlab-loglinear"
        min_size = 3

        def fit(self, signal):
            self.signal = signal
            x, u = signal[:, 0], signal[:, 1]
            self.c = np.concatenate([np.zeros((1, 5)),
                                     np.cumsum(np.stack([x, u, x * x, x * u, u * u], 1), 0)])
            return self

        def error(self, start, end):
            if end - start < self.min_size:
                raise NotEnoughPoints
            n = end - start
            sx, su, sxx, sxu, suu = self.c[end] - self.c[start]
            vxx = sxx - sx * sx / n
            vxu = sxu - sx * su / n
            vuu = suu - su * su / n
            return float(max(vuu - (vxu * vxu / vxx if vxx > 0 else 0.0), 0.0))

    return CostLogLinear()


def _line(x: np.ndarray, u: np.ndarray) -> tuple[float, float]:
    b, a = np.polyfit(x, u, 1)
    return float(a), float(b)


def _changepoints(x: np.ndarray, u: np.ndarray, max_breaks: int, min_size: int
                  ) -> tuple[list[int], float, float]:
    """(break indices, x*, drop) with the number of breaks chosen by BIC."""
    import ruptures as rpt

    n = len(x)
    signal = np.stack([x, u], 1)
    cost = _loglinear_cost()
    cost.min_size = min_size
    # at most ~100 candidate break positions: Dynp is O((n/jump)²) cost calls per number of breaks
    algo = rpt.Dynp(custom_cost=cost, min_size=min_size, jump=max(1, -(-n // 100))).fit(signal)
    best, best_bic = [n], np.inf
    for k in range(0, max_breaks + 1):
        if (k + 1) * min_size > n:
            break
        try:
            bkps = [n] if k == 0 else algo.predict(n_bkps=k)
        except rpt.exceptions.BadSegmentationParameters:
            break
        rss = max(algo.cost.sum_of_costs(bkps), 1e-300 * n)
        bic = n * np.log(rss / n) + (3 * k + 2) * np.log(n)
        if bic < best_bic - 1e-9:
            best, best_bic = bkps, bic
    edges = [0, *best]
    lines = [_line(x[a:b], u[a:b]) for a, b in itertools.pairwise(edges)]
    xs, drop = float("nan"), 0.0
    for i, bk in enumerate(best[:-1]):
        (a1, b1), (a2, b2) = lines[i], lines[i + 1]
        if b1 - b2 > drop:
            drop = b1 - b2
            cross = (a2 - a1) / (b1 - b2)
            mid = 0.5 * (x[bk - 1] + x[bk])
            # the crossing of the two lines, unless it falls outside the pieces' own ranges
            xs = cross if x[edges[i]] <= cross <= x[edges[i + 2] - 1] else mid
    return list(best[:-1]), float(xs), float(drop)


# ---------------------------------------------------------------------------- detect


def detect(t: Any, y: Any, *, method: str = "curvature", smoothing: float = 0.25, smoother: str = "spline",
           n_grid: int = 256, max_breaks: int = 3, min_size: int | None = None, n_boot: int = 100,
           min_drop: float = 0.1, max_width: float = 0.25, seed: int = 0) -> Transition:
    """Find where the power law of a series y(t) changes regime (module docstring).

    Parameters
    ----------
    t, y : 1-D, t strictly increasing; points with t ≤ 0 or y ≤ 0 (e.g. L = 0 at the first
        checkpoint) or non-finite values are left out.
    method : ``"curvature"`` (minimum of y'') or ``"changepoint"`` (piecewise power laws, BIC).
    smoothing : smoothing window as a fraction of the ln t span (curvature; also for the reported
        y', y'' of either method).
    smoother : ``"savgol"`` or ``"spline"``.
    n_grid : points of the uniform ln t grid.
    max_breaks, min_size : most breaks tried, and fewest snapshots per piece (default max(4, n/20)),
        for ``"changepoint"``.
    n_boot : bootstrap replicates over snapshots (≥ 10).
    min_drop : least fall of the exponent y' across t* for a transition.
    max_width : widest interval accepted, as a fraction of the ln t span.
    seed : of the bootstrap.
    """
    if method not in METHODS:
        raise TransitionInputError(f"method must be one of {METHODS}, got {method!r}")
    _check_options(smoothing, smoother, n_grid)
    if int(n_boot) != n_boot or n_boot < 10:
        raise TransitionInputError(f"n_boot must be an integer ≥ 10, got {n_boot}")
    if int(max_breaks) != max_breaks or max_breaks < 1:
        raise TransitionInputError(f"max_breaks must be an integer ≥ 1, got {max_breaks}")
    if not (min_drop >= 0 and 0 < max_width <= 1):
        raise TransitionInputError(f"need min_drop ≥ 0 and max_width in (0, 1], got {min_drop}, {max_width}")
    x, u = _series(t, y, 8)
    n = len(x)
    span = x[-1] - x[0]
    window = smoothing * span
    size = max(4, n // 20) if min_size is None else int(min_size)
    if size < 3 or 2 * size > n:
        raise TransitionInputError(f"min_size must be ≥ 3 and at most half the {n} points, got {size}")

    grid, d1, d2 = _derivs(x, u, window, smoother, n_grid)

    def run(xb: np.ndarray, ub: np.ndarray, factor: float = 1.0) -> tuple[float, float]:
        if method == "curvature":
            return _curvature_min(*_derivs(xb, ub, window * factor, smoother, n_grid))
        sz = max(3, round(size * factor))
        if 2 * sz > len(xb):
            return float("nan"), 0.0
        _, xs_, dr = _changepoints(xb, ub, max_breaks, sz)
        return xs_, dr

    if method == "curvature":
        xs, drop = _curvature_min(grid, d1, d2)
        breaks, exponents = np.zeros(0), np.zeros(0)
    else:
        bk, xs, drop = _changepoints(x, u, max_breaks, size)
        edges = [0, *bk, n]
        breaks = np.exp([0.5 * (x[b - 1] + x[b]) for b in bk])
        exponents = np.array([_line(x[a:b], u[a:b])[1] for a, b in itertools.pairwise(edges)])

    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, 2), np.nan)
    for b in range(n_boot):
        idx = np.unique(rng.integers(0, n, n))
        if len(idx) >= 8:
            boot[b] = run(x[idx], u[idx])
    sens = np.array([run(x, u, f)[0] for f in _SENSITIVITY])

    # a replicate locates the transition when its exponent falls by min_drop or more
    located = np.isfinite(boot[:, 0]) & (boot[:, 1] >= min_drop)
    xb = boot[located, 0]
    t_err = float(np.std(xb, ddof=1)) if len(xb) > 1 else float("nan")
    drops = np.where(np.isfinite(boot[:, 1]), boot[:, 1], 0.0)
    drop_err = float(np.std(drops, ddof=1))
    pts = np.concatenate([np.quantile(xb, [0.025, 0.975]) if len(xb) else [np.nan, np.nan],
                          sens[np.isfinite(sens)]])
    lo, hi = (float(np.nanmin(pts)), float(np.nanmax(pts))) if np.isfinite(pts).any() else (np.nan, np.nan)
    if not (np.isfinite(xs) and drop >= min_drop):
        reason = f"the exponent falls by {drop:.3g} < min_drop = {min_drop:g}"
    elif located.mean() < 0.5:
        reason = f"located in only {located.mean():.0%} of the bootstrap replicates"
    elif not hi - lo <= max_width * span:
        reason = (f"interval spans {hi - lo:.3g} in ln t, more than max_width × span = "
                  f"{max_width * span:.3g}")
    else:
        reason = ""
    found = reason == ""
    return Transition(
        method=method, found=found, t_star=float(np.exp(xs)) if found else float("nan"), t_err=t_err,
        interval=(float(np.exp(lo)), float(np.exp(hi))), drop=float(drop), drop_err=drop_err,
        candidate=float(np.exp(xs)), reason=reason, boot=np.where(located, np.exp(boot[:, 0]), np.nan),
        factors=_SENSITIVITY, sensitivity=np.exp(sens), t_grid=np.exp(grid), slope=d1, curvature=d2,
        breaks=breaks, exponents=exponents, n_used=n)
