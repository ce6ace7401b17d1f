"""The streaming passes shared by ``fisher-velocity`` and ``fisher-distance`` (METHODS.md §1).

Two passes over the run; in each, every tensor is read block by block (:mod:`._blocks`: a few
steps of the tensor, or a slice of its rows at one step, at most ``BLOCK_BYTES`` unless one stored
chunk of rows is larger), so every stored chunk is read once per pass and memory is bounded by a
few blocks (:mod:`._blocks` says how many), never by the run:

1. :func:`scan` — the range [lo, hi] of every tensor over the whole run, and its mean and standard
   deviation per step (the Gaussian estimator needs nothing else). A store written by this
   version of dynlab holds these per step and tensor (``Run.stats``, computed at ingest), so
   this pass reads no data at all; otherwise the backend's ``row_moments`` kernel computes them,
   blocks combined exactly (Chan et al.). The pooled curve ``"all"``
   combines the layers: its range is the union of theirs; its moments are the size-weighted
   combination of the layers' (exact: pooled variance = Σ n_l (var_l + (μ_l − μ)²) / N).
2. :func:`count` — histogram counts per step on **fixed** edges (the same for every step), per
   layer on the layer's edges and pooled on the pooled edges, with the backend's
   ``histogram_counts_pair`` kernel (both sets of edges in one pass over a block; pooled only:
   ``histogram_counts``; ``dynlab.kernels.fisher``, the one behind
   :func:`dynlab.geometry.histogram_counts`; analyzers sit beside ``dynlab.geometry`` in the layers,
   so they call the kernels directly). Counts of blocks add up.

``clip`` > 0 narrows a range to quantiles (clip, 1 − clip). The exact quantile of a whole run is
not streamable, so this is an approximation: a layer's range is the widest of the quantile ranges
of its **first and last** checkpoints (read whole: the one place where memory is a tensor at two
steps rather than a block), and the pooled range is the union of the layers' clipped ranges.
Values outside the edges fall into the end bins (``histogram_counts`` clips them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dynlab.analyzers._blocks import blocks
from dynlab.analyzers._contract import Analyzer, AnalyzerInputError
from dynlab.analyzers._params import Boolean, Interval, Options, param
from dynlab.analyzers.weight_change import select_layers
from dynlab.kernels import fisher as _k

POOLED = "all"


@dataclass(frozen=True)
class DistributionParams(Analyzer):
    """The parameters both analyzers of the parameter distribution declare (one declaration)."""

    subset: str = param("all", Options("all", "weights"),
                        "all: every float tensor; weights: ndim > 1 and not norm layers")
    per_layer: bool = param(True, Boolean(), "also per tensor (the pooled 'all' always)")
    bins: int = param(0, Interval(int, 0, None), "histogram bins; 0 = ⌊P^(1/3)⌋ capped at max_bins")
    max_bins: int = param(200, Interval(int, 1, None), "cap of the automatic bin rule")
    clip: float = param(0.0, Interval(float, 0.0, 0.1),
                        "clip the range to quantiles (clip, 1−clip) of the first and last checkpoints")
    estimator: str = param("histogram", Options("histogram", "gaussian", "kde"),
                           "histogram on fixed edges; Gaussian (Γ² = (μ̇² + 2σ̇²)/σ², closed-form "
                           "distance); or kde (binned Gaussian kernel density on a fixed grid)")
    bandwidth: float = param(1.0, Interval(float, 0.0, None, closed="neither"),
                             "kde: bandwidth as a multiple of Silverman's 1.06·σ̄·P^(−1/5)")


def bin_rule(n_values: int, bins: int, max_bins: int) -> int:
    """``bins`` if > 0, else rule B = ⌊P^(1/3)⌋ (P values per snapshot) capped at ``max_bins``;
    at least 1. 0.39 × the 2.59·P^(1/3) of METHODS.md: with the adaptive step it keeps L within 2 %
    on coherent moves (docs/fisher-accuracy.md), where 2.59 overestimates by 5–36 %."""
    if bins > 0:
        return int(bins)
    return int(max(1, min(max_bins, np.floor(n_values ** (1.0 / 3.0)))))


def uniform_edges(lo: float, hi: float, n_bins: int) -> np.ndarray:
    """``n_bins`` equal bins over [lo, hi]; a degenerate range (a constant tensor) is widened by
    ±0.5 so the edges stay strictly increasing (every value lands in one bin)."""
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    return np.linspace(lo, hi, n_bins + 1)


@dataclass
class Scan:
    """What pass 1 learns: per curve (layer names and ``"all"``) its range, size and moments."""

    names: list[str]
    excluded: dict[str, str]
    size: dict[str, int] = field(default_factory=dict)
    lo: dict[str, float] = field(default_factory=dict)
    hi: dict[str, float] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    std: dict[str, np.ndarray] = field(default_factory=dict)


def choose_layers(view: Any, subset: str, analyzer: str) -> tuple[list[str], dict[str, str]]:
    """Tensors to analyse: ``subset="all"`` every non-empty floating tensor, ``"weights"`` those
    with ndim > 1 that are not normalisation layers (the rule of ``weight-change``)."""
    steps = np.asarray(view.steps)
    if len(steps) < 2:
        raise AnalyzerInputError(f"run '{view.name}' has {len(steps)} checkpoint(s); "
                                 f"{analyzer} needs at least 2")
    names, excluded = select_layers(view.tensors, subset)
    sizes = {t.name: int(np.prod(t.shape, dtype=np.int64)) for t in view.tensors}
    for n in [n for n in names if sizes[n] == 0]:
        names.remove(n)
        excluded[n] = "empty"
    if not names:
        raise AnalyzerInputError(f"run '{view.name}': no tensor matches subset={subset}; "
                                 f"try -p {analyzer}.subset=all")
    return names, excluded


def _clipped_range(view: Any, name: str, clip: float) -> tuple[float, float] | None:
    """The widest (clip, 1 − clip) quantile range of the first and last checkpoints, or None when
    they hold no finite value."""
    steps = np.asarray(view.steps)
    ends = np.asarray(view.read(name, steps[[0, -1]])).reshape(2, -1).astype(np.float64)
    q = np.nanquantile(np.where(np.isfinite(ends), ends, np.nan), [clip, 1 - clip], axis=1)
    return (float(q[0].min()), float(q[1].max())) if np.isfinite(q).all() else None


def stored_stats(view: Any, names: list[str]) -> dict[str, np.ndarray] | None:
    """Per tensor, its (T, 4) statistics [finite min, finite max, mean, m2] as written at ingest
    (``Run.stats``), or None when the view has none (in-memory views, older stores)."""
    stats = getattr(view, "stats", None)
    if stats is None:
        return None
    index = {t.name: i for i, t in enumerate(view.tensors)}
    return {name: stats[:, index[name]] for name in names}


def _moments_from_data(view: Any, name: str, kernel: Any) -> tuple[float, float, np.ndarray,
                                                                    np.ndarray]:
    """A tensor's finite range over the run, and its per-step mean and m2, block by block."""
    n_steps = len(np.asarray(view.steps))
    lo, hi = np.inf, -np.inf
    n, mean, m2 = np.zeros(n_steps), np.zeros(n_steps), np.zeros(n_steps)
    for block in blocks(view, name):
        b_lo, b_hi, b_mean, b_m2 = kernel.row_moments(block.values)
        lo, hi = np.nanmin([lo, *b_lo]), np.nanmax([hi, *b_hi])
        r = block.rows
        n[r], mean[r], m2[r] = _k.combine_moments(n[r], mean[r], m2[r], block.values.shape[1],
                                                  b_mean, b_m2)
    return lo, hi, mean, m2


