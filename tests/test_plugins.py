"""Plugins: the example plugin pip-installed and found through its entry point by the real CLI, a
broken plugin kept out of the way, and the conformance kit (``dynlab.testing``) catching what it
should — on deliberately broken analyzers, and on our own."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import mlp_state

import dynlab
from dynlab import api
from dynlab.analyzers import (
    Analyzer,
    AnalyzerInputError,
    Boolean,
    Interval,
    Options,
    Output,
    ParameterError,
    Text,
    param,
    registry,
)
from dynlab.errors import StoreError
from dynlab.testing import MemoryGroup, MemoryRun, check_analyzer, synthetic_group, synthetic_run

REPO = Path(__file__).parents[1]
PLUGIN = REPO / "examples" / "plugin"


def _python(args: list[str], pythonpath: list[Path], cwd: Path, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DYNLAB_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in examples/
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, stdin=subprocess.DEVNULL, timeout=timeout)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- the example plugin


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """examples/plugin pip-installed, offline, into a fresh directory to put on PYTHONPATH.

    From a copy: an in-tree setuptools build leaves build/ and *.egg-info behind.
    """
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "tests"))
    site = root / "site"
    done = _python(["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--quiet", "--target", str(site), str(source)],
                   [], root, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "dynlab_layer_norms").is_dir()
    return site


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A store with one run written by dynlab.Recorder."""
    store = tmp_path_factory.mktemp("recorded") / "s.zarr"
    rng = np.random.default_rng(0)
    with dynlab.Recorder(store, "mlp", attrs={"width": 16}) as rec:
        for step in (0, 10, 20, 40):
            rec.log(step, mlp_state(rng), train_loss=1 / (step + 1), val_loss=2 / (step + 1))
    return store


