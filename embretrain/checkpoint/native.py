"""Our native checkpoint: one HDF5 file holding vocabularies, tables, parameters and lineage.

Other tools read this layout directly with h5py, so it is fixed (``format_version`` 1)::

    /                     attrs: format="embretrain", format_version=1, model=<str>, dim=<int>,
                                 params=<JSON list of param names>, and one attr per param
    /entities             1-D UTF-8 vlen strings; row i is entity id i          attrs: sha256
    /relations            1-D UTF-8 vlen strings (length 0 for pair models)     attrs: sha256
    /entity_embeddings    float32 [n_entities, dim]        attrs: indexed_by="entities", sha256
    /relation_embeddings  float32 [n_relations, rel_dim]   attrs: indexed_by="relations", sha256
    /<other table>        float32 [n_rows, width], e.g. /context_embeddings (same attrs)
    /lineage              1-D UTF-8 vlen strings, one JSON object per run (optional)

``sha256`` of a table is over its C-order little-endian float32 bytes; of a vocabulary over
each name encoded as UTF-8 followed by ``"\\n"``. Files written by hand with h5py (no format
attribute, no checksums) still load, with a warning.

Every failure to read (missing, a directory, not HDF5, truncated, wrong shape, corrupt data)
raises :class:`~embretrain.errors.CheckpointError` with one sentence naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_write
from ..errors import CheckpointError, EmbretrainError
from .base import ENTITY_TABLE, RELATION_TABLE, Checkpoint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "is_native",
    "load",
    "save",
    "describe",
    "table_sha256",
    "vocab_sha256",
]

logger = logging.getLogger(__name__)

FORMAT = "embretrain"
FORMAT_VERSION = 1  # bump only for a layout change old readers would misread

ENTITIES = "entities"
RELATIONS = "relations"
LINEAGE = "lineage"
_NOT_TABLES = frozenset({ENTITIES, RELATIONS, LINEAGE})
_RESERVED_ATTRS = frozenset({"format", "format_version", "model", "dim", "params"})

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HASH_CHUNK_BYTES = 1 << 24  # 16 MiB per hashlib.update: streams big tables without a full copy
_HASH_CHUNK_NAMES = 1 << 16
_STRINGS = h5py.string_dtype("utf-8")


# --------------------------------------------------------------------------- checksums


def table_sha256(table: np.ndarray | h5py.Dataset) -> str:
    """Hex sha256 of a table's C-order little-endian float32 bytes.

    Args:
        table: ``[n_rows, width]`` array or HDF5 dataset; read and hashed a block of rows at a
            time, so an on-disk dataset is never loaded whole.
    """
    digest = hashlib.sha256()
    n_rows = int(table.shape[0])
    row_bytes = max(1, int(np.prod(table.shape[1:], dtype=np.int64)) * 4)
    step = max(1, _HASH_CHUNK_BYTES // row_bytes)
    for start in range(0, n_rows, step):
        # No copy for an in-memory float32 array on a little-endian machine.
        block = np.ascontiguousarray(table[start : start + step], dtype="<f4")
        digest.update(block)
    return digest.hexdigest()


def vocab_sha256(names: Iterable[str]) -> str:
    """Hex sha256 of the names as UTF-8, each followed by ``"\\n"``."""
    digest = hashlib.sha256()
    names = list(names)
    for start in range(0, len(names), _HASH_CHUNK_NAMES):
        block = names[start : start + _HASH_CHUNK_NAMES]
        digest.update("".join(f"{name}\n" for name in block).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- probing


def _has_hdf5_signature(path: Path) -> bool:
    """True if the HDF5 signature sits at offset 0, 512, 1024, ... (HDF5 allows a user block)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def is_native(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file whose root attribute ``format`` is ``"embretrain"``.

    Never raises: used to pick a format for whatever file the user passed.
    """
    try:
        p = Path(path)
        if not p.is_file() or not _has_hdf5_signature(p):
            return False
        with h5py.File(p, "r") as f:
            return _attr(f, "format") == FORMAT
    except Exception:  # a probe: any unreadable file is simply "not native"
        return False


@contextlib.contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """Open ``path`` read-only; turn every OS/HDF5 failure (now or while reading) into CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        if not _has_hdf5_signature(path):
            raise CheckpointError(
                f"{path} is not an HDF5 file (no HDF5 signature); "
                "an embretrain checkpoint is the .h5 file written by `embretrain train`"
            )
        f = h5py.File(path, "r")
    except OSError as err:
        reason = err.strerror if isinstance(err, PermissionError) else f"{err}; it is truncated or corrupt"
        raise CheckpointError(f"{path}: cannot open the checkpoint ({reason})") from err
    try:
        with f:
            yield f
    except CheckpointError:
        raise
    except (OSError, RuntimeError, KeyError, UnicodeDecodeError) as err:
        # h5py reports damaged metadata or data blocks past the end of a cut-off file this way.
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err}); it is truncated or corrupt") from err


