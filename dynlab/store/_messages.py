"""Pieces of the store's one-line error messages."""

from __future__ import annotations


def shown_names(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``names``, comma-separated, and how many more there are."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def did_you_mean(name: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or an empty string."""
    import difflib

    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
