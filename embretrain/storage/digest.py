"""A table's sha256 that remembers where it has been: the hash state at the start of every block of rows.

A load hashes each table a block of rows at a time (:func:`embretrain.checkpoint.native.checksums`'s
scan) and the save of a grown table continues that hash instead of reading the old rows again. When
some old rows change (a pending entity trained on a later night, see :mod:`embretrain.delta`), the old
digest no longer covers the old part: a save must hash again from the first changed row. It can only
continue a state it has, so :class:`RowDigest` keeps a copy of the state at the start of each block
(a few hundred bytes each: ~300 for a 5 GB table); the save then re-reads and hashes at most one block
before the first changed row, plus the rows after it (pending entities were added recently, so they sit
near the end of the table).

Owns: :class:`RowDigest` and :func:`prefix_state`. Must not: read files or know layouts.
"""

from __future__ import annotations

import bisect
import hashlib

__all__ = ["RowDigest", "prefix_state"]


class RowDigest:
    """sha256 fed whole rows (2-D arrays), a hashlib-like object (``update``, ``copy``, ``digest``,
    ``hexdigest``) that also keeps the state at the start of every block it was fed."""

    name = "sha256"

    def __init__(self):
        self._h = hashlib.sha256()
        self.rows = 0
        self._mark_rows: list[int] = []
        self._mark_states: list = []

    def update(self, block) -> None:
        """Hash ``block`` (float32 rows ``[n, width]``, C-contiguous), marking the state before it."""
        self._mark_rows.append(self.rows)
        self._mark_states.append(self._h.copy())
        self._h.update(block)
        self.rows += len(block)

    def copy(self):
        """A plain hashlib state over every row fed so far (what a saver continues)."""
        return self._h.copy()

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def state_before(self, row: int) -> tuple[int, object] | None:
        """``(k, state over rows [0, k))`` for the largest marked ``k <= row``; None if no block was fed."""
        i = bisect.bisect_right(self._mark_rows, row) - 1
        if i < 0:
            return None
        return self._mark_rows[i], self._mark_states[i].copy()


def prefix_state(state, row: int) -> tuple[int, object] | None:
    """``(k, hashlib state of rows [0, k))`` with ``k <= row`` as large as ``state`` allows; None when it
    keeps no marks (a plain hashlib state covers the whole table only) or none before ``row``."""
    if isinstance(state, RowDigest):
        return state.state_before(row)
    return None
