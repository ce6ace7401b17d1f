"""Plain-numpy reference of the Fisher–Rao kernels: the definitions, used as the oracle in tests.

Source: Thiruthummal, Kim, Shelyag, "Information Geometry of Evolution of Neural Network
Parameters While Training" (arXiv 2406.05295); METHODS.md §1 states the discretisation.

Inputs are assumed validated (``dynlab.geometry`` does that): edges float64, finite, strictly
increasing; pdfs non-negative and normalised along the last axis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

__all__ = ["bhattacharyya", "combine_moments", "distance_from_initial", "distance_matrix", "fisher_rao",
           "gaussian_length", "gaussian_rate", "histogram_accumulate", "histogram_counts",
           "histogram_counts_pair", "information_length", "information_rate", "leave_a_core",
           "probabilities", "row_moments"]

_SQRT2 = np.sqrt(2.0)


# ---------------------------------------------------------------------------- histograms


def leave_a_core() -> contextlib.AbstractContextManager[None]:
    """The numba backend's thread limit beside a block reader (``_numba.leave_a_core``); nothing
    to do here: these kernels run on the calling thread alone."""
    return contextlib.nullcontext()


def histogram_counts(samples: np.ndarray | Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Counts (T, B) int64 of each snapshot (a row of ``samples``) on the fixed ``edges`` (B+1,).

    Bins are numpy's: [e_b, e_b+1) and the last one closed, [e_B−1, e_B]. Values outside
    [e_0, e_B] are clipped into the end bins (±inf included); NaN is not counted.
    """
    out = np.zeros((len(samples), len(edges) - 1), dtype=np.int64)
    for t, row in enumerate(samples):
        histogram_accumulate(out[t], row, edges)
    return out


