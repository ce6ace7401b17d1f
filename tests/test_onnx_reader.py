"""The ONNX reader: initializers → runs bit for bit (plain, external data, subgraphs, bfloat16,
a torch export); damaged models refused with the file's name."""

from __future__ import annotations

import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import dynlab
from dynlab.api import ingest
from dynlab.errors import CheckpointError
from dynlab.ingestion._onnx import open_onnx
from dynlab.ingestion._readers import open_checkpoint

torch.set_num_threads(1)


def _ingest(src, store_path: Path, run: str = "r", **kw) -> dynlab.Run:
    ingest(src, store_path, run=run, **kw)
    return dynlab.open_store(store_path).run(run)


def _weights(rng, dtype=np.float32) -> dict[str, np.ndarray]:
    return {"fc1.weight": rng.standard_normal((3, 4)).astype(dtype),
            "fc1.bias": rng.standard_normal(3).astype(dtype),
            "fc2.weight": rng.standard_normal((2, 3)).astype(dtype),
            "fc2.bias": rng.standard_normal(2).astype(dtype)}


def _gemm_model(weights: dict[str, np.ndarray], props: dict[str, str] | None = None,
                elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """x → Gemm(fc1) → Relu → Gemm(fc2) → y, the weights as initializers."""
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", elem, [1, 4])],
        [helper.make_tensor_value_info("y", elem, [1, 2])],
        [numpy_helper.from_array(v, name) for name, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if props:
        helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def _assert_stored(run: dynlab.Run, step: int, weights: dict[str, np.ndarray]) -> None:
    stored = run.checkpoint(step)
    assert list(stored) == list(weights)
    for name, value in weights.items():
        got = np.asarray(stored[name])
        assert (got.dtype, got.shape) == (value.dtype, value.shape), name
        assert got.tobytes() == value.tobytes(), name


def test_gemm_model_round_trip_with_step_and_metrics(tmp_path, store_path, rng):
    weights = _weights(rng)
    path = tmp_path / "mlp_3.onnx"
    onnx.save(_gemm_model(weights, {"global_step": "120", "train_loss": "0.5", "author": "x"}),
              path)
    run = _ingest(path, store_path)
    assert run.steps.tolist() == [120]  # metadata, not the name's 3
    assert run.info["framework"] == "onnx"
    assert run.metrics == {"train_loss": pytest.approx(np.array([0.5]))}
    _assert_stored(run, 120, weights)
    assert {t.source_dtype for t in run.tensors} == {"float32"}


def test_step_from_name_and_several_files(tmp_path, store_path, rng):
    paths = []
    for step in (5, 50):
        weights = _weights(rng)
        paths.append(tmp_path / f"epoch_{step}.onnx")
        onnx.save(_gemm_model(weights), paths[-1])
    run = _ingest(paths, store_path)
    assert run.steps.tolist() == [5, 50]
    _assert_stored(run, 50, weights)


@pytest.mark.parametrize("location", ["mlp_7.onnx.data", "weights.bin"])
def test_external_data_round_trip(tmp_path, store_path, rng, location):
    weights = _weights(rng)
    path = tmp_path / "mlp_7.onnx"
    onnx.save(_gemm_model(weights), path, save_as_external_data=True,
              all_tensors_to_one_file=True, location=location, size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    ckpt = open_onnx(path)
    ckpt.close()
    assert ckpt.nbytes == path.stat().st_size + (tmp_path / location).stat().st_size
    run = _ingest(path, store_path)
    _assert_stored(run, 7, weights)


def test_external_data_directory_ingest(tmp_path, store_path, rng):
    run_dir = tmp_path / "onnx_run"
    run_dir.mkdir()
    weights = _weights(rng)
    onnx.save(_gemm_model(weights), run_dir / "step_9.onnx", save_as_external_data=True,
              location="step_9.onnx.data", size_threshold=0)  # .data: not a checkpoint suffix
    ingest(run_dir, store_path)
    _assert_stored(dynlab.open_store(store_path).run("onnx_run"), 9, weights)


def test_missing_external_data_is_refused_before_writing(tmp_path, store_path, rng):
    path = tmp_path / "mlp_1.onnx"
    onnx.save(_gemm_model(_weights(rng)), path, save_as_external_data=True,
              location="mlp_1.onnx.data", size_threshold=0)
    (tmp_path / "mlp_1.onnx.data").unlink()
    with pytest.raises(CheckpointError, match=r"mlp_1\.onnx: external data file mlp_1\.onnx\.data"):
        ingest(path, store_path)
    assert not store_path.exists()


def test_truncated_external_data_is_refused(tmp_path, rng):
    path = tmp_path / "mlp_1.onnx"
    onnx.save(_gemm_model(_weights(rng)), path, save_as_external_data=True,
              location="mlp_1.onnx.data", size_threshold=0)
    data = tmp_path / "mlp_1.onnx.data"
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match=r"mlp_1\.onnx: external data file .* is truncated"):
        open_onnx(path)


def test_external_data_outside_the_model_directory_is_refused(tmp_path, rng):
    model = _gemm_model(_weights(rng))
    sub = tmp_path / "models"
    sub.mkdir()
    onnx.save(model, tmp_path / "secret.onnx", save_as_external_data=True,
              location="secret.bin", size_threshold=0)
    escaped = onnx.load(str(tmp_path / "secret.onnx"), load_external_data=False)
    for tensor in escaped.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    onnx.save(escaped, sub / "evil.onnx")
    with pytest.raises(CheckpointError, match=r"evil\.onnx: initializer .* outside"):
        open_onnx(sub / "evil.onnx")


def test_bfloat16_and_float16_initializers(tmp_path, store_path):
    exact = np.array([[1.5, -2.0, 0.0078125], [3.0, -0.25, 256.0]], np.float32)
    weights = {"bf": exact.astype(ml_dtypes.bfloat16), "half": exact.astype(np.float16)}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["bf"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2, 3])],
        [numpy_helper.from_array(v, name) for name, v in weights.items()])
    path = tmp_path / "mixed_2.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    run = _ingest(path, store_path)
    stored = run.checkpoint(2)
    assert stored["bf"].dtype == np.float32 and stored["bf"].tobytes() == exact.tobytes()
    assert stored["half"].dtype == np.float16
    assert stored["half"].tobytes() == weights["half"].tobytes()
    assert {t.name: t.source_dtype for t in run.tensors} == {"bf": "bfloat16", "half": "float16"}


