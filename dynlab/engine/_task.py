"""One task, start to finish: open the store, check the cache, compute, write the result.

A module-level function of picklable arguments, so the same code runs in a local thread and on a
dask.distributed worker, which opens the store by its path or URL.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import traceback
from dataclasses import dataclass

import numpy as np
import xxhash

from dynlab._version import __version__
from dynlab.analyzers import registry
from dynlab.analyzers._contract import Analyzer, AnalyzerInputError
from dynlab.engine._plan import Task
from dynlab.errors import DynlabError
from dynlab.store import Run, Store, open_store


@dataclass(frozen=True)
class Outcome:
    """What became of one task: ``computed``, ``cached`` (unchanged inputs) or ``failed``."""

    analyzer: str
    target: str
    status: str
    seconds: float = 0.0
    message: str = ""


@dataclass
class _Group:
    """A group-scope analyzer's view: its runs, in the order given."""

    name: str
    runs: list[Run]


def fingerprint(cls: type[Analyzer], runs: list[Run], store: Store, target: str) -> str:
    """xxh3 of everything the result depends on: declared inputs of every run, the results it
    requires, and (added by the caller) analyzer version and params."""
    h = xxhash.xxh3_64()
    for run in runs:
        h.update(run.name.encode())
        h.update(run.steps.tobytes())
        if "params" in cls.inputs:
            h.update(np.ascontiguousarray(run.hashes).tobytes())
        if "metrics" in cls.inputs:
            for name, values in sorted(run.metrics.items()):
                h.update(name.encode())
                h.update(values.tobytes())
        if "probe/predictions" in cls.inputs:
            h.update(np.ascontiguousarray(run.prediction_hashes).tobytes())
            labels = run.probe_labels
            h.update(b"no labels" if labels is None else np.ascontiguousarray(labels).tobytes())
        if "probe/activations" in cls.inputs:
            h.update(repr(sorted(run.probe_layers.items())).encode())
            h.update(np.ascontiguousarray(run.activation_hashes).tobytes())
        if "attrs" in cls.inputs or cls.scope == "group":
            h.update(repr(sorted(run.attrs.items())).encode())
    for dep in cls.requires:
        for member in ([target] if cls.scope == "run" else [r.name for r in runs]):
            info = store.result_info(dep, member) or {}
            # the dependency's own inputs, version and params: any change to it reaches us
            h.update(json.dumps([dep, info.get("fingerprint"), info.get("version"),
                                 info.get("params")], sort_keys=True, default=str).encode())
    return h.hexdigest()


def execute(location: str, task: Task) -> Outcome:
    """Run ``task`` against the store at ``location``; never raises (failures are outcomes)."""
    started = time.perf_counter()

    def outcome(status: str, message: str = "") -> Outcome:
        return Outcome(task.analyzer, task.target, status, time.perf_counter() - started, message)

    try:
        store = open_store(location, mode="a")
        cls = registry.get(task.analyzer)
        analyzer = cls.from_params(task.params)
        runs = [store.run(r) for r in task.runs]
        fp = fingerprint(cls, runs, store, task.target)
        info = store.result_info(cls.name, task.target)
        if (not task.force and info and info.get("complete") and info.get("fingerprint") == fp
                and str(info.get("version")) == str(cls.version)
                and info.get("params") == analyzer.params()):
            return outcome("cached")
        for run in runs:
            if len(run.steps) < cls.min_steps:
                raise AnalyzerInputError(
                    f"run '{run.name}' has {len(run.steps)} checkpoint(s); {cls.name} needs at "
                    f"least {cls.min_steps}")
        view = runs[0] if cls.scope == "run" else _Group(task.target, runs)
        dataset = analyzer.compute(view, backend=task.backend)
        store.write_result(cls.name, task.target, dataset, {
            "analyzer": cls.name, "version": str(cls.version), "params": analyzer.params(),
            "fingerprint": fp, "backend": task.backend, "runs": list(task.runs),
            "dynlab_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        })
        return outcome("computed")
    except DynlabError as exc:
        return outcome("failed", str(exc))
    except Exception as exc:  # a bug in an analyzer must not lose the other runs' results
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return outcome("failed", f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})")
