"""Probe activations and layer descriptions in the store (``probe/activations/<layer>`` (T, N, H),
``probe/activation_hashes/<layer>``, ``Run.probe_layers``): the Run API, the commit protocol under
simulated crashes, MemoryRun parity, Recorder.log(activations=…), and every bad input refused with a
one-line message and nothing stored."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import dynlab
from dynlab.errors import DuplicateContentWarning, ProbeError, StoreError
from dynlab.store import _layout as L
from dynlab.store._hash import tensor_hash
from dynlab.testing import MemoryRun

torch.set_num_threads(1)
N, H1, H2, C = 6, 3, 5, 4
LAYERS = {"fc1": {"kind": "linear", "weight": "fc1.weight", "bias": "fc1.bias", "output": "relu"},
          "fc2": {"kind": "linear", "weight": "fc2.weight", "bias": None, "output": "softmax"}}


def acts(rng: np.random.Generator, n: int = N, h1: int = H1, h2: int = H2, dtype=np.float64):
    return {"fc1": rng.standard_normal((n, h1)).astype(dtype),
            "fc2": rng.standard_normal((n, h2)).astype(dtype)}


def probs(rng: np.random.Generator, n: int = N, c: int = C) -> np.ndarray:
    x = rng.random((n, c)) + 0.05
    return x / x.sum(axis=1, keepdims=True)


def weights(step: int) -> dict[str, np.ndarray]:
    return {"fc1.weight": np.full((H2, H1), float(step), dtype=np.float32),
            "fc1.bias": np.zeros(H2, dtype=np.float32) + step,
            "fc2.weight": np.full((C, H2), float(step), dtype=np.float32)}


@pytest.fixture
def run(store_path):
    return dynlab.open_store(store_path, mode="a").create_run("r")


def reopen(store_path, mode="r"):
    return dynlab.open_store(store_path, mode=mode).run("r")


def snapshot(run) -> tuple:
    """Everything a reader sees of the run's probe data (fresh from disk)."""
    layers = run.activation_layers
    hashes = run.activation_hashes
    rows = {}
    for j, layer in enumerate(layers):
        have = run.steps[hashes[:, j] != 0]
        rows[layer] = run.read_activations(layer, have)
    labels = run.probe_labels
    return (run.steps.tolist(), layers, hashes.tolist(), rows, run.prediction_hashes.tolist(),
            None if labels is None else labels.tolist(), run.probe_layers)


def same_snapshot(a: tuple, b: tuple) -> bool:
    return (a[:3] == b[:3] and a[4:] == b[4:] and a[3].keys() == b[3].keys()
            and all(np.array_equal(a[3][k], b[3][k]) for k in a[3]))


# ---------------------------------------------------------------------- round trips


def test_append_with_activations_round_trip(store_path, run, rng):
    given = {s: acts(rng) for s in (0, 5, 9)}
    for s, a in given.items():
        run.append(s, weights(s), {"loss": 1.0}, activations=a)
    back = reopen(store_path)
    assert back.has_activations and back.activation_layers == ["fc1", "fc2"]
    for layer in ("fc1", "fc2"):
        got = back.read_activations(layer)
        assert got.dtype == np.float32 and got.shape == (3, N, given[0][layer].shape[1])
        np.testing.assert_array_equal(got, np.stack([given[s][layer] for s in (0, 5, 9)]).astype(
            np.float32))
        np.testing.assert_array_equal(back.read_activations(layer, [9, 0]),
                                      np.stack([given[9][layer], given[0][layer]]).astype(np.float32))
        assert back.read_activations(layer, []).shape == (0, N, given[0][layer].shape[1])
    hashes = back.activation_hashes
    assert hashes.dtype == np.uint64 and hashes.shape == (3, 2)
    want = [[tensor_hash(given[s][layer].astype(np.float32)) for layer in ("fc1", "fc2")]
            for s in (0, 5, 9)]
    assert hashes.tolist() == want
    assert not back.has_predictions  # activations alone: predictions untouched
    np.testing.assert_array_equal(back.checkpoint(5)["fc1.weight"], weights(5)["fc1.weight"])


