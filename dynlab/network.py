"""Complex-network measures of a neural network: node strength and layer fluctuation (METHODS.md §5).

Source: La Malfa, La Malfa, Nicosia, Latora, "Characterizing Learning Dynamics of Deep Neural
Networks via Complex Networks" (ICTAI 2021, arXiv 2110.02628). The network is a layered, directed,
weighted graph: neurons are nodes, each (signed) weight a link from an input unit to an output
unit, a bias sits on the node that receives it. With torch's layout W_l (n_{l+1}, n_l)::

    input layer:   s_i = Σ_j W_0[j, i]                                      (out-strength)
    hidden layer:  s_i = Σ_j W_l[j, i] + Σ_j W_{l−1}[i, j] + b_{l−1}[i]      (out + in)
    output layer:  s_i = Σ_j W_{K−1}[i, j] + b_{K−1}[i]                     (in-strength)
    fluctuation:   Y_l = std_{i ∈ l}(s_i)                                   (population std)

``absolute=True`` uses |W| and |b| (a labelled variant; the paper's strengths are signed);
``endpoint_offset=True`` adds the constant +1 the authors' code puts on the input and output
layers. Convolutions: nodes are channel × position and a kernel weight links every (input pixel,
output pixel) pair one placement joins, so the out-strength of an input pixel is a transposed
convolution of ones and the in-strength of an output pixel a convolution of ones (plus its bias);
zero padding adds no nodes and no links. See :mod:`dynlab.kernels.network` for how this is
computed without looping over pixels.

The layer structure comes from tensor names, shapes and order alone (:func:`infer_layers`), or
from an explicit list (:func:`parse_layers`); a store does not record strides, paddings, pooling or
skip connections, so those are parameters and consecutive blocks are joined only when their unit
counts agree (see docs/network.md for what is approximate).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from dynlab.errors import DynlabError
from dynlab.kernels import network as _k

__all__ = ["Block", "LayerSpec", "NetworkStructureError", "NodeLayer", "Strengths", "Structure",
           "block_strengths", "infer_layers", "is_norm_layer", "layer_fluctuation", "node_strength",
           "parse_layers", "structure_strengths", "to_networkx"]


class NetworkStructureError(DynlabError, ValueError):
    """The tensors do not form a network this module can read as a graph of neurons."""


#: a dotted name component naming a normalisation layer (as in the weight-change analyzer)
_NORM_COMPONENT = re.compile(r".*norm.*|(bn|ln)(\d+|_\w*)?", re.IGNORECASE)


def is_norm_layer(name: str) -> bool:
    """Whether a tensor name belongs to a normalisation layer (``bn1``, ``norm``, ``LayerNorm``…)."""
    return any(_NORM_COMPONENT.fullmatch(part) for part in name.split("."))


# ---------------------------------------------------------------------------- structure


@dataclass(frozen=True)
class LayerSpec:
    """One entry of an explicit layer list: a weight tensor and its convolution settings
    (``None``: the default, or what is inferred)."""

    weight: str
    bias: str | None = None  # a tensor name, "none", or None (= "<prefix>.bias" when it exists)
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    groups: int | None = None
    size: tuple[int, ...] | None = None  # spatial size of the block's input


@dataclass(frozen=True)
class Block:
    """One connection tensor: a bipartite block of links from ``in_shape`` units to ``out_shape``
    units. Dense: units (n,); conv: (channels, *spatial)."""

    weight: str
    bias: str | None
    kind: str  # "dense" | "conv"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    kernel: tuple[int, ...] = ()

    @property
    def prefix(self) -> str:
        return self.weight[: -len(".weight")] if self.weight.endswith(".weight") else self.weight


@dataclass(frozen=True)
class NodeLayer:
    """A layer of nodes: the outputs of block ``into`` and/or the inputs of block ``out_of``."""

    name: str
    shape: tuple[int, ...]
    into: int | None  # the block whose links end here (in-strength), None for an input layer
    out_of: int | None  # the block whose links start here (out-strength), None for an output layer

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Structure:
    """Blocks in order, the node layers they join, the tensors left out (with why), and notes on
    what was inferred or assumed."""

    blocks: tuple[Block, ...]
    layers: tuple[NodeLayer, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def chained(self) -> bool:
        """Whether every block feeds the next (one chain, no break)."""
        return all(lay.into is not None or i == 0 for i, lay in enumerate(self.layers))

    def describe(self) -> dict[str, Any]:
        """A JSON description of what was inferred (the analyzer stores it in its attrs)."""
        blocks = []
        for b in self.blocks:
            entry: dict[str, Any] = {"weight": b.weight, "bias": b.bias, "kind": b.kind,
                                     "in": list(b.in_shape), "out": list(b.out_shape)}
            if b.kind == "conv":
                entry.update(stride=list(b.stride), padding=list(b.padding),
                             dilation=list(b.dilation), groups=b.groups, kernel=list(b.kernel))
            blocks.append(entry)
        return {"blocks": blocks,
                "layers": [{"name": n.name, "shape": list(n.shape)} for n in self.layers],
                "skipped": dict(self.skipped), "notes": list(self.notes)}


def _ints(text: str, key: str, sep: str = "x") -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(sep))
    except ValueError:
        raise NetworkStructureError(f"layer option {key}={text!r} must be integers joined by "
                                    f"'{sep}'") from None
    if any(v < 0 for v in values):
        raise NetworkStructureError(f"layer option {key}={text!r} must not be negative")
    return values


def parse_layers(text: str) -> list[LayerSpec]:
    """Parse an explicit layer list: comma-separated weight names, each optionally followed by
    ``:key=value`` options — ``stride``, ``padding``, ``dilation`` (``2`` or ``2x1``), ``groups``,
    ``size`` (the block's input spatial size, ``32x32``), ``bias`` (a tensor name or ``none``).

    ``"conv1.weight:size=32x32,conv2.weight:stride=2:padding=1,fc.weight"``
    """
    specs = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, *options = entry.split(":")
        kwargs: dict[str, Any] = {}
        for opt in options:
            key, eq, value = opt.partition("=")
            if not eq or key not in ("stride", "padding", "dilation", "groups", "size", "bias"):
                raise NetworkStructureError(
                    f"layer option {opt!r} of {name!r}: expected stride|padding|dilation|groups|size|"
                    "bias=value")
            if key == "bias":
                kwargs[key] = value
            elif key == "groups":
                (kwargs[key],) = _ints(value, key) if value.isdigit() else (None,)
                if not kwargs[key]:
                    raise NetworkStructureError(f"layer option groups={value!r} must be a positive int")
            else:
                kwargs[key] = _ints(value, key)
        specs.append(LayerSpec(name.strip(), **kwargs))
    if not specs:
        raise NetworkStructureError("the layer list is empty")
    return specs


def _tensor_list(tensors: Iterable[Any]) -> list[tuple[str, tuple[int, ...], str]]:
    out = []
    for t in tensors:
        if isinstance(t, tuple):
            name, shape, *rest = t
            kind = np.dtype(rest[0]).kind if rest else "f"
        else:
            name, shape, kind = t.name, t.shape, np.dtype(getattr(t, "dtype", "float64")).kind
        out.append((str(name), tuple(int(s) for s in shape), kind))
    return out


def _per_dim(value: int | Sequence[int] | None, d: int, what: str, weight: str) -> tuple[int, ...]:
    v = (value,) if isinstance(value, (int, np.integer)) else tuple(value or ())
    if len(v) == 1:
        v = v * d
    if len(v) != d:
        raise NetworkStructureError(f"{weight}: {what} has {len(v)} values for a {d}-D convolution")
    return tuple(int(x) for x in v)


def infer_layers(tensors: Iterable[Any], *, input_size: Sequence[int] | None = None,
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1,
                 layers: Sequence[LayerSpec] | str | None = None) -> Structure:
    """The chain of connection blocks of a network, from its tensors' names, shapes and order.

    ``tensors``: objects with ``name``, ``shape`` (and ``dtype``) — a RunView's ``tensors`` — or
    ``(name, shape[, dtype])`` tuples, in source order. Rules (automatic mode):

    - a floating tensor with 2 dims is a Linear weight (out, in); with 3–5 dims a Conv1d/2d/3d
      weight (out, in/groups, *kernel); norm layers (:func:`is_norm_layer`) are skipped;
    - a 1-D tensor right after its weight, named ``<prefix>.bias`` with ``out`` entries, is its bias;
      anything else is skipped (the reason is recorded);
    - a block is joined to the previous one when the previous block's output units are its input
      units: equal sizes (Linear after Linear), equal channels and spatial size (Conv after Conv;
      ``groups`` inferred when the kernel reads a divisor of the channels), or a flatten (Linear
      after Conv with ``in = C·H·W``, C-major as ``torch.flatten``). Otherwise the chain breaks: the
      earlier block's outputs become an output layer and the later block's inputs an input layer,
      named ``<prefix>.in`` (pooling, global averaging, skip connections and reshapes look like this).

    Convolutions need the spatial size of their input: ``input_size`` for the first, then the
    previous convolution's output size; ``stride``/``padding``/``dilation`` apply to every conv
    unless ``layers`` says otherwise. ``layers`` (specs or :func:`parse_layers` text) replaces the
    automatic choice with the listed weights, in that order, with per-block settings.
    """
    listed = _tensor_list(tensors)
    by_name = {n: (s, k) for n, s, k in listed}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    chosen: list[LayerSpec] = []
    if isinstance(layers, str):
        layers = parse_layers(layers) if layers.strip() else None
    if layers:
        for spec in layers:
            if spec.weight not in by_name:
                raise NetworkStructureError(f"no tensor {spec.weight!r} (layers=…)")
            bias = spec.bias
            if bias is None:
                guess = spec.weight.removesuffix(".weight") + ".bias"
                fits = guess in by_name and by_name[guess][0] == by_name[spec.weight][0][:1]
                bias = guess if fits else "none"
            elif bias != "none" and bias not in by_name:
                raise NetworkStructureError(f"no bias tensor {bias!r} for {spec.weight!r} (layers=…)")
            chosen.append(replace(spec, bias=bias))
        used = {s.weight for s in chosen} | {s.bias for s in chosen}
        skipped = {n: "not in layers=" for n, _, _ in listed if n not in used}
        notes.append("layers given explicitly")
    else:
        for name, shape, kind in listed:
            if kind not in "fc":
                skipped[name] = "not floating point"
            elif is_norm_layer(name):
                skipped[name] = "normalisation layer (not part of the neuron graph)"
            elif 2 <= len(shape) <= 5:
                chosen.append(LayerSpec(name, bias="none"))
            elif (len(shape) == 1 and chosen and chosen[-1].bias == "none"
                  and name == chosen[-1].weight.removesuffix(".weight") + ".bias"
                  and shape[0] == by_name[chosen[-1].weight][0][0]):
                chosen[-1] = replace(chosen[-1], bias=name)
            else:
                skipped[name] = f"{len(shape)}-D tensor that is not the bias of the preceding weight"
    if not chosen:
        raise NetworkStructureError("no weight tensor (2-D Linear or 3–5-D Conv) to build a network from")
    return _chain(chosen, by_name, input_size, stride, padding, dilation, skipped, notes)


def _chain(specs: list[LayerSpec], by_name: Mapping[str, tuple[tuple[int, ...], str]],
           input_size: Sequence[int] | None, stride: Any, padding: Any, dilation: Any,
           skipped: dict[str, str], notes: list[str]) -> Structure:
    blocks: list[Block] = []
    layers: list[NodeLayer] = []
    prev: Block | None = None
    for i, spec in enumerate(specs):
        shape, kind = by_name[spec.weight]
        if kind not in "fc":
            raise NetworkStructureError(f"{spec.weight} is not floating point")
        if not 2 <= len(shape) <= 5:
            raise NetworkStructureError(f"{spec.weight} has shape {shape}: a weight must be Linear "
                                        "(out, in) or Conv (out, in/groups, *kernel)")
        bias = None if spec.bias in (None, "none") else spec.bias
        if bias is not None and by_name[bias][0] != (shape[0],):
            raise NetworkStructureError(f"bias {bias} has shape {by_name[bias][0]}, expected ({shape[0]},)")
        if len(shape) == 2:
            block, joined = _dense(spec, shape, bias, prev, notes)
        else:
            block, joined = _conv(spec, shape, bias, prev, i, input_size, stride, padding, dilation,
                                  notes)
        if prev is None:
            layers.append(NodeLayer("input", block.in_shape, None, i))
        elif joined:
            last = layers[-1]
            layers[-1] = NodeLayer(last.name, last.shape, last.into, i)
        else:
            notes.append(f"chain breaks before {spec.weight}: {prev.weight} gives {prev.out_shape} "
                         f"units, {spec.weight} reads {block.in_shape}")
            layers.append(NodeLayer(f"{block.prefix}.in", block.in_shape, None, i))
        layers.append(NodeLayer(block.prefix, block.out_shape, i, None))
        blocks.append(block)
        prev = block
    names = [n.name for n in layers]
    if len(set(names)) != len(names):  # prefixes clash: fall back to numbered names
        layers = [replace(n, name=f"{j}:{n.name}") for j, n in enumerate(layers)]
    return Structure(tuple(blocks), tuple(layers), skipped, tuple(notes))


def _dense(spec: LayerSpec, shape: tuple[int, ...], bias: str | None, prev: Block | None,
           notes: list[str]) -> tuple[Block, bool]:
    out, n_in = shape
    joined = prev is not None and math.prod(prev.out_shape) == n_in
    in_shape = prev.out_shape if joined else (n_in,)
    if joined and len(in_shape) > 1:
        notes.append(f"{spec.weight} reads the flattened output {in_shape} of {prev.weight}")
    return Block(spec.weight, bias, "dense", in_shape, (out,)), joined


def _conv(spec: LayerSpec, shape: tuple[int, ...], bias: str | None, prev: Block | None, i: int,
          input_size: Sequence[int] | None, stride: Any, padding: Any, dilation: Any,
          notes: list[str]) -> tuple[Block, bool]:
    out_ch, in_per, *kernel = shape
    d = len(kernel)
    prev_conv = prev is not None and prev.kind == "conv" and len(prev.out_shape) == d + 1
    groups = spec.groups
    if groups is None:
        groups = 1
        if prev_conv and prev.out_shape[0] != in_per and prev.out_shape[0] % in_per == 0 \
                and out_ch % (prev.out_shape[0] // in_per) == 0:
            groups = prev.out_shape[0] // in_per
            notes.append(f"{spec.weight}: groups={groups} inferred from its channels")
    if out_ch % groups:
        raise NetworkStructureError(f"{spec.weight}: {out_ch} output channels do not split into "
                                    f"groups={groups}")
    if spec.size is not None:
        size = spec.size
    elif prev_conv:
        size = prev.out_shape[1:]
        if prev.out_shape[0] != in_per * groups:
            notes.append(f"{spec.weight}: input size {size} assumed from {prev.weight}")
    elif i == 0 and input_size:
        size = tuple(int(s) for s in input_size)
    else:
        raise NetworkStructureError(f"{spec.weight}: the spatial size of its input is unknown; give "
                                    f"input_size or layers=…:size=HxW")
    size = _per_dim(size, d, "size", spec.weight)
    st = _per_dim(spec.stride or stride, d, "stride", spec.weight)
    pd = _per_dim(spec.padding if spec.padding is not None else padding, d, "padding", spec.weight)
    dl = _per_dim(spec.dilation or dilation, d, "dilation", spec.weight)
    if min(st) < 1 or min(dl) < 1 or min(size) < 1:
        raise NetworkStructureError(f"{spec.weight}: stride, dilation and size must be ≥ 1")
    out_size = tuple(_k.conv_out_size(n, k, s, p, q) for n, k, s, p, q in zip(size, kernel, st, pd, dl,
                                                                                strict=True))
    if min(out_size) < 1:
        raise NetworkStructureError(f"{spec.weight}: kernel {tuple(kernel)} does not fit input {size} "
                                    f"with padding {pd} and dilation {dl}")
    in_shape = (in_per * groups, *size)
    joined = prev is not None and prev.out_shape == in_shape
    block = Block(spec.weight, bias, "conv", in_shape, (out_ch, *out_size), st, pd, dl, groups,
                  tuple(kernel))
    return block, joined


# ---------------------------------------------------------------------------- strengths


class Strengths(NamedTuple):
    """Strengths of one node layer, each shaped ``(*batch, *layer.shape)``; ``strength`` is
    ``in_strength + out_strength`` (a missing side is 0)."""

    in_strength: np.ndarray
    out_strength: np.ndarray
    strength: np.ndarray


def _array(x: Any) -> np.ndarray:
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise NetworkStructureError(f"weights must be real numbers, got dtype {a.dtype}")
    return a


def block_strengths(block: Block, weight: Any, bias: Any = None, *, absolute: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(in-strength of its output units, out-strength of its input units)`` of one block, shaped
    ``(*batch, *block.out_shape)`` and ``(*batch, *block.in_shape)``; ``weight`` may carry leading
    batch dims (checkpoints), ``bias`` the same ones."""
    w = _array(weight)
    b = None if bias is None else _array(bias)
    if absolute:
        w, b = np.abs(w), (None if b is None else np.abs(b))
    if block.kind == "dense":
        lead = w.shape[:-2]
        into = _k.dense_in_strength(w, b)
        out = _k.dense_out_strength(w).reshape(*lead, *block.in_shape)
    else:
        size = block.in_shape[1:]
        into = _k.conv_in_strength(w, b, size, block.stride, block.padding, block.dilation)
        out = _k.conv_out_strength(w, size, block.stride, block.padding, block.dilation, block.groups)
    return into, out


def structure_strengths(structure: Structure, tensors: Mapping[str, Any] | Callable[[str], Any], *,
                        absolute: bool = False, endpoint_offset: bool = False) -> list[Strengths]:
    """Strengths of every node layer of ``structure``; ``tensors`` maps (or a callable reads) each
    weight/bias name to its array, all with the same leading batch dims. Each tensor is read once,
    block by block, so a lazy reader keeps memory at one tensor plus the strengths."""
    get = tensors if callable(tensors) else tensors.__getitem__
    n = len(structure.layers)
    into: list[Any] = [None] * n
    outof: list[Any] = [None] * n
    where_in = {lay.into: j for j, lay in enumerate(structure.layers) if lay.into is not None}
    where_out = {lay.out_of: j for j, lay in enumerate(structure.layers) if lay.out_of is not None}
    for i, block in enumerate(structure.blocks):
        w = get(block.weight)
        b = None if block.bias is None else get(block.bias)
        s_in, s_out = block_strengths(block, w, b, absolute=absolute)
        into[where_in[i]] = s_in
        outof[where_out[i]] = s_out
    result = []
    for j in range(n):
        a, b = into[j], outof[j]
        a = np.zeros_like(b) if a is None else a
        b = np.zeros_like(a) if b is None else b
        total = a + b
        if endpoint_offset and j in (0, n - 1):
            total = total + 1.0
        result.append(Strengths(a, b, total))
    return result


def _chain_structure(weights: Sequence[Any], biases: Sequence[Any] | None, input_size: Any,
                     stride: Any, padding: Any, dilation: Any, groups: Any
                     ) -> tuple[Structure, dict[str, np.ndarray]]:
    ws = [_array(w) for w in weights]
    if not ws:
        raise NetworkStructureError("weights is empty")
    bs = list(biases) if biases is not None else [None] * len(ws)
    if len(bs) != len(ws):
        raise NetworkStructureError(f"{len(bs)} biases for {len(ws)} weights")
    n_conv = sum(w.ndim > 2 for w in ws)

    def each(value: Any, what: str) -> list[Any]:
        if isinstance(value, (int, np.integer)) or value is None:
            return [value] * len(ws)
        value = list(value)
        if len(value) != n_conv:
            raise NetworkStructureError(f"{what} needs one entry per convolution ({n_conv}), got "
                                        f"{len(value)}")
        it = iter(value)
        return [next(it) if w.ndim > 2 else None for w in ws]

    def dims(v: Any) -> tuple[int, ...] | None:
        return None if v is None else ((int(v),) if isinstance(v, (int, np.integer)) else tuple(v))

    arrays: dict[str, np.ndarray] = {}
    specs = []
    for i, (w, b, st, pd, dl, g) in enumerate(zip(ws, bs, each(stride, "stride"), each(padding, "padding"),
                                                 each(dilation, "dilation"), each(groups, "groups"),
                                                 strict=True)):
        arrays[f"{i}.weight"] = w
        if b is not None:
            arrays[f"{i}.bias"] = _array(b)
        specs.append(LayerSpec(f"{i}.weight", f"{i}.bias" if b is not None else "none",
                               dims(st), dims(pd), dims(dl), None if g is None else int(g)))
    tensors = [(k, v.shape, v.dtype) for k, v in arrays.items()]
    structure = infer_layers(tensors, input_size=input_size, layers=specs)
    if not structure.chained:
        raise NetworkStructureError("the weights do not form a chain: " + "; ".join(
            n for n in structure.notes if n.startswith("chain breaks")) + " (use infer_layers with "
            "layers=… size options for pooling between layers)")
    return structure, arrays


def node_strength(weights: Sequence[Any], biases: Sequence[Any] | None = None, *,
                  input_size: Sequence[int] | None = None, stride: int | Sequence[Any] = 1,
                  padding: int | Sequence[Any] = 0, dilation: int | Sequence[Any] = 1,
                  groups: int | Sequence[int] | None = None, absolute: bool = False,
                  endpoint_offset: bool = False) -> list[Strengths]:
    """In-, out- and total strength of every neuron of a feed-forward chain, one entry per layer of
    nodes (input, hidden…, output), in order.

    ``weights``: Linear (out, in) and Conv (out, in/groups, *kernel) arrays (or tensors), torch's
    layout, each feeding the next; ``biases``: one per weight (``None`` entries allowed). A Linear
    after a Conv reads its flattened output (``in = C·H·W``). Conv layers need ``input_size`` (the
    spatial size of the first conv's input; later ones follow from the shapes) and take
    ``stride``/``padding``/``dilation``/``groups`` as one int for all or one entry per conv.
    ``absolute``: |W| and |b| strengths; ``endpoint_offset``: +1 on the input and output layers
    (the authors' code). Conv layers' strengths are shaped (channels, *spatial).

    Raises :class:`NetworkStructureError` when consecutive weights do not chain (e.g. pooling
    between two layers: use :func:`infer_layers` with ``size=`` options and
    :func:`structure_strengths`).
    """
    structure, arrays = _chain_structure(weights, biases, input_size, stride, padding, dilation, groups)
    return structure_strengths(structure, arrays, absolute=absolute, endpoint_offset=endpoint_offset)


def layer_fluctuation(strengths: Sequence[Any], batch_dims: int = 0) -> np.ndarray:
    """Y_l = population std of the strengths of layer l: ``strengths`` is :func:`node_strength`'s
    output (the total strength is used) or a sequence of arrays, one per layer. The first
    ``batch_dims`` axes are kept (e.g. 1 for (steps, *layer)): returns (L, *batch)."""
    out = []
    for s in strengths:
        a = np.asarray(s.strength if isinstance(s, Strengths) else s, dtype=np.float64)
        if a.ndim < batch_dims or a.size == 0:
            raise NetworkStructureError("each layer's strengths need at least one value per batch entry")
        flat = a.reshape(*a.shape[:batch_dims], -1)
        out.append(flat.std(axis=-1))
    return np.array(out)


# ---------------------------------------------------------------------------- networkx


def _block_edges(block: Block, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source unit index, target unit index, weight) of every link of a block, flat C-major
    indices into ``in_shape`` and ``out_shape``; vectorised over units, a loop over kernel offsets."""
    if block.kind == "dense":
        o, i = np.indices(w.shape)
        return i.ravel(), o.ravel(), w.ravel()
    out_ch, in_per = w.shape[:2]
    kernel = w.shape[2:]
    size, out_size = block.in_shape[1:], block.out_shape[1:]
    g = block.groups
    src, dst, val = [], [], []
    for offset in np.ndindex(*kernel):
        pos_in, pos_out = [], []
        for n, m, kk, s, p, q in zip(size, out_size, offset, block.stride, block.padding,
                                     block.dilation, strict=True):
            y = np.arange(m)
            x = y * s - p + kk * q
            ok = (x >= 0) & (x < n)
            pos_in.append(x[ok])
            pos_out.append(y[ok])
        if any(len(p) == 0 for p in pos_in):
            continue
        flat_in = np.ravel_multi_index(np.meshgrid(*pos_in, indexing="ij"), size).ravel()
        flat_out = np.ravel_multi_index(np.meshgrid(*pos_out, indexing="ij"), out_size).ravel()
        o = np.arange(out_ch)[:, None]
        c = (o // (out_ch // g)) * in_per + np.arange(in_per)[None, :]  # input channel of (o, j)
        weight = w[(slice(None), slice(None), *offset)]  # (O, I/g)
        n_in, n_out = math.prod(size), math.prod(out_size)
        src.append((c[:, :, None] * n_in + flat_in[None, None, :]).ravel())
        dst.append((np.broadcast_to(o[:, :, None], (*c.shape, 1)) * n_out
                    + flat_out[None, None, :]).ravel())
        val.append(np.broadcast_to(weight[:, :, None], (*c.shape, len(flat_in))).ravel())
    return np.concatenate(src), np.concatenate(dst), np.concatenate(val)


def to_networkx(weights: Sequence[Any] | Mapping[str, Any], biases: Sequence[Any] | None = None, *,
                input_size: Sequence[int] | None = None, stride: int | Sequence[Any] = 1,
                padding: int | Sequence[Any] = 0, dilation: int | Sequence[Any] = 1,
                groups: int | Sequence[int] | None = None, absolute: bool = False,
                max_edges: int = 2_000_000) -> Any:
    """The neuron graph as a ``networkx.DiGraph``, for small networks and networkx's algorithms.

    ``weights`` as in :func:`node_strength` (a chain), or a checkpoint: a mapping of tensor names
    to arrays in source order, read with :func:`infer_layers` (the other keywords then apply to it;
    breaks in the chain are allowed). Nodes are ``(layer name, flat unit index)`` with attributes
    ``layer`` and ``bias`` (0 where none); edges carry ``weight`` (|w| with ``absolute``). The
    weighted in-degree plus ``bias`` is the in-strength, the weighted out-degree the out-strength.
    Refuses graphs of more than ``max_edges`` links (networkx holds ~1 kB per edge).
    """
    import networkx as nx

    if isinstance(weights, Mapping):
        arrays = {k: _array(v) for k, v in weights.items()}
        structure = infer_layers([(k, v.shape, v.dtype) for k, v in arrays.items()],
                                 input_size=input_size, stride=stride, padding=padding,
                                 dilation=dilation)
    else:
        structure, arrays = _chain_structure(weights, biases, input_size, stride, padding, dilation,
                                             groups)
    n_edges = sum(_edge_count(b) for b in structure.blocks)
    if n_edges > max_edges:
        raise NetworkStructureError(f"the graph would have {n_edges} edges (max_edges={max_edges}); "
                                    "networkx is for small networks, use node_strength")
    graph = nx.DiGraph()
    for lay in structure.layers:
        graph.add_nodes_from(((lay.name, u) for u in range(lay.size)), layer=lay.name, bias=0.0)
    for i, block in enumerate(structure.blocks):
        src_layer = next(n.name for n in structure.layers if n.out_of == i)
        dst_layer = next(n for n in structure.layers if n.into == i)
        w = arrays[block.weight].astype(np.float64)
        w = np.abs(w) if absolute else w
        src, dst, val = _block_edges(block, w)
        graph.add_weighted_edges_from(zip(((src_layer, int(s)) for s in src),
                                          ((dst_layer.name, int(d)) for d in dst),
                                          val.tolist(), strict=True))
        if block.bias is not None:
            b = arrays[block.bias].astype(np.float64)
            b = np.abs(b) if absolute else b
            per_unit = np.repeat(b, dst_layer.size // len(b))
            nx.set_node_attributes(graph, {(dst_layer.name, u): float(v)
                                           for u, v in enumerate(per_unit)}, "bias")
    return graph


def _edge_count(block: Block) -> int:
    if block.kind == "dense":
        return math.prod(block.in_shape) * block.out_shape[0]
    per_dim = [int(_k.placements(n, k, s, p, q).sum()) for n, k, s, p, q in zip(
        block.in_shape[1:], block.kernel, block.stride, block.padding, block.dilation, strict=True)]
    return block.out_shape[0] * (block.in_shape[0] // block.groups) * math.prod(per_dim)
