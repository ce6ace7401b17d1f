"""Finite-size scaling: data collapse and the shift of a transition with size (METHODS.md §9).

Observations a_ij ± da_ij at sizes L_i and control values ρ_ij follow the ansatz

    a = L^{ζ/ν} f((ρ − ρ_c) L^{1/ν}),

so that x_ij = L_i^{1/ν}(ρ_ij − ρ_c), y_ij = L_i^{−ζ/ν} a_ij, dy_ij = L_i^{−ζ/ν} da_ij fall on one
master curve. The quality S of a collapse is Houdayer & Hartmann's (PRB 70, 014418, 2004), as in
pyfssa and Melchert's autoScale (arXiv 0910.5403): for each point, a weighted straight line through
the two bracketing points of every *other* size gives Y ± dY, and

    S = mean over sizes of mean over points (y − Y)² / (dy² + dY²)      (≈ 1 for a good collapse).

S is piecewise smooth with many local minima, so :func:`collapse` scans a coarse grid and runs
Nelder–Mead from the best grid points (and the start), then estimates the errors from the curvature
of S at the minimum (cov = 2·S_min·H⁻¹, the convention of pyfssa's simplex estimate: one standard
error is where S has risen by S_min) and from a parametric bootstrap of the data.

:func:`fit_shift` fits t*(N) = t*_∞ + c·N^(−1/ν) to transition points measured at several sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dynlab.errors import DynlabError
from dynlab.kernels import scaling as _k

__all__ = ["CollapseResult", "ScalingInputError", "ShiftResult", "collapse", "fit_shift", "quality",
           "scale"]

PARAMS = ("x_c", "nu", "zeta")


class ScalingInputError(DynlabError, ValueError):
    """The data or the options given to a finite-size-scaling function are unusable."""


@dataclass(frozen=True)
class CollapseResult:
    """A fitted collapse. Errors of fixed parameters are 0.

    ``dx_c, dnu, dzeta``: from the curvature of S at the minimum (cov = 2·S_min·H⁻¹, ``cov``);
    ``boot_err``: standard deviations of the parameters over the bootstrap refits (``boot``).
    ``x, y, dy``: the scaled data, shaped like the input ``y`` (NaN where missing).
    """

    x_c: float
    nu: float
    zeta: float
    dx_c: float
    dnu: float
    dzeta: float
    quality: float
    cov: np.ndarray
    boot: np.ndarray
    boot_err: np.ndarray
    x: np.ndarray
    y: np.ndarray
    dy: np.ndarray
    sizes: np.ndarray
    n_eval: int
    fixed: tuple[str, ...] = ()
    start_quality: float = float("nan")
    #: share of the points that S could compare (inside another size's scaled range): a fit that
    #: pulls the sizes apart (ν → 0) leaves few, and a small S over few points means nothing
    coverage: float = float("nan")

    @property
    def params(self) -> np.ndarray:
        return np.array([self.x_c, self.nu, self.zeta])

    @property
    def errors(self) -> np.ndarray:
        return np.array([self.dx_c, self.dnu, self.dzeta])


@dataclass(frozen=True)
class ShiftResult:
    """Fit of t*(N) = t_inf + c·N^(−1/ν), with standard errors and the weighted χ²."""

    t_inf: float
    c: float
    nu: float
    dt_inf: float
    dc: float
    dnu: float
    chi2: float
    dof: int
    cov: np.ndarray = field(repr=False)

    def predict(self, sizes: Any) -> np.ndarray:
        return self.t_inf + self.c * np.asarray(sizes, dtype=float) ** (-1.0 / self.nu)


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Data:
    sizes: np.ndarray
    rho: list[np.ndarray]      # per size: sorted, present points only
    a: list[np.ndarray]
    da: list[np.ndarray]
    index: list[np.ndarray]    # positions of those points in the input rows
    shape: tuple[int, int]
    weighted: bool
    backend: str = "numpy"
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))

    flat_data: tuple[np.ndarray, ...] = ()

    def flat(self, a: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        """(ρ, a, da) of all sizes concatenated (the numba kernel's layout), ``a`` replaced if given."""
        rho, a0, da = self.flat_data
        return rho, (a0 if a is None else np.concatenate(a)), da


def _backend(backend: str) -> str:
    if backend not in ("auto", *_k.BACKENDS):
        raise ScalingInputError(f"backend must be one of {('auto', *_k.BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "numba" if _k.numba_available() else "numpy"
    return backend


def _prepare(sizes: Any, x: Any, y: Any, dy: Any, backend: str = "auto") -> _Data:
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or len(sizes) < 2:
        raise ScalingInputError(f"sizes must be 1-D with at least 2 sizes, got shape {sizes.shape}")
    if not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise ScalingInputError("sizes must be finite and positive")
    y = np.asarray(y, dtype=np.float64)
    k = len(sizes)
    if y.ndim != 2 or y.shape[0] != k:
        raise ScalingInputError(f"y must be (k, n) with k = {k} sizes, got shape {y.shape}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = np.broadcast_to(x, y.shape)
    if x.shape != y.shape:
        raise ScalingInputError(f"x must be (n,) or (k, n) = {y.shape}, got shape {x.shape}")
    weighted = dy is not None
    dy = np.ones_like(y) if dy is None else np.asarray(dy, dtype=np.float64)
    if dy.shape != y.shape:
        raise ScalingInputError(f"dy must have the shape of y {y.shape}, got {dy.shape}")
    present = np.isfinite(x) & np.isfinite(y) & np.isfinite(dy)
    if (dy[present] <= 0).any():
        raise ScalingInputError("dy must be positive (NaN marks a missing point)")
    if np.isinf(x).any() or np.isinf(y).any():
        raise ScalingInputError("x and y must be finite or NaN (missing), not infinite")
    rho, a, da, index = [], [], [], []
    for i in range(k):
        idx = np.flatnonzero(present[i])
        idx = idx[np.argsort(x[i, idx], kind="stable")]
        rho.append(x[i, idx])
        a.append(y[i, idx])
        da.append(dy[i, idx])
        index.append(idx)
    if sum(len(r) >= 2 for r in rho) < 2:
        raise ScalingInputError("at least 2 sizes need at least 2 present points each")
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rho])]).astype(np.int64)
    flat = tuple(np.ascontiguousarray(np.concatenate(v)) for v in (rho, a, da))
    return _Data(sizes, rho, a, da, index, y.shape, weighted, _backend(backend), offsets, flat)


