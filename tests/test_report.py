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


@pytest.mark.parametrize("k", [2, 3])
def test_plot_inpca_trajectories(tmp_path, k):
    """The InPCA figure from the analyzer's result: 3-D with three components, 2-D with two."""
    import warnings

    from dynlab.analyzers.inpca import InPCA
    from dynlab.report import plot_inpca
    from dynlab.testing import MemoryGroup, MemoryRun

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 20)
    runs = []
    for r in range(2):
        logits = np.cumsum(rng.standard_normal((6, 20, 4)), 0)
        p = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
        runs.append(MemoryRun(f"r{r}", range(6), {"w": np.zeros((6, 2))}, predictions=p, labels=labels))
    ds = InPCA(n_components=k).compute(MemoryGroup("g", runs))
    path = tmp_path / "inpca.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot_inpca("inpca", {"g": ds}, {"r0": 3, "r1": None}, path) is not None
    assert path.stat().st_size > 1000
