"""Executing a plan: level by level (dependencies first); the tasks of a level run in parallel,
on local threads or on a dask.distributed cluster. Only the engine starts parallel work."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dynlab.engine._plan import Plan, Task
from dynlab.engine._task import Outcome, execute
from dynlab.errors import DynlabError, require

CONNECT_TIMEOUT = "10s"

OnDone = Callable[[Outcome], None]


def blocked(task: Task, failed: set[tuple[str, str]], requires: dict[str, tuple[str, ...]]
            ) -> Outcome | None:
    """A failed outcome for ``task`` if an analyzer it requires failed on one of its runs (or
    its target): it must not run on a stale or missing result."""
    for dep in requires.get(task.analyzer, ()):
        for target in (task.target, *task.runs):
            if (dep, target) in failed:
                return Outcome(task.analyzer, task.target, "failed",
                               message=f"skipped: {dep} failed on '{target}'")
    return None


def run_local(location: str, plan: Plan, on_done: OnDone, workers: int | None = None
              ) -> list[Outcome]:
    workers = workers or min(4, os.cpu_count() or 1)
    outcomes: list[Outcome] = []
    failed: set[tuple[str, str]] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dynlab-task") as pool:
        for level in plan.levels:
            ready = [t for t in level if not _skip(t, failed, plan, outcomes, on_done)]
            for result in pool.map(lambda task: execute(location, task), ready):
                _record(result, failed, outcomes, on_done)
    return outcomes


def _skip(task: Task, failed: set, plan: Plan, outcomes: list, on_done: OnDone) -> bool:
    outcome = blocked(task, failed, plan.requires)
    if outcome is not None:
        _record(outcome, failed, outcomes, on_done)
    return outcome is not None


def _record(result: Outcome, failed: set, outcomes: list, on_done: OnDone) -> None:
    if result.status == "failed":
        failed.add((result.analyzer, result.target))
    on_done(result)
    outcomes.append(result)


def run_dask(location: str, plan: Plan, on_done: OnDone, address: str) -> list[Outcome]:
    """``address`` = ``local`` (a LocalCluster of worker processes) or a scheduler address."""
    distributed = require("distributed", "dask")
    cluster = None
    if address == "local":
        cluster = distributed.LocalCluster(n_workers=min(2, os.cpu_count() or 1),
                                           threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    else:
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise DynlabError(f"cannot reach the dask scheduler at {address} ({exc})") from None
    outcomes: list[Outcome] = []
    failed: set[tuple[str, str]] = set()
    try:
        for level in plan.levels:
            ready = [t for t in level if not _skip(t, failed, plan, outcomes, on_done)]
            futures = [client.submit(execute, location, task, pure=False) for task in ready]
            for future in distributed.as_completed(futures):
                _record(future.result(), failed, outcomes, on_done)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes
