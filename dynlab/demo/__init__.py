"""The end-to-end demo behind ``dynlab demo`` and ``make demo``.

1. Train small MLPs (64-H-H-10) on scikit-learn's digits at several widths and seeds, long enough
   to overfit, saving plain torch checkpoints every epoch and a metrics.csv sidecar.
2. Ingest the sweep directory (one run per width and seed) into a store, then ``dynlab probe``
   every checkpoint on a held-out slice of the data (predictions and Linear-layer inputs).
3. Run the built-in analyzers that apply to one training run, ``inpca`` over all runs together
   (and, across widths, the finite-size scaling fit).
4. A small replica experiment on Iris (``lyapunov``): regular or chaotic at this learning rate?
5. Prequential coding of the digits with true and shuffled labels (``info-transfer``).
6. Print what the data show and save one PNG per analyzer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dynlab import api
from dynlab.demo._probe import (
    PROBE_SAMPLES,
    inpca_lines,
    probe_model,
    relative_fisher_lines,
    write_probe_set,
)
from dynlab.report import overfitting_onset, plot_analyzer, plot_chaos

Echo = Callable[[str], None]

#: what the demo runs on the digits runs: everything built in that applies to single training runs
#: and inpca (all runs embedded together); lyapunov needs replica runs (the Iris experiment),
#: lyapunov-series a chaotic-looking series, info-transfer block-wise code lengths (its own runs)
DIGITS_ANALYZERS = ("weight-change", "fisher-velocity", "fisher-distance", "network", "transitions",
                    "relative-fisher", "inpca")


def run_demo(out: str | Path, *, widths: Sequence[int] = (16, 32, 64, 128),
             seeds: Sequence[int] = (0, 1), epochs: int = 80, chaos: bool = True,
             prequential: bool = True, echo: Echo = print) -> dict:
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
                       attrs={"dataset": "digits", "width": width, "seed": seed, "group": "digits"})
    echo(f"ingested into {store} in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    probe_set = write_probe_set(out / "probe.npz")
    api.probe(store, probe_model, probe_set, activations=True)
    echo(f"probed every checkpoint on {PROBE_SAMPLES} held-out samples (predictions and the inputs "
         f"of every Linear layer) in {time.perf_counter() - started:.1f} s; the same as\n  dynlab "
         f"probe --store {store} --model dynlab.demo._probe:probe_model --data {probe_set} "
         "--activations")

    started = time.perf_counter()
    report = api.run(store, list(DIGITS_ANALYZERS))
    failed = list(report.failed)
    analyzers = list(DIGITS_ANALYZERS)
    spread = None
    if len(set(widths)) >= 2:  # finite-size scaling across widths, with the seeds' spread as errors
        spread = _seed_spread(api.open_store(store), "fisher-velocity", "rate")
        params = {"fss.rel_err": min(spread, 1.0)} if spread is not None else {}
        failed += api.run(store, ["fss"], params=params).failed
        analyzers.append("fss")
    echo(f"ran {', '.join(analyzers)} on {len(api.runs_table(store))} runs in "
         f"{time.perf_counter() - started:.1f} s")
    for failure in failed:
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

    if "network" in st.results:
        echo("\nnetwork: layer fluctuation Y_l = std of the node strengths of each node layer, "
             "first → validation-loss minimum → end")
        for name in st.results["network"]:
            echo(f"{name:<10} {_fluctuation_summary(st.result('network', name), onsets[name])}")

    if "transitions" in st.results:
        echo("\ntransitions (METHODS §8): t* = minimum of d²ln L/d(ln t)² of the pooled information "
             "length,\nand the same detector on ‖θ_t − θ_0‖ (control), against the overfitting "
             "onset t_of and the first epoch of 100 % training accuracy")
        echo("run        t* of L [interval]     t* of ‖θ−θ0‖ [interval]   t_of  full acc")
        for name in st.results["transitions"]:
            echo(f"{name:<10} {_transition_summary(st.result('transitions', name))}")
        echo(_transition_verdict({n: st.result("transitions", n) for n in st.results["transitions"]}))
        echo("\nthe same detector on L from other estimators (METHODS §8: is t* a property of the "
             "run or of the estimator?)")
        echo("run        " + "  ".join(f"{label:>15}" for label, _ in ESTIMATOR_GRID) + "   max/min")
        for name in st.results["transitions"]:
            echo(f"{name:<10} {_estimator_spread(st.run(name))}")

    if "relative-fisher" in st.results:
        echo("")
        for line in relative_fisher_lines({n: st.result("relative-fisher", n)
                                           for n in st.results["relative-fisher"]}, onsets):
            echo(line)

    if "inpca" in st.results:
        for group in st.results["inpca"]:
            echo("")
            for line in inpca_lines(st.result("inpca", group), onsets):
                echo(line)

    if "fss" in st.results:
        for group in st.results["fss"]:
            echo("\n" + _fss_summary(st.result("fss", group)))

    chaos_result = None
    if chaos:
        from dynlab.demo._chaos import run_chaos_demo

        started = time.perf_counter()
        chaos_result = run_chaos_demo(out / "chaos.zarr")
        echo("")
        for line in chaos_result["lines"]:
            echo(line)
        echo(f"  (Iris replicas trained and analysed in {time.perf_counter() - started:.1f} s → "
             f"{out / 'chaos.zarr'})")

    transfer = None
    if prequential:
        from dynlab.demo._prequential import prequential_demo

        started = time.perf_counter()
        transfer, lines = prequential_demo(out / "prequential.zarr")
        echo("")
        for line in lines:
            echo(line)
        echo(f"  (trained, recorded and analysed in {time.perf_counter() - started:.1f} s → "
             f"{out / 'prequential.zarr'})")

    figures = []
    for analyzer, targets in st.results.items():
        results = {t: st.result(analyzer, t) for t in targets}
        path = plots / f"{analyzer}.png"
        if plot_analyzer(analyzer, results, onsets, path) is not None:
            figures.append(path)
    if chaos_result is not None and plot_chaos(chaos_result["per_lr"], plots / "lyapunov.png"):
        figures.append(plots / "lyapunov.png")
    if transfer is not None and plot_analyzer("info-transfer", transfer, None,
                                              plots / "info-transfer.png") is not None:
        figures.append(plots / "info-transfer.png")
    echo(f"\nplots: {', '.join(str(p) for p in figures)}")
    return {"store": store, "plots": figures, "onsets": onsets, "failed": failed,
            "chaos": chaos_result, "seed_spread": spread, "info_transfer": transfer}


def _seed_spread(st, analyzer: str, variable: str) -> float | None:
    """Median relative difference of the pooled ``variable`` between runs of the same width
    (different seeds; every pair of them), over steps and widths: the run-to-run error of one
    curve (for two Gaussian curves of relative error σ, the median of |a − b|/ā is 0.95σ), which
    the finite-size scaling fit takes as the error of every point. None without two seeds."""
    from itertools import combinations

    by_width: dict = {}
    for name in st.results.get(analyzer, []):
        by_width.setdefault(st.run(name).attrs.get("width"), []).append(name)
    diffs = []
    for names in by_width.values():
        curves = [np.asarray(st.result(analyzer, n)[variable].sel(layer="all")) for n in names]
        for a, b in combinations(curves, 2):
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = np.abs(a - b) / (0.5 * (np.abs(a) + np.abs(b)))
            diffs.append(rel[np.isfinite(rel)])
    values = np.concatenate(diffs) if diffs else np.array([])
    return float(np.median(values)) if values.size else None


#: fisher-velocity settings of the estimator-spread control (label, parameters)
ESTIMATOR_GRID = (("default", {}), ("every pair", {"adaptive": 0.0}),
                  ("50 bins", {"bins": 50}), ("kde", {"estimator": "kde"}),
                  ("gaussian", {"estimator": "gaussian"}))


def _estimator_spread(run) -> str:
    """t* of the pooled L from each estimator of :data:`ESTIMATOR_GRID`, and max/min of those."""
    import warnings

    from dynlab import transitions
    from dynlab.analyzers.fisher_velocity import FisherVelocity

    stars = []
    for _, params in ESTIMATOR_GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # every pair warns about snapshot noise: shown below
            ds = FisherVelocity(per_layer=False, **params).compute(run, backend="numba")
        length = ds["length"].sel(layer="all")
        found = transitions.detect(np.asarray(ds["step"], dtype=float), np.asarray(length))
        stars.append(found.t_star if found.found else np.nan)
    cells = "  ".join(f"{t:>15.1f}" if np.isfinite(t) else f"{'none':>15}" for t in stars)
    finite = [t for t in stars if np.isfinite(t)]
    spread = f"{max(finite) / min(finite):7.2f}" if len(finite) >= 2 else "      —"
    return f"{cells}   {spread}"


def _fluctuation_summary(ds, onset: int | None) -> str:
    """Y_l at the first step, at ``onset`` and at the end, per node layer."""
    y = ds["fluctuation"]
    at = y.sel(step=onset, method="nearest") if onset is not None else y.isel(step=-1)
    parts = [f"{str(layer).split('.')[0][:6]}: {float(y.isel(step=0).sel(layer=layer)):.2f} → "
             f"{float(at.sel(layer=layer)):.2f} → {float(y.isel(step=-1).sel(layer=layer)):.2f}"
             for layer in y["layer"].values]
    return "   ".join(parts)


def _interval(ds, detector: str) -> str:
    t = ds.sel(detector=detector)
    if not bool(t["found"]):
        return f"{'none':<22}"
    return f"{float(t['t_star']):5.1f} [{float(t['t_low']):.1f}, {float(t['t_high']):.1f}]".ljust(22)


def _transition_summary(ds) -> str:
    t_of, t_acc = ds.attrs.get("t_of"), ds.attrs.get("t_full_accuracy")
    return (f"{_interval(ds, 'series')} {_interval(ds, 'displacement')}    "
            f"{'—' if t_of is None else t_of:>4}  {'—' if t_acc is None else t_acc:>4}")


def _transition_verdict(results) -> str:
    """In how many runs a transition was found, and in how many of those with an overfitting onset
    t* comes before it, for L and for the displacement control. An onset counts when 0 < t_of <
    the last step: a validation loss lowest at the last checkpoint has not started to overfit
    (every t* would trivially come "before" it), and t*/t_of needs t_of > 0."""
    lines = []
    for detector, label in (("series", "L"), ("displacement", "‖θ−θ0‖")):
        found = [(float(ds["t_star"].sel(detector=detector)), _onset(ds))
                 for ds in results.values() if bool(ds["found"].sel(detector=detector))]
        if not found:
            lines.append(f"{label}: no transition found in any run")
            continue
        head = f"{label}: transition found in {len(found)} of {len(results)} runs"
        pairs = [(t, o) for t, o in found if o is not None]
        if not pairs:
            lines.append(f"{head}; none of them overfits before its last checkpoint (no t_of to "
                         "compare with)")
            continue
        before = sum(t < o for t, o in pairs)
        ratios = np.array([t / o for t, o in pairs])
        lines.append(f"{head}; t* < t_of in {before} of the {len(pairs)} that overfit before their "
                     f"last checkpoint; median t*/t_of = {np.median(ratios):.2f} "
                     f"(range {ratios.min():.2f}–{ratios.max():.2f})")
    return "\n".join(lines)


def _onset(ds) -> float | None:
    """The run's overfitting onset t_of when 0 < t_of < its last step, else None."""
    t_of = ds.attrs.get("t_of")
    last = float(ds["step"].values[-1]) if "step" in ds.coords and ds.sizes["step"] else np.inf
    return float(t_of) if t_of is not None and 0 < float(t_of) < last else None


