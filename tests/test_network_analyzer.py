"""The ``network`` analyzer: contract, numbers against dynlab.network / scipy / a brute-force
histogram divergence, a conv net with norm layers, chunked reading, and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import scipy.stats

from dynlab.analyzers import AnalyzerInputError, ParameterError, Text, param
from dynlab.analyzers import network as mod
from dynlab.analyzers.network import Network, auto_bins
from dynlab.network import node_strength
from dynlab.testing import MemoryRun, check_analyzer, synthetic_run

STEPS = [0, 3, 5, 10]


def conv_run(seed: int = 0) -> MemoryRun:
    """A small CNN: conv(1→4, 3×3, pad 1) + batch norm → conv(4→6, 3×3) → flatten → linear(6·4·4→3),
    drifting over 4 checkpoints."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1.weight": (4, 1, 3, 3), "conv1.bias": (4,), "bn1.weight": (4,), "bn1.bias": (4,),
              "conv2.weight": (6, 4, 3, 3), "conv2.bias": (6,), "fc.weight": (3, 96), "fc.bias": (3,)}
    tensors = {n: (rng.standard_normal(s) + 0.1 * np.cumsum(rng.standard_normal((len(STEPS), *s)), 0))
               .astype(np.float32) for n, s in shapes.items()}
    tensors["bn1.num_batches_tracked"] = np.arange(len(STEPS), dtype=np.int64)
    return MemoryRun("cnn", STEPS, tensors)


@dataclass(frozen=True)
class ConvNetwork(Network):
    """The analyzer with the conv run's input size as default (check_analyzer computes with the
    defaults); a test-only name so it never clashes with the registered ``network``."""

    name: ClassVar[str] = "network-conv-test"
    input_size: str = param("6x6", Text(), "spatial size of the first convolution's input")
    layers: str = param("conv1.weight:padding=1,conv2.weight,fc.weight", Text(), "explicit layers")


def test_conforms_on_the_synthetic_mlp():
    check_analyzer(Network)


def test_conforms_on_a_conv_net():
    check_analyzer(ConvNetwork, view=conv_run())


def test_strengths_equal_node_strength_on_a_conv_net():
    run = conv_run()
    a = Network(layers="conv1.weight:padding=1,conv2.weight,fc.weight", input_size="6x6")
    ds = a.compute(run)
    assert list(ds.layer.values) == ["input", "conv1", "conv2", "fc"]
    assert list(ds["size"].values) == [36, 144, 96, 3]
    assert ds.attrs["structure"]["skipped"]["bn1.num_batches_tracked"] == "not in layers="
    for row, step in enumerate(STEPS):
        t = run.checkpoint(step)
        ref = node_strength([t["conv1.weight"], t["conv2.weight"], t["fc.weight"]],
                            [t["conv1.bias"], t["conv2.bias"], t["fc.bias"]], input_size=(6, 6),
                            padding=[1, 0])
        for j, s in enumerate(ref):
            got = ds["strength"].values[row, j]
            np.testing.assert_allclose(got[:s.strength.size], s.strength.ravel(), rtol=1e-12)
            assert np.isnan(got[s.strength.size:]).all()  # padding beyond the layer's size
            np.testing.assert_allclose(ds["fluctuation"].values[row, j], np.std(s.strength), rtol=1e-12)


def test_inferred_conv_net_skips_norm_layers_and_notes_it():
    ds = Network(input_size="6x6", padding=1).compute(conv_run())
    # padding=1 everywhere: conv2 gives 6×6×6 = 216 ≠ 96 features, so the chain breaks before fc
    assert list(ds.layer.values) == ["input", "conv1", "conv2", "fc.in", "fc"]
    skipped = ds.attrs["structure"]["skipped"]
    assert skipped["bn1.weight"].startswith("normalisation") and "bn1.bias" in skipped
    assert any("chain breaks before fc.weight" in n for n in ds.attrs["structure"]["notes"])


