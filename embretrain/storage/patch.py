"""Old rows with a few of them replaced: the old part of a table in which pending entities were trained.

An entity added on an earlier night without data is *pending* (see :mod:`embretrain.delta`): its row is
old (id < ``n_old``) but was never trained, and the first night whose delta mentions it trains it. Its
trained value goes back to its own id; every other old row stays the input's. :class:`PatchedRows` is
rows ``[lo, hi)`` of a base table (in memory, on disk or a stack) with those rows replaced, read lazily
like the base, so the save still streams the old rows from the input. :func:`patch_rows` cuts the
old part so a save can still continue the load's sha256 over the rows before the first replaced one
(see :mod:`.digest`).

Owns: :class:`PatchedRows`, :func:`patch_rows`. Must not: read files itself, know formats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Float32Rows, lazy_getitem
from .digest import prefix_state
from .disk import DiskRows
from .memory import FrozenRows, aligned_empty

__all__ = ["PatchedRows", "patch_rows"]


def _read(base, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of any table as a new float32 array."""
    if isinstance(base, np.ndarray):
        return np.array(base[start:stop], dtype=np.float32, order="C")
    return base.read(start, stop)


class PatchedRows(Float32Rows):
    """Rows ``[lo, hi)`` of ``base`` with rows ``ids`` (ids of ``base``, sorted, unique, in ``[lo, hi)``)
    replaced by ``values`` float32 ``[len(ids), width]``. Row i of this table is row ``lo + i`` of base."""

    def __init__(self, base, lo: int, hi: int, ids: np.ndarray, values: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float32)
        if len(ids) and (ids[0] < lo or ids[-1] >= hi or np.any(np.diff(ids) <= 0)):
            raise ValueError(f"patched ids must be sorted, unique and in [{lo}, {hi})")
        if values.shape != (len(ids), int(base.shape[1])):
            raise ValueError(f"patch values {values.shape} do not fit {len(ids)} rows of width {base.shape[1]}")
        self.base, self.lo, self.hi = base, int(lo), int(hi)
        self.ids, self.values = ids, values
        self.shape = (self.hi - self.lo, int(base.shape[1]))

    def __repr__(self) -> str:
        return f"PatchedRows({type(self.base).__name__}[{self.lo}:{self.hi}], {len(self.ids)} replaced)"

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.shape[0])
        out = _read(self.base, self.lo + start, self.lo + max(start, stop))
        a, b = np.searchsorted(self.ids, [self.lo + start, self.lo + stop])
        out[self.ids[a:b] - self.lo - start] = self.values[a:b]
        return out

    def rows(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        flat = ids.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
            raise IndexError(f"row ids out of range for {self!r}")
        absolute = flat + self.lo
        if isinstance(self.base, np.ndarray):
            out = np.array(self.base[absolute], dtype=np.float32)
        else:
            out = self.base.rows(absolute)
        if len(self.ids):
            at = np.minimum(np.searchsorted(self.ids, absolute), len(self.ids) - 1)
            hit = self.ids[at] == absolute
            out[hit] = self.values[at[hit]]
        return out.reshape(ids.shape + (self.shape[1],))

    def __getitem__(self, key):
        return lazy_getitem(self, key)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("PatchedRows cannot be viewed as one array without a copy")
        out = aligned_empty(self.shape)
        out[:] = _read(self.base, self.lo, self.hi)
        out[self.ids - self.lo] = self.values
        return out if dtype is None else out.astype(dtype, copy=False)


def _head(base, k: int, state) -> Any:
    """The first ``k`` rows of ``base`` (no copy), carrying ``state``, the sha256 state of exactly those rows."""
    if isinstance(base, DiskRows):
        return base.head(k, state)
    head = np.asarray(base)[:k].view(FrozenRows)  # a view of read-only rows: read-only too
    head.flags.writeable = False
    head.sha256_state = state
    return head


def patch_rows(old, ids, values) -> list:
    """The parts, top to bottom, of ``old`` with rows ``ids`` replaced by ``values`` float32 ``[len(ids), width]``.

    When ``old`` carries its load-time sha256 with marks (:class:`~.digest.RowDigest`), the rows before the
    last mark at or before the first replaced row become a part of their own carrying the state over them:
    a saver continues it and hashes only the rest (see :func:`embretrain.storage.sha256`).
    """
    from . import sha256_marks

    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], np.asarray(values, dtype=np.float32)[order]
    n = int(old.shape[0])
    if not len(ids):
        return [old]
    mark = prefix_state(sha256_marks(old), int(ids[0]))
    if mark is None or mark[0] == 0:
        return [PatchedRows(old, 0, n, ids, values)]
    k, state = mark
    return [_head(old, k, state), PatchedRows(old, k, n, ids, values)]
