"""The HDF5 reader: real Keras 3 files (tests/data/keras), Keras 2 and generic layouts built with
h5py, ``.keras`` archives, epoch directories, and damaged files refused with the file's name."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import dynlab
from dynlab.api import ingest
from dynlab.errors import CheckpointError
from dynlab.ingestion._hdf5 import open_hdf5
from dynlab.ingestion._readers import open_checkpoint

KERAS = Path(__file__).parent / "data" / "keras"
EXPECTED = json.loads((KERAS / "expected.json").read_text())["files"]


def _ingest(src, store_path: Path, run: str = "r", **kw) -> dynlab.Run:
    ingest(src, store_path, run=run, **kw)
    return dynlab.open_store(store_path).run(run)


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _natural(name: str) -> list:
    return [int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", name))]


def _read_all(path: Path) -> list[tuple[str, np.ndarray, str]]:
    ckpt = open_hdf5(path)
    try:
        return list(ckpt.tensors())
    finally:
        ckpt.close()


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 values → bfloat16 bit patterns (truncation; test values are exact)."""
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


# ---------------------------------------------------------------- files written by Keras itself


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_keras_files_match_keras_weights(name):
    expected = EXPECTED[name]
    got = _read_all(KERAS / name)
    if name.endswith(".h5") and not name.endswith(".weights.h5"):
        order = [t["name"] for t in expected]  # legacy: the order Keras records
    else:  # Keras 3 records no layer order: natural order of its paths
        order = sorted((t["name"] for t in expected), key=_natural)
    assert [n for n, _, _ in got] == order
    by_name = {t["name"]: t for t in expected}
    for tensor_name, array, source in got:
        want = by_name[tensor_name]
        assert list(array.shape) == want["shape"], tensor_name
        assert array.dtype.name == want["dtype"], tensor_name
        assert source == want["source_dtype"], tensor_name
        assert _digest(array) == want["sha256"], tensor_name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_keras_files_round_trip(tmp_path, store_path, name):
    src = tmp_path / f"ckpt_7{name[name.index('.'):]}"  # step 7 from the file name
    shutil.copy(KERAS / name, src)
    run = _ingest(src, store_path)
    assert run.steps.tolist() == [7]
    assert run.info["framework"] == "hdf5"
    stored = run.checkpoint(7)
    infos = {t.name: t for t in run.tensors}
    for t in EXPECTED[name]:
        assert _digest(np.asarray(stored[t["name"]])) == t["sha256"], t["name"]
        assert infos[t["name"]].source_dtype == t["source_dtype"]


def test_keras_archive_is_detected_and_streamed_from_the_zip(tmp_path, monkeypatch):
    assert open_checkpoint(KERAS / "sequential.keras").format == "hdf5"
    reads = []
    original = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__",
                        lambda self, key: reads.append(self.name) or original(self, key))
    ckpt = open_hdf5(KERAS / "sequential.keras")
    try:
        assert ckpt.nbytes == (KERAS / "sequential.keras").stat().st_size
        first = next(ckpt.tensors())
        assert reads == ["/layers/batch_normalization/vars/0"]  # one dataset read so far
        assert first[0] == "layers.batch_normalization.vars.0"
    finally:
        ckpt.close()
    assert list(tmp_path.iterdir()) == []  # nothing extracted


def test_keras_archive_with_deflated_member(tmp_path, store_path):
    src = tmp_path / "deflated_3.keras"
    with zipfile.ZipFile(KERAS / "sequential.keras") as zin, \
            zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
    run = _ingest(src, store_path)
    stored = run.checkpoint(3)
    for t in EXPECTED["sequential.keras"]:
        assert _digest(np.asarray(stored[t["name"]])) == t["sha256"]


def test_epoch_directory_is_one_run(tmp_path, store_path):
    run_dir = tmp_path / "keras_run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")  # not a checkpoint: skipped
    for epoch in (1, 2, 10):
        path = run_dir / f"epoch_{epoch}.weights.h5"
        shutil.copy(KERAS / "sequential.weights.h5", path)
        with h5py.File(path, "r+") as f:
            f["layers/dense/vars/1"][...] = np.full(3, epoch, np.float32)
    ingest(run_dir, store_path)
    run = dynlab.open_store(store_path).run("keras_run")
    assert run.steps.tolist() == [1, 2, 10]
    bias = run.read("layers.dense.vars.1")
    assert bias.tolist() == [[1.0] * 3, [2.0] * 3, [10.0] * 3]


def test_model_weights_name_has_no_step(tmp_path, store_path):
    src = tmp_path / "model.weights.h5"
    shutil.copy(KERAS / "sequential.weights.h5", src)
    with pytest.raises(CheckpointError, match="cannot determine the step"):
        ingest(src, store_path)
    run = _ingest(src, store_path, step=4)
    assert run.steps.tolist() == [4]


# ---------------------------------------------------------------- layouts built with h5py


def _keras2_layer(group: h5py.Group, layer: str, weights: dict[str, np.ndarray]) -> None:
    g = group.create_group(layer)
    g.attrs["weight_names"] = np.array([f"{layer}/{w}:0".encode() for w in weights])
    for w, value in weights.items():
        g[f"{layer}/{w}:0"] = value


def _keras2_state(rng) -> dict[str, dict[str, np.ndarray]]:
    # recorded order: kernel before bias, "conv" after "dense_1" (neither is alphabetical)
    return {
        "dense_1": {"kernel": rng.standard_normal((4, 3)).astype(np.float32),
                    "bias": rng.standard_normal(3).astype(np.float32)},
        "dropout": {},
        "conv": {"kernel": rng.standard_normal((3, 3, 1, 2)).astype(np.float64),
                 "bias": rng.standard_normal(2).astype(np.float64)},
    }


