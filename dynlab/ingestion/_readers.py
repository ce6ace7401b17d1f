"""The readers, by format name, imported only when a checkpoint of that format is opened."""

from __future__ import annotations

import importlib
from pathlib import Path

from dynlab.errors import CheckpointError, MissingDependencyError
from dynlab.ingestion._base import Checkpoint
from dynlab.ingestion._detect import FORMATS, sniff
from dynlab.ingestion._discover import is_hf_checkpoint_dir

#: format → (module, function, optional extra that provides its library)
READERS: dict[str, tuple[str, str, str | None]] = {
    "torch": ("dynlab.ingestion._torch", "open_torch", "torch"),
    "safetensors": ("dynlab.ingestion._safetensors", "open_safetensors", None),
    "numpy": ("dynlab.ingestion._numpy", "open_numpy", None),
    "hdf5": ("dynlab.ingestion._hdf5", "open_hdf5", None),
    "onnx": ("dynlab.ingestion._onnx", "open_onnx", "onnx"),
    "hf": ("dynlab.ingestion._hf", "open_hf_dir", None),
}


def detect(path: Path) -> str:
    """The reader for ``path``; :class:`CheckpointError` if it is no checkpoint dynlab knows."""
    if path.is_dir():
        if is_hf_checkpoint_dir(path):
            return "hf"
        raise CheckpointError(f"{path}: a directory, not a checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    fmt = sniff(path)
    if fmt is None:
        raise CheckpointError(
            f"{path}: not a checkpoint (no {', '.join(FORMATS)} signature in its first bytes)")
    return fmt


def open_checkpoint(path: Path, format: str = "auto") -> Checkpoint:
    """Open one checkpoint (file or checkpoint directory) with the reader its content calls for."""
    if format not in ("auto", *READERS):
        raise CheckpointError(f"unknown format {format!r}; choose auto, {', '.join(FORMATS)}")
    fmt = detect(path) if format == "auto" or path.is_dir() else format
    module, function, extra = READERS[fmt]
    try:
        reader = getattr(importlib.import_module(module), function)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        hint = f"pip install 'dynlab[{extra}]'" if extra else "reinstall dynlab"
        raise MissingDependencyError(
            f"{path}: reading {fmt} checkpoints needs {missing}; {hint}") from None
    return reader(path)
