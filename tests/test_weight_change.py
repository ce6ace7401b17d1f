"""weight-change: relative weight change (RWC) and WeightScale (METHODS.md §4).

The kernel against hand-computed values, a loop-by-loop reference and analytic answers; the
clustering against planted groups and scikit-learn's KMeans; the analyzer end to end through the
store, the engine and its cache.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dynlab
from dynlab import api
from dynlab.analyzers import AnalyzerInputError, ParameterError
from dynlab.analyzers.weight_change import WeightChange, is_norm_layer, select_layers
from dynlab.kernels.weight_change import clean_curves, elbow, relative_weight_change, weightscale

torch.set_num_threads(1)

ANALYZER = "weight-change"

# ---------------------------------------------------------------------------- the RWC kernel


def test_hand_computed_two_steps():
    w0 = np.array([[1.0, -2.0], [0.0, 4.0]])
    w1 = np.array([[2.0, -2.0], [3.0, 2.0]])
    # Δ = [[1, 0], [3, -2]]: ‖Δ‖₁ = 1 + 0 + 3 + 2 = 6, ‖w0‖₁ = 1 + 2 + 0 + 4 = 7 → 6/7.
    assert relative_weight_change(np.stack([w0, w1])) == pytest.approx([6 / 7], rel=1e-15)
    # elementwise: the entry with w0 = 0 is left out; 1/1, 0/2, 2/4 → (1 + 0 + 0.5) / 3 = 0.5.
    assert relative_weight_change(np.stack([w0, w1]), "elementwise") == pytest.approx([0.5], rel=1e-15)


def _rwc_loops(w: np.ndarray, form: str) -> np.ndarray:
    """The definition, one element at a time."""
    out = []
    for t in range(1, len(w)):
        prev, cur = w[t - 1].ravel().tolist(), w[t].ravel().tolist()
        if form == "norm":
            num = den = 0.0
            for a, b in zip(prev, cur, strict=True):
                num += abs(b - a)
                den += abs(a)
            out.append(num / den)
        else:
            ratios = [abs(b - a) / abs(a) for a, b in zip(prev, cur, strict=True) if a != 0]
            out.append(sum(ratios) / len(ratios))
    return np.array(out)


@pytest.mark.parametrize("form", ["norm", "elementwise"])
@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_loop_reference(form, shape, dtype):
    rng = np.random.default_rng([len(shape), form == "norm"])  # fixed: hash() of str is salted
    w = rng.standard_normal((6, *shape)).astype(dtype)
    w.reshape(6, -1)[:, 0] = 0.0  # exact zeros, which the elementwise form leaves out
    # float64 accumulation in both; only summation order differs
    np.testing.assert_allclose(relative_weight_change(w, form), _rwc_loops(w.astype(np.float64), form),
                               rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(g=st.one_of(st.floats(-0.9, -1e-3), st.floats(1e-3, 3.0)), steps=st.integers(2, 6),
       seed=st.integers(0, 2**16))
def test_geometric_growth_gives_abs_g(g, steps, seed):
    """w_t = w_0·(1+g)^t: Δw_t = g·w_{t−1} exactly in real arithmetic, so RWC = |g| in both forms."""
    w0 = np.random.default_rng(seed).standard_normal((3, 4))
    w0[0, 0] = 0.0
    w = np.stack([w0 * (1 + g) ** t for t in range(steps)])
    # floating w_t − w_{t−1} cancels: relative error ≲ eps·(1 + 2/|g|) ≈ 1e-13 for |g| ≥ 1e-3
    for form in ("norm", "elementwise"):
        np.testing.assert_allclose(relative_weight_change(w, form), abs(g), rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_invariant_to_scale_and_to_permuting_entries(scale, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 10))
    perm = rng.permutation(10)
    for form in ("norm", "elementwise"):
        ref = relative_weight_change(w, form)
        np.testing.assert_allclose(relative_weight_change(scale * w, form), ref, rtol=1e-12)
        np.testing.assert_allclose(relative_weight_change(w[:, perm], form), ref, rtol=1e-12)


def test_zero_weights_give_nonfinite_without_warnings():
    w = np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.ones((2, 2))])
    norm = relative_weight_change(w)  # ‖w_0‖₁ = 0
    assert np.isinf(norm[0]) and norm[1] == 0.0
    assert np.isnan(relative_weight_change(np.zeros((3, 2)))).all()  # 0/0
    elementwise = relative_weight_change(w, "elementwise")  # no non-zero previous entry
    assert np.isnan(elementwise[0]) and elementwise[1] == 0.0


def test_kernel_rejects_bad_input():
    with pytest.raises(ValueError, match="2 checkpoints"):
        relative_weight_change(np.ones((1, 3)))
    with pytest.raises(ValueError, match="form"):
        relative_weight_change(np.ones((2, 3)), "l2")


# ---------------------------------------------------------------------------- WeightScale


def _planted(groups: int, per_group: int, steps: int = 30, noise: float = 0.005, seed: int = 0):
    """Curves around ``groups`` sines of equal level and amplitude with phases spread over a
    period (for 2 and 3 groups the centres are equally far apart), shuffled; returns (curves,
    true group of each row). Sines because WeightScale's cleaning leaves smooth curves alone (a sine
    stays within √2σ of its mean), whereas it would flatten sharp peaks."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, steps)
    centres = [0.1 + 0.05 * np.sin(2 * np.pi * (t + g / groups)) for g in range(groups)]
    truth = np.repeat(np.arange(groups), per_group)
    rng.shuffle(truth)
    curves = np.stack([centres[g] + noise * rng.standard_normal(steps) for g in truth])
    return curves, truth


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming the labels."""
    return bool(np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :]))


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_elbow_finds_planted_groups(groups):
    curves, truth = _planted(groups, per_group=5)
    ws = weightscale(curves, k_max=8, drop_ends=False)
    assert ws.chosen_k == groups
    assert _same_partition(ws.labels, truth)
    assert ws.k.tolist() == list(range(1, 9))
    assert np.all(np.diff(ws.inertia) <= 1e-12)  # best-of-restarts inertia does not grow with K here
    for c in range(groups):  # cluster curves are the mean cleaned curves of their members
        np.testing.assert_allclose(ws.curves[c], ws.cleaned[ws.labels == c].mean(axis=0))
    # clusters are numbered in order of their first layer
    assert [int(c) for c in dict.fromkeys(ws.labels.tolist())] == list(range(groups))


def test_inertia_matches_scikit_learn():
    from sklearn.cluster import KMeans

    curves, _ = _planted(3, per_group=6, seed=1)
    ws = weightscale(curves, k_max=5, drop_ends=False)
    np.testing.assert_array_equal(ws.cleaned, curves)  # nothing to clean in smooth curves
    for k, ours in zip(ws.k, ws.inertia, strict=True):
        theirs = KMeans(n_clusters=int(k), n_init=10, random_state=0).fit(curves).inertia_
        # up to K = 3 both find the global optimum of well-separated groups: same partition, so
        # the sums of squares agree to rounding; beyond, groups are split by noise and two
        # heuristics may end in different local optima, so only the scale is compared
        if k <= 3:
            assert ours == pytest.approx(theirs, rel=1e-9)
        else:
            assert ours == pytest.approx(theirs, rel=0.5)


def test_drop_ends_and_reproducibility():
    curves, truth = _planted(2, per_group=6, seed=2)
    ws = weightscale(curves, k_max=6, drop_ends=True, seed=3)
    assert ws.labels[0] == ws.labels[-1] == -1
    assert _same_partition(ws.labels[1:-1], truth[1:-1])
    again = weightscale(curves, k_max=6, drop_ends=True, seed=3)
    np.testing.assert_array_equal(ws.labels, again.labels)
    np.testing.assert_array_equal(ws.inertia, again.inertia)


def test_fewer_layers_than_k_max():
    curves, _ = _planted(2, per_group=2, seed=4)
    ws = weightscale(curves, k_max=6, drop_ends=True)  # 2 layers left to cluster
    assert ws.k.tolist() == [1, 2] and ws.chosen_k == 1
    assert ws.labels[1] == ws.labels[2] == 0 and ws.curves.shape == (1, curves.shape[1])
    same = np.repeat(curves[:1], 5, axis=0)  # one distinct curve: only K = 1 is possible
    assert weightscale(same, k_max=6, drop_ends=False).k.tolist() == [1]
    nothing = weightscale(curves[:2], k_max=6, drop_ends=True)  # both layers are ends
    assert nothing.chosen_k == 0 and nothing.labels.tolist() == [-1, -1]
    assert nothing.inertia.shape == (0,) and nothing.curves.shape == (0, curves.shape[1])


def test_clean_curves_replaces_outliers_and_nonfinite_by_the_mean():
    row = np.array([[1.0] * 9 + [100.0]])
    # μ = 10.9, σ = 29.7: |100 − 10.9| = 89.1 > 2σ = 59.4, the ones are within 2σ; the mean of the
    # kept values is 1 (default), μ itself is 10.9
    np.testing.assert_allclose(clean_curves(row)[0], [1.0] * 10)
    np.testing.assert_allclose(clean_curves(row, fill="all")[0], [1.0] * 9 + [10.9])
    with_bad = np.array([[1.0, 2.0, np.nan, 3.0, np.inf], [np.nan] * 5])
    cleaned = clean_curves(with_bad)
    np.testing.assert_allclose(cleaned[0], [1.0, 2.0, 2.0, 3.0, 2.0])
    assert np.isnan(cleaned[1]).all()
    ws = weightscale(np.vstack([with_bad, with_bad[:1] + 1.0]), k_max=3, drop_ends=False)
    assert ws.labels[1] == -1  # a layer with no finite value is not clustered
    ramp = np.linspace(0, 1, 50)[None]  # within √3σ of its mean: untouched
    np.testing.assert_array_equal(clean_curves(ramp), ramp)


def test_outlier_does_not_split_a_group():
    curves, truth = _planted(2, per_group=5, seed=5)
    curves[3, 7] = 50.0  # one absurd step
    ws = weightscale(curves, k_max=6, drop_ends=False)
    assert ws.chosen_k == 2 and _same_partition(ws.labels, truth)


@pytest.mark.parametrize(("inertia", "k"), [
    ([100.0, 10.0, 8.0, 7.0, 6.5], 2),
    ([100.0, 60.0, 5.0, 4.0, 3.5, 3.0], 3),
    ([5.0, 4.0, 3.0, 2.0, 1.0], 1),  # a straight line has no elbow
    ([3.0, 3.0, 3.0], 1),  # flat
    ([9.0, 0.0], 1),  # two points define only the chord
    ([1.0], 1),
])
def test_elbow_rule(inertia, k):
    assert elbow(np.array(inertia)) == k


# ---------------------------------------------------------------------------- layer choice


@pytest.mark.parametrize("name", ["bn1.weight", "layer1.0.bn2.weight", "norm.weight", "model.norm1.weight",
                                  "encoder.layer.0.attention.output.LayerNorm.weight",
                                  "transformer.h.0.ln_1.weight", "ln_f.weight", "blocks.0.batch_norm.bias"])
def test_norm_layers(name):
    assert is_norm_layer(name)


@pytest.mark.parametrize("name", ["layers.0.weight", "linear.weight", "conv1.weight", "lnx.weight",
                                  "embedding.weight", "kbn.weight", "0.weight"])
def test_not_norm_layers(name):
    assert not is_norm_layer(name)


class _Tensor:
    def __init__(self, name, shape, dtype="float32"):
        self.name, self.shape, self.dtype = name, shape, dtype


def test_select_layers_rule():
    tensors = [_Tensor("conv.weight", (4, 3, 3, 3)), _Tensor("conv.bias", (4,)),
               _Tensor("bn1.weight", (4,)), _Tensor("bn1.num_batches_tracked", (), "int64"),
               _Tensor("fc.weight", (2, 4)), _Tensor("ln.proj", (2, 2))]
    names, excluded = select_layers(tensors, "weights")
    assert names == ["conv.weight", "fc.weight"]
    assert set(excluded) == {"conv.bias", "bn1.weight", "bn1.num_batches_tracked", "ln.proj"}
    assert "normalisation" in excluded["ln.proj"] and "floating" in excluded["bn1.num_batches_tracked"]
    names, excluded = select_layers(tensors, "all")
    assert names == ["conv.weight", "conv.bias", "bn1.weight", "fc.weight", "ln.proj"]
    assert list(excluded) == ["bn1.num_batches_tracked"]


# ---------------------------------------------------------------------------- the analyzer


@pytest.mark.parametrize(("key", "value"), [("form", "l2"), ("include", "biases"), ("k_max", 0),
                                            ("k_max", 21), ("k_max", 2.5), ("drop_ends", "yes"),
                                            ("seed", -1), ("layers", 3)])
def test_invalid_parameters_name_the_parameter(key, value):
    with pytest.raises(ParameterError, match=f"parameter '{key}'"):
        WeightChange(**{key: value})


class _MemoryRun:
    """A minimal read-only run view (the analyzer must not need zarr)."""

    def __init__(self, name, steps, tensors):
        self.name, self._tensors = name, tensors
        self.steps = np.asarray(steps)
        self.tensors = [_Tensor(k, v.shape[1:], v.dtype.name) for k, v in tensors.items()]
        self.attrs, self.metrics = {}, {}

    def read(self, name, steps=None):
        return self._tensors[name]


def test_compute_on_an_in_memory_view_matches_the_kernels():
    rng = np.random.default_rng(6)
    tensors = {f"l{i}.weight": rng.standard_normal((5, 3, 3)) for i in range(5)}
    tensors["l0.bias"] = rng.standard_normal((5, 3))
    ds = WeightChange(k_max=3).compute(_MemoryRun("mem", [0, 2, 4, 6, 8], tensors))
    names = [f"l{i}.weight" for i in range(5)]
    assert ds["layer"].values.tolist() == names and ds["step"].values.tolist() == [2, 4, 6, 8]
    expected = np.stack([relative_weight_change(tensors[n]) for n in names])
    np.testing.assert_allclose(ds["rwc"].values, expected.T, rtol=1e-15)
    ws = weightscale(expected, k_max=3)
    np.testing.assert_array_equal(ds["cluster"].values, ws.labels)
    assert ds.attrs["excluded"] == {"l0.bias": "1-D (bias or norm scale)"}
    for var, out in WeightChange.outputs.items():  # what is declared is what comes out
        assert ds[var].dims == out.dims
    assert set(ds.data_vars) == set(WeightChange.outputs)


def test_compute_refuses_what_it_cannot_analyse():
    one = _MemoryRun("solo", [0], {"a.weight": np.ones((1, 2, 2))})
    with pytest.raises(AnalyzerInputError, match=r"run 'solo' has 1 checkpoint\(s\).*at least 2"):
        WeightChange().compute(one)
    biases = _MemoryRun("flat", [0, 1], {"a.bias": np.ones((2, 3)), "b.bias": np.ones((2, 3))})
    with pytest.raises(AnalyzerInputError, match="run 'flat': no tensor matches include=weights"):
        WeightChange().compute(biases)
    two = _MemoryRun("two", [0, 1], {"a.weight": np.ones((2, 2, 2))})
    with pytest.raises(AnalyzerInputError, match="no tensor 'nope'"):
        WeightChange(layers="a.weight, nope").compute(two)


def _train_mlp(store, run: str, checkpoints: int = 8) -> dict[int, dict[str, np.ndarray]]:
    """A small MLP with a BatchNorm layer, trained by SGD, recorded after every step."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                                torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    snapshots = {}
    with dynlab.Recorder(store, run, attrs={"width": 16}) as rec:
        for step in range(checkpoints):
            if step:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            rec.log(step * 5, model)
            snapshots[step * 5] = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return snapshots


def _status(report, target):
    (outcome,) = [o for o in report.outcomes if o.target == target]
    return outcome


def test_end_to_end_through_the_store(store_path):
    snapshots = _train_mlp(store_path, "mlp")
    report = api.run(store_path, [ANALYZER])
    assert _status(report, "mlp").status == "computed", report
    ds = api.results(store_path, ANALYZER, "mlp")

    layers = ["0.weight", "3.weight", "5.weight", "7.weight"]  # BatchNorm "1.*" is 1-D or int
    assert ds["layer"].values.tolist() == layers
    assert ds["step"].values.tolist() == [5, 10, 15, 20, 25, 30, 35]
    assert ds["rwc"].dims == ("step", "layer") and ds["rwc"].shape == (7, 4)
    steps = sorted(snapshots)
    expected = np.stack([relative_weight_change(np.stack([snapshots[s][n] for s in steps]))
                         for n in layers])
    np.testing.assert_allclose(ds["rwc"].values, expected.T, rtol=1e-12)  # float32 stored exactly
    assert (ds["rwc"].values > 0).all()
    ws = weightscale(expected, k_max=6, drop_ends=True, seed=0)
    np.testing.assert_array_equal(ds["cluster"].values, ws.labels)
    assert ds["cluster"].values[[0, -1]].tolist() == [-1, -1]
    np.testing.assert_allclose(ds["inertia"].values, ws.inertia)
    assert ds["cluster_curve"].dims == ("label", "step")
    assert ds.attrs["chosen_k"] == ws.chosen_k and ds.attrs["form"] == "norm"
    assert ds.attrs["excluded"]["1.num_batches_tracked"].startswith("not floating")
    assert ds.attrs["excluded"]["0.bias"] == "1-D (bias or norm scale)"
    assert ds.attrs["unclustered"] == ["0.weight", "7.weight"]

    # the cache: unchanged inputs, version and params are skipped
    assert _status(api.run(store_path, [ANALYZER]), "mlp").status == "cached"
    assert _status(api.run(store_path, [ANALYZER], force=True), "mlp").status == "computed"
    changed = api.run(store_path, [ANALYZER], params={"weight-change.form": "elementwise"})
    assert _status(changed, "mlp").status == "computed"
    assert api.results(store_path, ANALYZER, "mlp").attrs["form"] == "elementwise"
    assert _status(api.run(store_path, [ANALYZER], params={"form": "elementwise"}), "mlp"
                   ).status == "cached"
    assert _status(api.run(store_path, [ANALYZER]), "mlp").status == "computed"  # back to norm


def test_two_step_run_by_hand_and_explicit_layers(store_path):
    w0 = np.array([[1.0, -2.0], [0.0, 4.0]], dtype=np.float32)
    w1 = np.array([[2.0, -2.0], [3.0, 2.0]], dtype=np.float32)
    b0, b1 = np.array([1.0, 2.0], np.float32), np.array([1.0, 3.0], np.float32)
    with dynlab.Recorder(store_path, "tiny") as rec:
        rec.log(0, {"fc.weight": w0, "fc.bias": b0})
        rec.log(7, {"fc.weight": w1, "fc.bias": b1})
    assert not api.run(store_path, [ANALYZER]).failed
    ds = api.results(store_path, ANALYZER, "tiny")
    assert ds["step"].values.tolist() == [7]
    assert ds["rwc"].sel(layer="fc.weight").values.tolist() == pytest.approx([6 / 7])
    assert ds["cluster"].values.tolist() == [-1]  # a single layer is both first and last

    report = api.run(store_path, [ANALYZER], params={"layers": "fc.weight,fc.bias", "drop_ends": "false",
                                                     "form": "elementwise"})
    assert not report.failed, report
    ds = api.results(store_path, ANALYZER, "tiny")
    # bias: |1−1|/1 and |3−2|/2 → 0.25; weight: 0.5 (see test_hand_computed_two_steps)
    assert ds["rwc"].values.tolist() == [pytest.approx([0.5, 0.25])]
    assert ds["cluster"].values.tolist() == [0, 0] and ds["k"].values.tolist() == [1, 2]


def test_failures_are_outcomes_naming_the_run(store_path):
    rng = np.random.default_rng(7)
    with dynlab.Recorder(store_path, "single") as rec:
        rec.log(0, {"fc.weight": rng.standard_normal((3, 3))})
    with dynlab.Recorder(store_path, "biases") as rec:
        for step in range(3):
            rec.log(step, {"fc.bias": rng.standard_normal(3)})
    report = api.run(store_path, [ANALYZER])
    single, biases = _status(report, "single"), _status(report, "biases")
    assert single.status == "failed" and "'single'" in single.message
    assert "1 checkpoint" in single.message and "at least 2" in single.message
    assert biases.status == "failed" and "'biases'" in biases.message and "include=" in biases.message
    assert "\n" not in single.message + biases.message
    report = api.run(store_path, [ANALYZER], runs=["biases"], params={"include": "all"})
    assert _status(report, "biases").status == "computed"
