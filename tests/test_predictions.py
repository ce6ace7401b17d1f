"""Probe predictions and labels in the store (DESIGN.md: ``probe/predictions`` (T, N, C),
``probe/labels`` (N,)): the Run API, the commit protocol under simulated crashes, MemoryRun parity,
Recorder.log(predictions=…), the ``predictions/`` ingest sidecar, and every bad input refused with
a one-line message and nothing stored."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from conftest import mlp_state

import dynlab
from dynlab.errors import CheckpointError, DuplicateContentWarning, ProbeError, StoreError
from dynlab.store import _layout as L
from dynlab.testing import MemoryRun

torch.set_num_threads(1)
N, C = 6, 4


def probs(rng: np.random.Generator, n: int = N, c: int = C, dtype=np.float64) -> np.ndarray:
    x = rng.random((n, c)) + 0.05
    return (x / x.sum(axis=1, keepdims=True)).astype(dtype)


def weights(step: int) -> dict[str, np.ndarray]:
    return {"w": np.full(3, float(step), dtype=np.float32), "b": np.arange(2, dtype=np.int64) + step}


@pytest.fixture
def run(store_path):
    return dynlab.open_store(store_path, mode="a").create_run("r")


def reopen(store_path, mode="r"):
    return dynlab.open_store(store_path, mode=mode).run("r")


def snapshot(run) -> tuple:
    """Everything a reader sees of the run's probe data (fresh from disk)."""
    hashes = run.prediction_hashes
    rows = run.read_predictions(run.steps[hashes != 0]) if hashes.any() else None
    return run.steps.tolist(), hashes.tolist(), rows, run.probe_labels


def same_snapshot(a: tuple, b: tuple) -> bool:
    def eq(x, y):
        return (x is None and y is None) or (x is not None and y is not None and
                                              np.array_equal(x, y))
    return a[:2] == b[:2] and eq(a[2], b[2]) and eq(a[3], b[3])


# ---------------------------------------------------------------------- store round trips


def test_append_with_predictions_round_trip(store_path, run, rng):
    given = {s: probs(rng) for s in (0, 5, 9)}
    run.set_probe_labels(np.array([0, 1, 2, 3, 0, 1], dtype=np.int32))
    for s, p in given.items():
        run.append(s, weights(s), {"loss": 1.0 / (s + 1)}, predictions=p)
    back = reopen(store_path)
    assert back.has_predictions
    got = back.read_predictions()
    assert got.shape == (3, N, C) and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([given[s].astype(np.float32) for s in (0, 5, 9)]))
    np.testing.assert_array_equal(back.read_predictions([9, 0]),
                                  np.stack([given[9], given[0]]).astype(np.float32))
    assert back.read_predictions([]).shape == (0, N, C)
    assert back.probe_labels.dtype == np.int64 and back.probe_labels.tolist() == [0, 1, 2, 3, 0, 1]
    hashes = back.prediction_hashes
    assert hashes.dtype == np.uint64 and len(set(hashes.tolist())) == 3 and 0 not in hashes
    np.testing.assert_array_equal(back.checkpoint(5)["w"], weights(5)["w"])  # params untouched


def test_float16_is_kept_and_fixes_the_dtype(store_path, run, rng):
    p0, p1 = probs(rng, dtype=np.float16), probs(rng)
    run.append(0, weights(0), predictions=p0)
    run.append(1, weights(1), predictions=p1)  # later rows are cast to the run's float16
    got = reopen(store_path).read_predictions()
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, np.stack([p0, p1.astype(np.float16)]))


def test_integer_one_hot_predictions_are_stored_as_float32(run):
    one_hot = np.eye(C, dtype=np.int64)[[0, 1, 2, 3, 0, 1]]
    run.append(0, weights(0), predictions=one_hot)
    got = run.read_predictions()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[0], one_hot)


