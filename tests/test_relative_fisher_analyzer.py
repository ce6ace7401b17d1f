"""The ``relative-fisher`` analyzer (METHODS.md §3): the linear-layer analytic case (v = RMS change
of the outputs / Δt, at the left checkpoint and at the mid rule), a conv layer against torch's own
convolution, equality with :func:`dynlab.geometry.rfim_quadratic` called by hand, backends,
blocks of checkpoints, missing inputs, refusals, a stored run through the engine, and the
conformance kit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynlab.analyzers.relative_fisher as rf
from dynlab import geometry
from dynlab.analyzers import AnalyzerInputError
from dynlab.analyzers.relative_fisher import RelativeFisher
from dynlab.errors import DynlabError
from dynlab.testing import MemoryRun, check_analyzer

torch.set_num_threads(1)

STEPS = np.array([0, 2, 5, 9, 10])


def mlp_run(rng: np.random.Generator, *, steps=STEPS, n=23, widths=(5, 7, 4), describe=True,
            activations=None, name="mlp") -> MemoryRun:
    """A two-layer MLP (fc1 → relu → fc2 → softmax) whose weights random-walk over ``steps``, with
    its layers' inputs on n probe samples at every step (fc2's computed from fc1)."""
    T = len(steps)
    h0, h1, h2 = widths
    w1 = np.cumsum(0.3 * rng.standard_normal((T, h1, h0)), axis=0)
    b1 = np.cumsum(0.3 * rng.standard_normal((T, h1)), axis=0)
    w2 = np.cumsum(0.3 * rng.standard_normal((T, h2, h1)), axis=0)
    b2 = np.cumsum(0.3 * rng.standard_normal((T, h2)), axis=0)
    x = rng.standard_normal((n, h0)).astype(np.float32)
    x1 = np.repeat(x[None], T, axis=0)  # the network's input: the same probe set at every step
    hidden = np.maximum(np.einsum("tnh,toh->tno", x1.astype(np.float64), w1) + b1[:, None], 0)
    tensors = {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2}
    acts = {"fc1": x1, "fc2": hidden.astype(np.float32)} if activations is None else activations
    layers = {"fc1": {"kind": "linear", "weight": "fc1.weight", "bias": "fc1.bias", "output": "relu"},
              "fc2": {"kind": "linear", "weight": "fc2.weight", "bias": "fc2.bias",
                      "output": "softmax"}} if describe else None
    return MemoryRun(name, steps, tensors, activations=acts, probe_layers=layers)


# ---------------------------------------------------------------------------- analytic


@pytest.mark.parametrize("at", ["left", "mid"])
def test_linear_layer_unit_noise_speed_is_the_rms_output_change(at):
    """Linear output, s = 1: v² Δt² = (1/N) Σₙ ‖ΔW xₙ + Δb‖², the mean squared change of the
    layer's outputs on its inputs (at t_k for "left", the mean of t_k and t_k+1 for "mid")."""
    rng = np.random.default_rng(0)
    run = mlp_run(rng)
    ds = RelativeFisher(output="linear", at=at).compute(run, backend="numpy")
    for layer in ("fc1", "fc2"):
        w = run.read(f"{layer}.weight").astype(np.float64)
        b = run.read(f"{layer}.bias").astype(np.float64)
        x = run.read_activations(layer).astype(np.float64)
        ms = [np.mean(np.sum((x[k + s] @ (w[k + 1] - w[k]).T + (b[k + 1] - b[k])) ** 2, axis=1))
              for k in range(len(STEPS) - 1) for s in (0, 1)]
        ms = np.array(ms).reshape(-1, 2)
        want = np.sqrt(ms[:, 0] if at == "left" else ms.mean(axis=1)) / np.diff(STEPS)
        np.testing.assert_allclose(ds["speed"].sel(layer=layer).values, want, rtol=1e-12)
        lengths = np.concatenate([[0], np.cumsum(want * np.diff(STEPS))])
        np.testing.assert_allclose(ds["length"].sel(layer=layer).values, lengths, rtol=1e-12)
        assert float(ds["total"].sel(layer=layer)) == pytest.approx(lengths[-1], rel=1e-12)
    assert ds.attrs["layers"]["fc2"]["output_from"] == "parameter"
    assert ds["step_mid"].values.tolist() == [1.0, 3.5, 7.0, 9.5]


