"""The ``inpca`` analyzer: the METHODS §2 toy check through the analyzer (two runs embedded
together), the coordinates' isometry, progress and speed against the math API, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dynlab import inpca
from dynlab.analyzers import AnalyzerInputError
from dynlab.analyzers.inpca import InPCA
from dynlab.geometry import bhattacharyya_matrix


class PredictionRun:
    """The part of a run view ``inpca`` reads: steps and probe predictions (and labels)."""

    def __init__(self, name, steps, predictions=None, labels=None):
        self.name, self.steps = name, np.asarray(steps)
        self._p, self.probe_labels = predictions, labels
        self.tensors, self.attrs, self.metrics = [], {}, {}

    @property
    def has_predictions(self):
        return self._p is not None

    def read_predictions(self, steps=None):
        return self._p.copy()


class Group:
    def __init__(self, name, runs):
        self.name, self.runs = name, runs


def toy_models() -> np.ndarray:
    """METHODS §2: uniform, the geodesic points λ = 0.33 and 0.66 to Q, and Q = 0.98·I + 0.01."""
    uniform = np.full((3, 3), 1 / 3)
    q = 0.98 * np.eye(3) + 0.01
    q /= q.sum(axis=1, keepdims=True)
    return np.stack([uniform, inpca.geodesic(uniform, q, 0.33), inpca.geodesic(uniform, q, 0.66), q])


@pytest.fixture
def toy_group():
    p = toy_models()
    labels = np.arange(3)
    return Group("toy", [PredictionRun("a", [0, 10], p[:2], labels),
                         PredictionRun("b", [0, 5], p[2:], None)])


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
def test_toy_check_through_the_analyzer(toy_group, backend):
    ds = InPCA(n_components=3).compute(toy_group, backend=backend)
    lam = ds["eigenvalues"].values
    assert lam[0] == pytest.approx(0.20619, abs=5e-6)
    np.testing.assert_allclose(lam[1:], [-0.007173, 0.000158], rtol=0, atol=5e-7)
    np.testing.assert_allclose(ds["explained_stress"].values[:2], [0.965223, 0.999234], atol=5e-7)
    assert ds.attrs["checkpoints"] == 4 and ds.attrs["space_like"] == 2
    assert ds["coords"].dims == ("run", "step", "component")
    assert ds["step"].values.tolist() == [0, 5, 10]
    assert np.isnan(ds["coords"].sel(run="a", step=5)).all()  # run a has no step 5


def test_coordinates_reproduce_the_distances_with_every_component(toy_group):
    ds = InPCA(n_components=4).compute(toy_group, backend="numpy")
    x = np.concatenate([ds["coords"].sel(run="a", step=[0, 10]).values,
                        ds["coords"].sel(run="b", step=[0, 5]).values])
    sign = np.sign(ds["eigenvalues"].values)
    d = (sign * (x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1)
    np.testing.assert_allclose(d, bhattacharyya_matrix(toy_models(), backend="numpy"), atol=1e-12)


def test_progress_and_speed(toy_group):
    ds = InPCA().compute(toy_group, backend="numpy")
    p = toy_models()
    np.testing.assert_allclose(ds["progress"].sel(run="a", step=[0, 10]).values,
                               inpca.progress(p[:2], np.arange(3)), atol=1e-12)
    assert ds["progress"].sel(run="a", step=0) == pytest.approx(0.0, abs=1e-9)  # uniform
    assert np.isnan(ds["progress"].sel(run="b")).all()  # no labels
    assert float(ds["speed"].sel(run="a", step=10)) == pytest.approx(
        inpca.step_lengths(p[:2])[0] / 10)
    assert float(ds["speed"].sel(run="b", step=5)) == pytest.approx(inpca.step_lengths(p[2:])[0] / 5)
    assert np.isnan(ds["speed"].sel(step=0)).all()


def test_refuses_runs_without_predictions_or_with_another_probe_set(toy_group):
    missing = Group("g", [toy_group.runs[0], PredictionRun("c", [0, 1])])
    with pytest.raises(AnalyzerInputError, match="run 'c' has no probe predictions"):
        InPCA().compute(missing, backend="numpy")
    other = PredictionRun("d", [0, 1], np.full((2, 5, 3), 1 / 3))
    with pytest.raises(AnalyzerInputError, match="differ in"):
        InPCA().compute(Group("g", [toy_group.runs[0], other]), backend="numpy")


def _memory_group(rng, n_runs=2, steps=(0, 1, 2, 4), n=12, c=4):
    from dynlab.testing import MemoryGroup, MemoryRun

    labels = rng.integers(0, c, n)
    runs = []
    for r in range(n_runs):
        logits = rng.standard_normal((n, c)) + np.cumsum(rng.standard_normal((len(steps), n, c)), 0)
        p = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        runs.append(MemoryRun(f"r{r}", list(steps), {"w": rng.standard_normal((len(steps), 3))},
                              predictions=p.astype(np.float32), labels=labels))
    return MemoryGroup("g", runs)


def test_keeps_the_analyzer_contract_on_memory_runs():
    from dynlab.testing import check_analyzer

    check_analyzer("inpca", view=_memory_group(np.random.default_rng(0)))


def test_registered_and_run_by_the_engine_on_a_store(tmp_path):
    """End to end: predictions written to a store, ``api.run`` over a group of two runs, the stored
    result equals the analyzer on the same data in memory; a changed prediction recomputes."""
    import dynlab
    from dynlab import api

    group = _memory_group(np.random.default_rng(1))
    store = dynlab.open_store(tmp_path / "s.zarr", mode="a")
    for mem in group.runs:
        run = store.create_run(mem.name, attrs={"group": "one"})
        run.set_probe_labels(mem.probe_labels)
        p = mem.read_predictions()
        for i, step in enumerate(mem.steps):
            run.append(int(step), {"w": mem.read("w")[i]}, predictions=p[i])
    report = api.run(store, ["inpca"])
    assert [o.status for o in report.outcomes] == ["computed"]
    stored = api.results(store, "inpca", "one")
    direct = InPCA().compute(group)
    np.testing.assert_allclose(stored["eigenvalues"], direct["eigenvalues"], rtol=1e-6)
    np.testing.assert_allclose(np.abs(stored["coords"]), np.abs(direct["coords"]), rtol=1e-5, atol=1e-7)
    assert [o.status for o in api.run(store, ["inpca"]).outcomes] == ["cached"]
    store.run("r0").write_predictions(2, np.full((12, 4), 0.25))
    assert [o.status for o in api.run(store, ["inpca"]).outcomes] == ["computed"]
