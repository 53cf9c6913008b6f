"""Reading a native checkpoint: every table read a block at a time into one aligned array (positional
reads in a second thread while this one decodes names), or left in the file (``old_rows="on-disk"``).

Owns: :func:`load`. Must not: decide the layout (:mod:`.layout`) or the checksum verdicts
(:mod:`.checksums`), write anything.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError
from ...storage import (
    DiskNames,
    DiskRows,
    aligned_empty,
    freeze_names,
    freeze_rows,
    pread_exact,
    raw_offset,
)
from ..base import Checkpoint
from .checksums import _check_stored, _read_names, _scan_names, _scan_table, _status_of
from .layout import ENTITIES, RELATIONS, _Layout, _open, _open_source, _read_layout, _reading

__all__ = ["OLD_ROWS", "load"]

logger = logging.getLogger(__name__)

OLD_ROWS = ("memory", "on-disk")

def load(path: str | os.PathLike, *, verify: bool = True, old_rows: str = "memory", read_only: bool = False) -> Checkpoint:
    """Read a native checkpoint.

    Args:
        path: the ``.h5`` file.
        verify: recompute every stored sha256 and fail on a mismatch.
        old_rows: ``"memory"`` reads every table into one array each; ``"on-disk"`` leaves tables
            (:class:`~embretrain.storage.DiskRows`) and names (:class:`~embretrain.storage.DiskNames`) in the file,
            which stays open read-only for as long as they are referenced. Either way every table
            is read once here to check its sha256 and that it holds no NaN/Inf.
        read_only: return the in-memory tables and names frozen (:func:`~embretrain.storage.freeze_rows`,
            what ``extend`` does: frozen rows are never written to); they carry the sha256 computed
            here, which a later save of a grown table or vocabulary continues instead of hashing the
            old part again. Rows and names left on disk always carry theirs.

    Returns:
        A :class:`Checkpoint` with C-contiguous float32 tables and ``checksums`` set to
        ``"verified"``, ``"missing"`` (some datasets carry no sha256; warned) or
        ``"unverified"`` (``verify=False``).

    Raises:
        CheckpointError: the file is missing, not a checkpoint, malformed or fails its checksum.
        UsageError: ``old_rows`` is not one of :data:`OLD_ROWS`.
    """
    if old_rows not in OLD_ROWS:
        raise UsageError(f"old_rows must be one of {', '.join(OLD_ROWS)}, got {old_rows!r}")
    path = Path(path)
    if old_rows == "on-disk":
        return _load_on_disk(path, verify)
    with _open(path) as f:
        layout = _read_layout(f, path)
        digests: dict[str, Any] = {}
        vocabs: dict[str, Any] = {ENTITIES: [], RELATIONS: []}
        # Tables are read (positional reads, hashing and NaN checks release the GIL) in a second
        # thread while this one decodes names; both are needed before anything else can start.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embretrain-load") as pool:
            fd = f.id.get_vfd_handle() if f.driver == "sec2" else None
            pending = pool.submit(_read_tables, path, layout, fd, verify)
            try:
                for name, dset in layout.vocab_datasets.items():
                    vocabs[name], digests[name] = _read_names(dset, path, name)
            finally:
                tables = pending.result()
        missing = _check_stored(path, layout, digests, {n: d for n, (_, d) in tables.items()}, verify)

    entity_tables: dict[str, np.ndarray] = {}
    relation_tables: dict[str, np.ndarray] = {}
    if read_only:  # frozen: nothing can edit them, so the sha256 they carry stays true
        for name, digest in digests.items():
            vocabs[name] = freeze_names(vocabs[name], digest)
    for name, (table, digest) in tables.items():
        if read_only:
            table = freeze_rows(table, digest)
        (entity_tables if layout.tables[name][1] == ENTITIES else relation_tables)[name] = table
    ckpt = Checkpoint(
        model=layout.model,
        entities=vocabs[ENTITIES],
        relations=vocabs[RELATIONS],
        entity_tables=entity_tables,
        relation_tables=relation_tables,
        params=layout.params,
        lineage=layout.lineage,
        source=str(path),
        checksums=_status_of(path, missing, verify),
    )
    logger.debug(
        "loaded %s: model=%s, %d entities, %d relations, dim=%d, checksums %s",
        path, layout.model, ckpt.n_entities, ckpt.n_relations, layout.dim, ckpt.checksums,
    )
    return ckpt


def _read_tables(path: Path, layout: _Layout, fd: int | None, verify: bool) -> dict[str, tuple[np.ndarray, object]]:
    """Every table read into one aligned array each: name -> (array, sha256 state or None)."""
    out = {}
    for name, (dset, _) in layout.tables.items():
        table = aligned_empty(dset.shape)
        offset = raw_offset(dset) if fd is not None else None
        row_bytes = max(1, table.shape[1] * 4)

        def fill(block: np.ndarray, start: int, offset=offset, dset=dset, row_bytes=row_bytes) -> None:
            if offset is not None:
                pread_exact(fd, block, offset + start * row_bytes, path)
            elif len(block):
                dset.read_direct(block, np.s_[start : start + len(block)])  # converts dtype and byte order

        out[name] = (table, _scan_table(path, name, table.shape, fill, verify and "sha256" in dset.attrs, table))
    return out


def _load_on_disk(path: Path, verify: bool) -> Checkpoint:
    """``old_rows="on-disk"``: check everything now (one streaming pass), keep tables and names in the file."""
    source = _open_source(path)
    try:
        with _reading(path):
            layout = _read_layout(source.h5, path)
            tables = {name: DiskRows(source, name) for name in layout.tables}
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embretrain-load") as pool:
                def scan_tables():
                    return {name: _scan_table(path, name, rows.shape, lambda b, s, r=rows: r.read(s, s + len(b), out=b),
                                              verify and "sha256" in layout.tables[name][0].attrs, None)
                            for name, rows in tables.items()}

                pending = pool.submit(scan_tables)
                try:
                    vocab_digests = {name: _scan_names(dset, path, name) for name, dset in layout.vocab_datasets.items()}
                finally:
                    table_digests = pending.result()
            missing = _check_stored(path, layout, vocab_digests, table_digests, verify)
    except BaseException:
        source.close()
        raise
    # the sha256 computed by the scan travels with the rows and names left on disk
    tables = {name: DiskRows(source, name, table_digests[name]) for name in tables}
    vocabs = {name: DiskNames(source, name, vocab_digests[name]) for name in layout.vocab_datasets}
    entities = vocabs[ENTITIES]
    relations = vocabs.get(RELATIONS, [])
    logger.info("%s: old rows stay on disk (%.0f MB of tables, %d names)", path,
                sum(t.nbytes for t in tables.values()) / 2**20, len(entities) + len(relations))
    return Checkpoint(
        model=layout.model,
        entities=entities,
        relations=relations,
        entity_tables={n: t for n, t in tables.items() if layout.tables[n][1] == ENTITIES},
        relation_tables={n: t for n, t in tables.items() if layout.tables[n][1] == RELATIONS},
        params=layout.params,
        lineage=layout.lineage,
        source=str(path),
        checksums=_status_of(path, missing, verify),
    )


