"""``relative-fisher``: the Fisher speed of each layer relative to the rest of the network, and its
cumulative relative information length (METHODS.md §3; Sun & Nielsen, "Relative Fisher Information
and Natural Gradient for Learning Large Modular Models", ICML 2017).

Per layer l with stored inputs (``probe/activations/<l>``, N probe samples) and consecutive
checkpoints t_k, t_k+1 (Δt = t_k+1 − t_k, in steps):

    q_l(k) = E_x[δz(x)ᵀ Λ(a(x)) δz(x)],   δz = ΔW x + Δb,   a = W x + b,
    v_l(k) = √q_l(k) / Δt,   L_l(t_k) = Σ_{j<k} √q_l(j),   total_l = L_l(t_T−1),

the RFIM quadratic form ΔW̃ᵀ ḡ_l ΔW̃ (:func:`dynlab.geometry.rfim_quadratic`; Λ by the layer's
output model) with ΔW̃ = W̃_k+1 − W̃_k. ``at="left"`` evaluates ḡ at the left checkpoint: W = W_k
and x the layer's inputs at t_k; ``at="mid"`` takes the mean of the quadratic forms at t_k and at
t_k+1 (W_k+1 and the inputs at t_k+1), the trapezoid rule for ∫ḡ along the step, second order in
Δt where "left" is first order. An interval whose needed inputs are missing gives NaN, and L is
NaN from there on.

A convolution's weight (C_out, C_in, kh, kw) is reshaped to (C_out, C_in·kh·kw) against the stored
per-sample mean over output positions of the unfolded input patches: δz is then exactly the change
of the position-averaged pre-activation, and Λ is evaluated at the position-averaged a (an
approximation for nonlinear outputs: Λ(mean a) ≠ mean Λ(a)). A grouped convolution (weight
(C_out, C_in/g, kh, kw) against patches of all C_in channels) is the block-diagonal full weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Interval, Options, Text, param

if TYPE_CHECKING:
    import xarray as xr

OUTPUTS = ("softmax", "sigmoid", "tanh", "relu", "linear")
#: float32 activation values read at a time (steps × N × H): 64 MB
_READ_VALUES = 1 << 24


@dataclass(frozen=True)
class _Layer:
    name: str
    weight: str
    bias: str | None
    kind: str
    output: str
    source: str  # where the output model came from: probe_layers | parameter


@dataclass(frozen=True)
class RelativeFisher(Analyzer):
    """Per-layer Fisher speed relative to the rest of the network (RFIM), and its path length."""

    name: ClassVar[str] = "relative-fisher"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("per-layer Fisher speed relative to the rest of the network (RFIM "
                                  "of the layer's output given its inputs) and its cumulative length")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("params", "probe/activations")
    backends: ClassVar[tuple[str, ...]] = ("numpy", "numba", "torch")
    min_steps: ClassVar[int] = 2
    outputs: ClassVar[dict[str, Output]] = {
        "speed": Output(("step_mid", "layer"), "1/step",
                        "relative Fisher speed v = √(ΔW̃ᵀ ḡ ΔW̃)/Δt between consecutive checkpoints"),
        "length": Output(("step", "layer"), "1",
                         "relative information length L = Σ v·Δt from the first checkpoint"),
        "total": Output(("layer",), "1", "relative information length over the whole run"),
    }

    output: str = param("auto", Options("auto", *OUTPUTS),
                        "output model of every layer; auto: each layer's from the run's probe_layers")
    at: str = param("left", Options("left", "mid"),
                    "where ḡ is evaluated: left checkpoint, or mid = mean of the forms at both ends")
    noise: float = param(1.0, Interval(float, 0.0, 1e6, "right"),
                         "Gaussian output noise s of the linear and relu output models")
    damping: float = param(1e-6, Interval(float, 0.0, 1e6),
                           "added to the softmax RFIM as damping·I (it is singular)")
    layers: str = param("", Text(), "comma-separated layers to use ('' = every layer with activations)")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        steps = np.asarray(view.steps, dtype=np.int64)
        if len(steps) < 2:
            raise AnalyzerInputError(f"run '{view.name}' has {len(steps)} checkpoint(s); "
                                     f"{self.name} needs at least 2")
        layers, excluded = self._layers(view)
        known = list(view.activation_layers)
        hashes = np.asarray(getattr(view, "activation_hashes",
                                    np.ones((len(steps), len(known)), dtype=np.uint64)))
        squared, samples = [], 0
        for layer in layers:
            present = hashes[:, known.index(layer.name)] != 0
            q, samples = self._quadratics(view, layer, steps, present, backend)
            squared.append(q)
        root = np.sqrt(np.array(squared).reshape(len(layers), len(steps) - 1))
        t = steps.astype(np.float64)
        length = np.concatenate([np.zeros((len(layers), 1)), np.cumsum(root, axis=1)], axis=1)
        return xr.Dataset(
            {"speed": (("step_mid", "layer"), (root / np.diff(t)).T),
             "length": (("step", "layer"), length.T),
             "total": (("layer",), length[:, -1].copy())},
            coords={"step": steps, "step_mid": 0.5 * (t[:-1] + t[1:]),
                    "layer": np.array([la.name for la in layers], dtype=str)},
            attrs={"at": self.at, "noise": self.noise, "damping": self.damping, "samples": samples,
                   "layers": {la.name: {"weight": la.weight, "bias": la.bias, "kind": la.kind,
                                        "output": la.output, "output_from": la.source}
                              for la in layers},
                   "missing": {la.name: int(np.isnan(r).sum()) for la, r in zip(layers, root, strict=True)
                               if np.isnan(r).any()},
                   "excluded": excluded},
        )

    # ------------------------------------------------------------ layers

    def _layers(self, view: Any) -> tuple[list[_Layer], dict[str, str]]:
        """The layers to analyse (model order) and {layer: why not} for described layers left out."""
        read = getattr(view, "read_activations", None)
        known = list(getattr(view, "activation_layers", []) or [])
        if read is None or not known:
            raise AnalyzerInputError(f"run '{view.name}' has no probe activations; {self.name} needs "
                                     "the layers' inputs: store them with dynlab probe --activations "
                                     "(or Recorder.log(..., activations=...))")
        described = dict(getattr(view, "probe_layers", None) or {})
        excluded = {name: "no activations stored" for name in described if name not in known}
        names = known
        if described and self.output == "auto" and not self.layers.strip():
            # activations of a layer the probe no longer describes (left by an earlier probe of
            # another model): its output model is unknown, so it is left out, not an error
            stale = [n for n in known if n not in described]
            excluded.update(dict.fromkeys(stale, "not in probe_layers (an earlier probe's layer?)"))
            names = [n for n in known if n in described]
        if self.layers.strip():
            wanted = list(dict.fromkeys(n.strip() for n in self.layers.split(",") if n.strip()))
            unknown = [n for n in wanted if n not in known]
            if unknown:
                raise AnalyzerInputError(f"run '{view.name}' has no activations of layer "
                                         f"{', '.join(map(repr, unknown))} (layers=…; layers with "
                                         f"activations: {', '.join(known)})")
            names = [n for n in known if n in wanted]
            excluded.update({n: "not in layers=" for n in known if n not in wanted})
        tensors = {t.name: t for t in view.tensors}
        return [self._describe(view, n, described.get(n), tensors) for n in names], excluded

    def _describe(self, view: Any, name: str, desc: dict | None, tensors: dict) -> _Layer:
        """Weight, bias, kind and output model of layer ``name``: from ``probe_layers``, else the
        torch names ``<layer>.weight`` / ``<layer>.bias`` and the ``output`` parameter."""
        if desc:
            weight, bias, kind = desc["weight"], desc.get("bias"), desc.get("kind", "linear")
        else:
            weight = f"{name}.weight"
            bias = f"{name}.bias" if f"{name}.bias" in tensors else None
            kind = "conv" if weight in tensors and len(tensors[weight].shape) > 2 else "linear"
        if weight not in tensors:
            how = "named by its probe_layers" if desc else "by the torch convention <layer>.weight"
            raise AnalyzerInputError(f"run '{view.name}': the weight '{weight}' of layer '{name}' "
                                     f"({how}) is not in the run")
        if bias is not None and bias not in tensors:
            raise AnalyzerInputError(f"run '{view.name}': the bias '{bias}' of layer '{name}' is not "
                                     "in the run")
        if self.output != "auto":
            output, source = self.output, "parameter"
        elif desc and desc.get("output") in OUTPUTS:
            output, source = desc["output"], "probe_layers"
        else:
            raise AnalyzerInputError(
                f"run '{view.name}': the output model of layer '{name}' is not known (no "
                f"probe_layers); give it with -p {self.name}.output=softmax|sigmoid|tanh|relu|linear")
        return _Layer(name, weight, bias, kind, output, source)

    # ------------------------------------------------------------ the numbers

    def _quadratics(self, view: Any, layer: _Layer, steps: np.ndarray, present: np.ndarray,
                    backend: str) -> tuple[np.ndarray, int]:
        """q (T−1,) of one layer, reading a block of checkpoints at a time (the last checkpoint of
        a block is the first of the next); NaN where the needed inputs are missing."""
        from dynlab import geometry

        shape = tuple(next(t for t in view.tensors if t.name == layer.weight).shape)
        first = view.read_activations(layer.name, steps[np.flatnonzero(present)[:1]])
        n, h = first.shape[1], first.shape[2]
        h_out = shape[0] if shape else 0
        per_group = int(np.prod(shape[1:])) if len(shape) >= 2 else 0
        groups = h // per_group if len(shape) > 2 and per_group and h % per_group == 0 else 1
        if groups > 1 and h_out % groups:
            groups = 1
        if len(shape) < 2 or per_group * groups != h:
            raise AnalyzerInputError(
                f"run '{view.name}': layer '{layer.name}' has inputs of {h} features, but its weight "
                f"'{layer.weight}' has shape {shape}; a {layer.kind} layer needs (out, {h})"
                + (" or (C_out, C_in/groups, kh, kw) with C_in·kh·kw = H" if len(shape) > 2 else ""))
        if layer.bias is not None:
            bias_shape = tuple(next(t for t in view.tensors if t.name == layer.bias).shape)
            if bias_shape != (h_out,):
                raise AnalyzerInputError(f"run '{view.name}': the bias '{layer.bias}' of layer "
                                         f"'{layer.name}' has shape {bias_shape}, not ({h_out},)")
        device = "cuda" if backend == "torch" and geometry.cuda_available() else None
        kw = {"output": layer.output, "noise": self.noise, "damping": self.damping,
              "backend": backend, "device": device}
        left = np.full(len(steps) - 1, np.nan)
        right = np.full(len(steps) - 1, np.nan)
        block = max(1, _READ_VALUES // max(1, n * h))
        for i0 in range(0, len(steps) - 1, block):
            rows = np.arange(i0, min(i0 + block, len(steps) - 1) + 1)
            w = view.read(layer.weight, steps[rows]).astype(np.float64).reshape(len(rows), h_out,
                                                                                 per_group)
            if groups > 1:
                w = _ungrouped(w, groups)
            b = None if layer.bias is None else view.read(layer.bias, steps[rows]).astype(np.float64)
            dw = np.diff(w, axis=0)
            db = None if b is None else np.diff(b, axis=0)
            needed = rows[:-1] if self.at == "left" else rows  # "left" never reads the last end
            have = needed[present[needed]]
            if not len(have):
                continue
            x = view.read_activations(layer.name, steps[have])
            at = {int(r): i for i, r in enumerate(have)}
            for side, out, shift in (("left", left, 0), ("right", right, 1)):
                if side == "right" and self.at == "left":
                    continue
                k = np.array([r - i0 for r in rows[:-1] if r + shift in at], dtype=np.int64)
                if not len(k):
                    continue
                xs = x[[at[int(i0 + j + shift)] for j in k]]
                out[i0 + k] = geometry.rfim_quadratic(
                    dw[k], xs, W=w[k + shift], db=None if db is None else db[k],
                    b=None if b is None else b[k + shift], **kw)
        q = left if self.at == "left" else 0.5 * (left + right)
        return q, int(n)


def _ungrouped(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weights (R, C_out, C_in/g·kh·kw) as the equivalent full weights
    (R, C_out, C_in·kh·kw): output channel group i sees input channel group i only (torch's
    contiguous groups), zero elsewhere — block-diagonal against the stored patches of all C_in."""
    rows, h_out, per = w.shape
    full = np.zeros((rows, h_out, groups * per))
    out = h_out // groups
    for i in range(groups):
        full[:, i * out:(i + 1) * out, i * per:(i + 1) * per] = w[:, i * out:(i + 1) * out]
    return full
