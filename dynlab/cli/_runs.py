"""``dynlab runs`` and ``dynlab info``: what the store holds."""

from __future__ import annotations

import json

import click

from dynlab.cli._options import store_option


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


@click.command("runs")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs_command(store, as_json):
    """List the runs in the store."""
    from rich.console import Console
    from rich.table import Table

    from dynlab import api

    rows = api.runs_table(store)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{store}: no runs yet")
        return
    table = Table(title=str(store))
    for col in ("run", "checkpoints", "first step", "last step", "tensors", "parameters", "attrs"):
        table.add_column(col, justify="right" if col not in ("run", "attrs") else "left")
    for r in rows:
        attrs = " ".join(f"{k}={v}" for k, v in r["attrs"].items())
        table.add_row(r["run"], str(r["checkpoints"]), str(r["first_step"]), str(r["last_step"]),
                      str(r["tensors"]), _human(r["parameters"]), attrs)
    Console().print(table)


@click.command("info")
@click.argument("run")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info_command(run, store, as_json):
    """Tensors, metrics and metadata of one run."""
    from rich.console import Console
    from rich.table import Table

    from dynlab import api

    info = api.run_info(store, run)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    console = Console()
    steps = info["steps"]
    span = f"steps {steps[0]}…{steps[-1]}" if steps else "no checkpoints"
    console.print(f"[bold]{run}[/bold]: {info['checkpoints']} checkpoints ({span}), "
                  f"{_human(info['parameters'])} parameters, from {info['framework'] or '?'} "
                  f"at {info['source'] or '?'}")
    if info["attrs"]:
        console.print("attrs: " + " ".join(f"{k}={v}" for k, v in info["attrs"].items()))
    table = Table("tensor", "shape", "dtype", "source dtype")
    for t in info["tensors"]:
        table.add_row(t["name"], "×".join(map(str, t["shape"])) or "scalar", t["dtype"],
                      t["source_dtype"])
    console.print(table)
    if info["metrics"]:
        console.print("metrics: " + ", ".join(f"{k} ({n} values)" for k, n in info["metrics"].items()))
    probe = info["probe"]
    if probe["predictions"]:
        p = probe["predictions"]
        console.print(f"probe predictions: {p['samples']} samples × {p['classes']} classes "
                      f"({p['dtype']}) at {p['steps']} of {info['checkpoints']} steps; labels "
                      + ("stored" if probe["labels"] else "none"))
    if probe["activations"]:
        console.print("probe activations (layer: inputs × steps): " + ", ".join(
            f"{layer} ({probe['layers'].get(layer, {}).get('output', '?')}): {a['width']} × {a['steps']}"
            for layer, a in probe["activations"].items()))
    if info["nonfinite"]:
        console.print(f"[yellow]non-finite values at steps {', '.join(info['nonfinite'])}[/yellow]")
