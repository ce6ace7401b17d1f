"""Figures for the analyzers whose results are not plain per-step curves per layer.

Each takes the results by target (run or group) and saves to ``path``; matplotlib is imported
inside the functions only. They return the figure, or None when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dynlab.errors import require

MAX_RUNS = 8


def _pyplot():
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig: Any, title: str, path: str | Path | None) -> Any:
    fig.suptitle(title, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110)
        _pyplot().close(fig)
    return fig


def _grid(n: int, width: float = 3.2, height: float = 2.6):
    plt = _pyplot()
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def plot_network(analyzer: str, results: Mapping[str, Any], onsets: Mapping[str, int | None] | None,
                 path: str | Path | None = None) -> Any:
    """Layer fluctuation Y_l(t) (std of the node strengths) of every node layer, one panel per
    run, the validation-loss minimum dashed."""
    runs = list(results)[:MAX_RUNS]
    if not runs:
        return None
    fig, axes = _grid(len(runs))
    for ax, run in zip(axes, runs, strict=False):
        y = results[run]["fluctuation"]
        for layer in y["layer"].values:
            ax.plot(y["step"], y.sel(layer=layer), lw=1, label=str(layer))
        if (onsets or {}).get(run) is not None:
            ax.axvline(onsets[run], color="k", ls="--", lw=0.8, label="min val loss")
        ax.set_title(run, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("layer fluctuation $Y_l$")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    return _finish(fig, f"{analyzer}: layer fluctuation per node layer", path)


def plot_transitions(analyzer: str, results: Mapping[str, Any],
                     onsets: Mapping[str, int | None] | None, path: str | Path | None = None) -> Any:
    """ln y against ln t with its local exponent y', t* and its interval shaded, t_of dashed."""
    runs = list(results)[:MAX_RUNS]
    if not runs:
        return None
    plt = _pyplot()
    cols = min(len(runs), 4)
    blocks = -(-len(runs) // cols)  # a block = two rows (ln y above, y' below) of up to 4 runs
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(3.2 * cols, 4.6 * blocks), squeeze=False,
                             sharex="col", constrained_layout=True)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, run in enumerate(runs):
        ds = results[run]
        top, bottom = axes[2 * (i // cols)][i % cols], axes[2 * (i // cols) + 1][i % cols]
        top.set_visible(True)
        bottom.set_visible(True)
        top.loglog(ds["time"], ds["value"], lw=1, color="C0", label=ds.attrs.get("source", "y"))
        disp = ds["displacement"]
        ok = (ds["step"] > 0) & (disp > 0)
        top.loglog(ds["step"][ok], disp[ok], lw=1, color="C1", label="‖θ−θ0‖")
        bottom.semilogx(ds["time"], ds["slope"], lw=1, color="C0", label="y' (local exponent)")
        for det, color in (("series", "C0"), ("displacement", "C1")):
            t = ds.sel(detector=det)
            if bool(t["found"]):
                for ax in (top, bottom):
                    ax.axvspan(float(t["t_low"]), float(t["t_high"]), color=color, alpha=0.15)
                    ax.axvline(float(t["t_star"]), color=color, lw=1)
        t_of = ds.attrs.get("t_of") or (onsets or {}).get(run)
        if t_of:
            for ax in (top, bottom):
                ax.axvline(t_of, color="k", ls="--", lw=0.8, label="min val loss")
        top.set_title(run, fontsize=9)
        bottom.set_xlabel("step")
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    axes[1][0].legend(fontsize=6)
    return _finish(fig, f"{analyzer}: t* (shaded: interval; blue: L, orange: ‖θ−θ0‖) vs the "
                        "overfitting onset (dashed)", path)


def plot_fss(analyzer: str, results: Mapping[str, Any], onsets: Any = None,
             path: str | Path | None = None) -> Any:
    """Raw curves a(ρ) per run and the collapsed L^{−ζ/ν}a against L^{1/ν}(ρ − ρ_c), coloured by
    size; one row per group."""
    groups = list(results)[:4]
    if not groups:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(groups), 2, figsize=(8.0, 3.0 * len(groups)), squeeze=False,
                             constrained_layout=True)
    for row, group in enumerate(groups):
        ds = results[group]
        sizes = np.asarray(ds["size"], dtype=float)
        widths = np.unique(sizes)
        palette = {s: plt.cm.viridis(i / max(len(widths) - 1, 1)) for i, s in enumerate(widths)}
        for i, run in enumerate(ds["run"].values):
            color = palette[sizes[i]]
            axes[row][0].plot(ds["rho"][i], ds["value"][i], lw=1, color=color,
                              label=f"{run} (L={sizes[i]:g})")
            axes[row][1].plot(ds["x_scaled"][i], ds["y_scaled"][i], lw=1, color=color)
        p = {str(k): float(v) for k, v in zip(ds["param"].values, ds["params"].values, strict=True)}
        axes[row][0].set_title(f"{group}: raw", fontsize=9)
        axes[row][0].set_xlabel("ρ" + (" = ln t" if ds.attrs.get("rho") == "log" else " = t"))
        axes[row][0].set_ylabel(ds.attrs.get("source", "a"))
        axes[row][1].set_title(f"collapsed: ρc={p['x_c']:.3g}, ν={p['nu']:.3g}, ζ={p['zeta']:.3g}, "
                               f"S={ds.attrs.get('quality', float('nan')):.3g}", fontsize=9)
        axes[row][1].set_xlabel(r"$L^{1/\nu}(\rho - \rho_c)$")
        axes[row][1].set_ylabel(r"$L^{-\zeta/\nu}\,a$")
        axes[row][0].legend(fontsize=6)
        for ax in axes[row]:
            ax.tick_params(labelsize=7)
    return _finish(fig, f"{analyzer}: finite-size scaling", path)


def plot_chaos(per_lr: Mapping[float, Mapping[str, Any]], path: str | Path | None = None) -> Any:
    """Replica distance d(t) per learning rate on a log axis, the fitted window marked."""
    if not per_lr:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    for i, (lr, r) in enumerate(per_lr.items()):
        steps, d = np.asarray(r["steps"]), np.asarray(r["distance"])
        ok = d > 0
        ax.semilogy(steps[ok], d[ok], lw=1.2, color=f"C{i}",
                    label=f"η = {lr:g}: Λ = {r['exponent']:+.3f}/step (R² {r['r2']:.2f})")
        lo, hi = r["window"]
        ax.axvspan(lo, hi, color=f"C{i}", alpha=0.08)
    ax.set_xlabel("iteration")
    ax.set_ylabel("replica distance d(t) (L1)")
    ax.legend(fontsize=7)
    return _finish(fig, "lyapunov: divergence of perturbed replicas (window of the fit shaded)", path)


def plot_inpca(analyzer: str, results: Mapping[str, Any], onsets: Mapping[str, int | None] | None,
               path: str | Path | None = None) -> Any:
    """Each group's trajectories in the top three InPCA coordinates (3-D; runs coloured, start ○,
    validation-loss minimum ★), the explained stress χ₃ in the title; beside it the progress λ
    along the uniform → one-hot geodesic against step."""
    groups = list(results)[:4]
    if not groups:
        return None
    plt = _pyplot()
    fig = plt.figure(figsize=(9.0, 4.0 * len(groups)), constrained_layout=True)
    for row, group in enumerate(groups):
        ds = results[group]
        k = ds.sizes["component"]
        ax3 = fig.add_subplot(len(groups), 2, 2 * row + 1, projection="3d" if k >= 3 else None)
        axp = fig.add_subplot(len(groups), 2, 2 * row + 2)
        for i, run in enumerate(ds["run"].values):
            color = f"C{i % 10}"
            xyz = ds["coords"].isel(run=i).values
            ok = np.isfinite(xyz).all(axis=1)
            pts = [xyz[ok, j] for j in range(min(k, 3))]
            ax3.plot(*pts, lw=1, color=color, label=str(run))
            ax3.scatter(*[p[:1] for p in pts], color=color, marker="o", s=14)
            onset = (onsets or {}).get(str(run))
            if onset is not None and onset in ds["step"].values:
                at = ds["coords"].isel(run=i).sel(step=onset).values[:min(k, 3)]
                ax3.scatter(*[[v] for v in at], color=color, marker="*", s=60)
            axp.plot(ds["step"], ds["progress"].isel(run=i), lw=1, color=color, label=str(run))
        stress = np.asarray(ds["explained_stress"])
        ax3.set_title(f"{group}: explained stress χ{min(k, 3)} = {stress[min(k, 3) - 1]:.3f}",
                      fontsize=9)
        for j, set_label in enumerate((ax3.set_xlabel, ax3.set_ylabel,
                                       getattr(ax3, "set_zlabel", None))[:min(k, 3)]):
            sign = "+" if float(ds["eigenvalues"][j]) > 0 else "−"
            set_label(f"InPCA {j + 1} ({sign})", fontsize=7)
        ax3.tick_params(labelsize=6)
        axp.set_xlabel("step")
        axp.set_ylabel("progress λ (uniform → labels)")
        axp.set_ylim(0, 1)
        axp.tick_params(labelsize=7)
        axp.legend(fontsize=6)
    return _finish(fig, f"{analyzer}: prediction-space trajectories (○ start, ★ min val loss)", path)


def plot_info_transfer(analyzer: str, results: Mapping[str, Any], onsets: Any = None,
                       path: str | Path | None = None) -> Any:
    """Cumulative code lengths against samples sent (uniform code dashed, prequential solid; the gap
    is L_IT), and each block's bits per sample, one colour per run."""
    runs = list(results)[:MAX_RUNS]
    if not runs:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.2), constrained_layout=True)
    for i, run in enumerate(runs):
        ds, color = results[run], f"C{i % 10}"
        t = np.asarray(ds["samples"])
        left.plot(t, ds["l_preq"], color=color, lw=1.2, marker=".",
                  label=f"{run}: L_IT = {ds.attrs.get('L_IT', float('nan')):.0f} bits")
        left.plot(t, ds["l_uniform"], color=color, lw=0.8, ls="--")
        right.semilogx(t, ds["bits_per_sample"], color=color, lw=1.2, marker=".", label=str(run))
    left.set_xlabel("samples sent $t_s$")
    left.set_ylabel("cumulative code length (bits)")
    left.set_title("prequential (solid) vs uniform (dashed)", fontsize=9)
    right.set_xlabel("samples sent $t_s$")
    right.set_ylabel("bits per sample of the block")
    for ax in (left, right):
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return _finish(fig, f"{analyzer}: information transfer", path)
