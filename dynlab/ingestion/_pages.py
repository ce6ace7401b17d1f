"""Let go of the pages of a memory-mapped tensor once it has been streamed.

Readers map the whole checkpoint file; every page a streamed tensor touches stays in the process's
resident set until the file is unmapped at the end of the checkpoint, so RSS would follow the
checkpoint's size rather than the largest tensor's. ``MADV_DONTNEED`` on a *file-backed* mapping
that was only read drops those pages from this process (they stay in the page cache, and touching
them again re-reads them), so it is safe even if a background write still reads the tensor. It is
applied only to whole pages inside a tensor's bytes, and only on mappings of checkpoint files.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4  # Linux and the BSDs

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        _libc = None


def page_range(start: int, nbytes: int) -> tuple[int, int]:
    """The whole pages inside ``[start, start + nbytes)``: ``(first byte, length)``."""
    lo = -(-start // PAGE) * PAGE
    hi = (start + nbytes) // PAGE * PAGE
    return lo, max(0, hi - lo)


def release_mapped(address: int, nbytes: int) -> None:
    """Drop the resident pages of ``[address, address + nbytes)`` of a read-only file mapping."""
    if _libc is None:
        return
    lo, length = page_range(address, nbytes)
    if length:
        _libc.madvise(lo, length, _MADV_DONTNEED)


def release_mmap_range(mm: mmap.mmap, offset: int, nbytes: int) -> None:
    """The same for a range of a Python ``mmap`` object (offsets relative to the map)."""
    lo, length = page_range(offset, nbytes)
    if length and hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED, lo, length)
