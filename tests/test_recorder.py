"""dynlab.Recorder: checkpoints written straight from a training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynlab
from dynlab.errors import CheckpointError, RunLockedError

torch.set_num_threads(1)


def _mlp(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 2)).to(dtype)


def _train_step(model: torch.nn.Module) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def test_records_a_torch_module_with_metrics(store_path):
    model = _mlp()
    snapshots, losses = {}, {}
    with dynlab.Recorder(store_path, "mlp-w8", attrs={"width": 8, "lr": 0.1}) as rec:
        for step in (0, 10, 25):
            losses[step] = _train_step(model)
            snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
            rec.log(step, model, train_loss=torch.tensor(losses[step]), test_acc=0.5 + step / 100)
    run = dynlab.open_store(store_path).run("mlp-w8")
    assert run.steps.tolist() == [0, 10, 25]
    assert run.attrs == {"width": 8, "lr": 0.1}
    assert [t.name for t in run.tensors] == list(snapshots[0])
    np.testing.assert_array_equal(run.metrics["train_loss"], [losses[s] for s in (0, 10, 25)])
    np.testing.assert_array_equal(run.metrics["test_acc"], [0.5, 0.6, 0.75])
    for step, state in snapshots.items():
        stored = run.checkpoint(step)
        for name, tensor in state.items():
            assert stored[name].tobytes() == tensor.numpy().tobytes(), (step, name)
    weight = run.read("0.weight")
    assert weight.shape == (3, 8, 4) and weight.dtype == np.float32


def test_records_a_dict_of_numpy_arrays(store_path, rng):
    states = {s: {"w": rng.standard_normal((3, 2)), "counts": rng.integers(0, 9, 5)}
              for s in (1, 2)}
    with dynlab.Recorder(store_path, "np") as rec:
        for step, state in states.items():
            rec.log(step, state)
    run = dynlab.open_store(store_path).run("np")
    assert run.steps.tolist() == [1, 2] and run.metrics == {}
    for step, state in states.items():
        for name, array in state.items():
            np.testing.assert_array_equal(run.checkpoint(step)[name], array)
            assert run.checkpoint(step)[name].dtype == array.dtype


def test_step_must_increase(store_path):
    with dynlab.Recorder(store_path, "r") as rec:
        rec.log(5, {"w": np.zeros(3)})
        with pytest.raises(CheckpointError, match="already has step 5"):
            rec.log(5, {"w": np.ones(3)})
        with pytest.raises(CheckpointError, match="earlier than the last step 5"):
            rec.log(3, {"w": np.ones(3)})
        rec.log(6, {"w": np.ones(3)})
    assert dynlab.open_store(store_path).run("r").steps.tolist() == [5, 6]


def test_one_recorder_per_run(store_path):
    first = dynlab.Recorder(store_path, "r")
    try:
        first.log(0, {"w": np.zeros(2)})
        with pytest.raises(RunLockedError, match="'r' is being written"):
            dynlab.Recorder(store_path, "r")
        dynlab.Recorder(store_path, "other").close()  # other runs stay writable
    finally:
        first.close()
    with dynlab.Recorder(store_path, "r") as second:
        second.log(1, {"w": np.ones(2)})
    assert dynlab.open_store(store_path).run("r").steps.tolist() == [0, 1]
    with pytest.raises(CheckpointError, match="closed"):
        first.log(2, {"w": np.ones(2)})


def test_bfloat16_module_is_stored_as_float32(store_path):
    model = _mlp(torch.bfloat16)
    with dynlab.Recorder(store_path, "bf16") as rec:
        rec.log(0, model)
    run = dynlab.open_store(store_path).run("bf16")
    assert {(t.dtype, t.source_dtype) for t in run.tensors} == {("float32", "bfloat16")}
    for name, tensor in model.state_dict().items():
        assert run.checkpoint(0)[name].tobytes() == tensor.float().numpy().tobytes()
