"""Write checkpoints straight from a training loop into the store."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dynlab.errors import CheckpointError, DynlabWarning
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
                 attrs: Mapping[str, Any] | None = None, *, probe_layers: Any = None):
        self._store = store if isinstance(store, Store) else open_store(store, mode="a")
        self.run = self._store.create_run(run, dict(attrs or {}), exist_ok=True)
        self._writing = self.run.writing()
        self._writing.__enter__()
        self._open = True
        if probe_layers is not None:
            try:
                self.set_probe_layers(probe_layers)
            except BaseException:
                self.close()  # no lock left behind by a recorder that was never returned
                raise

    def log(self, step: int, weights: Any, /, *, predictions: Any = None,
            activations: Mapping[str, Any] | None = None, **metrics: float) -> None:
        """Store the checkpoint ``weights`` at ``step`` with scalar ``metrics`` and, optionally,
        its class probabilities on the run's probe set, ``predictions`` (N, C) (an array or
        tensor; see ``Run.write_predictions`` for the checks), and the inputs of its layers on
        that set, ``activations`` {layer: (N, H)} (see ``Run.write_activations``;
        ``dynlab.ingestion.layer_inputs`` captures them with hooks). Set the probe labels once
        with ``rec.run.set_probe_labels(labels)``."""
        if not self._open:
            raise CheckpointError(f"recorder of run '{self.run.name}' is closed")
        if predictions is not None and type(predictions).__module__.startswith("torch"):
            from dynlab.ingestion._torch import torch_to_numpy

            predictions = torch_to_numpy(Path("<Recorder.log>"), "predictions", predictions)[0]
        if isinstance(activations, Mapping):
            activations = {k: _probe_array(k, v) for k, v in activations.items()}
        metrics = self._with_block(int(step), metrics)  # a waiting log_block at this step
        self.run.append(int(step), _as_arrays(weights), {k: _scalar(k, v) for k, v in metrics.items()},
                        predictions=predictions, activations=activations)

    def set_probe_layers(self, layers: Any) -> None:
        """Describe the run's layers (``Run.probe_layers``): a mapping layer → {kind, weight,
        bias, output}, or a torch module, described by ``dynlab.ingestion.describe_layers``."""
        if not isinstance(layers, Mapping):
            from dynlab.ingestion._probe import describe_layers

            layers = describe_layers(layers)
        self.run.set_probe_layers(layers)

    def close(self) -> None:
        if self._open:
            block = self.pending_block
            self._open = False
            self._writing.__exit__(None, None, None)
            if block is not None:  # it would otherwise vanish: L_preq without its last block
                warnings.warn(f"run '{self.run.name}': the block of step {block[0]} ({block[1]} "
                              f"samples, {block[2]:.6g} bits) was never logged with "
                              f"log({block[0]}, ...): it is not stored", DynlabWarning, stacklevel=2)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ prequential code lengths

    #: the metric columns written by :meth:`log_block` (NaN at steps without a block)
    BLOCK_METRICS = ("preq_block_size", "preq_block_bits")

    def log_block(self, step: int, block_size: int, code_length_bits: float) -> None:
        """Record a new data block of prequential coding (METHODS.md §7) at ``step``:
        ``code_length_bits`` = Σ −log₂ p(y|x) over the ``block_size`` samples of the block, under
        the model trained on all earlier blocks, evaluated BEFORE the model trains on this block.

        Stored as the metrics ``preq_block_size`` and ``preq_block_bits`` of ``step``. A committed
        step's metrics cannot change (the store has no update of one row), so the block waits and
        is written by the next ``log(step, ...)`` at the same step, merged into its metrics:

            rec.log_block(s, len(block), bits)   # the model has not seen the block yet
            train_on(block)
            rec.log(s, model, train_loss=...)    # writes the weights and the block together

        Logs at earlier steps may come in between; a log at a later step while the block still
        waits is an error, and so is a second block at one step. A block whose step is never
        logged is not stored (``pending_block`` shows it; ``close`` warns).
        """
        if not self._open:
            raise CheckpointError(f"recorder of run '{self.run.name}' is closed")
        step, where = int(step), f"run '{self.run.name}' step {int(step)}"
        try:
            size = float(block_size.item() if hasattr(block_size, "item") else block_size)
        except (TypeError, ValueError):
            size = np.nan
        if isinstance(block_size, (bool, np.bool_)) or not (size.is_integer() and size >= 1):
            raise CheckpointError(f"{where}: block_size must be a positive integer, got {block_size!r}")
        bits = _scalar("code_length_bits", code_length_bits)
        if not np.isfinite(bits) or bits < 0:
            raise CheckpointError(f"{where}: code_length_bits must be finite and ≥ 0 "
                                  f"(a summed −log₂ p), got {bits!r}")
        pending = self.pending_block
        if pending is not None:
            if pending[0] == step:
                raise CheckpointError(f"{where} already has a block (one block per step)")
            raise CheckpointError(f"{where}: the block of step {pending[0]} is still waiting for "
                                  f"log({pending[0]}, ...)")
        steps = self.run.steps
        if step in steps:
            raise CheckpointError(f"{where} is already committed: call log_block({step}, ...) "
                                  f"before log({step}, ...)")
        if len(steps) and step < steps[-1]:
            raise CheckpointError(f"{where} is earlier than the last step {int(steps[-1])}; blocks "
                                  "are recorded in step order")
        self._block = (step, int(size), bits)

    @property
    def pending_block(self) -> tuple[int, int, float] | None:
        """``(step, block_size, bits)`` of the block waiting for ``log(step, ...)``, or None."""
        block = getattr(self, "_block", None)
        if block is not None and block[0] in self.run.steps:  # written by that log
            self._block = block = None
        return block

    def _with_block(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """``metrics`` of ``log(step, ...)`` with the waiting block's columns when it is at ``step``."""
        block = self.pending_block
        if block is None or step < block[0]:
            return metrics
        if step > block[0]:
            raise CheckpointError(f"run '{self.run.name}': the block of step {block[0]} was never "
                                  f"logged; call log({block[0]}, ...) before log({step}, ...)")
        clash = sorted(set(self.BLOCK_METRICS) & set(metrics))
        if clash:
            raise CheckpointError(f"run '{self.run.name}' step {step}: metric {clash[0]} is given "
                                  "and also recorded by log_block")
        return {**metrics, "preq_block_size": float(block[1]), "preq_block_bits": block[2]}


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


def _probe_array(name: str, value: Any) -> Any:
    if type(value).__module__.startswith("torch"):
        from dynlab.ingestion._torch import torch_to_numpy

        return torch_to_numpy(Path("<Recorder.log>"), f"activations of {name}", value)[0]
    return value


def _scalar(name: str, value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckpointError(f"metric '{name}' must be a number, not {value!r}") from None
