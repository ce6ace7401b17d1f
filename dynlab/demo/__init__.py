"""The end-to-end demo behind ``dynlab demo`` and ``make demo``.

1. Train small MLPs (64-H-H-10) on scikit-learn's digits at several widths and seeds, long enough
   to overfit, saving plain torch checkpoints every epoch and a metrics.csv sidecar.
2. Ingest the sweep directory (one run per width and seed) into a store.
3. Run every installed analyzer over every run.
4. Print a short summary and save one PNG per analyzer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dynlab import api
from dynlab.report import overfitting_onset, plot_result

Echo = Callable[[str], None]


def run_demo(out: str | Path, *, widths: Sequence[int] = (16, 64, 128),
             seeds: Sequence[int] = (0, 1), epochs: int = 80, echo: Echo = print) -> dict:
    """Run the whole demo into ``out``; returns what it printed, as data."""
    import torch

    from dynlab.demo._train import train_run

    torch.set_num_threads(1)  # small models: thread contention costs far more than it gains
    out = Path(out)
    ckpts, store, plots = out / "checkpoints", out / "dynlab.zarr", out / "plots"
    plots.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    for width in widths:
        for seed in seeds:
            train_run(ckpts, width, seed, epochs)
    echo(f"trained {len(widths) * len(seeds)} MLPs (widths {', '.join(map(str, widths))}; seeds "
         f"{', '.join(map(str, seeds))}) on digits for {epochs} epochs in "
         f"{time.perf_counter() - started:.1f} s → {ckpts}")

    started = time.perf_counter()
    for width in widths:
        for seed in seeds:
            api.ingest(ckpts / f"w{width}-s{seed}", store,
                       attrs={"dataset": "digits", "width": width, "seed": seed})
    echo(f"ingested into {store} in {time.perf_counter() - started:.1f} s")

    analyzers = [a["name"] for a in api.analyzers_table()]
    started = time.perf_counter()
    report = api.run(store, analyzers)
    echo(f"ran {', '.join(analyzers)} on {len(api.runs_table(store))} runs in "
         f"{time.perf_counter() - started:.1f} s")
    for failure in report.failed:
        echo(f"  {failure.analyzer} {failure.target}: failed: {failure.message}")

    st = api.open_store(store)
    onsets = {}
    echo("\nrun        best val loss (epoch)   final val loss   final train acc")
    for name in st.runs:
        run = st.run(name)
        m = run.metrics
        onsets[name] = overfitting_onset(m, run.steps)
        echo(f"{name:<10} {min(m['val_loss']):.3f} ({onsets[name]:>3})"
             f"            {m['val_loss'][-1]:.3f}            {m['train_acc'][-1]:.2f}")

    if "weight-change" in st.results:
        echo("\nweight-change: mean RWC over layers at the first step, at the validation-loss "
             "minimum, at the end;\nand the share of its total log-decrease reached by that "
             "minimum")
        for name in st.results["weight-change"]:
            echo(f"{name:<10} {_rwc_summary(st.result('weight-change', name), onsets[name])}")

    if "fisher-velocity" in st.results:
        echo("\nfisher-velocity (pooled): information length L at the validation-loss minimum and "
             "at the end;\nL on every 2nd checkpoint / L on all (≈ 1 when L measures movement, "
             "not snapshot noise)")
        for name in st.results["fisher-velocity"]:
            ds = st.result("fisher-velocity", name)
            length = ds["length"].sel(layer="all")
            at = float(length.sel(step=onsets[name], method="nearest")) if onsets[name] else np.nan
            ratio = ds.attrs.get("subsample_ratio", {}).get("all", np.nan)
            echo(f"{name:<10} L = {at:.2f} (step {onsets[name]})  {float(length[-1]):.2f} (end)"
                 f"   ratio {ratio:.2f}")

    figures = []
    for analyzer, targets in st.results.items():
        results = {t: st.result(analyzer, t) for t in targets}
        path = plots / f"{analyzer}.png"
        if plot_result(analyzer, results, onsets, path) is not None:
            figures.append(path)
    echo(f"\nplots: {', '.join(str(p) for p in figures)}")
    return {"store": store, "plots": figures, "onsets": onsets, "failed": report.failed}


def _rwc_summary(ds, onset: int | None) -> str:
    """RWC (mean over layers) at the start, at ``onset``, at the end, and the share of the
    decrease of ln RWC from start to end that had happened by ``onset``."""
    import numpy as np

    rwc = ds["rwc"].mean("layer")
    steps = rwc["step"].values
    first, last = float(rwc[0]), float(rwc[-1])
    if onset is None or onset < steps[0]:
        return f"{first:.2e} → {last:.2e}"
    at = float(rwc.sel(step=onset, method="nearest"))
    share = np.log(first / at) / np.log(first / last) if first != last else float("nan")
    return f"{first:.2e}  {at:.2e} (step {onset})  {last:.2e}   share {share:.0%}"
