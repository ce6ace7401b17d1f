"""safetensors files, parsed by hand.

The ``safetensors`` numpy API cannot return bfloat16 (numpy has no such dtype) and loads whole
files, so the format is read directly. It is small and documented: an 8-byte little-endian header
length N, N bytes of JSON ``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
{str: str}}``, then the data buffer (offsets relative to its start). The file is memory-mapped and
each tensor is yielded as a read-only view of the map, in data-offset order (the order written).
bfloat16 and float8 tensors are widened to float32 and keep their source dtype.

Step: ``__metadata__`` ``global_step``, ``step`` or ``epoch`` (in that order) holding an integer.
Metrics: ``__metadata__`` values that parse as numbers, under keys that name a metric (a word such
as ``loss``, ``acc``, ``f1``, or a ``train_``/``eval_``/``val_``/``test_`` prefix). Other
metadata (``format``, model config numbers) is not a per-step metric and is ignored.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import Checkpoint, TensorItem, bfloat16_to_float32, one_line
from dynlab.ingestion._pages import release_mmap_range

#: the safetensors library refuses headers above this size, and so do we
MAX_HEADER = 100_000_000

#: safetensors dtype → numpy dtype of the stored bytes (little-endian)
_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?", "C64": "<c8",
}
#: dtypes numpy lacks: raw storage, and the name kept as the tensor's source dtype
_WIDENED = {"BF16": ("<u2", "bfloat16"), "F8_E4M3": ("u1", "float8_e4m3fn"),
            "F8_E5M2": ("u1", "float8_e5m2"), "F8_E8M0": ("u1", "float8_e8m0fnu")}

STEP_KEYS = ("global_step", "step", "epoch")
_METRIC_WORDS = {"loss", "acc", "accuracy", "error", "err", "perplexity", "ppl", "f1", "bleu",
                 "rouge", "auc", "precision", "recall", "mse", "mae", "rmse", "reward", "score",
                 "top1", "top5", "lr", "grad_norm", "learning_rate", "metric"}
_METRIC_PREFIXES = ("train_", "eval_", "val_", "valid_", "test_")


@dataclass(frozen=True)
class _Entry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def open_safetensors(path: Path) -> Checkpoint:
    """Open a ``.safetensors`` file: header validated now, tensors streamed from a memory map."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            entries, metadata, data_start = _read_header(path, f, size)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({one_line(exc)})") from None

    def tensors() -> Iterator[TensorItem]:
        for e in entries:
            array, source = _array(path, mm, data_start, e)
            yield e.name, array, source, _releaser(mm, data_start + e.begin, e.end - e.begin)

    def close() -> None:
        # arrays still viewing the map keep it alive: it is unmapped when the last one is freed
        with contextlib.suppress(BufferError):
            mm.close()

    step, metrics = step_and_metrics(metadata)
    return Checkpoint(path, "safetensors", tensors, step=step, metrics=metrics, nbytes=size,
                      close=close)


def _releaser(mm: mmap.mmap, offset: int, nbytes: int):
    """Once stored, the tensor's pages of the mapped file need not stay resident."""
    def release() -> None:
        with contextlib.suppress(ValueError):  # the map was closed meanwhile: nothing to release
            release_mmap_range(mm, offset, nbytes)
    return release


def read_header(path: Path) -> tuple[list[str], dict[str, str]]:
    """Tensor names (in data order) and ``__metadata__`` of a safetensors file; no data read."""
    try:
        with open(path, "rb") as f:
            entries, metadata, _ = _read_header(path, f, f.seek(0, 2))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({one_line(exc)})") from None
    return [e.name for e in entries], metadata


