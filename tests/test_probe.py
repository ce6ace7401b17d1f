"""``dynlab probe`` and ``dynlab.probe``: every checkpoint of a run through the user's model on a
probe set. Predictions are compared with softmax(model(x)) computed here per step; activations with
the layers' inputs computed without hooks (Linear: the input itself; Conv: an explicit numpy
unfold); the layer descriptions, resumability, --replace, and every user mistake as one line with
exit code 1 and a store left byte-for-byte as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import probe_models as pm
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import dynlab
from dynlab.cli import main
from dynlab.errors import NonFiniteWarning, ProbeError
from dynlab.ingestion import describe_layers, layer_inputs
from dynlab.ingestion._layers import reduce_input

torch.set_num_threads(1)
STEPS = (0, 1, 2, 3)
N = 23  # not a multiple of the batch sizes used below
MLP_LAYERS = {"0": {"kind": "linear", "weight": "0.weight", "bias": "0.bias", "output": "relu"},
              "2": {"kind": "linear", "weight": "2.weight", "bias": "2.bias", "output": "softmax"}}


def train(store_path: Path, run: str = "r", factory=pm.mlp, steps=STEPS, attrs=None, seed=0,
          x_shape=(pm.D_IN,)) -> None:
    """A few SGD steps of ``factory()``'s model, each step's weights logged with the Recorder."""
    torch.manual_seed(seed)
    model = factory(attrs) if attrs else factory()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(32, *x_shape)
    y = torch.randint(0, pm.C, (32,))
    with dynlab.Recorder(store_path, run, attrs=attrs) as rec:
        for step in steps:
            loss = nn.functional.cross_entropy(model(x), y)
            rec.log(step, model, loss=loss)
            opt.zero_grad()
            loss.backward()
            opt.step()


def probe_file(path: Path, rng: np.random.Generator, n: int = N, shape=(pm.D_IN,), labels=True,
               **extra) -> Path:
    arrays = {"x": rng.standard_normal((n, *shape)).astype(np.float32), **extra}
    if labels:
        arrays["y"] = rng.integers(0, pm.C, n)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def setup(tmp_path, store_path, rng):
    train(store_path)
    return store_path, probe_file(tmp_path / "probe.npz", rng)


def model_at(store_path: Path, step: int, factory=pm.mlp, run: str = "r",
             shift: float = 0.0) -> nn.Module:
    """The model with the weights of ``step`` (each shifted by ``shift``: a later checkpoint)."""
    model = factory()
    state = dynlab.open_store(store_path).run(run).checkpoint(step)
    model.load_state_dict({k: torch.tensor(v + shift) for k, v in state.items()})
    return model.eval()


def files(store_path: Path) -> dict[str, bytes]:
    """Every file of the store and its bytes: "the store is unchanged" means these are equal."""
    return {str(p.relative_to(store_path)): p.read_bytes()
            for p in sorted(store_path.rglob("*")) if p.is_file()}


def invoke(*args: str):
    return CliRunner().invoke(main, ["probe", *map(str, args)])


# ---------------------------------------------------------------------- what is stored


def test_cli_stores_softmax_predictions_activations_labels_and_layers(setup):
    store_path, data = setup
    result = invoke("--store", store_path, "--model", "probe_models:mlp", "--data", data,
                    "--activations", "--batch-size", 7)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith(
        "run r: predictions at 4 steps, activations at 4 steps (2 layers), 0 unchanged")
    assert f"({N} probe samples on cpu)" in result.stdout
    run = dynlab.open_store(store_path).run("r")
    npz = np.load(data)
    x = torch.from_numpy(npz["x"])
    assert run.probe_labels.tolist() == npz["y"].tolist()
    assert run.has_predictions and run.has_activations
    assert run.probe_layers == MLP_LAYERS and run.activation_layers == ["0", "2"]
    for step in STEPS:
        model = model_at(store_path, step)
        with torch.no_grad():
            want = torch.softmax(model(x), dim=1).numpy()
        np.testing.assert_allclose(run.read_predictions([step])[0], want, rtol=0, atol=1e-6)
        # the layers' inputs without hooks: x itself, then relu(W0 x + b0) in numpy
        state = run.checkpoint(step)
        hidden = np.maximum(npz["x"].astype(np.float64) @ state["0.weight"].T + state["0.bias"], 0)
        np.testing.assert_array_equal(run.read_activations("0", [step])[0], npz["x"])
        np.testing.assert_allclose(run.read_activations("2", [step])[0], hidden, rtol=1e-5, atol=1e-6)
    assert len(set(run.prediction_hashes.tolist())) == len(STEPS)  # the weights did change


def test_api_with_a_factory_file_float16_and_probabilities(tmp_path, setup):
    store_path, data = setup
    source = Path(pm.__file__).read_text()
    (tmp_path / "models.py").write_text(source)
    report = dynlab.probe(store_path, f"{tmp_path / 'models.py'}:probabilities", data,
                          outputs="probs", float16=True, batch_size=100)
    (r,) = report.runs
    assert (r.name, r.predictions, r.activations, r.unchanged) == ("r", list(STEPS), [], [])
    assert report.samples == N and report.device == "cpu"
    run = dynlab.open_store(store_path).run("r")
    got = run.read_predictions()
    assert got.dtype == np.float16 and not run.activation_layers
    x = torch.from_numpy(np.load(data)["x"])
    for i, step in enumerate(STEPS):
        with torch.no_grad():
            want = torch.softmax(model_at(store_path, step)(x), dim=1).numpy()
        np.testing.assert_allclose(got[i], want, atol=1e-3)  # float16: 11 bits of mantissa


def test_a_factory_with_only_optional_parameters_is_called_without_the_attrs(setup):
    """``--model pkg:Net`` with ``Net(hidden=16, classes=4)``: built with its defaults, not
    ``Net(attrs)`` (which would pass the run's attrs dict as ``hidden``)."""
    store_path, data = setup
    report = dynlab.probe(store_path, "probe_models:WithDefaults", data)
    assert report.runs[0].predictions == list(STEPS)


def test_a_factory_given_the_run_attrs_and_several_runs(tmp_path, store_path, rng):
    for width in (3, 5):
        train(store_path, f"w{width}", pm.mlp_by_width, attrs={"width": width}, steps=(0, 1))
    data = probe_file(tmp_path / "p.npz", rng, labels=False)
    report = dynlab.probe(store_path, pm.mlp_by_width, data, activations=True)
    assert [r.name for r in report.runs] == ["w3", "w5"]
    for width in (3, 5):
        run = dynlab.open_store(store_path).run(f"w{width}")
        assert run.read_activations("2").shape == (2, N, width) and run.probe_labels is None
    only = dynlab.probe(store_path, pm.mlp_by_width, data, runs=["w5"], replace=True)
    assert [r.name for r in only.runs] == ["w5"]


def test_conv_layers_store_the_unfolded_input_averaged_over_positions(tmp_path, store_path, rng):
    train(store_path, factory=pm.conv, x_shape=(2, 5, 5), steps=(0, 1))
    data = probe_file(tmp_path / "p.npz", rng, shape=(2, 5, 5))
    dynlab.probe(store_path, "probe_models:conv", data, activations=True, batch_size=10)
    run = dynlab.open_store(store_path).run("r")
    assert run.activation_layers == ["features.0", "rows", "head"]
    assert run.probe_layers == {
        "features.0": {"kind": "conv", "weight": "features.0.weight", "bias": "features.0.bias",
                       "output": "relu"},
        "rows": {"kind": "conv", "weight": "rows.weight", "bias": "rows.bias", "output": "linear"},
        "head": {"kind": "linear", "weight": "head.weight", "bias": "head.bias", "output": "softmax"}}
    x = np.load(data)["x"].astype(np.float64)
    for step in (0, 1):
        state = {k: v.astype(np.float64) for k, v in run.checkpoint(step).items()}
        # Conv2d(2 → 3, k=3, padding 1, stride 2): 3×3 output positions of 2·3·3 patches
        want = unfold_mean_2d(x, (3, 3), padding=(1, 1, 1, 1), stride=(2, 2), dilation=(1, 1))
        np.testing.assert_allclose(run.read_activations("features.0", [step])[0], want, atol=1e-6)
        h = np.maximum(conv2d_numpy(x, state["features.0.weight"], state["features.0.bias"], 1, 2), 0)
        rows_in = h.mean(axis=2)  # (N, 3, 3): the Conv1d's input
        want = unfold_mean_2d(rows_in[:, :, None, :], (1, 2), padding=(1, 1, 0, 0), stride=(1, 1),
                              dilation=(1, 1))
        np.testing.assert_allclose(run.read_activations("rows", [step])[0], want, atol=1e-5)


def unfold_mean_2d(x: np.ndarray, kernel, *, padding, stride, dilation, mode="constant"):
    """Σ over output positions of the flattened (C, kh, kw) input patch, / positions — by loops.
    ``padding`` = (left, right, top, bottom) as torch's F.pad takes it."""
    left, right, top, bottom = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode)
    kh, kw = kernel
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    rows = range(0, xp.shape[2] - span_h + 1, stride[0])
    cols = range(0, xp.shape[3] - span_w + 1, stride[1])
    total = np.zeros((x.shape[0], x.shape[1] * kh * kw))
    for i in rows:
        for j in cols:
            patch = xp[:, :, i:i + span_h:dilation[0], j:j + span_w:dilation[1]]
            total += patch.reshape(len(x), -1)
    return total / (len(rows) * len(cols))


