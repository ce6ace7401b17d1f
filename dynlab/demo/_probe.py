"""The demo's probe set and what it shows: prediction-space geometry (``inpca``) and the relative
Fisher speed per layer (``relative-fisher``) of the digits runs.

The probe set is a fixed held-out slice of the digits validation data (never trained on): every
checkpoint of every run is re-run on it by ``dynlab probe`` (the factory below builds each run's
MLP from its ``width`` attr), which stores the softmax predictions and the inputs of every Linear
layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: samples of the probe set (the first of the validation split)
PROBE_SAMPLES = 300


def write_probe_set(path: Path, n: int = PROBE_SAMPLES) -> Path:
    """``x`` (n, 64) float32 and ``y`` (n,) of the first ``n`` validation samples, as ``.npz``."""
    from dynlab.demo._train import digits_split

    _, (x, y) = digits_split(seed=0)
    np.savez(path, x=x[:n].numpy(), y=y[:n].numpy())
    return path


def probe_model(attrs: Mapping[str, Any]):
    """The model factory ``dynlab probe`` calls with each run's attrs: the run's MLP."""
    from dynlab.demo._train import make_mlp

    return make_mlp(int(attrs["width"]))


def inpca_lines(ds: Any, onsets: Mapping[str, int | None]) -> list[str]:
    """What the joint embedding of all runs shows: explained stress (against the published ≈ 0.76
    for three dimensions), signature, and per run the progress λ towards the held-out labels at
    the start, at the validation-loss minimum and at the end, with the epoch where λ peaks."""
    chi = np.asarray(ds["explained_stress"])
    lam = np.asarray(ds["eigenvalues"])
    signs = "".join("+" if v > 0 else "−" for v in lam)
    lines = [f"inpca (METHODS §2): {ds.attrs['checkpoints']} checkpoints of {ds.sizes['run']} runs "
             f"on {ds.attrs['samples']} held-out samples, embedded together",
             "  explained stress χ1..χ{}: {} (paper: ≈ 0.76 for three, on training-set "
             "trajectories); signature {} (+ space-like, − time-like)".format(
                 len(chi), " ".join(f"{c:.3f}" for c in chi), signs),
             "  run        progress λ: start   val-loss min   end    peak (epoch)"]
    for i, run in enumerate(ds["run"].values):
        prog = ds["progress"].isel(run=i)
        ok = np.isfinite(prog.values)
        if not ok.any():
            continue
        steps, values = prog["step"].values[ok], prog.values[ok]
        onset = onsets.get(str(run))
        at = float(prog.sel(step=onset)) if onset is not None and onset in steps else np.nan
        peak = int(np.argmax(values))
        lines.append(f"  {run:<10} {values[0]:>16.3f}   {at:>12.3f}   {values[-1]:.3f}   "
                     f"{values[peak]:.3f} ({steps[peak]})")
    return lines


def relative_fisher_lines(results: Mapping[str, Any], onsets: Mapping[str, int | None]) -> list[str]:
    """Which layers keep learning: per run and layer the relative information length L_l and the
    share of it travelled after the validation-loss minimum."""
    lines = ["relative-fisher (METHODS §3): relative information length L_l of each Linear layer "
             "[torch name], and the share of it travelled after the validation-loss minimum"]
    for name, ds in results.items():
        length = ds["length"]
        onset = onsets.get(name)
        parts = []
        for layer in length["layer"].values:
            curve = length.sel(layer=layer)
            total = float(curve[-1])
            at = float(curve.sel(step=onset)) if onset is not None else np.nan
            share = (total - at) / total if total > 0 else np.nan
            parts.append(f"[{layer}] {total:5.2f} ({share:4.0%} after)")
        lines.append(f"  {name:<10} " + "   ".join(parts))
    return lines
