"""Metrics from sidecar files beside the checkpoints: ``metrics.csv`` or ``metrics.jsonl``.

Both need a ``step`` column; every other numeric column becomes a metric. Rows for steps without a
checkpoint are ignored (the store keeps one row per checkpoint); empty cells are missing values.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from dynlab.errors import CheckpointError


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
