"""``dynlab analyzers``, ``dynlab run`` and ``dynlab results``."""

from __future__ import annotations

import json

import click

from dynlab.cli._options import store_option


@click.command("analyzers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def analyzers_command(as_json):
    """List the installed analyzers (built-in and plugins) with their parameters."""
    from rich.console import Console

    from dynlab import api

    table = api.analyzers_table()
    if as_json:
        click.echo(json.dumps(table, indent=2, default=str))
        return
    console = Console()
    for a in table:
        console.print(f"[bold]{a['name']}[/bold] v{a['version']} ({a['scope']}): {a['description']}")
        for p in a["parameters"]:
            console.print(f"    -p {a['name']}.{p['name']}=…  {p['constraint']}, "
                          f"default {p['default']!r}: {p['doc']}", highlight=False)
    if not table:
        click.echo("no analyzers installed")


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected [analyzer.]key=value, got {pair!r}", param_hint="-p")
        out[key.strip()] = value.strip()
    return out


@click.command("run")
@click.argument("analyzers", nargs=-1, required=True)
@store_option
@click.option("--run", "-r", "runs", multiple=True, help="Run to analyse (repeatable; default all).")
@click.option("-p", "--param", "params", multiple=True, metavar="[A.]KEY=VALUE",
              help="Analyzer parameter, e.g. -p weight-change.form=elementwise (repeatable).")
@click.option("--backend", type=click.Choice(["auto", "numpy", "numba", "torch"]), default="auto",
              show_default=True, help="Numerical backend (auto: torch on a GPU, else numba).")
@click.option("--dask", metavar="ADDRESS|local", help="Run on a dask.distributed cluster.")
@click.option("--force", is_flag=True, help="Recompute even if inputs and params are unchanged.")
def run_command(analyzers, store, runs, params, backend, dask, force):
    """Run analyzers over the runs of the store; results are stored beside the checkpoints."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dynlab import api

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("analysing", total=None)

        def done(outcome):
            bar.update(task, advance=1, description=f"{outcome.analyzer} {outcome.target}")

        report = api.run(store, list(analyzers), runs=list(runs) or None,
                         params=_parse_params(params), backend=backend, dask=dask, force=force,
                         on_done=done)
    for o in report.outcomes:
        if o.status == "failed":
            click.echo(f"{o.analyzer} {o.target}: failed: {o.message}", err=True)
        else:
            click.echo(f"{o.analyzer} {o.target}: {o.status} ({o.seconds:.2f} s)")
    if report.failed:
        raise SystemExit(1)


@click.command("results")
@click.argument("analyzer")
@store_option
@click.option("--run", "-r", "run", help="Run (or group) whose result to show (default: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="json is xarray.Dataset.to_dict(data='list').")
def results_command(analyzer, store, run, fmt):
    """Print a stored analyzer result."""
    from dynlab import api

    ds = api.results(store, analyzer, run)
    if fmt == "json":
        click.echo(json.dumps(ds.to_dict(data="list"), default=str))
    elif fmt == "csv":
        from dynlab.cli._format import to_csv

        click.echo(to_csv(ds), nl=False)
    else:
        from rich.console import Console

        from dynlab.cli._format import print_tables

        print_tables(ds, Console())
