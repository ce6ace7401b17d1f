"""Reference kernels of the chaos indicators (METHODS.md §6). Inputs are validated float64
arrays; see :mod:`dynlab.chaos` for the public functions, their checks and their sources."""

from __future__ import annotations

import numpy as np

#: queries per KD-tree call: bounds the (chunk, k) neighbour arrays, so memory stays O(N)
CHUNK = 8192


def delay_embed(x: np.ndarray, emb_dim: int, lag: int) -> np.ndarray:
    """(M, d·emb_dim) delay vectors of x (N, d): row i = [x_i, x_{i+lag}, …, x_{i+(m−1)lag}]
    (for d > 1 the delays of every column, column-major by delay), M = N − (m−1)·lag."""
    m = x.shape[0] - (emb_dim - 1) * lag
    return np.concatenate([x[k * lag:k * lag + m] for k in range(emb_dim)], axis=1)


def autocorrelation_lag(x: np.ndarray, max_lag: int) -> int:
    """First lag ≥ 1 where the autocorrelation (mean over columns of x (N, d)) falls below 1/e,
    at most ``max_lag``. Computed by FFT (Wiener–Khinchin)."""
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    f = np.fft.rfft(xc, 2 * n, axis=0)
    acf = np.fft.irfft(np.abs(f) ** 2, axis=0)[:n].sum(axis=1)
    if acf[0] <= 0:
        return 1
    below = np.nonzero(acf[1:max_lag + 1] / acf[0] < 1 / np.e)[0]
    return int(below[0] + 1) if len(below) else int(max_lag)


def mean_period(x: np.ndarray) -> float:
    """1 / mean frequency of x (N, d), the frequencies weighted by the power spectrum summed over
    columns (the mean is removed; the zero frequency is left out) — as nolds' ``lyap_r``."""
    n = x.shape[0]
    psd = (np.abs(np.fft.rfft(x - x.mean(axis=0), axis=0)) ** 2).sum(axis=1)[1:]
    freqs = np.fft.rfftfreq(n)[1:]
    total = psd.sum()
    if total <= 0:
        return float(n)
    return float(total / (freqs * psd).sum())


def false_nearest_fraction(x: np.ndarray, emb_dim: int, lag: int, rtol: float = 10.0,
                           atol: float = 2.0) -> float:
    """Fraction of false nearest neighbours of the scalar series x (N,) embedded in ``emb_dim``
    dimensions (Kennel, Brown & Abarbanel, PRA 45, 3403, 1992): the nearest neighbour j of i is
    false when adding the next delay coordinate moves it far away,

        |x_{i+mτ} − x_{j+mτ}| / R_m(i) > rtol   or   R_{m+1}(i) / σ_x > atol.
    """
    from scipy.spatial import cKDTree

    n_vec = x.shape[0] - emb_dim * lag  # vectors that have a next coordinate
    emb = delay_embed(x[:, None], emb_dim, lag)[:n_vec]
    nxt = x[emb_dim * lag:emb_dim * lag + n_vec]
    dist, idx = cKDTree(emb).query(emb, k=2)
    r, j = dist[:, 1], idx[:, 1]
    ok = r > 0
    if not ok.any():
        return 1.0
    extra = np.abs(nxt - nxt[j])[ok]
    r = r[ok]
    sigma = x.std()
    false = (extra > rtol * r) | (np.sqrt(r ** 2 + extra ** 2) > atol * sigma)
    return float(false.mean())


