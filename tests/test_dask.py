"""Dask execution: the same results as local execution, task by task."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import dynlab
from dynlab import api

pytest.importorskip("distributed")


@pytest.fixture
def two_stores(tmp_path):
    rng = np.random.default_rng(3)
    local = tmp_path / "local.zarr"
    with dynlab.Recorder(local, "a", attrs={"width": 8}) as rec:
        w = rng.standard_normal((8, 4))
        for step in range(6):
            w = w * (1 + 0.1 * rng.standard_normal(w.shape))
            rec.log(step, {"l0.weight": w, "l1.weight": 2 * w.T, "l2.weight": w[:3] ** 2},
                    train_loss=1.0 / (step + 1))
    with dynlab.Recorder(local, "b") as rec:
        for step in range(4):
            rec.log(step, {"l0.weight": rng.standard_normal((8, 4)),
                           "l1.weight": rng.standard_normal((4, 8)),
                           "l2.weight": rng.standard_normal((3, 4))})
    remote = tmp_path / "dask.zarr"
    shutil.copytree(local, remote)
    return local, remote


def _without_time(ds):
    ds = ds.copy()
    ds.attrs.pop("created", None)
    return ds


def test_dask_results_equal_local(two_stores):
    local, remote = two_stores
    here = api.run(local, ["weight-change"])
    there = api.run(remote, ["weight-change"], dask="local")
    assert not here.failed and not there.failed, (here.failed, there.failed)
    assert sorted(o.target for o in there.outcomes) == ["a", "b"]
    for run in ("a", "b"):
        a = _without_time(api.results(local, "weight-change", run))
        b = _without_time(api.results(remote, "weight-change", run))
        assert a.identical(b), (a, b)
    # the Dask-written results are cached for local runs too: same fingerprints
    again = api.run(remote, ["weight-change"])
    assert {o.status for o in again.outcomes} == {"cached"}


def test_dask_scheduler_address(two_stores):
    """``dask="tcp://…"``: an existing cluster, reached by its address."""
    from distributed import LocalCluster

    local, remote = two_stores
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        report = api.run(remote, ["weight-change"], dask=cluster.scheduler_address)
    assert not report.failed and {o.status for o in report.outcomes} == {"computed"}
    api.run(local, ["weight-change"])
    for run in ("a", "b"):
        assert _without_time(api.results(local, "weight-change", run)).identical(
            _without_time(api.results(remote, "weight-change", run)))
