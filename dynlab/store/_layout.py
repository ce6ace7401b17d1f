"""Names, codecs and chunking of the store layout (DESIGN.md, "Store layout").

Kept in one place so that the layout contract is readable at a glance.
"""

from __future__ import annotations

import math

import numpy as np

FORMAT = 1
ROOT_KEY = "dynlab"          # root attrs: {"dynlab": {"format": 1}}
RUNS = "runs"
STEP = "step"                # int64 (T,) commit log
PARAMS = "params"            # params/<tensor>: (T, *shape)
METRICS = "metrics"          # metrics/<name>: float64 (T,)
HASHES = "hashes"            # uint64 (T, K): xxh3-64 of each tensor's stored bytes, source order
STATS = "stats"              # float64 (T, K, 4): finite min, finite max, mean, Σ(x − mean)² per tensor
PREDICTIONS = "probe/predictions"  # (T, N, C) class probabilities: float32 (float16 if given so)
PREDICTION_HASHES = "probe/hashes"  # uint64 (T,): xxh3-64 of each predictions row; 0 = none at that step
LABELS = "probe/labels"      # int64 (N,); fill −1 (a label array holding −1 is not completely written)
ACTIVATIONS = "probe/activations"  # activations/<layer>: float32 (T, N, H), the layer's input; NaN fill
ACTIVATION_HASHES = "probe/activation_hashes"  # activation_hashes/<layer>: uint64 (T,); 0 = none
PROBE_SUM_TOL = 1e-3         # |Σ_c p − 1| allowed per sample: float16 softmax outputs carry ≈ 1e-3
INTERNAL = "dynlab"          # run attrs key holding dynlab's own bookkeeping (user attrs sit beside it)
ACTIVATION_LAYERS = "activation_layers"  # INTERNAL entry: layers ever given activations, first-write order
PROBE_LAYERS = "probe_layers"  # INTERNAL entry: [{layer, kind, weight, bias, output}] in model order
PROBE_INPUTS = "probe_inputs"  # INTERNAL entry: xxh3-64 hex of the probe inputs dynlab probe ran on

def activations_key(layer: str) -> str:
    """The array holding the inputs of ``layer`` (a torch module name such as ``features.0``)."""
    return f"{ACTIVATIONS}/{layer}"


def activation_hashes_key(layer: str) -> str:
    """The array holding the per-step xxh3-64 of ``layer``'s activation rows (0 = none)."""
    return f"{ACTIVATION_HASHES}/{layer}"


#: fill value of ``step``: a resized-but-unwritten commit slot reads as this and is not committed.
STEP_SENTINEL = np.iinfo(np.int64).min

#: Target size of one chunk; a tensor larger than this is split along its leading axis, so a
#: slice of one tensor across all steps reads only the chunks it needs. 2 MiB rather than 4: the
#: same ingest rate, ~15 MB less encode buffers in flight (docs/benchmarks.md).
CHUNK_BYTES = 2 * 2**20

#: Rows are reserved in blocks: rows beyond len(step) are never read, so over-allocation is free
#: and saves a metadata rewrite per tensor per checkpoint.
MIN_GROWTH = 16


def grown_capacity(current: int, needed: int) -> int:
    """New leading-axis capacity of a per-step array that must hold ``needed`` rows."""
    if needed <= current:
        return current
    return max(needed, current + max(MIN_GROWTH, current // 2))


def row_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunk shape of a ``(T, *shape)`` array: one step per chunk, large tensors split on axis 0."""
    if not shape:
        return (1,)
    row_bytes = itemsize * math.prod(shape[1:])
    rows = max(1, min(shape[0], CHUNK_BYTES // max(row_bytes, 1)))
    return (1, rows, *shape[1:])


def compressors():
    """Blosc/LZ4 with byte shuffle: fast enough that ingest is bound by I/O, not compression."""
    from zarr.codecs import BloscCodec

    return (BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),)


#: dtypes numpy cannot hold are stored widened; the original dtype stays in the run's attrs.
WIDENED = {"bfloat16": "float32"}
