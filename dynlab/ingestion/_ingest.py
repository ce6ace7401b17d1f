"""Ingest: checkpoints on disk → runs in the store.

Per run, in two phases. First every checkpoint is opened once to learn its step (metadata, else
the last integer of its name) and metrics; problems found here (corrupt files, unknown steps,
two files claiming one step) stop the ingest before anything is written. Then, under the run's
writer lock and in step order, each checkpoint is streamed into the store and committed, or
recognised as already there (same source file, or same content hash: a no-op), or — for an existing
step with different content — refused unless ``replace``.

A predictions sidecar (``predictions/<step>.npy``, ``predictions/labels.npy``) is read and checked
in the first phase too; each step's predictions are written with its checkpoint (before its
commit), or, for a checkpoint already in the store, beside it (identical predictions: a no-op).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr

from dynlab.errors import CheckpointError, ProbeError
from dynlab.ingestion._base import Checkpoint
from dynlab.ingestion._discover import RunSource, discover, step_from_name
from dynlab.ingestion._readers import open_checkpoint
from dynlab.ingestion._sidecar import load_labels, load_npy, prediction_files, read_sidecar
from dynlab.store import Run, Store, check_predictions_row, open_store

#: Chunks zarr encodes and writes at once per array write while ingesting. zarr's default (10)
#: buffers up to 10 × 2 chunks per write in flight; 4 measured as fast and ~50 MB leaner
#: (docs/benchmarks.md).
WRITE_CONCURRENCY = 4


class Progress(Protocol):
    """What the ingest reports while it works (the CLI draws a progress bar from it)."""

    def start_run(self, run: str, units: int, nbytes: int) -> None: ...
    def advance(self, path: Path, nbytes: int, status: str) -> None: ...


class _Silent:
    def start_run(self, run: str, units: int, nbytes: int) -> None:
        pass

    def advance(self, path: Path, nbytes: int, status: str) -> None:
        pass


@dataclass
class RunReport:
    """What ingest did to one run."""

    name: str
    added: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    #: steps whose probe predictions were written (new, or changed beside an unchanged checkpoint)
    predictions: list[int] = field(default_factory=list)
    nbytes: int = 0
    seconds: float = 0.0


@dataclass
class IngestReport:
    store: str
    runs: list[RunReport]


@dataclass
class _Unit:
    path: Path
    step: int
    format: str
    metrics: dict[str, float]
    nbytes: int
    predictions: Path | None = None  # the step's predictions sidecar file


def ingest(sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
           store: str | os.PathLike[str] | Store = "dynlab.zarr", *, run: str | None = None,
           format: str = "auto", attrs: Mapping[str, Any] | None = None, replace: bool = False,
           step: int | None = None, progress: Progress | None = None) -> IngestReport:
    """Ingest checkpoint files or directories into ``store`` (created if missing).

    ``sources``: files (one run), a run directory, or a directory of run directories.
    ``step`` forces the step of a single checkpoint that records none.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    runs = discover(list(sources), run)
    if step is not None and (len(runs) != 1 or len(runs[0].units) != 1):
        raise CheckpointError("--step applies to a single checkpoint only")
    progress = progress or _Silent()
    units = {r.name: _scan(r, format, step) for r in runs}  # phase 1 for all runs: fail early
    labels = {r.name: _scan_predictions(r, units[r.name]) for r in runs}
    st = store if isinstance(store, Store) else open_store(store, mode="a")
    with zarr.config.set({"async.concurrency": WRITE_CONCURRENCY}):
        reports = [_write_run(st, r, units[r.name], labels[r.name], format, dict(attrs or {}),
                              replace, progress) for r in runs]
    return IngestReport(str(st), reports)


def _scan(source: RunSource, format: str, forced_step: int | None) -> list[_Unit]:
    sidecar = read_sidecar(source.sidecar) if source.sidecar else {}
    units: list[_Unit] = []
    for path in source.units:
        ckpt = open_checkpoint(path, format)
        try:
            step = forced_step if forced_step is not None else ckpt.step
            if step is None:
                step = step_from_name(path)
            if step is None:
                raise CheckpointError(
                    f"{path}: cannot determine the step (no step/epoch in the checkpoint and no "
                    "integer in its name); rename it or pass --step")
            metrics = {**ckpt.metrics, **sidecar.get(step, {})}
            nbytes = ckpt.nbytes or _size(path)
            units.append(_Unit(path, int(step), ckpt.format, metrics, nbytes))
        finally:
            ckpt.close()
    by_step: dict[int, Path] = {}
    for u in units:
        if u.step in by_step:
            raise CheckpointError(f"{u.path}: step {u.step} is also the step of {by_step[u.step]}")
        by_step[u.step] = u.path
    return sorted(units, key=lambda u: u.step)


