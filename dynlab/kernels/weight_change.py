"""Relative weight change (RWC) of a layer between checkpoints, and the WeightScale clustering.

Sources: Agrawal et al., "Investigating Learning in Deep Neural Networks using Layer-Wise Weight
Change" (arXiv 2011.06735), and "WeightScale: Interpreting Weight Change in Neural Networks"
(arXiv 2107.07005). METHODS.md §4 states the choices made here.

Pure numpy (scipy's k-means for the clustering, imported when used); nothing of dynlab.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = ["FORMS", "WeightScaleResult", "clean_curves", "elbow", "relative_weight_change",
           "weightscale"]

FORMS = ("norm", "elementwise")


def relative_weight_change(w: np.ndarray, form: str = "norm") -> np.ndarray:
    """RWC between consecutive checkpoints of one layer: ``w`` of shape (T, *shape) → (T−1,).

    ``form="norm"`` (the paper's definition, the default)::

        RWC(t) = ‖w_t − w_{t−1}‖₁ / ‖w_{t−1}‖₁

    ``form="elementwise"`` (the authors' code)::

        RWC(t) = mean over i with w_{t−1,i} ≠ 0 of |w_{t,i} − w_{t−1,i}| / |w_{t−1,i}|

    Zero denominators. Norm form: ‖w_{t−1}‖₁ = 0 gives ``inf`` (or ``nan`` when w_t is zero too).
    Elementwise form: entries whose previous value is exactly zero are left out of the mean (they
    have no relative change; keeping them would make the whole step ``inf``); if every previous
    entry is zero the step is ``nan``. Near-zero (but non-zero) weights are kept, so this form can
    still be dominated by tiny weights, as the METHODS page warns. No warnings are raised; callers
    (e.g. :func:`clean_curves`) treat non-finite values.

    Computed in float64, one pair of checkpoints at a time (extra memory ≈ two checkpoints).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    w = np.asarray(w)
    if w.ndim < 1 or w.shape[0] < 2:
        raise ValueError(f"need at least 2 checkpoints along axis 0, got shape {w.shape}")
    out = np.empty(w.shape[0] - 1, dtype=np.float64)
    prev = np.asarray(w[0], dtype=np.float64).ravel()
    for t in range(1, w.shape[0]):
        cur = np.asarray(w[t], dtype=np.float64).ravel()
        change = np.abs(cur - prev)
        if form == "norm":
            num, den = change.sum(), np.abs(prev).sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                out[t - 1] = num / den
        else:
            nonzero = prev != 0
            out[t - 1] = (change[nonzero] / np.abs(prev[nonzero])).mean() if nonzero.any() else np.nan
        prev = cur
    return out


def clean_curves(rwc: np.ndarray, n_sigma: float = 2.0, fill: str = "kept") -> np.ndarray:
    """WeightScale's cleaning of a (layers × steps) matrix, row by row.

    With μ and σ (population std) of a row's finite values, every non-finite value and every
    value with |x − μ| > n_sigma·σ is replaced by the layer's mean, in one pass. METHODS.md leaves
    "the layer's mean" open; ``fill="kept"`` (default) takes the mean of the values that are kept
    (finite and within n_sigma·σ), ``fill="all"`` takes μ itself. The default is chosen because μ
    includes the outliers: a spike of height h in n steps would be replaced by a value still ≈ h/n
    above the curve, a smaller spike of its own. A row without finite values stays all-``nan``.

    The rule also flattens genuine sharp features (a one-step peak lies beyond 2σ of a curve that
    is otherwise flat); smooth curves are untouched (a ramp stays within √3σ, a sine within √2σ).
    """
    if fill not in ("kept", "all"):
        raise ValueError(f"fill must be 'kept' or 'all', got {fill!r}")
    rwc = np.array(rwc, dtype=np.float64, ndmin=2)
    out = rwc.copy()
    for i, row in enumerate(rwc):
        finite = np.isfinite(row)
        if not finite.any():
            continue
        mu, sigma = row[finite].mean(), row[finite].std()
        bad = ~finite
        bad[finite] = np.abs(row[finite] - mu) > n_sigma * sigma
        out[i, bad] = row[~bad].mean() if fill == "kept" else mu
    return out


def elbow(inertia: np.ndarray) -> int:
    """K at the elbow of an inertia curve ``inertia[k−1]`` for K = 1..len(inertia).

    Both axes are scaled to [0, 1] (K ↦ (K−1)/(K_max−1), I ↦ (I − I_last)/(I_1 − I_last)), and the
    elbow is the point farthest below the chord from the first to the last point (the "knee" of
    Satopää et al.'s Kneedle; scaling makes it independent of the units of the inertia). Ties go to
    the smaller K. Returns 1 when there is no point below the chord: fewer than three points, a
    flat curve, or no elbow. The method cannot itself distinguish "one cluster" from "an elbow",
    so data with no group structure still gets the K where its inertia bends most.
    """
    inertia = np.asarray(inertia, dtype=np.float64)
    n = len(inertia)
    if n < 3:
        return 1
    drop = inertia[0] - inertia[-1]
    if not drop > 0:
        return 1
    x = np.arange(n) / (n - 1)
    y = (inertia - inertia[-1]) / drop
    below = 1.0 - x - y  # ∝ distance below the chord x + y = 1
    best = int(np.argmax(below))
    return best + 1 if below[best] > 1e-12 else 1


@dataclass(frozen=True)
class WeightScaleResult:
    """What :func:`weightscale` returns.

    ``cleaned``: (layers, steps) after :func:`clean_curves`; ``k``: the K tried (1..K_eff);
    ``inertia``: the best within-cluster sum of squares for each K; ``chosen_k``: K at the elbow
    (0 when no layer was clustered); ``labels``: (layers,) cluster of each layer for ``chosen_k``,
    −1 for layers not clustered; ``curves``: (chosen_k, steps) mean cleaned curve of each cluster.
    Clusters are numbered in order of their first layer.
    """

    cleaned: np.ndarray
    k: np.ndarray
    inertia: np.ndarray
    chosen_k: int
    labels: np.ndarray
    curves: np.ndarray


def weightscale(rwc: np.ndarray, k_max: int = 6, drop_ends: bool = True, seed: int = 0, *,
                n_init: int = 10, max_iter: int = 50) -> WeightScaleResult:
    """WeightScale (arXiv 2107.07005): cluster the layers by their RWC curves.

    ``rwc`` is (layers × steps). Rows are cleaned (:func:`clean_curves`); the first and last layer
    are left out when ``drop_ends`` (label −1), and so is a layer without any finite value. k-means
    with k-means++ seeding (scipy's ``kmeans2``, ``n_init`` restarts from one
    ``numpy.random.default_rng(seed)``, the lowest inertia kept) runs for K = 1..K_eff, where
    K_eff = min(k_max, number of distinct clustered rows), so fewer layers than ``k_max`` is fine;
    K is chosen at the elbow of the inertia curve (:func:`elbow`).
    """
    if int(k_max) < 1 or n_init < 1 or max_iter < 1:
        raise ValueError(f"k_max, n_init and max_iter must be at least 1, got {k_max}, {n_init}, "
                         f"{max_iter}")
    cleaned = clean_curves(rwc)
    n_layers, n_steps = cleaned.shape
    use = np.isfinite(cleaned).all(axis=1)
    if drop_ends:
        use[[0, -1]] = False
    labels = np.full(n_layers, -1, dtype=np.int64)
    data = cleaned[use]
    if len(data) == 0:
        return WeightScaleResult(cleaned, np.zeros(0, np.int64), np.zeros(0), 0, labels,
                                 np.zeros((0, n_steps)))
    k_eff = min(int(k_max), len(np.unique(data, axis=0)))
    rng = np.random.default_rng(seed)
    fits = [_best_kmeans(data, k, rng, n_init, max_iter) for k in range(1, k_eff + 1)]
    inertia = np.array([f[0] for f in fits])
    chosen = elbow(inertia)
    raw = fits[chosen - 1][1]
    _, order = np.unique(raw, return_index=True)  # renumber by first appearance
    relabel = np.empty(chosen, dtype=np.int64)
    relabel[raw[np.sort(order)]] = np.arange(chosen)
    labels[use] = relabel[raw]
    curves = np.stack([data[labels[use] == c].mean(axis=0) for c in range(chosen)])
    return WeightScaleResult(cleaned, np.arange(1, k_eff + 1), inertia, chosen, labels, curves)


def _best_kmeans(data: np.ndarray, k: int, rng: np.random.Generator, n_init: int,
                 max_iter: int) -> tuple[float, np.ndarray]:
    """(inertia, labels) of the best of ``n_init`` k-means++ runs with ``k`` non-empty clusters."""
    from scipy.cluster.vq import ClusterError, kmeans2, vq

    if k == 1:
        labels = np.zeros(len(data), dtype=np.int64)
        return _within_ss(data, labels, 1), labels
    best: tuple[float, np.ndarray] | None = None
    for _ in range(10 * n_init):  # retries for starts that empty a cluster
        try:  # "raise": an empty cluster ends this start ("warn" would warn, keep a stale centre)
            centres, _ = kmeans2(data, k, iter=max_iter, minit="++", missing="raise",
                                 **{_rng_keyword(): rng})
        except ClusterError:
            continue
        labels = vq(data, centres)[0].astype(np.int64)  # kmeans2's own labels lag one update
        if len(np.unique(labels)) < k:
            continue
        inertia = _within_ss(data, labels, k)
        if best is None or inertia < best[0]:
            best = (inertia, labels)
        n_init -= 1
        if n_init == 0:
            break
    if best is None:
        raise RuntimeError(f"k-means left a cluster empty in every start with K = {k}")
    return best


def _within_ss(data: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Within-cluster sum of squares: Σ_c Σ_{i ∈ c} ‖x_i − mean_c‖²."""
    return float(sum(((data[labels == c] - data[labels == c].mean(axis=0)) ** 2).sum()
                     for c in range(k)))


@cache
def _rng_keyword() -> str:
    """scipy ≥ 1.15 takes a Generator as ``rng=``; older versions only as ``seed=``."""
    from scipy.cluster.vq import kmeans2

    return "rng" if "rng" in inspect.signature(kmeans2).parameters else "seed"
