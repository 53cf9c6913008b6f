"""Where tables and vocabularies live: in memory, left in an HDF5 file, or stacked old + new.

A table is a :class:`Rows` (float32 ``[n_rows, width]``) and a vocabulary a :class:`Names`; each
comes in three kinds:

==============  =========================================  =========================================
                Rows                                       Names
==============  =========================================  =========================================
in memory       ``np.ndarray``; :class:`FrozenRows` when   ``list``; :class:`FrozenNames` (a tuple)
                read-only and hashed at load               when hashed at load
on disk         :class:`DiskRows` (``--old-rows on-disk``)  :class:`DiskNames`
old + new       :class:`RowStack` (a grown table)           :class:`NameStack` (a grown vocabulary)
old, patched    :class:`PatchedRows` (old rows, a few
                replaced: pending entities trained)
==============  =========================================  =========================================

Every consumer uses the functions here and never tests for a concrete type: :func:`take` (rows by id),
:func:`blocks` (the table a block at a time), :func:`as_array` (all of it in memory), :func:`on_disk`,
:func:`is_lazy`, :func:`stack_rows` / :func:`stack_names` (grow), :func:`parts`, :func:`copy_into`
(kernel copy of rows left on disk), :func:`name_chunks` (names as UTF-8 bytes, a block at a time).

The sha256 hand-over from load to save: an object that cannot change and was hashed when it was
read (frozen or on disk) carries ``sha256_state``, the hashlib state of its bytes; :func:`sha256`
hands out a copy. A saver writing a table or vocabulary whose (first) part carries one continues it
instead of reading the old rows again. The digest belongs to the bytes, not to a checkpoint's slot.
A table's state as the native loader computes it is a :class:`RowDigest`, which also remembers the
state at the start of every block: when old rows are replaced (:func:`stack_rows` with ``replace``),
the rows before the first replaced one keep a state of their own (:func:`patch_rows`).

Owns: the storage objects and the only ``isinstance`` checks on them. Must not: know checkpoint
layouts or formats, check checksums (loaders do), or import TensorFlow; h5py is imported only by
the on-disk objects when a file is opened.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import base
from .base import BLOCK_BYTES, NAME_BLOCK, Names, Rows
from .digest import RowDigest
from .disk import DiskNames, DiskRows, Source, StrReader, pread_exact, pwrite_all, raw_offset, read_name_block
from .memory import FrozenNames, FrozenRows, aligned_empty
from .patch import PatchedRows, patch_rows
from .stack import NameStack, RowStack

__all__ = [
    "BLOCK_BYTES",
    "NAME_BLOCK",
    "Rows",
    "Names",
    "DiskNames",
    "DiskRows",
    "FrozenNames",
    "FrozenRows",
    "NameStack",
    "PatchedRows",
    "RowDigest",
    "RowStack",
    "Source",
    "StrReader",
    "aligned_empty",
    "as_array",
    "blocks",
    "check_unchanged",
    "copy_into",
    "freeze_names",
    "freeze_rows",
    "is_lazy",
    "name_chunks",
    "on_disk",
    "parts",
    "patch_rows",
    "pread_exact",
    "pwrite_all",
    "raw_offset",
    "read_name_block",
    "sha256",
    "sha256_marks",
    "stack_names",
    "stack_rows",
    "take",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- reading any table


def take(table: Rows, ids) -> np.ndarray:
    """Rows ``ids`` (int ``[...]``, any order, repeats allowed) of any table -> float32 ``[..., width]``."""
    if isinstance(table, (DiskRows, RowStack, PatchedRows)):
        return table.rows(ids)
    return np.asarray(table)[np.asarray(ids, dtype=np.int64)]


def blocks(table: Rows, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, C-contiguous float32 rows)`` blocks of about :data:`BLOCK_BYTES` covering any table in
    order, without materialising it."""
    step = block_rows or max(1, base.BLOCK_BYTES // max(1, int(table.shape[1]) * 4))
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


def as_array(table: Rows) -> np.ndarray:
    """An in-memory float32 array for any table (materialises a lazy one; an array is returned as is)."""
    return np.asarray(table) if is_lazy(table) else table


def is_lazy(obj: Rows | Names) -> bool:
    """True for a table or vocabulary that is not plain memory (on disk, or a stack old + new)."""
    return isinstance(obj, (DiskRows, RowStack, PatchedRows, DiskNames, NameStack))


def on_disk(obj: Rows | Names) -> bool:
    """True if every row (or name) of ``obj`` is read from a file left open (``--old-rows on-disk``)."""
    return isinstance(obj, (DiskRows, DiskNames))


def parts(obj: Rows | Names) -> list[Any]:
    """The parts of a stack, top to bottom; ``[obj]`` for anything else."""
    if isinstance(obj, RowStack):
        return list(obj.parts)
    if isinstance(obj, NameStack):
        return obj.parts
    return [obj]


def copy_into(table: Rows, fd: int, offset: int) -> bool:
    """Copy all of ``table``'s bytes into file ``fd`` at ``offset`` inside the kernel, if it is rows left
    on disk as raw little-endian float32; False (nothing written) otherwise."""
    return isinstance(table, DiskRows) and table.copy_into(fd, offset)


def check_unchanged(obj: Rows | Names) -> None:
    """For rows or names left on disk: raise CheckpointError if their file was modified in place
    since it was opened (the bytes copied must be the bytes hashed at load). Nothing for the rest."""
    if isinstance(obj, (DiskRows, DiskNames)):
        obj.source.check_unchanged()
    elif isinstance(obj, PatchedRows):
        check_unchanged(obj.base)


# --------------------------------------------------------------------------- names


def name_chunks(names: Names, size: int = NAME_BLOCK) -> Iterator[list[bytes]]:
    """The names as UTF-8 bytes, ``size`` at a time, in order (names on disk are not decoded)."""
    if isinstance(names, DiskNames):
        for _, raw in names.raw_blocks(size):
            yield raw
        return
    items = names if isinstance(names, (list, tuple)) else list(names)
    for start in range(0, len(items), size):
        yield [n.encode("utf-8") for n in items[start : start + size]]


# --------------------------------------------------------------------------- the sha256 hand-over


def sha256(obj: Rows | Names):
    """A copy of the hashlib sha256 state ``obj`` carries from when it was read, or None.

    Only frozen and on-disk objects carry one; a frozen array unlocked for writing hands out none
    (its bytes may have changed since).
    """
    state = getattr(obj, "sha256_state", None)
    if state is None or (isinstance(obj, np.ndarray) and obj.flags.writeable):
        return None
    return state.copy()


def sha256_marks(obj: Rows | Names):
    """The load-time sha256 ``obj`` carries, as carried (a :class:`RowDigest` keeps block marks), or None
    (under the rules of :func:`sha256`); for :func:`patch_rows`, which never updates it."""
    state = getattr(obj, "sha256_state", None)
    if state is None or (isinstance(obj, np.ndarray) and obj.flags.writeable):
        return None
    return state


def freeze_rows(table: np.ndarray, sha256_state=None) -> FrozenRows:
    """``table`` as a read-only :class:`FrozenRows` (no copy) carrying ``sha256_state`` of its bytes."""
    frozen = table.view(FrozenRows)
    frozen.flags.writeable = False
    frozen.sha256_state = sha256_state
    return frozen


def freeze_names(names: Sequence[str], sha256_state=None) -> FrozenNames:
    """``names`` as an immutable :class:`FrozenNames` carrying ``sha256_state`` (vocab_sha256 layout)."""
    return FrozenNames(names, sha256_state)


# --------------------------------------------------------------------------- growing


def stack_rows(old: Rows, new: np.ndarray, replace: tuple[np.ndarray, np.ndarray] | None = None) -> RowStack:
    """Old rows + new rows as one lazy table; the old part keeps its identity (and its sha256).

    ``replace``: ``(ids int64 [j], rows float32 [j, width])``, old rows to replace (pending entities
    trained, see :mod:`embretrain.delta`); the old rows before the first of them keep the sha256 state
    over them where the load left marks (:func:`patch_rows`), every other old row is read from ``old``.
    """
    if replace is None or not len(replace[0]):
        return RowStack([old, new])
    return RowStack([*patch_rows(old, *replace), new])


def stack_names(old: Names, new: Sequence[str]) -> Names:
    """Old names + new ones: a list for a list (it is copied anyway), else a lazy :class:`NameStack`."""
    if isinstance(old, list):
        return old + list(new)
    return NameStack(old, list(new))