def test_append_with_predictions_and_activations(store_path, run, rng):
    p, a = probs(rng), acts(rng, dtype=np.float16)
    run.set_probe_labels(np.arange(N) % C)
    run.append(0, weights(0), predictions=p, activations=a)
    back = reopen(store_path)
    assert back.has_predictions and back.has_activations
    np.testing.assert_array_equal(back.read_activations("fc2")[0], a["fc2"].astype(np.float32))


def test_a_run_without_activations(store_path, run):
    run.append(0, weights(0))
    back = reopen(store_path)
    assert back.activation_layers == [] and not back.has_activations
    assert back.activation_hashes.shape == (1, 0) and back.probe_layers == {}
    with pytest.raises(StoreError, match=r"^run 'r' has no probe activations \(store them with "
                                         r"dynlab probe --activations"):
        back.read_activations("fc1")


def test_write_activations_for_existing_checkpoints(store_path, run, rng):
    for s in (0, 1, 2):
        run.append(s, weights(s))
    a = {s: acts(rng) for s in (0, 1, 2)}
    run.write_activations(1, a[1])
    back = reopen(store_path)
    assert back.activation_layers == ["fc1", "fc2"] and not back.has_activations
    assert (back.activation_hashes != 0).tolist() == [[False, False], [True, True], [False, False]]
    with pytest.raises(StoreError, match=r"^run 'r' has no activations of layer 'fc1' at step 0, 2$"):
        back.read_activations("fc1")
    with pytest.raises(StoreError, match=r"no activations of layer 'fc3' \(did you mean 'fc2'\?\)"):
        back.read_activations("fc3")
    with pytest.raises(StoreError, match=r"no activations of layer 'conv' \(its layers: fc1, fc2\)"):
        back.read_activations("conv")
    run.write_activations(0, {"fc1": a[0]["fc1"]})  # one layer at a time is fine
    run.write_activations(0, {"fc2": a[0]["fc2"]})
    run.write_activations(2, a[2])
    back = reopen(store_path)
    assert back.has_activations
    np.testing.assert_array_equal(back.read_activations("fc2"),
                                  np.stack([a[s]["fc2"] for s in (0, 1, 2)]).astype(np.float32))
    # identical again: a no-op (neither the row nor its hash is rewritten)
    layer_dir = store_path / "runs" / "r" / "probe"
    files = sorted(p for p in layer_dir.rglob("*") if p.is_file())
    before = (back.activation_hashes.tolist(), [p.stat().st_mtime_ns for p in files])
    run.write_activations(1, {k: v.astype(np.float32) for k, v in a[1].items()})
    assert (reopen(store_path).activation_hashes.tolist(),
            [p.stat().st_mtime_ns for p in files]) == before
    # different: refused with overwrite=False (nothing written), else overwritten
    new = acts(rng)
    with pytest.raises(ProbeError, match="step 1: already has different activations of layer 'fc1'"):
        run.write_activations(1, new, overwrite=False)
    assert reopen(store_path).activation_hashes.tolist() == before[0]
    run.write_activations(1, new)
    np.testing.assert_array_equal(reopen(store_path).read_activations("fc1", [1])[0],
                                  new["fc1"].astype(np.float32))
    with pytest.raises(StoreError, match="no checkpoint at step 7"):
        run.write_activations(7, new)
    run.append(3, weights(3))
    assert run.activation_hashes.tolist() == reopen(store_path).activation_hashes.tolist()
    assert run.activation_hashes[3].tolist() == [0, 0]  # the writer's own view is kept up to date


def test_activations_of_a_late_row_then_appends_grow_the_arrays(store_path, run, rng, monkeypatch):
    monkeypatch.setattr(L, "MIN_GROWTH", 1)
    for s in range(4):
        run.append(s, weights(s))
    run.write_activations(3, acts(rng))
    given = [acts(rng) for _ in range(3)]
    for s, a in zip(range(4, 7), given, strict=True):
        run.append(s, weights(s), activations=a)
    back = reopen(store_path)
    hashes = back.activation_hashes
    assert (hashes[:3] == 0).all() and (hashes[3:] != 0).all()
    np.testing.assert_array_equal(back.read_activations("fc1", [4, 5, 6]),
                                  np.stack([a["fc1"] for a in given]).astype(np.float32))


