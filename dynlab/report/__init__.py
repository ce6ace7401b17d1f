"""Figures from stored results (matplotlib is imported inside the functions only).

``plot_result`` draws any analyzer's per-step variables: one column per run, one row per variable
with a ``step`` dim (lines over its other dim, e.g. one per layer), and the step of minimal
validation loss — the usual overfitting onset — as a dashed line when the run recorded it.
Analyzers whose results need their own picture (``network``, ``transitions``, ``fss``, ``inpca``,
``info-transfer``) have one; :func:`plot_analyzer` picks it, :func:`plot_stored` draws a stored result
(``dynlab plot``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dynlab.analyzers.transitions import VAL_METRICS as VALIDATION_LOSS  # one list for both
from dynlab.errors import require
from dynlab.report._figures import (
    plot_chaos,
    plot_fss,
    plot_info_transfer,
    plot_inpca,
    plot_network,
    plot_transitions,
)

__all__ = ["overfitting_onset", "plot_analyzer", "plot_chaos", "plot_fss", "plot_info_transfer",
           "plot_inpca", "plot_network", "plot_result", "plot_stored", "plot_transitions", "step_variables"]

if TYPE_CHECKING:
    import xarray as xr

    from dynlab.store import Store

MAX_LINES = 12


def overfitting_onset(metrics: Mapping[str, np.ndarray], steps: np.ndarray) -> int | None:
    """argmin of the validation loss (the first recorded of :data:`VALIDATION_LOSS`)."""
    for name in VALIDATION_LOSS:
        values = metrics.get(name)
        if values is not None and np.isfinite(values).any():
            return int(steps[int(np.nanargmin(values))])
    return None


def step_variables(ds: xr.Dataset) -> list[str]:
    """Data variables with a step-like dim (``step``, ``step_mid``) and at most one other dim:
    what a line plot (or, for a step × step matrix, an image) can show."""
    return [n for n, v in ds.data_vars.items()
            if _step_dim(v) and (v.ndim <= 2 or (v.ndim == 3 and "layer" in v.dims))]


def _step_dim(da) -> str | None:
    return next((d for d in da.dims if d in ("step", "step_mid")), None)


def plot_result(analyzer: str, results: Mapping[str, xr.Dataset],
                onsets: Mapping[str, int | None] | None = None, path: str | Path | None = None):
    """Figure of ``analyzer``'s per-step variables for each run; saved to ``path`` if given."""
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(results)[:6]
    variables = step_variables(results[runs[0]])[:3] if runs else []
    if not variables:
        return None
    fig, axes = plt.subplots(len(variables), len(runs), figsize=(3.2 * len(runs), 2.6 * len(variables)),
                             squeeze=False, sharex="col", constrained_layout=True)
    for col, run in enumerate(runs):
        ds = results[run]
        for row, var in enumerate(variables):
            ax = axes[row][col]
            da = ds[var]
            if da.ndim == 3:  # per layer: show the first (the pooled curve comes first)
                da = da.isel(layer=0)
            step = _step_dim(da)
            other = [d for d in da.dims if d != step]
            if other and other[0] == "step_other":  # a step × step matrix: an image
                ax.pcolormesh(da[step], da["step_other"], np.asarray(da).T, shading="nearest")
                ax.set_aspect("equal")
            elif other:
                for label in da[other[0]].values[:MAX_LINES]:
                    ax.plot(da[step], da.sel({other[0]: label}), lw=1, label=str(label))
            else:
                ax.plot(da[step], da, lw=1)
            values = np.asarray(da, dtype=float)
            finite = values[np.isfinite(values)]
            if not (other and other[0] == "step_other") and finite.size and np.all(finite > 0):
                ax.set_yscale("log")
            onset = (onsets or {}).get(run)
            if onset is not None:
                ax.axvline(onset, color="k", ls="--", lw=0.8, label="min val loss")
            if row == 0:
                ax.set_title(run, fontsize=9)
            if col == 0:
                ax.set_ylabel(var)
            if row == len(variables) - 1:
                ax.set_xlabel("step")
            ax.tick_params(labelsize=7)
    for row_axes in axes:
        if row_axes[-1].get_legend_handles_labels()[0]:
            row_axes[-1].legend(fontsize=6, loc="best")
    fig.suptitle(analyzer, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


#: analyzers with a figure of their own; the others get :func:`plot_result`
SPECIAL = {"network": plot_network, "transitions": plot_transitions, "fss": plot_fss,
           "inpca": plot_inpca, "info-transfer": plot_info_transfer}


def plot_analyzer(analyzer: str, results: Mapping[str, xr.Dataset],
                  onsets: Mapping[str, int | None] | None = None, path: str | Path | None = None):
    """The figure of ``analyzer``'s results (target → Dataset): its own if it has one, else
    :func:`plot_result`. None when there is nothing to draw."""
    return SPECIAL.get(analyzer, plot_result)(analyzer, results, onsets, path)


def plot_stored(store: Store, analyzer: str, targets: list[str] | None = None,
                path: str | Path | None = None):
    """Draw the stored results of ``analyzer`` (all its targets, or ``targets``) with each run's
    validation-loss minimum marked; saved to ``path``. StoreError when there is no such result;
    DynlabError when the result has nothing a figure can show."""
    from dynlab.errors import DynlabError, StoreError

    stored = store.results.get(analyzer, [])
    if not stored:
        raise StoreError(f"{store.location}: no result of '{analyzer}' to plot "
                         f"(run: dynlab run {analyzer})")
    missing = [t for t in targets or [] if t not in stored]
    if missing:
        raise StoreError(f"{store.location}: no result of '{analyzer}' for {', '.join(missing)} "
                         f"(it has: {', '.join(stored)})")
    results = {t: store.result(analyzer, t) for t in (targets or stored)}
    onsets = {name: overfitting_onset(store.run(name).metrics, store.run(name).steps)
              for name in store.runs}
    fig = plot_analyzer(analyzer, results, onsets, None)
    if fig is None:
        raise DynlabError(f"the result of '{analyzer}' has no per-step variable to plot "
                          f"(see: dynlab results {analyzer})")
    if path is not None:
        import matplotlib.pyplot as plt

        try:
            fig.savefig(path, dpi=110)
        except (OSError, ValueError) as exc:  # no such directory, not writable, unknown format
            message = " ".join(str(exc).split())
            raise DynlabError(f"{path}: cannot write the figure ({message})") from None
        finally:
            plt.close(fig)
    return fig
