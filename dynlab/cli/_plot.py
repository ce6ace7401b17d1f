"""``dynlab plot``: a stored result as a PNG (the figure the demo draws for that analyzer)."""

from __future__ import annotations

import click

from dynlab.cli._options import store_option


@click.command("plot")
@click.argument("analyzer")
@store_option
@click.option("--run", "-r", "runs", multiple=True,
              help="Run (or group) whose result to draw; repeatable (default: all).")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="PNG to write (default: <analyzer>.png).")
def plot_command(analyzer, store, runs, output):
    """Draw a stored analyzer result: per-step curves with each run's validation-loss minimum."""
    from dynlab import api
    from dynlab.report import plot_stored

    path = output or f"{analyzer}.png"
    plot_stored(api.open_store(store), analyzer, list(runs) or None, path)
    click.echo(f"wrote {path}")
