"""Keep ``dynlab ingest``'s resident memory near what it uses (glibc only).

glibc raises its mmap threshold dynamically (up to 32 MiB) once large blocks are freed, after
which the multi-MiB chunk buffers zarr encodes are served from the heap and stay resident after
use. A fixed 128 KiB threshold (glibc's initial value) keeps each such buffer a separate mapping
that ``free`` returns to the system. Measured on a 1 GB torch ingest: peak RSS 433–440 MB → 344 MB,
same throughput (docs/benchmarks.md).

Only ``dynlab ingest`` sets it (library users keep their own allocator settings). Not the
analyzers: their reads decode every chunk into a fresh buffer, which at a fixed threshold is a new
mapping whose pages are faulted in and zeroed each time; that made ``dynlab run fisher-velocity``
2.1 × slower on the benchmark store (9.2–10.1 s against 4.3–4.6 s), and at glibc's dynamic
threshold their memory levels off anyway (≈ 430–450 MiB over repeated passes of that run).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

M_MMAP_THRESHOLD = -3
THRESHOLD = 128 * 1024


def fix_mmap_threshold() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, THRESHOLD)