def test_appends_without_activations_after_some_with(store_path, run, rng):
    run.append(0, weights(0), activations=acts(rng))
    run.append(1, weights(1))
    back = reopen(store_path)
    assert back.activation_hashes[1].tolist() == [0, 0] and not back.has_activations
    with pytest.raises(StoreError, match=r"at step 1$"):
        back.read_activations("fc2")


def test_replace_drops_or_replaces_activations(store_path, run, rng):
    run.append(0, weights(0), activations=acts(rng))
    run.append(1, weights(1), activations=acts(rng), predictions=probs(rng))
    run.replace(1, weights(5))  # new weights: the old activations no longer belong to them
    back = reopen(store_path)
    assert back.activation_hashes[1].tolist() == [0, 0] and back.prediction_hashes[1] == 0
    assert back.activation_hashes[0].all()
    a = acts(rng)
    run.replace(1, weights(6), activations={"fc2": a["fc2"]})
    back = reopen(store_path)
    assert (back.activation_hashes[1] != 0).tolist() == [False, True]
    np.testing.assert_array_equal(back.read_activations("fc2", [1])[0], a["fc2"].astype(np.float32))


def test_layers_in_model_order(store_path, run, rng):
    """activation_layers follows probe_layers; layers it does not describe come after, in the
    order they were first written."""
    run.append(0, weights(0))
    a = acts(rng)
    run.write_activations(0, {"fc2": a["fc2"]})
    run.write_activations(0, {"extra": a["fc1"], "fc1": a["fc1"]})
    assert reopen(store_path).activation_layers == ["fc2", "extra", "fc1"]
    run.set_probe_layers(LAYERS)
    back = reopen(store_path)
    assert back.activation_layers == ["fc1", "fc2", "extra"]
    assert back.activation_hashes[0].tolist() == [tensor_hash(a[k].astype(np.float32))
                                                  for k in ("fc1", "fc2", "fc1")]


# ---------------------------------------------------------------------- probe layers


def test_probe_layers_round_trip(store_path, run):
    assert run.probe_layers == {}
    given = {"fc2": {"kind": "linear", "weight": "fc2.weight", "output": "softmax"},
             "fc1": LAYERS["fc1"]}
    run.set_probe_layers(given)  # before any checkpoint: tensor names cannot be checked yet
    back = reopen(store_path)
    assert list(back.probe_layers) == ["fc2", "fc1"]  # the given order is kept
    assert back.probe_layers["fc2"] == {"kind": "linear", "weight": "fc2.weight", "bias": None,
                                        "output": "softmax"}
    run.append(0, weights(0))
    run.set_probe_layers(LAYERS)
    assert reopen(store_path).probe_layers == LAYERS
    run.set_probe_layers({})
    assert reopen(store_path).probe_layers == {}


