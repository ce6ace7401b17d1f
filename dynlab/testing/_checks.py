"""``check_analyzer``: the analyzer contract (DESIGN.md, "Analyzers") as executable checks.

Each check raises ``AssertionError("check_analyzer(<Class> '<name>'): [<rule>] <what is wrong>")``
on the first violation, so a plugin's test fails with the rule it broke.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from dynlab.analyzers import Analyzer, Output, ParameterError, registry
from dynlab.analyzers._contract import INPUTS, SCOPES
from dynlab.errors import DynlabError
from dynlab.testing._invalid import invalid_texts, invalid_values
from dynlab.testing._memory import MemoryGroup, MemoryRun
from dynlab.testing._synthetic import synthetic_group, synthetic_run

KEBAB = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
BACKENDS = ("numpy", "numba", "torch")
NO_SUCH_PARAM = "__no_such_param__"


def check_analyzer(analyzer: type[Analyzer] | str, *, view: Any = None) -> None:
    """Check that an analyzer class (or the one registered under a name) keeps the contract.

    Returns None when it does; raises AssertionError naming the first rule it breaks. ``view``
    replaces the synthetic run the checks compute on (a RunView for scope ``run``, a GroupView
    for scope ``group``), e.g. when the analyzer needs probe data or more checkpoints.
    """
    __tracebackhide__ = True
    cls = _resolve(analyzer) if isinstance(analyzer, str) else analyzer
    _Checks(cls, view).run()


def _resolve(name: str) -> Any:
    __tracebackhide__ = True
    ep = _entry_points().get(name)
    if ep is None:
        raise AssertionError(f"check_analyzer('{name}'): no analyzer is registered under that name "
                             f"in the entry-point group '{registry.GROUP}' (registered: "
                             f"{', '.join(registry.names()) or 'none'})")
    try:
        return ep.load()
    except Exception as exc:
        raise AssertionError(f"check_analyzer('{name}'): [entry point] '{name} = {ep.value}' "
                             f"failed to load: {type(exc).__name__}: {exc}") from exc


def _entry_points() -> dict[str, Any]:
    """The registry's view of the entry points (the first distribution to claim a name keeps it)."""
    return registry._entry_points()


