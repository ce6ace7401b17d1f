"""NumPy checkpoints: ``.npz`` archives (one member per tensor) and ``.npy`` files.

A ``.npy`` holds either one array (stored as a tensor named after the file stem) or a pickled
dict of arrays (``np.save(path, {"w": w})``). The pickle is loaded by a
restricted unpickler that only rebuilds numpy arrays, dicts and scalars, so a crafted file cannot
run code (the same idea as torch's ``weights_only``).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dynlab.errors import CheckpointError
from dynlab.ingestion._base import Checkpoint, TensorItem, one_line, scalar_metrics

#: Globals a pickled dict of numpy arrays needs, and nothing else.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS or (module == "numpy" and name.endswith("Dtype")) or (
                module.startswith("numpy.dtypes")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the pickle needs code "
                                     "beyond numpy arrays")


def open_numpy(path: Path) -> Checkpoint:
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return _open_npz(path) if is_zip else _open_npy(path)


def _open_npz(path: Path) -> Checkpoint:
    handle = open(path, "rb")  # noqa: SIM115 - kept open while streaming; closed by close()
    try:
        archive = np.load(handle, allow_pickle=False)
        names = list(archive.files)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        handle.close()
        raise CheckpointError(f"{path}: not a readable .npz archive ({one_line(exc)})") from None

    def close() -> None:
        archive.close()
        handle.close()

    # only the step keys are looked at up front: every other member is read once, when streamed
    scalars = {k: archive[k] for k in _STEP_KEYS if k in names}
    scalars = {k: v for k, v in scalars.items() if v.ndim == 0}

    def tensors() -> Iterator[TensorItem]:
        for name in names:
            if name in _STEP_KEYS and name in scalars:
                continue
            array = archive[name]  # one member decompressed at a time
            yield name, array, array.dtype.name

    return Checkpoint(path, "numpy", tensors, step=_step_of(scalars),
                      nbytes=path.stat().st_size, close=close)


def _open_npy(path: Path) -> Checkpoint:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            _, _, dtype = read_header(f)
            content = _SafeUnpickler(f).load() if dtype.hasobject else None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable .npy file ({one_line(exc)})") from None
    if content is None:
        array = np.load(path, mmap_mode="r", allow_pickle=False)

        def single() -> Iterator[TensorItem]:
            yield path.stem, np.asarray(array), array.dtype.name

        return Checkpoint(path, "numpy", single, nbytes=path.stat().st_size)
    if isinstance(content, np.ndarray) and content.dtype == object and content.ndim == 0:
        content = content.item()
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: a .npy of objects that is not a dict of arrays")
    arrays = {str(k): np.asarray(v) for k, v in content.items()
              if isinstance(v, (np.ndarray, np.generic, int, float))}
    step = _step_of({k: v for k, v in arrays.items() if v.ndim == 0})
    metrics = scalar_metrics({k: v for k, v in arrays.items()
                              if v.ndim == 0 and k not in _STEP_KEYS})

    def from_dict() -> Iterator[TensorItem]:
        for name, array in arrays.items():
            if array.ndim == 0 and (name in _STEP_KEYS or name in metrics):
                continue
            yield name, array, array.dtype.name

    return Checkpoint(path, "numpy", from_dict, step=step, metrics=metrics,
                      nbytes=path.stat().st_size)


_STEP_KEYS = ("global_step", "step", "epoch")


def _step_of(scalars: dict[str, np.ndarray]) -> int | None:
    for key in _STEP_KEYS:
        if key in scalars and np.asarray(scalars[key]).dtype.kind in "iu":
            return int(scalars[key])
    return None