def _read_header(path: Path, f, size: int) -> tuple[list[_Entry], dict[str, str], int]:
    if size < 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
    f.seek(0)
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file (header of {n} bytes, "
                              f"file of {size})")
    if n > MAX_HEADER:
        raise CheckpointError(f"{path}: safetensors header of {n} bytes exceeds {MAX_HEADER}")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({one_line(exc)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (__metadata__ is no object)")
    data_len = size - 8 - n
    entries = [_entry(path, name, info, data_len) for name, info in header.items()]
    entries.sort(key=lambda e: e.begin)  # stable: zero-size tensors keep their header order
    return entries, metadata, 8 + n


def _entry(path: Path, name: str, info: object, data_len: int) -> _Entry:
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: corrupt safetensors header (tensor '{name}': {why})")

    if not isinstance(info, dict):
        raise bad("entry is no object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad(f"invalid dtype {dtype!r}")
    if dtype not in _NUMPY and dtype not in _WIDENED:  # F4, F6_*: sub-byte packed floats
        raise CheckpointError(f"{path}: tensor '{name}' has dtype {dtype}, which dynlab cannot read")
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
        raise bad(f"invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets))
            or not 0 <= offsets[0] <= offsets[1]):
        raise bad(f"invalid data_offsets {offsets!r}")
    begin, end = offsets
    if end > data_len:
        raise CheckpointError(f"{path}: truncated safetensors file (tensor '{name}' ends at byte "
                              f"{end} of the data, which holds {data_len})")
    itemsize = np.dtype(_NUMPY[dtype] if dtype in _NUMPY else _WIDENED[dtype][0]).itemsize
    if end - begin != math.prod(shape) * itemsize:
        raise bad(f"{end - begin} bytes for shape {shape} of {dtype}")
    return _Entry(name, dtype, tuple(shape), begin, end)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _array(path: Path, mm: mmap.mmap, start: int, e: _Entry) -> tuple[np.ndarray, str]:
    raw_dtype, source = (_NUMPY[e.dtype], None) if e.dtype in _NUMPY else _WIDENED[e.dtype]
    count = math.prod(e.shape)
    if count == 0:
        raw = np.zeros(e.shape, dtype=raw_dtype)
    else:
        if mm.closed:
            raise CheckpointError(f"{path}: read after close")
        raw = np.frombuffer(mm, dtype=raw_dtype, count=count, offset=start + e.begin)
        raw = raw.reshape(e.shape)
        if not raw.flags.aligned:
            raw = raw.copy()  # an odd offset (after a U8/BOOL tensor): numpy wants aligned data
    if not raw.dtype.isnative:
        raw = raw.astype(raw.dtype.newbyteorder("="))
    if source is None:
        return raw, raw.dtype.name
    return _widen(raw, e.dtype), source


def _widen(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return bfloat16_to_float32(raw)
    return _float8_table(dtype)[raw]


_TABLES: dict[str, np.ndarray] = {}


def _float8_table(dtype: str) -> np.ndarray:
    """float32 value of each of the 256 bit patterns of a float8 format (exact)."""
    if dtype not in _TABLES:
        b = np.arange(256)
        if dtype == "F8_E8M0":  # exponent only: 2**(b - 127), 0xFF is NaN
            table = np.where(b == 0xFF, np.nan, np.ldexp(1.0, np.minimum(b, 254) - 127))
        else:
            mbits, bias = (3, 7) if dtype == "F8_E4M3" else (2, 15)
            sign = np.where(b & 0x80, -1.0, 1.0)  # copysign: NaNs keep their sign bit too
            exp = (b & 0x7F) >> mbits
            man = (b & ((1 << mbits) - 1)) / (1 << mbits)
            mag = np.where(exp == 0, np.ldexp(man, 1 - bias), np.ldexp(1.0 + man, exp - bias))
            if dtype == "F8_E4M3":  # "fn": no infinities, S.1111.111 is NaN
                mag[(b & 0x7F) == 0x7F] = np.nan
            else:  # IEEE-like: top exponent is Inf (mantissa 0) or NaN
                mag[exp == 31] = np.where(man[exp == 31] == 0, np.inf, np.nan)
            table = np.copysign(mag, sign)
        _TABLES[dtype] = table.astype(np.float32)
    return _TABLES[dtype]


def step_and_metrics(metadata: dict) -> tuple[int | None, dict[str, float]]:
    """Step and metrics recorded in a safetensors ``__metadata__`` (see the module docstring)."""
    step = next((s for s in map(_integer, (metadata.get(k) for k in STEP_KEYS)) if s is not None),
                None)
    metrics = {}
    for key, text in metadata.items():
        if key in STEP_KEYS or not isinstance(key, str) or not _names_metric(key):
            continue
        value = _number(text)
        if value is not None:
            metrics[key.replace("/", "_")] = value
    return step, metrics


def _integer(text: object) -> int | None:
    if isinstance(text, str):
        try:
            return int(text.strip())
        except ValueError:
            pass
    value = _number(text)
    return int(value) if value is not None and value.is_integer() else None


def _number(text: object) -> float | None:
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _names_metric(key: str) -> bool:
    lowered = key.lower()
    if lowered.startswith(_METRIC_PREFIXES) or lowered in _METRIC_WORDS:
        return True
    return any(w in _METRIC_WORDS for w in re.split(r"[^a-z0-9]+", lowered))