@pytest.mark.parametrize("weights_only", [False, True])
def test_keras2_layout_keeps_recorded_order(tmp_path, store_path, rng, weights_only):
    state = _keras2_state(rng)
    path = tmp_path / "keras2_5.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["epoch"] = np.int64(12)
        group = f if weights_only else f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([name.encode() for name in state])
        for layer, weights in state.items():
            _keras2_layer(group, layer, weights)
        if not weights_only:
            f.attrs["model_config"] = "{}"
            f.create_group("optimizer_weights")["adam/iter:0"] = np.int64(3)
    expected = {f"{layer}.{layer}.{w}": v for layer, ws in state.items() for w, v in ws.items()}
    run = _ingest(path, store_path)
    assert run.steps.tolist() == [12]  # the epoch attribute, not the name's 5
    stored = run.checkpoint(12)
    assert list(stored) == list(expected)
    for name, value in expected.items():
        assert stored[name].dtype == value.dtype
        assert stored[name].tobytes() == value.tobytes()


def test_keras2_listed_weight_missing_is_refused(tmp_path):
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
        f.create_group("dense").attrs["weight_names"] = np.array([b"dense/kernel:0"])
    with pytest.raises(CheckpointError, match=r"broken\.h5: weight 'dense/dense/kernel:0'"):
        open_hdf5(path)


def test_keras3_layout_natural_order_bfloat16_and_skipped_optimizer(tmp_path, rng):
    path = tmp_path / "w.weights.h5"
    values = {}
    with h5py.File(path, "w") as f:
        for i in (10, 2, 0, 1):  # created out of order; no creation order tracked
            layer = "dense" if i == 0 else f"dense_{i}"
            values[layer] = rng.standard_normal((2, 2)).astype(np.float32)
            f[f"layers/{layer}/vars/0"] = values[layer]
        bf16 = np.array([1.5, -2.0, 0.0078125], np.float32)
        ds = f.create_dataset("layers/dense_2/vars/1", data=_bf16_bits(bf16).view("V2"))
        ds.attrs["dtype"] = "bfloat16"
        f["optimizer/vars/0"] = np.int64(7)
        f.create_group("vars")
    got = _read_all(path)
    assert [n for n, _, _ in got] == ["layers.dense.vars.0", "layers.dense_1.vars.0",
                                      "layers.dense_2.vars.0", "layers.dense_2.vars.1",
                                      "layers.dense_10.vars.0"]
    named = {n: (a, s) for n, a, s in got}
    assert named["layers.dense_2.vars.1"][1] == "bfloat16"
    assert named["layers.dense_2.vars.1"][0].tobytes() == bf16.tobytes()
    assert named["layers.dense_10.vars.0"][0].tobytes() == values["dense_10"].tobytes()


def test_generic_hdf5_creation_order_step_and_metrics(tmp_path, store_path, rng):
    path = tmp_path / "weights.hdf5"
    z = rng.standard_normal((3, 2)).astype(">f4")  # big-endian on disk
    a = rng.integers(-5, 5, size=4).astype(np.int16)
    inner = rng.standard_normal(2)
    with h5py.File(path, "w", track_order=True) as f:
        f["z"] = z
        f["a"] = a
        f.create_group("block", track_order=True)["w"] = inner
        f["notes"] = "a string dataset: not a tensor"
        f.create_group("optimizer")["m"] = np.zeros(3)
        f["step"] = np.int64(300)
        f.attrs["val_loss"] = 0.25
        f.attrs["version"] = 3  # not a metric name
    run = _ingest(path, store_path)
    assert run.steps.tolist() == [300]
    stored = run.checkpoint(300)
    assert list(stored) == ["z", "a", "block.w"]
    assert stored["z"].dtype == np.float32
    assert stored["z"].tobytes() == z.astype("<f4").tobytes()
    assert stored["a"].tobytes() == a.tobytes()
    assert stored["block.w"].tobytes() == inner.tobytes()
    assert run.metrics["val_loss"].tolist() == [0.25]
    assert "version" not in run.metrics


def test_generic_hdf5_untracked_order_is_natural_order(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["b"] = np.ones(2)
        f["a/layer10"] = np.ones(2)
        f["a/layer2"] = np.ones(2)
        f["a/Z"] = np.ones(2)
    assert [n for n, _, _ in _read_all(path)] == ["a.Z", "a.layer2", "a.layer10", "b"]


# ---------------------------------------------------------------- damaged files


@pytest.mark.parametrize("name", ["sequential.weights.h5", "sequential.h5", "sequential.keras"])
@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.999])
def test_truncated_file_is_refused_naming_it(tmp_path, store_path, name, fraction):
    data = (KERAS / name).read_bytes()
    path = tmp_path / f"cut_1{name[name.index('.'):]}"
    path.write_bytes(data[:max(8, int(len(data) * fraction))])
    with pytest.raises(CheckpointError) as info:
        ingest(path, store_path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert not store_path.exists()  # refused before anything was written


def test_garbage_after_hdf5_signature_is_refused(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match=r"junk\.h5: not a readable HDF5"):
        open_checkpoint(path)


def test_zip_without_weights_member_is_refused(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(CheckpointError, match=r"other\.keras: a zip without model\.weights\.h5"):
        open_checkpoint(path, "hdf5")


def test_hdf5_without_numeric_datasets_is_refused(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f["names"] = "only text"
    with pytest.raises(CheckpointError, match=r"empty\.h5: holds no numeric datasets"):
        open_hdf5(path)
