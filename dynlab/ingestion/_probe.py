"""``dynlab probe``: every stored checkpoint of a run through the user's model on a fixed probe set.

For each selected run: the model is built once by the user's factory (``module:factory`` or
``path/to/file.py:factory``), and for every committed step that lacks them its weights are loaded
(``load_state_dict``, strict), and ``x`` of the probe file is run through it in batches in eval
mode without gradients. softmax(outputs) (or the outputs as they are, ``outputs="probs"``) become
the step's probe predictions; with ``activations``, the inputs of every Linear/Conv layer
(captured by forward pre-hooks, see :mod:`dynlab.ingestion._layers`) its activations. The run's
probe labels come from ``y`` of the file, its ``probe_layers`` from the architecture.

Resumable: steps that already have predictions (and activations of every layer, if asked) are
skipped, so an interrupted probe continues where it stopped; ``replace`` recomputes and overwrites.
The run records a digest of ``x`` (``Run.probe_inputs``): other inputs later are refused, not mixed
in (``replace`` recomputes every step on them).
The run's writer lock is held while it is probed. Everything that can be checked before the first
write is (the file, the factory, the model against the checkpoints' tensors, the first forward),
so those mistakes leave the store unchanged. A step whose outputs are not finite (a diverged
checkpoint) is skipped with a warning. torch is imported inside the functions: an optional extra.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dynlab.errors import NonFiniteWarning, ProbeError, StoreError, require
from dynlab.ingestion._base import one_line
from dynlab.ingestion._layers import capture_inputs, describe_layers, probe_modules
from dynlab.store import Run, Store, open_store


class ProbeProgress(Protocol):
    """What the probe reports while it works (the CLI draws a progress bar from it)."""

    def start_run(self, run: str, steps: int) -> None: ...
    def advance(self, run: str, step: int) -> None: ...


class _Silent:
    def start_run(self, run: str, steps: int) -> None:
        pass

    def advance(self, run: str, step: int) -> None:
        pass


@dataclass
class ProbeRunReport:
    """What the probe did to one run."""

    name: str
    predictions: list[int] = field(default_factory=list)  # steps whose predictions were written
    activations: list[int] = field(default_factory=list)  # steps whose activations were written
    unchanged: list[int] = field(default_factory=list)    # steps that had everything asked for
    nonfinite: list[int] = field(default_factory=list)    # steps skipped: outputs not finite
    layers: list[str] = field(default_factory=list)       # layers whose inputs were captured
    seconds: float = 0.0


@dataclass
class ProbeReport:
    store: str
    device: str
    samples: int
    runs: list[ProbeRunReport]


@dataclass(frozen=True)
class _Options:
    device: Any
    activations: bool
    float16: bool
    batch_size: int
    outputs: str
    replace: bool


def probe(store: str | os.PathLike[str] | Store, model: str | Callable[..., Any],
          data: str | os.PathLike[str], *, runs: Sequence[str] | None = None,
          device: str = "auto", activations: bool = False, float16: bool = False,
          batch_size: int = 512, outputs: str = "logits", replace: bool = False,
          threads: int | None = None, progress: ProbeProgress | None = None) -> ProbeReport:
    """Store probe predictions (and, with ``activations``, layer inputs) of every checkpoint.

    ``model``: ``"module:factory"``, ``"path/file.py:factory"`` or the factory itself; called
    with no argument, or with the run's attrs (a dict) if it has a required positional parameter
    (a sweep's runs differ in width), it returns a ``torch.nn.Module``. ``data``: an ``.npz``
    with ``x`` (the probe inputs; floating ``x`` is cast to the model's floating dtype) and
    optionally ``y`` (N, integer labels). ``runs``: default all. ``device``: ``auto`` (CUDA if
    available, else CPU), ``cpu``, ``cuda``, ``cuda:i``. ``outputs``: ``logits`` (softmax is
    applied) or ``probs`` (the model already returns probabilities). ``float16``: store
    predictions as float16 (a run keeps the dtype of its first predictions). ``threads``: torch's
    CPU threads during the probe (default: torch's own setting).
    """
    torch = require("torch", "torch")
    if outputs not in ("logits", "probs"):
        raise ProbeError(f"outputs must be 'logits' or 'probs', got {outputs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ProbeError(f"batch size must be a positive integer, got {batch_size!r}")
    options = _Options(resolve_device(device), activations, float16, batch_size, outputs, replace)
    x, y = load_probe_data(data)
    factory, where = (model, getattr(model, "__name__", repr(model))) if callable(model) else (
        load_factory(str(model)), f"--model {model!r}")
    if not isinstance(store, Store):
        open_store(store)  # a missing store is an error here, not created empty
    st = store if isinstance(store, Store) else open_store(store, mode="a")
    names = list(runs) if runs else st.runs
    if not names:
        raise StoreError(f"{st}: the store has no runs to probe (dynlab ingest first)")
    selected = [st.run(name) for name in names]  # unknown names fail before any work
    progress = progress or _Silent()
    report = ProbeReport(str(st), str(options.device), len(x), [])
    with _threads(torch, threads):
        for run in selected:
            started = time.perf_counter()
            with run.writing():
                report.runs.append(_probe_run(run, factory, where, x, y, options, progress))
            report.runs[-1].seconds = time.perf_counter() - started
    return report


def resolve_device(device: str) -> Any:
    """``auto`` → CUDA if available, else CPU; ``cpu``, ``cuda``, ``cuda:i`` checked to exist."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ProbeError(f"--device {device!r}: expected auto, cpu, cuda or cuda:<index>") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ProbeError(f"--device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= count:
            raise ProbeError(f"--device {device!r}: this machine has {count} CUDA device(s)")
    elif dev.type != "cpu":
        raise ProbeError(f"--device {device!r}: expected auto, cpu, cuda or cuda:<index>")
    return dev


@contextlib.contextmanager
def _threads(torch: Any, threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ProbeError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- inputs


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``module:factory`` (imported) or ``path/file.py:factory`` (loaded
    from the file); a one-line :class:`ProbeError` for anything that does not resolve."""
    where = f"--model {spec!r}"
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ProbeError(f"{where}: expected module:factory or path/to/file.py:factory")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    try:
        if is_file:
            path = Path(target)
            if not path.is_file():
                raise ProbeError(f"{where}: no file {path}")
            name = f"_dynlab_probe_model_{abs(hash(str(path.resolve())))}"
            spec_ = importlib.util.spec_from_file_location(name, path)
            if spec_ is None or spec_.loader is None:
                raise ProbeError(f"{where}: cannot load {path} as a Python module")
            module = importlib.util.module_from_spec(spec_)
            sys.modules[name] = module  # dataclasses and pickling look their module up here
            try:
                spec_.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(target)
    except ProbeError:
        raise
    except Exception as exc:  # the user's module may raise anything while it is imported
        what = "file" if is_file else "module"
        raise ProbeError(f"{where}: cannot import {what} '{target}' ({type(exc).__name__}: "
                         f"{one_line(exc)})") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ProbeError(f"{where}: '{target}' has no attribute '{attr}'")
    if not callable(factory):
        raise ProbeError(f"{where}: '{attr}' is a {type(factory).__name__}, not a callable factory")
    return factory


def load_probe_data(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (N, …) and ``y`` (N,) int64 or None from a probe ``.npz``; a one-line
    :class:`ProbeError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: no such probe file")
    with open(path, "rb") as f:  # numpy would call anything else a pickle and suggest loading it
        magic = f.read(6)
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
        raise ProbeError(f"{path}: not an .npz archive (save the probe set with "
                         "numpy.savez(path, x=..., y=...))")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ProbeError(f"{path}: cannot read as an .npz archive ({one_line(exc)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a plain .npy: an array
        raise ProbeError(f"{path}: not an .npz archive (save the probe set with "
                         "numpy.savez(path, x=..., y=...))")
    try:
        with npz:
            if "x" not in npz.files:
                raise ProbeError(f"{path}: no array 'x' (the probe inputs); it holds "
                                 f"{', '.join(npz.files) or 'nothing'}")
            x = np.asarray(npz["x"])
            y = np.asarray(npz["y"]) if "y" in npz.files else None
    except (OSError, ValueError, EOFError) as exc:  # a corrupt member, or one holding a pickle
        raise ProbeError(f"{path}: cannot read as an .npz archive ({one_line(exc)})") from None
    if x.dtype.kind not in "biuf" or x.ndim == 0 or len(x) == 0:
        raise ProbeError(f"{path}: x must be a non-empty array of numbers with the samples along "
                         f"its first axis, got {x.dtype} of shape {x.shape}")
    if y is not None:
        if y.dtype.kind not in "iu" or y.ndim != 1 or (y < 0).any():
            raise ProbeError(f"{path}: y must be a 1-d array of non-negative integer labels, got "
                             f"{y.dtype} of shape {y.shape}")
        if len(y) != len(x):
            raise ProbeError(f"{path}: y has {len(y)} labels for the {len(x)} samples of x")
        y = y.astype(np.int64)
    return x, y


def build_model(factory: Callable[..., Any], where: str, attrs: Mapping[str, Any]) -> Any:
    """``factory()`` (or ``factory(attrs)`` if it has a required positional parameter: a class
    ``Net(width=64)`` is called without), checked to be an nn.Module."""
    import torch.nn as nn

    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        takes = any(p.kind in positional and p.default is inspect.Parameter.empty
                    for p in inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        takes = False
    try:
        model = factory(dict(attrs)) if takes else factory()
    except Exception as exc:
        raise ProbeError(f"{where}: the factory raised {type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ProbeError(f"{where}: the factory returned a {type(model).__name__}, not a "
                         "torch.nn.Module")
    return model


# ---------------------------------------------------------------------- one run


def _probe_run(run: Run, factory: Callable[..., Any], where: str, x: np.ndarray,
               y: np.ndarray | None, options: _Options, progress: ProbeProgress) -> ProbeRunReport:
    report = ProbeRunReport(run.name)
    steps = run.steps
    if not len(steps):
        progress.start_run(run.name, 0)
        return report
    digest, known = inputs_digest(x), run.probe_inputs
    switching = known is not None and known != digest  # another probe set than the stored one
    record = known is None  # the digest is written with the first rows
    net = build_model(factory, f"{where} (run '{run.name}')", run.attrs).to(options.device).eval()
    _check_tensors(run, net, int(steps[0]))
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), None)
    inputs = _as_tensor(x, dtype)
    layers = probe_modules(net) if options.activations else []
    if layers:
        layers = _layers_that_run(net, layers, inputs, options.device, f"run '{run.name}'")
    report.layers = [name for name, _ in layers]
    todo = _steps_to_do(run, report.layers, options)
    report.unchanged = [int(s) for s in steps if int(s) not in todo]
    if y is not None and run.probe_labels is not None and not np.array_equal(run.probe_labels, y):
        raise ProbeError(f"run '{run.name}': the labels y of the probe file differ from the run's "
                         "probe labels (a run has one probe set)")
    progress.start_run(run.name, len(todo))
    described = False
    for step, (need_predictions, need_activations) in todo.items():
        _load_weights(run, net, step)
        probs, acts = _forward(net, inputs, layers if need_activations else [], options,
                               f"run '{run.name}' step {step}")
        if probs is None:
            report.nonfinite.append(step)
            warnings.warn(f"run '{run.name}' step {step}: the model's outputs are not finite (a "
                          "diverged checkpoint?); nothing stored for this step", NonFiniteWarning,
                          stacklevel=2)
            progress.advance(run.name, step)
            continue
        if y is not None and not described and int(y.max()) >= probs.shape[1]:
            raise ProbeError(f"run '{run.name}': label {int(y.max())} of the probe file's y is not "
                             f"one of the model's {probs.shape[1]} classes")
        if switching and not options.replace:  # the store refuses another N by itself
            _refuse_other_inputs(run, len(x))
        if need_predictions:
            run.write_predictions(step, probs)
            report.predictions.append(step)
        if not described:  # after the first rows: a conflict with the run fails before any write
            _describe(run, net, y)
            described = True
        if need_activations and acts:
            run.write_activations(step, acts)
            report.activations.append(step)
        if record:  # after the step's rows: a refused row leaves the store unchanged
            run.set_probe_inputs(digest)
            record = False
        progress.advance(run.name, step)
    if not described and y is not None and run.probe_labels is None:
        run.set_probe_labels(y)  # nothing else to do, but the run lacked its labels
    if switching:  # every step was recomputed on the new inputs: they are the run's now
        run.set_probe_inputs(digest)
    return report


def _refuse_other_inputs(run: Run, samples: int) -> None:
    stored = run.probe_summary["predictions"]
    if stored is None or stored["samples"] == samples:
        raise ProbeError(f"run '{run.name}': the probe inputs x differ from those its stored "
                         "probe data were computed on (a run has one probe set; --replace "
                         "recomputes every step on these inputs)")


def inputs_digest(x: np.ndarray) -> str:
    """xxh3-64 (hex) of the probe inputs: dtype, shape and bytes (``Run.probe_inputs``)."""
    import xxhash

    h = xxhash.xxh3_64()
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(np.ascontiguousarray(x).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def _describe(run: Run, net: Any, y: np.ndarray | None) -> None:
    """The run's probe labels and layer descriptions, each written only if it changes."""
    if y is not None:
        run.set_probe_labels(y)  # the same labels again: a no-op
    layout = describe_layers(net)
    if layout != run.probe_layers:
        run.set_probe_layers(layout)


def _as_tensor(x: np.ndarray, dtype: Any) -> Any:
    import torch

    array = x if x.flags.writeable else x.copy()  # torch warns on read-only memory
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_floating_point() and dtype is not None:
        tensor = tensor.to(dtype)
    return tensor


def _check_tensors(run: Run, net: Any, step: int) -> None:
    """The model's state dict against the run's tensors (names and shapes), before any load."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    stored = {t.name: t.shape for t in run.tensors}
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    where = f"run '{run.name}' step {step}: the checkpoint does not fit the model"
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_shown(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_shown(unexpected)}")
        raise ProbeError(f"{where}: {'; '.join(parts)}")
    for key, shape in expected.items():
        if stored[key] != shape:
            raise ProbeError(f"{where}: '{key}' has shape {stored[key]} in the checkpoint, "
                             f"{shape} in the model")


def _shown(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _layers_that_run(net: Any, layers: list[tuple[str, Any]], inputs: Any, device: Any,
                     where: str) -> list[tuple[str, Any]]:
    """The layers a forward actually calls (a head the forward skips has no input), found with
    the factory's weights on one sample."""
    import torch

    called: set[str] = set()
    with capture_inputs(net, layers, lambda name, _: called.add(name)), torch.no_grad():
        _call(net, inputs[:1].to(device), f"{where} (the factory's model)", inputs.shape,
              inputs.dtype)
    return [(name, m) for name, m in layers if name in called]


def _steps_to_do(run: Run, layers: list[str], options: _Options) -> dict[int, tuple[bool, bool]]:
    """``{step: (needs predictions, needs activations)}`` of the steps with something missing."""
    steps = run.steps
    if options.replace:
        return {int(s): (True, bool(layers)) for s in steps}
    has_predictions = run.prediction_hashes != 0
    stored = run.activation_layers
    hashes = run.activation_hashes
    has_activations = np.ones(len(steps), dtype=bool)
    for layer in layers:
        if layer not in stored:
            has_activations[:] = False
            break
        has_activations &= hashes[:, stored.index(layer)] != 0
    todo = {}
    for i, s in enumerate(steps):
        need = (not has_predictions[i], bool(layers) and not has_activations[i])
        if any(need):
            todo[int(s)] = need
    return todo


def _load_weights(run: Run, net: Any, step: int) -> None:
    import torch

    state = {}
    for name, array in run.checkpoint(step).items():
        array = array if array.flags.writeable else array.copy()  # torch warns on read-only memory
        state[name] = torch.from_numpy(np.ascontiguousarray(array))
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ProbeError(f"run '{run.name}' step {step}: the checkpoint does not load into the "
                         f"model ({one_line(exc)})") from None


def _call(net: Any, batch: Any, where: str, shape: tuple[int, ...], dtype: Any) -> Any:
    try:
        out = net(batch)
    except Exception as exc:  # a wrong shape or dtype of x for this model, most often
        raise ProbeError(f"{where}: the model cannot run on the probe inputs x of shape "
                         f"{tuple(shape)}, {str(dtype).removeprefix('torch.')} "
                         f"({type(exc).__name__}: {one_line(exc)})") from None
    out = getattr(out, "logits", out)  # Hugging Face model outputs
    if not hasattr(out, "ndim") or out.ndim != 2 or out.shape[0] != batch.shape[0]:
        got = f"shape {tuple(out.shape)}" if hasattr(out, "shape") else f"a {type(out).__name__}"
        raise ProbeError(f"{where}: the model's output must be (samples, classes) for "
                         f"{batch.shape[0]} samples, got {got}")
    return out


def _forward(net: Any, inputs: Any, layers: list[tuple[str, Any]], options: _Options,
             where: str) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Class probabilities (N, C) and the layers' reduced inputs {layer: (N, H)} on the probe set,
    in batches; (None, {}) when the outputs are not finite."""
    import torch

    rows: dict[str, list[np.ndarray]] = {name: [] for name, _ in layers}
    calls: dict[str, int] = {}

    def sink(name: str, value: Any) -> None:
        calls[name] = calls.get(name, 0) + 1
        rows[name].append(value.float().cpu().numpy())

    probs = []
    with capture_inputs(net, layers, sink), torch.no_grad():
        for start in range(0, len(inputs), options.batch_size):
            batch = inputs[start:start + options.batch_size].to(options.device)
            calls.clear()
            out = _call(net, batch, where, inputs.shape, inputs.dtype)
            twice = sorted(name for name, n in calls.items() if n > 1)
            if twice:
                raise ProbeError(f"{where}: layer '{twice[0]}' runs {calls[twice[0]]} times in one "
                                 "forward: its input is ambiguous (leave out --activations)")
            out = out.float()
            if not torch.isfinite(out).all():
                return None, {}
            p = torch.softmax(out, dim=1) if options.outputs == "logits" else out
            probs.append(p.cpu().numpy())
    predictions = np.concatenate(probs)
    if options.float16:
        predictions = predictions.astype(np.float16)
    return predictions, {name: np.concatenate(parts) for name, parts in rows.items() if parts}


def layer_inputs(model: Any, x: Any, *, batch_size: int = 512) -> dict[str, np.ndarray]:
    """The probe-layer inputs of ``model`` on ``x`` (see :mod:`dynlab.ingestion._layers`),
    {layer: float32 (N, H)}, computed in eval mode without gradients on the model's device (its
    mode is restored): what ``Recorder.log(..., activations=...)`` takes from a training loop."""
    import torch

    inputs = x if isinstance(x, torch.Tensor) else _as_tensor(np.asarray(x), None)
    params = list(model.parameters())
    if params and inputs.is_floating_point():
        inputs = inputs.to(next((p.dtype for p in params if p.is_floating_point()), inputs.dtype))
    device = params[0].device if params else inputs.device
    training = model.training
    model.eval()
    try:
        rows: dict[str, list[np.ndarray]] = {}
        with capture_inputs(model, probe_modules(model),
                            lambda name, v: rows.setdefault(name, []).append(v.float().cpu().numpy())
                            ), torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                model(inputs[start:start + batch_size].to(device))
    finally:
        model.train(training)
    return {name: np.concatenate(parts) for name, parts in rows.items()}
