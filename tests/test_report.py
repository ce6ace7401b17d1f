"""Figures from results: every kind of per-step variable draws without warnings."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dynlab.report import overfitting_onset, plot_result, step_variables

pytest.importorskip("matplotlib")


def test_plot_lines_images_and_scalars(tmp_path):
    steps = np.arange(1, 6)
    ds = xr.Dataset(
        {"rwc": (("step", "layer"), np.random.default_rng(0).random((5, 2)) + 0.1),
         "rate": (("step_mid",), np.arange(4.0) + 1),
         "matrix": (("step", "step_other"), np.random.default_rng(1).random((5, 5))),
         "chosen": ((), 3)},
        coords={"step": steps, "step_other": steps, "step_mid": steps[:-1] + 0.5,
                "layer": ["a", "b"]})
    assert step_variables(ds) == ["rwc", "rate", "matrix"]
    path = tmp_path / "x.png"
    assert plot_result("demo", {"r1": ds, "r2": ds}, {"r1": 3, "r2": None}, path) is not None
    assert path.stat().st_size > 1000


def test_overfitting_onset():
    steps = np.array([0, 10, 20, 30])
    assert overfitting_onset({"val_loss": np.array([3.0, 1.0, 2.0, np.nan])}, steps) == 10
    assert overfitting_onset({"train_loss": np.ones(4)}, steps) is None
