"""Executing a plan: level by level (dependencies first); the tasks of a level run in parallel,
on local threads or on a dask.distributed cluster. Only the engine starts parallel work."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dynlab.engine._plan import Plan
from dynlab.engine._task import Outcome, execute
from dynlab.errors import require

OnDone = Callable[[Outcome], None]


def run_local(location: str, plan: Plan, on_done: OnDone, workers: int | None = None
              ) -> list[Outcome]:
    workers = workers or min(4, os.cpu_count() or 1)
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dynlab-task") as pool:
        for level in plan.levels:
            for result in pool.map(lambda task: execute(location, task), level):
                on_done(result)
                outcomes.append(result)
    return outcomes


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
        client = distributed.Client(address)
    outcomes: list[Outcome] = []
    try:
        for level in plan.levels:
            futures = [client.submit(execute, location, task, pure=False) for task in level]
            for future in distributed.as_completed(futures):
                result = future.result()
                on_done(result)
                outcomes.append(result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes
