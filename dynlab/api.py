"""The Python facade: everything the CLI does is one call here."""

from __future__ import annotations

import os
from typing import Any

from dynlab.ingest import IngestReport, ingest
from dynlab.ingest._recorder import Recorder
from dynlab.store import Run, Store, open_store

__all__ = ["IngestReport", "Recorder", "Run", "Store", "ingest", "open_store", "run_info",
           "runs_table"]


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
    """Tensors (shape, dtype, source dtype), metrics, attrs and provenance of one run."""
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
    }


def _isnan(values):
    import numpy as np

    return np.isnan(values)