def _fss_summary(ds) -> str:
    """The collapse and the shift fit, with a plain-words reading of S and its coverage."""
    p, e = ds["params"], ds["errors"]
    names = [str(v) for v in ds["param"].values]
    fit = ", ".join(f"{n} = {float(p.sel(param=n)):.3g} ± {float(e.sel(param=n)):.2g}" for n in names)
    s = float(ds.attrs.get("quality", np.nan))
    cover = ds.attrs.get("coverage")
    cover = float("nan") if cover is None else float(cover)
    source = ds.attrs.get("source", "")
    lines = [f"fss across widths ({source}, ρ = ln t): {fit}",
             f"  quality S = {s:.3g} over {cover:.0%} of the points (those another width's "
             "scaled curve brackets)"]
    nu = float(p.sel(param="nu"))
    n_widths = len(np.unique(ds["size"].values)) if "size" in ds.coords else None
    degenerate = not np.isfinite(e.values).all() or not cover >= 0.5 or not 0.05 <= nu <= 20
    if degenerate:
        lines.append(f"  the best S is degenerate (ν = {nu:.2g} scales the widths' axes by "
                     "L^(1/ν), undefined errors or little overlap): no collapse — these runs show "
                     "no finite-size scaling of this form")
    elif n_widths is not None and n_widths < 3:
        lines.append(f"  only {n_widths} widths: a collapse with free {', '.join(names)} fits nearly "
                     "any pair of curves, so S says nothing about finite-size scaling here (that "
                     "needs at least 3 widths)")
    elif ds.attrs.get("weighted"):
        verdict = ("the curves collapse within the seed-to-seed spread" if s < 2 else
                   "they do not collapse within the seed-to-seed spread: no finite-size scaling "
                   "of this form is supported by these runs")
        lines.append(f"  errors: the seeds' median relative spread of each point; S ≈ 1 is a "
                     f"good collapse, so {verdict}")
    else:
        lines.append("  (no errors on a: S is a mean squared deviation, compare it between fits, "
                     "not with 1)")
    shift = ds["shift"]
    if np.isfinite(shift).all():
        sh = ", ".join(f"{n!s} = {float(shift.sel(shift_param=n)):.3g}"
                       for n in ds["shift_param"].values)
        lines.append(f"  t*(N) = t*_∞ + c·N^(−1/ν): {sh}")
    else:
        lines.append("  t*(N) shift fit: fewer than 3 widths with a transition")
    return "\n".join(lines)


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