def nearest_beyond(points: np.ndarray, min_tsep: int, chunk: int = CHUNK) -> np.ndarray:
    """For each row i of ``points`` (M, D), the index of its nearest row j (Euclidean) with
    |i − j| > min_tsep; requires M ≥ 2·min_tsep + 2.

    KD-tree (scipy cKDTree): query the k nearest, take the first outside the temporal window, and
    query again with 2k for the rows that found none. k never needs to exceed 2·min_tsep + 2 (the
    window holds at most 2·min_tsep + 1 rows), so the search is exact and memory is
    O(M + chunk·k). Ties between equidistant rows are broken by the tree, not by index.
    """
    from scipy.spatial import cKDTree

    m = points.shape[0]
    tree = cKDTree(points)
    nb = np.full(m, -1, dtype=np.int64)
    todo = np.arange(m)
    k_max = min(m, 2 * min_tsep + 2)
    k = min(8, k_max)
    while len(todo):
        for s in range(0, len(todo), chunk):
            rows = todo[s:s + chunk]
            _, idx = tree.query(points[rows], k=k)
            idx = idx.reshape(len(rows), k)
            valid = np.abs(idx - rows[:, None]) > min_tsep
            found = valid.any(axis=1)
            first = valid.argmax(axis=1)
            nb[rows[found]] = idx[found, first[found]]
        todo = todo[nb[todo] < 0]
        if k == k_max:
            break
        k = min(2 * k, k_max)
    if len(todo):  # pragma: no cover - excluded by M ≥ 2·min_tsep + 2
        raise RuntimeError("nearest_beyond: a row has no neighbour outside the temporal window")
    return nb


def divergence_curve(points: np.ndarray, nb: np.ndarray, trajectory_len: int) -> np.ndarray:
    """Rosenstein's mean log-divergence y(k) = ⟨ln ‖Y_{i+k} − Y_{nb(i)+k}‖⟩_i, k < trajectory_len,
    over the pairs (i, nb(i)), i < len(nb); pairs at distance 0 are left out of the mean at that k
    (−inf when all are 0), as in nolds' ``lyap_r``."""
    n = len(nb)
    i = np.arange(n)
    out = np.empty(trajectory_len)
    for k in range(trajectory_len):
        diff = points[i + k] - points[nb + k]
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        d = d[d > 0]
        out[k] = np.log(d).mean() if len(d) else -np.inf
    return out


def pair_sums(a: np.ndarray, b: np.ndarray, norm: str) -> np.ndarray:
    """Per row t of a, b (T, ...): Σ|a_t − b_t| (``l1``) or Σ(a_t − b_t)² (``l2``, squared: sum
    these over tensors, then take the square root)."""
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).reshape(len(a), -1)
    if norm == "l1":
        return np.abs(diff).sum(axis=1)
    return np.einsum("ij,ij->i", diff, diff)


def line_fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares y ≈ slope·t + intercept: (slope, intercept, R²); R² = 0 for constant y."""
    tc, yc = t - t.mean(), y - y.mean()
    sxx, sxy, syy = (tc * tc).sum(), (tc * yc).sum(), (yc * yc).sum()
    slope = sxy / sxx
    r2 = sxy * sxy / (sxx * syy) if syy > 0 else 0.0
    return float(slope), float(y.mean() - slope * t.mean()), float(r2)


def window_fits(t: np.ndarray, y: np.ndarray, starts: np.ndarray, ends: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares lines on every window [a, b] (inclusive) for a in ``starts``, b in ``ends``:
    (slope, intercept, R²), each (len(starts), len(ends)); NaN where b − a < 2. From cumulative
    sums of the centred data, so all windows cost O(len(starts)·len(ends))."""
    t0, y0 = t - t.mean(), y - y.mean()

    def cum(v: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(v)])

    c1, ct, cy, ctt, cty, cyy = (cum(v) for v in (np.ones_like(t0), t0, y0, t0 * t0, t0 * y0,
                                                    y0 * y0))
    a, b = starts[:, None], ends[None, :] + 1

    def s(c: np.ndarray) -> np.ndarray:
        return c[b] - c[a]

    with np.errstate(divide="ignore", invalid="ignore"):
        n = s(c1)
        mt, my = s(ct) / n, s(cy) / n
        sxx = s(ctt) - n * mt * mt
        sxy = s(cty) - n * mt * my
        syy = s(cyy) - n * my * my
        slope = sxy / sxx
        r2 = np.where(syy > 0, sxy * sxy / (sxx * syy), 0.0)
        intercept = (my + y.mean()) - slope * (mt + t.mean())
    bad = n < 3
    for v in (slope, intercept, r2):
        v[bad] = np.nan
    return slope, intercept, np.clip(r2, 0.0, 1.0)