@pytest.mark.parametrize(("layers", "message"), [
    ({"fc1": {**LAYERS["fc1"], "kind": "rnn"}}, r"probe layer 'fc1': kind must be one of linear, "
                                               r"conv, got 'rnn'"),
    ({"fc1": {**LAYERS["fc1"], "output": "gelu"}}, "output must be one of softmax, sigmoid, tanh, "
                                                   "relu, linear, got 'gelu'"),
    ({"fc1": {**LAYERS["fc1"], "noise": 1}}, "unknown key 'noise'"),
    ({"fc1": {**LAYERS["fc1"], "weight": "fc1.weigth"}}, r"weight 'fc1.weigth' is not a tensor of "
                                                         r"the run \(did you mean 'fc1.weight'\?\)"),
    ({"fc1": {**LAYERS["fc1"], "bias": "fc2.bias"}}, "bias 'fc2.bias' is not a tensor of the run"),
    ({"fc1": {**LAYERS["fc1"], "weight": None}}, "weight must be a tensor name, got None"),
    ({"a/b": LAYERS["fc1"]}, r"invalid layer name 'a/b'"),
    ({"fc1": "linear"}, "must be described by a mapping, got str"),
    (["fc1"], "must be a mapping layer → description, got list"),
])
def test_bad_probe_layers(store_path, run, layers, message):
    run.append(0, weights(0))
    run.set_probe_layers(LAYERS)
    with pytest.raises(ProbeError, match=message) as info:
        run.set_probe_layers(layers)
    assert str(info.value).startswith("run 'r': ") and "\n" not in str(info.value)
    assert reopen(store_path).probe_layers == LAYERS
    with pytest.raises(ProbeError, match=message):
        MemoryRun("r", [0], {k: v[None] for k, v in weights(0).items()}, probe_layers=layers)


# ---------------------------------------------------------------------- bad input


BAD_ACTIVATIONS = {
    "NaN": (lambda a: {**a, "fc2": np.where(np.arange(N * H2).reshape(N, H2) == 7, np.nan, a["fc2"])},
            r"activations of layer 'fc2' contain NaN or Inf"),
    "Inf": (lambda a: {**a, "fc1": np.where(np.arange(N * H1).reshape(N, H1) == 0, -np.inf, a["fc1"])},
            r"activations of layer 'fc1' contain NaN or Inf"),
    "float32 overflow": (lambda a: {**a, "fc1": a["fc1"] * 1e300},
                         r"activations of layer 'fc1' contain NaN or Inf"),
    "fewer samples": (lambda a: {**a, "fc1": a["fc1"][:-1]},
                      r"activations of layer 'fc1' are for 5 samples, but the run's probe set has 6 "
                      r"\(from its probe labels\)"),
    "wrong H": (lambda a: {**a, "fc2": np.hstack([a["fc2"], a["fc2"]])},
                r"activations of layer 'fc2' have 10 features, but the layer's earlier steps have 5"),
    "1-d": (lambda a: {**a, "fc1": a["fc1"][0]},
            r"must be \(samples, features\) with none empty, got shape \(3,\)"),
    "empty": (lambda a: {**a, "fc1": a["fc1"][:, :0]}, r"got shape \(6, 0\)"),
    "complex": (lambda a: {**a, "fc1": a["fc1"].astype(np.complex64)},
                "must be real numbers, got dtype complex64"),
    "bool": (lambda a: {**a, "fc1": a["fc1"] > 0}, "must be real numbers, got dtype bool"),
    "layer name": (lambda a: {"fc/1": a["fc1"]}, r"invalid layer name 'fc/1'"),
    "not a mapping": (lambda a: a["fc1"], "activations must be a non-empty mapping layer"),
    "empty mapping": (lambda a: {}, "activations must be a non-empty mapping layer"),
}


@pytest.mark.parametrize("how", list(BAD_ACTIVATIONS))
def test_bad_activations_are_refused_and_nothing_is_stored(store_path, run, rng, how):
    make, message = BAD_ACTIVATIONS[how]
    run.set_probe_labels(np.arange(N) % C)
    run.append(0, weights(0), activations=acts(rng))
    run.append(1, weights(1))
    before = snapshot(reopen(store_path))
    bad = make(acts(rng))
    for attempt in (lambda: run.append(2, weights(2), activations=bad),
                    lambda: run.append(2, weights(2), predictions=probs(rng), activations=bad),
                    lambda: run.write_activations(1, bad),
                    lambda: run.write_activations(0, bad),
                    lambda: run.replace(0, weights(7), activations=bad)):
        with pytest.raises(ProbeError, match=message) as info:
            attempt()
        assert "\n" not in str(info.value) and str(info.value).startswith("run 'r' step ")
        assert same_snapshot(snapshot(reopen(store_path)), before)
    np.testing.assert_array_equal(reopen(store_path).checkpoint(0)["fc1.weight"],
                                  weights(0)["fc1.weight"])
    good = acts(rng)  # the refused rows left nothing a later append could pick up
    run.append(2, weights(2), activations=good)
    back = reopen(store_path)
    assert back.activation_layers == ["fc1", "fc2"]
    np.testing.assert_array_equal(back.read_activations("fc1", [2])[0], good["fc1"].astype(np.float32))


