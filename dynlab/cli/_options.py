"""Options shared by several commands."""

from __future__ import annotations

import click

store_option = click.option(
    "--store", "-s", envvar="DYNLAB_STORE", default="dynlab.zarr", show_default=True,
    help="Store path or URL (env DYNLAB_STORE).")


def parse_attrs(pairs: tuple[str, ...]) -> dict[str, object]:
    """``key=value`` pairs; values that read as JSON numbers/booleans are typed, else strings."""
    import json

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--attr")
        try:
            parsed = json.loads(value)
            out[key] = parsed if isinstance(parsed, (int, float, bool)) else value
        except json.JSONDecodeError:
            out[key] = value
    return out
