"""Ingest: discovery, steps, metrics, re-ingest, NumPy readers, and every bad input of the issue."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import mlp_state

import dynlab
from dynlab.errors import CheckpointError, StoreError
from dynlab.ingestion._discover import step_from_name


def _npz_run(directory, rng, steps=(0, 100, 200), **extra):
    directory.mkdir(parents=True, exist_ok=True)
    states = {}
    for s in steps:
        states[s] = mlp_state(rng)
        np.savez(directory / f"ckpt_{s}.npz", **states[s], **extra)
    return states


def _assert_run_equals(store_path, run, states):
    r = dynlab.open_store(store_path).run(run)
    assert r.steps.tolist() == sorted(states)
    for s, state in states.items():
        got = r.checkpoint(s)
        assert list(got) == list(state)
        for name, value in state.items():
            assert got[name].dtype == value.dtype
            np.testing.assert_array_equal(got[name], value)


def test_run_directory_with_sidecar(tmp_path, store_path, rng):
    states = _npz_run(tmp_path / "run-a", rng)
    (tmp_path / "run-a" / "metrics.csv").write_text(
        "step,train_loss,val_loss,note\n0,2.0,2.1,x\n100,1.0,,y\n200,0.5,1.5,z\n300,0.1,0.1,w\n")
    (tmp_path / "run-a" / "README.txt").write_text("not a checkpoint")
    report = dynlab.ingest(tmp_path / "run-a", store_path, attrs={"width": 16})
    (r,) = report.runs
    assert (r.name, r.added, r.unchanged) == ("run-a", [0, 100, 200], [])
    assert [p.name for p in r.skipped] == ["README.txt"]
    _assert_run_equals(store_path, "run-a", states)
    run = dynlab.open_store(store_path).run("run-a")
    np.testing.assert_array_equal(run.metrics["train_loss"], [2.0, 1.0, 0.5])
    np.testing.assert_array_equal(run.metrics["val_loss"], [2.1, np.nan, 1.5])
    assert "note" not in run.metrics
    assert run.attrs == {"width": 16}
    assert run.info["framework"] == "numpy" and run.info["source"].endswith("run-a")


def test_reingest_is_a_noop_and_new_steps_append(tmp_path, store_path, rng):
    states = _npz_run(tmp_path / "r", rng, steps=(0, 1))
    dynlab.ingest(tmp_path / "r", store_path)
    again = dynlab.ingest(tmp_path / "r", store_path).runs[0]
    assert (again.added, again.unchanged) == ([], [0, 1])
    # touched but identical content: still a no-op (content hash)
    (tmp_path / "r" / "ckpt_1.npz").touch()
    np.savez(tmp_path / "r" / "ckpt_1.npz", **states[1])
    assert dynlab.ingest(tmp_path / "r", store_path).runs[0].unchanged == [0, 1]
    states.update(_npz_run(tmp_path / "r", rng, steps=(2,)))
    assert dynlab.ingest(tmp_path / "r", store_path).runs[0].added == [2]
    _assert_run_equals(store_path, "r", states)


@pytest.mark.parametrize("change", ["shape", "missing", "added"])
def test_a_refused_replace_leaves_the_step_as_it_was(tmp_path, store_path, rng, change):
    """--replace with a checkpoint that does not fit the run (its last tensor's shape, a tensor
    missing, one added): a one-line error naming the file, and the step keeps every tensor,
    hash and statistic it had (the new tensors go to the uncommitted slot first)."""
    states = _npz_run(tmp_path / "r", rng, steps=(0, 1))
    dynlab.ingest(tmp_path / "r", store_path)
    before = dynlab.open_store(store_path).run("r")
    hashes, stats = before.hashes.copy(), before.stats.copy()
    bad = mlp_state(rng)  # layers.0.* differ from step 1's: they would be overwritten first
    if change == "shape":
        bad["layers.1.bias"] = np.zeros(5, dtype=np.float32)
    elif change == "missing":
        del bad["layers.1.bias"]
    else:
        bad["extra"] = np.zeros(3, dtype=np.float32)
    np.savez(tmp_path / "r" / "ckpt_1.npz", **bad)
    with pytest.raises(CheckpointError, match=r"ckpt_1.npz: .*(shape|missing|not in run)"):
        dynlab.ingest(tmp_path / "r", store_path, replace=True)
    after = dynlab.open_store(store_path).run("r")
    _assert_run_equals(store_path, "r", states)
    np.testing.assert_array_equal(after.hashes, hashes)
    np.testing.assert_array_equal(after.stats, stats)


def test_changed_step_needs_replace(tmp_path, store_path, rng):
    _npz_run(tmp_path / "r", rng, steps=(0, 1))
    dynlab.ingest(tmp_path / "r", store_path)
    new = _npz_run(tmp_path / "r", rng, steps=(1,))
    with pytest.raises(CheckpointError, match=r"ckpt_1.npz: step 1 is already in run 'r' with "
                                              r"different content \(use --replace"):
        dynlab.ingest(tmp_path / "r", store_path)
    report = dynlab.ingest(tmp_path / "r", store_path, replace=True).runs[0]
    assert report.replaced == [1]
    got = dynlab.open_store(store_path).run("r").checkpoint(1)
    np.testing.assert_array_equal(got["layers.0.weight"], new[1]["layers.0.weight"])


def test_directory_of_runs_and_explicit_files(tmp_path, store_path, rng):
    a = _npz_run(tmp_path / "sweep" / "w8", rng, steps=(0, 5))
    b = _npz_run(tmp_path / "sweep" / "w16", rng, steps=(0, 7))
    report = dynlab.ingest(tmp_path / "sweep", store_path)
    assert sorted(r.name for r in report.runs) == ["w16", "w8"]
    _assert_run_equals(store_path, "w8", a)
    _assert_run_equals(store_path, "w16", b)
    files = [tmp_path / "sweep" / "w8" / "ckpt_0.npz", tmp_path / "sweep" / "w8" / "ckpt_5.npz"]
    dynlab.ingest(files, store_path, run="picked")
    _assert_run_equals(store_path, "picked", a)


def test_step_from_metadata_beats_the_name(tmp_path, store_path, rng):
    d = tmp_path / "r"
    d.mkdir()
    state = mlp_state(rng)
    np.savez(d / "final_99.npz", **state, global_step=np.int64(1234))
    dynlab.ingest(d, store_path)
    assert dynlab.open_store(store_path).run("r").steps.tolist() == [1234]


@pytest.mark.parametrize("name, step", [("ckpt_epoch3_step1200.pt", 1200), ("model-7.npz", 7),
                                        ("weights.h5", None), ("epoch_12.weights.h5", 12)])
def test_step_from_name(tmp_path, name, step):
    assert step_from_name(tmp_path / name) == step


def test_npy_dict_and_single_array(tmp_path, store_path, rng):
    d = tmp_path / "r"
    d.mkdir()
    state = mlp_state(rng)
    np.save(d / "step_3.npy", {**state, "epoch": 3, "loss": 0.25}, allow_pickle=True)
    dynlab.ingest(d, store_path)
    run = dynlab.open_store(store_path).run("r")
    assert run.steps.tolist() == [3] and run.metrics["loss"].tolist() == [0.25]
    _assert_run_equals(store_path, "r", {3: state})
    np.save(tmp_path / "w_5.npy", state["layers.0.weight"])
    dynlab.ingest(tmp_path / "w_5.npy", store_path, run="single")
    np.testing.assert_array_equal(dynlab.open_store(store_path).run("single").read("w_5")[0],
                                  state["layers.0.weight"])


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


# ------------------------------------------------------------------------------- bad input


def _expect(error, match, *args, **kwargs):
    with pytest.raises(error, match=match) as info:
        dynlab.ingest(*args, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


def test_bad_inputs_leave_no_trace(tmp_path, store_path, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _expect(CheckpointError, r"missing: no such file or directory", tmp_path / "missing", store_path)
    (tmp_path / "empty").mkdir()
    _expect(CheckpointError, "empty: no checkpoints found", tmp_path / "empty", store_path)
    (tmp_path / "notes.pt").write_text("hello, I am not a checkpoint" * 10)
    _expect(CheckpointError, "notes.pt: not a checkpoint", tmp_path / "notes.pt", store_path)
    (tmp_path / "zero.pt").write_bytes(b"")
    _expect(CheckpointError, "zero.pt: empty file", tmp_path / "zero.pt", store_path)
    good = tmp_path / "good_1.npz"
    np.savez(good, **mlp_state(rng))
    (tmp_path / "trunc_1.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect(CheckpointError, "trunc_1.npz: ", tmp_path / "trunc_1.npz", store_path)
    np.save(tmp_path / "evil_1.npy", np.array([_Evil()], dtype=object), allow_pickle=True)
    _expect(CheckpointError, "evil_1.npy: refusing to load posix.system",
            tmp_path / "evil_1.npy", store_path)
    assert not (tmp_path / "pwned").exists()
    np.savez(tmp_path / "nostep.npz", **mlp_state(rng))
    _expect(CheckpointError, "nostep.npz: cannot determine the step", tmp_path / "nostep.npz",
            store_path)
    # none of these created a store
    assert not store_path.exists()


def test_conflicts_with_the_run_keep_earlier_checkpoints(tmp_path, store_path, rng):
    states = _npz_run(tmp_path / "r", rng, steps=(0, 1))
    dynlab.ingest(tmp_path / "r", store_path)
    wrong = mlp_state(rng, widths=(8, 17, 4))
    np.savez(tmp_path / "r" / "ckpt_2.npz", **wrong)
    _expect(CheckpointError, r"ckpt_2.npz: tensor 'layers.0.weight' has shape \(17, 8\), but run "
                             r"'r' stores \(16, 8\)", tmp_path / "r", store_path)
    missing = mlp_state(rng)
    del missing["layers.1.bias"]
    np.savez(tmp_path / "r" / "ckpt_2.npz", **missing)
    _expect(CheckpointError, "ckpt_2.npz: tensors missing relative to run 'r': layers.1.bias",
            tmp_path / "r", store_path)
    np.savez(tmp_path / "r" / "ckpt_2.npz", **mlp_state(rng), extra=np.zeros(3))
    _expect(CheckpointError, "ckpt_2.npz: tensor 'extra' is not in run 'r'", tmp_path / "r",
            store_path)
    _assert_run_equals(store_path, "r", states)


def test_two_files_one_step(tmp_path, store_path, rng):
    d = tmp_path / "r"
    d.mkdir()
    np.savez(d / "a_1.npz", **mlp_state(rng))
    np.savez(d / "b_1.npz", **mlp_state(rng))
    _expect(CheckpointError, "b_1.npz: step 1 is also the step of .*a_1.npz", d, store_path)


def test_sidecar_without_step_column(tmp_path, store_path, rng):
    _npz_run(tmp_path / "r", rng, steps=(0,))
    (tmp_path / "r" / "metrics.csv").write_text("epoch,loss\n0,1.0\n")
    _expect(CheckpointError, "metrics.csv: row 1 has no 'step' column", tmp_path / "r", store_path)


def test_unknown_format_name(tmp_path, store_path, rng):
    _npz_run(tmp_path / "r", rng, steps=(0,))
    _expect(CheckpointError, "unknown format 'tf'", tmp_path / "r", store_path, format="tf")


def test_reading_a_missing_store_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        dynlab.open_store(tmp_path / "nope.zarr").run("x")


def test_pickle_module_is_not_used_for_plain_npz(tmp_path, store_path, rng, monkeypatch):
    """.npz members load with allow_pickle=False: an object member is refused."""
    d = tmp_path / "r"
    d.mkdir()
    np.savez(d / "c_1.npz", w=np.array([{"a": 1}], dtype=object))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle used"))
    _expect(CheckpointError, "c_1.npz", d, store_path)
