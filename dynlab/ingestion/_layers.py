"""The layers of a torch model as the probe sees them: their descriptions and their inputs.

A probe layer is every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` of the model (subclasses
included), named as in ``model.named_modules()``. Its stored input (``probe/activations/<layer>``,
one row per probe sample) is

- Linear: the input x itself, (N, in_features); an input with extra leading dims (B, …, in) is
  averaged over them, like a convolution's positions;
- Conv: x̃ = (1/P) Σ_p patch_p(x), the mean over the P output positions of the unfolded input
  patches (``torch.nn.functional.unfold``, after the layer's own padding), H = C_in·kh·kw in the
  order of ``weight.reshape(C_out, -1)``. By linearity, ΔW·x̃ is exactly the change of the
  position-averaged pre-activation, so the stored size is N·C_in·k² instead of
  N·P·C_in·k² (all patches) — and, unlike channel means, it keeps the kernel's spatial structure.
  A grouped convolution stores all C_in channels; the analyzer picks each group's slice.

torch is imported inside the functions: it is an optional extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dynlab.errors import ProbeError

#: modules that are the identity in eval mode: looked through when finding what follows a layer
_TRANSPARENT = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity")
_ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}


def probe_modules(model: Any) -> list[tuple[str, Any]]:
    """``(layer, module)`` of every Linear, Conv1d and Conv2d of ``model``, in module order; the
    layer is the module's name (its class name when the model itself is one)."""
    import torch.nn as nn

    return [(name or type(m).__name__, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def describe_layers(model: Any) -> dict[str, dict[str, Any]]:
    """Each probe layer's ``{"kind", "weight", "bias", "output"}`` (``Run.probe_layers``).

    ``weight``/``bias``: the parameters' names (``<layer>.weight``, ``<layer>.bias``; None for a
    layer without bias). ``output``, the nonlinearity that follows the layer, by a heuristic on
    the module tree: the last Linear is the classifier head → ``softmax`` (what ``dynlab probe``
    applies to the outputs); any other layer takes the next leaf module in ``named_modules()``
    order, looking through Dropout and Identity: ``nn.ReLU`` → ``relu``, ``nn.Sigmoid`` →
    ``sigmoid``, ``nn.Tanh`` → ``tanh``, ``nn.Softmax`` → ``softmax``; anything else → ``linear``
    (BatchNorm, pooling, GELU, or an activation applied functionally in ``forward``, which the
    module tree does not show). Correct for ``nn.Sequential`` stacks and modules that declare their
    activations as submodules; set ``Run.set_probe_layers`` by hand where it is not.
    """
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise ProbeError(f"cannot describe the layers of a {type(model).__name__}: not a "
                         "torch.nn.Module")
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    leaves = [m for _, m in model.named_modules() if not any(True for _ in m.children())]
    position = {id(m): i for i, m in enumerate(leaves)}
    layers = probe_modules(model)
    last_linear = max((i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear)), default=None)
    out: dict[str, dict[str, Any]] = {}
    for i, (layer, module) in enumerate(layers):
        prefix = "" if module is model else f"{layer}."
        weight, bias = f"{prefix}weight", f"{prefix}bias"
        if weight not in params:  # e.g. a parametrized weight: not a tensor the probe can name
            continue
        output = "softmax" if i == last_linear else "linear"
        if i != last_linear and id(module) in position:
            for follower in leaves[position[id(module)] + 1:]:
                kind = type(follower).__name__
                if kind in _TRANSPARENT:
                    continue
                output = _ACTIVATIONS.get(kind, "linear")
                break
        out[layer] = {"kind": "linear" if isinstance(module, nn.Linear) else "conv",
                      "weight": weight,
                      "bias": bias if getattr(module, "bias", None) is not None and bias in params
                      else None,
                      "output": output}
    return out


def reduce_input(module: Any, x: Any) -> Any:
    """The per-sample input row of a probe layer (see the module docstring), shape (B, H)."""
    import torch.nn as nn
    import torch.nn.functional as F

    if isinstance(module, nn.Linear):
        if x.ndim == 1:
            return x.reshape(1, -1)
        return x.reshape(x.shape[0], -1, x.shape[-1]).mean(dim=1)
    one_d = isinstance(module, nn.Conv1d)
    if x.ndim == (2 if one_d else 3):  # an unbatched input: one sample
        x = x.unsqueeze(0)
    pad = _padding(module)
    if any(pad):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, pad, mode=mode)
    if one_d:  # a Conv1d is a Conv2d of height 1
        x = x.unsqueeze(2)
        kernel, dilation, stride = ((1, module.kernel_size[0]), (1, module.dilation[0]),
                                    (1, module.stride[0]))
    else:
        kernel, dilation, stride = module.kernel_size, module.dilation, module.stride
    patches = F.unfold(x, kernel, dilation=dilation, padding=0, stride=stride)  # (B, C·k, P)
    return patches.mean(dim=2)


def _padding(module: Any) -> tuple[int, ...]:
    """The (left, right[, top, bottom]) padding the layer applies to its input, as F.pad takes it:
    from the layer's own record (it also holds the amounts of ``padding='same'``)."""
    pad = getattr(module, "_reversed_padding_repeated_twice", None)
    if pad is not None:
        return tuple(int(p) for p in pad)
    padding = module.padding
    if isinstance(padding, str):  # 'valid' (an older torch without the record: 'same' is refused)
        if padding == "valid":
            return (0,) * (2 * len(module.kernel_size))
        raise ProbeError(f"cannot work out the padding {padding!r} of {type(module).__name__}")
    return tuple(int(p) for p in reversed(padding) for _ in range(2))


@contextmanager
def capture_inputs(model: Any, layers: list[tuple[str, Any]],
                   sink: Callable[[str, Any], None]) -> Iterator[None]:
    """Within the block, every forward of ``model`` calls ``sink(layer, row)`` with the reduced
    input (B, H) of each of ``layers`` (forward pre-hooks, removed on leaving)."""
    handles = []
    for name, module in layers:
        def hook(mod, args, _name=name):
            if args:
                sink(_name, reduce_input(mod, args[0].detach()))
        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
