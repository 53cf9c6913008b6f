"""Tables and vocabularies left in their HDF5 file: positional reads of the open input checkpoint.

``extend --old-rows on-disk`` keeps the old rows of every table (and the old names) in the input
checkpoint: training reads only the rows a batch needs, and the merged checkpoint is written by
streaming the old part from the input file followed by the new rows.

* :class:`Source`: the input file held open read-only (a descriptor and an h5py handle on one inode).
* :class:`DiskRows`: a read-only ``[n_rows, width]`` float32 table in the file. ``rows(ids)``
  reads the given rows, ``read(start, stop)`` a block, ``copy_into(fd, offset)`` copies it file to
  file, ``np.asarray`` the whole table (logged: only a consumer that needs every row should).
* :class:`DiskNames`: the read-only names of a vocabulary in the file, decoded a block at a time.

Both carry ``sha256_state`` when the loader hashed them, so a saver copying them continues that hash.

Why raw ``os.preadv`` for row reads instead of h5py: our native files store each table contiguous
and uncompressed (``dset.id.get_offset()`` is where its bytes start), a batch needs a few thousand
scattered rows, and h5py's point selections cost far more per row than a positional read; preadv
also releases the GIL (a load hashes in one thread while another decodes names) and takes no
library-wide lock. Other layouts (chunked, compressed, big-endian) fall back to h5py. Not
``np.memmap``: pages touched through a mapping count in the process RSS, page-cache reads do not.

Owns: the open file and its raw I/O. Must not: know which dataset is which (the native layout does),
check checksums or names (the loader does), or import TensorFlow.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from . import base as _base
from .base import NAME_BLOCK, Float32Rows, lazy_getitem
from .memory import aligned_empty

__all__ = ["DiskNames", "DiskRows", "Source", "StrReader", "pread_exact", "pwrite_all", "raw_offset", "read_name_block"]

logger = logging.getLogger(__name__)

_F4 = np.dtype("<f4")


def pread_exact(fd: int, buf: np.ndarray, offset: int, path) -> None:
    """Fill the C-contiguous ``buf`` from ``fd`` at ``offset``; short reads are retried, end of file is a
    CheckpointError naming ``path``. (os.preadv into the array itself: no intermediate bytes object.)"""
    view = memoryview(buf).cast("B")
    while view.nbytes:
        n = os.preadv(fd, [view], offset)
        if n <= 0:
            raise CheckpointError(f"{path}: unexpected end of file at byte {offset}; it is truncated")
        view, offset = view[n:], offset + n


# copy_file_range refused for this pair of files (not an I/O error): copy through a buffer instead
_NO_COPY_RANGE = frozenset(
    getattr(errno, name) for name in ("EXDEV", "ENOSYS", "EINVAL", "EOPNOTSUPP", "ENOTSUP", "EBADF", "EPERM")
    if hasattr(errno, name)
)


_WRITE_BYTES = 1 << 20


def pwrite_all(fd: int, buf, offset: int) -> None:
    """Write all of the C-contiguous ``buf`` to ``fd`` at ``offset`` (short writes retried).

    At most 1 MiB per call: a buffered write holds the file's inode lock for the whole call, and
    another thread (h5py writing names into the same file) must not wait for 16 MiB at a time.
    """
    view = memoryview(buf).cast("B")
    while view.nbytes:
        n = os.pwrite(fd, view[:_WRITE_BYTES], offset)
        view, offset = view[n:], offset + n


class Source:
    """An input checkpoint held open read-only for the rest of a run: a file descriptor for raw row
    reads and an h5py handle for names and non-raw layouts, both on the same inode.

    The path may be replaced meanwhile (``--out`` == ``--ckpt``: the new version is renamed over it;
    the old inode stays readable through these handles). :meth:`check_unchanged` catches the one
    thing that would break the promise: the file rewritten in place while we read it.
    """

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._stat = os.fstat(self.fd)
            self.h5 = h5py.File(self.path, "r")
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) != (self._stat.st_dev, self._stat.st_ino):
                self.h5.close()
                raise CheckpointError(f"{self.path} was replaced while it was being opened; run again")
        except BaseException:
            os.close(self.fd)
            raise
        self._lock = threading.Lock()
        self.closed = False

    def check_unchanged(self) -> None:
        """Raise CheckpointError if the open file was modified in place since it was opened."""
        st = os.fstat(self.fd)
        if (st.st_size, st.st_mtime_ns) != (self._stat.st_size, self._stat.st_mtime_ns):
            raise CheckpointError(
                f"{self.path} was modified while this run was reading its old rows; nothing was written"
            )

    def pread_into(self, buf: np.ndarray, offset: int) -> None:
        """Fill the C-contiguous ``buf`` with the file's bytes from ``offset`` (short reads retried)."""
        pread_exact(self.fd, buf, offset, self.path)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.h5.close()
        finally:
            os.close(self.fd)

    def __del__(self):  # the objects reading from it are gone: release the descriptor
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class DiskRows(Float32Rows):
    """Read-only float32 rows ``[n_rows, width]`` of a 2-D dataset left in an HDF5 file.

    Args:
        source: the open input file.
        name: the dataset's name in the file (a table such as ``entity_embeddings``).
        sha256_state: the hashlib state of its bytes, if the loader hashed them.
    """

    def __init__(self, source: Source, name: str, sha256_state=None):
        self.source = source
        self.name = name
        self.sha256_state = sha256_state
        dset = source.h5[name]
        self.shape = (int(dset.shape[0]), int(dset.shape[1]))
        self.row_bytes = self.shape[1] * 4
        self._offset = raw_offset(dset)  # None: read through h5py
        self._dset = dset

    def head(self, n_rows: int, sha256_state=None) -> "DiskRows":
        """The first ``n_rows`` rows as a DiskRows of their own (same file, no read), carrying
        ``sha256_state``, the hashlib state of exactly those rows (see :func:`~.patch.patch_rows`)."""
        head = object.__new__(DiskRows)
        head.__dict__.update(self.__dict__)
        head.shape = (min(int(n_rows), self.shape[0]), self.shape[1])
        head.sha256_state = sha256_state
        return head

    @property
    def raw(self) -> bool:
        """True if rows are read with positional reads of the file's bytes (contiguous little-endian float32)."""
        return self._offset is not None

    def __repr__(self) -> str:
        return f"DiskRows({self.source.path}:/{self.name}, shape={self.shape})"

    def _read_into(self, out: np.ndarray, start: int) -> None:
        """Rows ``[start, start + len(out))`` into the C-contiguous float32 ``out``."""
        if not len(out):
            return
        if self._offset is not None:
            self.source.pread_into(out, self._offset + start * self.row_bytes)
        else:
            # h5py converts any float dtype/byte order to the destination's native float32
            self._dset.read_direct(out, np.s_[start : start + len(out)])

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as a new C-contiguous float32 array (or into ``out``)."""
        start, stop = max(0, start), min(stop, self.shape[0])
        n = max(0, stop - start)
        if out is None:
            out = np.empty((n, self.shape[1]), dtype=np.float32)
        self._read_into(out, start)
        return out

    def copy_into(self, fd: int, offset: int) -> bool:
        """Copy every row's bytes into the file ``fd`` at ``offset`` inside the kernel (``copy_file_range``: no
        copy through this process), falling back to positional reads and writes of one reused block.

        Returns False (nothing written) unless the rows are raw little-endian float32 bytes in the file.
        """
        if self._offset is None:
            return False
        src, left = self._offset, self.nbytes
        if hasattr(os, "copy_file_range"):
            while left:
                try:
                    n = os.copy_file_range(self.source.fd, fd, min(left, 1 << 30), src, offset)
                except OSError as err:
                    if err.errno not in _NO_COPY_RANGE:
                        raise
                    break  # this filesystem pair cannot: copy through a buffer below
                if n <= 0:
                    raise CheckpointError(f"{self.source.path}: unexpected end of file at byte {src}; it is truncated")
                src, offset, left = src + n, offset + n, left - n
        buffer = np.empty(min(left, _base.BLOCK_BYTES), dtype=np.uint8)
        while left:
            block = buffer[: min(left, len(buffer))]
            self.source.pread_into(block, src)
            pwrite_all(fd, block, offset)
            src, offset, left = src + len(block), offset + len(block), left - len(block)
        return True

    def rows(self, ids) -> np.ndarray:
        """Rows for int ids of any shape ``[...]`` -> float32 ``[..., width]`` (any order, repeats allowed).

        Each run of consecutive ids is one read: sorted unique ids touch the file in order.
        """
        ids = np.asarray(ids)
        flat = ids.reshape(-1).astype(np.int64, copy=False)
        width = self.shape[1]
        if not flat.size:
            return np.empty(ids.shape + (width,), dtype=np.float32)
        uniq, inverse = np.unique(flat, return_inverse=True)
        if uniq[0] < 0 or uniq[-1] >= self.shape[0]:
            bad = int(uniq[0] if uniq[0] < 0 else uniq[-1])
            raise IndexError(f"row {bad} is out of range for {self!r}")
        buf = np.empty((len(uniq), width), dtype=np.float32)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        starts = [0, *breaks.tolist()]
        stops = [*breaks.tolist(), len(uniq)]
        first_ids = uniq[starts].tolist()
        for a, b, row in zip(starts, stops, first_ids):
            self._read_into(buf[a:b], row)
        if len(uniq) == flat.size and np.array_equal(uniq, flat):
            return buf.reshape(ids.shape + (width,))
        return buf[inverse.reshape(-1)].reshape(ids.shape + (width,))

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` blocks of about :data:`_base.BLOCK_BYTES` covering the table in order."""
        step = block_rows or max(1, _base.BLOCK_BYTES // max(1, self.row_bytes))
        for start in range(0, self.shape[0], step):
            yield start, self.read(start, start + step)

    def __getitem__(self, key):
        return lazy_getitem(self, key)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("DiskRows cannot be viewed as an array without a copy")
        log = logger.info if self.nbytes >= 1 << 26 else logger.debug
        log("reading all %d rows of %s into memory (%.0f MB)", self.shape[0], self, self.nbytes / 2**20)
        out = aligned_empty(self.shape)
        for start, block in self.blocks():
            out[start : start + len(block)] = block
        return out if dtype is None else out.astype(dtype, copy=False)


def raw_offset(dset) -> int | None:
    """Byte offset of a dataset readable with positional reads, or None (read it through h5py)."""
    import h5py

    try:
        plist = dset.id.get_create_plist()
        nbytes = int(np.prod(dset.shape, dtype=np.int64)) * 4
        raw = (
            plist.get_layout() == h5py.h5d.CONTIGUOUS
            and plist.get_nfilters() == 0
            and plist.get_external_count() == 0
            and not dset.is_virtual
            and dset.dtype == _F4
            and sys.byteorder == "little"
            # allocated (an unallocated dataset reports a meaningless offset) and all of it stored
            and dset.id.get_storage_size() == nbytes
        )
        offset = dset.id.get_offset() if raw else None
        # the bytes must lie inside this very file (positional reads go to its descriptor)
        if offset is not None and offset + nbytes > int(dset.file.id.get_filesize()):
            offset = None
    except Exception:  # noqa: BLE001 - any doubt: the library path is always correct
        return None
    return offset


def read_name_block(dset, start: int, stop: int) -> list[bytes]:
    """Names ``[start, stop)`` of a 1-D string dataset as raw bytes (vlen or fixed-length)."""
    raw = dset[start:stop].tolist()  # h5py gives bytes for both vlen and fixed-length strings
    if raw and (type(raw[0]) is not bytes or type(raw[-1]) is not bytes):
        raw = [b if isinstance(b, bytes) else str(b).encode("utf-8") for b in raw]
    return raw


_STRING_DTYPE = getattr(getattr(np, "dtypes", None), "StringDType", None)  # numpy >= 2


class StrReader:
    """Names ``[start, stop)`` of a 1-D string dataset as ``str``, decoded as UTF-8 whatever the declared charset.

    A variable-length dataset tagged UTF-8 (what :func:`~.native.save` writes) is read straight into
    numpy's variable-width ``StringDType`` (numpy >= 2, h5py >= 3.14): HDF5 hands over the strings
    without h5py building a Python ``bytes`` per name, and ``tolist`` makes the ``str``s in C. Anything
    else (ASCII-tagged, fixed-length, an older numpy or h5py) is read as bytes and decoded name by name.
    Both raise ``UnicodeDecodeError`` on bytes that are not UTF-8.
    """

    def __init__(self, dset):
        import h5py

        self.dset = dset
        info = h5py.check_string_dtype(dset.dtype)
        self.fast = (
            _STRING_DTYPE is not None and info is not None and info.length is None and info.encoding == "utf-8"
        )

    def __call__(self, start: int, stop: int) -> list[str]:
        if self.fast and start < stop:
            try:
                return self.dset.astype(_STRING_DTYPE())[start:stop].tolist()
            except UnicodeError:
                raise
            except (TypeError, ValueError, OSError) as err:  # this h5py cannot: bytes from now on
                logger.debug("reading %s as bytes (%s)", self.dset.name, err)
                self.fast = False
        return [b.decode("utf-8") for b in read_name_block(self.dset, start, stop)]


class DiskNames(Sequence):
    """The names of a vocabulary left in an HDF5 file (a read-only sequence of ``str``), with
    ``sha256_state`` over them (vocab_sha256 layout) if the loader hashed them."""

    def __init__(self, source: Source, name: str, sha256_state=None):
        self.source = source
        self.name = name
        self.sha256_state = sha256_state
        self._dset = source.h5[name]
        self._n = int(self._dset.shape[0])
        self._read = StrReader(self._dset)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"DiskNames({self.source.path}:/{self.name}, {self._n} names)"

    def raw_blocks(self, size: int = NAME_BLOCK) -> Iterator[tuple[int, list[bytes]]]:
        """``(start, names as UTF-8 bytes)`` blocks, in order."""
        for start in range(0, self._n, size):
            yield start, read_name_block(self._dset, start, min(self._n, start + size))

    def _str_block(self, start: int, stop: int) -> list[str]:
        try:
            return self._read(start, stop)
        except UnicodeDecodeError as err:
            raise CheckpointError(f"{self.source.path}: /{self.name} holds bytes that are not UTF-8 ({err})") from err

    def name_blocks(self, size: int = NAME_BLOCK) -> Iterator[tuple[int, list[str]]]:
        """``(start, names)`` blocks, in order."""
        for start in range(0, self._n, size):
            yield start, self._str_block(start, min(self._n, start + size))

    def __iter__(self) -> Iterator[str]:
        for _, names in self.name_blocks():
            yield from names

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self._n)
            if step != 1:
                return list(self)[key]
            return self._str_block(start, stop) if start < stop else []
        i = int(key) + (self._n if key < 0 else 0)
        if not 0 <= i < self._n:
            raise IndexError(f"name index {int(key)} out of range")
        return self._str_block(i, i + 1)[0]