def test_write_predictions_for_existing_checkpoints(store_path, run, rng):
    for s in (0, 1, 2):
        run.append(s, weights(s))
    assert not run.has_predictions and run.prediction_hashes.tolist() == [0, 0, 0]
    with pytest.raises(StoreError, match=r"^run 'r' has no probe predictions \(store them"):
        run.read_predictions()
    p = {s: probs(rng) for s in (0, 1, 2)}
    run.write_predictions(1, p[1])
    with pytest.raises(StoreError, match=r"^run 'r' has no probe predictions at step 0, 2$"):
        reopen(store_path).read_predictions()
    np.testing.assert_array_equal(reopen(store_path).read_predictions([1])[0], p[1].astype(np.float32))
    assert not reopen(store_path).has_predictions
    run.write_predictions(0, p[0])
    run.write_predictions(2, p[2])
    back = reopen(store_path)
    assert back.has_predictions
    np.testing.assert_array_equal(back.read_predictions(), np.stack([p[s] for s in (0, 1, 2)]).astype(
        np.float32))
    # identical again: a no-op (the stored row and its hash are not touched)
    chunk = next((store_path / "runs" / "r" / "probe" / "predictions" / "c").rglob("*"))
    before = (back.prediction_hashes.tolist(), chunk.stat().st_mtime_ns)
    run.write_predictions(1, p[1].astype(np.float32))
    assert (reopen(store_path).prediction_hashes.tolist(), chunk.stat().st_mtime_ns) == before
    # different: overwritten (default), or refused with overwrite=False
    new = probs(rng)
    with pytest.raises(ProbeError, match="step 1: already has different probe predictions"):
        run.write_predictions(1, new, overwrite=False)
    assert reopen(store_path).prediction_hashes.tolist() == before[0]
    run.write_predictions(1, new)
    np.testing.assert_array_equal(reopen(store_path).read_predictions([1])[0], new.astype(np.float32))
    with pytest.raises(StoreError, match="no checkpoint at step 7"):
        run.write_predictions(7, new)
    run.append(3, weights(3))
    run.append(4, weights(4), predictions=new)
    run.replace(0, weights(9))
    assert run.prediction_hashes.tolist() == reopen(store_path).prediction_hashes.tolist()  # the
    assert run.prediction_hashes[[0, 3]].tolist() == [0, 0]  # writer's own view is kept up to date


def test_appends_without_predictions_after_some_with(store_path, run, rng):
    run.append(0, weights(0), predictions=probs(rng))
    run.append(1, weights(1))
    back = reopen(store_path)
    assert back.prediction_hashes.tolist()[1] == 0 and not back.has_predictions
    with pytest.raises(StoreError, match=r"at step 1$"):
        back.read_predictions()
    assert back.read_predictions([0]).shape == (1, N, C)


def test_predictions_written_for_a_late_row_then_appends_grow_the_arrays(store_path, run, rng,
                                                                        monkeypatch):
    """The probe arrays created at the last row (capacity = rows) must grow with later appends."""
    monkeypatch.setattr(L, "MIN_GROWTH", 1)
    for s in range(4):
        run.append(s, weights(s))
    run.write_predictions(3, probs(rng))
    assert run._array(L.PREDICTION_HASHES).shape == (4,)
    given = [probs(rng) for _ in range(3)]
    for s, p in zip(range(4, 7), given, strict=True):
        run.append(s, weights(s), predictions=p)
    back = reopen(store_path)
    hashes = back.prediction_hashes
    assert (hashes[:3] == 0).all() and (hashes[3:] != 0).all()
    np.testing.assert_array_equal(back.read_predictions([4, 5, 6]), np.stack(given).astype(np.float32))


def test_replace_drops_or_replaces_predictions(store_path, run, rng):
    run.append(0, weights(0), predictions=probs(rng))
    run.append(1, weights(1), predictions=probs(rng))
    run.replace(1, weights(5))  # new weights: the old predictions no longer belong to them
    assert reopen(store_path).prediction_hashes.tolist()[1] == 0
    p = probs(rng)
    run.replace(1, weights(6), predictions=p)
    np.testing.assert_array_equal(reopen(store_path).read_predictions([1])[0], p.astype(np.float32))


