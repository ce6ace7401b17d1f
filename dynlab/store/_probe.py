"""Probe data of a run: predictions, labels, layer inputs (activations) and layer descriptions.

All of it belongs to one fixed probe set of N samples (DESIGN.md, "Store layout"):

- ``probe/predictions`` (T, N, C): class probabilities of each checkpoint, and ``probe/hashes``
  (T,) the xxh3-64 of each row, 0 where a step has none;
- ``probe/labels`` (N,): the samples' labels;
- ``probe/activations/<layer>`` (T, N, H) float32: the input of layer ``<layer>`` (a torch module
  name) at each checkpoint; for a convolution, the unfolded input patches averaged over output
  positions (H = C_in·kh·kw); and ``probe/activation_hashes/<layer>`` (T,) its row hashes;
- the run's ``probe_layers`` (in its dynlab info): per layer its kind, weight and bias tensors and
  the nonlinearity that follows it, for analyzers that need the layer's output model.

A row hash is the per-row "written" record: written after the row, cleared before a row is
overwritten, so a crash leaves a step without that row rather than with a half-written one. It is
also the identity test of a re-write (equal hash: a no-op) and the analyzers' fingerprint. In
``Run.append`` the rows and their hashes are written with the rest of the checkpoint, before its
commit; an append without them writes 0 over any leftover hash of an interrupted append.

:class:`ProbeData` is a mixin of :class:`dynlab.store.Run`: it uses the run's row writer
(``_write_row``, ``_rows_written``), its lock (``writing``) and its committed steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from dynlab.errors import ProbeError, StoreError
from dynlab.store import _layout as L
from dynlab.store._hash import tensor_hash
from dynlab.store._messages import did_you_mean, no_activations, shown_names

#: A checked probe row: the values as stored and their hash (never 0: 0 means "none").
Row = tuple[np.ndarray, int]

#: What may follow a layer (``probe_layers[layer]["output"]``): the output model of the layer.
OUTPUTS = ("softmax", "sigmoid", "tanh", "relu", "linear")
KINDS = ("linear", "conv")


class ProbeData:
    """Probe predictions, labels, activations and layer descriptions of a stored run."""

    # ------------------------------------------------------------------ row hashes

    def _row_hashes(self, key: str) -> np.ndarray:
        """The committed rows of hash array ``key``, uint64 (T,), 0 where a step has none (cached;
        callers copy before handing it out)."""
        n = len(self._steps)
        cached = self._hash_rows.get(key)
        if cached is None or len(cached) != n:
            cached = np.zeros(n, dtype=np.uint64)
            if n and self._has_array(key):
                arr = self._array(key)
                m = min(n, arr.shape[0])  # rows past the array's capacity were never written
                cached[:m] = arr[:m]
            self._hash_rows[key] = cached
        return cached

    def _note_row_hash(self, key: str, row: int, digest: int) -> None:
        """Keep the cached hashes of ``key`` in step with a row just written or committed."""
        cached = self._hash_rows.get(key)
        if cached is not None and row < len(self._steps):
            if len(cached) == row:
                cached = np.append(cached, np.uint64(0))
            if len(cached) == len(self._steps):
                cached[row] = digest
                self._hash_rows[key] = cached
                return
        self._hash_rows.pop(key, None)

    def _set_row(self, values_key: str, hash_key: str, row: int, probe: Row | None,
                 fresh: Callable[[], bool]) -> None:
        """Overwrite committed row ``row`` of ``values_key`` (None: drop it): clear its hash, write
        the row, then its hash, each on disk before the next, so a crash leaves the step without
        that row rather than with a half-written one. ``fresh()``: whether no committed row holds
        data any more (then the array is created anew: leftovers may differ in shape)."""
        current = self._row_hashes(hash_key)[row]
        if probe is not None and current == probe[1]:
            return
        if current != 0:
            with self._rows_written():
                self._write_row(hash_key, row, np.zeros((), dtype=np.uint64), create=False)
            self._note_row_hash(hash_key, row, 0)
        if probe is None:
            return
        create = fresh()
        values, digest = probe
        with self._rows_written():
            self._write_row(values_key, row, values, fill_value=np.nan, create=create)
        with self._rows_written():
            self._write_row(hash_key, row, np.asarray(digest, dtype=np.uint64), create=False)
        self._note_row_hash(hash_key, row, digest)

    def _append_row(self, values_key: str, hash_key: str, row: int, probe: Row | None,
                    fresh: bool) -> None:
        """Row ``row`` and its hash as part of an append (before its commit, so order does not
        matter); without a row, clear a leftover hash."""
        if probe is not None:
            values, digest = probe
            self._write_row(values_key, row, values, fill_value=np.nan, create=fresh)
            self._write_row(hash_key, row, np.asarray(digest, dtype=np.uint64), create=False)
        elif self._has_array(hash_key):
            self._write_row(hash_key, row, np.zeros((), dtype=np.uint64), create=False)

    def _committed_layout(self, values_key: str, hash_key: str) -> tuple[int, ...] | None:
        """Per-step shape of ``values_key``, None if no committed step has a row."""
        if not np.any(self._row_hashes(hash_key) != 0):
            return None
        return tuple(int(s) for s in self._array(values_key).shape[1:])

    def _probe_samples(self) -> tuple[int, str] | None:
        """N of the run's probe set and where it comes from, None while nothing fixes it."""
        labels = self.probe_labels
        if labels is not None:
            return len(labels), "from its probe labels"
        committed = self._prediction_layout()
        if committed is not None:
            return committed[0][0], "from its probe predictions"
        for layer in self._recorded_layers():
            layout = self._activation_layout(layer)
            if layout is not None:
                return layout[0], f"from its activations of layer '{layer}'"
        return None

    # ------------------------------------------------------------------ predictions and labels

    @property
    def probe_labels(self) -> np.ndarray | None:
        """Labels of the probe set, int64 (N,), or None if the run has none."""
        if not self._has_array(L.LABELS):
            return None
        labels = np.asarray(self._array(L.LABELS)[:], dtype=np.int64)
        return None if (labels < 0).any() else labels  # −1: the fill of an interrupted write

    @property
    def prediction_hashes(self) -> np.ndarray:
        """xxh3-64 of each committed step's probe predictions, uint64 (T,); 0 where it has none."""
        return self._row_hashes(L.PREDICTION_HASHES).copy()

    @property
    def has_predictions(self) -> bool:
        """Whether every committed step (at least one) has probe predictions."""
        hashes = self.prediction_hashes
        return bool(len(hashes)) and bool(np.all(hashes != 0))

    def read_predictions(self, steps: Iterable[int] | None = None) -> np.ndarray:
        """Probe predictions at ``steps`` (default: all committed), shape (len(steps), N, C).

        A :class:`StoreError` if the run has none, or names the steps that lack them.
        """
        rows = self.rows(steps)
        index = np.arange(len(self._steps))[rows]
        hashes = self.prediction_hashes
        if not np.any(hashes != 0):
            raise StoreError(
                f"run '{self.name}' has no probe predictions (store them with dynlab probe, "
                "Recorder.log(..., predictions=...) or a predictions/ sidecar at ingest)")
        missing = self._steps[index[hashes[index] == 0]]
        if len(missing):
            raise StoreError(f"run '{self.name}' has no probe predictions at step "
                             f"{shown_names([str(int(s)) for s in missing])}")
        arr = self._array(L.PREDICTIONS)
        if isinstance(rows, slice):
            return arr[rows]
        return arr.get_orthogonal_selection((rows,))

    def write_predictions(self, step: int, predictions: Any, *, overwrite: bool = True) -> None:
        """Store the probe predictions (N, C) of the existing checkpoint at ``step``.

        Checked before anything is written (:class:`ProbeError`): a 2-d array of real numbers, no
        NaN/Inf, none negative, every row summing to 1 within 1e-3, and the same (N, C) as the
        run's other predictions and its labels (and N as its activations). Stored as float32
        (float16 if the run's first predictions were float16). Identical predictions are a no-op;
        different ones overwrite the row (the step reads as having none until the new row is
        complete), or with ``overwrite=False`` are refused.
        """
        with self.writing():
            (row,) = np.atleast_1d(np.arange(len(self._steps))[self.rows([step])])
            probe = self._checked_predictions(int(step), predictions)
            current = self.prediction_hashes[int(row)]
            if not overwrite and current not in (0, probe[1]):
                raise ProbeError(f"run '{self.name}' step {int(step)}: already has different "
                                 "probe predictions (use --replace to overwrite them)")
            self._set_probe_row(int(row), probe)

    def set_probe_labels(self, labels: Any) -> None:
        """Store the probe set's labels, int64 (N,), once; the same labels again are a no-op."""
        array = np.asarray(labels)
        where = f"run '{self.name}': probe labels"
        if array.dtype.kind not in "iu" or array.ndim != 1 or len(array) == 0:
            raise ProbeError(f"{where} must be a non-empty 1-d integer array, got {array.dtype} "
                             f"of shape {array.shape}")
        if (array < 0).any():
            raise ProbeError(f"{where} must be non-negative class indices")
        array = array.astype(np.int64)
        with self.writing():
            current = self.probe_labels
            if current is not None:
                if np.array_equal(current, array):
                    return
                raise ProbeError(f"{where} differ from the {len(current)} labels the run already "
                                 "has (a run has one probe set)")
            committed = self._prediction_layout()
            if committed is not None:
                check_labels_fit(array, committed[0], where)
            samples = self._probe_samples()
            if samples is not None and samples[0] != len(array):
                raise ProbeError(f"{where} are for {len(array)} samples, but the run's probe set "
                                 f"has {samples[0]} ({samples[1]})")
            arr = self._group.create_array(L.LABELS, shape=array.shape, dtype="int64",
                                           chunks=array.shape, fill_value=-1, overwrite=True)
            arr[:] = array
            self._arrays[L.LABELS] = arr

    def _prediction_layout(self) -> tuple[tuple[int, int], np.dtype] | None:
        """(N, C) and dtype of the committed predictions, None if no committed step has any."""
        shape = self._committed_layout(L.PREDICTIONS, L.PREDICTION_HASHES)
        if shape is None:
            return None
        return (shape[0], shape[1]), np.dtype(self._array(L.PREDICTIONS).dtype)

    def _checked_predictions(self, step: int, predictions: Any) -> Row:
        committed = self._prediction_layout()
        shape, dtype = committed if committed is not None else (None, None)
        where = f"run '{self.name}' step {step}"
        values = check_predictions_row(predictions, where, shape=shape, dtype=dtype,
                                       labels=self.probe_labels)
        samples = self._probe_samples()
        if samples is not None and samples[0] != values.shape[0]:
            raise ProbeError(f"{where}: predictions are for {values.shape[0]} samples, but the "
                             f"run's probe set has {samples[0]} ({samples[1]})")
        return values, (tensor_hash(values) or 1)  # 0 means "none"

    def _write_probe_row(self, row: int, probe: Row | None) -> None:
        """Row ``row`` of the predictions and their hash, as part of an append."""
        self._append_row(L.PREDICTIONS, L.PREDICTION_HASHES, row, probe,
                         fresh=self._prediction_layout() is None)  # leftovers may differ in shape

    def _note_probe_hash(self, row: int, digest: int) -> None:
        self._note_row_hash(L.PREDICTION_HASHES, row, digest)

    def _set_probe_row(self, row: int, probe: Row | None) -> None:
        """Overwrite the predictions of committed row ``row`` (None: drop them)."""
        self._set_row(L.PREDICTIONS, L.PREDICTION_HASHES, row, probe,
                      lambda: self._prediction_layout() is None)

    # ------------------------------------------------------------------ activations

    def _recorded_layers(self) -> list[str]:
        """Every layer ever given activations (committed or not), in first-write order."""
        return list(self._internal.get(L.ACTIVATION_LAYERS, []))

    @property
    def activation_layers(self) -> list[str]:
        """Layers with stored activations at some committed step, in model order (the order of
        ``probe_layers``, then the order in which they were first written)."""
        recorded = self._recorded_layers()
        stored = [layer for layer in recorded
                  if np.any(self._row_hashes(L.activation_hashes_key(layer)) != 0)]
        model = list(self.probe_layers)
        return sorted(stored, key=lambda layer: (model.index(layer) if layer in model else len(model),
                                                 recorded.index(layer)))

    @property
    def activation_hashes(self) -> np.ndarray:
        """xxh3-64 of each committed step's activations of each layer, uint64 (T, L) with the
        layers of ``activation_layers``; 0 where a step has none."""
        layers = self.activation_layers
        if not layers:
            return np.zeros((len(self._steps), 0), dtype=np.uint64)
        return np.stack([self._row_hashes(L.activation_hashes_key(layer)) for layer in layers],
                        axis=1)

    @property
    def probe_summary(self) -> dict[str, Any]:
        """What the run holds of its probe set, from metadata and hashes only: ``predictions``
        {samples, classes, dtype, steps} or None, ``labels`` (bool), ``activations`` {layer:
        {width, steps}}, ``layers`` (``probe_layers``)."""
        layout = self._prediction_layout()
        predictions = None if layout is None else {
            "samples": layout[0][0], "classes": layout[0][1], "dtype": str(layout[1]),
            "steps": int(np.count_nonzero(self.prediction_hashes))}
        activations = {}
        for layer in self.activation_layers:
            shape = self._committed_layout(L.activations_key(layer), L.activation_hashes_key(layer))
            activations[layer] = {
                "width": shape[-1] if shape else None,
                "steps": int(np.count_nonzero(self._row_hashes(L.activation_hashes_key(layer))))}
        return {"predictions": predictions, "labels": self.probe_labels is not None,
                "activations": activations, "layers": self.probe_layers}

    @property
    def has_activations(self) -> bool:
        """Whether every committed step (at least one) has activations of every layer."""
        hashes = self.activation_hashes
        return bool(hashes.size) and bool(np.all(hashes != 0))

    def read_activations(self, layer: str, steps: Iterable[int] | None = None) -> np.ndarray:
        """Inputs of ``layer`` on the probe set at ``steps`` (default: all committed), float32
        (len(steps), N, H). A :class:`StoreError` if the run has none of that layer, or naming the
        steps that lack them."""
        rows = self.rows(steps)
        layers = self.activation_layers
        if layer not in layers:
            raise StoreError(no_activations(self.name, layer, layers))
        index = np.arange(len(self._steps))[rows]
        hashes = self._row_hashes(L.activation_hashes_key(layer))
        missing = self._steps[index[hashes[index] == 0]]
        if len(missing):
            raise StoreError(no_activations(self.name, layer, layers,
                                            [str(int(s)) for s in missing]))
        arr = self._array(L.activations_key(layer))
        if isinstance(rows, slice):
            return arr[rows]
        return arr.get_orthogonal_selection((rows,))

    def write_activations(self, step: int, activations: Mapping[str, Any], *,
                          overwrite: bool = True) -> None:
        """Store the inputs {layer: (N, H)} of layers of the existing checkpoint at ``step``.

        Every layer is checked before anything is written (:class:`ProbeError`): a 2-d array of
        real numbers, no NaN/Inf (after the cast to float32), N equal to the run's probe set
        (labels, predictions, other layers) and H equal to the layer's earlier steps. Identical
        rows are a no-op; different ones overwrite (the step reads as having none of that layer
        until its new row is complete), or with ``overwrite=False`` are refused.
        """
        with self.writing():
            (row,) = np.atleast_1d(np.arange(len(self._steps))[self.rows([step])])
            checked = self._checked_activations(int(step), activations)
            if not overwrite:
                for layer, (_, digest) in checked.items():
                    current = self._row_hashes(L.activation_hashes_key(layer))[int(row)]
                    if current not in (0, digest):
                        raise ProbeError(f"run '{self.name}' step {int(step)}: already has different "
                                         f"activations of layer '{layer}' (use --replace to "
                                         "overwrite them)")
            self._record_layers(list(checked))
            for layer, probe in checked.items():
                self._set_activation_row(layer, int(row), probe)

    def _activation_layout(self, layer: str) -> tuple[int, int] | None:
        """(N, H) of the layer's committed activations, None if no committed step has any."""
        shape = self._committed_layout(L.activations_key(layer), L.activation_hashes_key(layer))
        return None if shape is None else (shape[0], shape[1])

    def _checked_activations(self, step: int, activations: Any,
                             samples: tuple[int, str] | None = None) -> dict[str, Row]:
        """Each layer's row checked and cast (see :meth:`write_activations`); ``samples``: the N
        of predictions given in the same call."""
        where = f"run '{self.name}' step {step}"
        if not isinstance(activations, Mapping) or not activations:
            raise ProbeError(f"{where}: activations must be a non-empty mapping layer → (samples, "
                             f"features) array, got {type(activations).__name__}")
        samples = self._probe_samples() or samples
        out: dict[str, Row] = {}
        for layer, value in activations.items():
            check_layer_name(layer, where)
            layout = self._activation_layout(layer)
            values = check_activations_row(value, where, layer, samples=samples,
                                           features=None if layout is None else layout[1])
            samples = samples or (values.shape[0], f"from layer '{layer}' in the same call")
            out[layer] = values, (tensor_hash(values) or 1)  # 0 means "none"
        return out

    def _record_layers(self, layers: list[str]) -> None:
        """Add new layers to the run's record before any of their rows is written (a recorded
        layer without committed rows is not listed: ``activation_layers`` looks at the hashes)."""
        recorded = self._recorded_layers()
        new = [layer for layer in layers if layer not in recorded]
        if new:
            self._internal[L.ACTIVATION_LAYERS] = recorded + new
            self._group.attrs[L.INTERNAL] = self._internal

    def _write_activation_rows(self, row: int, checked: Mapping[str, Row] | None) -> None:
        """Row ``row`` of every given layer and its hash, as part of an append (new layers are
        recorded first; ``append`` does that before any row); leftover hashes of the run's other
        layers at that row are cleared."""
        checked = checked or {}
        self._record_layers(list(checked))
        for layer in self._recorded_layers():
            self._append_row(L.activations_key(layer), L.activation_hashes_key(layer), row,
                             checked.get(layer), fresh=self._activation_layout(layer) is None)

    def _note_activation_hashes(self, row: int, checked: Mapping[str, Row] | None) -> None:
        for layer in self._recorded_layers():
            probe = (checked or {}).get(layer)
            self._note_row_hash(L.activation_hashes_key(layer), row, 0 if probe is None else probe[1])

    def _set_activation_row(self, layer: str, row: int, probe: Row | None) -> None:
        """Overwrite the activations of ``layer`` at committed row ``row`` (None: drop them)."""
        self._set_row(L.activations_key(layer), L.activation_hashes_key(layer), row, probe,
                      lambda: self._activation_layout(layer) is None)

    def _drop_activation_rows(self, row: int) -> None:
        """Drop every layer's activations at committed row ``row`` (its weights are changing)."""
        for layer in self._recorded_layers():
            self._set_activation_row(layer, row, None)

    # ------------------------------------------------------------------ layer descriptions

    @property
    def probe_layers(self) -> dict[str, dict[str, Any]]:
        """Per layer, in model order: ``{"kind": "linear"|"conv", "weight": <tensor>, "bias":
        <tensor>|None, "output": "softmax"|"sigmoid"|"tanh"|"relu"|"linear"}``, ``output`` being
        the nonlinearity that follows the layer; {} when unknown."""
        return {entry["layer"]: {k: entry[k] for k in ("kind", "weight", "bias", "output")}
                for entry in self._internal.get(L.PROBE_LAYERS, [])}

    def set_probe_layers(self, layers: Mapping[str, Mapping[str, Any]]) -> None:
        """Describe the run's layers (see :attr:`probe_layers`; replaces an earlier description).
        Weight and bias must be tensors of the run once it has checkpoints."""
        with self.writing():
            known = [t.name for t in self._tensors] or None
            checked = check_probe_layers(layers, f"run '{self.name}'", tensors=known)
            self._internal[L.PROBE_LAYERS] = [{"layer": k, **v} for k, v in checked.items()]
            self._group.attrs[L.INTERNAL] = self._internal

    @property
    def probe_inputs(self) -> str | None:
        """A digest of the probe inputs x that ``dynlab probe`` ran this run's checkpoints on (so a
        later probe with other inputs is refused, not mixed in); None when unknown."""
        return self._internal.get(L.PROBE_INPUTS)

    def set_probe_inputs(self, digest: str) -> None:
        """Record the digest of the run's probe inputs (see :attr:`probe_inputs`)."""
        with self.writing():
            if self._internal.get(L.PROBE_INPUTS) != str(digest):
                self._internal[L.PROBE_INPUTS] = str(digest)
                self._group.attrs[L.INTERNAL] = self._internal


