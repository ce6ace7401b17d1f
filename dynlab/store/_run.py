"""One training run in the store: committed checkpoints, read access, and the append protocol.

Commit protocol (DESIGN.md): every per-step array is written at row ``T`` first (params, metrics,
hashes, probe predictions and activations with their hashes), then ``step`` is resized to
``T + 1`` and ``step[T]`` written. Zarr (≥ 3.1.3) writes each object atomically (write to a
temporary file, then rename), so a reader always sees either the old or the new ``step``. A crash
between the resize and the value leaves ``step[T]`` at its fill value, :data:`STEP_SENTINEL`, which
readers do not count. Rows at or beyond the committed length are leftovers of an interrupted
write: never read, and overwritten by the next append.

Probe data (predictions, labels, activations, layer descriptions) lives in
:mod:`dynlab.store._probe`, a mixin of :class:`Run`: each probe row has a hash that records that it
is complete (0: the step has none).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dynlab.errors import (
    CheckpointError,
    DuplicateContentWarning,
    NonFiniteWarning,
    StoreError,
)
from dynlab.store import _layout as L
from dynlab.store._hash import tensor_hash
from dynlab.store._listing import child_names
from dynlab.store._lock import RunLock
from dynlab.store._messages import did_you_mean as _did_you_mean
from dynlab.store._messages import shown_names as _names
from dynlab.store._probe import ProbeData
from dynlab.store._stats import tensor_stats
from dynlab.store._writes import RowWrites

if TYPE_CHECKING:
    import xarray as xr
    import zarr

    from dynlab.store._store import Store


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of a run: its name, per-checkpoint shape, stored dtype and the source's dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    source_dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "source_dtype": self.source_dtype}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorInfo:
        return cls(d["name"], tuple(d["shape"]), d["dtype"], d["source_dtype"])


#: What ``Run.append`` accepts for tensors: a mapping name → array, or an iterable of
#: ``(name, array)``, ``(name, array, source_dtype)`` or ``(name, array, source_dtype, done)``
#: (readers stream these; ``done()`` is called once the tensor is stored, so a reader can release
#: the memory behind ``array``).
Tensors = Mapping[str, Any] | Iterable[tuple]


class Run(ProbeData):
    """A run of the store: a snapshot of its committed checkpoints, taken at open or ``refresh()``.

    Reading never blocks and never sees uncommitted rows. Probe data (predictions, labels,
    activations, layer descriptions) comes from :class:`~dynlab.store._probe.ProbeData`. Writing
    (``append``, ``replace``, ``update_attrs``, the probe writes) takes the run's writer lock for
    the duration of the call, or for the duration of a ``with run.writing():`` block.
    """

    def __init__(self, store: Store, name: str, group: zarr.Group):
        self._store = store
        self.name = name
        self._group = group
        local = store.local_path
        self._directory = local / L.RUNS / name if local else None
        self._lock = RunLock(self._directory, name, str(store))
        self._arrays: dict[str, zarr.Array] = {}
        self._writes = RowWrites()
        self.refresh()

    # ------------------------------------------------------------------ reading

    def refresh(self) -> None:
        """Re-read the run's committed state (new checkpoints appended by other writers)."""
        import zarr

        self._group = zarr.open_group(self._group.store, path=self._group.path,
                                      mode="r" if self._store.read_only else "r+")
        self._arrays.clear()
        attrs = dict(self._group.attrs)
        self._internal: dict[str, Any] = dict(attrs.pop(L.INTERNAL, {}))
        self._internal_dirty = False  # bookkeeping changed in memory, not yet in the run's attrs
        self._user_attrs = attrs
        self._tensors = [TensorInfo.from_json(t) for t in self._internal.get("tensors", [])]
        self._steps = self._committed_steps()
        self._hashes: np.ndarray | None = None  # read on first use, then kept up to date
        self._hash_rows: dict[str, np.ndarray] = {}  # probe row hashes by array, likewise

    def _committed_steps(self) -> np.ndarray:
        if L.STEP not in self._group:
            return np.zeros(0, dtype=np.int64)
        values = np.asarray(self._array(L.STEP)[:], dtype=np.int64)
        if len(values) and values[-1] == L.STEP_SENTINEL:
            values = values[:-1]
        return values

    def __repr__(self) -> str:
        return f"<dynlab.Run {self.name!r}: {len(self._steps)} checkpoints, {len(self._tensors)} tensors>"

    @property
    def steps(self) -> np.ndarray:
        """Committed steps, increasing (int64, shape (T,))."""
        return self._steps.copy()

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def tensors(self) -> list[TensorInfo]:
        """The run's tensors in source order."""
        return list(self._tensors)

    @property
    def attrs(self) -> dict[str, Any]:
        """User metadata of the run (width, lr, seed, group, …)."""
        return dict(self._user_attrs)

    @property
    def info(self) -> dict[str, Any]:
        """dynlab's bookkeeping: source, framework, tensors, non-finite reports, sources per step."""
        return dict(self._internal)

    @property
    def n_params(self) -> int:
        return sum(t.size for t in self._tensors)

    def tensor(self, name: str) -> TensorInfo:
        return find_tensor(self._tensors, name, self.name)

    def rows(self, steps: Iterable[int] | None) -> np.ndarray | slice:
        """Row indices of ``steps`` (all committed rows if None)."""
        if steps is None:
            return slice(0, len(self._steps))
        idx = step_rows(self._steps, steps, self.name)
        if len(idx) and np.all(np.diff(idx) == 1):
            return slice(int(idx[0]), int(idx[-1]) + 1)
        return idx

    def read(self, tensor: str, steps: Iterable[int] | None = None, *,
             part: slice | None = None) -> np.ndarray:
        """Values of one tensor at ``steps`` (default: all), shape ``(len(steps), *shape)``;
        with ``part``, only that slice of the tensor's first axis: ``(len(steps), part, *shape[1:])``.

        Only the chunks of that tensor at those steps (and rows) are read.
        """
        info = self.tensor(tensor)  # validates the name
        rows = self.rows(steps)
        arr = self._array(f"{L.PARAMS}/{tensor}")
        selection = (rows,) if part is None else (rows, check_part(part, info))
        if isinstance(rows, slice):
            return arr[selection]
        return arr.get_orthogonal_selection(selection)

    def chunk_rows(self, tensor: str) -> int:
        """Rows of the tensor's first axis in one stored chunk (readers of ``part`` align to it)."""
        arr = self._array(f"{L.PARAMS}/{self.tensor(tensor).name}")
        return int(arr.chunks[1]) if arr.ndim > 1 else 1

    def checkpoint(self, step: int) -> dict[str, np.ndarray]:
        """All tensors of the checkpoint at ``step``, by name in source order."""
        (row,) = np.atleast_1d(np.arange(len(self._steps))[self.rows([step])])
        return {t.name: self._array(f"{L.PARAMS}/{t.name}")[int(row)] for t in self._tensors}

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """Per-step metrics, float64 (T,), NaN where a step has no value."""
        n = len(self._steps)
        return {name: np.asarray(self._array(f"{L.METRICS}/{name}")[:n], dtype=np.float64)
                for name in self._metric_names()}

    def _metric_names(self) -> list[str]:
        return child_names(self._group, self._directory, L.METRICS, "array")

    @property
    def stats(self) -> np.ndarray | None:
        """Per-step statistics of every tensor, float64 (T, K, 4), K in source order: the smallest
        and largest finite value, the mean and m2 = Σ(x − mean)² (written at ingest). None when
        the store holds them for some steps only (a run ingested by an older dynlab): then
        readers compute them from the data. A single tensor's row may be all NaN (an empty, complex
        or all-NaN tensor has no finite statistics); a step is missing only when every row is."""
        if L.STATS not in self._group:
            return None
        stats = np.asarray(self._array(L.STATS)[: len(self._steps)])
        missing = np.isnan(stats).all(axis=(1, 2))
        return None if len(stats) != len(self._steps) or missing.any() else stats

    @property
    def hashes(self) -> np.ndarray:
        """Content hash of every tensor at every step, uint64 (T, K), K in source order."""
        if self._hashes is None:
            if L.HASHES in self._group:
                self._hashes = self._array(L.HASHES)[: len(self._steps)]
            else:
                self._hashes = np.zeros((0, len(self._tensors)), dtype=np.uint64)
        return self._hashes.copy()

    def result(self, analyzer: str) -> xr.Dataset:
        """The stored result of ``analyzer`` for this run."""
        return self._store.result(analyzer, self.name)

    def _array(self, key: str) -> zarr.Array:
        arr = self._arrays.get(key)
        if arr is None:
            arr = self._arrays[key] = self._group[key]
        return arr

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def writing(self) -> Iterator[Run]:
        """Hold the run's writer lock for a block of writes (one writer per run)."""
        self._store._require_writable()
        if self._lock.held:
            yield self
            return
        self._lock.acquire()
        try:
            self._store._cleanup_partial(self.name)
            self.refresh()
            yield self
        finally:
            self._lock.release()

    def update_attrs(self, **attrs: Any) -> None:
        """Set user metadata (JSON-serialisable values)."""
        if L.INTERNAL in attrs:
            raise StoreError(f"'{L.INTERNAL}' is a reserved run attribute")
        with self.writing():
            self._group.attrs.update(attrs)
            self._user_attrs.update(attrs)

    def update_info(self, **info: Any) -> None:
        """Set dynlab's own bookkeeping entries (source, framework, …); not for user metadata."""
        with self.writing():
            self._internal.update(info)
            self._group.attrs[L.INTERNAL] = self._internal

    def append(self, step: int, tensors: Tensors, metrics: Mapping[str, float] | None = None,
               *, source: Mapping[str, Any] | None = None, predictions: Any = None,
               activations: Mapping[str, Any] | None = None) -> None:
        """Write one checkpoint and commit it by appending ``step``.

        ``tensors`` is streamed: each array is written as it arrives, so memory stays near the
        largest tensor. The first checkpoint fixes the run's tensor names, shapes and dtypes; later
        ones must match. ``predictions`` (N, C): class probabilities of this checkpoint on the
        run's probe set, written as row T of ``probe/predictions`` before the commit (checked
        first, see :meth:`write_predictions`); ``activations`` {layer: (N, H)}: the layers' inputs
        on it, likewise (see :meth:`write_activations`). On any error nothing is committed.
        """
        step = int(step)
        if step == L.STEP_SENTINEL:
            raise CheckpointError(f"step {step} is reserved (it marks an uncommitted slot)")
        with self.writing():
            n = len(self._steps)
            if n and step <= self._steps[-1]:
                if step in self._steps:
                    raise CheckpointError(f"run '{self.name}' already has step {step}")
                raise CheckpointError(
                    f"step {step} is earlier than the last step {int(self._steps[-1])} of run "
                    f"'{self.name}'; a run's checkpoints are appended in step order")
            probe, acts = self._checked_probe(step, predictions, activations)
            self._record_layers(list(acts or {}))  # new layers are recorded before any row
            with self._rows_written():
                hashes, stats, nonfinite = self._write_tensors(n, tensors, first=(n == 0))
                self._write_row_extras(n, hashes, stats, metrics)
                self._write_probe_row(n, probe)
                self._write_activation_rows(n, acts)
            self._record(step, nonfinite, source)
            earlier = self.hashes[:n] if n else np.zeros((0, len(hashes)), dtype=np.uint64)
            self._commit(n, step)
            self._note_probe_hash(n, 0 if probe is None else probe[1])
            self._note_activation_hashes(n, acts)
            self._hashes = np.vstack([earlier, hashes[None, :]])
            self._warn_duplicates(n, earlier, hashes)

    def replace(self, step: int, tensors: Tensors, metrics: Mapping[str, float] | None = None,
                *, source: Mapping[str, Any] | None = None, predictions: Any = None,
                activations: Mapping[str, Any] | None = None) -> None:
        """Overwrite the checkpoint at an existing ``step``.

        ``tensors`` is streamed into the run's uncommitted slot first (where the next append would
        go; readers never see it) and checked whole there, so a checkpoint that does not fit the
        run (a shape, a tensor missing or added) is refused with the step untouched. Only then is
        it copied over the step, tensor by tensor. That copy is not atomic: a crash in it can
        leave the one step with mixed content (its stored hashes then disagree with its data).
        Other steps are never touched. The step's stored probe predictions and activations
        belong to the old weights: they are dropped, or replaced by ``predictions`` and
        ``activations``.
        """
        with self.writing():
            (row,) = np.atleast_1d(np.arange(len(self._steps))[self.rows([step])])
            probe, acts = self._checked_probe(int(step), predictions, activations)
            staging = len(self._steps)
            with self._rows_written():
                hashes, stats, nonfinite = self._write_tensors(staging, tensors, first=False)
            self._set_probe_row(int(row), None)  # stale from here on, even if the copy dies
            self._drop_activation_rows(int(row))
            with self._rows_written():
                for t in self._tensors:
                    key = f"{L.PARAMS}/{t.name}"
                    self._write_row(key, int(row), np.asarray(self._array(key)[staging]),
                                    create=False)
                self._write_row_extras(int(row), hashes, stats, metrics)
            if probe is not None:
                self._set_probe_row(int(row), probe)
            if acts:
                self._record_layers(list(acts))
                for layer, row_values in acts.items():
                    self._set_activation_row(layer, int(row), row_values)
            self._hashes = None
            self._record(int(step), nonfinite, source)

    def _checked_probe(self, step: int, predictions: Any, activations: Any):
        """The checked predictions and activations of one append or replace (None: not given);
        activations must be for as many samples as predictions given with them."""
        probe = None if predictions is None else self._checked_predictions(step, predictions)
        samples = None if probe is None else (len(probe[0]), "from the predictions given with them")
        acts = (None if activations is None
                else self._checked_activations(step, activations, samples=samples))
        return probe, acts

    def same_content(self, step: int, tensors: Tensors) -> bool:
        """Whether ``tensors`` equal the stored checkpoint at ``step``, compared by content hash.

        Streams like ``append``: one tensor in memory at a time.
        """
        (row,) = np.atleast_1d(np.arange(len(self._steps))[self.rows([step])])
        stored = self.hashes[int(row)]
        index = {t.name: i for i, t in enumerate(self._tensors)}
        seen = set()
        items: Iterable[tuple] = tensors.items() if isinstance(tensors, Mapping) else tensors
        for item in items:
            i = index.get(str(item[0]))
            array = np.asarray(item[1])
            if i is None or tuple(array.shape) != self._tensors[i].shape:
                return False
            same = tensor_hash(array.astype(self._tensors[i].dtype, copy=False)) == stored[i]
            if len(item) > 3 and item[3] is not None:
                item[3]()
            if not same:
                return False
            seen.add(i)
        return len(seen) == len(index)

    def _warn_duplicates(self, row: int, earlier: np.ndarray, hashes: np.ndarray) -> None:
        if row == 0:
            return
        same = np.flatnonzero(np.all(earlier == hashes, axis=1))
        if len(same):
            steps = ", ".join(str(int(s)) for s in self._steps[same][:5])
            warnings.warn(
                f"run '{self.name}': step {int(self._steps[row])} holds the same weights as step "
                f"{steps} (a mislabelled duplicate checkpoint?)", DuplicateContentWarning,
                stacklevel=4)

    @contextlib.contextmanager
    def _rows_written(self) -> Iterator[None]:
        """Rows are written in the background; leave the block only once all are on disk."""
        try:
            yield
            self._writes.wait()
        except BaseException:
            self._writes.abandon()  # nothing of this attempt may land after we return
            raise

    def _write_tensors(self, row: int, tensors: Tensors, *, first: bool
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        items: Iterable[tuple] = tensors.items() if isinstance(tensors, Mapping) else tensors
        schema = {} if first else {t.name: t for t in self._tensors}
        seen: dict[str, TensorInfo] = {}
        digests: dict[str, int] = {}
        stats: dict[str, np.ndarray] = {}
        nonfinite: dict[str, str] = {}
        for item in items:
            name, value = str(item[0]), item[1]
            array = np.asarray(value)
            source_dtype = str(item[2]) if len(item) > 2 else array.dtype.name
            if name in seen:
                raise CheckpointError(f"tensor '{name}' appears twice in one checkpoint")
            if not name or "/" in name or name.startswith("."):
                raise CheckpointError(f"invalid tensor name {name!r} (no '/', not starting with '.')")
            info = self._check_tensor(name, array, source_dtype, schema, first)
            array = array.astype(info.dtype, copy=False)
            done = item[3] if len(item) > 3 else None
            self._write_row(f"{L.PARAMS}/{name}", row, array, create=first, done=done)
            seen[name] = info
            digests[name] = tensor_hash(array)
            stats[name], all_finite = tensor_stats(array)
            if not all_finite:
                nonfinite[name] = _nonfinite_summary(array)
        if not seen:
            raise CheckpointError("the checkpoint holds no tensors")
        if not first:
            missing = [n for n in schema if n not in seen]
            if missing:
                raise CheckpointError(
                    f"tensors missing relative to run '{self.name}': {_names(missing)}")
        else:
            self._tensors = list(seen.values())
            self._internal["tensors"] = [t.to_json() for t in self._tensors]
            self._internal_dirty = True
        order = [t.name for t in self._tensors]
        return (np.array([digests[n] for n in order], dtype=np.uint64),
                np.stack([stats[n] for n in order]), nonfinite)

    def _check_tensor(self, name: str, array: np.ndarray, source_dtype: str,
                      schema: Mapping[str, TensorInfo], first: bool) -> TensorInfo:
        if array.dtype == object or array.dtype.kind not in "biufc":
            raise CheckpointError(f"tensor '{name}' has unsupported dtype {array.dtype}")
        if first:
            return TensorInfo(name, tuple(int(s) for s in array.shape), array.dtype.name,
                              source_dtype)
        info = schema.get(name)
        if info is None:
            raise CheckpointError(
                f"tensor '{name}' is not in run '{self.name}' (added relative to its earlier "
                "checkpoints)")
        if tuple(array.shape) != info.shape:
            raise CheckpointError(
                f"tensor '{name}' has shape {tuple(array.shape)}, but run '{self.name}' stores "
                f"{info.shape}")
        if not np.can_cast(array.dtype, info.dtype, casting="same_kind") or (
                array.dtype.kind != np.dtype(info.dtype).kind):
            raise CheckpointError(
                f"tensor '{name}' has dtype {array.dtype}, but run '{self.name}' stores {info.dtype}")
        return info

    def _write_row(self, key: str, row: int, value: np.ndarray, *, create: bool,
                   fill_value: Any = 0, done: Callable[[], None] | None = None) -> None:
        arr = None if create else self._arrays.get(key)
        if arr is None and not create and key in self._group:
            arr = self._arrays[key] = self._group[key]
        if arr is None:
            capacity = L.grown_capacity(0, row + 1)
            arr = self._group.create_array(
                key, shape=(capacity, *value.shape), dtype=value.dtype,
                chunks=L.row_chunks(value.shape, value.dtype.itemsize),
                compressors=L.compressors(), fill_value=fill_value, overwrite=True)
            self._arrays[key] = arr
        elif arr.shape[0] <= row:
            arr.resize((L.grown_capacity(arr.shape[0], row + 1), *arr.shape[1:]))
        self._writes.submit(arr, row, value, done)

    def _write_row_extras(self, row: int, hashes: np.ndarray, stats: np.ndarray,
                          metrics: Mapping[str, float] | None) -> None:
        fresh = row == 0 and len(self._steps) == 0
        self._write_row(L.HASHES, row, hashes, create=fresh)
        self._write_row(L.STATS, row, stats, fill_value=np.nan,
                        create=fresh or not self._has_array(L.STATS))
        metrics = {metric_key(k): float(v) for k, v in (metrics or {}).items() if v is not None}
        existing = self._metric_names()
        for name in sorted(set(existing) | set(metrics)):
            self._write_row(f"{L.METRICS}/{name}", row,
                            np.asarray(metrics.get(name, np.nan), dtype=np.float64),
                            create=name not in existing, fill_value=np.nan)

    def _record(self, step: int, nonfinite: Mapping[str, str],
                source: Mapping[str, Any] | None) -> None:
        internal = self._internal
        before = (dict(internal.get("nonfinite", {})), dict(internal.get("sources", {})))
        bad = {k: v for k, v in internal.get("nonfinite", {}).items() if int(k) != step}
        if nonfinite:
            bad[str(step)] = dict(nonfinite)
            warnings.warn(
                f"run '{self.name}' step {step}: non-finite values in "
                + ", ".join(f"{k} ({v})" for k, v in nonfinite.items()),
                NonFiniteWarning, stacklevel=4)
        internal["nonfinite"] = bad
        if source is not None:
            internal.setdefault("sources", {})[str(step)] = dict(source)
        if self._internal_dirty or before != (bad, internal.get("sources", {})):
            self._group.attrs[L.INTERNAL] = internal  # one metadata write, only when it changed
            self._internal_dirty = False

    def _has_array(self, key: str) -> bool:
        """Whether the run holds array ``key`` (asked of the store once, then remembered)."""
        return key in self._arrays or key in self._group

    def _commit(self, row: int, step: int) -> None:
        if row == 0 or not self._has_array(L.STEP):
            arr = self._group.create_array(L.STEP, shape=(0,), dtype="int64", chunks=(4096,),
                                           fill_value=L.STEP_SENTINEL, overwrite=True)
            self._arrays[L.STEP] = arr
        arr = self._array(L.STEP)
        arr.resize((row + 1,))
        arr[row] = step
        self._steps = np.append(self._steps[:row], np.int64(step))


def check_part(part: slice, info: TensorInfo) -> slice:
    """``part`` checked: a slice of a tensor with at least one axis, step 1."""
    if not info.shape:
        raise ValueError(f"tensor '{info.name}' is a scalar: it has no first axis to slice")
    if not isinstance(part, slice) or part.step not in (None, 1):
        raise ValueError(f"part must be a slice of consecutive rows, got {part!r}")
    return part


def find_tensor(tensors: Iterable[TensorInfo], name: str, run: str) -> TensorInfo:
    """The tensor called ``name``; a :class:`StoreError` naming ``run`` and a close match."""
    tensors = list(tensors)
    for t in tensors:
        if t.name == name:
            return t
    raise StoreError(f"run '{run}' has no tensor '{name}'"
                     + _did_you_mean(name, [t.name for t in tensors]))


def step_rows(steps: np.ndarray, wanted: Iterable[int] | int, run: str) -> np.ndarray:
    """Row index of each of ``wanted`` in the increasing array ``steps``; a
    :class:`StoreError` naming ``run`` and the first missing step otherwise."""
    if isinstance(wanted, (int, np.integer, np.ndarray)):
        wanted = np.atleast_1d(np.asarray(wanted, dtype=np.int64))
    else:
        wanted = np.asarray(list(wanted), dtype=np.int64)
    idx = np.searchsorted(steps, wanted)
    found = idx < len(steps)
    found[found] = steps[idx[found]] == wanted[found]
    if not found.all():
        raise StoreError(f"run '{run}' has no checkpoint at step {int(wanted[~found][0])}")
    return idx


def _nonfinite_summary(array: np.ndarray) -> str:
    nan = int(np.isnan(array).sum())
    inf = int(np.isinf(array).sum())
    return ", ".join(p for p in (f"{nan} NaN" if nan else "", f"{inf} Inf" if inf else "") if p)


def metric_key(name: str) -> str:
    """The array name a metric is stored under: ``/`` (``train/loss``) becomes ``.``."""
    key = str(name).replace("/", ".").strip()
    if not key or key.startswith(".") or key in (".", ".."):
        raise CheckpointError(f"invalid metric name {name!r}")
    return key
