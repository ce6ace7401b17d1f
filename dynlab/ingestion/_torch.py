"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``): torch.save zip or legacy pickle.

Loaded with ``weights_only=True``: a file whose pickle needs any other code (a pickled module, a
custom class, ``os.system``) is refused, never executed. Zip-format files are memory-mapped, so
tensors are paged in as they are streamed. The weights are the file itself when it is a state dict,
else the first of :data:`WEIGHT_KEYS` that holds tensors (Lightning keeps them under
``state_dict``); nested dicts flatten to dotted names.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import Checkpoint, TensorItem, one_line, scalar_metrics
from dynlab.ingestion._pages import release_mapped

#: Where training scripts keep the model's weights inside a checkpoint dict, in order of preference.
WEIGHT_KEYS = ("model", "model_state_dict", "state_dict", "module", "net", "network", "weights")
STEP_KEYS = ("global_step", "step", "epoch")
#: Top-level entries that are training state, not weights (skipped when the top level is flattened).
_NOT_WEIGHTS = {"optimizer", "optimizer_state_dict", "optimizer_states", "optim", "scheduler",
                "lr_scheduler", "lr_schedulers", "scaler", "callbacks", "loops", "metrics",
                "hyper_parameters", "hparams", "args", "config", "ema", "rng_state"}
_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def open_torch(path: Path) -> Checkpoint:
    """Open a torch.save file; :class:`CheckpointError` if it is corrupt or needs code to load."""
    content, mapped = _load(path)
    if isinstance(content, torch.Tensor):
        content = {path.stem: content}  # a bare tensor, named like a single-array .npy
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{path}: holds a {type(content).__name__}, not a dict of tensors")
    weights, nested = _find_weights(content)
    entries = list(_flatten(weights, "", skip=set() if nested else _NOT_WEIGHTS | set(STEP_KEYS)))
    if not entries:
        raise CheckpointError(f"{path}: holds no tensors")
    step, metrics = _step_and_metrics(content, tensor_scalars=nested)
    held = {"entries": entries}

    def tensors() -> Iterator[TensorItem]:
        for name, tensor in held.get("entries", ()):
            array, source = torch_to_numpy(path, name, tensor)
            releasable = mapped and tensor.layout == torch.strided and not tensor.is_quantized
            yield name, array, source, (_releaser(tensor) if releasable else None)

    return Checkpoint(path, "torch", tensors, step=step, metrics=metrics,
                      nbytes=path.stat().st_size, close=held.clear)


def _releaser(tensor: torch.Tensor):
    """Once stored, the tensor's pages of the mapped file need not stay resident."""
    storage = tensor.untyped_storage()  # held by the closure: the mapping outlives the call
    return lambda: release_mapped(storage.data_ptr(), storage.nbytes())


def _load(path: Path) -> tuple[Any, bool]:
    """The unpickled content, and whether its tensors are memory-mapped from the file."""
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(
                f"{path}: truncated or corrupt torch zip archive ({one_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip), is_zip
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(path, str(exc)) from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError,
            AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint, truncated or corrupt ({one_line(exc)})"
        ) from None


def _unpickling_error(path: Path, message: str) -> CheckpointError:
    """Refusal (the pickle names code to run) or damage (the pickle stream is garbage)."""
    found = _GLOBAL.search(message)
    if found or "reduce" in message or "unsupported class" in message.lower():
        what = f"it needs {found.group(1)}" if found else "it needs more than tensors"
        return CheckpointError(f"{path}: refused: loading it would run arbitrary code ({what}); "
                               "dynlab loads weights only")
    detail = message.split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return CheckpointError(f"{path}: not a readable torch checkpoint, truncated or corrupt "
                           f"({lines[0] if lines else 'bad pickle'})")


def _find_weights(content: Mapping) -> tuple[Mapping, bool]:
    """The mapping that holds the weights, and whether it is nested under a key."""
    for key in WEIGHT_KEYS:
        value = content.get(key)
        if isinstance(value, Mapping) and _has_tensor(value):
            return value, True
    return content, False


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def _flatten(value: Any, prefix: str, skip: frozenset[str] | set[str] = frozenset()
             ) -> Iterator[tuple[str, Any]]:
    """``(dotted name, tensor)`` in source order; non-tensor leaves are dropped."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, (Mapping, list, tuple)):
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, child in items:
            if not prefix and str(key) in skip:
                continue
            yield from _flatten(child, f"{prefix}.{key}" if prefix else str(key))


def _step_and_metrics(content: Mapping, *, tensor_scalars: bool) -> tuple[int | None, dict]:
    """Step from the first integer step key; metrics from top-level and ``metrics`` scalars.

    0-d tensors count as scalars only beside nested weights: in a plain state dict they are weights.
    """
    step = None
    for key in STEP_KEYS:
        value = _python_scalar(content.get(key), True)
        if isinstance(value, int) and not isinstance(value, bool):
            step = value
            break
    metrics = scalar_metrics({k: _python_scalar(v, tensor_scalars) for k, v in content.items()
                              if k not in STEP_KEYS})
    nested = content.get("metrics")
    if isinstance(nested, Mapping):
        metrics.update(scalar_metrics({k: _python_scalar(v, True) for k, v in nested.items()
                                       if k not in STEP_KEYS}))
    return step, metrics


def _python_scalar(value: Any, tensor_scalars: bool) -> Any:
    """A 0-d real tensor as a Python number when tensors count as scalars; other tensors: None."""
    if isinstance(value, torch.Tensor):
        if tensor_scalars and value.ndim == 0 and not value.is_complex() and (
                value.dtype != torch.bool):
            return value.item()
        return None
    return value


def torch_to_numpy(path: Path, name: str, tensor: torch.Tensor) -> tuple[np.ndarray, str]:
    """The tensor as a numpy array, and its dtype in the source (``float16``, ``bfloat16``…)."""
    source = str(tensor.dtype).removeprefix("torch.")
    t = tensor.detach().cpu()
    if t.is_quantized:
        t = t.dequantize()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:
        return t.float().numpy(), source
    try:
        return t.numpy(), source
    except TypeError:
        if t.is_floating_point():  # float8 and other types numpy lacks: widened exactly
            return t.float().numpy(), source
        raise CheckpointError(
            f"{path}: tensor '{name}' has dtype {source}, which dynlab cannot store") from None
