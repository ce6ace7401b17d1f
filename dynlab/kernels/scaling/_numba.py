"""numba (CPU) Houdayer–Hartmann quality: scaling and S in one compiled pass.

Same numbers as the reference (``_numpy.py``) up to summation order. The data of all sizes are
concatenated, size i occupying ``[offsets[i], offsets[i+1])``, each block sorted by ρ (so the scaled
x is sorted for ν > 0). Serial: a fit evaluates S thousands of times on small data, where thread
start-up would cost more than it saves.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["quality_flat"]


@numba.njit(cache=True, error_model="numpy")  # 1/0 gives inf (then S is not finite), not an exception
def quality_flat(sizes, offsets, rho, a, da, rho_c, nu, zeta):  # pragma: no cover (jit)
    """S at (ρ_c, ν, ζ) of concatenated, per-size sorted data; NaN when no point has an estimate."""
    k = sizes.shape[0]
    n = rho.shape[0]
    x = np.empty(n)
    y = np.empty(n)
    w = np.empty(n)
    for i in range(k):
        fx = sizes[i] ** (1.0 / nu)
        fy = sizes[i] ** (-zeta / nu)
        for j in range(offsets[i], offsets[i + 1]):
            x[j] = fx * (rho[j] - rho_c)
            y[j] = fy * a[j]
            w[j] = 1.0 / (fy * da[j]) ** 2
    total = 0.0
    n_sizes = 0
    for i in range(k):
        acc = 0.0
        cnt = 0
        for j in range(offsets[i], offsets[i + 1]):
            xj = x[j]
            s0 = 0.0
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            sxy = 0.0
            for ip in range(k):
                lo = offsets[ip]
                hi = offsets[ip + 1]
                if ip == i or hi - lo < 2:
                    continue
                # j' with x[j'] ≤ xj < x[j'+1]: searchsorted(side="right") − 1 within the block
                jp = lo + np.searchsorted(x[lo:hi], xj, side="right") - 1
                if jp < lo or jp >= hi - 1:
                    continue
                for q in (jp, jp + 1):
                    s0 += w[q]
                    sx += w[q] * x[q]
                    sy += w[q] * y[q]
                    sxx += w[q] * x[q] * x[q]
                    sxy += w[q] * x[q] * y[q]
            delta = s0 * sxx - sx * sx
            if s0 > 0 and delta > 0:
                yy = ((sxx * sy - sx * sxy) + (s0 * sxy - sx * sy) * xj) / delta
                dyy2 = (sxx - 2 * sx * xj + s0 * xj * xj) / delta
                acc += (y[j] - yy) ** 2 / (1.0 / w[j] + dyy2)
                cnt += 1
        if cnt > 0:
            total += acc / cnt
            n_sizes += 1
    return total / n_sizes if n_sizes > 0 else np.nan
