"""The reference: scaling and the Houdayer–Hartmann quality S, vectorised over points.

Sizes are given as lists (one 1-D array per size; lengths may differ), each sorted by x with no
missing values — the public API (:mod:`dynlab.scaling`) removes NaNs and sorts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scale(sizes: np.ndarray, rho: Sequence[np.ndarray], a: Sequence[np.ndarray],
          da: Sequence[np.ndarray], rho_c: float, nu: float, zeta: float
          ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Scaled data of the ansatz a = L^{ζ/ν} f((ρ − ρ_c) L^{1/ν}) (Houdayer & Hartmann 2004)::

        x_ij = L_i^{1/ν} (ρ_ij − ρ_c),   y_ij = L_i^{−ζ/ν} a_ij,   dy_ij = L_i^{−ζ/ν} da_ij
    """
    xs, ys, dys = [], [], []
    for size, r, v, dv in zip(sizes, rho, a, da, strict=True):
        fy = size ** (-zeta / nu)
        xs.append(size ** (1.0 / nu) * (r - rho_c))
        ys.append(fy * v)
        dys.append(fy * dv)
    return xs, ys, dys


def master_curve(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], dys: Sequence[np.ndarray]
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The master-curve estimate (Y_ij, dY²_ij) at every point, NaN where undefined.

    For point j of size i and every *other* size i', the bracketing pair j', j'+1 with
    x_i'j' ≤ x_ij < x_i'(j'+1) (if any); one weighted (w = dy⁻²) least-squares line through all
    those points gives Y_ij = b + m·x_ij and dY²_ij = Var b + 2 x Cov(b, m) + x² Var m. Each
    ``xs[i]`` must be sorted ascending.
    """
    sums = []
    for xi, yi, dyi in zip(xs, ys, dys, strict=True):
        wi = dyi ** -2.0
        wx = wi * xi
        sums.append(np.stack([wi, wx, wi * yi, wx * xi, wx * yi]))
    big_y, big_dy2 = [], []
    for i, xi in enumerate(xs):
        acc = np.zeros((5, len(xi)))
        for ip, xp in enumerate(xs):
            if ip == i or len(xp) < 2:
                continue
            # j' with x_i'j' ≤ x_ij < x_i'(j'+1); points without such a pair add nothing
            jp = np.searchsorted(xp, xi, side="right") - 1
            ok = (jp >= 0) & (jp < len(xp) - 1)
            jc = np.where(ok, jp, 0)
            acc += (sums[ip][:, jc] + sums[ip][:, jc + 1]) * ok
        k, kx, ky, kxx, kxy = acc
        delta = k * kxx - kx * kx
        with np.errstate(divide="ignore", invalid="ignore"):
            good = (k > 0) & (delta > 0)
            inv = np.where(good, 1.0 / np.where(good, delta, 1.0), np.nan)
            slope = (k * kxy - kx * ky) * inv
            icpt = (kxx * ky - kx * kxy) * inv
            big_y.append(icpt + slope * xi)
            big_dy2.append((kxx - 2 * kx * xi + k * xi * xi) * inv)
    return big_y, big_dy2


def quality(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], dys: Sequence[np.ndarray]) -> float:
    """Houdayer–Hartmann quality of a collapse, sizes equally weighted (as pyfssa)::

        S = mean_i [ mean_{j: Y_ij defined} (y_ij − Y_ij)² / (dy_ij² + dY_ij²) ]

    ≈ 1 for a collapse within the errors; sizes with no defined Y are left out; NaN if none is
    defined. See :func:`master_curve` for Y and dY.
    """
    big_y, big_dy2 = master_curve(xs, ys, dys)
    means = []
    for yi, dyi, yy, dd in zip(ys, dys, big_y, big_dy2, strict=True):
        ok = np.isfinite(yy)
        if ok.any():
            means.append(np.mean((yi[ok] - yy[ok]) ** 2 / (dyi[ok] ** 2 + dd[ok])))
    return float(np.mean(means)) if means else float("nan")
