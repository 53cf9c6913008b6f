"""What ``embretrain inspect`` shows for a native file: checksum problems are reported, not raised.

Owns: :func:`describe`. Must not: load tables into memory (each is hashed streaming from disk).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .checksums import _scan_names, _status, table_sha256
from .layout import ENTITIES, RELATIONS, _open, _read_layout

__all__ = ["describe"]

logger = logging.getLogger(__name__)

def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Summarise a checkpoint for ``embretrain inspect``; checksum problems are reported, not raised.

    Returns:
        A JSON-serialisable dict: ``path``, ``format`` (None for a hand-written file),
        ``format_version``, ``model``, ``dim``, ``params``, ``counts`` (``entities``,
        ``relations``), ``tables`` (name -> ``shape``, ``dtype``, ``indexed_by``, ``checksum``),
        ``vocabularies`` (name -> ``count``, ``checksum``), ``checksums`` (overall: ``"ok"``,
        ``"MISMATCH"`` if any fails, else ``"missing"`` if any is absent) and ``lineage``.
        Each ``checksum`` is ``"ok"``, ``"MISMATCH"`` or ``"missing"``.

    Raises:
        CheckpointError: the file cannot be read as a checkpoint at all.
    """
    path = Path(path)
    with _open(path) as f:
        layout = _read_layout(f, path, quiet=True)
        counts = {ENTITIES: layout.n_entities, RELATIONS: layout.n_relations}
        # names are decoded (UTF-8 and uniqueness checked) and hashed a block at a time
        computed = {name: _scan_names(dset, path, name).hexdigest() for name, dset in layout.vocab_datasets.items()}
        vocabularies = {
            name: {"count": counts[name], "checksum": _status(dset, lambda n=name: computed[n])}
            for name, dset in layout.vocab_datasets.items()
        }
        tables = {
            name: {
                "shape": [int(n) for n in dset.shape],
                "dtype": dset.dtype.name,
                "indexed_by": indexed_by,
                "checksum": _status(dset, lambda d=dset: table_sha256(d)),  # streams from disk
            }
            for name, (dset, indexed_by) in layout.tables.items()
        }
    statuses = [v["checksum"] for v in (*vocabularies.values(), *tables.values())]
    overall = "MISMATCH" if "MISMATCH" in statuses else "missing" if "missing" in statuses else "ok"
    return {
        "path": str(path),
        "format": layout.format,
        "format_version": layout.format_version,
        "model": layout.model,
        "dim": layout.dim,
        "params": layout.params,
        "counts": counts,
        "tables": tables,
        "vocabularies": vocabularies,
        "checksums": overall,
        "lineage": layout.lineage,
    }


