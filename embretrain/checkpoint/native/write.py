"""Writing a native checkpoint atomically: every table gets its file space first and is written with
positional writes from a second thread (old rows left on disk copied file to file by the kernel)
while h5py writes the names; a sha256 carried by an old part (:func:`embretrain.storage.sha256`) is
continued instead of hashing those rows again.

Owns: :func:`save`. Must not: read the input file except through the storage objects it is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...atomic import atomic_write
from ...errors import CheckpointError, EmbretrainError
from ...storage import (
    blocks,
    check_unchanged,
    copy_into,
    is_lazy,
    name_chunks,
    parts,
    pwrite_all,
    raw_offset,
    sha256,
)
from ...diskspace import check_room, table_bytes, write_failure
from ...vocab import check_names
from .. import h5write
from ..base import ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .checksums import NAME_BLOCK
from .layout import _NOT_TABLES, _RESERVED_ATTRS, CONTEXTS, ENTITIES, FORMAT, FORMAT_VERSION, LINEAGE, RELATIONS, _is_int

__all__ = ["save"]

logger = logging.getLogger(__name__)

_STRINGS = h5py.string_dtype("utf-8")

# --------------------------------------------------------------------------- writing


def _param_value(name: str, value: Any) -> bool | int | float | str:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (bool, int, float, str)):
        raise CheckpointError(
            f"cannot save parameter {name!r} = {value!r}: parameters must be int, float, str or bool"
        )
    if _is_int(value) and not -(2**63) <= value < 2**63:
        raise CheckpointError(f"cannot save parameter {name!r} = {value}: integers must fit in 64 bits")
    return value


def _check_names(kind: str, names) -> None:
    """Names must be unique strings. The old part of grown names, when it is the loaded one (it carries
    its load-time sha256), was checked at load, and the new part holds only names the old part lacks
    (vocabulary growth), so only the new part is checked."""
    old, *added = parts(names)
    if added:
        if sha256(old) is None:  # not the loaded (and checked) names: check them too
            _check_names(kind, list(old))
        names = added[-1]
    # what load would refuse must never be written (a file that cannot be read back)
    check_names(list(names), f"cannot save: {kind} names,")
    if set(map(type, names)) <= {str} and len(set(names)) == len(names):
        return
    first_row: dict[str, int] = {}
    for row, name in enumerate(names):
        if not isinstance(name, str):
            raise CheckpointError(f"cannot save: {kind} name at row {row} is {name!r}, not a string")
        if name in first_row:
            raise CheckpointError(f"cannot save: {kind} name {name!r} appears twice (rows {first_row[name]} and {row})")
        first_row[name] = row


def _prepare_tables(ckpt: Checkpoint) -> dict[str, tuple[Any, str]]:
    """Validate ``ckpt``'s tables; return name -> (table, indexed_by).

    In-memory tables become C-contiguous little-endian float32 arrays; lazy ones (old + new, on disk)
    are already float32 and are streamed a block at a time by :func:`_write_table`.
    """
    if ENTITY_TABLE not in ckpt.entity_tables:
        raise CheckpointError(f"cannot save: the checkpoint has no {ENTITY_TABLE!r} table")
    if RELATION_TABLE in ckpt.entity_tables or ENTITY_TABLE in ckpt.relation_tables:
        raise CheckpointError(f"cannot save: {ENTITY_TABLE!r} and {RELATION_TABLE!r} are in the wrong table dict")
    both = set(ckpt.entity_tables) & set(ckpt.relation_tables)
    if both:
        raise CheckpointError(f"cannot save: table(s) {', '.join(sorted(both))} are both entity- and relation-indexed")
    n_rows = {ENTITIES: ckpt.n_entities, RELATIONS: ckpt.n_relations, CONTEXTS: ckpt.n_contexts}
    prepared = {}
    for group in (ckpt.entity_tables, ckpt.relation_tables):
        for name, table in group.items():
            indexed_by = ckpt.vocab_kind(name)  # context_embeddings is indexed by /contexts when it has its own
            if not name or "/" in name or name in _NOT_TABLES:
                raise CheckpointError(f"cannot save: {name!r} is not a usable table name")
            array = table if is_lazy(table) else np.ascontiguousarray(table, dtype="<f4")
            if array.ndim != 2:
                raise CheckpointError(f"cannot save: table {name!r} has shape {array.shape}; tables are 2-D")
            if array.shape[0] != n_rows[indexed_by]:
                raise CheckpointError(
                    f"cannot save: table {name!r} has {array.shape[0]} rows "
                    f"but there are {n_rows[indexed_by]} {indexed_by}"
                )
            prepared[name] = (array, indexed_by)
    return prepared


def _write_names(w: h5write.H5Writer, name: str, names) -> str:
    """Write a vocabulary a block at a time; return its sha256 (hex).

    Names left on disk are copied as raw bytes from the input file; a first part that carries its
    load-time sha256 (:func:`embretrain.storage.sha256`) is not hashed again, the hash continues.
    """
    dset = w.file.create_dataset(name, shape=(len(names),), dtype=_STRINGS)
    unallocated = h5write.VLEN_REF * len(names)  # the dataset's own storage, allocated at its first write
    pieces = parts(names)
    digest = sha256(pieces[0])
    skip_first = digest is not None
    digest = digest or hashlib.sha256()
    row = 0
    for i, part in enumerate(pieces):
        for raw in name_chunks(part, NAME_BLOCK):
            if not raw:
                continue
            # Fill an object array element by element: np.array(list) would guess a fixed-width dtype.
            data = np.empty(len(raw), dtype=object)
            data[:] = raw
            w.reserve(unallocated + h5write.heap_bytes(raw))
            unallocated = 0
            dset[row : row + len(raw)] = data
            row += len(raw)
            if not (skip_first and i == 0):
                digest.update(b"\n".join(raw))
                digest.update(b"\n")
        check_unchanged(part)  # names copied from the input file are the names hashed at load
    return digest.hexdigest()


def _emit_table(table, digest, write_block, copy_part=None, cancel: threading.Event | None = None):
    """Hand every row block of ``table`` to ``write_block(row, block)`` and return its sha256 state (None if
    ``cancel`` was set). The one walk over a table's parts both writers share.

    ``digest``: the sha256 state the table's first part carries (:func:`embretrain.storage.sha256`), or
    None: for a whole table nothing is hashed; for old + new, hashing continues with the new rows only.
    ``copy_part(part, row)``: may copy that already-hashed first part some faster way; True if it did.
    """
    known = digest is not None
    digest = digest if known else hashlib.sha256()
    row = 0
    for i, part in enumerate(parts(table)):
        hash_it = not (known and i == 0)
        if hash_it or copy_part is None or not copy_part(part, row):
            for start, block in blocks(part):
                if cancel is not None and cancel.is_set():
                    return None
                write_block(row + start, block)
                if hash_it:
                    digest.update(block)
        check_unchanged(part)  # rows copied from the input file are the bytes hashed at load
        row += int(part.shape[0])
    return digest


def _write_table(f: h5py.File, name: str, table, digest=None, dset: h5py.Dataset | None = None) -> h5py.Dataset:
    """Write a table a block at a time through h5py into a contiguous, uncompressed dataset with its sha256.

    ``digest``: as for :func:`_emit_table`. ``dset``: the dataset to fill (made by :func:`_create_table`),
    else a new one.
    """
    # Contiguous and uncompressed: the fastest to stream, and get_offset() finds the raw bytes.
    if dset is None:
        dset = f.create_dataset(name, shape=table.shape, dtype="<f4")

    def write_block(row: int, block: np.ndarray) -> None:
        dset.write_direct(block, dest_sel=np.s_[row : row + len(block)])

    dset.attrs["sha256"] = _emit_table(table, digest, write_block).hexdigest()
    return dset


def _create_table(f: h5py.File, name: str, shape: tuple[int, int]) -> tuple[h5py.Dataset, int | None]:
    """A contiguous, uncompressed float32 dataset whose file space is allocated now (never filled by HDF5);
    returns it and the byte offset where its rows go, or None if they must go through h5py."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # every byte is written by _stream_table
    dset = f.create_dataset(name, shape=shape, dtype="<f4", dcpl=dcpl)
    offset = raw_offset(dset) if shape[0] and shape[1] and sys.byteorder == "little" else None
    return dset, offset


