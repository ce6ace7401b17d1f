"""One writer per run: an advisory ``flock`` on the run's directory.

The lock is taken on the directory itself (Linux and macOS allow ``flock`` on a directory file
descriptor), so no lock file sits inside the zarr hierarchy, and the kernel releases it when the
writer dies, even by SIGKILL: a crashed ingest never leaves a stale lock behind.
Stores that are not local directories (fsspec URLs) have no lock; DESIGN.md asks callers there to
keep one writer per run themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

from dynlab.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class RunLock:
    """Exclusive, non-blocking lock on one run directory."""

    def __init__(self, directory: Path | None, run: str, store: str):
        self._directory = directory
        self._run = run
        self._store = store
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        if self._directory is None or fcntl is None:
            self._fd = -1  # no locking available for this store: record that we "hold" it
            return
        fd = os.open(self._directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{self._store}: run '{self._run}' is being written by another process; "
                "wait for it to finish (one writer per run)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None
