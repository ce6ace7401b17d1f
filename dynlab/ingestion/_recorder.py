"""Write checkpoints straight from a training loop into the store."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import TensorItem
from dynlab.store import Store, open_store


class Recorder:
    """Append checkpoints of a training run to a store as training goes.

    >>> with Recorder("dynlab.zarr", "mlp-w64", attrs={"width": 64}) as rec:   # doctest: +SKIP
    ...     for epoch in range(epochs):
    ...         train_one_epoch(model)
    ...         rec.log(epoch, model, train_loss=loss, test_loss=test_loss,
    ...                 predictions=probs_on_probe_set)          # optional, (N, C)

    ``log`` accepts a torch module, a state dict, or any mapping of array-likes. The recorder holds
    the run's writer lock until ``close()`` (or the end of the ``with`` block).
    """

    def __init__(self, store: str | os.PathLike[str] | Store, run: str,
                 attrs: Mapping[str, Any] | None = None):
        self._store = store if isinstance(store, Store) else open_store(store, mode="a")
        self.run = self._store.create_run(run, dict(attrs or {}), exist_ok=True)
        self._writing = self.run.writing()
        self._writing.__enter__()
        self._open = True

    def log(self, step: int, weights: Any, /, *, predictions: Any = None, **metrics: float) -> None:
        """Store the checkpoint ``weights`` at ``step`` with scalar ``metrics`` and, optionally,
        its class probabilities on the run's probe set, ``predictions`` (N, C) (an array or
        tensor; see ``Run.write_predictions`` for the checks). Set the probe labels once with
        ``rec.run.set_probe_labels(labels)``."""
        if not self._open:
            raise CheckpointError(f"recorder of run '{self.run.name}' is closed")
        if predictions is not None and type(predictions).__module__.startswith("torch"):
            from dynlab.ingestion._torch import torch_to_numpy

            predictions = torch_to_numpy(Path("<Recorder.log>"), "predictions", predictions)[0]
        self.run.append(int(step), _as_arrays(weights), {k: _scalar(k, v) for k, v in metrics.items()},
                        predictions=predictions)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writing.__exit__(None, None, None)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_arrays(weights: Any) -> Iterator[TensorItem]:
    state = weights.state_dict() if callable(getattr(weights, "state_dict", None)) else weights
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"Recorder.log needs a torch module or a mapping of arrays, not {type(weights).__name__}")
    for name, value in state.items():
        if type(value).__module__.startswith("torch"):  # torch is imported only if it is in use
            from dynlab.ingestion._torch import torch_to_numpy

            yield str(name), *torch_to_numpy(Path("<Recorder.log>"), str(name), value)
        else:
            array = np.asarray(value)
            yield str(name), array, array.dtype.name


def _scalar(name: str, value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckpointError(f"metric '{name}' must be a number, not {value!r}") from None
