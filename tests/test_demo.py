"""The demo, end to end, in its quick form (one small MLP, 10 epochs)."""

from __future__ import annotations

from click.testing import CliRunner

import dynlab
from dynlab.cli import main


def test_quick_demo(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "trained 1 MLPs" in result.output and "best val loss" in result.output
    assert "layer fluctuation" in result.output and "t* of L" in result.output
    assert "failed" not in result.output
    store = dynlab.open_store(out / "dynlab.zarr")
    assert store.runs == ["w16-s0"]
    run = store.run("w16-s0")
    assert run.steps.tolist() == list(range(11)) and {"val_loss", "train_acc"} <= set(run.metrics)
    for analyzer in ("weight-change", "fisher-velocity", "fisher-distance", "network", "transitions",
                     "relative-fisher"):
        assert store.results[analyzer] == ["w16-s0"]
        assert (out / "plots" / f"{analyzer}.png").stat().st_size > 1000
    assert store.results["inpca"] == ["digits"] and (out / "plots" / "inpca.png").exists()
    assert run.has_predictions and run.has_activations and run.probe_labels.shape == (300,)
    assert "probed every checkpoint on 300 held-out samples" in result.output
    # a second demo into the same directory starts clean
    again = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output


def test_demo_across_widths_with_the_iris_replicas(tmp_path):
    """Two widths: the finite-size scaling fit runs; the Iris replica experiment runs; every
    figure is drawn."""
    from dynlab.demo import run_demo

    lines: list[str] = []
    out = run_demo(tmp_path / "demo", widths=(16, 32), seeds=(0,), epochs=12, echo=lines.append)
    text = "\n".join(lines)
    assert not out["failed"], out["failed"]
    assert "fss across widths" in text and "quality S" in text
    assert "lyapunov (replicas" in text and "η = 5" in text
    assert "inpca (METHODS §2): 26 checkpoints of 2 runs" in text and "explained stress" in text
    assert "relative-fisher (METHODS §3)" in text
    transfer = out["info_transfer"]  # true labels transfer information, shuffled ones do not
    assert transfer["digits"].attrs["L_IT"] > 0.5 * transfer["digits"].attrs["L_IT_max"]
    assert abs(transfer["digits-shuffled"].attrs["L_IT"]) < 0.1 * transfer["digits"].attrs["L_IT"]
    names = {p.name for p in out["plots"]}
    assert {"network.png", "transitions.png", "fss.png", "lyapunov.png", "fisher-velocity.png",
            "inpca.png", "relative-fisher.png", "info-transfer.png"} <= names
    assert all(p.stat().st_size > 1000 for p in out["plots"])


def _transitions(t_star: float | None, t_of: float | None, last: int = 20):
    import numpy as np
    import xarray as xr

    found = t_star is not None
    t = np.nan if t_star is None else t_star
    ds = xr.Dataset({"t_star": ("detector", [t, np.nan]), "found": ("detector", [found, False])},
                    coords={"detector": ["series", "displacement"], "step": np.arange(last + 1)})
    if t_of is not None:
        ds.attrs["t_of"] = t_of
    return ds


def test_transition_verdict_compares_only_with_an_onset_inside_the_run():
    """A run with a transition but no overfitting onset (none, at step 0, or at the last step:
    the validation loss still falling) is a run where the transition was found; only the
    comparison with t_of leaves it out."""
    from dynlab.demo import _transition_verdict

    text = _transition_verdict({"a": _transitions(3.0, 6), "b": _transitions(4.0, None),
                                "c": _transitions(9.0, 0), "d": _transitions(None, 5),
                                "e": _transitions(7.0, 20.0)})
    series, displacement = text.splitlines()
    assert series.startswith("L: transition found in 4 of 5 runs")
    assert "t* < t_of in 1 of the 1 that overfit before their last checkpoint" in series
    assert "median t*/t_of = 0.50" in series
    assert displacement == "‖θ−θ0‖: no transition found in any run"
    only = _transition_verdict({"b": _transitions(4.0, None), "e": _transitions(7.0, 20.0)})
    assert only.splitlines()[0] == ("L: transition found in 2 of 2 runs; none of them overfits "
                                    "before its last checkpoint (no t_of to compare with)")


def _fss(sizes, quality=0.8, weighted=True):
    import numpy as np
    import xarray as xr

    return xr.Dataset(
        {"params": ("param", [0.5, 1.2, 0.1]), "errors": ("param", [0.05, 0.1, 0.01]),
         "shift": ("shift_param", [np.nan] * 3)},
        coords={"param": ["x_c", "nu", "zeta"], "shift_param": ["t_inf", "c", "nu"],
                "run": [f"r{i}" for i in range(len(sizes))], "size": ("run", np.asarray(sizes, float))},
        attrs={"quality": quality, "coverage": 0.9, "weighted": weighted, "source": "fisher-velocity.rate"})


def test_fss_summary_does_not_call_two_widths_a_collapse():
    """Two widths: a collapse with free ν and x_c fits nearly any pair of curves, so a small S is
    no evidence of finite-size scaling; three widths are read as before."""
    from dynlab.demo import _fss_summary

    two = _fss([16, 16, 32, 32])
    assert "the curves collapse within the seed-to-seed spread" not in _fss_summary(two)
    assert "only 2 widths" in _fss_summary(two)
    three = _fss([16, 32, 64])
    assert "the curves collapse within the seed-to-seed spread" in _fss_summary(three)
    assert "do not collapse" in _fss_summary(_fss([16, 32, 64], quality=5.0))


def test_seed_spread_uses_every_pair_of_seeds():
    """Three seeds of one width: the median over all three pairs, not the first pair only."""
    from types import SimpleNamespace

    import numpy as np
    import xarray as xr

    from dynlab.demo import _seed_spread

    curves = {"s0": [1.0, 2.0, 4.0], "s1": [1.0, 2.0, 4.0], "s2": [3.0, 6.0, 12.0]}

    class Store:
        results = {"fisher-velocity": list(curves)}

        def run(self, name):
            return SimpleNamespace(attrs={"width": 16})

        def result(self, analyzer, name):
            values = np.array(curves[name])[:, None]
            return xr.Dataset({"rate": (("step", "layer"), values)}, coords={"layer": ["all"]})

    # pairs: (s0, s1) differ by 0, (s0, s2) and (s1, s2) by |1 − 3|/2 = 1 at every step
    assert _seed_spread(Store(), "fisher-velocity", "rate") == 1.0
