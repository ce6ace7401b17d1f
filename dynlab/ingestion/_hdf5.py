"""HDF5 checkpoints: Keras 3 ``.weights.h5`` and ``.keras``, Keras 2 ``.h5``, any other HDF5 file.

Layouts, by what the file holds:

- Keras 2 (``model.save``/``save_weights`` to ``.h5``): ``layer_names`` on the root or on
  ``model_weights``, ``weight_names`` on each layer group. Tensors in that recorded order, named by
  their path below the layer list with ``:0`` dropped (``dense.dense.kernel``).
- Anything else, Keras 3 included (``.weights.h5``, and ``model.weights.h5`` read from inside a
  ``.keras`` zip without extracting): every numeric dataset, named by its path
  (``layers/dense/vars/0`` → ``layers.dense.vars.0``), in creation order where the file tracks
  it, else in natural order of names (``dense_2`` before ``dense_10``). Keras 3 tracks none: its
  files record no layer order beyond the names Keras numbers per class (``dense``, ``dense_1``).

Top-level ``optimizer``/``optimizer_weights`` groups are skipped. Two-byte opaque datasets are
bfloat16 (how Keras writes them; Keras 3 also tags them ``dtype="bfloat16"``) and are widened to
float32. Step: a ``global_step``/``step``/``epoch`` integer attribute (or scalar dataset) at the
root; metrics: numeric root attributes named like metrics (``loss``, ``val_acc``).
Datasets are read one at a time when streamed.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import Checkpoint, TensorItem, bfloat16_to_float32, one_line
from dynlab.ingestion._safetensors import STEP_KEYS, step_and_metrics

KERAS_MEMBER = "model.weights.h5"
_SKIPPED = {"optimizer", "optimizer_weights"}
_SUFFIX = re.compile(r":\d+$")
_TOP_LEVEL = "top_level_model_weights"


def open_hdf5(path: Path) -> Checkpoint:
    """Open an HDF5 file or ``.keras`` archive; layout and tensor list are read now, data later."""
    path = Path(path)
    handles: list[Any] = []

    def close() -> None:
        for handle in reversed(handles):
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                handle.close()
        handles.clear()

    try:
        f = _open_file(path, handles)
        entries = _entries(path, f)
        attrs = _root_scalars(f)
    except CheckpointError:
        close()
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as exc:
        close()
        raise CheckpointError(f"{path}: not a readable HDF5 checkpoint ({one_line(exc)})") from None
    step, metrics = step_and_metrics(attrs)

    def tensors() -> Iterator[TensorItem]:
        for name, dataset in entries:
            try:
                array, source = _read(dataset)
            except (TypeError, zipfile.BadZipFile, zlib.error) as exc:
                raise CheckpointError(f"{path}: cannot read '{name}' ({one_line(exc)})") from None
            yield name, array, source

    return Checkpoint(path, "hdf5", tensors, step=step, metrics=metrics,
                      nbytes=path.stat().st_size, close=close)


def _open_file(path: Path, handles: list[Any]) -> h5py.File:
    with open(path, "rb") as raw:
        is_zip = raw.read(4) == b"PK\x03\x04"
    if not is_zip:
        handles.append(h5py.File(path, "r"))
        return handles[-1]
    archive = zipfile.ZipFile(path)
    handles.append(archive)
    if KERAS_MEMBER not in archive.namelist():
        raise CheckpointError(f"{path}: a zip without {KERAS_MEMBER} (not a .keras archive)")
    info = archive.getinfo(KERAS_MEMBER)
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        handles.append(_StoredMember(path, info))
    else:
        handles.append(archive.open(KERAS_MEMBER))  # seekable, but a seek back re-inflates
    handles.append(h5py.File(handles[-1], "r"))
    return handles[-1]


class _StoredMember(io.RawIOBase):
    """An uncompressed zip member as a read-only file with O(1) seeks, for h5py to stream from.

    (``ZipFile.open`` would do, but before Python 3.12 its every backward seek re-reads the member
    from its start, and HDF5 seeks back and forth.)
    """

    def __init__(self, path: Path, info: zipfile.ZipInfo):
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._size, self._pos = info.file_size, 0
        try:
            self._f.seek(info.header_offset)
            header = self._f.read(30)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local header of {info.filename}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            self._start = info.header_offset + 30 + name_len + extra_len
            if self._start + self._size > self._f.seek(0, 2):
                raise zipfile.BadZipFile(f"{info.filename} is truncated")
        except BaseException:
            self._f.close()
            raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(view[:n]) if n else 0
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def _entries(path: Path, f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    """(name, dataset) of every tensor, in the order of the file's layout."""
    legacy = f["model_weights"] if isinstance(f.get("model_weights"), h5py.Group) else f
    keras2 = "layer_names" in legacy.attrs
    entries = _keras2(path, legacy) if keras2 else list(_walk(f["/"], ""))
    if not entries:
        raise CheckpointError(f"{path}: holds no numeric datasets")
    return entries