# ---------------------------------------------------------------------- checks (shared with MemoryRun)


def check_predictions_row(predictions: Any, where: str, *, shape: tuple[int, int] | None = None,
                          dtype: np.dtype | None = None, labels: np.ndarray | None = None
                          ) -> np.ndarray:
    """``predictions`` checked as one checkpoint's class probabilities on a probe set and cast to
    the stored dtype (``dtype``; else float16 for float16 input, float32 otherwise).

    Refused with a :class:`ProbeError` starting with ``where``: not a 2-d (N, C) array of real
    numbers, an (N, C) other than ``shape``, N other than the number of ``labels`` or a label
    ≥ C, NaN/Inf, a negative value, a row whose sum is off 1 by more than 1e-3.
    """
    array = np.asarray(predictions)
    if array.dtype.kind not in "fiu":
        raise ProbeError(f"{where}: predictions must be real class probabilities, got dtype {array.dtype}")
    if array.ndim != 2 or 0 in array.shape:
        raise ProbeError(f"{where}: predictions must be (samples, classes) with none empty, got "
                         f"shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise ProbeError(f"{where}: predictions have (samples, classes) = {array.shape}, but the "
                         f"run's earlier steps have {tuple(shape)}")
    if labels is not None:
        check_labels_fit(labels, array.shape, where)
    block = max(1, 2**20 // array.shape[1])  # rows checked at a time: bounded temporaries
    for r0 in range(0, array.shape[0], block):
        part = array[r0:r0 + block]
        if not np.isfinite(part).all():
            raise ProbeError(f"{where}: predictions contain NaN or Inf")
        if (part < 0).any():
            raise ProbeError(f"{where}: predictions must be non-negative")
        sums = part.sum(axis=1, dtype=np.float64)
        i = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[i] - 1.0) > L.PROBE_SUM_TOL:
            raise ProbeError(f"{where}: predictions of sample {r0 + i} sum to {sums[i]:.6g}, not 1 "
                             f"(tolerance {L.PROBE_SUM_TOL})")
    if dtype is None:
        dtype = np.dtype(np.float16) if array.dtype == np.float16 else np.dtype(np.float32)
    return np.ascontiguousarray(array, dtype=dtype)