def test_the_overflow_case_is_finite_in_float64(rng):
    """The "float32 overflow" input above is finite as given: only the cast makes it Inf."""
    bad = BAD_ACTIVATIONS["float32 overflow"][0](acts(rng))["fc1"]
    with np.errstate(over="ignore"):
        assert np.isfinite(bad).all() and not np.isfinite(bad.astype(np.float32)).all()


@pytest.mark.parametrize(("setup", "message"), [
    ("predictions", r"are for 5 samples, but the run's probe set has 6 \(from its probe predictions\)"),
    ("layer", r"are for 5 samples, but the run's probe set has 6 \(from its activations of layer "
              r"'fc1'\)"),
])
def test_samples_must_match_the_probe_set(store_path, run, rng, setup, message):
    if setup == "predictions":
        run.append(0, weights(0), predictions=probs(rng))
    else:
        run.append(0, weights(0), activations={"fc1": acts(rng)["fc1"]})
    with pytest.raises(ProbeError, match=message):
        run.write_activations(0, {"fc2": acts(rng, n=5)["fc2"]})
    assert "fc2" not in reopen(store_path).activation_layers


def test_samples_agree_within_one_call(store_path, run, rng):
    a = acts(rng)
    with pytest.raises(ProbeError, match=r"step 0: activations of layer 'fc2' are for 5 samples, but "
                                         r"the run's probe set has 6 \(from layer 'fc1' in the same "
                                         r"call\)"):
        run.append(0, weights(0), activations={"fc1": a["fc1"], "fc2": a["fc2"][:5]})
    with pytest.raises(ProbeError, match=r"activations of layer 'fc1' are for 6 samples, but the "
                                         r"run's probe set has 5 \(from the predictions given with"):
        run.append(0, weights(0), predictions=probs(rng, n=5), activations=a)
    assert len(reopen(store_path)) == 0


def test_predictions_and_labels_must_match_stored_activations(store_path, run, rng):
    run.append(0, weights(0), activations=acts(rng))
    with pytest.raises(ProbeError, match=r"^run 'r' step 0: predictions are for 5 samples, but the "
                                         r"run's probe set has 6 \(from its activations of layer "
                                         r"'fc1'\)$"):
        run.write_predictions(0, probs(rng, n=5))
    with pytest.raises(ProbeError, match=r"^run 'r': probe labels are for 4 samples, but the run's "
                                         r"probe set has 6"):
        run.set_probe_labels(np.arange(4))
    back = reopen(store_path)
    assert back.probe_labels is None and not back.prediction_hashes.any()


# ---------------------------------------------------------------------- crashes


def _crash_append(run, step, activations, *, resize_step=False):
    """An append that dies after writing every row, activations included, before its commit."""
    n = len(run)
    with run.writing(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateContentWarning)
        checked = None if activations is None else run._checked_activations(step, activations)
        hashes, stats, _ = run._write_tensors(n, weights(step), first=(n == 0))
        run._write_row_extras(n, hashes, stats, None)
        run._write_activation_rows(n, checked)
        run._writes.wait()
        if resize_step and n:
            run._group[L.STEP].resize((n + 1,))


@pytest.mark.parametrize("resize_step", [False, True])
def test_crash_between_the_activation_rows_and_the_commit(store_path, run, rng, resize_step):
    run.append(0, weights(0), activations={"fc1": acts(rng)["fc1"]})
    run.append(1, weights(1))
    before = snapshot(reopen(store_path))
    _crash_append(run, 2, acts(rng), resize_step=resize_step)  # fc2 is new: recorded, not committed
    after = reopen(store_path, mode="a")
    assert same_snapshot(snapshot(after), before)
    assert after.activation_layers == ["fc1"]
    # the next append at that row, without activations, must not inherit the leftover rows
    after.append(2, weights(2))
    back = reopen(store_path)
    assert back.activation_hashes[2].tolist() == [0] and back.activation_layers == ["fc1"]
    with pytest.raises(StoreError, match=r"at step 1, 2$"):
        back.read_activations("fc1")