# --------------------------------------------------------------------------- reading


def _to_python(value: Any) -> Any:
    """HDF5 attribute value -> plain Python (``np.int64`` -> int, ``np.bool_`` -> bool, bytes -> str)."""
    if isinstance(value, np.ndarray):
        return [_to_python(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _attr(obj: h5py.HLObject, name: str) -> Any:
    return _to_python(obj.attrs[name]) if name in obj.attrs else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class _Layout:
    """What a checkpoint holds, validated, before any table data is read."""

    format: str | None
    format_version: int
    model: str
    dim: int
    params: dict[str, Any]
    entities: list[str]
    relations: list[str]
    vocab_datasets: dict[str, h5py.Dataset]  # only those present in the file
    tables: dict[str, tuple[h5py.Dataset, str]]  # name -> (dataset, indexed_by); entity_embeddings first
    lineage: list[dict[str, Any]]


def _read_strings(f: h5py.File, name: str, path: Path) -> list[str] | None:
    """A 1-D string dataset as a list, or None if absent."""
    if name not in f:
        return None
    dset = f[name]
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 1 or h5py.check_string_dtype(dset.dtype) is None:
        kind = "a group" if isinstance(dset, h5py.Group) else f"dtype {dset.dtype}, shape {dset.shape}"
        raise CheckpointError(f"{path}: /{name} must be a 1-D string dataset, found {kind}")
    try:
        # Decode as UTF-8 whatever the declared charset: h5py writes ASCII-tagged bytes by default.
        return dset.asstr("utf-8")[()].tolist()
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: /{name} holds bytes that are not UTF-8 ({err})") from err


def _read_vocab(f: h5py.File, name: str, path: Path) -> list[str] | None:
    names = _read_strings(f, name, path)
    if names is None:
        return None
    first_row: dict[str, int] = {}
    for row, item in enumerate(names):
        if item in first_row:
            raise CheckpointError(
                f"{path}: /{name} lists {item!r} twice (rows {first_row[item]} and {row}); every name must be unique"
            )
        first_row[item] = row
    return names


def _read_layout(f: h5py.File, path: Path, *, quiet: bool = False) -> _Layout:
    """Check structure and read the small parts (attrs, vocabularies, lineage); tables stay on disk."""
    fmt = _attr(f, "format")
    if fmt is None:
        if ENTITIES not in f or ENTITY_TABLE not in f:
            raise CheckpointError(
                f"{path} is an HDF5 file but not an embretrain checkpoint "
                f"(no 'format' attribute and no /{ENTITIES} + /{ENTITY_TABLE} datasets)"
            )
        if not quiet:
            warnings.warn(
                f"{path} has no 'format' attribute; reading it as a hand-written embretrain checkpoint",
                stacklevel=3,
            )
    elif fmt != FORMAT:
        raise CheckpointError(
            f"{path}: 'format' attribute is {fmt!r}, not {FORMAT!r}; this is not an embretrain checkpoint"
        )

    version = _attr(f, "format_version")
    if version is None:
        version = FORMAT_VERSION
    elif not _is_int(version) or version < 1:
        raise CheckpointError(f"{path}: 'format_version' attribute is {version!r}; expected a positive integer")
    elif version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is newer than this embretrain reads ({FORMAT_VERSION}); "
            "upgrade embretrain"
        )

    entities = _read_vocab(f, ENTITIES, path)
    if entities is None:
        raise CheckpointError(f"{path}: missing the /{ENTITIES} dataset (entity names)")
    relations = _read_vocab(f, RELATIONS, path)
    vocab_datasets = {name: f[name] for name in (ENTITIES, RELATIONS) if name in f}
    relations = relations if relations is not None else []
    n_rows = {ENTITIES: len(entities), RELATIONS: len(relations)}

    tables: dict[str, tuple[h5py.Dataset, str]] = {}
    for name, obj in f.items():
        if name in _NOT_TABLES:
            continue
        if not isinstance(obj, h5py.Dataset):
            logger.debug("%s: ignoring group /%s", path, name)
            continue
        if obj.ndim != 2 or obj.dtype.kind != "f" or obj.dtype.itemsize != 4:
            raise CheckpointError(
                f"{path}: table /{name} must be a 2-D float32 dataset, found dtype {obj.dtype}, shape {obj.shape}"
            )
        indexed_by = _attr(obj, "indexed_by")
        if indexed_by is None:  # hand-written file: guess from the name
            indexed_by = RELATIONS if name.startswith("relation") else ENTITIES
        if indexed_by not in n_rows:
            raise CheckpointError(
                f"{path}: table /{name} has indexed_by={indexed_by!r}; expected 'entities' or 'relations'"
            )
        if obj.shape[0] != n_rows[indexed_by]:
            raise CheckpointError(
                f"{path}: table /{name} has {obj.shape[0]} rows but /{indexed_by} has {n_rows[indexed_by]} names"
            )
        tables[name] = (obj, indexed_by)

    if ENTITY_TABLE not in tables:
        raise CheckpointError(f"{path}: missing the /{ENTITY_TABLE} dataset")
    if tables[ENTITY_TABLE][1] != ENTITIES:
        raise CheckpointError(f"{path}: /{ENTITY_TABLE} must be indexed_by 'entities'")
    if RELATION_TABLE in tables and tables[RELATION_TABLE][1] != RELATIONS:
        raise CheckpointError(f"{path}: /{RELATION_TABLE} must be indexed_by 'relations'")
    # Canonical order: the main tables first, then the rest by name.
    order = sorted(tables, key=lambda n: (n not in (ENTITY_TABLE, RELATION_TABLE), n))
    tables = {name: tables[name] for name in order}

    dim = int(tables[ENTITY_TABLE][0].shape[1])
    stored_dim = _attr(f, "dim")
    if stored_dim is not None and stored_dim != dim:
        raise CheckpointError(f"{path}: 'dim' attribute is {stored_dim!r} but /{ENTITY_TABLE} is {dim} wide")

    model = _attr(f, "model")
    if model is None:
        if RELATION_TABLE in tables:
            raise CheckpointError(
                f"{path}: no 'model' attribute; set it to the scorer that made the file, "
                "e.g. h5py.File(path, 'r+').attrs['model'] = 'transe'"
            )
        model = "dot"  # entity-only tables: the pair model is the only one that fits
    elif not isinstance(model, str):
        raise CheckpointError(f"{path}: 'model' attribute is {model!r}; expected a string such as 'transe'")

    params = _read_params(f, path)
    lineage = _read_lineage(f, path)
    return _Layout(fmt, version, model, dim, params, entities, relations, vocab_datasets, tables, lineage)


def _read_params(f: h5py.File, path: Path) -> dict[str, Any]:
    listed = _attr(f, "params")
    if listed is None:
        # Hand-written file: every root attribute we do not own is a scorer parameter.
        names = [name for name in f.attrs if name not in _RESERVED_ATTRS]
    else:
        try:
            names = json.loads(listed)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: 'params' attribute is not a JSON list of names ({err})") from err
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CheckpointError(f"{path}: 'params' attribute must be a JSON list of names, found {listed!r}")
    missing = [name for name in names if name not in f.attrs]
    if missing:
        raise CheckpointError(f"{path}: parameter(s) {', '.join(missing)} are listed in 'params' but have no attribute")
    return {name: _attr(f, name) for name in names}


def _read_lineage(f: h5py.File, path: Path) -> list[dict[str, Any]]:
    records = _read_strings(f, LINEAGE, path) or []
    lineage = []
    for i, text in enumerate(records):
        try:
            record = json.loads(text)
        except ValueError as err:
            raise CheckpointError(f"{path}: /{LINEAGE} record {i} is not valid JSON ({err})") from err
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}: /{LINEAGE} record {i} is not a JSON object")
        lineage.append(record)
    return lineage