def test_noise_divides_the_gaussian_speed():
    run = mlp_run(np.random.default_rng(1))
    one = RelativeFisher(output="linear").compute(run)
    half = RelativeFisher(output="linear", noise=0.5).compute(run)
    np.testing.assert_allclose(half["speed"].values, 2 * one["speed"].values, rtol=1e-12)


def test_conv_layer_against_torch_convolution():
    """Conv2d with linear output: v·Δt = RMS over samples of the change of the position-averaged
    conv output (torch's conv2d), from patches averaged over positions as the contract stores them."""
    rng = np.random.default_rng(2)
    images = torch.tensor(rng.standard_normal((9, 2, 6, 5)))
    conv_w = [torch.tensor(rng.standard_normal((3, 2, 3, 2))) for _ in range(3)]
    conv_b = [torch.tensor(rng.standard_normal(3)) for _ in range(3)]
    patches = torch.nn.functional.unfold(images, (3, 2)).mean(dim=2)  # (N, C_in·kh·kw)
    run = MemoryRun("conv", [0, 1, 4], {"c.weight": torch.stack(conv_w).numpy(),
                                        "c.bias": torch.stack(conv_b).numpy()},
                    activations={"c": np.stack([patches.numpy()] * 3)},
                    probe_layers={"c": {"kind": "conv", "weight": "c.weight", "bias": "c.bias",
                                        "output": "linear"}})
    ds = RelativeFisher().compute(run)
    patches32 = torch.tensor(run.read_activations("c")[0], dtype=torch.float64)
    for k, dt in ((0, 1), (1, 3)):
        out = [torch.nn.functional.conv2d(images, w, b).mean(dim=(2, 3))
               for w, b in ((conv_w[k], conv_b[k]), (conv_w[k + 1], conv_b[k + 1]))]
        rms = float(((out[1] - out[0]) ** 2).sum(dim=1).mean().sqrt())
        # the stored patches are float32: compare with the same rounding of the inputs
        dz = patches32 @ (conv_w[k + 1] - conv_w[k]).reshape(3, -1).T + (conv_b[k + 1] - conv_b[k])
        assert float(ds["speed"][k, 0]) == pytest.approx(float((dz**2).sum(1).mean().sqrt()) / dt,
                                                         rel=1e-12)
        assert float(ds["speed"][k, 0]) == pytest.approx(rms / dt, rel=1e-6)  # float32 inputs
    assert ds.attrs["layers"]["c"]["kind"] == "conv"


def test_grouped_conv_layer_against_torch_convolution():
    """A grouped Conv2d (groups=2; the probe stores the patches of all C_in channels): v·Δt = RMS
    change of torch's position-averaged grouped conv output, with linear output."""
    rng = np.random.default_rng(12)
    images = torch.tensor(rng.standard_normal((7, 4, 5, 6)))
    conv_w = [torch.tensor(rng.standard_normal((6, 2, 3, 2))) for _ in range(3)]
    conv_b = [torch.tensor(rng.standard_normal(6)) for _ in range(3)]
    patches = torch.nn.functional.unfold(images, (3, 2)).mean(dim=2)  # (N, C_in·kh·kw) = (7, 24)
    run = MemoryRun("grouped", [0, 2, 3], {"g.weight": torch.stack(conv_w).numpy(),
                                           "g.bias": torch.stack(conv_b).numpy()},
                    activations={"g": np.stack([patches.numpy()] * 3)},
                    probe_layers={"g": {"kind": "conv", "weight": "g.weight", "bias": "g.bias",
                                        "output": "linear"}})
    ds = RelativeFisher(at="mid").compute(run)
    for k, dt in ((0, 2), (1, 1)):
        out = [torch.nn.functional.conv2d(images, w, b, groups=2).mean(dim=(2, 3))
               for w, b in ((conv_w[k], conv_b[k]), (conv_w[k + 1], conv_b[k + 1]))]
        rms = float(((out[1] - out[0]) ** 2).sum(dim=1).mean().sqrt())
        assert float(ds["speed"][k, 0]) == pytest.approx(rms / dt, rel=1e-6)  # float32 inputs


# ---------------------------------------------------------------------------- the kernel