def conv2d_numpy(x, w, b, padding, stride):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = w.shape[2]
    out_h = (xp.shape[2] - k) // stride + 1
    out = np.zeros((len(x), w.shape[0], out_h, out_h))
    for i in range(out_h):
        for j in range(out_h):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k].reshape(len(x), -1)
            out[:, :, i, j] = patch @ w.reshape(len(w), -1).T + b
    return out


CONVS = {
    "2d padding stride": (nn.Conv2d, dict(padding=1, stride=2), (6, 7)),
    "2d dilation": (nn.Conv2d, dict(padding=(0, 2), dilation=2), (7, 6)),
    "2d same, even kernel": (nn.Conv2d, dict(padding="same", kernel_size=(2, 4)), (5, 6)),
    "2d reflect": (nn.Conv2d, dict(padding=1, padding_mode="reflect"), (5, 5)),
    "2d circular": (nn.Conv2d, dict(padding=(1, 2), padding_mode="circular"), (5, 6)),
    "2d groups": (nn.Conv2d, dict(groups=2, stride=(1, 2)), (5, 7)),
    "1d": (nn.Conv1d, dict(padding=2, stride=3, dilation=2), (11,)),
    "1d same": (nn.Conv1d, dict(padding="same", kernel_size=4), (9,)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's
@pytest.mark.parametrize("case", list(CONVS))
def test_reduce_input_of_a_conv(case, rng):
    """Against the loops above (padding applied as the layer does), and the reason for the mean:
    W·x̃ equals the layer's bias-free output averaged over positions (exactly, by linearity)."""
    cls, kwargs, spatial = CONVS[case]
    kwargs = {"kernel_size": 3, **kwargs}
    layer = cls(4, 6, **kwargs).double()
    x = torch.from_numpy(rng.standard_normal((5, 4, *spatial)))
    got = reduce_input(layer, x).numpy()
    pad = layer._reversed_padding_repeated_twice
    mode = {"zeros": "constant", "reflect": "reflect", "circular": "wrap"}[layer.padding_mode]
    if cls is nn.Conv1d:
        want = unfold_mean_2d(x.numpy()[:, :, None, :], (1, layer.kernel_size[0]),
                              padding=(pad[0], pad[1], 0, 0), stride=(1, layer.stride[0]),
                              dilation=(1, layer.dilation[0]), mode=mode)
    else:
        want = unfold_mean_2d(x.numpy(), layer.kernel_size, padding=tuple(pad), stride=layer.stride,
                              dilation=layer.dilation, mode=mode)
    assert got.shape == (5, 4 * int(np.prod(layer.kernel_size)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        layer.bias.zero_()
        mean_out = layer(x).flatten(2).mean(dim=2).numpy()
    w = layer.weight.detach().numpy()
    if layer.groups == 1:
        np.testing.assert_allclose(got @ w.reshape(len(w), -1).T, mean_out, rtol=1e-10, atol=1e-12)
    else:  # each group's outputs see only its slice of the input channels
        per = w.shape[1] * int(np.prod(layer.kernel_size))
        for g in range(layer.groups):
            outs = slice(g * len(w) // layer.groups, (g + 1) * len(w) // layer.groups)
            np.testing.assert_allclose(got[:, g * per:(g + 1) * per] @ w[outs].reshape(-1, per).T,
                                       mean_out[:, outs], rtol=1e-10, atol=1e-12)


def test_linear_inputs_with_extra_dims_are_averaged(rng):
    layer = nn.Linear(3, 2).double()
    x = torch.from_numpy(rng.standard_normal((4, 5, 3)))
    np.testing.assert_allclose(reduce_input(layer, x).numpy(), x.numpy().mean(axis=1), atol=1e-15)


# ---------------------------------------------------------------------- layer descriptions


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize(("model", "want"), [
    (pm.mlp(), {k: v["output"] for k, v in MLP_LAYERS.items()}),
    (nn.Sequential(nn.Linear(3, 3), nn.Dropout(), nn.Sigmoid(), nn.Linear(3, 3), nn.Identity(),
                   nn.Tanh(), nn.Linear(3, 2)), {"0": "sigmoid", "3": "tanh", "6": "softmax"}),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)),
     {"0": "linear", "4": "softmax"}),
    (nn.Sequential(nn.Sequential(nn.Linear(3, 3), nn.GELU()), nn.Sequential(nn.Linear(3, 3)),
                   nn.Sequential(nn.ReLU(), nn.Linear(3, 2))), {"0.0": "linear", "1.0": "relu",
                                                               "2.1": "softmax"}),
    (Functional(), {"a": "linear", "b": "softmax"}),  # the functional relu is not visible
])
def test_describe_layers_outputs(model, want):
    layers = describe_layers(model)
    assert {k: v["output"] for k, v in layers.items()} == want
    assert list(layers) == list(want)  # model order


def test_describe_layers_names():
    layers = describe_layers(Functional())
    assert layers["b"] == {"kind": "linear", "weight": "b.weight", "bias": None, "output": "softmax"}
    assert describe_layers(nn.Linear(3, 2)) == {
        "Linear": {"kind": "linear", "weight": "weight", "bias": "bias", "output": "softmax"}}
    with pytest.raises(ProbeError, match=r"not a torch\.nn\.Module"):
        describe_layers({"a": 1})


def test_layer_inputs_for_a_training_loop(rng):
    model = pm.mlp().train()
    x = rng.standard_normal((N, pm.D_IN))  # float64: cast to the model's float32
    got = layer_inputs(model, x, batch_size=5)
    assert model.training  # its mode is restored
    np.testing.assert_array_equal(got["0"], x.astype(np.float32))
    with torch.no_grad():
        hidden = torch.relu(model[0](torch.from_numpy(x).float())).numpy()
    np.testing.assert_allclose(got["2"], hidden, atol=1e-6)


# ---------------------------------------------------------------------- resuming and replacing


def test_a_second_probe_writes_nothing(setup):
    store_path, data = setup
    assert invoke("--store", store_path, "-m", "probe_models:mlp", "-d", data,
                  "--activations").exit_code == 0
    before = files(store_path)
    result = invoke("--store", store_path, "-m", "probe_models:mlp", "-d", data, "--activations")
    assert result.exit_code == 0, result.output
    assert "predictions at 0 steps, activations at 0 steps (2 layers), 4 unchanged" in result.stdout
    assert files(store_path) == before


def test_resumes_new_steps_and_missing_activations(setup):
    store_path, data = setup
    dynlab.probe(store_path, "probe_models:mlp", data)
    predictions = dynlab.open_store(store_path).run("r").read_predictions()
    with dynlab.Recorder(store_path, "r") as rec:  # training went on
        rec.log(9, model_at(store_path, 3, shift=0.01))
    report = dynlab.probe(store_path, "probe_models:mlp", data)
    assert (report.runs[0].predictions, report.runs[0].unchanged) == ([9], list(STEPS))
    report = dynlab.probe(store_path, "probe_models:mlp", data, activations=True)
    assert (report.runs[0].predictions, report.runs[0].activations) == ([], [*STEPS, 9])
    run = dynlab.open_store(store_path).run("r")
    assert run.has_activations and run.has_predictions
    np.testing.assert_array_equal(run.read_predictions(STEPS), predictions)


def test_an_interrupted_probe_continues_where_it_stopped(setup, monkeypatch):
    store_path, data = setup
    from dynlab.store import Run

    original, calls = Run.write_activations, []

    def dies_at_step_2(self, step, activations, **kw):
        if step == 2:
            raise KeyboardInterrupt
        calls.append(step)
        original(self, step, activations, **kw)

    monkeypatch.setattr(Run, "write_activations", dies_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        dynlab.probe(store_path, "probe_models:mlp", data, activations=True)
    monkeypatch.setattr(Run, "write_activations", original)
    run = dynlab.open_store(store_path).run("r")
    assert (run.prediction_hashes != 0).tolist() == [True, True, True, False]
    assert (run.activation_hashes != 0).all(axis=1).tolist() == [True, True, False, False]
    report = dynlab.probe(store_path, "probe_models:mlp", data, activations=True)
    assert (report.runs[0].predictions, report.runs[0].activations) == ([3], [2, 3])
    assert dynlab.open_store(store_path).run("r").has_activations


def test_replace_recomputes(setup, rng):
    store_path, data = setup
    dynlab.probe(store_path, "probe_models:mlp", data, activations=True)
    run = dynlab.open_store(store_path, mode="a").run("r")
    right, right_acts = run.read_predictions(), run.read_activations("2")
    wrong = rng.random((N, pm.C))
    run.write_predictions(1, wrong / wrong.sum(axis=1, keepdims=True))
    run.write_activations(1, {"2": np.zeros((N, pm.HIDDEN))})
    result = invoke("-s", store_path, "-m", "probe_models:mlp", "-d", data, "--activations")
    assert "0 steps" in result.stdout and "4 unchanged" in result.stdout  # present: kept
    assert not np.array_equal(dynlab.open_store(store_path).run("r").read_predictions(), right)
    result = invoke("-s", store_path, "-m", "probe_models:mlp", "-d", data, "--activations",
                    "--replace")
    assert result.exit_code == 0 and "predictions at 4 steps, activations at 4 steps" in result.stdout
    run = dynlab.open_store(store_path).run("r")
    np.testing.assert_array_equal(run.read_predictions(), right)
    np.testing.assert_array_equal(run.read_activations("2"), right_acts)


def test_other_probe_inputs_are_refused_not_mixed_in(tmp_path, setup, rng):
    """A run grows after a probe; probing it with another x of the same shape (no y to tell them
    apart) would give the new step predictions on another probe set: refused, nothing written.
    --replace moves every step to the new inputs."""
    store_path, _ = setup
    first = _npz(tmp_path, drop=("y",))
    dynlab.probe(store_path, "probe_models:mlp", first)
    digest = dynlab.open_store(store_path).run("r").probe_inputs
    assert digest is not None
    with dynlab.Recorder(store_path, "r") as rec:  # training went on
        rec.log(9, model_at(store_path, 3, shift=0.01))
    other = probe_file(tmp_path / "other.npz", rng, labels=False)
    before = files(store_path)
    result = invoke("--store", store_path, "-m", "probe_models:mlp", "-d", other)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "dynlab: error: run 'r': the probe inputs x differ from those its stored probe data were "
        "computed on (a run has one probe set; --replace recomputes every step on these inputs)")
    assert files(store_path) == before
    report = dynlab.probe(store_path, "probe_models:mlp", first)  # the same inputs: resumes
    assert report.runs[0].predictions == [9]
    report = dynlab.probe(store_path, "probe_models:mlp", other, replace=True)
    assert report.runs[0].predictions == [*STEPS, 9]
    run = dynlab.open_store(store_path).run("r")
    assert run.probe_inputs not in (None, digest)
    x = torch.from_numpy(np.load(other)["x"])
    with torch.no_grad():
        want = torch.softmax(model_at(store_path, 9)(x), dim=1).numpy()
    np.testing.assert_allclose(run.read_predictions([9])[0], want, atol=1e-6)


def test_labels_added_to_a_run_probed_without(tmp_path, setup):
    store_path, data = setup
    dynlab.probe(store_path, "probe_models:mlp", _npz(tmp_path, drop=("y",)))
    assert dynlab.open_store(store_path).run("r").probe_labels is None
    report = dynlab.probe(store_path, "probe_models:mlp", data)
    assert report.runs[0].unchanged == list(STEPS)
    assert dynlab.open_store(store_path).run("r").probe_labels.tolist() == np.load(data)["y"].tolist()


def test_a_diverged_checkpoint_is_skipped_with_a_warning(tmp_path, store_path, rng):
    model = pm.mlp()
    with dynlab.Recorder(store_path, "r") as rec:
        rec.log(0, model)
        with torch.no_grad():
            model[2].weight[0, 0] = float("nan")
        with pytest.warns(NonFiniteWarning):
            rec.log(1, model)
    data = probe_file(tmp_path / "p.npz", rng)
    with pytest.warns(NonFiniteWarning, match=r"run 'r' step 1: the model's outputs are not finite"):
        report = dynlab.probe(store_path, "probe_models:mlp", data)
    assert (report.runs[0].predictions, report.runs[0].nonfinite) == ([0], [1])
    assert dynlab.open_store(store_path).run("r").prediction_hashes.tolist()[1] == 0


def test_threads_are_restored(setup):
    before = torch.get_num_threads()
    dynlab.probe(setup[0], "probe_models:mlp", setup[1], threads=before + 1)
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------- user mistakes


def _file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _npz(tmp_path, drop=(), **arrays):
    """The fixture's probe file with some arrays replaced or dropped."""
    with np.load(tmp_path / "probe.npz") as npz:
        base = {k: npz[k] for k in npz.files if k not in drop}
    np.savez(tmp_path / "p.npz", **{**base, **arrays})
    return tmp_path / "p.npz"


def _npy(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((N, pm.D_IN)))
    return tmp_path / "x.npy"


#: case → (options replacing the defaults or added, given tmp_path; parts of the one-line message).
#: The store has predictions for steps 0–3 and a step 7 without: a probe would write there.
ERRORS = {
    "spec without factory": (lambda t: {"-m": "probe_models"},
                             "--model 'probe_models': expected module:factory or "
                             "path/to/file.py:factory"),
    "module not importable": (lambda t: {"-m": "no_such_module_xyz:f"},
                              "cannot import module 'no_such_module_xyz' (ModuleNotFoundError: No "
                              "module named 'no_such_module_xyz')"),
    "module raising": (lambda t: {"-m": f"{_file(t, 'bad.py', 'raise ValueError(1)')}:f"},
                       "cannot import file '", "(ValueError: 1)"),
    "file missing": (lambda t: {"-m": f"{t / 'none.py'}:f"}, "none.py:f': no file "),
    "factory missing": (lambda t: {"-m": "probe_models:nope"},
                        "'probe_models' has no attribute 'nope'"),
    "not callable": (lambda t: {"-m": "probe_models:NOT_CALLABLE"},
                     "'NOT_CALLABLE' is a int, not a callable factory"),
    "factory raising": (lambda t: {"-m": "probe_models:raises"},
                        "(run 'r'): the factory raised ValueError: no model today"),
    "not a module": (lambda t: {"-m": "probe_models:returns_dict"},
                     "the factory returned a dict, not a torch.nn.Module"),
    "data missing": (lambda t: {"-d": t / "none.npz"}, "none.npz: no such probe file"),
    "no x": (lambda t: {"-d": _npz(t, drop=("x",), inputs=np.zeros((N, pm.D_IN)))},
             "p.npz: no array 'x' (the probe inputs); it holds y, inputs"),
    "npy not npz": (lambda t: {"-d": _npy(t)}, "x.npy: not an .npz archive"),
    "not a file of arrays": (lambda t: {"-d": _file(t, "p.npz", "hello")},  # not "a pickle"
                             "p.npz: not an .npz archive (save the probe set with numpy.savez"),
    "x pickled": (lambda t: {"-d": _npz(t, x=np.array([{"a": 1}] * N, dtype=object))},
                  "p.npz: cannot read as an .npz archive (Object arrays cannot be loaded"),
    "x strings": (lambda t: {"-d": _npz(t, x=np.array(["a"] * N))},
                  "x must be a non-empty array of numbers"),
    "x wrong shape": (lambda t: {"-d": _npz(t, x=np.zeros((N, pm.D_IN + 1), np.float32))},
                      "run 'r' step 7: the model cannot run on the probe inputs x of shape (23, 9), "
                      "float32 (RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    "x wrong shape, activations": (
        lambda t: {"-d": _npz(t, x=np.zeros((N, 3, pm.D_IN + 1), np.float32)), "--activations": None},
        "run 'r' (the factory's model): the model cannot run on the probe inputs x of shape "
        "(23, 3, 9), float32"),
    "x integers": (lambda t: {"-d": _npz(t, x=np.zeros((N, pm.D_IN), np.int64))},
                   "run 'r' step 7: the model cannot run on the probe inputs x of shape (23, 8), "
                   "int64 (RuntimeError:"),
    "y wrong length": (lambda t: {"-d": _npz(t, y=np.zeros(N - 1, np.int64))},
                       "p.npz: y has 22 labels for the 23 samples of x"),
    "y floats": (lambda t: {"-d": _npz(t, y=np.zeros(N))}, "y must be a 1-d array of non-negative"),
    "y other labels": (lambda t: {"-d": _npz(t, y=np.zeros(N, np.int64))},
                       "run 'r': the labels y of the probe file differ from the run's probe labels"),
    "fewer samples": (lambda t: {"-d": _npz(t, x=np.zeros((N - 1, pm.D_IN), np.float32),
                                            drop=("y",))},
                      "run 'r' step 7: predictions have (samples, classes) = (22, 4), but the run's "
                      "earlier steps have (23, 4)"),
    "keys": (lambda t: {"-m": "probe_models:other_keys"},
             "run 'r' step 0: the checkpoint does not fit the model: missing keys body.weight, "
             "body.bias, out.weight, out.bias; unexpected keys 0.weight, 0.bias, 2.weight, 2.bias"),
    "shapes": (lambda t: {"-m": "probe_models:wider"},
               "run 'r' step 0: the checkpoint does not fit the model: '0.weight' has shape (16, 8) "
               "in the checkpoint, (17, 8) in the model"),
    "outputs probs of logits": (lambda t: {"--outputs": "probs"}, "run 'r' step 7: predictions "),
    "unknown run": (lambda t: {"-r": "nope"}, "no run named 'nope'; runs: r"),
    "no cuda": (lambda t: {"--device": "cuda"}, "--device 'cuda': CUDA is not available"),
    "bad device": (lambda t: {"--device": "tpu9"}, "--device 'tpu9': expected auto, cpu, cuda"),
    "missing store": (lambda t: {"-s": t / "none.zarr"}, "none.zarr: no dynlab store here"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_mistakes_are_one_line_and_change_nothing(tmp_path, setup, case):
    store_path, data = setup
    dynlab.probe(store_path, "probe_models:mlp", data, runs=["r"])
    with dynlab.Recorder(store_path, "r") as rec:
        rec.log(7, model_at(store_path, 3, shift=0.01))
    before = files(store_path)
    make, *messages = ERRORS[case]
    options = {"-s": store_path, "-m": "probe_models:mlp", "-d": data, **make(tmp_path)}
    result = invoke(*[part for k, v in options.items() for part in ((k,) if v is None else (k, v))])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynlab: error: "), result.stderr
    for message in messages:
        assert message in lines[0], lines[0]
    assert files(store_path) == before
    assert "Traceback" not in result.output


def test_a_label_beyond_the_model_classes(tmp_path, setup):
    store_path, _ = setup
    data = _npz(tmp_path, y=np.full(N, pm.C))
    before = files(store_path)
    with pytest.raises(ProbeError, match=r"^run 'r': label 4 of the probe file's y is not one of the "
                                         r"model's 4 classes$"):
        dynlab.probe(store_path, "probe_models:mlp", data)
    assert files(store_path) == before


def test_the_shared_layer_error_with_matching_keys(tmp_path, store_path, rng):
    train(store_path, factory=pm.shared, steps=(0,))
    data = probe_file(tmp_path / "p.npz", rng)
    before = files(store_path)
    with pytest.raises(ProbeError, match=r"^run 'r' step 0: layer 'fc' runs 2 times in one forward"):
        dynlab.probe(store_path, "probe_models:shared", data, activations=True)
    assert files(store_path) == before
    dynlab.probe(store_path, "probe_models:shared", data)  # without --activations: fine


def test_real_subprocess(setup):
    store_path, data = setup
    cmd = [sys.executable, "-m", "dynlab", "probe", "--store", str(store_path), "--model",
           "probe_models:mlp", "--data", str(data), "--activations", "--threads", "1"]
    env_path = str(Path(__file__).parent)
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": env_path})
    assert done.returncode == 0, done.stderr
    assert "run r: predictions at 4 steps, activations at 4 steps (2 layers)" in done.stdout
    assert dynlab.open_store(store_path).run("r").has_activations


def test_exported_lazily_and_help_imports_no_torch():
    assert dynlab.probe is dynlab.api.probe and "probe" in dynlab.__all__
    code = ("from dynlab.cli import main\ntry:\n    main(['probe', '--help'])\nexcept SystemExit:\n"
            "    pass\nimport sys\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--activations" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False"