def _scan_predictions(source: RunSource, units: list[_Unit]) -> Path | None:
    """Attach each unit's predictions sidecar file after checking it (all files agree in (N, C)
    and with the labels); the labels file, if any."""
    by_step, labels_path = prediction_files(source.root)
    labels = load_labels(labels_path) if labels_path else None
    shape = None
    for unit in units:
        path = by_step.get(unit.step)
        if path is None:
            continue
        shape = check_predictions_row(load_npy(path), str(path), shape=shape, labels=labels).shape
        unit.predictions = path
    return labels_path


def _write_run(store: Store, source: RunSource, units: list[_Unit], labels: Path | None,
               format: str, attrs: dict[str, Any], replace: bool, progress: Progress) -> RunReport:
    report = RunReport(source.name, skipped=list(source.skipped))
    progress.start_run(source.name, len(units), sum(u.nbytes for u in units))
    started = time.perf_counter()
    run = store.create_run(source.name, exist_ok=True)
    with run.writing():
        if attrs:
            run.update_attrs(**attrs)
        _record_origin(run, source, units)
        if labels is not None:
            try:
                run.set_probe_labels(load_labels(labels))
            except CheckpointError as exc:
                raise _naming(exc, labels) from None
        for unit in units:
            try:
                status, wrote_predictions = _write_unit(run, unit, format, replace)
            except ProbeError as exc:
                raise _naming(exc, unit.predictions or unit.path) from None
            except CheckpointError as exc:
                raise _naming(exc, unit.path) from None
            getattr(report, status).append(unit.step)
            if wrote_predictions:
                report.predictions.append(unit.step)
            if status != "unchanged":
                report.nbytes += unit.nbytes
            progress.advance(unit.path, unit.nbytes, status)
    report.seconds = time.perf_counter() - started
    return report


def _write_unit(run: Run, unit: _Unit, format: str, replace: bool) -> tuple[str, bool]:
    """What happened to the checkpoint (added, unchanged, replaced) and whether its predictions
    were written."""
    fingerprint = _fingerprint(unit.path)
    predictions = load_npy(unit.predictions) if unit.predictions else None
    if unit.step in set(run.steps.tolist()):
        unchanged = run.info.get("sources", {}).get(str(unit.step)) == fingerprint
        if not unchanged:
            with _opened(unit, format) as ckpt:
                unchanged = run.same_content(unit.step, ckpt.tensors())
        if unchanged:
            if predictions is None:
                return "unchanged", False
            row = int(np.searchsorted(run.steps, unit.step))
            before = run.prediction_hashes[row]
            run.write_predictions(unit.step, predictions, overwrite=replace)  # identical: a no-op
            return "unchanged", bool(run.prediction_hashes[row] != before)
        if not replace:
            raise CheckpointError(
                f"{unit.path}: step {unit.step} is already in run '{run.name}' with different "
                "content (use --replace to overwrite it)")
        with _opened(unit, format) as ckpt:
            run.replace(unit.step, ckpt.tensors(), unit.metrics, source=fingerprint,
                        predictions=predictions)
        return "replaced", predictions is not None
    with _opened(unit, format) as ckpt:
        run.append(unit.step, ckpt.tensors(), unit.metrics, source=fingerprint,
                   predictions=predictions)
    return "added", predictions is not None


@contextlib.contextmanager
def _opened(unit: _Unit, format: str) -> Iterator[Checkpoint]:
    ckpt = open_checkpoint(unit.path, format)
    try:
        yield ckpt
    finally:
        ckpt.close()


def _naming(exc: CheckpointError, path: Path) -> CheckpointError:
    """The same error (same class), its message starting with the file it is about."""
    message = str(exc)
    return type(exc)(message if message.startswith(str(path)) else f"{path}: {message}")


def _record_origin(run: Run, source: RunSource, units: list[_Unit]) -> None:
    info = run.info
    formats = sorted({u.format for u in units} | set(info.get("framework", "").split(",")) - {""})
    if info.get("source") != str(source.root) or info.get("framework") != ",".join(formats):
        run.update_info(source=str(source.root), framework=",".join(formats))


def _fingerprint(path: Path) -> dict[str, Any]:
    """Identity of a source on disk: path, size and modification time (of every file in a dir)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return {"path": str(path), "size": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def _size(path: Path) -> int:
    return _fingerprint(path)["size"]
