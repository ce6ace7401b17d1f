"""The PyTorch reader: torch.save files → runs, bit for bit; malicious and broken files refused."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dynlab
from dynlab.api import ingest
from dynlab.errors import CheckpointError
from dynlab.ingestion._torch import open_torch

torch.set_num_threads(1)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(8, 3))
    model.train()
    model(torch.randn(5, 4))  # running stats and num_batches_tracked move
    return model


def _expected(tensor: torch.Tensor) -> np.ndarray:
    t = tensor.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def test_dynlab_ingest_is_the_function_after_subpackage_import():
    import dynlab.ingestion._readers  # any import of the subpackage

    assert callable(dynlab.ingest)


def _ingest(src: Path | list[Path], store_path: Path, run: str = "r", **kw) -> dynlab.Run:
    ingest(src, store_path, run=run, **kw)  # what dynlab.ingest(...) is meant to be
    return dynlab.open_store(store_path).run(run)


def _assert_checkpoint(run: dynlab.Run, step: int, state: dict[str, torch.Tensor]) -> None:
    """The stored checkpoint at ``step`` equals ``state``: names, order, dtypes, bytes."""
    stored = run.checkpoint(step)
    assert list(stored) == list(state)
    infos = {t.name: t for t in run.tensors}
    for name, tensor in state.items():
        want, got = _expected(tensor), np.asarray(stored[name])
        assert (got.dtype, got.shape) == (want.dtype, want.shape), name
        assert got.tobytes() == want.tobytes(), name
        assert infos[name].source_dtype == str(tensor.dtype).removeprefix("torch.")


def _save(obj, path: Path, **kw) -> Path:
    torch.save(obj, path, **kw)
    return path


# ---------------------------------------------------------------- layouts of checkpoint files


def test_plain_state_dict(tmp_path, store_path):
    state = _model().state_dict()
    run = _ingest(_save(state, tmp_path / "ckpt_5.pt"), store_path)
    assert run.steps.tolist() == [5]  # no step inside: the file name's integer
    assert run.info["framework"] == "torch"
    assert run.tensor("1.num_batches_tracked").dtype == "int64"
    _assert_checkpoint(run, 5, state)


def test_model_state_dict_with_epoch_and_loss(tmp_path, store_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    ckpt = {"model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
            "epoch": 3, "loss": 0.5}
    run = _ingest(_save(ckpt, tmp_path / "model.pt"), store_path)
    assert run.steps.tolist() == [3]
    assert {k: v.tolist() for k, v in run.metrics.items()} == {"loss": [0.5]}
    _assert_checkpoint(run, 3, model.state_dict())


def test_lightning_checkpoint(tmp_path, store_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = {"epoch": 2, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": state, "loops": {"fit_loop": {"epoch_progress": {"current": 2}}},
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.25)}},
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
            "hyper_parameters": {"lr": 0.1}}
    run = _ingest(_save(ckpt, tmp_path / "epoch=2-step=120.ckpt"), store_path)
    assert run.steps.tolist() == [120]  # global_step before epoch
    assert run.metrics == {}
    _assert_checkpoint(run, 120, state)


def test_legacy_pickle_format(tmp_path, store_path):
    state = _model().state_dict()
    path = _save(state, tmp_path / "step_7.pth", _use_new_zipfile_serialization=False)
    with open(path, "rb") as f:
        assert f.read(2) != b"PK"
    run = _ingest(path, store_path)
    _assert_checkpoint(run, 7, state)


def test_half_precision_and_integer_dtypes(tmp_path, store_path):
    torch.manual_seed(1)
    state = {"bf": torch.randn(3, 5).to(torch.bfloat16), "half": torch.randn(4).half(),
             "count": torch.tensor(17, dtype=torch.int64),
             "ids": torch.arange(-3, 3, dtype=torch.int64)}
    state["bf"][0, :3] = torch.tensor([-0.0, 1e-40, 3e38])  # sign, subnormal, near-max
    run = _ingest(_save(state, tmp_path / "mixed_1.pt"), store_path)
    info = {t.name: (t.dtype, t.source_dtype) for t in run.tensors}
    assert info == {"bf": ("float32", "bfloat16"), "half": ("float16", "float16"),
                    "count": ("int64", "int64"), "ids": ("int64", "int64")}
    _assert_checkpoint(run, 1, state)


def test_nested_dicts_flatten_to_dotted_names(tmp_path, store_path):
    torch.manual_seed(2)
    weights = {"encoder": {"w": torch.randn(2, 3), "block": {"b": torch.randn(3)}},
               "decoder.w": torch.randn(3, 2), "note": "not a tensor", "flags": [1, 2]}
    ckpt = {"model": weights, "step": 11, "loss": torch.tensor(0.125),
            "metrics": {"val_acc": 0.75, "val_loss": torch.tensor(0.5)}}
    run = _ingest(_save(ckpt, tmp_path / "nested.pt"), store_path)
    assert [t.name for t in run.tensors] == ["encoder.w", "encoder.block.b", "decoder.w"]
    assert run.steps.tolist() == [11]
    assert {k: v.tolist() for k, v in run.metrics.items()} == {
        "loss": [0.125], "val_acc": [0.75], "val_loss": [0.5]}
    _assert_checkpoint(run, 11, {"encoder.w": weights["encoder"]["w"],
                                 "encoder.block.b": weights["encoder"]["block"]["b"],
                                 "decoder.w": weights["decoder.w"]})


def test_open_torch_streams_and_closes(tmp_path):
    state = _model().state_dict()
    ckpt = open_torch(_save(state, tmp_path / "s.pt"))
    assert ckpt.format == "torch" and ckpt.step is None and ckpt.metrics == {}
    assert ckpt.nbytes == (tmp_path / "s.pt").stat().st_size
    assert [name for name, *_ in ckpt.tensors()] == list(state)
    ckpt.close()
    assert list(ckpt.tensors()) == []  # references dropped: the memory map can go


def test_bare_tensor_is_named_after_the_file(tmp_path, store_path):
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    run = _ingest(_save(tensor, tmp_path / "embedding_3.pt"), store_path)
    _assert_checkpoint(run, 3, {"embedding_3": tensor})


def test_directory_of_epochs_with_metrics_csv(tmp_path, store_path):
    src = tmp_path / "mlp-run"
    src.mkdir()
    model, states = _model(), {}
    for k in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (k + 1))
        states[k] = {n: t.clone() for n, t in model.state_dict().items()}
        torch.save(model.state_dict(), src / f"epoch_{k}.pt")
    (src / "metrics.csv").write_text(
        "step,train_loss,test_acc\n0,1.5,0.25\n1,1.0,\n2,0.5,0.75\n9,0.1,0.9\n")
    report = ingest(src, store_path)
    assert report.runs[0].added == [0, 1, 2]
    run = dynlab.open_store(store_path).run("mlp-run")
    assert run.steps.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(run.metrics["train_loss"], [1.5, 1.0, 0.5])
    np.testing.assert_array_equal(run.metrics["test_acc"], [0.25, np.nan, 0.75])
    for k, state in states.items():
        _assert_checkpoint(run, k, state)
    again = ingest(src, store_path)
    assert again.runs[0].unchanged == [0, 1, 2] and not again.runs[0].added


# ---------------------------------------------------------------- refused and broken files


class _Evil:
    """Unpickling runs ``touch marker``: what a booby-trapped checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _assert_no_run_data(store_path: Path) -> None:
    assert not store_path.exists() or dynlab.open_store(store_path).runs == []


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_code_in_pickle_is_refused_and_never_run(tmp_path, store_path, legacy):
    marker = tmp_path / "pwned"
    path = _save({"w": torch.ones(3), "payload": _Evil(marker)}, tmp_path / "evil_1.pt",
                 _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as info:
        ingest(path, store_path, run="r")
    message = str(info.value)
    assert message.startswith(f"{path}: refused: loading it would run arbitrary code")
    assert "system" in message and "weights only" in message and "\n" not in message
    assert not marker.exists()
    _assert_no_run_data(store_path)


def test_pickled_module_is_refused(tmp_path, store_path):
    path = _save(_model(), tmp_path / "whole_model_1.pt")
    with pytest.raises(CheckpointError, match=r"refused: .*torch\.nn\.modules"):
        ingest(path, store_path, run="r")
    _assert_no_run_data(store_path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file(tmp_path, store_path, legacy):
    torch.manual_seed(3)
    path = _save({"w": torch.randn(64, 64)}, tmp_path / "cut_1.pt",
                 _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        ingest(path, store_path, run="r")
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    _assert_no_run_data(store_path)


@pytest.mark.parametrize("format", ["auto", "torch"])
def test_random_bytes(tmp_path, store_path, format):
    path = tmp_path / "noise_1.pt"
    path.write_bytes(b"\x80\x02" + np.random.default_rng(0).bytes(4094))  # looks like a pickle
    with pytest.raises(CheckpointError) as info:
        ingest(path, store_path, run="r", format=format)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    _assert_no_run_data(store_path)


# ---------------------------------------------------------------- property: dtypes × shapes

_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
           torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64]


@st.composite
def _tensors(draw) -> torch.Tensor:
    """Any bit pattern of any supported dtype (NaN payloads, -0.0, subnormals), shape ≤ 3-d."""
    dtype = draw(st.sampled_from(_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    n = int(np.prod(shape))
    itemsize = torch.empty(0, dtype=dtype).element_size()
    raw = np.frombuffer(bytearray(draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))),
                        dtype=np.uint8).copy()
    if dtype == torch.bool:
        raw &= 1
    if n == 0:  # torch cannot reinterpret an empty byte buffer
        return torch.zeros(shape, dtype=dtype)
    return torch.from_numpy(raw).view(dtype).reshape(shape)


@pytest.mark.filterwarnings("ignore::dynlab.errors.NonFiniteWarning")
@settings(max_examples=60, deadline=None)
@given(tensors=st.lists(_tensors(), min_size=1, max_size=3),
       legacy=st.booleans())
def test_any_dtype_and_shape_round_trips(tensors, legacy):
    state = {f"t{i}": t for i, t in enumerate(tensors)}
    with tempfile.TemporaryDirectory() as tmp:
        path = _save(state, Path(tmp) / "prop_4.pt", _use_new_zipfile_serialization=not legacy)
        run = _ingest(path, Path(tmp) / "store.zarr")
        assert [t.shape for t in run.tensors] == [tuple(t.shape) for t in tensors]
        _assert_checkpoint(run, 4, state)


def test_byte_swapped_shared_storage_is_stored_correctly(tmp_path):
    """A big-endian file: torch swaps the mapped storage in place (private pages). Releasing the
    pages of a stored tensor must never make a tensor sharing that storage read unswapped bytes."""
    from torch.serialization import LoadEndianness, get_default_load_endianness, set_default_load_endianness

    w = torch.arange(4096, dtype=torch.float32)
    path = tmp_path / "be_1.pt"
    torch.save({"w": w, "v": w.view(64, 64)}, path, _disable_byteorder_record=True)
    before = get_default_load_endianness()
    set_default_load_endianness(LoadEndianness.BIG)
    try:
        truth = torch.load(path, weights_only=True)
        run = _ingest(path, tmp_path / "s.zarr")
    finally:
        set_default_load_endianness(before)
    for name in ("w", "v"):
        np.testing.assert_array_equal(run.read(name, [1])[0], truth[name].numpy())