def test_cli_finds_runs_and_shows_the_installed_plugin(plugin_site, recorded, tmp_path):
    listed = _python(["-m", "dynlab", "analyzers"], [plugin_site], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "layer-norms v1 (run): Norm of every weight tensor" in listed.stdout
    assert "-p layer-norms.ord=…  {fro, l1, max}" in listed.stdout
    assert "layer-norms" not in listed.stderr

    first = _python(["-m", "dynlab", "run", "layer-norms", "--store", str(recorded)],
                    [plugin_site], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "layer-norms mlp: computed" in first.stdout
    again = _python(["-m", "dynlab", "run", "layer-norms", "--store", str(recorded)],
                    [plugin_site], tmp_path)
    assert "layer-norms mlp: cached" in again.stdout, again.stdout + again.stderr

    stored = api.results(recorded, "layer-norms")
    run = dynlab.open_store(recorded).run("mlp")
    weights = [t.name for t in run.tensors if t.name.endswith("weight")]
    assert list(stored["layer"].values) == weights
    assert stored.attrs["analyzer"] == "layer-norms" and stored.attrs["version"] == "1"
    for name in weights:
        expected = [np.linalg.norm(w.astype(np.float64), "fro") for w in run.read(name)]
        np.testing.assert_allclose(stored["norm"].sel(layer=name), expected, rtol=1e-12)

    shown = _python(["-m", "dynlab", "results", "layer-norms", "--store", str(recorded),
                     "--format", "json"], [plugin_site], tmp_path)
    assert shown.returncode == 0, shown.stderr
    # the same thing through JSON: tuples become lists
    assert json.loads(shown.stdout) == json.loads(json.dumps(stored.to_dict(data="list"), default=str))


def test_the_plugins_own_tests_pass_against_the_installed_plugin(plugin_site, tmp_path):
    done = _python(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
                   [plugin_site], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """A fake installed distribution whose entry point names a module that does not exist."""
    site = tmp_path_factory.mktemp("broken")
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text('[dynlab.analyzers]\nbroken = no_such_module:X\n')
    return site


def test_a_broken_plugin_breaks_nothing_else(plugin_site, broken_site, recorded, tmp_path):
    listed = _python(["-m", "dynlab", "analyzers"], [plugin_site, broken_site], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "layer-norms v1" in listed.stdout and "weight-change v1" in listed.stdout
    assert "broken" not in listed.stdout
    (warning,) = [line for line in _lines(listed.stderr) if "broken" in line]
    assert warning.startswith("dynlab: warning: analyzer plugin 'broken' (no_such_module:X) failed")

    failed = _python(["-m", "dynlab", "run", "broken", "--store", str(recorded)],
                     [plugin_site, broken_site], tmp_path)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    (error,) = [line for line in _lines(failed.stderr) if line.startswith("dynlab: error:")]
    assert "'broken'" in error and "failed to load" in error
    assert [line for line in _lines(failed.stderr) if "dynlab: " not in line] == []


# ---------------------------------------------------------------------------- the kit catches


@dataclass(frozen=True)
class Summary(Analyzer):
    """A conformant analyzer with every kind of parameter: the base of the broken ones below."""

    name = "summary"
    version = "1"
    description = "A robust summary of every tensor at every step"
    outputs = {"value": Output(("step", "layer"), "1", "summary of the tensor's entries")}
    min_steps = 1

    scale: float = param(1.0, Interval(float, 0, None, closed="neither"), "factor applied")
    decimals: int = param(12, Interval(int, 0, 15), "decimals to round to")
    reduce: str = param("mean", Options("mean", "median"), "how to summarise")
    absolute: bool = param(False, Boolean(), "summarise |w| instead of w")
    layers: str = param("", Text(), "comma-separated tensor names ('' = all)")

    def compute(self, view, *, backend="numpy"):
        names = [n for n in self.layers.split(",") if n] or [t.name for t in view.tensors]
        reduce = np.mean if self.reduce == "mean" else np.median
        values = np.stack([reduce(self.flat(view.read(n)), axis=1) for n in names], axis=1)
        return xr.Dataset({"value": (("step", "layer"), np.round(self.scale * values, self.decimals))},
                          coords={"step": view.steps, "layer": names})

    def flat(self, array):
        flat = array.reshape(len(array), -1).astype(np.float64)
        return np.abs(flat) if self.absolute else flat


@dataclass(frozen=True)
class WrongDims(Summary):
    def compute(self, view, *, backend="numpy"):
        return super().compute(view).transpose("layer", "step")


@dataclass(frozen=True)
class Random(Summary):
    def compute(self, view, *, backend="numpy"):
        ds = super().compute(view)
        return ds + np.random.default_rng().normal(size=ds["value"].shape)  # unseeded


@dataclass(frozen=True)
class BadDefault(Summary):
    scale: float = param(-1.0, Interval(float, 0, None, closed="neither"), "factor applied")


@dataclass(frozen=True)
class NotKebab(Summary):
    name = "Summary_Stats"


class Undecorated(Summary):
    extra: int = param(1, Interval(int, 0, 3), "never becomes a field without @dataclass")


@dataclass(frozen=True)
class AnnotatedName(Summary):
    name: str = "annotated-name"


@dataclass(frozen=True)
class Unvalidated(Summary):
    def __post_init__(self):  # skips validation: any value goes
        pass


@dataclass(frozen=True)
class Undeclared(Summary):
    def compute(self, view, *, backend="numpy"):
        ds = super().compute(view)
        return ds.assign(spread=ds["value"].std("layer"))


@dataclass(frozen=True)
class RowIndices(Summary):
    def compute(self, view, *, backend="numpy"):
        return super().compute(view).assign_coords(step=np.arange(len(view.steps)))


@dataclass(frozen=True)
class CrashesOnOne(Summary):
    def compute(self, view, *, backend="numpy"):
        ds = super().compute(view)
        if len(view.steps) < 2:
            raise IndexError("index 1 is out of bounds")  # what np.diff(...)[1] gives
        return ds


@dataclass(frozen=True)
class OddAttrs(Summary):
    def compute(self, view, *, backend="numpy"):
        return super().compute(view).assign_attrs(layers_seen={"a", "b"})


@dataclass(frozen=True)
class ReservedAttrs(Summary):
    def compute(self, view, *, backend="numpy"):
        return super().compute(view).assign_attrs(version="mine")


@dataclass(frozen=True)
class NoNumpy(Summary):
    backends = ("torch",)


@dataclass(frozen=True)
class TwoLines(Summary):
    description = "A summary\nover two lines"


@dataclass(frozen=True)
class ReturnsArray(Summary):
    def compute(self, view, *, backend="numpy"):
        return super().compute(view)["value"]


def test_a_conformant_analyzer_passes():
    assert check_analyzer(Summary) is None


@pytest.mark.parametrize(("cls", "rule", "detail"), [
    (WrongDims, "output dims", "has dims ('layer', 'step'), declared ('step', 'layer')"),
    (Random, "deterministic", "two computes on the same run differ"),
    (BadDefault, "valid defaults", "the default of 'scale', -1.0"),
    (NotKebab, "kebab-case name", "'Summary_Stats'"),
    (Undecorated, "frozen dataclass", "@dataclass(frozen=True)"),
    (AnnotatedName, "declared params", "field 'name'"),
    (Unvalidated, "invalid values rejected", "was accepted"),
    (Undeclared, "declared outputs", "undeclared variables ['spread']"),
    (RowIndices, "step coordinate", "not row indices"),
    (CrashesOnOne, "one checkpoint", "IndexError"),
    (OddAttrs, "store round trip", ""),
    (ReservedAttrs, "store round trip", "['version'] are reserved"),
    (NoNumpy, "backends", "must include 'numpy'"),
    (TwoLines, "one-line description", ""),
    (ReturnsArray, "compute returns a Dataset", "DataArray"),
])
def test_check_analyzer_names_the_broken_rule(cls, rule, detail):
    with pytest.raises(AssertionError, match=r"\[" + rule + r"\]") as caught:
        check_analyzer(cls)
    assert detail in str(caught.value)
    assert str(caught.value).startswith(f"check_analyzer({cls.__name__} ")


def test_the_invalid_values_tried_cover_every_constraint_kind():
    """Which generated value trips a half-validating analyzer: its own message says."""

    @dataclass(frozen=True)
    class IntOnlyChecksRange(Summary):
        def __post_init__(self):
            if not 0 <= self.decimals <= 15:  # forgets the type, and the other parameters
                raise ParameterError(f"{self.name}: parameter 'decimals' out of range")

    with pytest.raises(AssertionError, match=r"\[invalid values rejected\] scale='1' \(wrong type"):
        check_analyzer(IntOnlyChecksRange)


def test_a_fractional_string_for_an_int_parameter_is_refused():
    with pytest.raises(ParameterError, match="'decimals'"):
        Summary.from_params({"decimals": "2.5"})

    @dataclass(frozen=True)
    class Truncates(Summary):
        @classmethod
        def from_params(cls, values=None):  # what Interval.parse once did: int(float("2.5")) == 2
            values = dict(values or {})
            with contextlib.suppress(KeyError, TypeError, ValueError):
                values["decimals"] = int(float(values["decimals"]))
            return super().from_params(values)

    with pytest.raises(AssertionError, match=r"-p decimals=2.5 \(not an integer\) was accepted"):
        check_analyzer(Truncates)


def test_check_analyzer_uses_the_view_it_is_given():
    one_tensor = MemoryRun("tiny", [3, 7], {"w": np.ones((2, 2, 2))}, {"train_loss": [1.0, 0.5]})
    check_analyzer(Summary, view=one_tensor)

    @dataclass(frozen=True)
    class NeedsMetric(Summary):
        def compute(self, view, *, backend="numpy"):
            if "test_acc" not in view.metrics:
                raise AnalyzerInputError(f"run '{view.name}' has no metric test_acc")
            return super().compute(view)

    with pytest.raises(AssertionError, match=r"\[compute\] .* no metric test_acc"):
        check_analyzer(NeedsMetric)
    check_analyzer(NeedsMetric, view=MemoryRun("acc", [0, 1], {"w": np.ones((2, 3))},
                                               {"test_acc": [0.1, 0.9]}))


@dataclass(frozen=True)
class ReplicaSpread(Analyzer):
    name = "replica-spread"
    version = "1"
    description = "Spread of each tensor across the runs of a group, per step"
    scope = "group"
    outputs = {"spread": Output(("step", "layer"), "1", "std over runs of the tensor's mean")}

    def compute(self, view, *, backend="numpy"):
        runs = view.runs
        names = [t.name for t in runs[0].tensors]
        means = np.stack([[r.read(n).reshape(len(r.steps), -1).mean(1) for n in names]
                          for r in runs])  # (run, layer, step)
        return xr.Dataset({"spread": (("step", "layer"), means.std(axis=0).T)},
                          coords={"step": runs[0].steps, "layer": names})


def test_group_analyzers_are_checked_on_a_group():
    check_analyzer(ReplicaSpread)
    group = synthetic_group()
    assert isinstance(group, MemoryGroup) and [r.attrs["group"] for r in group.runs] == [group.name] * 2

    @dataclass(frozen=True)
    class SpreadWithoutStep(ReplicaSpread):
        def compute(self, view, *, backend="numpy"):
            return super().compute(view).drop_vars("step")

    with pytest.raises(AssertionError, match=r"\[step coordinate\]"):
        check_analyzer(SpreadWithoutStep)
    with pytest.raises(TypeError, match="needs a GroupView"):
        check_analyzer(ReplicaSpread, view=synthetic_run())


# ---------------------------------------------------------------------------- registered analyzers

KIT_PLUGIN = '''
from dataclasses import dataclass

import xarray as xr

from dynlab.analyzers import Analyzer, Output


@dataclass(frozen=True)
class Steady(Analyzer):
    name = "steady"
    version = "1"
    description = "Number of checkpoints, which needs three"
    outputs = {"count": Output((), "1", "checkpoints")}
    min_steps = 3

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"count": ((), len(view.steps))})


@dataclass(frozen=True)
class Misnamed(Steady):
    name = "misnamed"


@dataclass(frozen=True)
class Twice(Analyzer):
    name = "twice"
    version = "1"
    description = "Twice the result of steady (reads another analyzer's result)"
    inputs = ()
    requires = ("steady",)
    outputs = {"twice": Output((), "1", "2 × count")}

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"twice": 2 * view.result("steady")["count"]})


@dataclass(frozen=True)
class Pairs(Analyzer):
    name = "pairs"
    version = "1"
    description = "Number of runs in a group, which needs two checkpoints per run"
    scope = "group"
    outputs = {"runs": Output((), "1", "runs in the group")}

    def compute(self, view, *, backend="numpy"):
        return xr.Dataset({"runs": ((), len(view.runs))})
'''


@pytest.fixture
def kit_plugin(tmp_path, monkeypatch):
    """Analyzers registered through a real (fake) distribution on sys.path, in this process."""
    (tmp_path / "kit_plugin.py").write_text(textwrap.dedent(KIT_PLUGIN))
    info = tmp_path / "kit_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[dynlab.analyzers]\nsteady = kit_plugin:Steady\nmis-named = kit_plugin:Misnamed\n"
        "pairs = kit_plugin:Pairs\ntwice = kit_plugin:Twice\nbroken = no_such_module:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield
    monkeypatch.undo()
    sys.modules.pop("kit_plugin", None)
    registry.refresh()


def test_registered_analyzers_are_checked_through_the_engine(kit_plugin):
    # min_steps = 3: the kit asks the engine to run it on a one-checkpoint run, and it must refuse
    check_analyzer("steady")
    check_analyzer("pairs")
    check_analyzer("twice")  # the kit computes what it requires first
    with pytest.raises(AssertionError, match=r"\[entry-point name\] registered as 'mis-named'"):
        check_analyzer("mis-named")
    import kit_plugin

    with pytest.raises(AssertionError, match=r"\[entry-point name\]"):
        check_analyzer(kit_plugin.Misnamed)

    @dataclass(frozen=True)
    class Impostor(Summary):
        name = "steady"

    with pytest.raises(AssertionError, match=r"'steady' is already registered to kit_plugin:Steady"):
        check_analyzer(Impostor)
    with pytest.raises(AssertionError, match="no analyzer is registered under that name"):
        check_analyzer("no-such-analyzer")
    with pytest.raises(AssertionError, match=r"\[entry point\] 'broken = no_such_module:X' failed"):
        check_analyzer("broken")
    with pytest.raises(AssertionError, match=r"\[subclass\]"):
        check_analyzer(kit_plugin.Misnamed.compute)


def test_our_weight_change_conforms():
    check_analyzer("weight-change")


# ---------------------------------------------------------------------------- MemoryRun is a Run


def test_memory_run_behaves_like_the_stored_run(tmp_path):
    memory = synthetic_run(attrs={"tags": ("a", "b")})
    with dynlab.Recorder(tmp_path / "s.zarr", memory.name, attrs=memory.attrs) as rec:
        for step in memory.steps:
            rec.log(int(step), memory.checkpoint(int(step)),
                    **{k: v[list(memory.steps).index(step)] for k, v in memory.metrics.items()})
    stored = dynlab.open_store(tmp_path / "s.zarr").run(memory.name)
    copy = MemoryRun.from_view(stored)
    for view in (memory, copy):
        assert view.name == stored.name and len(view) == len(stored)
        np.testing.assert_array_equal(view.steps, stored.steps)
        assert view.steps.dtype == stored.steps.dtype == np.int64
        assert view.tensors == stored.tensors and view.n_params == stored.n_params
        assert view.attrs == stored.attrs == {**memory.attrs, "tags": ["a", "b"]}
        assert list(view.metrics) == list(stored.metrics)
        for name in stored.metrics:
            np.testing.assert_array_equal(view.metrics[name], stored.metrics[name])
        for t in stored.tensors:
            for steps in (None, [16, 0, 2], 4, np.array([1, 8])):
                got, want = view.read(t.name, steps), stored.read(t.name, steps)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
        for name, value in stored.checkpoint(8).items():
            np.testing.assert_array_equal(view.checkpoint(8)[name], value)
        for call, message in ((lambda v: v.read("nope"), "has no tensor 'nope'"),
                              (lambda v: v.read("layers.0.weight", [3]), "no checkpoint at step 3"),
                              (lambda v: v.checkpoint(5), "no checkpoint at step 5"),
                              (lambda v: v.result("summary"), "no result of 'summary'")):
            with pytest.raises(StoreError, match=message):
                call(stored)
            with pytest.raises(StoreError, match=message):
                call(view)


def test_memory_run_is_a_snapshot():
    weights = np.zeros((2, 3))
    run = MemoryRun("r", [0, 1], {"w": weights}, results={"summary": xr.Dataset({"x": 1})})
    weights[:] = 1
    run.read("w")[:] = 2
    run.result("summary")["x"] = 3
    assert run.read("w").sum() == 0 and int(run.result("summary")["x"]) == 1
    for bad, message in (({"w": np.zeros((3, 2))}, r"shape \(T, ...\) with T = 2"),
                         ({"a/b": np.zeros((2, 1))}, "invalid tensor name"),
                         ({"w": np.array([["x"], ["y"]])}, "unsupported dtype")):
        with pytest.raises(ValueError, match=message):
            MemoryRun("r", [0, 1], bad)
    with pytest.raises(ValueError, match="strictly increasing"):
        MemoryRun("r", [1, 0], {"w": np.zeros((2, 1))})
    with pytest.raises(StoreError, match="invalid run name"):
        MemoryRun("a/b", [0], {"w": np.zeros((1, 1))})
    with pytest.raises(StoreError, match="no checkpoint at step 5"):
        MemoryRun.from_view(run, [0, 5])
