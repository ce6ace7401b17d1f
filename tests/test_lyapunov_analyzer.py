"""The ``lyapunov`` (replica divergence, scope group) and ``lyapunov-series`` (Rosenstein on one
series, scope run) analyzers: the conformance kit, synthetic replicas with a known exponential
divergence, and series with known exponents (logistic and Hénon maps) in metrics and weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynlab import chaos
from dynlab.analyzers import AnalyzerInputError, ParameterError
from dynlab.analyzers.lyapunov import Lyapunov, LyapunovSeries
from dynlab.testing import MemoryGroup, MemoryRun, check_analyzer

STEPS = np.arange(0, 400, 5)  # every 5th step: Λ is per step, not per checkpoint


def replica_group(rng, lam=0.04, eps=1e-8, n_replicas=3, cap=None, reference_last=False):
    """A reference drifting at random and replicas W' = W + δ·e^{λt} (δ ~ U(−ε, ε) per weight):
    d_r(t) = e^{λt}·Σ|δ_r| exactly (L1), optionally capped at ``cap`` (saturation)."""
    t = STEPS.astype(np.float64)
    shapes = {"layers.0.weight": (4, 3), "layers.0.bias": (4,), "layers.1.weight": (2, 4)}
    ref = {n: np.cumsum(rng.standard_normal((len(t), *s)), axis=0) for n, s in shapes.items()}
    growth = np.exp(lam * t) if cap is None else np.minimum(np.exp(lam * t), cap / eps)
    runs = [MemoryRun("ref", STEPS, {**ref, "counter": np.arange(len(t))}, attrs={"replica": 0})]
    deltas = []
    for r in range(1, n_replicas + 1):
        delta = {n: rng.uniform(-eps, eps, s) for n, s in shapes.items()}
        deltas.append(delta)
        tensors = {n: ref[n] + delta[n] * growth.reshape(-1, *([1] * len(shapes[n])))
                   for n in shapes}
        runs.append(MemoryRun(f"rep{r}", STEPS, {**tensors, "counter": np.arange(len(t))},
                              attrs={"replica": r, "eps": eps}))
    if reference_last:
        runs = runs[1:] + runs[:1]
    return MemoryGroup("ic3", runs), deltas, growth


def test_conforms():
    check_analyzer(Lyapunov)


def test_series_conforms():
    rng = np.random.default_rng(1)
    x = np.empty(120)
    x[0] = 0.3
    for i in range(1, 120):
        x[i] = 4 * x[i - 1] * (1 - x[i - 1])
    run = MemoryRun("series", np.arange(120) * 2, {"w": rng.standard_normal((120, 3, 2))},
                    {"train_loss": x})
    check_analyzer(LyapunovSeries, view=run)


def test_known_exponential_divergence(rng):
    group, deltas, growth = replica_group(rng, reference_last=True)
    ds = Lyapunov().compute(group)
    l1 = np.array([sum(np.abs(d).sum() for d in delta.values()) for delta in deltas])
    np.testing.assert_allclose(ds["replica_distance"].values, l1[:, None] * growth[None],
                               rtol=1e-6)  # the reference's magnitude (~10) costs digits of δ
    assert float(ds["exponent"]) == pytest.approx(0.04, rel=0.01)
    assert ds.attrs["reference"] == "ref" and ds.attrs["accepted"] is True
    assert ds.attrs["eps"] == 1e-8 and ds.attrs["tensors"] == 3
    assert "counter" in ds.attrs["excluded"]
    assert ds["replica"].values.tolist() == ["rep1", "rep2", "rep3"]
    np.testing.assert_array_equal(ds["step"].values, STEPS)


def test_l2_and_saturation(rng):
    group, deltas, growth = replica_group(rng, lam=0.05, cap=1e-3)
    ds = Lyapunov(norm="l2").compute(group)
    l2 = np.array([math.sqrt(sum((d ** 2).sum() for d in delta.values())) for delta in deltas])
    np.testing.assert_allclose(ds["distance"].values, l2.mean() * growth, rtol=1e-6)
    # growth stops at t = ln(1e5)/0.05 ≈ 230: the window must end before it
    assert float(ds["exponent"]) == pytest.approx(0.05, rel=0.01)
    assert ds.attrs["window"][1] <= 235
    # the same numbers as the math API on the same arrays
    fte = chaos.finite_time_exponent(STEPS.astype(float), ds["distance"].values)
    assert float(ds["exponent"]) == fte.value


def test_reference_by_name_and_errors(rng):
    group, _, _ = replica_group(rng)
    assert Lyapunov(reference="rep2").compute(group).attrs["reference"] == "rep2"
    with pytest.raises(AnalyzerInputError, match="no run 'nope'"):
        Lyapunov(reference="nope").compute(group)
    with pytest.raises(AnalyzerInputError, match="at least one replica"):
        Lyapunov().compute(MemoryGroup("solo", group.runs[:1]))
    odd = MemoryRun("odd", STEPS, {"layers.0.weight": np.zeros((len(STEPS), 5))})
    with pytest.raises(AnalyzerInputError, match="another shape"):
        Lyapunov().compute(MemoryGroup("g", [group.runs[0], odd]))
    with pytest.raises(ParameterError, match="'norm'"):
        Lyapunov(norm="max")


def _logistic(n, x0=0.2):
    x = np.empty(n)
    x[0] = x0
    for i in range(1, n):
        x[i] = 4 * x[i - 1] * (1 - x[i - 1])
    return x


def test_series_of_a_metric_is_rosenstein_per_step():
    x = _logistic(1500)
    run = MemoryRun("r", np.arange(1500) * 2, {"w": np.zeros((1500, 2))}, {"train_loss": x})
    ds = LyapunovSeries().compute(run)
    assert float(ds["exponent"]) == pytest.approx(math.log(2) / 2, rel=0.05)  # checkpoints 2 apart
    ref = chaos.max_lyapunov(x, 2.0)
    assert float(ds["exponent"]) == ref.value
    np.testing.assert_array_equal(ds["divergence"].values, ref.divergence)
    assert ds.attrs["emb_dim"] == 1 and ds["horizon"].values[1] == 2


def test_series_of_weight_norm_and_pca(rng):
    x = _logistic(1200)
    u = rng.standard_normal((3, 4))
    u /= np.linalg.norm(u)
    run = MemoryRun("r", np.arange(1200), {"a": x[:, None, None] * u, "step": np.arange(1200)})
    ds = LyapunovSeries(series="weight-norm").compute(run)
    assert float(ds["exponent"]) == pytest.approx(math.log(2), rel=0.05)
    np.testing.assert_allclose(ds["series"].values[:, 0], x, rtol=1e-12)

    # Hénon's (x, y) spread over two tensors along random directions: the exponent is invariant
    # under the linear map to principal components
    xy = np.empty((2100, 2))
    xy[0] = 0.1
    for i in range(1, 2100):
        xy[i] = 1 - 1.4 * xy[i - 1, 0] ** 2 + xy[i - 1, 1], 0.3 * xy[i - 1, 0]
    xy = xy[100:]
    a, b = rng.standard_normal((2, 5)), rng.standard_normal((2, 3))
    run = MemoryRun("h", np.arange(2000), {"p": xy @ a, "q": xy @ b})
    ds = LyapunovSeries(series="pca", components=2).compute(run)
    assert float(ds["exponent"]) == pytest.approx(0.419, rel=0.10)
    assert sum(ds.attrs["explained_variance"]) == pytest.approx(1.0)
    # the scores span the same plane as (x, y): a linear fit from scores recovers x exactly
    coef, *_ = np.linalg.lstsq(np.c_[ds["series"].values, np.ones(2000)], xy[:, 0], rcond=None)
    np.testing.assert_allclose(np.c_[ds["series"].values, np.ones(2000)] @ coef, xy[:, 0], atol=1e-9)


def test_series_errors():
    run = MemoryRun("r", [0, 1, 3, *range(4, 40)], {"w": np.zeros((39, 2))},
                    {"train_loss": np.linspace(1, 0, 39)})
    with pytest.raises(AnalyzerInputError, match="evenly spaced"):
        LyapunovSeries().compute(run)
    with pytest.raises(AnalyzerInputError, match="no metric 'val'"):
        LyapunovSeries(metric="val").compute(run)
    short = MemoryRun("s", range(30), {"w": np.zeros((30, 2))}, {"train_loss": _logistic(30)})
    with pytest.raises(AnalyzerInputError, match="too short"):
        LyapunovSeries(min_tsep=10, trajectory_len=10).compute(short)


class CountingRun(MemoryRun):
    """A MemoryRun that records the bytes (as float64) of every read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: list[int] = []

    def read(self, tensor, steps=None, *, part=None):
        out = super().read(tensor, steps, part=part)
        self.reads.append(out.size * 8)
        return out


