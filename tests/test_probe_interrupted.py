"""Probe rows under interruptions of the real write paths (``Run.write_predictions``,
``Run.write_activations``, ``Run.append``, ``Run.replace``), not of a hand-written copy of their
write sequence: an exception raised from inside the store's own writes stands for a crash there.

What must hold (``dynlab.store._probe``): a row's hash is cleared before the row is overwritten
and written only after it, so an interrupted overwrite leaves the step *without* that row, never
with new values under the old hash; an append that dies before its commit leaves nothing a reader
sees, and the next append at that row does not inherit the leftovers.
"""

from __future__ import annotations

import numpy as np
import pytest

import dynlab
from dynlab.errors import StoreError
from dynlab.store import _layout as L

N, C, H = 6, 4, 3


class Crash(Exception):
    """Stands for the process dying at that point."""


def probs(rng: np.random.Generator) -> np.ndarray:
    x = rng.random((N, C)) + 0.05
    return x / x.sum(axis=1, keepdims=True)


def weights(step: int) -> dict[str, np.ndarray]:
    return {"fc.weight": np.full((C, H), float(step), dtype=np.float32),
            "fc.bias": np.full(C, float(step), dtype=np.float32)}


def reopen(store_path, mode="r"):
    return dynlab.open_store(store_path, mode=mode).run("r")


def crash_on_write(monkeypatch, run, key: str, *, nonzero: bool) -> None:
    """Make the run's row writer raise :class:`Crash` when it writes array ``key`` (only a non-zero
    value when ``nonzero``: the new hash, not the clearing 0)."""
    original = run._write_row

    def write(k, row, value, **kw):
        if k == key and (not nonzero or np.any(np.asarray(value) != 0)):
            raise Crash(k)
        return original(k, row, value, **kw)

    monkeypatch.setattr(run, "_write_row", write)


@pytest.fixture
def two_steps(store_path, rng):
    """Run 'r' with steps 0 and 1, both with predictions and activations of layer fc."""
    run = dynlab.open_store(store_path, mode="a").create_run("r")
    for step in (0, 1):
        run.append(step, weights(step), predictions=probs(rng),
                   activations={"fc": rng.standard_normal((N, H))})
    return run


@pytest.mark.parametrize(("values", "hashes", "write"), [
    (L.PREDICTIONS, L.PREDICTION_HASHES,
     lambda run, rng: run.write_predictions(1, probs(rng))),
    (L.activations_key("fc"), L.activation_hashes_key("fc"),
     lambda run, rng: run.write_activations(1, {"fc": rng.standard_normal((N, H))})),
])
def test_an_overwrite_interrupted_before_its_new_hash(store_path, rng, two_steps, monkeypatch,
                                                      values, hashes, write):
    run = two_steps
    kept = reopen(store_path)
    kept_rows = (kept.read_predictions([0]), kept.read_activations("fc", [0]))
    old_row = np.array(kept._array(values)[1])
    crash_on_write(monkeypatch, run, hashes, nonzero=True)
    with pytest.raises(Crash):
        write(run, rng)
    back = reopen(store_path)
    # the new values are on disk ...
    assert not np.array_equal(back._array(values)[1], old_row)
    # ... but the step reads as having none of them, not as the old hash over new values
    if hashes == L.PREDICTION_HASHES:
        assert back.prediction_hashes.tolist()[1] == 0 and back.activation_hashes[1, 0] != 0
        with pytest.raises(StoreError, match=r"no probe predictions at step 1$"):
            back.read_predictions([1])
    else:
        assert back.activation_hashes[1, 0] == 0 and back.prediction_hashes.tolist()[1] != 0
        with pytest.raises(StoreError, match=r"at step 1$"):
            back.read_activations("fc", [1])
    np.testing.assert_array_equal(back.read_predictions([0]), kept_rows[0])
    np.testing.assert_array_equal(back.read_activations("fc", [0]), kept_rows[1])


def test_an_append_interrupted_before_its_commit(store_path, rng, two_steps, monkeypatch):
    run = two_steps
    before = reopen(store_path)
    monkeypatch.setattr(run, "_commit", lambda row, step: (_ for _ in ()).throw(Crash("commit")))
    with pytest.raises(Crash):
        run.append(2, weights(2), predictions=probs(rng),
                   activations={"fc": rng.standard_normal((N, H)), "new": rng.standard_normal((N, 2))})
    back = reopen(store_path, mode="a")
    assert back.steps.tolist() == [0, 1]
    assert back.prediction_hashes.tolist() == before.prediction_hashes.tolist()
    assert back.activation_layers == ["fc"]  # 'new' was recorded, but has no committed row
    np.testing.assert_array_equal(back.activation_hashes, before.activation_hashes)
    back.append(2, weights(2))  # without probe rows: the leftovers at row 2 are not inherited
    again = reopen(store_path)
    assert again.prediction_hashes.tolist()[2] == 0 and again.activation_hashes[2, 0] == 0
    assert again.activation_layers == ["fc"]


def test_a_replace_interrupted_while_staging_leaves_the_step_as_it_was(
        store_path, rng, two_steps, monkeypatch):
    """The new tensors go to the uncommitted slot first: a crash there leaves the step, its
    hashes and its probe rows untouched."""
    run = two_steps
    before = reopen(store_path)
    crash_on_write(monkeypatch, run, f"{L.PARAMS}/fc.bias", nonzero=False)
    with pytest.raises(Crash):
        run.replace(1, weights(7))
    back = reopen(store_path)
    np.testing.assert_array_equal(back.read("fc.weight"), before.read("fc.weight"))
    np.testing.assert_array_equal(back.hashes, before.hashes)
    assert back.prediction_hashes.tolist() == before.prediction_hashes.tolist()
    np.testing.assert_array_equal(back.activation_hashes, before.activation_hashes)


def test_a_replace_interrupted_in_its_copy_leaves_the_step_without_probe_rows(
        store_path, rng, two_steps, monkeypatch):
    """The probe rows belong to the old weights: once any tensor of the step may have changed
    (the copy from the slot over the step) they are gone."""
    run = two_steps
    original = run._write_row

    def write(k, row, value, **kw):
        if k == f"{L.PARAMS}/fc.bias" and row == 1:
            raise Crash(k)
        return original(k, row, value, **kw)

    monkeypatch.setattr(run, "_write_row", write)
    with pytest.raises(Crash):
        run.replace(1, weights(7))
    back = reopen(store_path)
    assert back.prediction_hashes.tolist()[1] == 0 and back.activation_hashes[1, 0] == 0
    assert back.prediction_hashes.tolist()[0] != 0 and back.activation_hashes[0, 0] != 0