def load(path: str | os.PathLike, *, verify: bool = True) -> Checkpoint:
    """Read a native checkpoint.

    Args:
        path: the ``.h5`` file.
        verify: recompute every stored sha256 and fail on a mismatch.

    Returns:
        A :class:`Checkpoint` with C-contiguous float32 tables and ``checksums`` set to
        ``"verified"``, ``"missing"`` (some datasets carry no sha256; warned) or
        ``"unverified"`` (``verify=False``).

    Raises:
        CheckpointError: the file is missing, not a checkpoint, malformed or fails its checksum.
    """
    path = Path(path)
    with _open(path) as f:
        layout = _read_layout(f, path)
        entity_tables: dict[str, np.ndarray] = {}
        relation_tables: dict[str, np.ndarray] = {}
        missing: list[str] = []

        vocabs = {ENTITIES: layout.entities, RELATIONS: layout.relations}
        for name, dset in layout.vocab_datasets.items():
            stored = _attr(dset, "sha256")
            if stored is None:
                missing.append(name)
            elif verify:
                _check(path, "vocabulary", name, stored, vocab_sha256(vocabs[name]))

        for name, (dset, indexed_by) in layout.tables.items():
            table = np.ascontiguousarray(dset[()], dtype=np.float32)  # also turns big-endian into native
            stored = _attr(dset, "sha256")
            if stored is None:
                missing.append(name)
            elif verify:
                _check(path, "table", name, stored, table_sha256(table))
            _check_finite(path, name, table)
            (entity_tables if indexed_by == ENTITIES else relation_tables)[name] = table

    if missing:
        status = "missing"
        if verify:
            warnings.warn(
                f"{path}: no sha256 checksum on {', '.join(missing)}; loaded without verifying them",
                stacklevel=2,
            )
    else:
        status = "verified" if verify else "unverified"

    logger.debug(
        "loaded %s: model=%s, %d entities, %d relations, dim=%d, checksums %s",
        path, layout.model, len(layout.entities), len(layout.relations), layout.dim, status,
    )
    return Checkpoint(
        model=layout.model,
        entities=layout.entities,
        relations=layout.relations,
        entity_tables=entity_tables,
        relation_tables=relation_tables,
        params=layout.params,
        lineage=layout.lineage,
        source=str(path),
        checksums=status,
    )