def test_labels_once(store_path, run, rng):
    assert run.probe_labels is None
    run.append(0, weights(0), predictions=probs(rng))
    labels = np.array([3, 2, 1, 0, 1, 2])
    run.set_probe_labels(labels)
    run.set_probe_labels(labels.astype(np.uint8))  # the same labels again: a no-op
    with pytest.raises(ProbeError, match=r"^run 'r': probe labels differ from the 6 labels"):
        run.set_probe_labels(labels[::-1])
    assert reopen(store_path).probe_labels.tolist() == labels.tolist()


# ---------------------------------------------------------------------- bad input


BAD_PREDICTIONS = {
    "fewer samples": (lambda p: p[:-1], r"\(samples, classes\) = \(5, 4\), but the run's earlier "
                                       r"steps have \(6, 4\)"),
    "more classes": (lambda p: np.hstack([p, np.zeros((N, 1))]), r"= \(6, 5\), but"),
    "row sum": (lambda p: p * 1.01, r"predictions of sample 0 sum to 1\.01, not 1 \(tolerance 0\.001\)"),
    "negative": (lambda p: np.vstack([[-0.1, 0.6, 0.3, 0.2], p[1:]]), "must be non-negative"),
    "NaN": (lambda p: np.where(np.arange(N * C).reshape(N, C) == 5, np.nan, p), "contain NaN or Inf"),
    "Inf": (lambda p: np.where(np.arange(N * C).reshape(N, C) == 5, np.inf, p), "contain NaN or Inf"),
    "1-d": (lambda p: p[0], r"must be \(samples, classes\) with none empty, got shape \(4,\)"),
    "3-d": (lambda p: p[None], r"got shape \(1, 6, 4\)"),
    "complex": (lambda p: p.astype(np.complex128), "must be real class probabilities, got dtype complex128"),
    "bool": (lambda p: p > 0.5, "got dtype bool"),
}


@pytest.mark.parametrize("how", list(BAD_PREDICTIONS))
def test_bad_predictions_are_refused_and_nothing_is_stored(store_path, run, rng, how):
    make, message = BAD_PREDICTIONS[how]
    run.set_probe_labels([0, 1, 2, 3, 0, 1])
    run.append(0, weights(0), predictions=probs(rng))
    run.append(1, weights(1))
    before = snapshot(reopen(store_path))
    bad = make(probs(rng))
    for attempt in (lambda: run.append(2, weights(2), predictions=bad),
                    lambda: run.write_predictions(1, bad),
                    lambda: run.write_predictions(0, bad),
                    lambda: run.replace(0, weights(7), predictions=bad)):
        with pytest.raises(ProbeError, match=message) as info:
            attempt()
        assert "\n" not in str(info.value) and str(info.value).startswith("run 'r' step ")
        assert same_snapshot(snapshot(reopen(store_path)), before)
    np.testing.assert_array_equal(reopen(store_path).checkpoint(0)["w"], weights(0)["w"])
    good = probs(rng)  # the refused rows left nothing a later append could pick up
    run.append(2, weights(2), predictions=good)
    np.testing.assert_array_equal(reopen(store_path).read_predictions([2])[0], good.astype(np.float32))


def test_the_negative_case_really_sums_to_one(rng):
    """The "negative" input above must fail for its sign only, not for its sums."""
    bad = BAD_PREDICTIONS["negative"][0](probs(rng))
    assert (bad < 0).any()
    np.testing.assert_allclose(bad.sum(axis=1), 1.0, atol=1e-12)


def test_row_sum_tolerance_is_1e_3(run, rng):
    p = probs(rng)
    ok = p.copy()
    ok[:, 0] += 0.9e-3
    run.append(0, weights(0), predictions=ok)  # within tolerance: accepted
    off = p.copy()
    off[2, 0] += 1.2e-3
    with pytest.raises(ProbeError, match=r"sample 2 sum to 1\.0012"):
        run.append(1, weights(1), predictions=off)


def test_predictions_must_fit_the_labels(store_path, run, rng):
    run.set_probe_labels([0, 1, 2, 3, 0, 1])
    with pytest.raises(ProbeError, match=r"step 0: predictions are for 5 samples, but the run's probe "
                                         r"labels are for 6"):
        run.append(0, weights(0), predictions=probs(rng, n=5))
    with pytest.raises(ProbeError, match="step 0: probe label 3 is not one of the 3 classes"):
        run.append(0, weights(0), predictions=probs(rng, c=3))
    assert len(reopen(store_path)) == 0


