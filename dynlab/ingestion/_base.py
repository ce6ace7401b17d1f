"""What every reader returns: an opened checkpoint that streams its tensors.

A reader never writes the store. It opens one checkpoint (a file, or a directory such as a
Hugging Face ``checkpoint-N/``), reports the step and metrics found in the checkpoint's own
metadata, and yields ``(name, array, source_dtype)`` one tensor at a time so that peak memory stays
near the largest tensor. bfloat16 tensors are yielded as float32 with ``source_dtype="bfloat16"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynlab.errors import CheckpointError

#: (name, array, dtype in the source[, called once the array is stored, or None])
TensorItem = tuple[str, np.ndarray, str] | tuple[str, np.ndarray, str, Callable[[], None] | None]


@dataclass
class Checkpoint:
    """An opened checkpoint.

    ``step`` is the step recorded in the checkpoint's metadata (``None`` when it holds none; the
    ingest then takes the last integer of the file name). ``iter_tensors`` streams the tensors in
    the source's order; ``close`` releases file handles and memory maps.
    """

    path: Path
    format: str
    iter_tensors: Callable[[], Iterator[TensorItem]]
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    nbytes: int = 0
    close: Callable[[], None] = lambda: None

    def tensors(self) -> Iterator[TensorItem]:
        try:
            yield from self.iter_tensors()
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, EOFError, RuntimeError) as exc:
            raise CheckpointError(f"{self.path}: cannot read tensors ({one_line(exc)})") from None


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (as uint16) to float32: bfloat16 is the top half of a float32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def scalar_metrics(mapping: object, prefix: str = "") -> dict[str, float]:
    """Numeric scalars of a checkpoint dict (``loss``, ``val_acc``, …), as floats."""
    out: dict[str, float] = {}
    if not isinstance(mapping, dict):
        return out
    for key, value in mapping.items():
        if not isinstance(key, str):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        scalar_array = isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"
        if isinstance(value, (int, float, np.integer, np.floating)) or scalar_array:
            out[name] = float(value)
    return out


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span many lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
