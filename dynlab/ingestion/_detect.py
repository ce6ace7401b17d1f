"""Which reader opens a file: decided by content (magic bytes, structure), not by extension.

| format      | signature                                                                  |
|-------------|----------------------------------------------------------------------------|
| safetensors | u64 little-endian header length N, then ``{`` at byte 8 (a JSON header)    |
| hdf5        | ``\\x89HDF\\r\\n\\x1a\\n`` at offset 0, 512, 1024, … (Keras ``.h5``)         |
| numpy       | ``\\x93NUMPY`` (``.npy``), or a zip whose members are ``*.npy`` (``.npz``)   |
| torch       | a zip holding ``<archive>/data.pkl`` (torch.save ≥ 1.6), or a pickle stream |
| keras       | a zip holding ``model.weights.h5`` (``.keras`` archive)                     |
| onnx        | protobuf ``ModelProto``: field 1 (ir_version, varint) first, ``.onnx`` name |
"""

from __future__ import annotations

import zipfile
from pathlib import Path

FORMATS = ("torch", "safetensors", "numpy", "hdf5", "onnx")

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"

#: Extensions that mark a file in a directory as a checkpoint candidate. Other files (notes,
#: configs, tokenizers) are skipped when a directory is ingested; given explicitly, any file is
#: sniffed.
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz", ".npy", ".h5",
                       ".hdf5", ".keras", ".onnx", ".tar"}


def sniff(path: Path) -> str | None:
    """Format of a checkpoint file, from its first bytes; ``None`` if it is no known checkpoint."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head.startswith(ZIP_MAGIC):
                return _sniff_zip(path)
            if head.startswith(NPY_MAGIC):
                return "numpy"
            if head.startswith(HDF5_MAGIC) or _hdf5_with_userblock(f):
                return "hdf5"
            if len(head) >= 9 and head[8:9] == b"{":
                n = int.from_bytes(head[:8], "little")
                if 2 <= n <= 100_000_000:
                    return "safetensors"
            if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
                return "torch"  # a pickle stream: torch's legacy (pre-1.6) serialisation
            if head[:1] == b"\x08" and path.suffix.lower() == ".onnx":
                return "onnx"
    except OSError:
        return None
    return None


def _sniff_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        # a truncated zip: let the extension decide which reader reports the damage
        return {".npz": "numpy", ".keras": "hdf5"}.get(path.suffix.lower(), "torch")
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "torch"
    if "model.weights.h5" in names:
        return "hdf5"
    if names and all(n.endswith(".npy") for n in names):
        return "numpy"
    return None


def _hdf5_with_userblock(f) -> bool:
    for offset in (512, 1024, 2048):
        f.seek(offset)
        if f.read(8) == HDF5_MAGIC:
            return True
    return False