def test_subgraph_initializers_follow_the_main_graph(tmp_path, rng):
    def branch(name: str, value: np.ndarray) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Identity", ["w"], [f"{name}_out"])], name, [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2])],
            [numpy_helper.from_array(value, "w")])

    main = rng.standard_normal(3).astype(np.float32)
    then_w, else_w = rng.standard_normal(2).astype(np.float32), np.zeros(2, np.float32)
    node = helper.make_node("If", ["cond"], ["y"], name="gate",
                            then_branch=branch("then", then_w), else_branch=branch("else", else_w))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(main, "layer/w")])
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    ckpt = open_onnx(path)
    got = {name: array for name, array, *_ in ckpt.tensors()}
    ckpt.close()
    # helper.make_node sorts attributes: else_branch is stored (and visited) first
    assert list(got) == ["layer.w", "w", "gate.then_branch.w"]
    assert got["w"].tobytes() == else_w.tobytes()
    assert got["gate.then_branch.w"].tobytes() == then_w.tobytes()


def test_torch_export_round_trip(tmp_path, store_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    path = tmp_path / "torch_11.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
        try:  # dynamo=True would need onnxscript, which dynlab does not install
            torch.onnx.export(module, (torch.zeros(1, 4),), str(path), dynamo=False,
                              do_constant_folding=False)
        except (ImportError, RuntimeError, TypeError) as exc:  # pragma: no cover
            pytest.skip(f"torch.onnx.export unavailable offline: {exc}")
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    run = _ingest(path, store_path)
    _assert_stored(run, 11, state)


# ---------------------------------------------------------------- damaged files


def test_every_truncation_is_refused_naming_the_file(tmp_path, rng):
    data = _gemm_model(_weights(rng)).SerializeToString()
    path = tmp_path / "cut.onnx"
    for n in range(1, len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError) as info:
            list(open_onnx(path).tensors())
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message, n


def test_truncated_model_is_refused_before_writing(tmp_path, store_path, rng):
    data = _gemm_model(_weights(rng)).SerializeToString()
    path = tmp_path / "mlp_4.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"mlp_4\.onnx: "):
        ingest(path, store_path)
    assert not store_path.exists()


@pytest.mark.parametrize("payload", [b"\x08\x07garbage that is no protobuf" * 3,
                                     b"\x08\x07" + bytes(range(256))])
def test_not_a_model_proto_is_refused(tmp_path, payload):
    path = tmp_path / "junk.onnx"
    path.write_bytes(payload)
    # detection (a .onnx starting with 0x08) routes it to the ONNX reader
    with pytest.raises(CheckpointError, match=r"junk\.onnx: not a"):
        open_checkpoint(path)


def test_model_without_initializers_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(CheckpointError, match=r"relu\.onnx: the model holds no initializers"):
        open_onnx(path)
