"""A rich progress bar as a context manager, drawn only on a terminal (silent elsewhere)."""

from __future__ import annotations

from typing import Any


class RichBar:
    """Wraps ``rich.progress.Progress(*columns)``; subclasses add the callbacks their API calls."""

    def __init__(self, console: Any, *columns: Any):
        from rich.progress import Progress

        self._bar = Progress(*columns, console=console, transient=True,
                             disable=not console.is_terminal)
        self._task = None

    def __enter__(self) -> RichBar:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)