def test_statistics_against_scipy_and_numpy():
    ds = Network().compute(synthetic_run())
    for j, n in enumerate(ds["size"].values):
        x = ds["strength"].values[:, j, :n]
        np.testing.assert_allclose(ds["mean"].values[:, j], x.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(ds["fluctuation"].values[:, j], x.std(axis=1), rtol=1e-12)
        # scipy's biased (population) estimators; equal up to rounding of the moments
        np.testing.assert_allclose(ds["skewness"].values[:, j], scipy.stats.skew(x, axis=1), rtol=1e-9)
        np.testing.assert_allclose(ds["kurtosis"].values[:, j], scipy.stats.kurtosis(x, axis=1), rtol=1e-9)
        np.testing.assert_allclose(ds["quantile"].values[:, j], np.quantile(x, ds.q.values, axis=1).T)


def test_divergence_against_brute_force_histograms():
    a = Network(bins=7, pseudocount=0.25)
    ds = a.compute(synthetic_run())
    for j, n in enumerate(ds["size"].values):
        x = ds["strength"].values[:, j, :n]
        edges = np.linspace(x.min(), x.max(), 8)
        p0 = np.histogram(x[0], edges)[0] + 0.25
        for row in range(len(x)):
            pt = np.histogram(x[row], edges)[0] + 0.25
            # scipy.stats.entropy normalises: KL(p‖q) + KL(q‖p)
            ref = scipy.stats.entropy(pt, p0) + scipy.stats.entropy(p0, pt)
            np.testing.assert_allclose(ds["divergence"].values[row, j], ref, rtol=1e-10, atol=1e-15)
    assert (ds["divergence"].values[0] == 0).all()
    assert (ds["divergence"].values[1:] > 0).any()
    assert ds.attrs["bins"] == {name: 7 for name in ds.layer.values}
    assert auto_bins(16) == 6 and auto_bins(1) == 4 and auto_bins(10**9) == 100


def test_absolute_and_offset_variants():
    run = synthetic_run()
    signed = Network().compute(run)
    absolute = Network(absolute=True, endpoint_offset=True).compute(run)
    assert signed.attrs["variant"] == "signed" and absolute.attrs["variant"] == "absolute"
    t = run.checkpoint(int(run.steps[-1]))
    names = [f"layers.{i}" for i in range(3)]
    ref = node_strength([t[f"{n}.weight"] for n in names], [t[f"{n}.bias"] for n in names],
                        absolute=True, endpoint_offset=True)
    for j, s in enumerate(ref):
        np.testing.assert_allclose(absolute["strength"].values[-1, j, :s.strength.size], s.strength,
                                   rtol=1e-12)
    assert (absolute["strength"].values[:, 0, :8] >= 1).all()  # |W| sums + 1 on the input layer


def test_chunked_reading_gives_the_same_result(monkeypatch):
    run = conv_run(1)
    whole = Network(input_size="6x6").compute(run)
    monkeypatch.setattr(mod, "CHUNK_BYTES", 1)  # one checkpoint per read
    reads = []
    original = run.read
    monkeypatch.setattr(run, "read", lambda name, steps=None: reads.append(len(steps)) or
                        original(name, steps))
    chunked = Network(input_size="6x6").compute(run)
    assert set(reads) == {1}
    np.testing.assert_array_equal(chunked["strength"].values, whole["strength"].values)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"input_size": "32xx"}, "input_size"),
    ({"input_size": "0x4"}, "input_size"),
    ({"layers": "a:stride=x"}, "layers"),
    ({"pseudocount": 0.0}, "pseudocount"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Network(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "spatial size"),
    ({"input_size": "6x6", "layers": "conv1.weight,nope.weight"}, "no tensor 'nope.weight'"),
    ({"input_size": "2x2", "padding": 0}, "does not fit"),
])
def test_bad_runs_name_the_run(kwargs, match):
    with pytest.raises(AnalyzerInputError, match=match) as info:
        Network(**kwargs).compute(conv_run())
    assert "run 'cnn'" in str(info.value)


def test_a_diverged_checkpoint_spoils_only_its_own_row():
    """A NaN weight (a diverged step) makes that step's statistics NaN; every other step keeps the
    divergence it has without the bad step (edges from the finite strengths), not a silent 0."""
    run = synthetic_run()
    bad = {t.name: run.read(t.name) for t in run.tensors}
    bad["layers.0.weight"][2, 0, 0] = np.nan
    poisoned = MemoryRun("bad", run.steps, bad)
    ds = Network(bins=7).compute(poisoned)
    keep = np.arange(len(run.steps)) != 2
    clean = Network(bins=7).compute(MemoryRun("clean", run.steps[keep],
                                               {n: v[keep] for n, v in bad.items()}))
    assert np.isnan(ds["divergence"].values[2, 0]) and np.isnan(ds["fluctuation"].values[2, 0])
    np.testing.assert_allclose(ds["divergence"].values[keep], clean["divergence"].values, rtol=1e-12)
    assert (clean["divergence"].values[1:, 0] > 0).any()
