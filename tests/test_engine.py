"""The engine: dependency order, caching, --force, failure isolation, group scope, Dask equality."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import xarray as xr
from conftest import mlp_state

import dynlab
from dynlab import api
from dynlab.analyzers import Analyzer, Interval, Output, ParameterError, param, registry


@dataclass(frozen=True)
class MeanWeight(Analyzer):
    name = "test-mean"
    version = "1"
    description = "mean of every tensor per step"
    outputs = {"mean": Output(("step",), "1", "mean over all parameters")}

    scale: float = param(1.0, Interval(float, 0, None), "multiplier")

    def compute(self, view, *, backend="numpy"):
        total = sum(view.read(t.name).reshape(len(view.steps), -1).sum(1) for t in view.tensors)
        count = sum(int(np.prod(t.shape)) for t in view.tensors)
        return xr.Dataset({"mean": ("step", self.scale * total / count)},
                          coords={"step": view.steps})


@dataclass(frozen=True)
class Doubled(Analyzer):
    name = "test-doubled"
    version = "1"
    description = "twice test-mean (consumes another analyzer's result)"
    requires = ("test-mean",)
    inputs = ()

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"twice": 2 * view.result("test-mean")["mean"]})


@dataclass(frozen=True)
class Fragile(Analyzer):
    name = "test-fragile"
    version = "1"
    description = "fails on the run named 'bad'"

    def compute(self, view, *, backend="numpy"):
        if view.name == "bad":
            raise ValueError("boom")
        return xr.Dataset({"n": ((), len(view.steps))})


@dataclass(frozen=True)
class GroupSize(Analyzer):
    name = "test-group"
    version = "1"
    description = "number of runs and checkpoints in a group"
    scope = "group"

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"checkpoints": ("run", [len(r.steps) for r in view.runs])},
                          coords={"run": [r.name for r in view.runs]})


@dataclass(frozen=True)
class MeanPrediction(Analyzer):
    name = "test-predictions"
    version = "1"
    description = "mean top probability per step"
    inputs = ("probe/predictions",)

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"top": ("step", view.read_predictions().max(axis=2).mean(axis=1))},
                          coords={"step": view.steps})


@pytest.fixture
def fakes(monkeypatch):
    eps = dict(registry._entry_points())
    for cls in (MeanWeight, Doubled, Fragile, GroupSize, MeanPrediction):
        eps[cls.name] = EntryPoint(cls.name, f"{__name__}:{cls.__name__}", registry.GROUP)
    registry.refresh()
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    yield
    monkeypatch.undo()
    registry.refresh()


@pytest.fixture
def store(store_path, rng):
    st = dynlab.open_store(store_path, mode="a")
    for name, group in (("a", "g1"), ("b", "g1"), ("c", "g2")):
        run = st.create_run(name, attrs={"group": group})
        for step in range(4):
            run.append(step, mlp_state(rng))
    return st


def _status(report):
    return {(o.analyzer, o.target): o.status for o in report.outcomes}


def test_dependencies_run_first_and_results_are_stored(fakes, store):
    report = api.run(store, ["test-doubled"], runs=["a"])
    assert [o.analyzer for o in report.outcomes] == ["test-mean", "test-doubled"]
    mean = api.results(store, "test-mean", "a")
    run = store.run("a")
    expected = np.mean(np.concatenate([run.read(t.name).reshape(4, -1) for t in run.tensors], 1), 1)
    np.testing.assert_allclose(mean["mean"], expected, rtol=1e-5)  # float32 sums, other order
    np.testing.assert_allclose(api.results(store, "test-doubled", "a")["twice"], 2 * expected,
                               rtol=1e-5)
    info = store.result_info("test-mean", "a")
    assert info["analyzer"] == "test-mean" and info["version"] == "1" and info["complete"]
    assert info["params"] == {"scale": 1.0} and info["fingerprint"] and info["dynlab_version"]


def test_caching_force_params_and_new_checkpoints(fakes, store, rng):
    assert set(_status(api.run(store, "test-mean")).values()) == {"computed"}
    assert set(_status(api.run(store, "test-mean")).values()) == {"cached"}
    assert set(_status(api.run(store, "test-mean", force=True)).values()) == {"computed"}
    changed = api.run(store, "test-mean", params={"scale": "2"}, runs=["a"])
    assert _status(changed) == {("test-mean", "a"): "computed"}
    store.run("b").append(10, mlp_state(rng))
    again = _status(api.run(store, "test-mean", params={"scale": "2"}))
    assert again == {("test-mean", "a"): "cached", ("test-mean", "b"): "computed",
                     ("test-mean", "c"): "computed"}


def test_new_predictions_or_labels_invalidate_a_probe_result(fakes, store, rng):
    """The fingerprint of an analyzer reading probe/predictions covers the predictions of every
    step and the probe labels, not only the weights."""
    run = store.run("a")
    for step in run.steps:
        run.write_predictions(int(step), rng.dirichlet(np.ones(3), size=5))
    assert _status(api.run(store, "test-predictions", runs=["a"])) == {("test-predictions", "a"): "computed"}
    assert _status(api.run(store, "test-predictions", runs=["a"])) == {("test-predictions", "a"): "cached"}
    run.write_predictions(2, rng.dirichlet(np.ones(3), size=5))
    assert _status(api.run(store, "test-predictions", runs=["a"])) == {("test-predictions", "a"): "computed"}
    run.set_probe_labels(np.array([0, 1, 2, 0, 1]))
    assert _status(api.run(store, "test-predictions", runs=["a"])) == {("test-predictions", "a"): "computed"}
    assert _status(api.run(store, "test-predictions", runs=["a"])) == {("test-predictions", "a"): "cached"}


def test_a_failing_run_does_not_lose_the_others(fakes, store, rng):
    bad = store.create_run("bad")
    bad.append(0, mlp_state(rng))
    bad.append(1, mlp_state(rng))
    report = api.run(store, "test-fragile")
    (failure,) = report.failed
    assert (failure.analyzer, failure.target) == ("test-fragile", "bad")
    assert "ValueError: boom" in failure.message
    assert sorted(store.results["test-fragile"]) == ["a", "b", "c"]


def test_too_few_checkpoints_is_a_clear_failure(fakes, store, rng):
    store.create_run("tiny").append(0, mlp_state(rng))
    (failure,) = api.run(store, "test-mean", runs=["tiny"]).failed
    assert failure.message == "run 'tiny' has 1 checkpoint(s); test-mean needs at least 2"


def test_group_scope_groups_runs_by_attr(fakes, store):
    report = api.run(store, "test-group")
    assert sorted(o.target for o in report.outcomes) == ["g1", "g2"]
    g1 = api.results(store, "test-group", "g1")
    assert g1["run"].values.tolist() == ["a", "b"]


def test_parameter_errors(fakes, store):
    with pytest.raises(ParameterError, match=r"unknown analyzer 'nope'; available: .*test-mean"):
        api.run(store, "nope")
    with pytest.raises(ParameterError, match="no parameter 'scal' \\(parameters: scale\\)"):
        api.run(store, "test-mean", params={"test-mean.scal": "1"})
    with pytest.raises(ParameterError, match="parameter 'scale' must be float in \\[0, inf\\]"):
        api.run(store, "test-mean", params={"scale": "-1"})
    with pytest.raises(ParameterError, match="no analyzer being run has a parameter 'bins'"):
        api.run(store, "test-mean", params={"bins": "3"})
    with pytest.raises(dynlab.errors.StoreError, match="no run named 'zz'"):
        api.run(store, "test-mean", runs=["zz"])


def test_a_dependency_change_reaches_its_dependents(fakes, store):
    api.run(store, ["test-doubled"], runs=["a"])
    report = api.run(store, ["test-doubled"], runs=["a"], params={"test-mean.scale": "10"})
    assert _status(report) == {("test-mean", "a"): "computed", ("test-doubled", "a"): "computed"}
    np.testing.assert_allclose(api.results(store, "test-doubled", "a")["twice"],
                               2 * api.results(store, "test-mean", "a")["mean"])


@dataclass(frozen=True)
class AfterFragile(Analyzer):
    name = "test-after-fragile"
    version = "1"
    description = "requires test-fragile"
    requires = ("test-fragile",)
    inputs = ()

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"n": view.result("test-fragile")["n"]})


def test_dependents_of_a_failed_task_are_skipped(fakes, store, rng, monkeypatch):
    eps = dict(registry._entry_points())
    eps[AfterFragile.name] = EntryPoint(AfterFragile.name, f"{__name__}:AfterFragile",
                                        registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    bad = store.create_run("bad")
    bad.append(0, mlp_state(rng))
    bad.append(1, mlp_state(rng))
    status = _status(api.run(store, "test-after-fragile", runs=["a", "bad"]))
    assert status[("test-fragile", "bad")] == "failed"
    assert status[("test-after-fragile", "bad")] == "failed"
    assert status[("test-after-fragile", "a")] == "computed"
    failure = next(o for o in api.run(store, "test-after-fragile", runs=["bad"]).outcomes
                   if o.analyzer == "test-after-fragile")
    assert failure.message == "skipped: test-fragile failed on 'bad'"


def test_a_missing_store_is_not_created(tmp_path, fakes):
    with pytest.raises(dynlab.errors.StoreError, match="no dynlab store"):
        api.run(tmp_path / "typo.zarr", "test-mean")
    assert not (tmp_path / "typo.zarr").exists()
    dynlab.open_store(tmp_path / "empty.zarr", mode="a")
    with pytest.raises(dynlab.errors.StoreError, match="has no runs to analyse"):
        api.run(tmp_path / "empty.zarr", "test-mean")