@pytest.mark.parametrize("at", ["left", "mid"])
def test_equals_rfim_quadratic_by_hand(at):
    rng = np.random.default_rng(3)
    run = mlp_run(rng)
    ds = RelativeFisher(at=at, damping=1e-3, noise=0.5).compute(run, backend="numpy")
    for layer, output in (("fc1", "relu"), ("fc2", "softmax")):
        w, b = run.read(f"{layer}.weight"), run.read(f"{layer}.bias")
        x = run.read_activations(layer)
        for k in range(len(STEPS) - 1):
            forms = [geometry.rfim_quadratic(w[k + 1] - w[k], x[k + s], output=output, W=w[k + s],
                                             db=b[k + 1] - b[k], b=b[k + s], noise=0.5, damping=1e-3,
                                             backend="numpy") for s in (0, 1)]
            q = forms[0] if at == "left" else 0.5 * sum(forms)
            dt = STEPS[k + 1] - STEPS[k]
            assert float(ds["speed"].sel(layer=layer)[k]) == pytest.approx(np.sqrt(q) / dt, rel=1e-12)
        assert ds.attrs["layers"][layer]["output"] == output
        assert ds.attrs["layers"][layer]["output_from"] == "probe_layers"


def test_backends_agree():
    run = mlp_run(np.random.default_rng(4))
    want = RelativeFisher(at="mid").compute(run, backend="numpy")
    for backend in ("numba", "torch"):
        got = RelativeFisher(at="mid").compute(run, backend=backend)
        np.testing.assert_allclose(got["speed"].values, want["speed"].values, rtol=1e-12)
        np.testing.assert_allclose(got["length"].values, want["length"].values, rtol=1e-12)


def test_blocks_of_checkpoints_give_the_same_numbers(monkeypatch):
    run = mlp_run(np.random.default_rng(5), steps=np.arange(0, 30, 3))
    want = RelativeFisher(at="mid").compute(run)
    monkeypatch.setattr(rf, "_READ_VALUES", 2 * 23 * 7)  # two checkpoints per block
    got = RelativeFisher(at="mid").compute(run)
    np.testing.assert_allclose(got["speed"].values, want["speed"].values, rtol=1e-14)


def test_missing_inputs_give_nan_from_there_on():
    rng = np.random.default_rng(6)
    full = mlp_run(rng)
    x1 = full.read_activations("fc1")
    x2 = full.read_activations("fc2")
    acts = {"fc1": x1, "fc2": {int(s): x2[i] for i, s in enumerate(STEPS) if s != 5}}
    run = MemoryRun("gap", STEPS, {t.name: full.read(t.name) for t in full.tensors}, activations=acts,
                    probe_layers=full.probe_layers)
    left = RelativeFisher().compute(run)
    fc2 = left["speed"].sel(layer="fc2").values
    assert np.isnan(fc2[2]) and np.isfinite(np.delete(fc2, 2)).all()  # the pair 5 → 9 needs step 5
    assert np.isnan(left["length"].sel(layer="fc2").values[3:]).all()
    assert left.attrs["missing"] == {"fc2": 1}
    mid = RelativeFisher(at="mid").compute(run)["speed"].sel(layer="fc2").values
    assert np.isnan(mid[1:3]).all() and np.isfinite(mid[[0, 3]]).all()  # 2 → 5 and 5 → 9
    ref = RelativeFisher().compute(full)
    np.testing.assert_allclose(left["speed"].sel(layer="fc1"), ref["speed"].sel(layer="fc1"))


# ---------------------------------------------------------------------------- layers and refusals


def test_without_probe_layers_the_torch_names_and_the_output_parameter():
    rng = np.random.default_rng(7)
    described = mlp_run(rng)
    bare = MemoryRun("bare", STEPS, {t.name: described.read(t.name) for t in described.tensors},
                     activations={k: described.read_activations(k) for k in ("fc1", "fc2")})
    with pytest.raises(AnalyzerInputError, match=r"output model of layer 'fc1' is not known.*"
                                                 r"relative-fisher\.output="):
        RelativeFisher().compute(bare)
    ds = RelativeFisher(output="softmax").compute(bare)
    assert ds.attrs["layers"]["fc1"] == {"weight": "fc1.weight", "bias": "fc1.bias", "kind": "linear",
                                         "output": "softmax", "output_from": "parameter"}
    want = RelativeFisher(output="softmax").compute(described)
    np.testing.assert_allclose(ds["speed"].values, want["speed"].values, rtol=1e-14)
    only = RelativeFisher(output="linear", layers="fc2").compute(bare)
    assert only["layer"].values.tolist() == ["fc2"] and only.attrs["excluded"] == {"fc1": "not in layers="}


