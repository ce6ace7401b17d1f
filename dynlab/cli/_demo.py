"""``dynlab demo``: train, ingest, analyse and plot, end to end, in a few minutes on a laptop."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-output"),
              show_default=True, help="Directory for checkpoints, the store and the plots.")
@click.option("--epochs", type=click.IntRange(2, 10_000), default=80, show_default=True)
@click.option("--quick", is_flag=True,
              help="One width, one seed, 10 epochs, no Iris, no prequential runs (a smoke test).")
def demo_command(out, epochs, quick):
    """Train small MLPs on digits, ingest their checkpoints, run every analyzer, plot."""
    import shutil

    from dynlab.demo import run_demo

    if out.exists() and (out / "dynlab.zarr").exists():
        shutil.rmtree(out)  # a previous demo's output: start clean
    elif out.exists() and any(out.iterdir()):
        raise click.UsageError(f"{out} exists and is not a demo output directory; choose --out")
    quick_setup = {"widths": (16,), "seeds": (0,), "epochs": 10, "chaos": False,
                   "prequential": False}
    kwargs = quick_setup if quick else {"epochs": epochs}
    result = run_demo(out, echo=click.echo, **kwargs)
    if result["failed"]:
        raise SystemExit(1)