class _Checks:
    def __init__(self, cls: Any, view: Any):
        self.cls = cls
        self.given_view = view
        self.label = f"check_analyzer({getattr(cls, '__name__', repr(cls))} " \
                     f"{getattr(cls, 'name', '?')!r})"

    def fail(self, rule: str, detail: str, cause: BaseException | None = None) -> NoReturn:
        __tracebackhide__ = True
        raise AssertionError(f"{self.label}: [{rule}] {detail}") from cause

    def run(self) -> None:
        __tracebackhide__ = True
        self.check_class()
        self.check_declaration()
        registered = self.check_registration()
        self.check_params()
        analyzer = self.check_construction()
        self.check_round_trip(analyzer)
        self.check_invalid_values()
        view, runs = self.view()
        ds = self.compute(analyzer, view, "the synthetic run" if self.given_view is None else "view")
        self.check_dataset(ds, runs, "")
        self.check_deterministic(ds, view)
        self.check_store_round_trip(analyzer, ds, view, runs)
        self.check_one_checkpoint(analyzer, view, runs, registered)

    # ------------------------------------------------------------------ the class

    def check_class(self) -> None:
        __tracebackhide__ = True
        cls = self.cls
        if not (isinstance(cls, type) and issubclass(cls, Analyzer)):
            self.fail("subclass", f"{cls!r} is not a subclass of dynlab.analyzers.Analyzer")
        params = vars(cls).get("__dataclass_params__")
        if params is None or not params.frozen:
            self.fail("frozen dataclass", f"decorate {cls.__name__} with @dataclass(frozen=True): "
                                          "its fields are its parameters")

    def check_declaration(self) -> None:
        __tracebackhide__ = True
        cls = self.cls
        if not (isinstance(cls.name, str) and KEBAB.match(cls.name)):
            self.fail("kebab-case name", f"name {cls.name!r} must be kebab-case "
                                         "(lowercase words joined by '-', e.g. 'layer-norms')")
        if not (isinstance(cls.version, str) and cls.version.strip()):
            self.fail("version", f"version must be a non-empty str, not {cls.version!r} "
                                 "(bump it whenever the numbers change)")
        desc = cls.description
        if not (isinstance(desc, str) and desc.strip() and len(desc.strip().splitlines()) == 1):
            self.fail("one-line description", f"description must be one non-empty line, not {desc!r}")
        if cls.scope not in SCOPES:
            self.fail("scope", f"scope must be one of {SCOPES}, not {cls.scope!r}")
        if not _names(cls.inputs) or not all(i in INPUTS for i in cls.inputs):
            self.fail("inputs", f"inputs {cls.inputs!r} must be a tuple of {INPUTS} "
                                "(other analyzers' results go in requires)")
        if not _names(cls.requires) or not all(
                isinstance(r, str) and KEBAB.match(r) and r != cls.name for r in cls.requires):
            self.fail("requires", f"requires {cls.requires!r} must be a tuple of other analyzers' names")
        outputs = cls.outputs
        if not isinstance(outputs, Mapping) or not outputs or not all(
                isinstance(k, str) and isinstance(v, Output) for k, v in outputs.items()):
            self.fail("outputs declared", "outputs must map each result variable to "
                                          "Output(dims, units, doc), at least one")
        for var, out in outputs.items():
            if not (isinstance(out.dims, tuple) and all(isinstance(d, str) for d in out.dims)
                    and len(set(out.dims)) == len(out.dims)):
                self.fail("outputs declared", f"dims of output '{var}' must be a tuple of distinct "
                                              f"names, not {out.dims!r}")
        if not _names(cls.backends) or "numpy" not in cls.backends or not set(
                cls.backends) <= set(BACKENDS):
            self.fail("backends", f"backends {cls.backends!r} must include 'numpy' (the reference) "
                                  f"and be among {BACKENDS}")
        if isinstance(cls.min_steps, bool) or not isinstance(cls.min_steps, int) or cls.min_steps < 1:
            self.fail("min_steps", f"min_steps must be an int >= 1, not {cls.min_steps!r}")

    def check_registration(self) -> bool:
        """The entry-point names under which this very class is registered must be its name."""
        __tracebackhide__ = True
        cls = self.cls
        names, taken_by = [], None
        for ep in _entry_points().values():
            mine = cls.__module__ == ep.module or cls.__module__.startswith(ep.module + ".")
            if not mine and ep.name != cls.name:
                continue  # never import other plugins
            try:
                obj = ep.load()
            except Exception:
                continue
            if obj is cls:
                names.append(ep.name)
            elif ep.name == cls.name and taken_by is None:
                taken_by = ep.value
        wrong = [n for n in names if n != cls.name]
        if wrong:
            self.fail("entry-point name", f"registered as {wrong[0]!r} in '{registry.GROUP}', but its "
                                          f"name is {cls.name!r}; the two must be equal")
        if not names and taken_by is not None:
            self.fail("entry-point name", f"the name {cls.name!r} is already registered to "
                                          f"{taken_by}, another class")
        return bool(names)

    # ------------------------------------------------------------------ parameters

    def check_params(self) -> None:
        __tracebackhide__ = True
        for f in dataclasses.fields(self.cls):
            constraint, doc = f.metadata.get("constraint"), f.metadata.get("doc")
            if constraint is None:
                self.fail("declared params", f"field '{f.name}' is not declared with "
                          "dynlab.analyzers.param(default, constraint, doc) (class attributes such "
                          "as name or version take no type annotation)")
            if not all(callable(getattr(constraint, m, None)) for m in ("check", "parse", "describe")):
                self.fail("declared params", f"parameter '{f.name}': {constraint!r} is not a "
                                             "constraint (Interval, Options, Boolean or Text)")
            if not (isinstance(doc, str) and doc.strip() and "\n" not in doc.strip()):
                self.fail("declared params", f"parameter '{f.name}' needs a one-line doc, not {doc!r}")
            if f.default is dataclasses.MISSING or not f.init:
                self.fail("declared params", f"parameter '{f.name}' needs a default")
            try:
                constraint.check(f.default)
            except (TypeError, ValueError):
                self.fail("valid defaults", f"the default of '{f.name}', {f.default!r}, violates its "
                                            f"own constraint ({constraint.describe()})")

    def check_construction(self) -> Analyzer:
        __tracebackhide__ = True
        try:
            return self.cls()
        except Exception as exc:
            self.fail("valid defaults", f"{self.cls.__name__}() raised {type(exc).__name__}: {exc}",
                      exc)

    def check_round_trip(self, analyzer: Analyzer) -> None:
        __tracebackhide__ = True
        cls, params = self.cls, analyzer.params()
        try:
            same = json.loads(analyzer.params_json()) == params
        except (TypeError, ValueError):
            same = False
        if not same:
            self.fail("params round trip", f"params() {params!r} must be JSON values that come "
                                           "back equal (they are the provenance and cache key)")
        as_text = {k: str(v) for k, v in params.items()}
        for how, values in (("Python values", params), ("CLI strings", as_text)):
            try:
                again = cls.from_params(values)
            except Exception as exc:
                self.fail("params round trip", f"from_params({values!r}) ({how}) raised "
                                               f"{type(exc).__name__}: {exc}", exc)
            if again != analyzer or again.params() != params:
                self.fail("params round trip", f"from_params({values!r}) ({how}) gave "
                                               f"{again.params()!r}, not {params!r}")
        try:
            cls.from_params({NO_SUCH_PARAM: "1"})
        except ParameterError:
            pass
        else:
            self.fail("params round trip", "from_params accepted an unknown parameter name")

    def check_invalid_values(self) -> None:
        __tracebackhide__ = True
        cls = self.cls
        for f in dataclasses.fields(cls):
            constraint = f.metadata["constraint"]
            cases = [(what, f"{f.name}={bad!r}", lambda key=f.name, bad=bad: cls(**{key: bad}))
                     for what, bad in invalid_values(constraint, f.default)]
            cases += [(what, f"-p {f.name}={text}",
                       lambda key=f.name, text=text: cls.from_params({key: text}))
                      for what, text in invalid_texts(constraint)]
            for what, shown, make in cases:
                try:
                    make()
                except ParameterError as exc:
                    if f"'{f.name}'" not in str(exc):
                        self.fail("invalid values rejected", f"the error for {shown} must name the "
                                                             f"parameter '{f.name}': {exc}")
                    continue
                except Exception as exc:
                    self.fail("invalid values rejected", f"{shown} ({what}) raised "
                              f"{type(exc).__name__}, not dynlab.analyzers.ParameterError: {exc}", exc)
                self.fail("invalid values rejected", f"{shown} ({what}) was accepted, but the "
                                                     f"constraint is {constraint.describe()}")

    # ------------------------------------------------------------------ computing

    def view(self) -> tuple[Any, list[Any]]:
        __tracebackhide__ = True
        cls, view = self.cls, self.given_view
        if view is None:
            view = synthetic_run() if cls.scope == "run" else synthetic_group()
            view = self.with_requirements(view, strict=True)
        if cls.scope == "run" and not callable(getattr(view, "read", None)):
            raise TypeError(f"{self.label}: scope 'run' needs a RunView (e.g. MemoryRun), "
                            f"got {type(view).__name__}")
        if cls.scope == "group" and not isinstance(getattr(view, "runs", None), Sequence):
            raise TypeError(f"{self.label}: scope 'group' needs a GroupView (e.g. MemoryGroup), "
                            f"got {type(view).__name__}")
        runs = [view] if cls.scope == "run" else list(view.runs)
        short = [r.name for r in runs if len(r.steps) < cls.min_steps]
        if short:
            raise ValueError(f"{self.label}: run '{short[0]}' has fewer than min_steps = "
                             f"{cls.min_steps} checkpoints; pass view= a run with enough")
        return view, runs

    def with_requirements(self, view: Any, *, strict: bool) -> Any:
        """``view`` with the results of the analyzers ``cls`` requires, computed on its runs.

        ``strict``: a requirement that fails is an error (else its result is just absent, as in
        the engine, where the dependent then fails on the missing result)."""
        __tracebackhide__ = True
        if not self.cls.requires:
            return view
        order: list[type[Analyzer]] = []

        def visit(name: str) -> None:
            try:
                dep = registry.get(name)
            except ParameterError as exc:
                self.fail("requires", f"the required analyzer '{name}' is not available: {exc}", exc)
            for sub in dep.requires:
                visit(sub)
            if dep not in order:
                order.append(dep)

        for name in self.cls.requires:
            visit(name)
        runs = [view] if self.cls.scope == "run" else list(view.runs)
        out = []
        for run in runs:
            current = MemoryRun.from_view(run)
            results = {}
            for dep in order:
                if dep.scope != "run":
                    raise ValueError(f"{self.label}: requires the group analyzer '{dep.name}'; "
                                     "pass view= with its results")
                try:
                    results[dep.name] = dep().compute(current, backend="numpy")
                except DynlabError as exc:
                    if strict:
                        self.fail("requires", f"the required analyzer '{dep.name}' failed on run "
                                              f"'{run.name}': {exc}; pass view=", exc)
                    continue
                current = MemoryRun.from_view(run, results=results)
            out.append(current)
        return out[0] if self.cls.scope == "run" else MemoryGroup(view.name, out)

    def compute(self, analyzer: Analyzer, view: Any, what: str) -> Any:
        __tracebackhide__ = True
        try:
            return analyzer.compute(view, backend="numpy")
        except Exception as exc:
            self.fail("compute", f"compute on {what} raised {type(exc).__name__}: {exc}", exc)

    def check_dataset(self, ds: Any, runs: list[Any], where: str) -> None:
        __tracebackhide__ = True
        import xarray as xr

        if not isinstance(ds, xr.Dataset):
            self.fail("compute returns a Dataset", f"compute{where} returned {type(ds).__name__}, "
                                                   "not an xarray.Dataset")
        for var, out in self.cls.outputs.items():
            if var not in ds.data_vars:
                self.fail("declared outputs", f"output '{var}' is missing from the result{where} "
                                              f"(its variables: {sorted(map(str, ds.data_vars))})")
            if tuple(ds[var].dims) != tuple(out.dims):
                self.fail("output dims", f"output '{var}'{where} has dims {tuple(ds[var].dims)}, "
                                         f"declared {tuple(out.dims)}")
        extra = sorted(str(v) for v in ds.data_vars if v not in self.cls.outputs)
        if extra:
            self.fail("declared outputs", f"the result{where} has undeclared variables {extra}; "
                                          "declare them in outputs")
        if "step" in ds.dims:
            known = np.unique(np.concatenate([np.asarray(r.steps) for r in runs]))
            step = ds.coords.get("step")
            if step is None or step.dtype.kind not in "iu" or not np.isin(step.values, known).all():
                self.fail("step coordinate", f"the dim 'step'{where} needs an integer coordinate "
                                             "holding steps of the run (view.steps), not row indices")

    def check_deterministic(self, ds: Any, view: Any) -> None:
        __tracebackhide__ = True
        import xarray as xr

        again = self.compute(self.cls(), view, "the same run, a second time")
        try:
            xr.testing.assert_identical(ds, again)
        except AssertionError as exc:
            detail = "\n".join(str(exc).splitlines()[:8])
            self.fail("deterministic", "two computes on the same run differ (seed every random "
                                       f"generator from a parameter):\n{detail}")

    def check_store_round_trip(self, analyzer: Analyzer, ds: Any, view: Any, runs: list[Any]
                               ) -> None:
        __tracebackhide__ = True
        import xarray as xr

        from dynlab._version import __version__
        from dynlab.store import open_store

        provenance = {"analyzer": self.cls.name, "version": str(self.cls.version),
                      "params": analyzer.params(), "fingerprint": "check_analyzer",
                      "backend": "numpy", "runs": [r.name for r in runs],
                      "dynlab_version": __version__, "created": "check_analyzer"}
        clash = sorted(set(ds.attrs) & {*provenance, "complete"})
        if clash:
            self.fail("store round trip", f"result attrs {clash} are reserved for provenance")
        with tempfile.TemporaryDirectory(prefix="dynlab-check-") as tmp:
            try:
                store = open_store(Path(tmp) / "check.zarr", mode="a")
                store.write_result(self.cls.name, view.name, ds, provenance)
                back = store.result(self.cls.name, view.name)
            except Exception as exc:
                self.fail("store round trip", f"writing and reading back the result failed "
                                              f"(attrs must be JSON values): {type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())}", exc)
        try:
            xr.testing.assert_equal(back, ds)
        except AssertionError as exc:
            detail = "\n".join(str(exc).splitlines()[:8])
            self.fail("store round trip", f"the result read back from a store differs:\n{detail}")
        pairs = [("the Dataset", ds.attrs, back.attrs),
                 *((f"'{v}'", ds[v].attrs, back[v].attrs) for v in ds.variables)]
        for what, wanted, stored in pairs:
            got = {k: stored.get(k) for k in wanted}
            if _canonical(wanted) != _canonical(got):
                self.fail("store round trip", f"the attrs of {what} change in the store: "
                                              f"{dict(wanted)!r} came back as {got!r} (use JSON values)")
        for var in ds.variables:
            if ds[var].dtype.kind not in "UO" and back[var].dtype != ds[var].dtype:
                self.fail("store round trip", f"'{var}' comes back as {back[var].dtype}, "
                                              f"not {ds[var].dtype}")

    def check_one_checkpoint(self, analyzer: Analyzer, view: Any, runs: list[Any], registered: bool
                             ) -> None:
        """A run with one checkpoint gives a result or a clear (DynlabError) error, never a crash."""
        __tracebackhide__ = True
        cls = self.cls
        if cls.min_steps > 1:
            if registered:
                self.check_engine_refuses(runs)
            return
        first = [MemoryRun.from_view(r, np.asarray(r.steps)[:1]) for r in runs]
        one = first[0] if cls.scope == "run" else MemoryGroup(view.name, first)
        one = self.with_requirements(one, strict=False)
        try:
            ds = analyzer.compute(one, backend="numpy")
        except DynlabError:
            return
        except Exception as exc:
            self.fail("one checkpoint", f"min_steps is {cls.min_steps}, so compute must handle a "
                      "run with one checkpoint: return a result or raise "
                      f"dynlab.analyzers.AnalyzerInputError; it raised {type(exc).__name__}: {exc}",
                      exc)
        self.check_dataset(ds, first, " on a one-checkpoint run")

    def check_engine_refuses(self, runs: list[Any]) -> None:
        """min_steps > 1: the engine must fail the task on a one-checkpoint run, naming the run."""
        __tracebackhide__ = True
        from dynlab import engine
        from dynlab.store import open_store

        with tempfile.TemporaryDirectory(prefix="dynlab-check-") as tmp:
            store = open_store(Path(tmp) / "check.zarr", mode="a")
            for run in runs:
                step = int(np.asarray(run.steps)[0])
                new = store.create_run(run.name, run.attrs)
                new.append(step, {t.name: run.read(t.name, [step])[0] for t in run.tensors},
                           {k: float(v[0]) for k, v in run.metrics.items()})
            report = engine.run(store, [self.cls.name], runs=[r.name for r in runs],
                                backend="numpy")
        mine = [o for o in report.outcomes if o.analyzer == self.cls.name]
        if not mine or any(o.status != "failed" for o in mine):
            self.fail("one checkpoint", f"min_steps is {self.cls.min_steps}, yet the engine did not "
                                        f"refuse a run with one checkpoint: {mine}")
        if not any(r.name in o.message for o in mine for r in runs):
            self.fail("one checkpoint", f"the engine's error must name the run: {mine[0].message!r}")


def _names(value: Any) -> bool:
    """A tuple (or other sequence, not a str) of strings, as class declarations hold."""
    return isinstance(value, Sequence) and not isinstance(value, str) and all(
        isinstance(v, str) for v in value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=lambda v: np.asarray(v).tolist())
