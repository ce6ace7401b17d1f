"""The ``dynlab`` command: a thin shell over :mod:`dynlab.api`.

Each command parses its options, makes one API call and renders the answer. A
:class:`~dynlab.errors.DynlabError` becomes one line on stderr and exit code 1; warnings become one
``warning:`` line each. Heavy modules are imported inside the commands, so ``dynlab --help`` is
instant.
"""

from __future__ import annotations

import sys
import warnings

import click

from dynlab._version import __version__
from dynlab.cli._analyze import analyzers_command, results_command, run_command
from dynlab.cli._demo import demo_command
from dynlab.cli._ingest import ingest_command
from dynlab.cli._plot import plot_command
from dynlab.cli._probe import probe_command
from dynlab.cli._runs import info_command, runs_command


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        from dynlab.errors import DynlabError, DynlabWarning

        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("default", DynlabWarning)  # shown as a line, even under -W error
            try:
                return super().invoke(ctx)
            except DynlabError as exc:
                click.echo(f"dynlab: error: {exc}", err=True)
                sys.exit(1)
            except KeyboardInterrupt:
                click.echo("dynlab: interrupted", err=True)
                sys.exit(130)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"dynlab: warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dynlab")
def main() -> None:
    """dynlab: analyse neural-network training as a dynamical system, over stored checkpoints."""


main.add_command(ingest_command)
main.add_command(probe_command)
main.add_command(runs_command)
main.add_command(info_command)
main.add_command(analyzers_command)
main.add_command(run_command)
main.add_command(results_command)
main.add_command(plot_command)
main.add_command(demo_command)
