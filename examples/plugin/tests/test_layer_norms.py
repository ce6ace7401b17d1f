"""The plugin's own tests: the conformance kit, then the numbers against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from dynlab_layer_norms import LayerNorms

from dynlab.analyzers import ParameterError, registry
from dynlab.testing import MemoryRun, check_analyzer, synthetic_run


def test_conforms():
    check_analyzer(LayerNorms)


def test_conforms_as_registered():
    assert registry.get("layer-norms") is LayerNorms
    check_analyzer("layer-norms")


@pytest.mark.parametrize(("ord", "reference"), [
    ("fro", lambda w: np.linalg.norm(w, "fro")),
    ("l1", lambda w: np.linalg.norm(w.ravel(), 1)),
    ("max", lambda w: np.linalg.norm(w.ravel(), np.inf)),
])
def test_values_match_numpy(ord, reference):
    run = synthetic_run()
    ds = LayerNorms(ord=ord).compute(run)
    weights = [t.name for t in run.tensors if t.name.endswith(".weight")]
    assert list(ds["layer"].values) == weights
    np.testing.assert_array_equal(ds["step"].values, run.steps)
    for name in weights:
        expected = [reference(w.astype(np.float64)) for w in run.read(name)]
        # float64 accumulation on both sides; only the summation order differs
        np.testing.assert_allclose(ds["norm"].sel(layer=name).values, expected, rtol=1e-12)


def test_biases_and_conv_kernels():
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((3, 4, 2, 3, 3)).astype(np.float32)  # (T, out, in, kh, kw)
    bias = rng.standard_normal((3, 4)).astype(np.float32)
    run = MemoryRun("conv", [0, 5, 9], {"conv.weight": kernel, "conv.bias": bias})
    ds = LayerNorms(biases=True).compute(run)
    assert list(ds["layer"].values) == ["conv.weight", "conv.bias"]
    np.testing.assert_allclose(ds["norm"].sel(layer="conv.bias"),
                               np.linalg.norm(bias.astype(np.float64), axis=1), rtol=1e-12)
    np.testing.assert_allclose(ds["norm"].sel(layer="conv.weight"),
                               [np.linalg.norm(k.astype(np.float64).ravel()) for k in kernel],
                               rtol=1e-12)


def test_cli_strings_and_errors():
    assert LayerNorms.from_params({"ord": "max", "biases": "true"}) == LayerNorms("max", True)
    with pytest.raises(ParameterError, match="'ord'"):
        LayerNorms(ord="nuc")
    only_biases = MemoryRun("b", [0], {"bias": np.zeros((1, 3))})
    with pytest.raises(ParameterError, match="no weight tensors"):
        LayerNorms().compute(only_biases)
