"""The ``transitions`` analyzer: t* of fisher-velocity's L (or any result variable) with the
overfitting onset and the METHODS.md §8 controls, on runs with a known crossover.

Weights w_t = w_0 + μ(t) (a coherent shift), μ(t) = c·t(1 + (t/t0)²)^(−0.35): the exponent of μ falls
from 1 to 0.3 around t0 = 100, and so do those of the Gaussian information length L = μ/σ and of
the displacement ‖θ_t − θ_0‖ = μ·√P, so both detectors must find t0.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dynlab.analyzers import AnalyzerInputError, ParameterError
from dynlab.analyzers.fisher_velocity import FisherVelocity
from dynlab.analyzers.transitions import Transitions
from dynlab.testing import MemoryRun, check_analyzer

T0 = 100.0


def crossover_run(metrics: bool = True, n_values: int = 20_000) -> MemoryRun:
    rng = np.random.default_rng(0)
    steps = np.unique(np.round(np.geomspace(1, 10_000, 70)).astype(np.int64))
    steps = np.concatenate([[0], steps])
    t = steps.astype(np.float64)
    mu = 0.002 * t * (1 + (t / T0) ** 2) ** -0.35
    w0 = rng.standard_normal(n_values)
    tensors = {"w": (w0[None, :] + mu[:, None]).astype(np.float64),
               "count": np.arange(len(steps), dtype=np.int64)[:, None]}  # non-float: left out
    m = {}
    if metrics:
        m["val_loss"] = 1.0 + ((np.log(t + 1) - np.log(300.0)) ** 2) / 10  # minimum at step ≈ 300
        m["train_acc"] = np.minimum(1.0, t / 500.0)  # first full accuracy at step 500
    return MemoryRun("cross", steps, tensors, m, {"width": 8})


def with_fisher(run: MemoryRun, **params) -> MemoryRun:
    fv = FisherVelocity.from_params({"estimator": "gaussian", **params}).compute(run)
    return MemoryRun.from_view(run, results={"fisher-velocity": fv})


def test_conforms():
    # a given view must carry the required results: fisher-velocity with its defaults (histogram)
    run = crossover_run()
    check_analyzer(Transitions, view=MemoryRun.from_view(
        run, results={"fisher-velocity": FisherVelocity().compute(run)}))


def test_finds_t0_in_length_and_displacement():
    run = with_fisher(crossover_run())
    ds = Transitions(n_boot=40).compute(run)
    for det in ("series", "displacement"):
        r = ds.sel(detector=det)
        assert bool(r.found), ds.attrs["reason"][det]
        assert abs(np.log(float(r.t_star)) - np.log(T0)) < 0.05 * np.log(T0)
        assert float(r.t_low) < T0 < float(r.t_high)
        assert 0.5 < float(r["drop"]) < 0.8
    # overfitting onset from val_loss, the gap and the ratio; first full training accuracy
    steps = run.steps
    assert ds.attrs["t_of"] == float(steps[np.argmin(run.metrics["val_loss"])])
    np.testing.assert_allclose(ds["gap"].values, ds["t_star"].values - ds.attrs["t_of"])
    assert ds.attrs["ratio"]["series"] == pytest.approx(float(ds.t_star[0]) / ds.attrs["t_of"])
    assert ds.attrs["t_full_accuracy"] == float(steps[np.argmax(steps >= 500)])
    assert ds.attrs["val_metric"] == "val_loss" and ds.attrs["acc_metric"] == "train_acc"
    # local exponents: ≈ 1 well before t0, ≈ 0.3 well after (smoothing blurs the middle)
    slope = ds["slope"].to_series().dropna()
    assert slope[slope.index < 20].between(0.9, 1.05).all()
    assert slope[slope.index > 2000].between(0.25, 0.4).all()
    # the displacement is ‖θ_t − θ_0‖ over floating tensors only
    w = run.read("w")
    np.testing.assert_allclose(ds["displacement"].values, np.linalg.norm(w - w[0], axis=1), rtol=1e-12)
    assert ds["t_sensitivity"].shape == (2, 5)


def test_histogram_length_and_subsample_ratio():
    run = crossover_run()
    fv = FisherVelocity().compute(run)
    ds = Transitions(n_boot=20).compute(MemoryRun.from_view(run, results={"fisher-velocity": fv}))
    assert ds.attrs["subsample_ratio"] == pytest.approx(fv.attrs["subsample_ratio"]["all"])
    assert ds["value"].values == pytest.approx(fv["length"].sel(layer="all").values, nan_ok=True)


def test_any_result_variable():
    run = crossover_run()
    t = run.steps.astype(np.float64)
    mid = 0.5 * (t[1:] + t[:-1])
    # a made-up result whose layer "b" has a crossover at t0 in its rate, over step_mid
    rate = np.stack([np.ones_like(mid), mid * (1 + (mid / T0) ** 2) ** -0.4])
    other = xr.Dataset({"rate": (("layer", "step_mid"), rate)},
                       coords={"layer": ["a", "b"], "step_mid": mid})
    view = MemoryRun.from_view(with_fisher(run), results={"other": other})
    ds = Transitions(source="other.rate", layer="b", n_boot=20).compute(view)
    assert bool(ds.found.sel(detector="series"))
    assert abs(np.log(float(ds.t_star[0])) - np.log(T0)) < 0.05 * np.log(T0)
    np.testing.assert_array_equal(ds["time"].values, mid)
    assert ds.attrs["subsample_ratio"] is None  # only fisher-velocity carries one
    flat = Transitions(source="other.rate", layer="a", n_boot=20).compute(view)
    assert not bool(flat.found.sel(detector="series"))  # a constant has no transition


def test_without_metrics():
    ds = Transitions(n_boot=20).compute(with_fisher(crossover_run(metrics=False)))
    assert ds.attrs["t_of"] is None and ds.attrs["t_full_accuracy"] is None
    assert np.isnan(ds["gap"].values).all()


@pytest.mark.parametrize(("params", "match"), [
    (dict(source="length"), "<analyzer>.<variable>"),
    (dict(source="nothing.length"), "no result of 'nothing'"),
    (dict(source="fisher-velocity.speed"), "no variable 'speed'"),
    (dict(layer="w2"), "no layer 'w2'"),
    (dict(val_metric="test_acc"), "no metric 'test_acc'"),
])
def test_bad_choices(params, match):
    run = with_fisher(crossover_run())
    with pytest.raises(AnalyzerInputError, match=match):
        Transitions(n_boot=10, **params).compute(run)


def test_too_few_checkpoints():
    run = crossover_run()
    short = MemoryRun.from_view(run, run.steps[:6])
    with pytest.raises(AnalyzerInputError, match="at least 8"):
        Transitions().compute(with_fisher(short))


# ---------------------------------------------------------------------------- fss (scope group)


LN100 = float(np.log(100.0))


def fss_group(truth=(LN100, 2.0, 0.5), noise: float = 0.01, shift=(50.0, 400.0, 1.5),
              widths=(8, 16, 32, 64), every: int = 3, t_err: float | None = None):
    """Runs of widths 8…64 whose rate Γ(ρ = ln t) = L^{ζ/ν} f((ρ − ρ_c) L^{1/ν}), f logistic, with
    relative noise; their transitions results have t*(N) = t_inf + c·N^(−1/ν_s)."""
    from dynlab.testing import MemoryGroup

    rng = np.random.default_rng(1)
    x_c, nu, zeta = truth
    steps = np.arange(30, 300, every)  # ρ = ln t within ρ_c ± 1.2: the collapse region, finely sampled
    mid = 0.5 * (steps[1:] + steps[:-1])
    runs = []
    for width in widths:
        f = width ** (zeta / nu) / (1 + np.exp(-width ** (1 / nu) * (np.log(mid) - x_c)))
        rate = f * (1 + noise * rng.standard_normal(len(mid)))
        fv = xr.Dataset({"rate": (("step_mid", "layer"), rate[:, None])},
                        coords={"step_mid": mid, "layer": ["all"]})
        ts = shift[0] + shift[1] * width ** (-1 / shift[2])
        tr = xr.Dataset({"t_star": (("detector",), [ts, np.nan])},
                        coords={"detector": ["series", "displacement"]})
        if t_err is not None:  # bootstrap std of ln t*, as the transitions analyzer reports it
            tr["t_err"] = (("detector",), [t_err, np.nan])
        tensors = {"w": rng.standard_normal((len(steps), 3))}
        runs.append(MemoryRun(f"w{width}", steps, tensors, {}, {"width": width},
                              results={"fisher-velocity": fv, "transitions": tr}))
    return MemoryGroup("widths", runs)


def test_fss_conforms():
    from dynlab.analyzers.fss import FSS

    # two sizes, coarse: the kit computes with the numpy reference (and default n_boot) 3 times
    check_analyzer(FSS, view=fss_group(widths=(8, 32), every=9))


def test_fss_recovers_collapse_and_shift():
    from dynlab.analyzers.fss import FSS

    truth = np.array([np.log(100.0), 2.0, 0.5])
    ds = FSS(rel_err=0.01, nu0=1.7, zeta0=0.4, n_boot=5).compute(fss_group(), backend="numba")
    assert 0.5 < ds.attrs["quality"] < 1.5  # errors of 1 %: S ≈ 1 at a good collapse
    assert np.all(np.abs(ds["params"].values - truth) < ds["errors"].values)
    # the start of ρ_c is the median ln t* of the runs
    t_star = ds["t_star"].values
    assert ds.attrs["start"][0] == pytest.approx(np.median(np.log(t_star)))
    np.testing.assert_allclose(ds["shift"].values, [50.0, 400.0, 1.5], rtol=1e-5)
    assert list(ds["size"].values) == [8.0, 16.0, 32.0, 64.0]
    # scaled data: L^{1/ν}(ρ − ρ_c)
    x_c, nu, _ = ds["params"].values
    np.testing.assert_allclose(ds["x_scaled"].values,
                               ds["size"].values[:, None] ** (1 / nu) * (ds["rho"].values - x_c))


def test_fss_shift_weighted_by_the_transitions_errors():
    """t* carries an error (transitions' t_err = std of ln t*, so dt* = t*·t_err): the shift fit
    uses it; with 3 sizes and no errors, the fit interpolates and its errors are undefined (NaN)."""
    from dynlab.analyzers.fss import FSS
    from dynlab.scaling import fit_shift

    group = fss_group(widths=(8, 16, 32), t_err=0.05)
    ds = FSS(rel_err=0.01, n_boot=0).compute(group)
    t_star, sizes = ds["t_star"].values, ds["size"].values
    ref = fit_shift(sizes, t_star, 0.05 * t_star)
    np.testing.assert_allclose(ds["shift_errors"].values, [ref.dt_inf, ref.dc, ref.dnu], rtol=1e-9)
    assert np.isfinite(ds["shift_errors"].values).all()
    bare = FSS(rel_err=0.01, n_boot=0).compute(fss_group(widths=(8, 16, 32)))
    assert np.isfinite(bare["shift"].values).all() and np.isnan(bare["shift_errors"].values).all()


def test_fss_bad_parameters_named_at_construction():
    from dynlab.analyzers.fss import FSS

    with pytest.raises(ParameterError, match="x_c0"):
        FSS(x_c0="abc")
    with pytest.raises(ParameterError, match="fix"):
        FSS(fix="x_c,foo")
    with pytest.raises(ParameterError, match="fix"):
        FSS(fix="x_c,nu,zeta")


def test_fss_needs_a_size():
    from dynlab.analyzers.fss import FSS

    with pytest.raises(AnalyzerInputError, match="attr 'depth'"):
        FSS(size_attr="depth", n_boot=0).compute(fss_group())


def test_displacement_streams_in_blocks(monkeypatch):
    """‖θ_t − θ_0‖ is read block by block (here: parts of one step) and equals the direct norm."""
    from dynlab.analyzers import _blocks
    from dynlab.analyzers.transitions import _displacement

    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, 6, 5))
    reads = []

    class Counting(MemoryRun):
        def read(self, tensor, steps=None, *, part=None):
            out = super().read(tensor, steps, part=part)
            reads.append(out.size * 8)
            return out

    run = Counting("r", np.arange(12), {"w": w, "b": rng.standard_normal((12, 3))})
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 100)  # two rows of w's first axis, one step
    got = _displacement(run)
    ref = np.sqrt(np.linalg.norm((w - w[0]).reshape(12, -1), axis=1) ** 2
                  + np.linalg.norm(run.read("b") - run.read("b")[0], axis=1) ** 2)
    reads.clear()
    _displacement(run)
    assert max(reads) <= 6 * 5 * 8  # never more than one step of w
    np.testing.assert_allclose(got, ref, rtol=1e-13)
