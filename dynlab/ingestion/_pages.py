"""Let go of the pages of a memory-mapped tensor once it has been stored.

Readers map the whole checkpoint file; every page a streamed tensor touches stays in the process's
resident set until the file is unmapped at the end of the checkpoint, so RSS would follow the
checkpoint's size rather than the largest tensor's. ``MADV_PAGEOUT`` (Linux ≥ 5.4) asks the kernel
to reclaim those pages now. It never discards data: clean file-backed pages are dropped and read
again from the file if touched, and private copies (a storage torch byte-swapped in place) stay
where they are, as there is no swap to page them out to. So a wrong guess about what backs a range
costs only a re-read, never a wrong value (``MADV_DONTNEED`` would throw such copies away).
Only whole pages inside the tensor's bytes are advised. On other systems, or an older kernel
(EINVAL), nothing happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys

PAGE = mmap.PAGESIZE
MADV_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21)  # 21 on Linux

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
    """Ask the kernel to reclaim the resident pages of ``[address, address + nbytes)``."""
    if _libc is None:
        return
    lo, length = page_range(address, nbytes)
    if length:
        _libc.madvise(lo, length, MADV_PAGEOUT)


def release_mmap_range(mm: mmap.mmap, offset: int, nbytes: int) -> None:
    """The same for a range of a Python ``mmap`` object (offsets relative to the map)."""
    lo, length = page_range(offset, nbytes)
    if length and hasattr(mm, "madvise") and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # an older kernel without MADV_PAGEOUT
            mm.madvise(MADV_PAGEOUT, lo, length)
