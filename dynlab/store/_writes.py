"""Row writes in flight: compress and write one tensor while the next is read and hashed.

Each zarr write is a blocking round trip through zarr's event loop (encode, write a temporary file,
rename). Submitting them to a few threads overlaps that with the reader, and many small writes of a
small checkpoint no longer wait on each other. Memory stays bounded: at most ``max_bytes`` of
arrays are in flight (always at least one), so peak memory is about the largest tensor plus that.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dynlab-write")
        return _POOL


def _write(array: Any, row: int, value: np.ndarray, done: Callable[[], None] | None) -> None:
    array[row] = value
    if done is not None:
        done()


class RowWrites:
    """Bounded queue of ``array[row] = value`` writes running on a shared thread pool."""

    def __init__(self, max_bytes: int = 64 * 2**20):
        self._max_bytes = max_bytes
        self._pending: deque[tuple[Future, int]] = deque()
        self._bytes = 0

    def submit(self, array: Any, row: int, value: np.ndarray,
               done: Callable[[], None] | None = None) -> None:
        """Queue ``array[row] = value``; ``done`` is called once it is written (readers use it to
        let go of the source's memory)."""
        nbytes = int(value.nbytes)
        while self._pending and self._bytes + nbytes > self._max_bytes:
            self._wait_one()
        self._pending.append((_pool().submit(_write, array, row, value, done), nbytes))
        self._bytes += nbytes

    def wait(self) -> None:
        """Block until every submitted write is on disk; re-raise the first failure."""
        while self._pending:
            self._wait_one()

    def abandon(self) -> None:
        """After an error: let the writes in flight finish (so none lands later), ignore failures."""
        while self._pending:
            future, _ = self._pending.popleft()
            future.exception()
        self._bytes = 0

    def _wait_one(self) -> None:
        future, nbytes = self._pending.popleft()
        self._bytes -= nbytes
        future.result()