@pytest.mark.parametrize(("labels", "message"), [
    (np.array([0.0, 1.0]), "must be a non-empty 1-d integer array, got float64"),
    (np.zeros((2, 3), dtype=int), "of shape \\(2, 3\\)"),
    (np.array([], dtype=int), "of shape \\(0,\\)"),
    (np.array([0, -1, 2]), "must be non-negative class indices"),
    (np.arange(5), "predictions are for 6 samples, but the run's probe labels are for 5"),
    (np.array([0, 1, 2, 3, 4, 0]), "probe label 4 is not one of the 4 classes"),
])
def test_bad_labels(store_path, run, rng, labels, message):
    run.append(0, weights(0), predictions=probs(rng))
    with pytest.raises(ProbeError, match=message) as info:
        run.set_probe_labels(labels)
    assert str(info.value).startswith("run 'r': probe labels")
    assert reopen(store_path).probe_labels is None


# ---------------------------------------------------------------------- crashes


def _crash_append(run, step, predictions, *, resize_step=False):
    """An append that dies after writing every row, predictions included, before its commit."""
    n = len(run)
    with run.writing(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateContentWarning)
        probe = None if predictions is None else run._checked_predictions(step, predictions)
        hashes, stats, _ = run._write_tensors(n, weights(step), first=(n == 0))
        run._write_row_extras(n, hashes, stats, None)
        run._write_probe_row(n, probe)
        run._writes.wait()
        if resize_step and n:
            run._group[L.STEP].resize((n + 1,))


@pytest.mark.parametrize("resize_step", [False, True])
def test_crash_between_the_predictions_row_and_the_commit(store_path, run, rng, resize_step):
    run.append(0, weights(0), predictions=probs(rng))
    run.append(1, weights(1))
    before = snapshot(reopen(store_path))
    _crash_append(run, 2, probs(rng), resize_step=resize_step)
    after = reopen(store_path, mode="a")
    assert same_snapshot(snapshot(after), before)
    # the next append at that row, without predictions, must not inherit the leftover row
    after.append(2, weights(2))
    back = reopen(store_path)
    assert back.prediction_hashes.tolist()[2] == 0
    with pytest.raises(StoreError, match=r"at step 1, 2$"):
        back.read_predictions()


def test_crash_in_the_first_append_with_another_probe_shape(store_path, run, rng):
    """Leftover predictions of an uncommitted first append do not fix (N, C) or the dtype."""
    _crash_append(run, 0, probs(rng, n=3, c=2, dtype=np.float16))
    fresh = reopen(store_path, mode="a")
    assert len(fresh) == 0 and not fresh.has_predictions
    p = probs(rng)
    fresh.append(0, weights(0), predictions=p)
    got = reopen(store_path).read_predictions()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[0], p.astype(np.float32))


def test_crash_while_overwriting_predictions_leaves_the_step_without(store_path, run, rng):
    """write_predictions over existing ones: the hash is cleared first, so a crash after the new
    row but before its hash shows the step without predictions, never a mixed row."""
    run.append(0, weights(0), predictions=probs(rng))
    run.append(1, weights(1), predictions=probs(rng))
    kept = reopen(store_path).read_predictions([0])
    with run.writing():
        with run._rows_written():
            run._write_row(L.PREDICTION_HASHES, 1, np.zeros((), dtype=np.uint64), create=False)
        with run._rows_written():
            run._write_row(L.PREDICTIONS, 1, probs(rng).astype(np.float32), create=False)
    back = reopen(store_path)
    assert back.prediction_hashes.tolist()[1] == 0
    np.testing.assert_array_equal(back.read_predictions([0]), kept)


def test_interrupted_labels_write_reads_as_none(store_path, run):
    """probe/labels is filled with −1: an array whose data never landed is not taken as labels."""
    run._group.create_array(L.LABELS, shape=(N,), dtype="int64", chunks=(N,), fill_value=-1)
    back = reopen(store_path, mode="a")
    assert back.probe_labels is None
    back.set_probe_labels(np.arange(N) % C)
    assert reopen(store_path).probe_labels.tolist() == (np.arange(N) % C).tolist()