def check_labels_fit(labels: np.ndarray, shape: tuple[int, int], where: str) -> None:
    """Labels fit predictions of ``shape`` (N, C): N labels, each < C."""
    if len(labels) != shape[0]:
        raise ProbeError(f"{where}: predictions are for {shape[0]} samples, but the run's probe "
                         f"labels are for {len(labels)}")
    if len(labels) and int(labels.max()) >= shape[1]:
        raise ProbeError(f"{where}: probe label {int(labels.max())} is not one of the "
                         f"{shape[1]} classes")


def check_layer_name(layer: Any, where: str) -> None:
    """A layer name is a non-empty string without ``/``, not starting with ``.`` (a zarr key)."""
    if not isinstance(layer, str) or not layer or "/" in layer or layer.startswith("."):
        raise ProbeError(f"{where}: invalid layer name {layer!r} (a module name such as 'fc1' or "
                         "'features.0': no '/', not starting with '.')")


def check_activations_row(activations: Any, where: str, layer: str, *,
                          samples: tuple[int, str] | None = None,
                          features: int | None = None) -> np.ndarray:
    """One checkpoint's inputs of ``layer`` on the probe set, checked and cast to float32 (N, H).

    Refused with a :class:`ProbeError` starting with ``where``: not a 2-d array of real numbers,
    N other than ``samples`` (N and where it comes from), H other than ``features``, NaN/Inf
    (after the cast: float64 values beyond float32's range become Inf).
    """
    what = f"{where}: activations of layer '{layer}'"
    array = np.asarray(activations)
    if array.dtype.kind not in "fiu":
        raise ProbeError(f"{what} must be real numbers, got dtype {array.dtype}")
    if array.ndim != 2 or 0 in array.shape:
        raise ProbeError(f"{what} must be (samples, features) with none empty, got shape "
                         f"{array.shape}")
    if samples is not None and array.shape[0] != samples[0]:
        raise ProbeError(f"{what} are for {array.shape[0]} samples, but the run's probe set has "
                         f"{samples[0]} ({samples[1]})")
    if features is not None and array.shape[1] != features:
        raise ProbeError(f"{what} have {array.shape[1]} features, but the layer's earlier steps "
                         f"have {features}")
    with np.errstate(over="ignore"):  # beyond float32's range: Inf, refused just below
        values = np.ascontiguousarray(array, dtype=np.float32)
    block = max(1, 2**22 // array.shape[1])  # rows checked at a time: bounded temporaries
    for r0 in range(0, values.shape[0], block):
        if not np.isfinite(values[r0:r0 + block]).all():
            raise ProbeError(f"{what} contain NaN or Inf")
    return values


def check_probe_layers(layers: Any, where: str, *, tensors: list[str] | None = None
                       ) -> dict[str, dict[str, Any]]:
    """``layers`` checked as layer descriptions (see ``Run.probe_layers``) and normalised (a
    missing ``bias`` is None); ``tensors``: the run's tensor names, which weight and bias must be
    among."""
    if not isinstance(layers, Mapping):
        raise ProbeError(f"{where}: probe layers must be a mapping layer → description, got "
                         f"{type(layers).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for layer, desc in layers.items():
        check_layer_name(layer, where)
        at = f"{where}: probe layer '{layer}'"
        if not isinstance(desc, Mapping):
            raise ProbeError(f"{at} must be described by a mapping, got {type(desc).__name__}")
        unknown = sorted(set(desc) - {"kind", "weight", "bias", "output"})
        if unknown:
            raise ProbeError(f"{at}: unknown key {unknown[0]!r} (expected kind, weight, bias, output)")
        kind, weight, bias, output = (desc.get("kind"), desc.get("weight"), desc.get("bias"),
                                      desc.get("output"))
        if kind not in KINDS:
            raise ProbeError(f"{at}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if output not in OUTPUTS:
            raise ProbeError(f"{at}: output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if not isinstance(weight, str) or not weight:
            raise ProbeError(f"{at}: weight must be a tensor name, got {weight!r}")
        if bias is not None and (not isinstance(bias, str) or not bias):
            raise ProbeError(f"{at}: bias must be a tensor name or None, got {bias!r}")
        for role, name in (("weight", weight), ("bias", bias)):
            if tensors is not None and name is not None and name not in tensors:
                raise ProbeError(f"{at}: {role} '{name}' is not a tensor of the run"
                                 + did_you_mean(name, tensors))
        out[layer] = {"kind": kind, "weight": weight, "bias": bias, "output": output}
    return out