def test_crash_in_the_first_append_with_another_shape(store_path, run, rng):
    """Leftover activations of an uncommitted first append do not fix N or H."""
    _crash_append(run, 0, acts(rng, n=3, h1=7))
    fresh = reopen(store_path, mode="a")
    assert len(fresh) == 0 and fresh.activation_layers == []
    a = acts(rng)
    fresh.append(0, weights(0), activations=a)
    got = reopen(store_path).read_activations("fc1")
    np.testing.assert_array_equal(got[0], a["fc1"].astype(np.float32))


def test_crash_while_overwriting_activations_leaves_the_step_without(store_path, run, rng):
    """write_activations over existing ones: the hash is cleared first, so a crash after the new
    row but before its hash shows the step without that layer, never a mixed row."""
    run.append(0, weights(0), activations=acts(rng))
    run.append(1, weights(1), activations=acts(rng))
    kept = reopen(store_path).read_activations("fc1", [0])
    with run.writing():
        with run._rows_written():
            run._write_row(L.activation_hashes_key("fc1"), 1, np.zeros((), dtype=np.uint64),
                           create=False)
        with run._rows_written():
            run._write_row(L.activations_key("fc1"), 1, acts(rng)["fc1"].astype(np.float32),
                           create=False)
    back = reopen(store_path)
    assert back.activation_hashes[1].tolist()[0] == 0 and back.activation_hashes[1, 1] != 0
    np.testing.assert_array_equal(back.read_activations("fc1", [0]), kept)
    with pytest.raises(StoreError, match=r"no activations of layer 'fc1' at step 1$"):
        back.read_activations("fc1", [1])


# ---------------------------------------------------------------------- MemoryRun


def test_memory_run_matches_the_store(store_path, run, rng):
    a = {s: acts(rng) for s in (0, 3, 4)}
    run.set_probe_layers(LAYERS)
    for s in (0, 3, 4):
        run.append(s, weights(s), activations=a[s] if s != 3 else {"fc2": a[s]["fc2"]})
    stored = reopen(store_path)
    tensors = {k: np.stack([weights(s)[k] for s in (0, 3, 4)]) for k in weights(0)}
    mem = MemoryRun("r", [0, 3, 4], tensors, probe_layers=LAYERS,
                    activations={"fc2": {s: a[s]["fc2"] for s in (0, 3, 4)},
                                 "fc1": {0: a[0]["fc1"], 4: a[4]["fc1"]}})
    copy = MemoryRun.from_view(stored)
    for view in (mem, copy):
        assert view.activation_layers == stored.activation_layers == ["fc1", "fc2"]
        assert view.activation_hashes.tolist() == stored.activation_hashes.tolist()
        assert view.probe_layers == stored.probe_layers == LAYERS
        assert view.has_activations is False
        for layer in ("fc1", "fc2"):
            np.testing.assert_array_equal(view.read_activations(layer, [4, 0]),
                                          stored.read_activations(layer, [4, 0]))
        assert view.read_activations("fc2").dtype == np.float32
        with pytest.raises(StoreError, match=r"^run 'r' has no activations of layer 'fc1' at step 3$"):
            view.read_activations("fc1")
        with pytest.raises(StoreError, match=r"did you mean 'fc1'"):
            view.read_activations("fc1x")
        with pytest.raises(StoreError, match="no checkpoint at step 9"):
            view.read_activations("fc1", [9])
    full = MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))},
                     activations={"c": np.stack([a[0]["fc1"], a[3]["fc1"]])})
    assert full.has_activations and full.probe_layers == {}
    np.testing.assert_array_equal(full.read_activations("c"),
                                  np.stack([a[0]["fc1"], a[3]["fc1"]]).astype(np.float32))
    none = MemoryRun("n", [1], {"w": np.zeros((1, 3))})
    assert none.activation_layers == [] and none.activation_hashes.shape == (1, 0)
    with pytest.raises(StoreError, match=r"^run 'n' has no probe activations"):
        none.read_activations("c")


