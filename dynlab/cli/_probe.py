"""``dynlab probe``: probe predictions (and layer inputs) of every stored checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from dynlab.cli._options import store_option
from dynlab.cli._progress import RichBar


class _RichProgress(RichBar):
    """Steps done per run, drawn with rich on a terminal (silent elsewhere)."""

    def __init__(self, console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(console, TextColumn("{task.description}"), BarColumn(),
                         MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(),
                         TimeRemainingColumn())

    def start_run(self, run: str, steps: int) -> None:
        self._task = self._bar.add_task(f"probe {run}", total=steps)

    def advance(self, run: str, step: int) -> None:
        self._bar.update(self._task, advance=1)


@click.command("probe")
@store_option
@click.option("--model", "-m", "model", required=True, metavar="MODULE:FACTORY",
              help="Model factory: module:function or path/to/file.py:function, returning a "
                   "torch.nn.Module (called with the run's attrs if it has a required argument).")
@click.option("--data", "-d", "data", required=True, type=click.Path(path_type=Path),
              metavar="PROBE.npz", help="The probe set: x (inputs) and optionally y (labels).")
@click.option("--run", "-r", "runs", multiple=True, help="Run to probe (repeatable; default all).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]",
              help="Where the model runs (auto: CUDA if available, else CPU).")
@click.option("--activations", is_flag=True,
              help="Also store the input of every Linear/Conv layer (probe/activations/<layer>).")
@click.option("--float16", is_flag=True, help="Store the predictions as float16.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Probe samples per forward pass.")
@click.option("--outputs", type=click.Choice(["logits", "probs"]), default="logits",
              show_default=True, help="What the model returns (logits: softmax is applied).")
@click.option("--replace", is_flag=True,
              help="Recompute and overwrite steps that already have predictions/activations.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads (default: torch's own setting).")
def probe_command(store, model, data, runs, device, activations, float16, batch_size, outputs,
                  replace, threads):
    """Run every stored checkpoint through a model on a fixed probe set and store its class
    probabilities (and, with --activations, every Linear/Conv layer's input).

    \b
    Resumable: steps that already have what is asked are skipped (--replace recomputes them).
    Example: dynlab probe --model mypkg.models:make_mlp --data probe.npz --activations
    """
    from rich.console import Console

    from dynlab import api

    console = Console(stderr=True)
    with _RichProgress(console) as progress:
        report = api.probe(store, model, data, runs=list(runs) or None, device=device,
                           activations=activations, float16=float16, batch_size=batch_size,
                           outputs=outputs, replace=replace, threads=threads, progress=progress)
    for r in report.runs:
        parts = [f"predictions at {len(r.predictions)} steps"]
        if activations:
            parts.append(f"activations at {len(r.activations)} steps ({len(r.layers)} layers)")
        parts.append(f"{len(r.unchanged)} unchanged")
        if r.nonfinite:
            parts.append(f"{len(r.nonfinite)} skipped (outputs not finite)")
        click.echo(f"run {r.name}: " + ", ".join(parts) + f" ({r.seconds:.1f} s)")
    click.echo(f"store: {report.store} ({report.samples} probe samples on {report.device})")
