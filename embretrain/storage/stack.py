"""Lazy stacks old + new: a grown table or vocabulary without copying its old part.

``extend`` returns its grown tables as :class:`RowStack` (in both modes) and its grown vocabularies as
:class:`NameStack`: the merged table is never built in memory, a saver streams the parts (continuing
the old part's own sha256, see :func:`embretrain.storage.sha256`), and ``np.asarray`` builds it for
anything else. Owns: concatenation. Must not: read files itself, know formats.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .base import Float32Rows, lazy_getitem
from .disk import DiskNames, DiskRows
from .memory import aligned_empty
from .patch import PatchedRows

__all__ = ["NameStack", "RowStack"]


class RowStack(Float32Rows):
    """Lazy vertical concatenation of row blocks (``ndarray``, :class:`~.disk.DiskRows` or another
    RowStack) of equal width, top to bottom. Each part keeps its own identity (a frozen or on-disk old
    part keeps its sha256: a saver continues it instead of re-hashing the old rows).
    """

    def __init__(self, parts: Sequence[Any]):
        parts = [p if isinstance(p, (np.ndarray, DiskRows, RowStack, PatchedRows)) else np.asarray(p) for p in parts]
        widths = {int(p.shape[1]) for p in parts if p.ndim == 2}
        if len(widths) != 1 or any(p.ndim != 2 for p in parts):
            raise ValueError(f"RowStack parts must be 2-D of one width, got {[p.shape for p in parts]}")
        self.parts = parts
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
                out[mask] = p[flat[mask] - lo] if isinstance(p, np.ndarray) else p.rows(flat[mask] - lo)
        return out.reshape(ids.shape + (self.shape[1],))

    def __getitem__(self, key):
        return lazy_getitem(self, key)

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


class NameStack(Sequence):
    """Old names (a list, :class:`~.memory.FrozenNames` or :class:`~.disk.DiskNames`) followed by new
    ones, without copying the old part.

    Built only by vocabulary growth, which appends names the old part does not hold, so a saver can
    trust that the whole is duplicate-free once the old part was checked at load (an old part that
    carries its load-time sha256 was).
    """

    def __init__(self, old: Sequence[str], new: list[str]):
        self.old = old
        self.new = list(new)

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


