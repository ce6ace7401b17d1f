"""``dynlab ingest``: checkpoint files and directories into the store."""

from __future__ import annotations

from pathlib import Path

import click

from dynlab.cli._memory import fix_mmap_threshold
from dynlab.cli._options import parse_attrs, store_option
from dynlab.cli._progress import RichBar

FORMAT_CHOICES = ["auto", "torch", "safetensors", "numpy", "hdf5", "onnx"]


class _RichProgress(RichBar):
    """Files done and MB/s, drawn with rich on a terminal (silent elsewhere)."""

    def __init__(self, console):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        super().__init__(console, TextColumn("{task.description}"), BarColumn(),
                         TextColumn("{task.fields[done]}/{task.fields[units]} files"),
                         DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())

    def start_run(self, run: str, units: int, nbytes: int) -> None:
        self._task = self._bar.add_task(f"ingest {run}", total=nbytes, done=0, units=units)

    def advance(self, path: Path, nbytes: int, status: str) -> None:
        task = self._bar.tasks[-1]
        self._bar.update(self._task, advance=nbytes, done=task.fields["done"] + 1)


@click.command("ingest")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@store_option
@click.option("--run", "-r", "run", help="Run name (default: the directory's name).")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="auto",
              show_default=True, help="Checkpoint format (auto: detected from content).")
@click.option("--attr", "-a", "attrs", multiple=True, metavar="KEY=VALUE",
              help="Run metadata, e.g. --attr width=64 --attr lr=0.1 (repeatable).")
@click.option("--replace", is_flag=True,
              help="Overwrite steps already in the run whose content differs.")
@click.option("--step", type=int, help="Step of a single checkpoint that records none.")
def ingest_command(sources, store, run, fmt, attrs, replace, step):
    """Ingest checkpoints (files, a run directory, or a directory of runs) into the store.

    \b
    Formats: PyTorch (.pt/.pth/.bin/.ckpt, Lightning), safetensors and Hugging Face
    checkpoint directories, NumPy .npz/.npy, HDF5/Keras (.h5, .weights.h5, .keras), ONNX.
    Re-ingesting the same files is a no-op; new steps are appended.
    """
    from rich.console import Console

    from dynlab import api

    fix_mmap_threshold()
    console = Console(stderr=True)
    with _RichProgress(console) as progress:
        report = api.ingest(list(sources), store, run=run, format=fmt, attrs=parse_attrs(attrs),
                            replace=replace, step=step, progress=progress)
    for r in report.runs:
        rate = r.nbytes / r.seconds / 1e6 if r.seconds > 0 and r.nbytes else 0.0
        parts = [f"{len(r.added)} added", f"{len(r.unchanged)} unchanged"]
        if r.replaced:
            parts.append(f"{len(r.replaced)} replaced")
        line = (f"run {r.name}: " + ", ".join(parts)
                + f" ({r.nbytes / 1e6:.1f} MB in {r.seconds:.1f} s, {rate:.0f} MB/s)")
        if r.skipped:
            line += f"; skipped {len(r.skipped)} non-checkpoint files"
        click.echo(line)
    click.echo(f"store: {report.store}")
