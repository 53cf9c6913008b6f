"""Export a table to the formats other tools read: word2vec (text or binary), TSV, TensorBoard projector.

* ``word2vec``: the text format of Mikolov's ``word2vec.c`` (``-binary 0``): a header line
  ``<count> <dim>``, then one line per row: the name, a space, ``dim`` space-separated numbers.
* ``word2vec-binary``: the same header, then per row the name, a space, ``dim`` little-endian float32
  and a newline (``word2vec.c -binary 1``; gensim reads it with ``binary=True``).
* ``tsv``: ``name<TAB>v1<TAB>...<TAB>v_dim`` per row, no header.
* ``projector``: a directory with ``vectors.tsv`` (numbers only) and ``metadata.tsv`` (one name
  per line, no header, as the Embedding Projector wants for a single column).

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

__all__ = ["FORMATS", "export", "default_out", "rows_to_export"]

logger = logging.getLogger(__name__)

FORMATS = ("word2vec", "word2vec-binary", "tsv", "projector")
_SUFFIX = {"word2vec": ".w2v.txt", "word2vec-binary": ".w2v.bin", "tsv": ".vectors.tsv", "projector": ".projector"}
_WHITESPACE = re.compile(r"[\s\x00]+")
_TSV_BREAKERS = re.compile(r"[\t\r\n\x00]+")


def default_out(ckpt_path: str | os.PathLike, fmt: str) -> str:
    """``<ckpt>.w2v.txt``, ``<ckpt>.w2v.bin``, ``<ckpt>.vectors.tsv`` or the directory ``<ckpt>.projector``."""
    return os.fspath(ckpt_path).rstrip("/") + _SUFFIX[fmt]


def rows_to_export(ckpt: Checkpoint, table: str, only_new: bool) -> tuple[list[str], np.ndarray]:
    """(names, rows ``[n, dim]``) of ``table``; with ``only_new``, the rows added by the last extend.

    Raises:
        UsageError: unknown table, or ``only_new`` and the lineage records no run that added rows.
    """
    tables = ckpt.tables()
    if table not in tables:
        raise UsageError(f"the checkpoint has no table {table!r}; it has {', '.join(tables)}")
    relation = table in ckpt.relation_tables
    names = ckpt.relations if relation else ckpt.entities
    values = tables[table]
    if not only_new:
        return list(names), values
    kind = "relations" if relation else "entities"
    for rec in reversed(ckpt.lineage):
        if rec.get(f"{kind}_added"):
            start = int(rec.get(f"{kind}_before", 0))
            stop = start + int(rec[f"{kind}_added"])
            return list(names[start:stop]), values[start:stop]
    raise UsageError(f"--only-new: the checkpoint's lineage records no run that added {kind}")


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
) -> dict[str, Any]:
    """Write ``table`` of ``ckpt`` to ``out`` in ``fmt`` (atomically).

    Args:
        ckpt: any loaded checkpoint.
        fmt: one of :data:`FORMATS`.
        out: file to write (a directory for ``projector``).
        only_new: only the rows added by the last ``extend`` (from the lineage).
        table: ``entity_embeddings`` (default), ``relation_embeddings`` or another table name.

    Returns:
        Summary: ``format``, ``out``, ``table``, ``rows``, ``dim``, ``names_changed``.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    names, values = rows_to_export(ckpt, table, only_new)
    values = np.ascontiguousarray(values, dtype="<f4")
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
            with atomic_write(out) as tmp:
                tmp.write_text("".join(f"{name}\t{row}\n" for name, row in zip(names, numbers)), encoding="utf-8")
        else:
            with atomic_dir(out) as tmp:
                (tmp / "vectors.tsv").write_text(_text_rows(values, "\t"), encoding="utf-8")
                (tmp / "metadata.tsv").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    logger.info("exported %d rows of %s to %s (%s)", n, table, out, fmt)
    return {"format": fmt, "out": os.fspath(out), "table": table, "rows": int(n), "dim": int(dim),
            "names_changed": int(changed)}

