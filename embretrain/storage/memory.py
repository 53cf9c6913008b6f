"""Tables and vocabularies in memory, and the frozen kind that carries the sha256 of its own bytes.

Owns: 64-byte aligned table buffers (:func:`aligned_empty`) and :class:`FrozenRows` / :class:`FrozenNames`,
read-only objects that hold the sha256 state of their bytes as computed when they were read, so a saver
continues that hash instead of reading the rows again. Must not: read or write files, know formats.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

__all__ = ["FrozenNames", "FrozenRows", "aligned_empty"]

_MAP_BYTES = 1 << 26  # aligned_empty: from this size on, a mapping of its own
_ALIGN = 64  # TensorFlow's CPU tensors want 64-byte aligned buffers (EIGEN_MAX_ALIGN_BYTES)


def aligned_empty(shape: tuple[int, ...], dtype=np.float32, align: int = _ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary.

    From 64 MiB on, an anonymous mapping of its own (page-aligned, unmapped when the array goes):
    numpy advises the kernel to back big arrays with huge pages (``MADV_HUGEPAGE``), and where
    transparent huge pages defragment on advice (a common default) the first write to each 2 MiB
    then waits for the kernel to compact memory. Filling a 0.5 GB table that way took 1-1.4 s of
    system time in a fresh process here, against ~0.4 s for a plain mapping (which still gets huge
    pages when some are free).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes >= _MAP_BYTES and align <= mmap.PAGESIZE:
        return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).reshape(shape)
    raw = np.empty(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes].view(dtype).reshape(shape)



class FrozenRows(np.ndarray):
    """A read-only float32 table that carries ``sha256_state``, the hashlib state of its C-order
    little-endian bytes. Anything derived from it (a slice, ``table * 2``) carries none.

    Build it with :func:`embretrain.storage.freeze_rows`. The state is only handed out while the
    array is read-only (see :func:`embretrain.storage.sha256`): whoever unlocks it may change it.
    """

    sha256_state: Any = None

    def __array_finalize__(self, obj) -> None:
        self.sha256_state = None  # a view, slice or result of arithmetic is other bytes


class FrozenNames(tuple):
    """Names that cannot change (a tuple), with ``sha256_state`` over them in the vocab_sha256 layout
    (each name as UTF-8 followed by a newline), as computed when they were read."""

    sha256_state: Any = None

    def __new__(cls, names, sha256_state=None):
        self = super().__new__(cls, names)
        self.sha256_state = sha256_state
        return self