def _keras2(path: Path, group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    entries = []
    layers = _strings(group.attrs["layer_names"])
    if isinstance(group.get(_TOP_LEVEL), h5py.Group) and _TOP_LEVEL not in layers:
        layers.append(_TOP_LEVEL)  # Keras 3's legacy writer: the model's own variables
    for layer in layers:
        layer_group = group.get(layer)
        if not isinstance(layer_group, h5py.Group):
            raise CheckpointError(f"{path}: layer '{layer}' is listed but has no group")
        for weight in _strings(layer_group.attrs.get("weight_names", [])):
            dataset = layer_group.get(weight)
            if not isinstance(dataset, h5py.Dataset):
                raise CheckpointError(f"{path}: weight '{layer}/{weight}' is listed but missing")
            if _readable(dataset):
                parts = f"{layer}/{weight}".split("/")
                entries.append((".".join(_SUFFIX.sub("", p) for p in parts if p), dataset))
    return entries


def _walk(group: h5py.Group, prefix: str) -> Iterator[tuple[str, h5py.Dataset]]:
    for key in _ordered(group):
        item = group.get(key)  # None for a dangling soft link
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if not prefix and (text in _SKIPPED or (text in STEP_KEYS and _is_scalar(item))):
            continue
        name = f"{prefix}{text}"
        if isinstance(item, h5py.Group):
            yield from _walk(item, f"{name}.")
        elif isinstance(item, h5py.Dataset) and _readable(item):
            yield name.replace("/", "."), item


def _ordered(group: h5py.Group) -> list[str]:
    """Member names in creation order if the group tracks it, else in natural order."""
    if group.id.get_create_plist().get_link_creation_order() & h5py.h5p.CRT_ORDER_TRACKED:
        return list(group.keys())  # h5py iterates tracked groups in creation order

    def key(k: str | bytes) -> list[int | str]:
        text = k.decode("utf-8", "replace") if isinstance(k, bytes) else k
        parts = re.split(r"(\d+)", text)  # text, digits, text, …: odd parts compare as numbers
        return [int(t) if i % 2 else t for i, t in enumerate(parts)]

    return sorted(group.keys(), key=key)


def _is_bfloat16(dataset: h5py.Dataset) -> bool:
    dtype = dataset.dtype
    if dtype.itemsize != 2:
        return False
    if dtype.kind == "V" and dtype.names is None:
        return True
    tag = dataset.attrs.get("dtype")  # Keras 3 tags its bfloat16 datasets
    return isinstance(tag, (str, bytes)) and tag in ("bfloat16", b"bfloat16")


def _readable(dataset: h5py.Dataset) -> bool:
    return dataset.shape is not None and (dataset.dtype.kind in "biufc" or _is_bfloat16(dataset))


def _is_scalar(item: object) -> bool:
    return isinstance(item, h5py.Dataset) and item.shape == () and item.dtype.kind in "iu"


def _read(dataset: h5py.Dataset) -> tuple[np.ndarray, str]:
    array = np.asarray(dataset[()])
    if _is_bfloat16(dataset):
        return bfloat16_to_float32(array.view("<u2")), "bfloat16"
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array, array.dtype.name


def _root_scalars(f: h5py.File) -> dict[str, object]:
    """Root attributes and root scalar step datasets as Python scalars and strings."""
    out: dict[str, object] = {}
    for key, value in f.attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (str, int, float)):
            out[key] = value
    for key in STEP_KEYS:
        if key not in out and _is_scalar(f.get(key)):
            out[key] = int(f[key][()])
    return out


def _strings(values: object) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v)
            for v in np.atleast_1d(np.asarray(values)).tolist()]