def _quality(d: _Data, p: Sequence[float], a: Sequence[np.ndarray] | None = None) -> float:
    x_c, nu, zeta = p
    if not nu > 0:
        return float("inf")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        big = float(d.sizes.max()) ** (1.0 / nu), float(d.sizes.max()) ** (-zeta / nu), \
            float(d.sizes.min()) ** (-zeta / nu)
        if not all(math.isfinite(v) and v > 0 for v in big):  # overflow: no usable scaled data
            return float("inf")
        if d.backend == "numba":
            s = _k.backend("numba").quality_flat(d.sizes, d.offsets, *d.flat(a), x_c, nu, zeta)
        else:
            s = _k.quality(*_k.scale(d.sizes, d.rho, d.a if a is None else a, d.da, x_c, nu, zeta))
    return s if np.isfinite(s) else float("inf")


def _unflatten(d: _Data, rows: list[np.ndarray]) -> np.ndarray:
    out = np.full(d.shape, np.nan)
    for i, (idx, r) in enumerate(zip(d.index, rows, strict=True)):
        out[i, idx] = r
    return out


def scale(sizes: Any, x: Any, y: Any, dy: Any = None, *, x_c: float, nu: float, zeta: float = 0.0
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled data ``(x, y, dy)``, each (k, n) like ``y``, NaN where missing::

        x_ij = L_i^{1/ν} (x_ij − x_c),   y_ij = L_i^{−ζ/ν} y_ij,   dy_ij = L_i^{−ζ/ν} dy_ij
    """
    d = _prepare(sizes, x, y, dy)
    if not nu > 0:
        raise ScalingInputError(f"nu must be positive, got {nu}")
    xs, ys, dys = _k.scale(d.sizes, d.rho, d.a, d.da, x_c, nu, zeta)
    return _unflatten(d, xs), _unflatten(d, ys), _unflatten(d, dys)


def quality(sizes: Any, x: Any, y: Any, dy: Any = None, *, x_c: float, nu: float, zeta: float = 0.0,
            backend: str = "auto") -> float:
    """Houdayer–Hartmann quality S of the collapse at (x_c, ν, ζ); see the module docstring.

    ``sizes`` (k,); ``x`` (n,) or (k, n) (a grid per size allowed); ``y``, ``dy`` (k, n); NaN marks a
    missing point. Without ``dy`` every point has dy = 1 (S is then a mean squared deviation, not
    a χ² per point). ``inf`` when ν ≤ 0 or no point has a master-curve estimate. ``backend``:
    ``"numpy"`` (the reference), ``"numba"``, or ``"auto"`` (numba when installed).
    """
    return _quality(_prepare(sizes, x, y, dy, backend), (x_c, nu, zeta))


# ---------------------------------------------------------------------------- collapse


def collapse(sizes: Any, x: Any, y: Any, dy: Any = None, *, x_c0: float, nu0: float, zeta0: float = 0.0,
             fix: Sequence[str] = (), bounds: Mapping[str, tuple[float, float]] | None = None,
             grid: int = 9, starts: int = 4, n_boot: int = 20, seed: int = 0, backend: str = "auto"
             ) -> CollapseResult:
    """Fit (x_c, ν, ζ) minimising the quality S (module docstring); a global search first.

    Parameters
    ----------
    sizes, x, y, dy : as for :func:`quality` (x is the control parameter ρ, y the observable a).
    x_c0, nu0, zeta0 : starting guesses; parameters named in ``fix`` stay at them.
    bounds : search box per parameter name; defaults x_c ∈ [min x, max x], ν ∈ [ν₀/4, 4ν₀],
        ζ ∈ ζ₀ ± |ν₀| (ζ/ν within ±1 of the start). The minimiser may leave the box.
    grid : points per free parameter of the coarse scan (grid^free evaluations; ν on a log scale).
    starts : Nelder–Mead runs from the best distinct grid points, plus one from the guesses.
    n_boot : parametric bootstrap refits (y + dy·ε, ε ~ N(0, 1); without dy, ε scaled by √S_min),
        each a Nelder–Mead from the optimum; 0 = none (``boot_err`` NaN).
    seed : of the bootstrap.
    backend : of the quality function, as for :func:`quality`.
    """
    from scipy.optimize import minimize

    d = _prepare(sizes, x, y, dy, backend)
    p0 = np.array([x_c0, nu0, zeta0], dtype=np.float64)
    if not np.isfinite(p0).all() or not nu0 > 0:
        raise ScalingInputError(f"x_c0, nu0, zeta0 must be finite with nu0 > 0, got {tuple(p0)}")
    bad = [f for f in fix if f not in PARAMS]
    if bad:
        raise ScalingInputError(f"fix names unknown parameter(s) {bad}; choose from {PARAMS}")
    free = np.array([i for i, n in enumerate(PARAMS) if n not in fix], dtype=int)
    if len(free) == 0:
        raise ScalingInputError("fix leaves no parameter to fit")
    for name, value in (("grid", grid), ("starts", starts), ("n_boot", n_boot)):
        if int(value) != value or value < (2 if name == "grid" else 0):
            raise ScalingInputError(f"{name} must be an integer ≥ {2 if name == 'grid' else 0}, got {value}")
    lo, hi = _box(d, p0, bounds)
    span = (hi - lo)[free]
    n_eval = [0]

    def full(u: np.ndarray) -> np.ndarray:
        p = p0.copy()
        p[free] = u
        return p

    def f(u: np.ndarray, a: Sequence[np.ndarray] | None = None) -> float:
        n_eval[0] += 1
        return _quality(d, full(u), a)

    def nelder_mead(u0: np.ndarray, step: np.ndarray, a: Sequence[np.ndarray] | None = None,
                    xatol: float = 1e-5):
        # in units of the search box, so one tolerance fits every parameter
        v0 = u0 / span
        sim = np.vstack([v0, v0 + np.diag(step / span)])
        res = minimize(lambda v: f(v * span, a), v0, method="Nelder-Mead",
                       options={"initial_simplex": sim, "xatol": xatol, "fatol": 1e-6, "maxiter": 2000})
        return res.x * span, float(res.fun)

    start_q = f(p0[free])
    cands = _grid_starts(f, lo[free], hi[free], free, grid, starts)
    cands.append(p0[free])
    step = span / (grid - 1) / 2
    best_u, best_s = p0[free], start_q
    for u0 in cands:
        u, s = nelder_mead(u0, step)
        u, s = nelder_mead(u, step / 4)  # restart: Nelder–Mead's simplex can collapse early
        if s < best_s:
            best_u, best_s = u, s
    if not np.isfinite(best_s):
        raise ScalingInputError("no parameters in the search box give a defined collapse quality "
                                "(the scaled curves never overlap); check x_c0, nu0 and bounds")
    cov_free = _curvature_cov(f, best_u, best_s, span)
    cov = np.zeros((3, 3))
    cov[np.ix_(free, free)] = cov_free
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    err[np.isnan(np.diag(cov))] = np.nan

    boot = np.full((n_boot, 3), np.nan)
    if n_boot:
        rng = np.random.default_rng(seed)
        noise = 1.0 if d.weighted else np.sqrt(best_s)
        bstep = np.where(np.isfinite(err[free]) & (err[free] > 0), err[free], step / 4)
        for b in range(n_boot):
            a = [v + dv * noise * rng.standard_normal(len(v)) for v, dv in zip(d.a, d.da, strict=True)]
            boot[b] = full(nelder_mead(best_u, bstep, a, xatol=1e-3)[0])
    boot_err = boot.std(axis=0, ddof=1) if n_boot > 1 else np.full(3, np.nan)

    p = full(best_u)
    xs, ys, dys = _k.scale(d.sizes, d.rho, d.a, d.da, *p)
    return CollapseResult(
        x_c=float(p[0]), nu=float(p[1]), zeta=float(p[2]), dx_c=float(err[0]), dnu=float(err[1]),
        dzeta=float(err[2]), quality=float(best_s), cov=cov, boot=boot, boot_err=boot_err,
        x=_unflatten(d, xs), y=_unflatten(d, ys), dy=_unflatten(d, dys), sizes=d.sizes,
        n_eval=n_eval[0], fixed=tuple(fix), start_quality=float(start_q), coverage=coverage(xs))


def coverage(xs: Sequence[np.ndarray]) -> float:
    """Share of the points (scaled x per size, each sorted) that lie in [x_first, x_last) of at
    least one other size with ≥ 2 points: the points the Houdayer–Hartmann S can compare."""
    ranges = [(x[0], x[-1]) if len(x) >= 2 else None for x in xs]
    covered = total = 0
    for i, x in enumerate(xs):
        inside = np.zeros(len(x), dtype=bool)
        for j, r in enumerate(ranges):
            if j != i and r is not None:
                inside |= (x >= r[0]) & (x < r[1])
        covered += int(inside.sum())
        total += len(x)
    return covered / total if total else float("nan")


def _box(d: _Data, p0: np.ndarray, bounds: Mapping[str, tuple[float, float]] | None
         ) -> tuple[np.ndarray, np.ndarray]:
    rho = np.concatenate(d.rho)
    lo = np.array([rho.min(), p0[1] / 4, p0[2] - abs(p0[1])])
    hi = np.array([rho.max(), p0[1] * 4, p0[2] + abs(p0[1])])
    for name, (a, b) in (bounds or {}).items():
        if name not in PARAMS:
            raise ScalingInputError(f"bounds names unknown parameter {name!r}; choose from {PARAMS}")
        if not (np.isfinite(a) and np.isfinite(b) and a < b) or (name == "nu" and a <= 0):
            raise ScalingInputError(f"bounds[{name!r}] must be finite (low, high) with low < high"
                                    + (" and low > 0" if name == "nu" else "") + f", got {(a, b)}")
        i = PARAMS.index(name)
        lo[i], hi[i] = a, b
    if lo[0] >= hi[0]:
        lo[0], hi[0] = lo[0] - 1, hi[0] + 1
    return lo, hi


def _grid_starts(f, lo: np.ndarray, hi: np.ndarray, free: np.ndarray, grid: int, starts: int
                 ) -> list[np.ndarray]:
    """The ``starts`` best points of a grid^free scan, no two in neighbouring grid cells."""
    axes = [np.geomspace(a, b, grid) if i == 1 else np.linspace(a, b, grid)
            for a, b, i in zip(lo, hi, free, strict=True)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(free))
    cell = np.stack(np.meshgrid(*[np.arange(grid)] * len(free), indexing="ij"), -1).reshape(-1, len(free))
    s = np.array([f(u) for u in mesh])
    chosen: list[int] = []
    for j in np.argsort(s, kind="stable"):
        if len(chosen) == starts or not np.isfinite(s[j]):
            break
        if all(np.abs(cell[j] - cell[c]).max() > 1 for c in chosen):
            chosen.append(int(j))
    return [mesh[j] for j in chosen]


def _curvature_cov(f, u: np.ndarray, s_min: float, span: np.ndarray) -> np.ndarray:
    """cov = 2·S_min·H⁻¹ from a least-squares quadratic through S on a 3^m design around ``u``.

    Each axis' step h is tuned (doubling/halving) until S rises by about S_min at ±h, so the design
    spans the one-standard-error region where S is quadratic rather than piecewise jitter. Falls
    back to the diagonal (1-D curvatures) when H is not positive definite; NaN where even that is.
    """
    m = len(u)
    target = max(s_min, 1e-12)
    h = span * 1e-3
    for i in range(m):
        e = np.zeros(m)
        e[i] = 1
        for _ in range(40):
            rise = 0.5 * (f(u + h[i] * e) + f(u - h[i] * e)) - s_min
            if rise < 0.5 * target:
                h[i] *= 2
            elif rise > 2 * target:
                h[i] /= 2
            else:
                break
    offsets = np.stack(np.meshgrid(*[[-1.0, 0.0, 1.0]] * m, indexing="ij"), -1).reshape(-1, m)
    z = offsets  # in units of h
    vals = np.array([f(u + h * o) for o in offsets])
    cols = [np.ones(len(z))] + [z[:, i] for i in range(m)]
    pairs = [(i, j) for i in range(m) for j in range(i, m)]
    cols += [z[:, i] * z[:, j] for i, j in pairs]
    ok = np.isfinite(vals)
    coef = np.linalg.lstsq(np.stack(cols, 1)[ok], vals[ok], rcond=None)[0]
    hz = np.zeros((m, m))
    for c, (i, j) in zip(coef[1 + m:], pairs, strict=True):
        if i == j:
            hz[i, i] = 2 * c
        else:
            hz[i, j] = hz[j, i] = c
    hess = hz / np.outer(h, h)
    if np.all(np.linalg.eigvalsh(hess) > 0):
        return 2 * s_min * np.linalg.inv(hess)
    diag = np.diag(hess)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diag(np.where(diag > 0, 2 * s_min / diag, np.nan))


# ---------------------------------------------------------------------------- shift of t*


def fit_shift(sizes: Any, t_star: Any, dt_star: Any = None) -> ShiftResult:
    """Weighted least-squares fit of t*(N) = t*_∞ + c·N^(−1/ν).

    For fixed θ = 1/ν the model is linear in (t*_∞, c), so θ is found by a profile scan (log grid
    on [10⁻³, 10]) refined by a bounded 1-D minimisation; the covariance is (JᵀWJ)⁻¹ at the
    optimum (W = dt*⁻²; without ``dt_star`` unit weights scaled by χ²/dof). Needs ≥ 3 sizes; with
    exactly 3 the fit interpolates (χ² = 0) and the errors come from ``dt_star`` alone (NaN
    without it).
    """
    from scipy.optimize import minimize_scalar

    n = np.asarray(sizes, dtype=np.float64)
    t = np.asarray(t_star, dtype=np.float64)
    if n.ndim != 1 or t.shape != n.shape:
        raise ScalingInputError(f"sizes and t_star must be 1-D of one length, got {n.shape} and {t.shape}")
    sig = np.ones_like(t) if dt_star is None else np.asarray(dt_star, dtype=np.float64)
    if sig.shape != t.shape:
        raise ScalingInputError(f"dt_star must have the shape of t_star {t.shape}, got {sig.shape}")
    ok = np.isfinite(n) & np.isfinite(t) & np.isfinite(sig)
    n, t, sig = n[ok], t[ok], sig[ok]
    if len(n) < 3 or len(np.unique(n)) < 3:
        raise ScalingInputError(f"fit_shift needs at least 3 distinct sizes with finite t*, got {len(n)}")
    if (n <= 0).any() or (sig <= 0).any():
        raise ScalingInputError("sizes and dt_star must be positive")
    w = sig ** -2.0
    log_n = np.log(n)

    def solve(theta: float) -> tuple[float, np.ndarray]:
        g = np.exp(-theta * log_n)
        design = np.stack([np.ones_like(g), g], 1) * np.sqrt(w)[:, None]
        coef = np.linalg.lstsq(design, t * np.sqrt(w), rcond=None)[0]
        return float(np.sum(w * (t - coef[0] - coef[1] * g) ** 2)), coef

    thetas = np.geomspace(1e-3, 10, 200)
    chi = np.array([solve(th)[0] for th in thetas])
    j = int(np.argmin(chi))
    a, b = thetas[max(j - 1, 0)], thetas[min(j + 1, len(thetas) - 1)]
    theta = float(minimize_scalar(lambda th: solve(th)[0], bounds=(a, b), method="bounded",
                                  options={"xatol": 1e-10 * b}).x)
    chi2, (t_inf, c) = solve(theta)
    g = np.exp(-theta * log_n)
    jac = np.stack([np.ones_like(g), g, -c * log_n * g], 1)
    dof = len(n) - 3
    with np.errstate(all="ignore"):
        try:
            cov_th = np.linalg.inv(jac.T @ (w[:, None] * jac))
        except np.linalg.LinAlgError:
            cov_th = np.full((3, 3), np.nan)
        if dt_star is None:
            # unit weights have no scale: the residuals give it (curve_fit's absolute_sigma=False);
            # with 3 sizes the fit interpolates (χ² = 0, dof = 0) and the errors are undefined
            cov_th = cov_th * (chi2 / dof) if dof > 0 else np.full((3, 3), np.nan)
    # to (t_inf, c, ν): ν = 1/θ, dν/dθ = −1/θ²
    tr = np.diag([1.0, 1.0, -1.0 / theta ** 2])
    cov = tr @ cov_th @ tr.T
    err = np.sqrt(np.abs(np.diag(cov)))
    return ShiftResult(t_inf=float(t_inf), c=float(c), nu=1.0 / theta, dt_inf=float(err[0]),
                       dc=float(err[1]), dnu=float(err[2]), chi2=chi2, dof=dof, cov=cov)
