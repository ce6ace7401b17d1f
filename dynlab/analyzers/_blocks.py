"""Reading one tensor of a run in blocks: memory bounded by a few blocks, every stored chunk read once.

A block is a run of consecutive steps of the whole tensor when one step fits in ``max_bytes``;
otherwise one step and a slice of the tensor's rows (first axis), aligned to the store's chunks so
that no chunk is read twice (so at least one chunk of rows, even where that exceeds ``max_bytes``).
Analyzers that reduce per step (moments, histograms) accumulate over blocks; no more than a few
blocks are ever in memory (below).

The next block is read while the caller works on the current one (one reader thread): reading the
store and the kernels (numba, ``nogil``) overlap. The generator holds at most two blocks (the one
handed out and the one being read); a caller whose loop variable still holds the previous block
while it asks for the next makes that three, so memory is bounded by 3 × ``max_bytes`` plus the
kernels' temporaries. A read that fails raises in the caller at that block; closing the generator
early (``break``) waits for the one read in flight and leaves no thread behind. This is I/O
prefetch inside one task, not parallel work in the engine's sense.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Default block size. Large enough that per-read overheads vanish, small enough that a few
#: float64 temporaries of a block stay well below the ingest's memory budget.
BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Block:
    """Values of one tensor: ``rows`` (a slice of the run's steps) × a part of the tensor,
    flattened to ``values`` of shape (rows, n)."""

    rows: slice
    values: np.ndarray


def _chunk_rows(view: Any, name: str) -> int:
    """Rows per stored chunk when the view knows it (the store does), else 1 (in memory)."""
    rows = getattr(view, "chunk_rows", None)
    return max(1, int(rows(name))) if callable(rows) else 1


def blocks(view: Any, name: str, *, max_bytes: int | None = None) -> Iterator[Block]:
    """The values of tensor ``name`` at every step of ``view``, block by block (module docstring).

    Every value of the tensor at every step is in exactly one block; blocks come in step order.
    ``max_bytes`` defaults to :data:`BLOCK_BYTES` (read at call time).
    """
    reads = list(_reads(view, name, BLOCK_BYTES if max_bytes is None else max_bytes))
    if not reads:  # a view without steps
        return
    if len(reads) == 1:
        yield reads[0]()
        return
    with ThreadPoolExecutor(1, thread_name_prefix="dynlab-read") as pool:
        pending = pool.submit(reads[0])
        for i in range(len(reads)):
            block = pending.result()
            if i + 1 < len(reads):
                pending = pool.submit(reads[i + 1])
            yield block
            del block


def _reads(view: Any, name: str, max_bytes: int) -> Iterator[Callable[[], Block]]:
    """One callable per block, in order; each reads its block when called."""
    info = next(t for t in view.tensors if t.name == name)
    steps = np.asarray(view.steps)
    n_steps, shape = len(steps), tuple(info.shape)
    step_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(info.dtype).itemsize)

    def read(rows: slice, part: slice | None = None) -> Callable[[], Block]:
        def run() -> Block:
            kwargs = {} if part is None else {"part": part}
            values = np.asarray(view.read(name, steps[rows], **kwargs))
            return Block(rows, values.reshape(rows.stop - rows.start, -1))
        return run

    if step_bytes <= max_bytes or not shape:
        per_block = max(1, max_bytes // step_bytes)
        for a in range(0, n_steps, per_block):
            yield read(slice(a, min(n_steps, a + per_block)))
        return
    row_bytes = max(1, step_bytes // shape[0])
    align = _chunk_rows(view, name)
    per_part = max(align, (max_bytes // row_bytes) // align * align)
    for a in range(n_steps):
        for r in range(0, shape[0], per_part):
            yield read(slice(a, a + 1), slice(r, r + per_part))