# ---------------------------------------------------------------------- MemoryRun


def test_memory_run_matches_the_store(store_path, run, rng):
    p = {s: probs(rng) for s in (0, 3, 4)}
    labels = np.array([0, 1, 2, 3, 0, 1])
    run.set_probe_labels(labels)
    for s in (0, 3, 4):
        run.append(s, weights(s), predictions=p[s] if s != 3 else None)
    stored = reopen(store_path)
    mem = MemoryRun("r", [0, 3, 4], {"w": np.stack([weights(s)["w"] for s in (0, 3, 4)])},
                    predictions={0: p[0], 4: p[4]}, labels=labels)
    copy = MemoryRun.from_view(stored)
    for view in (mem, copy):
        assert view.has_predictions is False
        assert view.prediction_hashes.tolist() == stored.prediction_hashes.tolist()
        np.testing.assert_array_equal(view.read_predictions([4, 0]), stored.read_predictions([4, 0]))
        assert view.read_predictions([4]).dtype == np.float32
        assert view.probe_labels.tolist() == labels.tolist() and view.probe_labels.dtype == np.int64
        with pytest.raises(StoreError, match=r"^run 'r' has no probe predictions at step 3$"):
            view.read_predictions()
        with pytest.raises(StoreError, match="no checkpoint at step 9"):
            view.read_predictions([9])
    full = MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))},
                     predictions=np.stack([p[0], p[3]]).astype(np.float16))
    assert full.has_predictions and full.read_predictions().dtype == np.float16
    np.testing.assert_array_equal(full.read_predictions(), np.stack([p[0], p[3]]).astype(np.float16))
    none = MemoryRun("n", [1], {"w": np.zeros((1, 3))})
    assert not none.has_predictions and none.probe_labels is None
    with pytest.raises(StoreError, match=r"^run 'n' has no probe predictions \(store them"):
        none.read_predictions()


@pytest.mark.parametrize("how", ["fewer samples", "row sum", "negative", "NaN", "Inf", "complex"])
def test_memory_run_refuses_what_the_store_refuses(rng, how):
    make, message = BAD_PREDICTIONS[how]
    with pytest.raises(ProbeError, match=message) as info:
        MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))}, predictions={1: probs(rng), 2: make(probs(rng))})
    assert str(info.value).startswith("run 'm' step 2: ")


def test_memory_run_shape_and_label_errors(rng):
    with pytest.raises(ProbeError, match=r"must be \(T, N, C\) with T = 2 steps, got shape \(1, 6, 4\)"):
        MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))}, predictions=probs(rng)[None])
    with pytest.raises(StoreError, match="no checkpoint at step 5"):
        MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))}, predictions={5: probs(rng)})
    with pytest.raises(ProbeError, match="probe labels must be"):
        MemoryRun("m", [1], {"w": np.zeros((1, 3))}, labels=[0.5])
    with pytest.raises(ProbeError, match="probe label 7 is not one of the 4 classes"):
        MemoryRun("m", [1], {"w": np.zeros((1, 3))}, predictions={1: probs(rng)}, labels=[7] * N)


def test_memory_run_reads_are_copies(rng):
    mem = MemoryRun("m", [1], {"w": np.zeros((1, 3))}, predictions={1: probs(rng)}, labels=[0] * N)
    mem.read_predictions()[0, 0, 0] = 5.0
    mem.probe_labels[0] = 3
    assert mem.read_predictions()[0, 0, 0] != 5.0 and mem.probe_labels[0] == 0


# ---------------------------------------------------------------------- Recorder


