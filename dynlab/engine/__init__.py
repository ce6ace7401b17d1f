"""The engine: plan analyzers over runs, skip unchanged work, execute locally or on Dask."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynlab.engine._execute import OnDone, run_dask, run_local
from dynlab.engine._plan import Plan, Task, make_plan
from dynlab.engine._task import Outcome, execute
from dynlab.errors import StoreError
from dynlab.store import Store, open_store

__all__ = ["Outcome", "Plan", "RunReport", "Task", "execute", "run"]


@dataclass
class RunReport:
    """Every task's outcome; ``failed`` lists the ones that did not produce a result."""

    outcomes: list[Outcome]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run(store: str | os.PathLike[str] | Store, analyzers: Sequence[str] | str, *,
        runs: Sequence[str] | None = None, params: Mapping[str, Any] | None = None,
        backend: str = "auto", dask: str | None = None, force: bool = False,
        on_done: OnDone | None = None) -> RunReport:
    """Run ``analyzers`` (and what they require) over ``runs`` (default: all) of ``store``.

    Results go to ``results/<analyzer>/<target>`` with their provenance; a task whose analyzer
    version, params and input fingerprint are unchanged is skipped unless ``force``. A failing task
    does not stop the others: its outcome carries the error, naming the run and the analyzer.
    ``dask``: None (local threads), ``"local"`` (a LocalCluster) or a scheduler address.
    """
    if not isinstance(store, Store):
        open_store(store, mode="r")  # a mistyped path is an error, not a new empty store
    st = store if isinstance(store, Store) else open_store(store, mode="a")
    location = str(st.local_path) if st.local_path is not None else st.location
    names = [analyzers] if isinstance(analyzers, str) else list(analyzers)
    selected = list(runs) if runs else st.runs
    if not selected:
        raise StoreError(f"{st.location}: the store has no runs to analyse (dynlab ingest first)")
    attrs = {r: st.run(r).attrs for r in selected}  # also checks that every named run exists
    plan = make_plan(names, selected, attrs, params, backend, force)
    callback = on_done or (lambda outcome: None)
    if dask:
        return RunReport(run_dask(location, plan, callback, dask))
    return RunReport(run_local(location, plan, callback))
