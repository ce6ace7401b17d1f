"""In-memory run and group views: what an analyzer sees of a run, without a store.

:class:`MemoryRun` behaves like the store's :class:`dynlab.store.Run` in everything an analyzer
may use (the :class:`~dynlab.analyzers.RunView` protocol plus ``checkpoint``), including its
errors and its normalisations (int64 steps, float64 metrics, JSON attrs, copies on every read),
so an analyzer that works on a ``MemoryRun`` works on a stored run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dynlab.errors import ProbeError, StoreError
from dynlab.store import (
    TensorInfo,
    check_activations_row,
    check_layer_name,
    check_part,
    check_predictions_row,
    check_probe_layers,
    check_run_name,
    find_tensor,
    step_rows,
)

if TYPE_CHECKING:
    import xarray as xr

    from dynlab.analyzers import RunView


class MemoryRun:
    """A run held in memory.

    ``tensors`` maps each tensor name, in source order, to its values at every step, shape
    ``(T, *shape)`` with ``T = len(steps)``; ``metrics`` maps a metric name to ``(T,)`` values
    (NaN where not recorded); ``results`` maps an analyzer name to its result Dataset, returned by
    ``result(analyzer)`` (for analyzers that ``require`` others). ``source_dtypes`` optionally
    gives the original dtype of a tensor (``bfloat16`` stored as float32).

    ``predictions``: probe predictions, either (T, N, C) for every step or a mapping step →
    (N, C) for some steps; checked and cast like the store's (``Run.write_predictions``).
    ``labels``: the probe set's labels (N,). ``activations``: per layer, its inputs on the probe
    set, (T, N, H) for every step or a mapping step → (N, H); checked and cast to float32 like the
    store's (``Run.write_activations``). ``probe_layers``: the layers' descriptions
    (``Run.probe_layers``).
    """

    def __init__(self, name: str, steps: Sequence[int] | np.ndarray,
                 tensors: Mapping[str, np.ndarray], metrics: Mapping[str, Any] | None = None,
                 attrs: Mapping[str, Any] | None = None,
                 results: Mapping[str, xr.Dataset] | None = None, *,
                 source_dtypes: Mapping[str, str] | None = None,
                 predictions: np.ndarray | Mapping[int, np.ndarray] | None = None,
                 labels: np.ndarray | Sequence[int] | None = None,
                 activations: Mapping[str, np.ndarray | Mapping[int, np.ndarray]] | None = None,
                 probe_layers: Mapping[str, Mapping[str, Any]] | None = None):
        check_run_name(name)
        self.name = name
        self._steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        if len(self._steps) > 1 and not np.all(np.diff(self._steps) > 0):
            raise ValueError(f"run '{name}': steps must be strictly increasing, got {self._steps}")
        n = len(self._steps)
        self._data: dict[str, np.ndarray] = {}
        self._tensors: list[TensorInfo] = []
        for key, value in tensors.items():
            array = np.array(value, copy=True)  # later changes by the caller must not leak in
            if not key or "/" in key or key.startswith("."):
                raise ValueError(f"invalid tensor name {key!r} (no '/', not starting with '.')")
            if array.dtype.kind not in "biufc":
                raise ValueError(f"tensor '{key}' has unsupported dtype {array.dtype}")
            if array.ndim == 0 or array.shape[0] != n:
                raise ValueError(f"tensor '{key}' must have shape (T, ...) with T = {n} steps, "
                                 f"got {array.shape}")
            array.flags.writeable = False
            self._data[key] = array
            source = (source_dtypes or {}).get(key, array.dtype.name)
            self._tensors.append(TensorInfo(key, tuple(int(s) for s in array.shape[1:]),
                                            array.dtype.name, str(source)))
        self._metrics: dict[str, np.ndarray] = {}
        for key, value in (metrics or {}).items():
            values = np.asarray(value, dtype=np.float64).reshape(-1)
            if len(values) != n:
                raise ValueError(f"metric '{key}' has {len(values)} values for {n} steps")
            self._metrics[str(key).replace("/", ".")] = values  # the store's metric_key
        # run attrs live in zarr's JSON: keep exactly what a stored run would give back
        self._attrs = json.loads(json.dumps(dict(attrs or {})))
        self._results = {k: v.copy(deep=True) for k, v in (results or {}).items()}
        self._labels = None if labels is None else _checked_labels(name, labels)
        self._predictions = self._checked_predictions(predictions)
        self._probe_layers = check_probe_layers(probe_layers or {}, f"run '{name}'",
                                                tensors=[t.name for t in self._tensors])
        self._activations = self._checked_activations(activations)

    def _checked_predictions(self, predictions: Any) -> dict[int, np.ndarray]:
        if predictions is None:
            return {}
        if isinstance(predictions, Mapping):
            rows = {int(k): v for k, v in predictions.items()}
            unknown = sorted(set(rows) - set(self._steps.tolist()))
            if unknown:
                raise StoreError(f"run '{self.name}' has no checkpoint at step {unknown[0]}")
        else:
            array = np.asarray(predictions)
            if array.ndim != 3 or len(array) != len(self._steps):
                raise ProbeError(f"run '{self.name}': predictions must be (T, N, C) with T = "
                                 f"{len(self._steps)} steps, got shape {array.shape}")
            rows = dict(zip(self._steps.tolist(), array, strict=True))
        out: dict[int, np.ndarray] = {}
        shape = dtype = None
        for step in sorted(rows):
            row = check_predictions_row(rows[step], f"run '{self.name}' step {step}", shape=shape,
                                        dtype=dtype, labels=self._labels).copy()
            row.flags.writeable = False
            shape, dtype = row.shape, row.dtype
            out[step] = row
        return out

    def _checked_activations(self, activations: Any) -> dict[str, dict[int, np.ndarray]]:
        if not activations:
            return {}
        if not isinstance(activations, Mapping):
            raise ProbeError(f"run '{self.name}': activations must be a mapping layer → (T, N, H) "
                             f"array or {{step: (N, H)}}, got {type(activations).__name__}")
        samples: tuple[int, str] | None = None
        if self._labels is not None:
            samples = len(self._labels), "from its probe labels"
        elif self._predictions:
            samples = next(iter(self._predictions.values())).shape[0], "from its probe predictions"
        out: dict[str, dict[int, np.ndarray]] = {}
        for layer, given in activations.items():
            check_layer_name(layer, f"run '{self.name}'")
            if isinstance(given, Mapping):
                rows = {int(k): v for k, v in given.items()}
                unknown = sorted(set(rows) - set(self._steps.tolist()))
                if unknown:
                    raise StoreError(f"run '{self.name}' has no checkpoint at step {unknown[0]}")
            else:
                array = np.asarray(given)
                if array.ndim != 3 or len(array) != len(self._steps):
                    raise ProbeError(f"run '{self.name}': activations of layer '{layer}' must be "
                                     f"(T, N, H) with T = {len(self._steps)} steps, got shape "
                                     f"{array.shape}")
                rows = dict(zip(self._steps.tolist(), array, strict=True))
            features = None
            checked: dict[int, np.ndarray] = {}
            for step in sorted(rows):
                row = check_activations_row(rows[step], f"run '{self.name}' step {step}", layer,
                                            samples=samples, features=features).copy()
                row.flags.writeable = False
                samples = samples or (row.shape[0], f"from its activations of layer '{layer}'")
                features = row.shape[1]
                checked[step] = row
            if checked:
                out[layer] = checked
        model = list(self._probe_layers)
        given_order = list(out)
        order = sorted(given_order, key=lambda k: (model.index(k) if k in model else len(model),
                                                   given_order.index(k)))
        return {k: out[k] for k in order}

    @classmethod
    def from_view(cls, view: RunView, steps: Iterable[int] | None = None, *,
                  results: Mapping[str, xr.Dataset] | None = None) -> MemoryRun:
        """A copy of any run view (a stored ``Run`` too), optionally of some ``steps`` only."""
        all_steps = np.asarray(view.steps, dtype=np.int64)
        chosen = all_steps if steps is None else np.asarray(list(steps), dtype=np.int64)
        missing = chosen[~np.isin(chosen, all_steps)]
        if len(missing):
            raise StoreError(f"run '{view.name}' has no checkpoint at step {int(missing[0])}")
        rows = np.searchsorted(all_steps, chosen)
        metrics = {k: np.asarray(v)[rows] for k, v in view.metrics.items()}
        tensors = {t.name: view.read(t.name, chosen) for t in view.tensors}
        source = {t.name: getattr(t, "source_dtype", t.dtype) for t in view.tensors}
        if getattr(view, "has_predictions", False):
            with_predictions = chosen
        else:  # some steps may have predictions: the store marks them by a non-zero hash
            hashes = np.asarray(getattr(view, "prediction_hashes", np.zeros(len(all_steps))))
            with_predictions = chosen[hashes[rows] != 0]
        predictions = ({int(s): p for s, p in zip(with_predictions, view.read_predictions(
            with_predictions), strict=True)} if len(with_predictions) else None)
        activations = {}
        layers = list(getattr(view, "activation_layers", []))
        layer_hashes = np.asarray(getattr(view, "activation_hashes",
                                          np.zeros((len(all_steps), len(layers)))))
        for i, layer in enumerate(layers):
            present = chosen[layer_hashes[rows, i] != 0]
            if len(present):
                activations[layer] = dict(zip(present.tolist(), view.read_activations(layer, present),
                                              strict=True))
        return cls(view.name, chosen, tensors, metrics, view.attrs, results, source_dtypes=source,
                   predictions=predictions, labels=getattr(view, "probe_labels", None),
                   activations=activations, probe_layers=getattr(view, "probe_layers", None))

    def __repr__(self) -> str:
        return (f"<dynlab.testing.MemoryRun {self.name!r}: {len(self._steps)} checkpoints, "
                f"{len(self._tensors)} tensors>")

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def steps(self) -> np.ndarray:
        """The steps, increasing (int64, shape (T,))."""
        return self._steps.copy()

    @property
    def tensors(self) -> list[TensorInfo]:
        """The tensors in source order: name, per-step shape, dtype, source dtype."""
        return list(self._tensors)

    @property
    def attrs(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._attrs))

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """Per-step metrics, float64 (T,), sorted by name like the store's."""
        return {k: self._metrics[k].copy() for k in sorted(self._metrics)}

    @property
    def n_params(self) -> int:
        return sum(t.size for t in self._tensors)

    def tensor(self, name: str) -> TensorInfo:
        return find_tensor(self._tensors, name, self.name)

    def _rows(self, steps: Iterable[int] | int | None) -> np.ndarray | slice:
        if steps is None:
            return slice(None)
        return step_rows(self._steps, steps, self.name)

    def read(self, tensor: str, steps: Iterable[int] | int | None = None, *,
             part: slice | None = None) -> np.ndarray:
        """Values of one tensor at ``steps`` (default: all), shape ``(len(steps), *shape)``; with
        ``part``, only that slice of the tensor's first axis (as ``Run.read``)."""
        info = self.tensor(tensor)
        values = self._data[tensor][self._rows(steps)]
        if part is not None:
            values = values[:, check_part(part, info)]
        return np.array(values, copy=True)

    def checkpoint(self, step: int) -> dict[str, np.ndarray]:
        """All tensors at ``step``, by name in source order."""
        (row,) = self._rows([step])
        return {t.name: self._data[t.name][row].copy() for t in self._tensors}

    @property
    def probe_labels(self) -> np.ndarray | None:
        """Labels of the probe set, int64 (N,), or None."""
        return None if self._labels is None else self._labels.copy()

    @property
    def prediction_hashes(self) -> np.ndarray:
        """Content hash of each step's predictions, uint64 (T,); 0 where a step has none (the
        same values as the store's ``Run.prediction_hashes``)."""
        from dynlab.store._hash import tensor_hash

        return np.array([(tensor_hash(self._predictions[s]) or 1) if s in self._predictions else 0
                         for s in self._steps.tolist()], dtype=np.uint64)

    @property
    def has_predictions(self) -> bool:
        """Whether every step (at least one) has probe predictions."""
        return bool(len(self._steps)) and len(self._predictions) == len(self._steps)

    def read_predictions(self, steps: Iterable[int] | None = None) -> np.ndarray:
        """Probe predictions at ``steps`` (default: all), (len(steps), N, C); errors as the store's."""
        chosen = self._steps if steps is None else self._steps[step_rows(self._steps, steps, self.name)]
        if not self._predictions:
            raise StoreError(
                f"run '{self.name}' has no probe predictions (store them with dynlab probe, "
                "Recorder.log(..., predictions=...) or a predictions/ sidecar at ingest)")
        missing = [str(s) for s in chosen.tolist() if s not in self._predictions]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise StoreError(f"run '{self.name}' has no probe predictions at step {shown}")
        first = next(iter(self._predictions.values()))
        if not len(chosen):
            return np.zeros((0, *first.shape), dtype=first.dtype)
        return np.stack([self._predictions[s] for s in chosen.tolist()])

    @property
    def probe_layers(self) -> dict[str, dict[str, Any]]:
        """The layers' descriptions given at construction ({} if none), as ``Run.probe_layers``."""
        return {k: dict(v) for k, v in self._probe_layers.items()}

    @property
    def activation_layers(self) -> list[str]:
        """Layers with activations at some step, in model order (as ``Run.activation_layers``)."""
        return list(self._activations)

    @property
    def activation_hashes(self) -> np.ndarray:
        """Content hash of each step's activations of each layer, uint64 (T, L); 0 where a step
        has none (the same values as the store's)."""
        from dynlab.store._hash import tensor_hash

        out = np.zeros((len(self._steps), len(self._activations)), dtype=np.uint64)
        for j, rows in enumerate(self._activations.values()):
            for i, step in enumerate(self._steps.tolist()):
                if step in rows:
                    out[i, j] = tensor_hash(rows[step]) or 1
        return out

    @property
    def has_activations(self) -> bool:
        """Whether every step (at least one) has activations of every layer."""
        hashes = self.activation_hashes
        return bool(hashes.size) and bool(np.all(hashes != 0))

    def read_activations(self, layer: str, steps: Iterable[int] | None = None) -> np.ndarray:
        """Inputs of ``layer`` at ``steps`` (default: all), float32 (len(steps), N, H); errors as
        the store's."""
        chosen = self._steps if steps is None else self._steps[step_rows(self._steps, steps, self.name)]
        from dynlab.store._messages import no_activations

        layers = list(self._activations)
        if layer not in self._activations:
            raise StoreError(no_activations(self.name, layer, layers))
        rows = self._activations[layer]
        missing = [str(s) for s in chosen.tolist() if s not in rows]
        if missing:
            raise StoreError(no_activations(self.name, layer, layers, missing))
        first = next(iter(rows.values()))
        if not len(chosen):
            return np.zeros((0, *first.shape), dtype=first.dtype)
        return np.stack([rows[s] for s in chosen.tolist()])

    def result(self, analyzer: str) -> xr.Dataset:
        """The result of ``analyzer`` given at construction."""
        if analyzer not in self._results:
            raise StoreError(f"no result of '{analyzer}' for '{self.name}' "
                             f"(run: dynlab run {analyzer})")
        return self._results[analyzer].copy(deep=True)


def _checked_labels(name: str, labels: Any) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype.kind not in "iu" or array.ndim != 1 or len(array) == 0 or (array < 0).any():
        raise ProbeError(f"run '{name}': probe labels must be a non-empty 1-d array of non-negative "
                         f"integers, got {array.dtype} of shape {array.shape}")
    out = array.astype(np.int64)
    out.flags.writeable = False
    return out


class MemoryGroup:
    """The view a group-scope analyzer receives: a name and its runs, in a stable order."""

    def __init__(self, name: str, runs: Sequence[RunView]):
        check_run_name(name)
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ValueError(f"group '{name}': run names must be unique, got {names}")
        self.name = name
        self.runs = list(runs)

    def __repr__(self) -> str:
        return f"<dynlab.testing.MemoryGroup {self.name!r}: {[r.name for r in self.runs]}>"