def test_recorder_logs_numpy_and_torch_predictions(store_path, rng):
    model = torch.nn.Linear(3, C)
    probe_x = torch.randn(N, 3)
    given = {}
    with dynlab.Recorder(store_path, "r") as rec:
        rec.run.set_probe_labels(np.arange(N) % C)
        with torch.no_grad():
            given[0] = torch.softmax(model(probe_x), dim=1)
        rec.log(0, model, predictions=given[0], loss=1.0)
        given[1] = probs(rng)
        rec.log(1, {k: v + 1 for k, v in model.state_dict().items()}, predictions=given[1])
        rec.log(2, {k: v + 2 for k, v in model.state_dict().items()})
        with pytest.raises(ProbeError, match=r"^run 'r' step 3: predictions contain NaN"):
            rec.log(3, model, predictions=torch.full((N, C), float("nan")))
    back = reopen(store_path)
    assert back.steps.tolist() == [0, 1, 2] and back.metrics["loss"][0] == 1.0
    np.testing.assert_array_equal(back.read_predictions([0, 1]),
                                  np.stack([given[0].numpy(), given[1].astype(np.float32)]))
    assert back.prediction_hashes.tolist()[2] == 0
    assert back.probe_labels.tolist() == (np.arange(N) % C).tolist()


# ---------------------------------------------------------------------- ingest sidecar


def _sidecar_run(directory, rng, steps=(0, 100, 200), labels=True, dtype=np.float32):
    (directory / "predictions").mkdir(parents=True, exist_ok=True)
    states, predictions = {}, {}
    for s in steps:
        states[s] = mlp_state(rng)
        np.savez(directory / f"ckpt_{s}.npz", **states[s])
        predictions[s] = probs(rng, dtype=dtype)
        np.save(directory / "predictions" / f"{s}.npy", predictions[s])
    if labels:
        np.save(directory / "predictions" / "labels.npy", np.arange(N) % C)
    return states, predictions


def test_sidecar_ingest_round_trip_and_reingest_is_a_noop(tmp_path, store_path, rng):
    src = tmp_path / "run-a"
    _, predictions = _sidecar_run(src, rng)
    np.save(src / "predictions" / "900.npy", probs(rng))  # no checkpoint at 900: ignored
    (src / "predictions" / "notes.txt").write_text("ignored")
    report = dynlab.ingest(src, store_path).runs[0]
    assert report.added == [0, 100, 200] and report.predictions == [0, 100, 200]
    assert report.skipped == []  # the predictions/ directory is not reported as skipped
    run = dynlab.open_store(store_path).run("run-a")
    assert run.has_predictions and run.probe_labels.tolist() == (np.arange(N) % C).tolist()
    np.testing.assert_array_equal(run.read_predictions(), np.stack(list(predictions.values())))
    hashes = run.prediction_hashes.tolist()
    again = dynlab.ingest(src, store_path).runs[0]
    assert (again.added, again.unchanged, again.predictions) == ([], [0, 100, 200], [])
    assert dynlab.open_store(store_path).run("run-a").prediction_hashes.tolist() == hashes


def test_sidecar_added_later_and_changed(tmp_path, store_path, rng):
    src = tmp_path / "r"
    _, predictions = _sidecar_run(src, rng, labels=False)
    (src / "predictions" / "100.npy").unlink()
    dynlab.ingest(src, store_path)
    assert dynlab.open_store(store_path).run("r").prediction_hashes.tolist()[1] == 0
    np.save(src / "predictions" / "100.npy", predictions[100])  # written later, e.g. by a probe job
    report = dynlab.ingest(src, store_path).runs[0]
    assert (report.unchanged, report.predictions) == ([0, 100, 200], [100])
    assert dynlab.open_store(store_path).run("r").has_predictions
    changed = probs(rng)
    np.save(src / "predictions" / "200.npy", changed)
    path = re.escape(str(src / "predictions" / "200.npy"))
    with pytest.raises(ProbeError, match=rf"^{path}: run 'r' step 200: already has different probe "
                                         r"predictions \(use --replace"):
        dynlab.ingest(src, store_path)
    np.testing.assert_array_equal(dynlab.open_store(store_path).run("r").read_predictions([200])[0],
                                  predictions[200])
    report = dynlab.ingest(src, store_path, replace=True).runs[0]
    assert report.predictions == [200] and report.replaced == []
    np.testing.assert_array_equal(dynlab.open_store(store_path).run("r").read_predictions([200])[0],
                                  changed.astype(np.float32))


