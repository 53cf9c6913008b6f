"""Tables and vocabularies that stay in their HDF5 file, and lazy stacks of old + new parts.

``extend --old-rows on-disk`` keeps the old rows of every table (and the old names) in the input
checkpoint: training reads only the rows a batch needs, and the merged checkpoint is written by
streaming the old part from the input file followed by the new rows. The objects here make that
look enough like arrays and lists for the rest of the code:

* :class:`DiskRows`: a read-only ``[n_rows, width]`` float32 table in the file. ``rows(ids)``
  reads the given rows, ``read(start, stop)`` a block, ``np.asarray`` the whole table (logged:
  only a consumer that really needs every row, e.g. a TF/Keras saver, should do that).
* :class:`DiskNames`: the read-only names of a vocabulary in the file, decoded a block at a time.
* :class:`RowStack` / :class:`NameStack`: ``old`` part + ``new`` part, concatenated lazily. ``extend``
  returns its grown tables as RowStacks (in both modes): the merged table is never built in memory,
  :func:`embretrain.checkpoint.native.save` streams the parts, and ``np.asarray`` builds it for
  anything else.

Why raw ``os.preadv`` for row reads instead of h5py: our native files store each table contiguous
and uncompressed (``dset.id.get_offset()`` is where its bytes start), a batch needs a few thousand
scattered rows, and h5py's point selections cost far more per row than a positional read; preadv
also releases the GIL (a load hashes in one thread while another decodes names) and takes no
library-wide lock. Other layouts (chunked, compressed, big-endian) fall back to h5py. Not
``np.memmap``: pages touched through a mapping count in the process RSS, page-cache reads do not.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

__all__ = [
    "BLOCK_BYTES",
    "DiskNames",
    "DiskRows",
    "NameStack",
    "RowStack",
    "Source",
    "StrReader",
    "aligned_empty",
    "as_array",
    "blocks",
    "take",
]

logger = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 24  # 16 MiB: rows read, hashed, checked or written per step when streaming a table
NAME_BLOCK = 1 << 16  # names decoded per step
_F4 = np.dtype("<f4")
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


# --------------------------------------------------------------------------- the open input file


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


# --------------------------------------------------------------------------- tables


class _Float32Rows:
    """What numpy-minded callers ask of a lazy float32 table: ``shape`` (set by the subclass), ``ndim``, ``dtype``,
    ``size``, ``nbytes``, ``len``."""

    ndim = 2
    dtype = np.dtype(np.float32)
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * 4

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]


class DiskRows(_Float32Rows):
    """Read-only float32 rows ``[n_rows, width]`` of a 2-D dataset left in an HDF5 file.

    Args:
        source: the open input file.
        name: the dataset's name in the file (a table such as ``entity_embeddings``).
    """

    def __init__(self, source: Source, name: str):
        self.source = source
        self.name = name
        dset = source.h5[name]
        self.shape = (int(dset.shape[0]), int(dset.shape[1]))
        self.row_bytes = self.shape[1] * 4
        self._offset = _raw_offset(dset)  # None: read through h5py
        self._dset = dset

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
        buffer = np.empty(min(left, BLOCK_BYTES), dtype=np.uint8)
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
        """``(start, rows)`` blocks of about :data:`BLOCK_BYTES` covering the table in order."""
        step = block_rows or max(1, BLOCK_BYTES // max(1, self.row_bytes))
        for start in range(0, self.shape[0], step):
            yield start, self.read(start, start + step)

    def __getitem__(self, key):
        return _getitem(self, key)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("DiskRows cannot be viewed as an array without a copy")
        log = logger.info if self.nbytes >= 1 << 26 else logger.debug
        log("reading all %d rows of %s into memory (%.0f MB)", self.shape[0], self, self.nbytes / 2**20)
        out = aligned_empty(self.shape)
        for start, block in self.blocks():
            out[start : start + len(block)] = block
        return out if dtype is None else out.astype(dtype, copy=False)


def _raw_offset(dset) -> int | None:
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


class RowStack(_Float32Rows):
    """Lazy vertical concatenation of row blocks (``ndarray`` or :class:`DiskRows`) of equal width.

    Args:
        parts: the blocks, top to bottom.
        prefix_digest: optional ``hashlib.sha256`` state of ``parts[0]``'s little-endian float32
            bytes, as computed when they were loaded; a saver continues it instead of re-hashing them.
    """

    def __init__(self, parts: Sequence[Any], prefix_digest=None):
        parts = [p if isinstance(p, (DiskRows, RowStack)) else np.asarray(p) for p in parts]
        widths = {int(p.shape[1]) for p in parts if p.ndim == 2}
        if len(widths) != 1 or any(p.ndim != 2 for p in parts):
            raise ValueError(f"RowStack parts must be 2-D of one width, got {[p.shape for p in parts]}")
        self.parts = parts
        self.prefix_digest = prefix_digest
        self.shape = (sum(int(p.shape[0]) for p in parts), widths.pop())
        self._starts = np.cumsum([0] + [int(p.shape[0]) for p in parts])

    def __repr__(self) -> str:
        return f"RowStack({' + '.join(type(p).__name__ + str(tuple(p.shape)) for p in self.parts)})"

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=np.float32)
        for p, lo in zip(self.parts, self._starts[:-1].tolist()):
            a, b = max(start, lo), min(stop, lo + int(p.shape[0]))
            if a < b:
                out[a - start : b - start] = p.read(a - lo, b - lo) if not isinstance(p, np.ndarray) else p[a - lo : b - lo]
        return out

    def rows(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        flat = ids.reshape(-1)
        out = np.empty((flat.size, self.shape[1]), dtype=np.float32)
        if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
            raise IndexError(f"row ids out of range for {self!r}")
        for p, lo in zip(self.parts, self._starts[:-1].tolist()):
            mask = (flat >= lo) & (flat < lo + int(p.shape[0]))
            if mask.any():
                out[mask] = take(p, flat[mask] - lo)
        return out.reshape(ids.shape + (self.shape[1],))

    def __getitem__(self, key):
        return _getitem(self, key)

    # a few ndarray conveniences, each building the whole table in memory
    def copy(self) -> np.ndarray:
        return np.asarray(self)

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return np.asarray(self).astype(dtype, copy=False)

    def tobytes(self) -> bytes:
        return np.asarray(self).tobytes()

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a RowStack cannot be viewed as one array without a copy")
        out = aligned_empty(self.shape)
        for p, lo in zip(self.parts, self._starts[:-1].tolist()):
            out[lo : lo + p.shape[0]] = np.asarray(p)
        return out if dtype is None else out.astype(dtype, copy=False)


def _getitem(table, key):
    """Numpy-style indexing of a lazy table: int, slice, int array, or a tuple starting with one of them."""
    rest: tuple = ()
    if isinstance(key, tuple):
        key, rest = key[0], key[1:]
    n = table.shape[0]
    if isinstance(key, (int, np.integer)):
        i = int(key) + (n if key < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"index {int(key)} is out of bounds for {n} rows")
        out = table.read(i, i + 1)[0]
    elif isinstance(key, slice):
        start, stop, step = key.indices(n)
        out = table.read(start, stop) if step == 1 else take(table, np.arange(start, stop, step))
    elif key is Ellipsis:
        out = np.asarray(table)
    else:
        arr = np.asarray(key)
        if arr.dtype == bool:
            arr = np.flatnonzero(arr)
        out = take(table, np.where(arr < 0, arr + n, arr))
    return out[(slice(None), *rest)] if rest and out.ndim == 2 else (out[rest] if rest else out)


# --------------------------------------------------------------------------- helpers for any table


def take(table, ids) -> np.ndarray:
    """Rows ``ids`` (int ``[...]``) of an ndarray, :class:`DiskRows` or :class:`RowStack` -> ``[..., width]``."""
    if isinstance(table, (DiskRows, RowStack)):
        return table.rows(ids)
    return np.asarray(table)[np.asarray(ids, dtype=np.int64)]


def blocks(table, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, C-contiguous float32 rows)`` blocks covering any table in order, without materialising it."""
    step = block_rows or max(1, BLOCK_BYTES // max(1, int(table.shape[1]) * 4))
    if isinstance(table, DiskRows):
        yield from table.blocks(step)
        return
    if isinstance(table, RowStack):
        for p, lo in zip(table.parts, table._starts[:-1].tolist()):
            for start, block in blocks(p, step):
                yield lo + start, block
        return
    for start in range(0, table.shape[0], step):
        yield start, np.ascontiguousarray(table[start : start + step], dtype=np.float32)


def as_array(table) -> np.ndarray:
    """An in-memory float32 array for any table (materialises a lazy one)."""
    return np.asarray(table) if isinstance(table, (DiskRows, RowStack)) else table


def is_lazy(table) -> bool:
    return isinstance(table, (DiskRows, RowStack))


# --------------------------------------------------------------------------- names


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
    """The names of a vocabulary left in an HDF5 file (a read-only sequence of ``str``)."""

    def __init__(self, source: Source, name: str):
        self.source = source
        self.name = name
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


class NameStack(Sequence):
    """Old names (a list or :class:`DiskNames`) followed by new ones, without copying the old part.

    Built only by vocabulary growth, which appends names the old part does not hold, so a saver can
    trust that the whole is duplicate-free once the old part was checked at load.

    Args:
        prefix_digest: optional sha256 state of the old part's names (vocab_sha256 layout).
    """

    def __init__(self, old: Sequence[str], new: list[str], prefix_digest=None):
        self.old = old
        self.new = list(new)
        self.prefix_digest = prefix_digest

    @property
    def parts(self) -> list[Sequence[str]]:
        return [self.old, self.new]

    def __len__(self) -> int:
        return len(self.old) + len(self.new)

    def __iter__(self) -> Iterator[str]:
        yield from self.old
        yield from self.new

    def __getitem__(self, key):
        n_old = len(self.old)
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return list(self)[key]
            head = list(self.old[start:min(stop, n_old)]) if start < n_old else []
            return head + self.new[max(0, start - n_old) : max(0, stop - n_old)]
        i = int(key) + (len(self) if key < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"name index {int(key)} out of range")
        return self.old[i] if i < n_old else self.new[i - n_old]

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, NameStack, DiskNames)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable-looking sequence: unhashable like a list

    def __repr__(self) -> str:
        return f"NameStack({self.old!r} + {len(self.new)} new)"


def names_digest(names_blocks) -> Any:
    """sha256 state over names given as blocks of UTF-8 bytes, in the vocab_sha256 layout."""
    digest = hashlib.sha256()
    for block in names_blocks:
        if block:
            digest.update(b"\n".join(block))
            digest.update(b"\n")
    return digest
