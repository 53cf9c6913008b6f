"""Export a table to the formats other tools read: word2vec (text or binary), TSV, TensorBoard projector.

* ``word2vec``: the text format of Mikolov's ``word2vec.c`` (``-binary 0``): a header line
  ``<count> <dim>``, then one line per row: the name, a space, ``dim`` space-separated numbers.
* ``word2vec-binary``: the same header, then per row the name, a space, ``dim`` little-endian float32
  and a newline (``word2vec.c -binary 1``; gensim reads it with ``binary=True``).
* ``tsv``: ``name<TAB>v1<TAB>...<TAB>v_dim`` per row, no header; rows of an entity-indexed table end
  with one more field, ``pending`` (``true`` for an entity added without data and not trained since).
* ``projector``: a log directory TensorBoard's projector plugin loads (``tensorboard --logdir DIR``):
  ``projector_config.pbtxt`` (a ``ProjectorConfig`` naming the tensor, its shape and its metadata),
  ``vectors.tsv`` (the tensor: ``dim`` tab-separated numbers per row) and ``metadata.tsv`` (a header
  row, then one row per vector: ``name``, ``is_new``, ``pending``). The same two TSV files load in the
  standalone Embedding Projector (projector.tensorflow.org, "Load").

Pending entities (see :mod:`embretrain.delta`) hold their random start row: ``skip_pending`` leaves them
out of any export (word2vec has no column to flag them).

Numbers are written with 9 significant digits, which round-trips every float32 exactly.
word2vec has no escaping, so whitespace (and NUL) inside a name becomes ``_`` (counted in the summary);
TSV outputs replace tabs, line breaks and NULs inside names with a space: no field of an export ever
holds a NUL or a line break.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import numpy as np

from .atomic import atomic_dir, atomic_write
from .checkpoint import ENTITY_TABLE, Checkpoint
from .errors import UsageError
from .summary import last_added
from .vocab import Vocab

__all__ = ["FORMATS", "PROJECTOR_CONFIG", "export", "default_out", "rows_to_export", "projector_metadata"]

logger = logging.getLogger(__name__)

FORMATS = ("word2vec", "word2vec-binary", "tsv", "projector")
_SUFFIX = {"word2vec": ".w2v.txt", "word2vec-binary": ".w2v.bin", "tsv": ".vectors.tsv", "projector": ".projector"}
_WHITESPACE = re.compile(r"[\s\x00]+")
_TSV_BREAKERS = re.compile(r"[\t\r\n\x00]+")
PROJECTOR_CONFIG = "projector_config.pbtxt"  # the name the plugin looks for in a log directory


def default_out(ckpt_path: str | os.PathLike, fmt: str) -> str:
    """``<ckpt>.w2v.txt``, ``<ckpt>.w2v.bin``, ``<ckpt>.vectors.tsv`` or the directory ``<ckpt>.projector``."""
    return os.fspath(ckpt_path).rstrip("/") + _SUFFIX[fmt]


def _kind(ckpt: Checkpoint, table: str) -> str:
    """``"relations"``, ``"contexts"`` or ``"entities"``: the vocabulary of ``table``'s rows (as the lineage counts them)."""
    return ckpt.vocab_kind(table)


def rows_to_export(ckpt: Checkpoint, table: str, only_new: bool) -> tuple[list[str], np.ndarray]:
    """(names, rows ``[n, dim]``) of ``table``; with ``only_new``, the rows added by the last extend.

    Raises:
        UsageError: unknown table, or ``only_new`` and the lineage records no run that added rows.
    """
    return _rows(ckpt, table, _row_ids(ckpt, table, only_new))


def pending_ids(ckpt: Checkpoint, table: str) -> set[int]:
    """Ids of the pending entities (from the lineage) for an entity-indexed ``table``; none for a relation table."""
    pending = ckpt.pending if _kind(ckpt, table) == "entities" else []
    if not pending:
        return set()
    return set(Vocab.partial(ckpt.entities, pending).index.values())  # one pass over the names, on disk too


def _rows(ckpt: Checkpoint, table: str, ids: range) -> tuple[list[str], np.ndarray]:
    names = ckpt.names_of(table)
    return list(names[ids.start : ids.stop]), ckpt.tables()[table][ids.start : ids.stop]


def _row_ids(ckpt: Checkpoint, table: str, only_new: bool) -> range:
    tables = ckpt.tables()
    if table not in tables:
        raise UsageError(f"the checkpoint has no table {table!r}; it has {', '.join(tables)}")
    if not only_new:
        return range(len(tables[table]))
    added = last_added(ckpt.lineage, _kind(ckpt, table))
    if not added:
        raise UsageError(f"only_new: the checkpoint's lineage records no run that added {_kind(ckpt, table)}")
    return added