def scan(view: Any, names: list[str], excluded: dict[str, str], clip: float,
         backend: str = "numpy") -> Scan:
    """Pass 1 (see the module docstring); no pass at all when the store has the statistics."""
    kernel = _k.backend(backend)
    out = Scan(names, excluded)
    n_steps = len(np.asarray(view.steps))
    sizes = {t.name: int(np.prod(t.shape, dtype=np.int64)) for t in view.tensors}
    stored = stored_stats(view, names)
    s1 = np.zeros(n_steps)  # Σ n_l μ_l
    ranged = []  # the layers with a finite value: they alone make the pooled range
    for name in names:
        if stored is not None:
            st = stored[name]
            with np.errstate(invalid="ignore"):
                lo, hi, mean, m2 = np.nanmin(st[:, 0], initial=np.inf), np.nanmax(
                    st[:, 1], initial=-np.inf), st[:, 2], st[:, 3]
        else:
            lo, hi, mean, m2 = _moments_from_data(view, name, kernel)
        if lo <= hi:
            lo, hi = float(lo), float(hi)
            ranged.append(name)
        else:  # no finite value at all
            lo, hi = 0.0, 0.0
        if clip > 0:
            lo, hi = _clipped_range(view, name, clip) or (lo, hi)
        out.size[name], out.lo[name], out.hi[name] = sizes[name], lo, hi
        out.mean[name] = mean
        with np.errstate(invalid="ignore"):
            out.std[name] = np.sqrt(m2 / sizes[name])
        s1 += sizes[name] * mean
    total = sum(out.size[n] for n in names)
    mu = s1 / total
    var = sum(out.size[n] * (out.std[n] ** 2 + (out.mean[n] - mu) ** 2) for n in names) / total
    out.size[POOLED], out.mean[POOLED], out.std[POOLED] = total, mu, np.sqrt(var)
    out.lo[POOLED] = min((out.lo[n] for n in ranged), default=0.0)
    out.hi[POOLED] = max((out.hi[n] for n in ranged), default=0.0)
    return out


