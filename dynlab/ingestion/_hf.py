"""Hugging Face checkpoint directories: a Trainer's ``checkpoint-N/`` or a saved model.

Weights are the first of these found (safetensors before pickles, as transformers does):
``model.safetensors``, ``model.safetensors.index.json`` (shards), ``adapter_model.safetensors``,
any other ``*.safetensors.index.json`` or ``*.safetensors``, then ``pytorch_model.bin``, its index,
``adapter_model.bin``, other weight ``.bin`` files, and ``tf_model.h5``. Each weight file is opened
by its own reader, one at a time: shards stream in file-name order (``model-00001-of-…`` first),
each shard in its own order.

Step: ``trainer_state.json`` ``global_step``, else a step the first weight file records, else None
(the ingest then takes the directory name's last integer). Metrics: the ``log_history`` entries
of that step, merged; ``loss`` becomes ``train_loss``, other numbers keep their names. The
end-of-training summary's ``train_loss`` (a run average, not the step's loss) is left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import Checkpoint, TensorItem, one_line
from dynlab.ingestion._discover import step_from_name
from dynlab.ingestion._readers import open_checkpoint
from dynlab.ingestion._safetensors import read_header

#: (single file, index of shards, reader), in order of preference
_LAYOUTS = (
    ("model.safetensors", "model.safetensors.index.json", "safetensors"),
    ("adapter_model.safetensors", None, "safetensors"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", "torch"),
    ("adapter_model.bin", None, "torch"),
)
#: ``.bin`` files of a Trainer checkpoint that hold no weights
_NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin", "scaler.bin")


def open_hf_dir(path: Path) -> Checkpoint:
    """Open a Hugging Face checkpoint directory; weight files are streamed one after another."""
    path = Path(path)
    files, fmt = _weight_files(path)
    state = _trainer_state(path)
    step = state.get("global_step") if _is_int(state.get("global_step")) else None
    metrics: dict[str, float] = {}
    for i, file in enumerate(files):  # each opened once now: a bad shard fails before any write
        shard = open_checkpoint(file, fmt)
        shard.close()
        if i == 0:
            metrics = dict(shard.metrics)
            step = shard.step if step is None else step
    wanted = step if step is not None else step_from_name(path)
    metrics.update(_log_metrics(state.get("log_history"), wanted))
    opened: list[Checkpoint] = []

    def tensors() -> Iterator[TensorItem]:
        for file in files:
            ckpt = open_checkpoint(file, fmt)
            opened.append(ckpt)
            try:
                yield from ckpt.tensors()
            finally:
                if opened and opened[-1] is ckpt:  # else close() got to it first
                    opened.pop().close()

    def close() -> None:
        while opened:
            opened.pop().close()

    return Checkpoint(path, "hf", tensors, step=step, metrics=metrics,
                      nbytes=sum(f.stat().st_size for f in files), close=close)


def _weight_files(path: Path) -> tuple[list[Path], str]:
    for single, index, fmt in _LAYOUTS:
        if (path / single).is_file():
            return [path / single], fmt
        if index and (path / index).is_file():
            return _shards(path / index), fmt
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) == 1:
        return _shards(indexes[0]), "safetensors"
    for pattern, fmt in (("*.safetensors", "safetensors"), ("*.bin", "torch"),
                         ("tf_model.h5", "hdf5")):
        found = sorted(p for p in path.glob(pattern) if p.is_file() and p.name not in _NOT_WEIGHTS)
        if found:
            return found, fmt
    raise CheckpointError(f"{path}: no weight files (model.safetensors, pytorch_model.bin, "
                          "an index of shards) in this directory")


def _shards(index: Path) -> list[Path]:
    """The shard files an index names, in file-name order; every one must exist."""
    content = _json(index)
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: no weight_map of tensor names to shard files")
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = index.parent / name
        if Path(name).name != name or not shard.is_file():
            raise CheckpointError(f"{index}: names shard '{name}', which is not in {index.parent}")
        shards.append(shard)
    if index.name.endswith(".safetensors.index.json"):
        held = {shard.name: set(read_header(shard)[0]) for shard in shards}
        for tensor, name in weight_map.items():
            if tensor not in held[name]:
                raise CheckpointError(f"{index}: maps tensor '{tensor}' to {name}, which does "
                                      "not hold it")
    return shards


def _trainer_state(path: Path) -> dict:
    file = path / "trainer_state.json"
    if not file.is_file():
        return {}
    state = _json(file)
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: not a JSON object")
    return state


def _json(file: Path) -> object:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable JSON ({one_line(exc)})") from None


def _log_metrics(history: object, step: int | None) -> dict[str, float]:
    """Numeric entries of ``log_history`` logged at ``step``, merged."""
    out: dict[str, float] = {}
    if step is None or not isinstance(history, list):
        return out
    for entry in history:
        if not isinstance(entry, dict) or entry.get("step") != step:
            continue
        summary = "train_runtime" in entry
        for key, value in entry.items():
            if key == "step" or not _is_number(value) or (summary and key == "train_loss"):
                continue
            out["train_loss" if key == "loss" else str(key).replace("/", "_")] = float(value)
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