def projector_metadata(ckpt: Checkpoint, table: str, ids: range, names: list[str]) -> dict[str, list[str]]:
    """The columns of ``metadata.tsv`` for rows ``ids`` of ``table``: column name -> one value per row.

    A column is one entry here; the projector colours and labels points by any of them.
    """
    added = last_added(ckpt.lineage, _kind(ckpt, table))
    pending = pending_ids(ckpt, table)
    return {
        "name": names,
        "is_new": ["true" if i in added else "false" for i in ids],  # added by the last run that added rows
        "pending": ["true" if i in pending else "false" for i in ids],  # no data yet: a random start row
    }


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (our table names are plain ASCII; quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_projector(directory, ckpt: Checkpoint, table: str, ids: range, names: list[str], values: np.ndarray) -> None:
    """The three files of the projector plugin's format (tensorboard/plugins/projector/projector_config.proto).

    The tensor is TSV, not a TF checkpoint: the plugin reads ``tensor_path`` files directly and so
    does the standalone projector, and no TensorFlow is needed to write it. Paths are relative to
    the config file, which the plugin requires (it refuses paths resolving outside its directory).
    """
    n, dim = values.shape
    (directory / "vectors.tsv").write_text(_text_rows(values, "\t"), encoding="utf-8")
    columns = projector_metadata(ckpt, table, ids, names)
    rows = zip(*columns.values())
    # A header row whenever there are two or more columns: that is how the projector tells them apart.
    (directory / "metadata.tsv").write_text(
        "\t".join(columns) + "\n" + "".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    (directory / PROJECTOR_CONFIG).write_text(
        "embeddings {\n"
        f"  tensor_name: {_pbtxt_string(table)}\n"
        f"  tensor_shape: {n}\n"
        f"  tensor_shape: {dim}\n"
        '  tensor_path: "vectors.tsv"\n'
        '  metadata_path: "metadata.tsv"\n'
        "}\n",
        encoding="utf-8",
    )


def _clean(names: list[str], pattern: re.Pattern, repl: str, fmt: str) -> tuple[list[str], int]:
    cleaned = [pattern.sub(repl, n) for n in names]
    changed = sum(a != b for a, b in zip(names, cleaned))
    if changed:
        if len(set(cleaned)) != len(cleaned):
            raise UsageError(
                f"{fmt}: names that differ only in whitespace would collide after replacing it with {repl!r}; "
                "export as tsv or projector instead"
            )
        logger.warning("%s: %d name(s) contain characters the format cannot hold; replaced with %r", fmt, changed, repl)
    return cleaned, changed


def _text_rows(values: np.ndarray, sep: str) -> str:
    line = sep.join(["%.9g"] * values.shape[1])
    return "".join(line % tuple(row) + "\n" for row in values.tolist())


def export(
    ckpt: Checkpoint,
    fmt: str,
    out: str | os.PathLike,
    *,
    only_new: bool = False,
    table: str = ENTITY_TABLE,
    skip_pending: bool = False,
) -> dict[str, Any]:
    """Write ``table`` of ``ckpt`` to ``out`` in ``fmt`` (atomically).

    Args:
        ckpt: any loaded checkpoint.
        fmt: one of :data:`FORMATS`.
        out: file to write (a directory for ``projector``).
        only_new: only the rows added by the last ``extend`` (from the lineage).
        table: ``entity_embeddings`` (default), ``relation_embeddings`` or another table name.
        skip_pending: leave out the pending entities (added without data, not trained since).

    Returns:
        Summary: ``format``, ``out``, ``table``, ``rows``, ``dim``, ``names_changed``, ``pending``
        (pending rows written) and ``pending_skipped``.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ids = _row_ids(ckpt, table, only_new)
    names, values = _rows(ckpt, table, ids)
    values = np.ascontiguousarray(values, dtype="<f4")
    pending = pending_ids(ckpt, table)
    flags = np.isin(np.arange(ids.start, ids.stop), np.fromiter(pending, dtype=np.int64, count=len(pending)))
    n_skipped = 0
    if skip_pending and flags.any():
        keep = ~flags
        n_skipped = int(flags.sum())
        ids = np.arange(ids.start, ids.stop)[keep].tolist()  # ints: `in range` stays O(1)
        names = [n for n, k in zip(names, keep.tolist()) if k]
        values, flags = np.ascontiguousarray(values[keep]), flags[keep]
    n, dim = values.shape
    if fmt.startswith("word2vec"):
        names, changed = _clean(names, _WHITESPACE, "_", fmt)
        with atomic_write(out) as tmp, open(tmp, "wb") as fh:
            fh.write(f"{n} {dim}\n".encode())
            if fmt == "word2vec":
                numbers = _text_rows(values, " ").splitlines()
                fh.write("".join(f"{name} {row}\n" for name, row in zip(names, numbers)).encode("utf-8"))
            else:
                for name, row in zip(names, values):
                    fh.write(name.encode("utf-8") + b" " + row.tobytes() + b"\n")
    else:
        names, changed = _clean(names, _TSV_BREAKERS, " ", fmt)
        if fmt == "tsv":
            numbers = _text_rows(values, "\t").splitlines()
            if _kind(ckpt, table) == "entities":  # the pending flag, last: name and vector keep their columns
                numbers = [f"{row}\t{'true' if p else 'false'}" for row, p in zip(numbers, flags.tolist())]
            with atomic_write(out) as tmp:
                tmp.write_text("".join(f"{name}\t{row}\n" for name, row in zip(names, numbers)), encoding="utf-8")
        else:
            with atomic_dir(out) as tmp:
                _write_projector(tmp, ckpt, table, ids, names, values)
    logger.info("exported %d rows of %s to %s (%s)", n, table, out, fmt)
    return {"format": fmt, "out": os.fspath(out), "table": table, "rows": int(n), "dim": int(dim),
            "names_changed": int(changed), "pending": int(flags.sum()), "pending_skipped": n_skipped}

