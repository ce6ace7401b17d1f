"""``network``: node strengths and layer fluctuation of the neuron graph over training.

METHODS.md §5; La Malfa et al., arXiv 2110.02628. The numbers come from :mod:`dynlab.network`;
this module infers the layer structure from the run's tensors, reads the run tensor by tensor in
bounded chunks of checkpoints, and summarises each layer's strength distribution per step:

    s_i = in-strength + out-strength (signed; |W| with absolute=true),   Y_l = std_{i∈l} s_i,
    D_l(t) = Σ_b (p_t,b − p_0,b) · log(p_t,b / p_0,b)        symmetrised KL to the first checkpoint,

with p_t the histogram of layer l's strengths at step t on edges common to all steps of that layer
(``bins`` equal bins over the layer's range over the run) and ``pseudocount`` added to every bin
so that empty bins keep D finite.

Layout: layers have different sizes, so ``strength`` is (step, layer, neuron) padded with NaN
beyond each layer's size (coordinate ``size`` on ``layer``); conv layers' neurons are their
(channel, *spatial) units flattened C-major. Memory is that array (steps × layers × the largest
layer × 8 bytes) plus one chunk of one tensor (≤ ``CHUNK_BYTES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Boolean, Interval, ParameterError, Text, param

if TYPE_CHECKING:
    import xarray as xr

#: bytes of one tensor read at once (a chunk of checkpoints)
CHUNK_BYTES = 64 * 2**20
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _size(text: str) -> tuple[int, ...] | None:
    text = text.strip()
    if not text:
        return None
    values = tuple(int(v) for v in text.lower().split("x"))
    if any(v < 1 for v in values):
        raise ValueError("sizes must be ≥ 1")
    return values


def auto_bins(n: int) -> int:
    """Rice rule ⌈2·n^(1/3)⌉ for n strengths, kept in [4, 100]."""
    return int(min(100, max(4, np.ceil(2 * n ** (1 / 3)))))


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, population std, skewness m3/m2^1.5 and excess kurtosis m4/m2² − 3 along the last axis
    (scipy.stats' biased estimators); skewness and kurtosis are NaN where the std is 0."""
    mean = x.mean(axis=-1)
    d = x - mean[..., None]
    m2 = (d**2).mean(axis=-1)
    m3 = (d**3).mean(axis=-1)
    m4 = (d**4).mean(axis=-1)
    ok = m2 > 1e-28 * np.maximum(mean**2, 1e-300)
    safe = np.where(ok, m2, 1.0)
    return (mean, np.sqrt(m2), np.where(ok, m3 / safe**1.5, np.nan),
            np.where(ok, m4 / safe**2 - 3.0, np.nan))


def divergence_from_first(x: np.ndarray, bins: int, pseudocount: float) -> np.ndarray:
    """Symmetrised KL of each row's histogram to the first row's: ``x`` (T, n) → (T,); edges are
    ``bins`` equal bins over the range of all of ``x`` (a constant layer: one bin, D = 0).

    Rows with a non-finite strength (a diverged checkpoint) get NaN and take no part in the edges;
    every row is NaN when the first one is not finite."""
    out = np.full(len(x), np.nan)
    good = np.isfinite(x).all(axis=1)
    if not good[0]:
        return out
    x = x[good]
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        out[good] = 0.0
        return out
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    flat = (idx + bins * np.arange(len(x))[:, None]).ravel()
    counts = np.bincount(flat, minlength=len(x) * bins).reshape(len(x), bins).astype(np.float64)
    p = (counts + pseudocount) / (counts.sum(axis=1, keepdims=True) + bins * pseudocount)
    out[good] = ((p - p[0]) * (np.log(p) - np.log(p[0]))).sum(axis=1)
    return out


