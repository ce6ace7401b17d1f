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


def no_activations(run: str, layer: str, layers: list[str], missing_steps: list[str] = ()) -> str:
    """Why ``layer``'s activations cannot be read from ``run`` (``layers``: those it has):
    none at all, not that layer, or not at ``missing_steps``."""
    if not layers:
        return (f"run '{run}' has no probe activations (store them with dynlab probe "
                "--activations or Recorder.log(..., activations=...))")
    if layer not in layers:
        return (f"run '{run}' has no activations of layer '{layer}'"
                + (did_you_mean(str(layer), layers) or f" (its layers: {shown_names(layers)})"))
    return f"run '{run}' has no activations of layer '{layer}' at step {shown_names(missing_steps)}"
