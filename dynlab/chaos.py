"""Chaos indicators of a trajectory: the public math API (METHODS.md §6).

Pure functions on arrays, usable without a store.

**Single trajectory** — :func:`max_lyapunov`, Rosenstein's largest Lyapunov exponent (Rosenstein,
Collins & De Luca, Physica D 65, 117, 1993). The series is delay-embedded,
Y_i = [x_i, x_{i+τ}, …, x_{i+(m−1)τ}]; every Y_i gets its nearest neighbour Y_j with
|i − j| > min_tsep (a KD-tree, so the cost grows ~N log N and memory ~N, where nolds' ``lyap_r`` is
O(N²) in both); the mean log-divergence

    y(k) = ⟨ ln ‖Y_{i+k} − Y_{j(i)+k}‖ ⟩_i ,     k = 0 … trajectory_len − 1

grows like λ₁·k·dt before it saturates at the size of the attractor; λ₁ is the slope of its
linear part per unit time.

**Replicas** — :func:`divergence` (METHODS.md §6; Danovski, Soriano & Lacasa, arXiv 2404.05782):
d(t) = Σ|W(t) − W'(t)| (L1; or the L2 norm) between a reference trajectory and replicas started a
small ε away, averaged over replicas; :func:`finite_time_exponent` gives the finite-time maximal
exponent Λ as the slope of ln d(t) on its best-R² linear window, saturation excluded.

Automatic choices (each can be set explicitly; the chosen values are on the result):

- ``lag`` τ: the first lag where the autocorrelation falls below 1/e (1 for maps, whose
  autocorrelation vanishes at lag 1; a quarter period or so for oscillations).
- ``emb_dim`` m: for a scalar series, the smallest m ≤ 10 whose fraction of false nearest
  neighbours (Kennel et al., PRA 45, 3403, 1992; R_tol = 10, A_tol = 2) is below 1 % (else the
  m with the fewest); a multivariate series (N, d) is used as it is (m = 1).
- ``min_tsep``: the mean period, 1/mean frequency of the power spectrum (as nolds), at most N/4 —
  neighbours closer in time than that are on the same stretch of orbit, not independent ones.
- ``trajectory_len``: 10·min_tsep, at least 20 and at most a quarter of the embedded points:
  long enough to reach saturation for flows sampled a few dozen times per period.
- ``fit="auto"``: the best-R² window of y(k) (:func:`finite_time_exponent`'s rule).

Window rule (:func:`finite_time_exponent`, ``fit="auto"``): points beyond the first one within
``saturation``·range of the plateau (the maximum for a rising curve, the minimum for a falling
one) are excluded; windows of at least max(8, n/10) of the remaining n points are scanned (starts
and ends on a grid of at most 150 positions); among those whose R² is within 0.001 of the best,
the one over which ln d changes most (|slope| × width: the growth phase, not a long flat stretch)
is taken. ``accepted`` is R² > ``min_r2`` (0.9, METHODS.md §6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynlab.errors import DynlabError
from dynlab.kernels import chaos as _k

__all__ = ["ChaosInputError", "FiniteTimeExponent", "LyapunovResult", "choose_emb_dim", "choose_lag",
           "choose_min_tsep", "delay_embed", "divergence", "finite_time_exponent", "max_lyapunov",
           "replica_distances"]

NORMS = ("l1", "l2")
#: among the scanned windows, those with R² ≥ best − R2_TOL compete on the change of ln d
R2_TOL = 0.001
#: start and end positions scanned by the window search, at most
WINDOW_GRID = 150
#: finite_time_exponent: below an e-fold change of d before saturation there is no growth phase,
#: and the fitted window must carry at least this share of the change
GROWTH_MIN_SPAN = 1.0
GROWTH_FRACTION = 0.5
MAX_EMB_DIM = 10
FNN_THRESHOLD = 0.01


class ChaosInputError(DynlabError, ValueError):
    """The input of a chaos function is invalid (shape, values or parameters)."""


@dataclass(frozen=True)
class FiniteTimeExponent:
    """Slope of ln d(t) on its best linear window.

    ``value``: Λ per unit of t; ``r2``: R² of the line on the window; ``window``: (t_start, t_end)
    of the window; ``index``: its first and last index into t; ``intercept``: ln d at t = 0 of the
    line; ``accepted``: R² > min_r2.
    """

    value: float
    r2: float
    window: tuple[float, float]
    index: tuple[int, int]
    intercept: float
    accepted: bool


@dataclass(frozen=True)
class LyapunovResult:
    """Rosenstein's largest Lyapunov exponent of a series.

    ``value``: λ₁ per unit time (the slope of ``divergence`` against ``time``); ``divergence``:
    the mean log-divergence y(k) (natural log); ``time``: k·dt; ``window``: first and last index
    of the fitted points of ``divergence``; ``r2``: R² of the fit; ``intercept``: of the line;
    and the parameters used (given or chosen): ``emb_dim``, ``lag``, ``min_tsep``,
    ``trajectory_len``, ``dt``; ``n_vectors``: embedded points that had a neighbour.
    """

    value: float
    divergence: np.ndarray
    time: np.ndarray
    window: tuple[int, int]
    r2: float
    intercept: float
    emb_dim: int
    lag: int
    min_tsep: int
    trajectory_len: int
    dt: float
    n_vectors: int


# ---------------------------------------------------------------------------- validation


def _series(x: Any) -> np.ndarray:
    """(N, d) float64 of a (N,) or (N, d) series; d = 1 for a scalar series."""
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ChaosInputError(f"x must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ChaosInputError(f"x must be a series (N,) or (N, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ChaosInputError("x must be finite (no NaN or inf)")
    if arr.shape[0] < 10:
        raise ChaosInputError(f"x needs at least 10 points, got {arr.shape[0]}")
    return arr


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ChaosInputError(f"{name} must be an int ≥ {low}, got {value!r}")
    return int(value)


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ChaosInputError(f"{name} must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise ChaosInputError(f"{name} must be a positive number, got {value!r}")
    return v


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
            0 <= value < 1):
        raise ChaosInputError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------- automatic choices


def delay_embed(x: Any, emb_dim: int, lag: int = 1) -> np.ndarray:
    """Delay vectors (M, d·emb_dim), row i = [x_i, x_{i+lag}, …, x_{i+(emb_dim−1)·lag}] of a
    series (N,) or (N, d) (for d > 1, all columns at each delay), M = N − (emb_dim − 1)·lag."""
    x = _series(x)
    emb_dim, lag = _int(emb_dim, "emb_dim", 1), _int(lag, "lag", 1)
    if x.shape[0] - (emb_dim - 1) * lag < 1:
        raise ChaosInputError(f"a series of {x.shape[0]} points cannot be embedded with "
                              f"emb_dim={emb_dim}, lag={lag}")
    return _k.delay_embed(x, emb_dim, lag)


def choose_lag(x: Any) -> int:
    """The delay τ: first lag where the autocorrelation (averaged over columns) drops below 1/e,
    at most N/10."""
    x = _series(x)
    return _k.autocorrelation_lag(x, max(1, x.shape[0] // 10))


def choose_min_tsep(x: Any) -> int:
    """Temporal separation of neighbours: ⌈mean period⌉ (1/mean frequency of the power spectrum),
    at most N/4."""
    x = _series(x)
    return int(min(math.ceil(_k.mean_period(x)), x.shape[0] // 4))


def choose_emb_dim(x: Any, lag: int = 1, max_dim: int = MAX_EMB_DIM) -> int:
    """For a scalar series: the smallest m ≤ max_dim with < 1 % false nearest neighbours (Kennel
    et al. 1992), else the m with the fewest. For a multivariate series: 1 (used as it is)."""
    x = _series(x)
    if x.shape[1] > 1:
        return 1
    lag = _int(lag, "lag", 1)
    fractions = []
    for m in range(1, max_dim + 1):
        if x.shape[0] - m * lag < 20:
            break
        frac = _k.false_nearest_fraction(x[:, 0], m, lag)
        if frac < FNN_THRESHOLD:
            return m
        fractions.append(frac)
    return int(np.argmin(fractions)) + 1 if fractions else 1


# ---------------------------------------------------------------------------- the best window


def _saturation_end(y: np.ndarray, saturation: float) -> int:
    """Index of the first point within ``saturation``·range of the plateau (max for a rising
    curve, min for a falling one); the last index when there is none to exclude."""
    lo, hi = float(y.min()), float(y.max())
    if saturation <= 0 or hi <= lo:
        return len(y) - 1
    if y[-1] >= y[0]:
        return int(np.argmax(y >= hi - saturation * (hi - lo)))
    return int(np.argmax(y <= lo + saturation * (hi - lo)))


def _best_window(t: np.ndarray, y: np.ndarray, saturation: float, min_points: int | None
                 ) -> tuple[float, float, float, int, int]:
    """(slope, intercept, R², first, last) of the module's window rule on finite points of y."""
    finite = np.nonzero(np.isfinite(y))[0]
    if len(finite) < 3:
        raise ChaosInputError(f"need at least 3 finite points of ln d to fit, got {len(finite)}")
    tf, yf = t[finite], y[finite]
    end = _saturation_end(yf, saturation)
    need = max(8, (end + 1) // 10) if min_points is None else min_points
    if end + 1 < max(3, need):  # saturated from the start: nothing to exclude it from
        end = len(yf) - 1
        need = max(8, len(yf) // 10) if min_points is None else min_points
    need = max(3, min(need, end + 1))
    pos = np.unique(np.linspace(0, end, min(end + 1, WINDOW_GRID)).round().astype(np.int64))
    slope, intercept, r2 = _k.window_fits(tf, yf, pos, pos)
    wide = (pos[None, :] - pos[:, None] + 1) >= need
    r2 = np.where(wide & np.isfinite(slope), r2, np.nan)
    if np.isnan(r2).all():  # the grid missed every wide enough window: fit all usable points
        s, b, r = _k.line_fit(tf[:end + 1], yf[:end + 1])
        return s, b, r, int(finite[0]), int(finite[end])
    best = np.nanmax(r2)
    # among the near-best fits, the one over which ln d changes most: the growth (or decay) phase,
    # not a long, smooth but flat stretch before it
    rise = np.abs(slope) * (tf[pos][None, :] - tf[pos][:, None])
    score = np.where(r2 >= best - R2_TOL, np.nan_to_num(rise, nan=-1.0), -1.0)
    score = score + 1e-9 * np.nan_to_num(r2, nan=0.0)  # ties: the better R²
    a, b = np.unravel_index(np.argmax(score), score.shape)
    return (float(slope[a, b]), float(intercept[a, b]), float(r2[a, b]), int(finite[pos[a]]),
            int(finite[pos[b]]))


def finite_time_exponent(t: Any, d: Any, *, saturation: float = 0.1, min_points: int | None = None,
                         min_r2: float = 0.9) -> FiniteTimeExponent:
    """Finite-time maximal Lyapunov exponent Λ: the slope of ln d(t) against t on its best linear
    window (METHODS.md §6; Danovski, Soriano & Lacasa, arXiv 2404.05782).

    ``t`` (T,) strictly increasing; ``d`` (T,) distances (points with d ≤ 0 or non-finite are left
    out). The window: saturation excluded (``saturation``: fraction of the range of ln d treated
    as the plateau; 0 keeps every point); if ln d then changes by less than 1 (an e-fold change
    of d), the slope over all points; else, among windows of at least ``min_points`` points
    (default 3) whose line carries at least half of that change, the best R² (:func:`_growth_window`
    says why). ``accepted`` = R² > ``min_r2``.
    """
    t = np.asarray(t, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    if t.ndim != 1 or d.shape != t.shape:
        raise ChaosInputError(f"t and d must be 1-D of one length, got {t.shape} and {d.shape}")
    if not np.isfinite(t).all() or not (np.diff(t) > 0).all():
        raise ChaosInputError("t must be finite and strictly increasing")
    saturation = _fraction(saturation, "saturation")
    if min_points is not None:
        min_points = _int(min_points, "min_points", 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(d > 0, np.log(np.where(d > 0, d, 1.0)), np.nan)
    slope, intercept, r2, i0, i1 = _growth_window(t, y, saturation, min_points)
    return FiniteTimeExponent(slope, r2, (float(t[i0]), float(t[i1])), (i0, i1), intercept,
                              bool(r2 > min_r2))


def _growth_window(t: np.ndarray, y: np.ndarray, saturation: float, min_points: int | None
                   ) -> tuple[float, float, float, int, int]:
    """(slope, intercept, R², first, last) for :func:`finite_time_exponent`: the phase where most
    of the divergence happens. Points from the onset of saturation on are dropped; if ln d changes
    by less than ``GROWTH_MIN_SPAN`` before it, the least-squares slope over all of them; else,
    among windows of ≥ 3 points (or ``min_points``) whose fitted line covers at least
    ``GROWTH_FRACTION`` of that change, the best R² (ties: the wider).

    Why not the best R² alone: a smooth, nearly flat drift before a growth phase has R² ≈ 0.999
    and beats the growth phase itself (R² ≈ 0.98); a window counted in points rather than in change
    then depends on the recording interval (measured on the Iris replicas: 0.18–0.63 at η = 5 for
    recordings every 1–10 iterations; 0.44–0.49 with this rule; docs/chaos.md)."""
    finite = np.nonzero(np.isfinite(y))[0]
    if len(finite) < 3:
        raise ChaosInputError(f"need at least 3 finite points of ln d to fit, got {len(finite)}")
    tf, yf = t[finite], y[finite]
    end = _saturation_end(yf, saturation)
    need = 3 if min_points is None else min_points
    if end + 1 < max(8, need):  # saturated from the start: nothing to exclude it from
        end = len(yf) - 1
    need = max(3, min(need, end + 1))
    span = float(yf[:end + 1].max() - yf[:end + 1].min())
    if span >= GROWTH_MIN_SPAN and need < end + 1:
        pos = np.unique(np.linspace(0, end, min(end + 1, WINDOW_GRID)).round().astype(np.int64))
        slope, intercept, r2 = _k.window_fits(tf, yf, pos, pos)
        width = tf[pos][None, :] - tf[pos][:, None]
        with np.errstate(invalid="ignore"):
            ok = (((pos[None, :] - pos[:, None] + 1) >= need) & np.isfinite(r2)
                  & (np.abs(slope) * width >= GROWTH_FRACTION * span))
        if ok.any():
            score = np.where(ok, r2, -np.inf) + 1e-12 * width / width.max()
            a, b = np.unravel_index(np.argmax(score), score.shape)
            return (float(slope[a, b]), float(intercept[a, b]), float(r2[a, b]),
                    int(finite[pos[a]]), int(finite[pos[b]]))
    s, b, r = _k.line_fit(tf[:end + 1], yf[:end + 1])
    return float(s), float(b), float(r), int(finite[0]), int(finite[end])


# ---------------------------------------------------------------------------- Rosenstein


def max_lyapunov(x: Any, dt: float = 1.0, *, emb_dim: int | None = None, lag: int | None = None,
                 min_tsep: int | None = None, trajectory_len: int | None = None,
                 fit: str | tuple[int, int] = "auto", saturation: float = 0.1) -> LyapunovResult:
    """Largest Lyapunov exponent λ₁ of a series by Rosenstein's method (see the module docstring).

    ``x``: (N,) scalar series or (N, d) multivariate one (each row a state), sampled every ``dt``
    time units (λ₁ is per unit time). ``emb_dim``, ``lag``, ``min_tsep``, ``trajectory_len``:
    None chooses them (module docstring). ``fit``: ``"auto"`` (best-R² window, saturation
    excluded with ``saturation``), ``"all"`` (least squares over every finite point, nolds'
    ``fit="poly"``), or ``(first, last)`` indices of y(k) to fit, inclusive.
    """
    x = _series(x)
    dt = _positive(dt, "dt")
    saturation = _fraction(saturation, "saturation")
    n = x.shape[0]
    lag = choose_lag(x) if lag is None else _int(lag, "lag", 1)
    emb_dim = choose_emb_dim(x, lag) if emb_dim is None else _int(emb_dim, "emb_dim", 1)
    min_tsep = choose_min_tsep(x) if min_tsep is None else _int(min_tsep, "min_tsep", 0)
    m = n - (emb_dim - 1) * lag
    if trajectory_len is None:
        trajectory_len = int(max(2, min(max(20, 10 * min_tsep), m // 4)))
    trajectory_len = _int(trajectory_len, "trajectory_len", 2)
    n_traj = m - trajectory_len + 1
    if n_traj < 2 * min_tsep + 2:
        need = (emb_dim - 1) * lag + trajectory_len - 1 + 2 * min_tsep + 2
        raise ChaosInputError(f"x is too short: emb_dim={emb_dim}, lag={lag}, min_tsep={min_tsep} and "
                              f"trajectory_len={trajectory_len} need at least {need} points, got {n}")
    window = _check_fit(fit, trajectory_len)
    points = _k.delay_embed(x, emb_dim, lag)
    nb = _k.nearest_beyond(points[:n_traj], min_tsep)
    curve = _k.divergence_curve(points, nb, trajectory_len)
    time = np.arange(trajectory_len) * dt
    finite = np.isfinite(curve)
    if window == "auto":
        slope, intercept, r2, i0, i1 = _best_window(time, curve, saturation, None)
    else:
        i0, i1 = (0, trajectory_len - 1) if window == "all" else window
        sel = np.arange(i0, i1 + 1)
        sel = sel[finite[sel]]
        if len(sel) < 2:
            raise ChaosInputError(f"fit window {fit!r} holds fewer than 2 finite points of y(k)")
        slope, intercept, r2 = _k.line_fit(time[sel], curve[sel])
        i0, i1 = int(sel[0]), int(sel[-1])
    return LyapunovResult(float(slope), curve, time, (int(i0), int(i1)), float(r2), float(intercept),
                          emb_dim, lag, min_tsep, trajectory_len, dt, int(n_traj))


def _check_fit(fit: Any, trajectory_len: int) -> str | tuple[int, int]:
    if isinstance(fit, str):
        if fit not in ("auto", "all"):
            raise ChaosInputError(f"fit must be 'auto', 'all' or (first, last), got {fit!r}")
        return fit
    if (isinstance(fit, Sequence) and len(fit) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in fit)
            and 0 <= fit[0] < fit[1] < trajectory_len):
        return int(fit[0]), int(fit[1])
    raise ChaosInputError(f"fit must be 'auto', 'all' or (first, last) with 0 ≤ first < last < "
                          f"trajectory_len={trajectory_len}, got {fit!r}")


# ---------------------------------------------------------------------------- replicas


def _replicas(reference: Any, replicas: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    ref = np.asarray(reference)
    reps = [np.asarray(r) for r in replicas] if not isinstance(replicas, np.ndarray) else list(
        replicas)
    if ref.ndim < 1 or len(ref) < 1:
        raise ChaosInputError(f"reference must be (T, ...), got shape {ref.shape}")
    if not reps:
        raise ChaosInputError("need at least one replica")
    for i, r in enumerate(reps):
        if r.shape != ref.shape:
            raise ChaosInputError(f"replica {i} has shape {r.shape}, the reference {ref.shape}")
    for a in (ref, *reps):
        if a.dtype.kind not in "biuf":
            raise ChaosInputError(f"trajectories must be real numbers, got dtype {a.dtype}")
    return ref, reps


def replica_distances(reference: Any, replicas: Any, norm: str = "l1") -> np.ndarray:
    """(R, T): d_r(t) = Σ|W(t) − W'_r(t)| (``l1``) or √Σ(W(t) − W'_r(t))² (``l2``) over all
    non-time axes, between ``reference`` (T, ...) and each of ``replicas`` ((R, T, ...) or a
    sequence of (T, ...)), in float64."""
    if norm not in NORMS:
        raise ChaosInputError(f"norm must be one of {NORMS}, got {norm!r}")
    ref, reps = _replicas(reference, replicas)
    sums = np.array([_k.pair_sums(ref, r, norm) for r in reps])
    return sums if norm == "l1" else np.sqrt(sums)


def divergence(reference: Any, replicas: Any, norm: str = "l1") -> np.ndarray:
    """⟨d(t)⟩ (T,): :func:`replica_distances` averaged over replicas (METHODS.md §6)."""
    return replica_distances(reference, replicas, norm).mean(axis=0)