def _bad_nan(src, rng):
    p = probs(rng)
    p[1, 1] = np.nan
    np.save(src / "predictions" / "100.npy", p)
    return src / "predictions" / "100.npy", "predictions contain NaN or Inf"


def _bad_shape(src, rng):
    np.save(src / "predictions" / "200.npy", probs(rng, c=C + 1))
    return src / "predictions" / "200.npy", r"\(samples, classes\) = \(6, 5\), but the run's earlier"


def _bad_sum(src, rng):
    np.save(src / "predictions" / "0.npy", probs(rng) * 0.9)
    return src / "predictions" / "0.npy", "sum to 0.9, not 1"


def _bad_name(src, rng):
    np.save(src / "predictions" / "step_x.npy", probs(rng))
    return src / "predictions" / "step_x.npy", "must be named <step>.npy or labels.npy"


def _bad_file(src, rng):
    (src / "predictions" / "100.npy").write_bytes(b"\x93NUMPY garbage")
    return src / "predictions" / "100.npy", "cannot read as a .npy array"


def _not_npy(src, rng):  # numpy's own message would call it a pickle and suggest loading it
    (src / "predictions" / "100.npy").write_text("step,loss\n100,0.5\n")
    return src / "predictions" / "100.npy", r"not a \.npy array \(save it with numpy\.save\)$"


def _bad_pickle(src, rng):
    np.save(src / "predictions" / "100.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return src / "predictions" / "100.npy", "cannot read as a .npy array"


def _bad_labels(src, rng):
    np.save(src / "predictions" / "labels.npy", np.arange(N) * 0.5)
    return src / "predictions" / "labels.npy", "probe labels must be a non-empty 1-d array"


def _labels_count(src, rng):
    np.save(src / "predictions" / "labels.npy", np.arange(N + 2) % C)
    return (src / "predictions" / "0.npy",
            "predictions are for 6 samples, but the run's probe labels are for 8")


@pytest.mark.parametrize("spoil", [_bad_nan, _bad_shape, _bad_sum, _bad_name, _bad_file, _not_npy,
                                   _bad_pickle, _bad_labels, _labels_count])
def test_bad_sidecar_files_stop_the_ingest_before_it_writes(tmp_path, store_path, rng, spoil):
    src = tmp_path / "r"
    _sidecar_run(src, rng)
    path, message = spoil(src, rng)
    with pytest.raises(CheckpointError, match=message) as info:
        dynlab.ingest(src, store_path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert not store_path.exists() or "r" not in dynlab.open_store(store_path).runs


def test_sidecar_conflicting_with_the_stored_run(tmp_path, store_path, rng):
    """Predictions that fit each other but not the run already in the store: refused naming the
    file, and that checkpoint is not committed (earlier ones stay)."""
    src = tmp_path / "r"
    _sidecar_run(src, rng, steps=(0, 1))
    dynlab.ingest(src, store_path)
    states = {2: mlp_state(rng)}
    np.savez(src / "ckpt_2.npz", **states[2])
    for s in (0, 1):
        (src / "predictions" / f"{s}.npy").unlink()
    (src / "predictions" / "labels.npy").unlink()
    np.save(src / "predictions" / "2.npy", probs(rng, n=N + 1))
    path = re.escape(str(src / "predictions" / "2.npy"))
    with pytest.raises(ProbeError, match=rf"^{path}: run 'r' step 2: predictions have \(samples, "
                                         r"classes\) = \(7, 4\), but the run's earlier steps have"):
        dynlab.ingest(src, store_path)
    run = dynlab.open_store(store_path).run("r")
    assert run.steps.tolist() == [0, 1] and run.has_predictions


def test_sidecar_with_files_given_on_the_command_line(tmp_path, store_path, rng):
    src = tmp_path / "r"
    _, predictions = _sidecar_run(src, rng, steps=(3, 4))
    report = dynlab.ingest([src / "ckpt_4.npz"], store_path, run="only4").runs[0]
    assert report.added == [4] and report.predictions == [4]
    np.testing.assert_array_equal(dynlab.open_store(store_path).run("only4").read_predictions(),
                                  predictions[4][None])