def _check_finite(path: Path, name: str, table: np.ndarray) -> None:
    """Reject NaN/Inf rows: a checksum only proves the bytes are as written, not that they are sane,
    and frozen garbage rows would be copied into every checkpoint grown from this one."""
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise CheckpointError(
            f"{path}: table /{name} holds NaN or Inf in {len(bad)} row(s) (first: row {int(bad[0])}); "
            "the checkpoint is unusable, restore an earlier version"
        )


def _check(path: Path, kind: str, name: str, stored: Any, computed: str) -> None:
    if stored != computed:
        raise CheckpointError(
            f"{path}: {kind} '{name}' fails its sha256 checksum (stored {stored}, computed {computed}); "
            "the file is corrupt"
        )


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
        vocabs = {ENTITIES: layout.entities, RELATIONS: layout.relations}
        vocabularies = {
            name: {"count": len(vocabs[name]), "checksum": _status(dset, lambda n=name: vocab_sha256(vocabs[n]))}
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
        "counts": {ENTITIES: len(layout.entities), RELATIONS: len(layout.relations)},
        "tables": tables,
        "vocabularies": vocabularies,
        "checksums": overall,
        "lineage": layout.lineage,
    }


def _status(dset: h5py.Dataset, compute) -> str:
    stored = _attr(dset, "sha256")
    if stored is None:
        return "missing"
    return "ok" if stored == compute() else "MISMATCH"


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