def test_activations_of_a_layer_probe_layers_no_longer_describes_are_left_out():
    """A run whose probe_layers describe fc1 and fc2 but which also holds activations of 'old'
    (an earlier probe of another model): 'old' is excluded with the reason, the others are
    analysed as without it; asked for by name (layers=) it is still an error."""
    rng = np.random.default_rng(9)
    run = mlp_run(rng)
    acts = {k: run.read_activations(k) for k in ("fc1", "fc2")}
    tensors = {t.name: run.read(t.name) for t in run.tensors}
    stale = MemoryRun("stale", STEPS, tensors, activations={**acts, "old": acts["fc1"]},
                      probe_layers=run.probe_layers)
    ds = RelativeFisher().compute(stale)
    assert ds["layer"].values.tolist() == ["fc1", "fc2"]
    assert ds.attrs["excluded"] == {"old": "not in probe_layers (an earlier probe's layer?)"}
    np.testing.assert_allclose(ds["speed"].values, RelativeFisher().compute(run)["speed"].values,
                               rtol=1e-14)
    with pytest.raises(AnalyzerInputError, match="of layer 'old'"):
        RelativeFisher(layers="old").compute(stale)


def test_refusals_are_one_line_errors():
    rng = np.random.default_rng(8)
    run = mlp_run(rng)
    tensors = {t.name: run.read(t.name) for t in run.tensors}
    cases = [
        (MemoryRun("none", STEPS, tensors), "has no probe activations.*dynlab probe --activations"),
        (MemoryRun("noweight", STEPS, {"fc2.weight": tensors["fc2.weight"]},
                   activations={"fc1": run.read_activations("fc1")}),
         r"the weight 'fc1\.weight' of layer 'fc1' .* is not in the run"),
        (MemoryRun("shape", STEPS, {"fc1.weight": tensors["fc1.weight"]},
                   activations={"fc1": run.read_activations("fc2")}),
         "inputs of 7 features, but its weight 'fc1.weight' has shape"),
        (MemoryRun.from_view(run, STEPS[:1]), "needs at least 2"),
    ]
    for view, message in cases:
        with pytest.raises(DynlabError, match=message) as info:
            RelativeFisher(output="linear").compute(view)
        assert "\n" not in str(info.value) and f"'{view.name}'" in str(info.value)
    with pytest.raises(AnalyzerInputError, match="no activations of layer 'fc3'"):
        RelativeFisher(layers="fc1,fc3").compute(run)


# ---------------------------------------------------------------------------- contract and store


def test_conformance_kit():
    view = mlp_run(np.random.default_rng(9))
    check_analyzer(RelativeFisher, view=view)
    check_analyzer("relative-fisher", view=view)
    # a layer without bias: None in the attrs survives the store; Δb = 0 in the numbers
    tensors = {t.name: view.read(t.name) for t in view.tensors if t.name != "fc2.bias"}
    layers = view.probe_layers
    layers["fc2"]["bias"] = None
    nobias = MemoryRun("nobias", STEPS, tensors, probe_layers=layers,
                       activations={k: view.read_activations(k) for k in view.activation_layers})
    check_analyzer(RelativeFisher, view=nobias)
    ds = RelativeFisher().compute(nobias)
    w, x = view.read("fc2.weight"), view.read_activations("fc2")
    q = geometry.rfim_quadratic(w[1] - w[0], x[0], output="softmax", W=w[0], backend="numpy")
    assert float(ds["speed"].sel(layer="fc2")[0]) == pytest.approx(np.sqrt(q) / 2, rel=1e-12)
    assert ds.attrs["layers"]["fc2"]["bias"] is None


def test_a_stored_run_through_the_engine(store_path):
    from dynlab import engine
    from dynlab.store import open_store

    view = mlp_run(np.random.default_rng(10))
    store = open_store(store_path, mode="a")
    run = store.create_run("mlp")
    for i, step in enumerate(STEPS):
        run.append(int(step), {t.name: view.read(t.name)[i] for t in view.tensors},
                   activations={k: view.read_activations(k)[i] for k in view.activation_layers})
    run.set_probe_layers(view.probe_layers)
    report = engine.run(store, ["relative-fisher"], params={"at": "mid"}, backend="numpy")
    assert [o.status for o in report.outcomes] == ["computed"], report.outcomes
    got = store.result("relative-fisher", "mlp")
    want = RelativeFisher(at="mid").compute(view)
    np.testing.assert_allclose(got["speed"].values, want["speed"].values, rtol=1e-14)
    assert got.attrs["layers"] == want.attrs["layers"]