def histogram_counts_pair(samples: np.ndarray | Sequence[np.ndarray], edges_a: np.ndarray,
                          edges_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the same ``samples`` on two sets of edges: ``(histogram_counts(samples, edges_a),
    histogram_counts(samples, edges_b))`` — by definition; the numba backend makes one pass."""
    return histogram_counts(samples, edges_a), histogram_counts(samples, edges_b)


def histogram_accumulate(counts: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add the counts of one chunk of ``values`` (any shape) into ``counts`` (B,) in place."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = np.clip(x[~np.isnan(x)], edges[0], edges[-1])
    counts += np.histogram(x, bins=edges)[0]
    return counts


def row_moments(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``samples`` (T, n), n ≥ 1: ``(lo, hi, mean, m2)``, float64 (T,) each.

    lo, hi: the smallest and largest *finite* value (NaN when a row has none); mean and
    m2 = Σ(x − mean)² over all values (non-finite values make them non-finite). Rows of one block
    combine with :func:`combine_moments`.
    """
    x = np.asarray(samples)
    finite = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        lo = np.where(finite, x, np.inf).min(axis=1).astype(np.float64)
        hi = np.where(finite, x, -np.inf).max(axis=1).astype(np.float64)
        none = ~finite.any(axis=1)
        lo[none] = hi[none] = np.nan
        mean = x.mean(axis=1, dtype=np.float64)
        m2 = np.sum((x - mean[:, None]) ** 2, axis=1)
    return lo, hi, mean, m2


def combine_moments(n_a: np.ndarray | int, mean_a: np.ndarray, m2_a: np.ndarray,
                    n_b: np.ndarray | int, mean_b: np.ndarray, m2_b: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and m2 of two disjoint samples together (Chan, Golub & LeVeque 1979):
    δ = μ_b − μ_a, n = n_a + n_b, μ = μ_a + δ·n_b/n, m2 = m2_a + m2_b + δ²·n_a·n_b/n.
    An empty side (n = 0) contributes nothing."""
    n = np.add(n_a, n_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.subtract(mean_b, mean_a)
        w = np.where(n > 0, np.divide(n_b, np.maximum(n, 1)), 0.0)
        mean = np.where(np.equal(n_a, 0), mean_b,
                        np.where(np.equal(n_b, 0), mean_a, np.add(mean_a, delta * w)))
        m2 = np.where(np.equal(n_a, 0), m2_b,
                      np.where(np.equal(n_b, 0), m2_a, m2_a + m2_b + delta * delta * n_a * w))
    return n, mean, m2


def probabilities(counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """Counts normalised to sum 1 along ``axis`` (float64); an all-zero row becomes NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return counts / counts.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------- distances


def _hellinger_chord(p: np.ndarray, q: np.ndarray, axis: int) -> np.ndarray:
    """H = ‖√p − √q‖ (H² = 2 − 2·BC for normalised p, q), clipped to [0, √2]."""
    diff = np.sqrt(p) - np.sqrt(q)
    return np.minimum(np.sqrt(np.sum(diff * diff, axis=axis)), _SQRT2)


def fisher_rao(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Fisher–Rao geodesic distance 2·arccos(Σ√(p·q)) between discrete distributions, in [0, π].

    Computed as 4·arcsin(H/2) with H = ‖√p − √q‖, equal for normalised p, q (√p and √q are unit
    vectors at angle φ = arccos BC, and their chord is H = 2·sin(φ/2)); the arccos form loses half
    the digits near BC = 1 (an error ε in BC becomes √(2ε) in the angle), which is where
    consecutive checkpoints are. Identical inputs give exactly 0.
    """
    return 4.0 * np.arcsin(0.5 * _hellinger_chord(p, q, axis))


def bhattacharyya(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Bhattacharyya distance −ln Σ√(p·q), in [0, inf]; ``inf`` for disjoint supports.

    Computed as −log1p(−H²/2) with H = ‖√p − √q‖ (BC = 1 − H²/2 for normalised p, q), accurate
    for nearby distributions. No warning is raised for the disjoint case.
    """
    h = _hellinger_chord(p, q, axis)
    with np.errstate(divide="ignore"):
        return -np.log1p(-np.minimum(0.5 * h * h, 1.0))  # H ≤ √2 can round to H² > 2


def distance_matrix(pdfs: np.ndarray) -> np.ndarray:
    """(T, T) Fisher–Rao distances between all pairs of rows of ``pdfs`` (T, B).

    Row by row with the chord form of :func:`fisher_rao` (not 2·arccos(√P·√Pᵀ), whose Gram matrix
    rounds nearby pairs to BC ≈ 1 ± ε and identical rows to ≈ 1e-8 instead of 0).
    """
    u = np.sqrt(pdfs)
    out = np.empty((len(u), len(u)))
    for i in range(len(u)):
        diff = u - u[i]
        h = np.minimum(np.sqrt(np.sum(diff * diff, axis=1)), _SQRT2)
        out[i] = 4.0 * np.arcsin(0.5 * h)
    return out


# ---------------------------------------------------------------------------- along a run


def information_rate(pdfs: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Information rate Γ at the midpoints of consecutive snapshots: (Γ (T−1,), t_mid (T−1,)).

    dL_k = Fisher–Rao(p_k, p_k+1) = 2·arccos(BC_k), Γ(t_k+½) = dL_k / (t_k+1 − t_k),
    t_k+½ = (t_k + t_k+1)/2 (METHODS.md §1).
    """
    dl = fisher_rao(pdfs[:-1], pdfs[1:])
    return dl / np.diff(t), 0.5 * (t[:-1] + t[1:])


def information_length(pdfs: np.ndarray) -> np.ndarray:
    """Information length L(t_k) = Σ_{j<k} dL_j, shape (T,), L[0] = 0."""
    return np.concatenate([[0.0], np.cumsum(fisher_rao(pdfs[:-1], pdfs[1:]))])


def adaptive_anchors(pdfs: np.ndarray, theta: float) -> np.ndarray:
    """Snapshots a path is measured between, with an adaptive Δt (METHODS.md §1: take a step only
    once the distribution has moved measurably).

    From anchor a, the next anchor is the first k > a with Fisher–Rao(p_a, p_k) ≥ ``theta``. The
    last snapshot closes the path; a closing step shorter than theta/2 replaces the last anchor
    instead of adding one. ``theta = 0`` keeps every snapshot. Returns increasing indices, first 0,
    last T − 1 (docs/fisher-accuracy.md measures the choice).
    """
    last = len(pdfs) - 1
    anchors = [0]
    for k in range(1, last + 1):
        if fisher_rao(pdfs[anchors[-1]], pdfs[k]) >= theta:
            anchors.append(k)
    if anchors[-1] != last:
        short = len(anchors) > 1 and fisher_rao(pdfs[anchors[-1]], pdfs[last]) < theta / 2
        if short:
            anchors[-1] = last
        else:
            anchors.append(last)
    return np.asarray(anchors, dtype=np.int64)


def adaptive_length(pdfs: np.ndarray, t: np.ndarray, theta: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Information length measured between :func:`adaptive_anchors`, at every snapshot:
    (L (T,), anchors). L is exact at the anchors and linear in t between them."""
    anchors = adaptive_anchors(pdfs, theta)
    if len(anchors) == 1:  # a single snapshot
        return np.zeros(len(pdfs)), anchors
    steps = fisher_rao(pdfs[anchors[:-1]], pdfs[anchors[1:]])
    at_anchors = np.concatenate([[0.0], np.cumsum(steps)])
    return np.interp(np.asarray(t, dtype=np.float64), np.asarray(t, dtype=np.float64)[anchors],
                     at_anchors), anchors


def distance_from_initial(pdfs: np.ndarray) -> np.ndarray:
    """Geodesic distance D(t_k) = 2·arccos(Σ√(p_0·p_k)) from the first snapshot, shape (T,)."""
    return fisher_rao(pdfs[:1], pdfs)


# ---------------------------------------------------------------------------- Gaussian estimator


def _gaussian_steps(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """dL_k = √(Δμ² + 2Δσ²) / σ_k+½ with σ_k+½ = (σ_k + σ_k+1)/2: Γ·Δt at the midpoints."""
    return np.sqrt(np.diff(mu) ** 2 + 2.0 * np.diff(sigma) ** 2) / (0.5 * (sigma[:-1] + sigma[1:]))


def gaussian_rate(mu: np.ndarray, sigma: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Γ of a Gaussian family N(μ(t), σ(t)²): Γ² = (μ̇² + 2σ̇²)/σ², at the midpoints.

    Discretisation: μ̇ = Δμ/Δt and σ̇ = Δσ/Δt are the central differences at t_k+½ and σ is the
    midpoint average (σ_k + σ_k+1)/2, all second-order accurate in Δt. A pure shift (σ constant)
    is exact for any step; a pure rescale by r = σ_k+1/σ_k per step gives 2√2·tanh(ln r / 2)
    instead of √2·ln r, a relative error of (ln r)²/12.
    """
    return _gaussian_steps(mu, sigma) / np.diff(t), 0.5 * (t[:-1] + t[1:])


def gaussian_length(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Cumulative L (T,) of the Gaussian estimator, L[0] = 0: the sum of Γ·Δt of :func:`gaussian_rate`."""
    return np.concatenate([[0.0], np.cumsum(_gaussian_steps(mu, sigma))])