@dataclass(frozen=True)
class Network(Analyzer):
    """Node strength of every neuron, layer fluctuation and the strength distribution per layer."""

    name: ClassVar[str] = "network"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = ("node strengths of the neuron graph, layer fluctuation and the "
                                  "change of each layer's strength distribution (complex networks)")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params",)
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    min_steps: ClassVar[int] = 1
    outputs: ClassVar[dict[str, Output]] = {
        "strength": Output(("step", "layer", "neuron"), "weight",
                           "node strength s = in + out strength of each neuron; NaN beyond the "
                           "layer's size"),
        "fluctuation": Output(("step", "layer"), "weight",
                              "layer fluctuation Y: population std of the layer's strengths"),
        "mean": Output(("step", "layer"), "weight", "mean strength of the layer"),
        "skewness": Output(("step", "layer"), "1", "skewness of the layer's strengths (m3/m2^1.5)"),
        "kurtosis": Output(("step", "layer"), "1", "excess kurtosis of the layer's strengths"),
        "quantile": Output(("step", "layer", "q"), "weight", "quantiles of the layer's strengths"),
        "divergence": Output(("step", "layer"), "nat",
                             "symmetrised KL of the layer's strength histogram to the first "
                             "checkpoint's"),
    }

    layers: str = param("", Text(), "explicit layer list: weight[:stride=2:padding=1:size=HxW:"
                                     "groups=g:bias=name],… ('' = infer from names and shapes)")
    input_size: str = param("", Text(), "spatial size of the first convolution's input, e.g. 32x32")
    stride: int = param(1, Interval(int, 1, None), "stride of every convolution (layers= overrides)")
    padding: int = param(0, Interval(int, 0, None), "zero padding of every convolution")
    absolute: bool = param(False, Boolean(), "strengths of |W| and |b| instead of signed (the paper)")
    endpoint_offset: bool = param(False, Boolean(), "add 1 to input and output layer strengths "
                                                    "(the authors' code)")
    bins: int = param(0, Interval(int, 0, 10_000), "histogram bins of the divergence; 0 = "
                                                   "⌈2·n^(1/3)⌉ in [4, 100] for n neurons")
    pseudocount: float = param(0.5, Interval(float, 0.0, None, closed="neither"),
                               "count added to every histogram bin of the divergence")

    def __post_init__(self) -> None:
        super().__post_init__()
        from dynlab.network import NetworkStructureError, parse_layers

        try:
            _size(self.input_size)
        except ValueError:
            raise ParameterError(f"{self.name}: parameter 'input_size' must be sizes joined by 'x' "
                                 f"(e.g. 32x32), got {self.input_size!r}") from None
        if self.layers.strip():
            try:
                parse_layers(self.layers)
            except NetworkStructureError as exc:
                raise ParameterError(f"{self.name}: parameter 'layers': {exc}") from None

    def structure(self, view: Any) -> Any:
        """The :class:`dynlab.network.Structure` this analyzer reads from ``view``'s tensors."""
        from dynlab.network import NetworkStructureError, infer_layers

        try:
            return infer_layers(view.tensors, input_size=_size(self.input_size), stride=self.stride,
                                padding=self.padding, layers=self.layers or None)
        except NetworkStructureError as exc:
            raise AnalyzerInputError(f"run '{view.name}': {exc}") from None

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.network import structure_strengths

        steps = np.asarray(view.steps, dtype=np.int64)
        if len(steps) == 0:
            raise AnalyzerInputError(f"run '{view.name}' has no checkpoints")
        st = self.structure(view)
        sizes = [lay.size for lay in st.layers]
        strength = np.full((len(steps), len(sizes), max(sizes)), np.nan)
        shapes = {t.name: t.shape for t in view.tensors}
        largest = max(int(np.prod(shapes[b.weight])) for b in st.blocks) * 8
        chunk = max(1, CHUNK_BYTES // max(largest, 1))
        for start in range(0, len(steps), chunk):
            rows = steps[start:start + chunk]
            per_layer = structure_strengths(st, lambda n, rows=rows: view.read(n, rows),
                                            absolute=self.absolute,
                                            endpoint_offset=self.endpoint_offset)
            for j, s in enumerate(per_layer):
                strength[start:start + len(rows), j, :sizes[j]] = s.strength.reshape(len(rows), -1)
        n_layers = len(sizes)
        fluct, mean, skew, kurt, div = (np.empty((len(steps), n_layers)) for _ in range(5))
        quant = np.empty((len(steps), n_layers, len(QUANTILES)))
        for j, n in enumerate(sizes):
            x = strength[:, j, :n]
            mean[:, j], fluct[:, j], skew[:, j], kurt[:, j] = moments(x)
            quant[:, j] = np.quantile(x, QUANTILES, axis=1).T
            div[:, j] = divergence_from_first(x, self.bins or auto_bins(n), self.pseudocount)
        sl = ("step", "layer")
        return xr.Dataset(
            {"strength": (("step", "layer", "neuron"), strength), "fluctuation": (sl, fluct),
             "mean": (sl, mean), "skewness": (sl, skew), "kurtosis": (sl, kurt),
             "quantile": (("step", "layer", "q"), quant), "divergence": (sl, div)},
            coords={"step": steps, "layer": np.array([lay.name for lay in st.layers], dtype=str),
                    "size": ("layer", np.array(sizes, dtype=np.int64)),
                    "neuron": np.arange(max(sizes), dtype=np.int64),
                    "q": np.array(QUANTILES)},
            attrs={"variant": "absolute" if self.absolute else "signed",
                   "structure": st.describe(),
                   "bins": {lay.name: self.bins or auto_bins(n) for lay, n in zip(st.layers, sizes,
                                                                                   strict=True)}},
        )