def _stream_table(fd: int, offset: int, table, digest, cancel: threading.Event):
    """Write a table's rows with positional writes at ``offset`` of the open output file ``fd``; return its
    sha256 state. Runs beside the h5py calls writing the names: no h5py here, only the GIL-free system
    calls and hashing. On-disk old rows whose digest is known are copied file to file by the kernel.

    ``digest``: as for :func:`_emit_table`.
    """
    row_bytes = int(table.shape[1]) * 4

    def write_block(row: int, block: np.ndarray) -> None:
        pwrite_all(fd, block, offset + row * row_bytes)

    def copy_part(part, row: int) -> bool:
        return copy_into(part, fd, offset + row * row_bytes)

    return _emit_table(table, digest, write_block, copy_part, cancel)


def _write_strings(w: h5write.H5Writer, name: str, items: list[str]) -> h5py.Dataset:
    # Fill an object array element by element: np.array(list) would guess a fixed-width dtype.
    data = np.empty(len(items), dtype=object)
    data[:] = items
    encoded = [item.encode("utf-8", "surrogatepass") for item in items]
    w.reserve(h5write.VLEN_REF * len(items) + h5write.heap_bytes(encoded))
    return w.file.create_dataset(name, data=data, dtype=_STRINGS)


def save(ckpt: Checkpoint, path: str | os.PathLike, *, keep: int = 0) -> None:
    """Write ``ckpt`` to ``path`` in the native layout, atomically (see :mod:`embretrain.atomic`).

    ``keep`` > 0 keeps that many previous versions as ``path.1`` (newest) .. ``path.<keep>``.

    Raises:
        UsageError: the target directory is missing or not writable.
        CheckpointError: ``ckpt`` cannot be stored (rows do not match names, bad parameter types, ...).
    """
    path = Path(path)
    _check_names("entity", ckpt.entities)
    _check_names("relation", ckpt.relations)
    vocabularies = [(ENTITIES, ckpt.entities), (RELATIONS, ckpt.relations)]
    if ckpt.contexts is not None:
        _check_names("context", ckpt.contexts)
        vocabularies.append((CONTEXTS, ckpt.contexts))
    tables = _prepare_tables(ckpt)
    params = {}
    for name, value in ckpt.params.items():
        if name in _RESERVED_ATTRS:
            raise CheckpointError(f"cannot save: parameter name {name!r} is reserved for the file format")
        params[name] = _param_value(name, value)
    try:
        lineage = [json.dumps(record, ensure_ascii=False) for record in ckpt.lineage]
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot save: a lineage record is not JSON-serialisable ({err})") from err
    if ckpt.extras:
        logger.info("not saving format-specific extras (%s) in the native format", ", ".join(ckpt.extras))

    check_room(path, table_bytes(table for table, _ in tables.values()))
    try:
        with atomic_write(path, keep=keep) as tmp, h5write.create(tmp) as w:
            f = w.file
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["model"] = ckpt.model
            f.attrs["dim"] = int(tables[ENTITY_TABLE][0].shape[1])
            f.attrs["params"] = json.dumps(list(params))
            for name, value in params.items():
                f.attrs[name] = value

            # Tables get their file space first and are written by a second thread with positional
            # writes (the GIL-free part: copying rows, hashing new ones) while this one has h5py
            # encode and write the names.
            created = {name: _create_table(f, name, table.shape) for name, (table, _) in tables.items()}
            w.reserve()  # the tables' space (allocated now, written below) before any row is written
            # a sha256 the old rows carry from load is continued, not recomputed (see storage.sha256)
            known = {name: sha256(parts(table)[0]) for name, table in ckpt.tables().items()}
            raw = {name: offset for name, (_, offset) in created.items() if offset is not None}
            cancel = threading.Event()
            fd = os.open(tmp, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)) if raw else None
            try:
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embretrain-save") as pool:
                    def stream_tables():
                        return {name: _stream_table(fd, offset, tables[name][0], known[name], cancel)
                                for name, offset in raw.items()}

                    pending = pool.submit(stream_tables) if raw else None
                    try:
                        for name, names in vocabularies:
                            try:
                                sha = _write_names(w, name, names)
                            except UnicodeEncodeError as err:
                                raise CheckpointError(
                                    f"cannot save: a name in /{name} is not valid Unicode ({err})"
                                ) from err
                            f[name].attrs["sha256"] = sha
                        _write_strings(w, LINEAGE, lineage)
                    except BaseException:
                        cancel.set()
                        raise
                    streamed = pending.result() if pending is not None else {}
            finally:
                if fd is not None:
                    os.close(fd)
            for name, (table, indexed_by) in tables.items():
                dset = created[name][0]
                if name in streamed:
                    dset.attrs["sha256"] = streamed[name].hexdigest()
                else:  # no rows, or a layout h5py must write
                    _write_table(f, name, table, known[name], dset)
                dset.attrs["indexed_by"] = indexed_by
    except (OSError, RuntimeError) as err:
        # Out of disk, a file-size limit (EFBIG), an I/O error: h5py reports some of these as
        # RuntimeError from deep in HDF5. atomic_write has already removed the temp file.
        raise EmbretrainError(f"{write_failure(path, err)}; nothing was written and {path} is unchanged") from err
    logger.info(
        "saved %s: model=%s, %d entities, %d relations, dim=%d",
        path, ckpt.model, ckpt.n_entities, ckpt.n_relations, ckpt.dim,
    )

