"""The store API and its contracts: layout, commit protocol, validation, locking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from conftest import mlp_state

import dynlab
from dynlab.errors import (
    CheckpointError,
    DuplicateContentWarning,
    NonFiniteWarning,
    RunLockedError,
    StoreError,
)
from dynlab.store import _layout as L


def _filled(store_path, rng, steps=(0, 10, 20)):
    store = dynlab.open_store(store_path, mode="a")
    run = store.create_run("mlp", attrs={"width": 16, "lr": 0.1})
    states = {}
    for s in steps:
        states[s] = mlp_state(rng)
        run.append(s, states[s], {"train_loss": 1.0 / (s + 1)})
    return store, run, states


def test_round_trip_and_layout(store_path, rng):
    _, _, states = _filled(store_path, rng)
    run = dynlab.open_store(store_path).run("mlp")
    assert run.steps.tolist() == [0, 10, 20]
    assert [t.name for t in run.tensors] == list(states[0])
    assert run.tensors[0].shape == (16, 8) and run.tensors[0].dtype == "float32"
    assert run.attrs == {"width": 16, "lr": 0.1}
    np.testing.assert_array_equal(run.read("layers.0.weight"),
                                  np.stack([states[s]["layers.0.weight"] for s in (0, 10, 20)]))
    np.testing.assert_array_equal(run.read("layers.1.bias", steps=[20, 0]),
                                  np.stack([states[20]["layers.1.bias"], states[0]["layers.1.bias"]]))
    for name, value in run.checkpoint(10).items():
        np.testing.assert_array_equal(value, states[10][name])
    np.testing.assert_allclose(run.metrics["train_loss"], [1.0, 1 / 11, 1 / 21])
    assert run.hashes.shape == (3, 4) and run.hashes.dtype == np.uint64
    assert run.n_params == sum(v.size for v in states[0].values())

    # the contract layout, read with zarr alone
    root = zarr.open_group(str(store_path), mode="r")
    assert root.attrs["dynlab"] == {"format": 1}
    assert root["runs/mlp/step"][:].tolist() == [0, 10, 20]
    assert root["runs/mlp/params/layers.0.weight"].shape[1:] == (16, 8)
    assert root["runs/mlp/metrics/train_loss"].dtype == np.float64


def test_metrics_appear_later_are_nan_before(store_path, rng):
    store = dynlab.open_store(store_path, mode="a")
    run = store.create_run("r")
    run.append(0, mlp_state(rng), {"train_loss": 1.0})
    run.append(1, mlp_state(rng), {"val_loss": 2.0})
    run.append(2, mlp_state(rng))
    m = dynlab.open_store(store_path).run("r").metrics
    np.testing.assert_array_equal(m["train_loss"], [1.0, np.nan, np.nan])
    np.testing.assert_array_equal(m["val_loss"], [np.nan, 2.0, np.nan])


def test_uncommitted_rows_are_invisible(store_path, rng):
    """A crash after the rows and the ``step`` resize, before the value: the sentinel is not read."""
    _store, run, _ = _filled(store_path, rng, steps=(0, 1))
    run._write_tensors(2, mlp_state(rng), first=False)
    step = zarr.open_array(str(store_path / "runs/mlp/step"), mode="r+")
    step.resize((3,))  # resized, value never written
    reread = dynlab.open_store(store_path).run("mlp")
    assert reread.steps.tolist() == [0, 1]
    assert reread.read("layers.0.weight").shape[0] == 2
    # the next append overwrites the leftovers
    new = mlp_state(rng)
    reread2 = dynlab.open_store(store_path, mode="a").run("mlp")
    reread2.append(5, new)
    final = dynlab.open_store(store_path).run("mlp")
    assert final.steps.tolist() == [0, 1, 5]
    np.testing.assert_array_equal(final.checkpoint(5)["layers.0.bias"], new["layers.0.bias"])


def test_capacity_grows_in_blocks(store_path, rng):
    _store, _run, _ = _filled(store_path, rng, steps=range(20))
    arr = zarr.open_array(str(store_path / "runs/mlp/params/layers.0.weight"), mode="r")
    assert arr.shape[0] >= 20
    assert L.grown_capacity(16, 17) == 32 and L.grown_capacity(100, 101) == 150


def test_large_tensors_are_chunked_along_rows():
    chunks = L.row_chunks((4096, 4096), 4)  # 64 MiB per checkpoint
    assert chunks[0] == 1 and chunks[1] * 4096 * 4 <= L.CHUNK_BYTES and chunks[2] == 4096
    assert L.row_chunks((), 4) == (1,)
    assert L.row_chunks((10,), 8) == (1, 10)


@pytest.mark.parametrize("change, message", [
    (lambda s: {**s, "layers.0.weight": np.zeros((3, 3), np.float32)}, "has shape"),
    (lambda s: {k: v for k, v in s.items() if k != "layers.1.bias"}, "missing"),
    (lambda s: {**s, "extra": np.zeros(2, np.float32)}, "not in run"),
    (lambda s: {**s, "layers.0.bias": s["layers.0.bias"].astype(np.int32)}, "dtype"),
])
def test_mismatched_checkpoints_are_refused(store_path, rng, change, message):
    _, run, _states = _filled(store_path, rng, steps=(0,))
    with pytest.raises(CheckpointError, match=message):
        run.append(1, change(mlp_state(rng)))
    assert dynlab.open_store(store_path).run("mlp").steps.tolist() == [0]


def test_steps_must_increase(store_path, rng):
    _, run, _ = _filled(store_path, rng, steps=(0, 10))
    with pytest.raises(CheckpointError, match="already has step 10"):
        run.append(10, mlp_state(rng))
    with pytest.raises(CheckpointError, match="earlier than the last step"):
        run.append(5, mlp_state(rng))


def test_replace_rewrites_one_step(store_path, rng):
    _, run, states = _filled(store_path, rng)
    new = mlp_state(rng)
    run.replace(10, new, {"train_loss": 7.0})
    r = dynlab.open_store(store_path).run("mlp")
    np.testing.assert_array_equal(r.checkpoint(10)["layers.0.weight"], new["layers.0.weight"])
    np.testing.assert_array_equal(r.checkpoint(0)["layers.0.weight"], states[0]["layers.0.weight"])
    assert r.metrics["train_loss"][1] == 7.0
    assert r.same_content(10, new) and not r.same_content(20, new)


def test_nonfinite_values_are_stored_and_reported(store_path, rng):
    store = dynlab.open_store(store_path, mode="a")
    run = store.create_run("r")
    state = mlp_state(rng)
    state["layers.0.bias"][:2] = [np.nan, np.inf]
    with pytest.warns(NonFiniteWarning, match="1 NaN, 1 Inf"):
        run.append(3, state)
    r = dynlab.open_store(store_path).run("r")
    assert np.isnan(r.read("layers.0.bias")[0, 0])
    assert r.info["nonfinite"] == {"3": {"layers.0.bias": "1 NaN, 1 Inf"}}


def test_identical_steps_are_reported(store_path, rng):
    store = dynlab.open_store(store_path, mode="a")
    run = store.create_run("r")
    state = mlp_state(rng)
    run.append(0, state)
    run.append(1, mlp_state(rng))
    with pytest.warns(DuplicateContentWarning, match="step 2 holds the same weights as step 0"):
        run.append(2, state)


def test_one_writer_per_run(store_path, rng):
    _, run, _ = _filled(store_path, rng, steps=(0,))
    other = dynlab.open_store(store_path, mode="a").run("mlp")
    with run.writing():
        with pytest.raises(RunLockedError, match="being written by another process"):
            other.append(1, mlp_state(rng))
        # readers never block
        assert dynlab.open_store(store_path).run("mlp").steps.tolist() == [0]
    other.append(1, mlp_state(rng))  # released
    # other runs are independent
    b = dynlab.open_store(store_path, mode="a").create_run("b")
    with run.writing():
        b.append(0, mlp_state(rng))


def test_store_errors(tmp_path, store_path, rng):
    with pytest.raises(StoreError, match="no dynlab store"):
        dynlab.open_store(tmp_path / "missing.zarr")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.create_group("x")
    with pytest.raises(StoreError, match="not a dynlab store"):
        dynlab.open_store(tmp_path / "plain.zarr", mode="a")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        dynlab.open_store(tmp_path / "file", mode="a")
    _filled(store_path, rng, steps=(0,))
    ro = dynlab.open_store(store_path)
    with pytest.raises(StoreError, match="read-only"):
        ro.run("mlp").append(1, mlp_state(rng))
    with pytest.raises(StoreError, match="no run named 'nope'; runs: mlp"):
        ro.run("nope")
    with pytest.raises(StoreError, match=r"no tensor 'layers.0.weigth'.*did you mean"):
        ro.run("mlp").read("layers.0.weigth")
    with pytest.raises(StoreError, match="no checkpoint at step 7"):
        ro.run("mlp").read("layers.0.weight", steps=[0, 7])
    with pytest.raises(StoreError, match="invalid run name"):
        dynlab.open_store(store_path, mode="a").create_run("a/b")
    with pytest.raises(StoreError, match="already exists"):
        dynlab.open_store(store_path, mode="a").create_run("mlp")


def test_future_format_is_refused(store_path):
    dynlab.open_store(store_path, mode="a")
    meta = store_path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["dynlab"]["format"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="format 99 is not supported"):
        dynlab.open_store(store_path)


def test_bfloat16_source_dtype_is_recorded(store_path):
    run = dynlab.open_store(store_path, mode="a").create_run("r")
    run.append(0, [("w", np.ones((2, 2), np.float32), "bfloat16")])
    info = dynlab.open_store(store_path).run("r").tensors[0]
    assert (info.dtype, info.source_dtype) == ("float32", "bfloat16")


def test_a_failed_background_write_never_lands_later(store_path, monkeypatch):
    """One row write fails while another is slow: the append fails, and a retry of the same step
    must not be overwritten by the slow write of the failed attempt."""
    import time

    from dynlab.store import _writes

    run = dynlab.open_store(store_path, mode="a").create_run("r")
    run.append(0, {"a": np.zeros(4, np.float32), "b": np.zeros(4, np.float32)})
    original, calls = _writes._write, []

    def flaky(array, row, value, done):
        calls.append(row)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        if len(calls) == 2:
            time.sleep(0.5)
        return original(array, row, value, done)

    monkeypatch.setattr(_writes, "_write", flaky)
    with pytest.raises(OSError, match="No space left"):
        run.append(1, {"a": np.full(4, 1, np.float32), "b": np.full(4, 1, np.float32)})
    run.append(1, {"a": np.full(4, 2, np.float32), "b": np.full(4, 2, np.float32)})
    time.sleep(0.6)
    r = dynlab.open_store(store_path).run("r")
    assert r.read("a", [1])[0].tolist() == [2.0] * 4 and r.read("b", [1])[0].tolist() == [2.0] * 4


def test_the_sentinel_step_is_refused(store_path):
    run = dynlab.open_store(store_path, mode="a").create_run("r")
    with pytest.raises(CheckpointError, match="reserved"):
        run.append(int(L.STEP_SENTINEL), {"w": np.zeros(2)})
