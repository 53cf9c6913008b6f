"""What every table and vocabulary looks like, wherever it lives: the ``Rows`` and ``Names`` protocols.

Owns: the block sizes of streaming, the two protocols, and the numpy-style indexing shared by the lazy
tables. Must not: know any concrete storage (files, stacks), checkpoint layouts or formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["BLOCK_BYTES", "NAME_BLOCK", "Rows", "Names"]

BLOCK_BYTES = 1 << 24  # 16 MiB: rows read, hashed, checked or written per step when streaming a table
NAME_BLOCK = 1 << 16  # names decoded per step


@runtime_checkable
class Rows(Protocol):
    """A float32 table ``[n_rows, width]``: an ``np.ndarray`` (in memory), rows left in an HDF5 file
    (:class:`~.disk.DiskRows`) or a lazy stack old + new (:class:`~.stack.RowStack`).

    Read any of them through :func:`embretrain.storage.take`, :func:`~embretrain.storage.blocks` and
    :func:`~embretrain.storage.as_array`; never test for the concrete type outside this package.
    """

    shape: tuple[int, ...]
    ndim: int

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> Any: ...


Names = Sequence[str]
"""A vocabulary, row i named ``names[i]``: a list or tuple (in memory), names left in an HDF5 file
(:class:`~.disk.DiskNames`) or old + new (:class:`~.stack.NameStack`)."""


class Float32Rows:
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



def lazy_getitem(table, key):
    """Numpy-style indexing of a lazy table (it has ``read(start, stop)`` and ``rows(ids)``): int, slice,
    int or bool array, or a tuple starting with one of them."""
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
        out = table.read(start, stop) if step == 1 else table.rows(np.arange(start, stop, step))
    elif key is Ellipsis:
        out = np.asarray(table)
    else:
        arr = np.asarray(key)
        if arr.dtype == bool:
            arr = np.flatnonzero(arr)
        out = table.rows(np.where(arr < 0, arr + n, arr))
    return out[(slice(None), *rest)] if rest and out.ndim == 2 else (out[rest] if rest else out)


