"""ONNX models (``.onnx``): the graph initializers are the checkpoint's tensors.

Not streamed: protobuf parses the whole ``ModelProto`` at open, so tensors stored inside the file
are all in memory (ONNX caps such files at 2 GiB). Tensors in external data files (beside the
model, as ``onnx.save(..., save_as_external_data=True)`` writes them) are read one at a time when
streamed; their locations and sizes are checked at open (and count in ``nbytes``).

Initializers of the main graph come first, then those of subgraphs (``If``/``Loop``/``Scan``
bodies), in graph order. Names keep ONNX's spelling with ``/`` turned into ``.``; a subgraph
initializer whose name is already taken is prefixed with its node and attribute. bfloat16 is
widened to float32, other ml_dtypes types (float8, float4, int4, …) to float32/int8/uint8, each
keeping its source dtype. Step and metrics: ``metadata_props`` (``global_step``, ``step``,
``epoch``; metric-like keys such as ``loss``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import Checkpoint, TensorItem, bfloat16_to_float32, one_line
from dynlab.ingestion._safetensors import step_and_metrics


def open_onnx(path: Path) -> Checkpoint:
    """Open an ONNX model; :class:`CheckpointError` if it is no readable ``ModelProto``."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable ONNX model ({one_line(exc)})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise CheckpointError(f"{path}: not a complete ONNX model (truncated or not a ModelProto)")
    initializers = [(n, t) for n, t in _named_initializers(model.graph)
                    if t.data_type != onnx.TensorProto.STRING]
    if not initializers:
        raise CheckpointError(f"{path}: the model holds no initializers (no weights)")
    base = path.parent
    external = {_check_external(path, base, name, tensor) for name, tensor in initializers
                if uses_external_data(tensor)}
    step, metrics = step_and_metrics({p.key: p.value for p in model.metadata_props})
    held = {"initializers": initializers}

    def tensors() -> Iterator[TensorItem]:
        for name, tensor in held.get("initializers", ()):
            try:
                array = numpy_helper.to_array(tensor, base_dir=str(base))
            except (onnx.checker.ValidationError, TypeError) as exc:
                raise CheckpointError(
                    f"{path}: cannot read initializer '{name}' ({one_line(exc)})") from None
            yield name, *_widen(array)

    nbytes = path.stat().st_size + sum(os.path.getsize(p) for p in external)
    return Checkpoint(path, "onnx", tensors, step=step, metrics=metrics, nbytes=nbytes,
                      close=held.clear)


def _named_initializers(graph: onnx.GraphProto) -> list[tuple[str, onnx.TensorProto]]:
    out: list[tuple[str, onnx.TensorProto]] = []
    taken: set[str] = set()

    def visit(g: onnx.GraphProto, prefix: str) -> None:
        for tensor in g.initializer:
            name = _clean(tensor.name) or f"initializer_{len(out)}"
            if name in taken:
                name = f"{prefix}{name}"
            taken.add(name)
            out.append((name, tensor))
        for i, node in enumerate(g.node):
            for attr in node.attribute:
                subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
                for k, sub in enumerate(subgraphs):
                    label = _clean(node.name) or f"{node.op_type}_{i}"
                    suffix = f".{k}" if len(subgraphs) > 1 else ""
                    visit(sub, f"{prefix}{label}.{attr.name}{suffix}.")

    visit(graph, "")
    return out


def _clean(name: str) -> str:
    return ".".join(part for part in name.split("/") if part)


def _check_external(path: Path, base: Path, name: str, tensor: onnx.TensorProto) -> Path:
    """The external data file of ``tensor``, checked: inside ``base``, present, long enough."""
    info = ExternalDataInfo(tensor)
    location = Path(info.location)
    target = (base / location).resolve()
    if location.is_absolute() or not target.is_relative_to(base.resolve()):
        raise CheckpointError(f"{path}: initializer '{name}' points outside the model's directory "
                              f"({info.location})")
    if not target.is_file():
        raise CheckpointError(f"{path}: external data file {info.location} of initializer "
                              f"'{name}' is missing")
    end = (info.offset or 0) + (info.length or 0)
    if end > os.path.getsize(target):
        raise CheckpointError(f"{path}: external data file {info.location} is truncated "
                              f"(initializer '{name}' ends at byte {end})")
    return target


def _widen(array: np.ndarray) -> tuple[np.ndarray, str]:
    """numpy dtypes as they are; ml_dtypes types widened exactly, the source dtype kept."""
    dtype = array.dtype
    if dtype.kind != "V":
        return array, dtype.name
    if dtype.name == "bfloat16":
        return bfloat16_to_float32(array.view(np.uint16)), "bfloat16"
    if dtype.name.startswith("float"):
        return array.astype(np.float32), dtype.name
    return array.astype(np.uint8 if dtype.name.startswith("uint") else np.int8), dtype.name