def _check_names(kind: str, names: list[str]) -> None:
    first_row: dict[str, int] = {}
    for row, name in enumerate(names):
        if not isinstance(name, str):
            raise CheckpointError(f"cannot save: {kind} name at row {row} is {name!r}, not a string")
        if name in first_row:
            raise CheckpointError(f"cannot save: {kind} name {name!r} appears twice (rows {first_row[name]} and {row})")
        first_row[name] = row


def _prepare_tables(ckpt: Checkpoint) -> dict[str, tuple[np.ndarray, str]]:
    """Validate ``ckpt``'s tables; return name -> (C-contiguous little-endian float32 array, indexed_by)."""
    if ENTITY_TABLE not in ckpt.entity_tables:
        raise CheckpointError(f"cannot save: the checkpoint has no {ENTITY_TABLE!r} table")
    if RELATION_TABLE in ckpt.entity_tables or ENTITY_TABLE in ckpt.relation_tables:
        raise CheckpointError(f"cannot save: {ENTITY_TABLE!r} and {RELATION_TABLE!r} are in the wrong table dict")
    both = set(ckpt.entity_tables) & set(ckpt.relation_tables)
    if both:
        raise CheckpointError(f"cannot save: table(s) {', '.join(sorted(both))} are both entity- and relation-indexed")
    n_rows = {ENTITIES: ckpt.n_entities, RELATIONS: ckpt.n_relations}
    prepared = {}
    for indexed_by, group in ((ENTITIES, ckpt.entity_tables), (RELATIONS, ckpt.relation_tables)):
        for name, table in group.items():
            if not name or "/" in name or name in _NOT_TABLES:
                raise CheckpointError(f"cannot save: {name!r} is not a usable table name")
            array = np.ascontiguousarray(table, dtype="<f4")
            if array.ndim != 2:
                raise CheckpointError(f"cannot save: table {name!r} has shape {array.shape}; tables are 2-D")
            if array.shape[0] != n_rows[indexed_by]:
                raise CheckpointError(
                    f"cannot save: table {name!r} has {array.shape[0]} rows "
                    f"but there are {n_rows[indexed_by]} {indexed_by}"
                )
            prepared[name] = (array, indexed_by)
    return prepared


def _write_strings(f: h5py.File, name: str, items: list[str]) -> h5py.Dataset:
    # Fill an object array element by element: np.array(list) would guess a fixed-width dtype.
    data = np.empty(len(items), dtype=object)
    data[:] = items
    return f.create_dataset(name, data=data, dtype=_STRINGS)


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

    try:
        with atomic_write(path, keep=keep) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["model"] = ckpt.model
            f.attrs["dim"] = int(tables[ENTITY_TABLE][0].shape[1])
            f.attrs["params"] = json.dumps(list(params))
            for name, value in params.items():
                f.attrs[name] = value

            for name, names in ((ENTITIES, ckpt.entities), (RELATIONS, ckpt.relations)):
                try:
                    dset = _write_strings(f, name, names)
                except UnicodeEncodeError as err:
                    raise CheckpointError(f"cannot save: a {name[:-1]} name is not valid Unicode ({err})") from err
                dset.attrs["sha256"] = vocab_sha256(names)

            for name, (array, indexed_by) in tables.items():
                # Contiguous and uncompressed: the fastest to stream, and get_offset() finds the raw bytes.
                dset = f.create_dataset(name, data=array)
                dset.attrs["indexed_by"] = indexed_by
                dset.attrs["sha256"] = table_sha256(array)

            _write_strings(f, LINEAGE, lineage)
    except (OSError, RuntimeError) as err:
        # Out of disk, a file-size limit (EFBIG), an I/O error: h5py reports some of these as
        # RuntimeError from deep in HDF5. atomic_write has already removed the temp file.
        raise EmbretrainError(f"cannot write {path}: {err}; nothing was written and {path} is unchanged") from err
    logger.info(
        "saved %s: model=%s, %d entities, %d relations, dim=%d",
        path, ckpt.model, ckpt.n_entities, ckpt.n_relations, ckpt.dim,
    )