def edges_for(sc: Scan, bins: int, max_bins: int) -> dict[str, np.ndarray]:
    """Fixed edges of every curve: the bin rule on its size, over its range."""
    return {c: uniform_edges(sc.lo[c], sc.hi[c], bin_rule(sc.size[c], bins, max_bins))
            for c in [POOLED, *sc.names]}


@dataclass
class KdeGrid:
    """The fixed grid of the kde estimator for one curve: counting edges (the grid cells) and the
    bandwidth h (in value units)."""

    edges: np.ndarray
    h: float

    @property
    def effective_bins(self) -> int:
        """Independent pieces of the smoothed density: the range over 2h (for the noise floor),
        at most the grid's cells (a grid capped at ``KDE_GRID[1]`` cells resolves no more)."""
        pieces = round(float(self.edges[-1] - self.edges[0]) / (2 * self.h))
        return max(1, min(pieces, len(self.edges) - 1))


#: grid cells per bandwidth of the kde (simple binning adds Δ²/12 to the kernel's h²: ≈ 0.5 %),
#: and their limits
KDE_CELLS_PER_H = 4
KDE_GRID = (64, 8192)


def kde_grids(sc: Scan, factor: float) -> dict[str, KdeGrid]:
    """Per curve: bandwidth h = factor · 1.06·σ̄·P^(−1/5) (Silverman's rule, σ̄ the median over
    steps of the curve's standard deviation: one h for the whole run, so every step is smoothed
    alike), and a grid of cells of h/4 over [lo − 4h, hi + 4h]."""
    out = {}
    for c in [POOLED, *sc.names]:
        sd = sc.std[c][np.isfinite(sc.std[c]) & (sc.std[c] > 0)]
        scale = float(np.median(sd)) if sd.size else 1.0
        h = factor * 1.06 * scale * max(sc.size[c], 1) ** (-0.2)
        lo, hi = sc.lo[c] - 4 * h, sc.hi[c] + 4 * h
        cells = int(np.clip(np.ceil((hi - lo) / (h / KDE_CELLS_PER_H)), *KDE_GRID))
        out[c] = KdeGrid(uniform_edges(lo, hi, cells), h)
    return out


