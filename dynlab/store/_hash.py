"""Content hash of a stored tensor: xxh3-64 over dtype, shape and the C-order bytes.

xxh3 runs at memory speed (tens of GB/s), so hashing every tensor at ingest costs little next to
reading it; a cryptographic hash is not needed to spot identical or changed checkpoints.
"""

from __future__ import annotations

import numpy as np
import xxhash


def tensor_hash(array: np.ndarray) -> int:
    """xxh3-64 digest of ``array`` (dtype, shape and values), as an unsigned 64-bit integer."""
    data = np.ascontiguousarray(array)
    h = xxhash.xxh3_64()
    h.update(f"{data.dtype.str}{data.shape}".encode())
    h.update(memoryview(data.reshape(-1)).cast("B"))
    return h.intdigest()
