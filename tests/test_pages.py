"""Releasing mapped pages never changes what the memory holds."""

from __future__ import annotations

import ctypes
import mmap

import numpy as np
import pytest

from dynlab.ingestion._pages import PAGE, page_range, release_mapped, release_mmap_range


def test_page_range_keeps_to_whole_pages_inside():
    assert page_range(0, 3 * PAGE) == (0, 3 * PAGE)
    assert page_range(1, 3 * PAGE) == (PAGE, 2 * PAGE)
    assert page_range(10, PAGE) == (PAGE, 0)


@pytest.mark.parametrize("via", ["address", "mmap"])
def test_private_copies_survive_a_release(tmp_path, via):
    """A private mapping whose pages were modified (as torch does when it byte-swaps a storage in
    place): after the release the modified bytes must still be there (MADV_DONTNEED would revert
    them to the file's)."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(4 * PAGE))
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = np.frombuffer(mm, dtype=np.uint8)
    view[:] = 7  # private copies of every page
    if via == "address":
        address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        release_mapped(address, len(mm))
    else:
        release_mmap_range(mm, 0, len(mm))
    assert (view == 7).all()
    del view
    mm.close()


def test_file_pages_read_the_same_after_a_release(tmp_path):
    data = np.arange(8 * PAGE // 4, dtype=np.float32)
    path = tmp_path / "data.bin"
    path.write_bytes(data.tobytes())
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(mm, dtype=np.float32)
    assert view.sum() == data.sum()
    release_mmap_range(mm, 0, len(mm))
    np.testing.assert_array_equal(view, data)
    del view
    mm.close()