def _counting(run: MemoryRun, name: str | None = None) -> CountingRun:
    return CountingRun(name or run.name, run.steps, {t.name: run.read(t.name) for t in run.tensors},
                       run.metrics, dict(run.attrs))


def test_reads_stay_within_the_block_budget(rng, monkeypatch):
    """No analyzer here reads a whole tensor over all steps at once when that exceeds the block
    budget: replica distances, weight norm and the PCA Gram matrix stream (same numbers)."""
    from dynlab.analyzers import _blocks

    group, _, _ = replica_group(rng)
    whole = Lyapunov().compute(group)
    counted = MemoryGroup("ic3", [_counting(r) for r in group.runs])
    x = _logistic(400)
    u = rng.standard_normal((6, 4))
    series_run = _counting(MemoryRun("s", np.arange(400), {"a": x[:, None, None] * u,
                                                            "b": rng.standard_normal((400, 5))}))
    norm_whole = LyapunovSeries(series="weight-norm").compute(series_run)
    pca_whole = LyapunovSeries(series="pca", components=2).compute(series_run)
    budget = 1000  # bytes: below one tensor over all steps, above one checkpoint of any tensor
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", budget)
    series_run.reads.clear()
    streamed = Lyapunov().compute(counted)
    assert max(max(r.reads) for r in counted.runs) <= budget
    np.testing.assert_allclose(streamed["distance"].values, whole["distance"].values, rtol=1e-13)
    norm = LyapunovSeries(series="weight-norm").compute(series_run)
    assert max(series_run.reads) <= budget
    np.testing.assert_allclose(norm["series"].values, norm_whole["series"].values, rtol=1e-13)
    series_run.reads.clear()
    pca = LyapunovSeries(series="pca", components=2).compute(series_run)
    assert max(series_run.reads) <= 400 * 8 * 4  # one row of a's first axis over all steps
    np.testing.assert_allclose(pca["series"].values, pca_whole["series"].values, rtol=1e-9, atol=1e-12)
