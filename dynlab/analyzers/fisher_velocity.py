"""``fisher-velocity``: information rate Γ, information length L and geodesic distance from the
first checkpoint of the distribution of parameter values, pooled and per layer.

METHODS.md §1; Thiruthummal, Kim, Shelyag, arXiv 2406.05295. With the histogram estimator, on
fixed global edges (see :mod:`dynlab.analyzers._fisher` for the two streaming passes):

    dL_k = 2·arccos(Σ_b √(p_k,b p_k+1,b)),   Γ(t_k+½) = dL_k/(t_k+1 − t_k),   L(t_k) = Σ_{j<k} dL_j,
    D(t_k) = 2·arccos(Σ_b √(p_0,b p_k,b)).

By default the increments are taken with an adaptive Δt: between *anchor* checkpoints at least
θ = max(adaptive, 3·√(2(B−1)/P)) apart, so histogram noise does not add up over many small steps;
L is exact at the anchors and linear in t between them, and Γ is constant between anchors
(docs/fisher-accuracy.md: within 2 % on coherent moves from 10⁵ values, ≈ one noise floor on
pure noise). ``adaptive=0`` takes every consecutive pair.

With the Gaussian estimator, Γ² = (μ̇² + 2σ̇²)/σ² from the mean and standard deviation of each
step, and D the closed-form Fisher–Rao distance between Gaussians. With the kde estimator, the
densities are binned Gaussian kernel density estimates on a fixed fine grid (one bandwidth for
the whole run, Silverman's rule times ``bandwidth``; :func:`dynlab.analyzers._fisher.kde_pdfs`),
then the formulas above: for a Gaussian sample the estimate is N(μ, σ² + h²), so a shift gives
L = Δμ/√(σ² + h²) (−0.4 % at 2·10⁵ values).

The subsampling check: L over every 2nd snapshot divided by L over all of them, up to the same
last snapshot (attrs ``subsample_ratio``, per curve). A smooth path gives ≈ 1; snapshot noise
(sampling, quantisation) adds a floor to every increment, so the ratio drops towards 1/√2 or
below, and :class:`UnreliableLengthWarning` is raised when |1 − ratio| > ``SUBSAMPLE_TOLERANCE``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers import _fisher as fs
from dynlab.analyzers._contract import Output
from dynlab.analyzers._params import Interval, param
from dynlab.errors import DynlabWarning

if TYPE_CHECKING:
    from collections.abc import Iterable

    import xarray as xr

#: |1 − L(every 2nd snapshot)/L(all)| above which L is reported as unreliable
SUBSAMPLE_TOLERANCE = 0.10


class UnreliableLengthWarning(DynlabWarning):
    """Information length on every 2nd snapshot differs from L on all snapshots by more than
    10 %: L is measuring snapshot noise (histogram quantisation, sampling), not movement."""


@dataclass(frozen=True)
class FisherVelocity(fs.DistributionParams):
    """Information rate, information length and distance from init of the parameter distribution."""

    name: ClassVar[str] = "fisher-velocity"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("information rate, information length and geodesic distance from "
                                  "the first checkpoint of the parameter distribution (Fisher metric)")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params",)
    backends: ClassVar[tuple[str, ...]] = ("numpy", "numba", "torch")
    min_steps: ClassVar[int] = 2
    outputs: ClassVar[dict[str, Output]] = {
        "rate": Output(("step_mid", "layer"), "1/step",
                       "information rate Γ between consecutive checkpoints, at their midpoint"),
        "length": Output(("step", "layer"), "1",
                         "information length L: Fisher–Rao path length from the first checkpoint"),
        "distance": Output(("step", "layer"), "1",
                           "Fisher–Rao geodesic distance from the first checkpoint"),
    }

    adaptive: float = param(0.2, Interval(float, 0.0, 3.14),
                            "adaptive Δt: measure L between checkpoints at least this far apart "
                            "(Fisher–Rao; and ≥ 3·√(2(B−1)/P)); 0 = between every pair")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.kernels import fisher as g

        names, excluded = fs.choose_layers(view, self.subset, self.name)
        steps = np.asarray(view.steps, dtype=np.int64)
        t = steps.astype(np.float64)
        sc = fs.scan(view, names, excluded, self.clip, backend)
        curves = fs.curve_names(sc, self.per_layer)
        attrs: dict[str, Any] = {"estimator": self.estimator, "subset": self.subset,
                                 "range": {c: [sc.lo[c], sc.hi[c]] for c in curves},
                                 "excluded": excluded}
        if self.estimator == "histogram":
            edges = fs.edges_for(sc, self.bins, self.max_bins)
            counted = ((c, g.probabilities(n), n.shape[1])
                       for c, n in fs.count(view, names, edges, backend, self.per_layer))
            rate, length, dist, half, anchors = _density_curves(counted, sc, curves, t,
                                                                self.adaptive)
            attrs["bins"] = {c: len(edges[c]) - 1 for c in curves}
            attrs["adaptive"] = anchors
        elif self.estimator == "kde":
            grids = fs.kde_grids(sc, self.bandwidth)
            counted = ((c, fs.kde_pdfs(n, grids[c]), grids[c].effective_bins)
                       for c, n in fs.count(view, names, {c: gr.edges for c, gr in grids.items()},
                                            backend, self.per_layer))
            rate, length, dist, half, anchors = _density_curves(counted, sc, curves, t,
                                                                self.adaptive)
            attrs["kde"] = {c: {"h": grids[c].h, "grid": len(grids[c].edges) - 1} for c in curves}
            attrs["adaptive"] = anchors
        else:
            rate, length, dist, half = _gaussian_curves(sc, curves, t)
        attrs["subsample_ratio"] = _subsample_ratios(length, half, curves, view.name)
        return xr.Dataset(
            {"rate": (("step_mid", "layer"), rate.T), "length": (("step", "layer"), length.T),
             "distance": (("step", "layer"), dist.T)},
            coords={"step": steps, "step_mid": 0.5 * (t[:-1] + t[1:]),
                    "layer": np.array(curves, dtype=str)},
            attrs=attrs,
        )


def _density_curves(counted: Iterable[tuple[str, np.ndarray, int]], sc: fs.Scan,
                    curves: list[str], t: np.ndarray, adaptive: float):
    """Per curve, from its densities on a fixed grid (T, B) and their number of independent
    pieces B (bins; for the kde the range over 2h), ``(curve, densities, B)`` in any order, each
    reduced before the next is taken (so only one curve's densities are held): Γ, L and D on
    every checkpoint, L over every 2nd checkpoint, and the adaptive step's threshold and anchor
    count; rows in the order of ``curves``. θ = max(adaptive, 3·√(2(B−1)/P)): a step must exceed
    three two-sample noise floors (docs/fisher-accuracy.md)."""
    from dynlab.kernels import fisher as g

    done: dict[str, tuple] = {}
    for c, p, n_bins in counted:
        n_values = max(int(sc.size[c]), 1)
        theta = max(adaptive, 3 * np.sqrt(2 * (n_bins - 1) / n_values)) if adaptive > 0 else 0.0
        curve, kept = g.adaptive_length(p, t, theta)
        done[c] = (np.diff(curve) / np.diff(t), curve, g.distance_from_initial(p),
                   g.adaptive_length(p[::2], t[::2], theta)[0][-1],
                   {"theta": float(theta), "anchors": len(kept)})
    rate, length, dist, half, anchors = zip(*(done[c] for c in curves), strict=True)
    return (np.array(rate), np.array(length), np.array(dist), np.array(half),
            dict(zip(curves, anchors, strict=True)))


def _gaussian_curves(sc: fs.Scan, curves: list[str], t: np.ndarray):
    from dynlab.kernels import fisher as g

    n = len(t)
    rate, length, dist, half = (np.full((len(curves), m), np.nan) for m in (n - 1, n, n, 1))
    for i, c in enumerate(curves):
        mu, sd = sc.mean[c], sc.std[c]
        if not fs.gaussian_ok(mu, sd):  # a constant or non-finite tensor: no Gaussian, NaN curves
            continue
        rate[i] = g.gaussian_rate(mu, sd, t)[0]
        length[i] = g.gaussian_length(mu, sd)
        dist[i] = fs.gaussian_distance(mu[0], sd[0], mu, sd)
        half[i] = g.gaussian_length(mu[::2], sd[::2])[-1]
    return rate, length, dist, half[:, 0]


def _subsample_ratios(length: np.ndarray, half: np.ndarray, curves: list[str], run: str
                      ) -> dict[str, float]:
    """{curve: L(every 2nd)/L(all) up to the same last snapshot}; empty with < 3 checkpoints (no
    subsample to compare); curves with a non-finite L are left out. Warns on disagreement."""
    n = length.shape[1]
    if n < 3:
        return {}
    last = 2 * ((n - 1) // 2)  # the last snapshot of the subsample
    ratios: dict[str, float] = {}
    for c, full, sub in zip(curves, length[:, last], half, strict=True):
        if np.isfinite(full) and np.isfinite(sub):
            ratios[c] = 1.0 if full == 0 else float(sub / full)
    bad = {c: r for c, r in ratios.items() if abs(1 - r) > SUBSAMPLE_TOLERANCE}
    if bad:
        shown = ", ".join(f"{c}: {r:.2f}" for c, r in list(bad.items())[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        warnings.warn(
            f"fisher-velocity on run '{run}': information length on every 2nd checkpoint differs "
            f"from L on all by more than {SUBSAMPLE_TOLERANCE:.0%} ({shown}{more}); L is measuring "
            "snapshot noise, not movement: use fewer bins, fewer checkpoints, or estimator=gaussian",
            UnreliableLengthWarning, stacklevel=3)
    return ratios
