"""The Python facade: everything the CLI does is one call here."""

from __future__ import annotations

import os
from typing import Any

from dynlab.errors import StoreError
from dynlab.ingestion import IngestReport, ProbeReport, ingest, probe
from dynlab.ingestion._recorder import Recorder
from dynlab.store import Run, Store, open_store

__all__ = ["IngestReport", "ProbeReport", "Recorder", "Run", "Store", "analyzers_table", "ingest",
           "open_store", "probe", "results", "run", "run_info", "runs_table"]


def runs_table(store: str | os.PathLike[str] | Store = "dynlab.zarr") -> list[dict[str, Any]]:
    """One row per run: name, checkpoints, first/last step, tensors, parameters, attrs."""
    st = store if isinstance(store, Store) else open_store(store)
    rows = []
    for name in st.runs:
        run = st.run(name)
        steps = run.steps
        rows.append({
            "run": name,
            "checkpoints": len(steps),
            "first_step": int(steps[0]) if len(steps) else None,
            "last_step": int(steps[-1]) if len(steps) else None,
            "tensors": len(run.tensors),
            "parameters": run.n_params,
            "attrs": run.attrs,
        })
    return rows


def run_info(store: str | os.PathLike[str] | Store, run: str) -> dict[str, Any]:
    """Tensors (shape, dtype, source dtype), metrics, attrs, provenance and probe data of one run."""
    st = store if isinstance(store, Store) else open_store(store)
    r = st.run(run)
    info = r.info
    steps = r.steps
    metrics = r.metrics
    return {
        "run": run,
        "checkpoints": len(steps),
        "steps": steps.tolist(),
        "tensors": [t.to_json() for t in r.tensors],
        "parameters": r.n_params,
        "metrics": {k: int((~_isnan(v)).sum()) for k, v in metrics.items()},
        "attrs": r.attrs,
        "source": info.get("source"),
        "framework": info.get("framework"),
        "nonfinite": info.get("nonfinite", {}),
        "probe": r.probe_summary,
    }


def _isnan(values):
    import numpy as np

    return np.isnan(values)


def run(store: str | os.PathLike[str] | Store, analyzers, **kwargs: Any):
    """Run analyzers over the store's runs (see :func:`dynlab.engine.run`)."""
    from dynlab import engine

    return engine.run(store, analyzers, **kwargs)


def results(store: str | os.PathLike[str] | Store, analyzer: str, run: str | None = None):
    """A stored result: of one run/group, or (``run=None``) of every target, concatenated along
    a ``run`` dim when there are several."""
    import xarray as xr

    st = store if isinstance(store, Store) else open_store(store)
    targets = st.results.get(analyzer, [])
    if run is not None:
        return st.result(analyzer, run)
    if not targets:
        raise StoreError(f"the store holds no result of '{analyzer}' (run: dynlab run {analyzer})")
    if len(targets) == 1:
        return st.result(analyzer, targets[0])
    datasets = [st.result(analyzer, t) for t in targets]
    return xr.concat(datasets, dim=xr.Variable("run", targets), join="outer",
                     combine_attrs="drop_conflicts")


def analyzers_table() -> list[dict[str, Any]]:
    """Every loadable analyzer: name, version, scope, description, inputs, parameters."""
    from dynlab.analyzers import registry

    return [{"name": name, "version": cls.version, "scope": cls.scope,
             "description": cls.description, "inputs": list(cls.inputs),
             "requires": list(cls.requires), "backends": list(cls.backends),
             "parameters": [vars(p) for p in cls.parameters()]}
            for name, cls in registry.available().items()]