@pytest.mark.parametrize("how", ["NaN", "float32 overflow", "fewer samples", "wrong H", "complex"])
def test_memory_run_refuses_what_the_store_refuses(rng, how):
    make, message = BAD_ACTIVATIONS[how]
    with pytest.raises(ProbeError, match=message.replace("the run's probe set has 6 \\(from its "
                                                         "probe labels\\)", "")) as info:
        MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))}, labels=np.arange(N) % C,
                  activations={layer: {1: acts(rng)[layer], 2: make(acts(rng))[layer]}
                               for layer in ("fc1", "fc2")})
    assert str(info.value).startswith("run 'm' step 2: ")


def test_memory_run_shape_errors(rng):
    with pytest.raises(ProbeError, match=r"activations of layer 'c' must be \(T, N, H\) with T = 2 "
                                         r"steps, got shape \(1, 6, 3\)"):
        MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))}, activations={"c": acts(rng)["fc1"][None]})
    with pytest.raises(StoreError, match="no checkpoint at step 5"):
        MemoryRun("m", [1, 2], {"w": np.zeros((2, 3))}, activations={"c": {5: acts(rng)["fc1"]}})


# ---------------------------------------------------------------------- Recorder


def test_recorder_logs_activations_and_layers(store_path, rng):
    model = torch.nn.Sequential(torch.nn.Linear(H1, H2), torch.nn.Tanh(), torch.nn.Linear(H2, C))
    x = torch.randn(N, H1)
    given = {}
    with dynlab.Recorder(store_path, "r", probe_layers=model) as rec:
        for step in (0, 1):
            with torch.no_grad():
                hidden = torch.tanh(model[0](x))
            given[step] = {"0": x, "2": hidden}
            rec.log(step, model, activations=given[step], loss=1.0)
            with torch.no_grad():
                model[0].weight.add_(0.1)
        rec.log(2, model, activations={"0": x.numpy()})
        with pytest.raises(ProbeError, match=r"^run 'r' step 3: activations of layer '2' contain "):
            rec.log(3, model, activations={"2": torch.full((N, H2), float("nan"))})
    back = reopen(store_path)
    assert back.steps.tolist() == [0, 1, 2]
    assert back.probe_layers == {
        "0": {"kind": "linear", "weight": "0.weight", "bias": "0.bias", "output": "tanh"},
        "2": {"kind": "linear", "weight": "2.weight", "bias": "2.bias", "output": "softmax"}}
    np.testing.assert_array_equal(back.read_activations("2", [0, 1]),
                                  np.stack([given[s]["2"].numpy() for s in (0, 1)]))
    assert (back.activation_hashes != 0).tolist() == [[True, True], [True, True], [True, False]]
    with dynlab.Recorder(store_path, "r") as rec:
        rec.set_probe_layers({"0": {"kind": "linear", "weight": "0.weight", "output": "relu"}})
    assert reopen(store_path).probe_layers["0"]["output"] == "relu"


def test_recorder_with_bad_probe_layers_releases_the_lock(store_path):
    with pytest.raises(ProbeError, match="kind must be one of"):
        dynlab.Recorder(store_path, "r", probe_layers={"a": {"kind": "x", "weight": "a.w",
                                                             "output": "relu"}})
    with dynlab.Recorder(store_path, "r") as rec:  # not locked by the failed one
        rec.log(0, weights(0))


# ---------------------------------------------------------------------- state machine