def kde_pdfs(counts: np.ndarray, grid: KdeGrid) -> np.ndarray:
    """Binned Gaussian KDE (Wand 1994, "Fast computation of multivariate kernel estimators"):
    the counts of each step on the grid cells, convolved with the kernel exp(−(jΔ)²/2h²)
    sampled at the cell spacing Δ out to 4h, normalised to sum 1 over the grid (so Σ√(p q) is
    the Riemann sum of ∫√(f g) dw). Rows: steps."""
    from scipy.ndimage import convolve1d

    delta = (grid.edges[-1] - grid.edges[0]) / (len(grid.edges) - 1)
    reach = int(np.ceil(4 * grid.h / delta))
    j = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (j * delta / grid.h) ** 2)
    smooth = convolve1d(np.asarray(counts, dtype=np.float64), kernel, axis=1, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        return smooth / smooth.sum(axis=1, keepdims=True)


def count(view: Any, names: list[str], edges: dict[str, np.ndarray], backend: str,
          per_layer: bool) -> Iterator[tuple[str, np.ndarray]]:
    """Pass 2: counts (T, B) int64 per curve, as ``(curve, counts)`` pairs: each layer's as soon
    as its tensor is counted (with ``per_layer``), the pooled ones (summed over the tensors) last.
    A caller that reduces each curve before asking for the next holds one layer's counts and the
    pooled ones, not every layer's: (T, B) int64 per curve is the one part of the memory that
    grows with the run (200 bins × 10,000 checkpoints is 16 MB a curve)."""
    kernel = _k.backend(backend)
    n_steps = len(np.asarray(view.steps))
    pooled = np.zeros((n_steps, len(edges[POOLED]) - 1), dtype=np.int64)
    for name in names:
        layer = np.zeros((n_steps, len(edges[name]) - 1), dtype=np.int64) if per_layer else None
        with kernel.leave_a_core():  # for the thread reading the next block
            for block in blocks(view, name):
                if layer is not None:  # both in one pass over the block
                    p, q = kernel.histogram_counts_pair(block.values, edges[POOLED], edges[name])
                    layer[block.rows] += q
                else:
                    p = kernel.histogram_counts(block.values, edges[POOLED])
                pooled[block.rows] += p
        if layer is not None:
            yield name, layer  # outside leave_a_core: the caller's kernels get every thread
    yield POOLED, pooled


def gaussian_distance(mu0: Any, sd0: Any, mu1: Any, sd1: Any) -> np.ndarray:
    """Fisher–Rao geodesic distance between N(μ0, σ0²) and N(μ1, σ1²) (broadcasting).

    The metric ds² = (dμ² + 2dσ²)/σ² is √2 times the hyperbolic half-plane in (μ/√2, σ), so
    D = √2·arccosh(1 + ((μ0 − μ1)²/2 + (σ0 − σ1)²)/(2σ0σ1)): a pure shift gives ≈ |Δμ|/σ for
    small shifts, a rescale s gives √2·|ln s| exactly.
    """
    mu0, sd0, mu1, sd1 = (np.asarray(a, dtype=np.float64) for a in (mu0, sd0, mu1, sd1))
    arg = ((mu0 - mu1) ** 2 / 2 + (sd0 - sd1) ** 2) / (2 * sd0 * sd1)
    # arccosh(1 + a) = log1p(a + √(a(a + 2))): accurate for the small a of nearby checkpoints
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(2.0) * np.log1p(arg + np.sqrt(arg * (arg + 2)))


def gaussian_ok(mu: np.ndarray, sd: np.ndarray) -> bool:
    """Whether the Gaussian estimator applies: finite means, finite positive deviations."""
    return bool(np.isfinite(mu).all() and (np.isfinite(sd) & (sd > 0)).all())


def curve_names(sc: Scan, per_layer: bool) -> list[str]:
    return [POOLED, *sc.names] if per_layer else [POOLED]
