"""Creating an HDF5 file so that a full disk is an error, not a crash.

HDF5 cannot recover from a failed write: the object whose write failed stays half-closed and a
later close touches memory HDF5 has already freed, so the process dies with a segmentation fault
(h5py issues 914 and 1642; seen here on a full tmpfs: exit 139 after pages of "Exception ignored"
tracebacks). A nightly job on a filling disk must get one line and exit 6 instead. So HDF5 is never
allowed to meet a full disk:

- :class:`H5Writer` reserves the file's space ahead of HDF5's writes (Linux ``fallocate`` with
  ``FALLOC_FL_KEEP_SIZE``: blocks past the end of the file, which HDF5's writes then fill without
  asking the filesystem for more). The writer calls :meth:`H5Writer.reserve` with what it is about to
  add before adding it; a reservation that fails is an ordinary ``OSError`` raised before HDF5 writes
  anything that needs the room.
- The file is flushed inside the block, where a failure is an ordinary exception, so the close has
  nothing left to write; on any failure the file's blocks are released (it is our own temporary file,
  about to be removed) before closing, so that whatever the close still writes finds room.

Where the filesystem cannot reserve (no ``fallocate``: some network and FUSE mounts, non-Linux) nothing
is reserved and a full disk can still reach HDF5. :func:`embretrain.diskspace.check_room` refuses a
write the filesystem has no room for before anything is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from ..atomic import libc_function

__all__ = ["H5Writer", "create", "heap_bytes", "stored_bytes", "SLACK", "VLEN_REF"]

logger = logging.getLogger(__name__)

# Room kept ahead of HDF5's end of file for what it writes unannounced: object headers, attributes,
# the superblock's end-of-file address (measured: ~10 KiB in a native checkpoint of 19k entities).
SLACK = 256 << 10
VLEN_REF = 16  # what a variable-length string takes in its dataset (length + global heap id)
_HEAP_OBJECT = 16  # a global heap object's header; its data is padded to 8 bytes
_HEAP_COLLECTION = 4096  # the smallest global heap collection
_FALLOC_FL_KEEP_SIZE = 1


def _fallocate_fn():
    """libc's ``fallocate`` (Linux), or None. Python's ``os.posix_fallocate`` cannot keep the file's size,
    and a file longer than HDF5 wrote would keep the extra bytes (HDF5 trims only what it knows it wrote)."""
    fn = libc_function("fallocate64")
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _fallocate_fn()


class H5Writer:
    """An HDF5 file being written, with its space reserved ahead of HDF5 (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = h5py.File(self.path, "w")
        self._fd: int | None = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        self._reserved = 0
        if _FALLOCATE is None:
            self._stop_reserving()

    def reserve(self, nbytes: int = 0) -> None:
        """Make sure ``nbytes`` more than HDF5's current end of file (plus :data:`SLACK`) are on disk.

        Raises:
            OSError: ENOSPC (or EDQUOT) when the filesystem has no room; nothing past the superblock
                needed it yet.
        """
        if self._fd is None:
            return
        end = int(self.file.id.get_filesize()) + int(nbytes) + SLACK
        if end <= self._reserved:
            return
        if _FALLOCATE(self._fd, _FALLOC_FL_KEEP_SIZE, self._reserved, end - self._reserved) != 0:
            code = ctypes.get_errno()
            if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise OSError(code, os.strerror(code), os.fspath(self.path))
            logger.debug("%s: cannot reserve space ahead of HDF5 (%s); writing without", self.path, os.strerror(code))
            self._stop_reserving()
            return
        self._reserved = end

    def _stop_reserving(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        """Flush, close, and give back the reserved blocks the file did not use."""
        self.file.flush()  # a failure here is an exception, not a crash in close
        self.file.close()
        if self._fd is not None:
            # truncating to its own size frees blocks reserved past the end (ext4 and tmpfs do so explicitly)
            os.ftruncate(self._fd, os.fstat(self._fd).st_size)
        self._stop_reserving()

    def abandon(self) -> None:
        """After a failure: release the file's blocks, then close it (the caller removes the file)."""
        with contextlib.suppress(OSError):
            os.truncate(self.path, 0)
        with contextlib.suppress(Exception):
            self.file.close()
        self._stop_reserving()


@contextlib.contextmanager
def create(path: str | os.PathLike) -> Iterator[H5Writer]:
    """An :class:`H5Writer` on ``path`` (a temporary file of ours that the caller removes if the block fails)."""
    writer = H5Writer(path)
    try:
        writer.reserve()
        yield writer
        writer.close()
    except BaseException:
        writer.abandon()
        raise


def heap_bytes(items: list[bytes]) -> int:
    """An upper bound of the global heap space HDF5 takes for these variable-length strings."""
    return sum(_HEAP_OBJECT + len(item) + 8 for item in items) + _HEAP_COLLECTION


def stored_bytes(value) -> int:
    """An upper bound of the file space HDF5 takes for the dataset ``create_dataset(data=value)`` writes."""
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        items = [x if isinstance(x, bytes) else str(x).encode("utf-8", "surrogatepass") for x in array.ravel()]
        return VLEN_REF * len(items) + heap_bytes(items)
    return int(array.nbytes)