class ActivationMachine(RuleBasedStateMachine):
    """The run's activations against a dict model {(step, layer): row} under random appends (with
    any subset of layers, or a bad row that must change nothing), write_activations, replace,
    crashed appends (rows written, never committed) and reopens."""

    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.path = self.tmp / "s.zarr"
        self.run = dynlab.open_store(self.path, mode="a").create_run("r")
        self.steps: list[int] = []
        self.rows: dict[tuple[int, str], np.ndarray] = {}

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _acts(self, seed: int, layers) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {layer: rng.standard_normal((N, H1 if layer == "fc1" else H2)).astype(np.float32)
                for layer in layers}

    @rule(seed=st.integers(0, 2**16), layers=st.sets(st.sampled_from(["fc1", "fc2"])))
    def append(self, seed, layers):
        step = (self.steps[-1] + 1) if self.steps else 0
        given = self._acts(seed, sorted(layers))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DuplicateContentWarning)
            self.run.append(step, weights(seed), activations=given or None)
        self.steps.append(step)
        self.rows.update({(step, k): v for k, v in given.items()})

    @rule(seed=st.integers(0, 2**16), how=st.sampled_from(["NaN", "fewer samples", "wrong H"]))
    def append_bad(self, seed, how):
        bad = BAD_ACTIVATIONS[how][0](acts(np.random.default_rng(seed)))
        step = (self.steps[-1] + 1) if self.steps else 0
        committed_h = {k for (_, k) in self.rows}
        if how == "wrong H" and "fc2" not in committed_h:
            bad = {"fc2": bad["fc2"], "fc1": np.full((N + 1, H1), 1.0)}  # N still wrong
        with pytest.raises(ProbeError):
            self.run.append(step, weights(seed), activations=bad)

    @precondition(lambda self: self.steps)
    @rule(data=st.data(), seed=st.integers(0, 2**16), layers=st.sets(st.sampled_from(["fc1", "fc2"]),
                                                                      min_size=1))
    def write(self, data, seed, layers):
        step = data.draw(st.sampled_from(self.steps))
        given = self._acts(seed, sorted(layers))
        self.run.write_activations(step, given)
        self.rows.update({(step, k): v for k, v in given.items()})

    @precondition(lambda self: self.steps)
    @rule(data=st.data(), seed=st.integers(0, 2**16), layers=st.sets(st.sampled_from(["fc1", "fc2"])))
    def replace(self, data, seed, layers):
        step = data.draw(st.sampled_from(self.steps))
        given = self._acts(seed, sorted(layers))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DuplicateContentWarning)
            self.run.replace(step, weights(seed), activations=given or None)
        self.rows = {k: v for k, v in self.rows.items() if k[0] != step}
        self.rows.update({(step, k): v for k, v in given.items()})

    @rule(seed=st.integers(0, 2**16), n=st.sampled_from([N, 2]), resize=st.booleans())
    def crash(self, seed, n, resize):
        step = (self.steps[-1] + 1) if self.steps else 0
        rng = np.random.default_rng(seed)
        if n != N and self.rows:
            n = N  # a leftover may differ in N only while nothing fixes it
        given = {"fc1": rng.standard_normal((n, H1)), "fc2": rng.standard_normal((n, H2))}
        _crash_append(self.run, step, given, resize_step=resize)
        self.run = reopen(self.path, mode="a")

    @rule()
    def reopen(self):
        self.run = reopen(self.path, mode="a")

    @invariant()
    def matches_the_model(self):
        for view in (self.run, reopen(self.path)):
            assert view.steps.tolist() == self.steps
            layers = sorted({k for (_, k) in self.rows}, key=["fc1", "fc2"].index)
            assert sorted(view.activation_layers) == layers
            hashes = view.activation_hashes
            for j, layer in enumerate(view.activation_layers):
                for i, step in enumerate(self.steps):
                    row = self.rows.get((step, layer))
                    assert hashes[i, j] == (0 if row is None else tensor_hash(row))
                have = [s for s in self.steps if (s, layer) in self.rows]
                got = view.read_activations(layer, have)
                for k, s in enumerate(have):
                    np.testing.assert_array_equal(got[k], self.rows[(s, layer)])


ActivationMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=12,
                                               deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
test_activation_state_machine = ActivationMachine.TestCase
