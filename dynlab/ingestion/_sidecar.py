"""Sidecar files beside the checkpoints: metrics and probe predictions.

Metrics: ``metrics.csv`` or ``metrics.jsonl``. Both need a ``step`` column; every other numeric
column becomes a metric. Rows for steps without a checkpoint are ignored (the store keeps one row
per checkpoint); empty cells are missing values.

Probe predictions: a ``predictions/`` directory holding ``<step>.npy`` (N, C) class probabilities
per step and optionally ``labels.npy`` (N,); files for steps without a checkpoint are ignored.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from dynlab.errors import CheckpointError, ProbeError


def read_sidecar(path: Path) -> dict[int, dict[str, float]]:
    """``{step: {metric: value}}`` from a metrics.csv / metrics.jsonl file."""
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise CheckpointError(f"{path}: cannot read metrics ({exc})") from None
    out: dict[int, dict[str, float]] = {}
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "step" not in row:
            raise CheckpointError(f"{path}: row {i} has no 'step' column")
        try:
            step = int(float(row["step"]))
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: row {i}: step {row['step']!r} is not an integer") from None
        values = out.setdefault(step, {})
        for key, value in row.items():
            if key == "step" or key is None:
                continue
            number = _number(value)
            if number is not None:
                values[str(key)] = number
    return out


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if not math.isnan(number) else None


#: Probe predictions beside the checkpoints: ``predictions/<step>.npy`` (N, C) per step and an
#: optional ``predictions/labels.npy`` (N,), in the run directory.
PREDICTIONS_DIR = "predictions"
LABELS_FILE = "labels.npy"


def prediction_files(root: Path) -> tuple[dict[int, Path], Path | None]:
    """``({step: path}, labels path or None)`` of the predictions sidecar in run directory ``root``
    (empty when there is none). Files other than ``.npy`` are ignored; a ``.npy`` whose name is
    neither ``<step>.npy`` nor ``labels.npy`` is an error naming it."""
    directory = root / PREDICTIONS_DIR
    if not directory.is_dir():
        return {}, None
    by_step: dict[int, Path] = {}
    labels = None
    for path in sorted(directory.iterdir()):
        if path.suffix != ".npy" or not path.is_file():
            continue
        if path.name == LABELS_FILE:
            labels = path
            continue
        stem = path.stem.lstrip("+-")
        if not stem.isdigit() or not stem.isascii():
            raise CheckpointError(f"{path}: a predictions sidecar file must be named <step>.npy "
                                  f"or {LABELS_FILE}")
        step = int(path.stem)
        if step in by_step:
            raise CheckpointError(f"{path}: step {step} is also the step of {by_step[step]}")
        by_step[step] = path
    return by_step, labels


def load_npy(path: Path) -> np.ndarray:
    """The array in a ``.npy`` file (memory-mapped; pickles refused), or a CheckpointError naming it."""
    try:
        with open(path, "rb") as f:  # numpy would call anything else a pickle and suggest loading it
            if f.read(6) != b"\x93NUMPY":
                raise CheckpointError(f"{path}: not a .npy array (save it with numpy.save)")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read as a .npy array ({exc})") from None
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read as a .npy array ({exc})") from None


def load_labels(path: Path) -> np.ndarray:
    """Probe labels from ``path``: a non-empty 1-d array of non-negative integers, as int64."""
    labels = load_npy(path)
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) == 0 or (labels < 0).any():
        raise ProbeError(f"{path}: probe labels must be a non-empty 1-d array of non-negative "
                         f"integers, got {labels.dtype} of shape {labels.shape}")
    return np.asarray(labels, dtype=np.int64)
