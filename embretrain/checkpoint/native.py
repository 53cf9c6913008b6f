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

A checkpoint may come from anywhere, so the loader trusts nothing it declares (:func:`~.h5guard.check_links`,
:func:`~.h5guard.check_storage`): a dataset the layout names must be stored in this file under that name (no
external or soft link, no external or virtual storage: the tool never reads a file it was not given),
its declared size must be backed by the bytes stored for it (a tiny file declaring 10^12 rows is refused
before anything is allocated), names must round-trip through a TSV line (:func:`~embretrain.vocab.check_names`),
and the tables must fit the model's shape contract (:func:`~embretrain.models.check_shapes`).

Tables are read and written a block of rows at a time (:data:`~.disk_rows.BLOCK_BYTES`): a load
reads straight into one preallocated array while hashing and NaN-checking each block, and a save
streams each table (also a lazy :class:`~.disk_rows.RowStack` of old rows + new rows) into the file,
continuing the sha256 the load computed for the old rows. A save gives every table its file space
first and writes the rows with positional writes from a second thread (old rows left on disk are
copied file to file by the kernel) while h5py writes the names; a load reads names into numpy's
``StringDType`` where it can. The layout above is unchanged (a table's creation properties now say its
space is allocated early and never filled by HDF5). ``load(..., old_rows="on-disk")`` leaves tables and
names in the file (:mod:`.disk_rows`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_write
from ..errors import CheckpointError, EmbretrainError, UsageError
from ..models import check_shapes
from .h5guard import check_links, check_storage, file_size as _file_size
from ..vocab import check_names
from .base import ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .disk_rows import (
    DiskNames,
    DiskRows,
    NameStack,
    RowStack,
    Source,
    StrReader,
    _raw_offset,
    aligned_empty,
    blocks,
    pread_exact,
    pwrite_all,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "is_native",
    "load",
    "save",
    "describe",
    "table_sha256",
    "vocab_sha256",
    "OLD_ROWS",
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
_NAME_BLOCK = 1 << 18  # names read and decoded per h5py call
OLD_ROWS = ("memory", "on-disk")
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
    return _vocab_digest(names).hexdigest()


def _vocab_digest(names: Iterable[str], digest=None):
    """sha256 state over ``names`` (each UTF-8 + newline), continuing ``digest`` if given."""
    digest = digest or hashlib.sha256()
    names = names if isinstance(names, list) else list(names)
    for start in range(0, len(names), _HASH_CHUNK_NAMES):
        block = names[start : start + _HASH_CHUNK_NAMES]
        digest.update("".join(f"{name}\n" for name in block).encode("utf-8"))
    return digest


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


def _check_path(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")


def _no_signature(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is not an HDF5 file (no HDF5 signature); "
        "an embretrain checkpoint is the .h5 file written by `embretrain train`"
    )


def _cannot_open(path: Path, err: OSError) -> CheckpointError:
    reason = err.strerror if isinstance(err, PermissionError) else f"{err}; it is truncated or corrupt"
    return CheckpointError(f"{path}: cannot open the checkpoint ({reason})")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn OS/HDF5 failures while reading an open checkpoint into one CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except (OSError, RuntimeError, KeyError, UnicodeDecodeError) as err:
        # h5py reports damaged metadata or data blocks past the end of a cut-off file this way.
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err}); it is truncated or corrupt") from err


@contextlib.contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """Open ``path`` read-only; turn every OS/HDF5 failure (now or while reading) into CheckpointError."""
    _check_path(path)
    try:
        if not _has_hdf5_signature(path):
            raise _no_signature(path)
        f = h5py.File(path, "r")
    except OSError as err:
        raise _cannot_open(path, err) from err
    with _reading(path), f:
        yield f


def _open_source(path: Path) -> Source:
    """Open ``path`` to keep reading it after load (``old_rows="on-disk"``)."""
    _check_path(path)
    try:
        if not _has_hdf5_signature(path):
            raise _no_signature(path)
        return Source(path)
    except OSError as err:
        raise _cannot_open(path, err) from err


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
    n_entities: int
    n_relations: int
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
    check_storage(dset, path)
    try:
        # Decode as UTF-8 whatever the declared charset: h5py writes ASCII-tagged bytes by default.
        return dset.asstr("utf-8")[()].tolist()
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: /{name} holds bytes that are not UTF-8 ({err})") from err


def _vocab_dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset | None:
    """The 1-D string dataset ``name``, or None if absent (names are read later, a block at a time)."""
    if name not in f:
        return None
    dset = f[name]
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 1 or h5py.check_string_dtype(dset.dtype) is None:
        kind = "a group" if isinstance(dset, h5py.Group) else f"dtype {dset.dtype}, shape {dset.shape}"
        raise CheckpointError(f"{path}: /{name} must be a 1-D string dataset, found {kind}")
    check_storage(dset, path)
    return dset


def _name_blocks(dset: h5py.Dataset, path: Path, name: str) -> Iterator[tuple[int, list[str], bytes]]:
    """``(start, names, hashed)`` blocks of a vocabulary, in order: the names decoded as UTF-8 (whatever the
    declared charset) and ``hashed``, their bytes in the vocab_sha256 layout (each name as UTF-8 + newline).

    ``hashed`` is the decoded names encoded again, one ``join`` + ``encode`` per block: for valid UTF-8
    (the decoder is strict) that is exactly the stored bytes.
    """
    n = int(dset.shape[0])
    read = StrReader(dset)
    for start in range(0, n, _NAME_BLOCK):
        try:
            names = read(start, min(n, start + _NAME_BLOCK))
        except UnicodeDecodeError as err:
            raise CheckpointError(f"{path}: /{name} holds bytes that are not UTF-8 ({err})") from err
        check_names(names, f"{path}: /{name}", start=start)
        names.append("")  # the join then ends with the last name's newline
        hashed = "\n".join(names).encode("utf-8")
        names.pop()
        yield start, names, hashed


def _name_hashes(names: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, names), dtype=np.int64, count=len(names))


def _repeated(hashes: np.ndarray) -> set[int]:
    """The values that occur more than once in ``hashes`` (sorted in place)."""
    hashes.sort()
    same = hashes[1:] == hashes[:-1]
    return set(np.unique(hashes[1:][same]).tolist()) if same.any() else set()


def _check_suspects(candidates: Iterable[tuple[int, str]], path: Path, name: str) -> None:
    """Raise for the first name listed twice among ``(row, name)`` candidates (names whose hash repeats)."""
    first_row: dict[str, int] = {}
    for row, item in candidates:
        if item in first_row:
            raise CheckpointError(
                f"{path}: /{name} lists {item!r} twice (rows {first_row[item]} and {row}); every name must be unique"
            )
        first_row[item] = row


def _read_names(dset: h5py.Dataset, path: Path, name: str) -> tuple[list[str], object]:
    """All names of a vocabulary (decoded as UTF-8 whatever the declared charset) and their sha256 state.

    Uniqueness: a 64-bit hash per name, sorted (cheaper than a set of a million strings); only names
    whose hash repeats are compared exactly.
    """
    names: list[str] = []
    digest = hashlib.sha256()
    for _, block, hashed in _name_blocks(dset, path, name):
        names.extend(block)
        digest.update(hashed)
    suspects = _repeated(_name_hashes(names))
    if suspects:
        _check_suspects(((row, item) for row, item in enumerate(names) if hash(item) in suspects), path, name)
    return names, digest


def _scan_names(dset: h5py.Dataset, path: Path, name: str) -> object:
    """Names left on disk: decode (UTF-8 check), hash and check uniqueness a block at a time.

    Uniqueness without holding every name: a 64-bit hash per name, sorted; only names whose hash
    repeats are compared exactly, in a second pass.
    """
    digest = hashlib.sha256()
    hashes = np.empty(int(dset.shape[0]), dtype=np.int64)
    for start, names, hashed in _name_blocks(dset, path, name):
        digest.update(hashed)
        hashes[start : start + len(names)] = _name_hashes(names)
    suspects = _repeated(hashes)  # in place: one 8-byte hash per name is all this holds
    del hashes
    if suspects:  # a second pass: only names whose hash repeats are compared exactly
        _check_suspects(
            ((start + i, item) for start, names, _ in _name_blocks(dset, path, name)
             for i, item in enumerate(names) if hash(item) in suspects),
            path, name,
        )
    return digest


def _read_layout(f: h5py.File, path: Path, *, quiet: bool = False) -> _Layout:
    """Check structure and read the small parts (attrs, lineage); names and tables stay on disk."""
    check_links(f, path)  # before any name is looked up: looking one up follows its link
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

    entities = _vocab_dataset(f, ENTITIES, path)
    if entities is None:
        raise CheckpointError(f"{path}: missing the /{ENTITIES} dataset (entity names)")
    relations = _vocab_dataset(f, RELATIONS, path)
    vocab_datasets = {name: f[name] for name in (ENTITIES, RELATIONS) if name in f}
    n_rows = {ENTITIES: int(entities.shape[0]), RELATIONS: int(relations.shape[0]) if relations is not None else 0}

    file_size = _file_size(f)
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
        if not isinstance(indexed_by, str) or indexed_by not in n_rows:
            raise CheckpointError(
                f"{path}: table /{name} has indexed_by={indexed_by!r}; expected 'entities' or 'relations'"
            )
        if obj.shape[0] != n_rows[indexed_by]:
            raise CheckpointError(
                f"{path}: table /{name} has {obj.shape[0]} rows but /{indexed_by} has {n_rows[indexed_by]} names"
            )
        check_storage(obj, path, file_size)
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
    # One line naming the tables and widths now, not ten lines of TensorFlow stack after training.
    check_shapes(model, params, {n: int(d.shape[1]) for n, (d, _) in tables.items()}, where=str(path))
    lineage = _read_lineage(f, path)
    return _Layout(fmt, version, model, dim, params, n_rows[ENTITIES], n_rows[RELATIONS], vocab_datasets, tables, lineage)


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


def load(path: str | os.PathLike, *, verify: bool = True, old_rows: str = "memory", read_only: bool = False) -> Checkpoint:
    """Read a native checkpoint.

    Args:
        path: the ``.h5`` file.
        verify: recompute every stored sha256 and fail on a mismatch.
        old_rows: ``"memory"`` reads every table into one array each; ``"on-disk"`` leaves tables
            (:class:`~.disk_rows.DiskRows`) and names (:class:`~.disk_rows.DiskNames`) in the file,
            which stays open read-only for as long as they are referenced. Either way every table
            is read once here to check its sha256 and that it holds no NaN/Inf.
        read_only: return the in-memory tables as read-only arrays and the names as tuples (what
            ``extend`` does: frozen rows are never written to), which lets a later save of a grown
            table or vocabulary continue the sha256 computed here instead of hashing the old part again.

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
        digests: dict[str, tuple] = {}
        vocabs: dict[str, list[str]] = {ENTITIES: [], RELATIONS: []}
        # Tables are read (positional reads, hashing and NaN checks release the GIL) in a second
        # thread while this one decodes names; both are needed before anything else can start.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embretrain-load") as pool:
            fd = f.id.get_vfd_handle() if f.driver == "sec2" else None
            pending = pool.submit(_read_tables, path, layout, fd, verify)
            try:
                for name, dset in layout.vocab_datasets.items():
                    vocabs[name], digest = _read_names(dset, path, name)
                    digests[name] = (vocabs[name], digest)
            finally:
                tables = pending.result()
        missing = _check_stored(path, layout, {n: d for n, (_, d) in digests.items()},
                                {n: d for n, (_, d) in tables.items()}, verify)

    entity_tables: dict[str, np.ndarray] = {}
    relation_tables: dict[str, np.ndarray] = {}
    if read_only:  # names as tuples: nothing can edit them, so their digests stay valid
        for name in list(digests):
            vocabs[name] = tuple(vocabs[name])
            digests[name] = (vocabs[name], digests[name][1])
    for name, (table, digest) in tables.items():
        if read_only:
            table.flags.writeable = False
        (entity_tables if layout.tables[name][1] == ENTITIES else relation_tables)[name] = table
        if digest is not None:
            digests[name] = (table, digest)
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
        digests=digests,
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
        offset = _raw_offset(dset) if fd is not None else None
        row_bytes = max(1, table.shape[1] * 4)

        def fill(block: np.ndarray, start: int, offset=offset, dset=dset, row_bytes=row_bytes) -> None:
            if offset is not None:
                pread_exact(fd, block, offset + start * row_bytes, path)
            elif len(block):
                dset.read_direct(block, np.s_[start : start + len(block)])  # converts dtype and byte order

        out[name] = (table, _scan_table(path, name, table.shape, fill, verify and "sha256" in dset.attrs, table))
    return out


def _scan_table(path: Path, name: str, shape, fill, want_digest: bool, into: np.ndarray | None):
    """Read a table a block at a time (``fill(block, start)``), hashing and NaN/Inf-checking each block.

    ``into``: the array to fill (in-memory load), or None to reuse one block buffer (on-disk load).
    Returns the sha256 state (or None if not wanted).
    """
    n_rows, width = int(shape[0]), int(shape[1])
    step = max(1, (_HASH_CHUNK_BYTES) // max(1, width * 4))
    digest = hashlib.sha256() if want_digest else None
    buffer = None if into is not None else np.empty((min(step, n_rows), width), dtype=np.float32)
    n_bad, first_bad = 0, -1
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        block = into[start:stop] if into is not None else buffer[: stop - start]
        fill(block, start)
        if digest is not None:
            digest.update(block)
        if not np.isfinite(block).all():  # one reduction; the rows only when some value is bad
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            first_bad = first_bad if n_bad else start + int(bad[0])
            n_bad += len(bad)
    if n_bad:
        # a checksum only proves the bytes are as written, not that they are sane, and frozen garbage
        # rows would be copied into every checkpoint grown from this one
        raise CheckpointError(
            f"{path}: table /{name} holds NaN or Inf in {n_bad} row(s) (first: row {first_bad}); "
            "the checkpoint is unusable, restore an earlier version"
        )
    return digest


def _check_stored(path: Path, layout: _Layout, vocab_digests: dict, table_digests: dict, verify: bool) -> list[str]:
    """Compare computed digests with the stored sha256 attributes; return the datasets that have none."""
    missing = []
    for kind, datasets, digests in (
        ("vocabulary", layout.vocab_datasets, vocab_digests),
        ("table", {n: d for n, (d, _) in layout.tables.items()}, table_digests),
    ):
        for name, dset in datasets.items():
            stored = _attr(dset, "sha256")
            if stored is None:
                missing.append(name)
            elif verify:
                _check(path, kind, name, stored, digests[name].hexdigest())
    return missing


def _status_of(path: Path, missing: list[str], verify: bool) -> str:
    if missing:
        if verify:
            warnings.warn(
                f"{path}: no sha256 checksum on {', '.join(missing)}; loaded without verifying them",
                stacklevel=3,
            )
        return "missing"
    return "verified" if verify else "unverified"


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
    vocabs = {name: DiskNames(source, name) for name in layout.vocab_datasets}
    entities = vocabs[ENTITIES]
    relations = vocabs.get(RELATIONS, [])
    digests = {name: (vocabs[name], d) for name, d in vocab_digests.items()}
    digests.update({name: (tables[name], d) for name, d in table_digests.items() if d is not None})
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
        digests=digests,
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


def _check_names(kind: str, names) -> None:
    """Names must be unique strings. A NameStack's old part, when it is the loaded one (it carries its
    load-time digest), was checked at load, and its new part holds only names the old part lacks
    (vocabulary growth), so only the new part is checked."""
    if isinstance(names, NameStack):
        if names.prefix_digest is None:  # not the loaded (and checked) names: check them too
            _check_names(kind, list(names.old))
        names = names.new
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

    In-memory tables become C-contiguous little-endian float32 arrays; lazy ones (RowStack, DiskRows)
    are already float32 and are streamed a block at a time by :func:`_write_table`.
    """
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
            array = table if isinstance(table, (RowStack, DiskRows)) else np.ascontiguousarray(table, dtype="<f4")
            if array.ndim != 2:
                raise CheckpointError(f"cannot save: table {name!r} has shape {array.shape}; tables are 2-D")
            if array.shape[0] != n_rows[indexed_by]:
                raise CheckpointError(
                    f"cannot save: table {name!r} has {array.shape[0]} rows "
                    f"but there are {n_rows[indexed_by]} {indexed_by}"
                )
            prepared[name] = (array, indexed_by)
    return prepared


def _write_names(f: h5py.File, name: str, names, digest=None) -> str:
    """Write a vocabulary a block at a time; return its sha256 (hex).

    A NameStack's on-disk old part is copied as raw bytes from the input file; ``digest`` (the sha256
    state of the old part, recorded at load) is continued instead of hashing the old part again.
    """
    dset = f.create_dataset(name, shape=(len(names),), dtype=_STRINGS)
    parts = names.parts if isinstance(names, NameStack) else [names]
    if not isinstance(names, NameStack) or digest is None:
        digest, skip_first = hashlib.sha256(), False
    else:
        skip_first = True
    row = 0
    for i, part in enumerate(parts):
        if isinstance(part, DiskNames):
            chunks = (raw for _, raw in part.raw_blocks(_NAME_BLOCK))
        else:
            part = part if isinstance(part, list) else list(part)
            chunks = (part[a : a + _NAME_BLOCK] for a in range(0, len(part), _NAME_BLOCK))
        for chunk in chunks:
            if not chunk:
                continue
            raw = chunk if isinstance(part, DiskNames) else [n.encode("utf-8") for n in chunk]
            # Fill an object array element by element: np.array(list) would guess a fixed-width dtype.
            data = np.empty(len(raw), dtype=object)
            data[:] = raw
            dset[row : row + len(raw)] = data
            row += len(raw)
            if not (skip_first and i == 0):
                digest.update(b"\n".join(raw))
                digest.update(b"\n")
    if isinstance(names, NameStack) and isinstance(names.old, DiskNames):
        names.old.source.check_unchanged()
    return digest.hexdigest()


def _emit_table(table, digest, write_block, copy_part=None, cancel: threading.Event | None = None):
    """Hand every row block of ``table`` to ``write_block(row, block)`` and return its sha256 state (None if
    ``cancel`` was set). The one walk over a table's parts both writers share.

    ``digest``: for an ndarray, its sha256 state recorded at load (nothing is hashed); for a RowStack,
    the state of its first part (the old rows): hashing continues with the new rows only.
    ``copy_part(part, row)``: may copy that already-hashed first part some faster way; True if it did.
    """
    parts = table.parts if isinstance(table, RowStack) else [table]
    known = digest is not None
    digest = digest if known else hashlib.sha256()
    row = 0
    for i, part in enumerate(parts):
        hash_it = not (known and i == 0)
        if hash_it or copy_part is None or not copy_part(part, row):
            for start, block in blocks(part):
                if cancel is not None and cancel.is_set():
                    return None
                write_block(row + start, block)
                if hash_it:
                    digest.update(block)
        if isinstance(part, DiskRows):
            part.source.check_unchanged()  # the bytes we copied are the bytes we hashed at load
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
    offset = _raw_offset(dset) if shape[0] and shape[1] and sys.byteorder == "little" else None
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
        return isinstance(part, DiskRows) and part.copy_into(fd, offset + row * row_bytes)

    return _emit_table(table, digest, write_block, copy_part, cancel)


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

            # Tables get their file space first and are written by a second thread with positional
            # writes (the GIL-free part: copying rows, hashing new ones) while this one has h5py
            # encode and write the names.
            created = {name: _create_table(f, name, table.shape) for name, (table, _) in tables.items()}
            known = {}
            for name, (table, _) in tables.items():
                if isinstance(table, RowStack):
                    known[name] = table.prefix_digest.copy() if table.prefix_digest is not None else None
                else:
                    known[name] = ckpt.digest(name) if table is ckpt.tables()[name] else None
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
                        for name, names in ((ENTITIES, ckpt.entities), (RELATIONS, ckpt.relations)):
                            prefix = names.prefix_digest if isinstance(names, NameStack) else None
                            try:
                                sha = _write_names(f, name, names, prefix.copy() if prefix is not None else None)
                            except UnicodeEncodeError as err:
                                raise CheckpointError(
                                    f"cannot save: {'an entity' if name == ENTITIES else 'a relation'} name is not valid Unicode ({err})"
                                ) from err
                            f[name].attrs["sha256"] = sha
                        _write_strings(f, LINEAGE, lineage)
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
        raise EmbretrainError(f"cannot write {path}: {err}; nothing was written and {path} is unchanged") from err
    logger.info(
        "saved %s: model=%s, %d entities, %d relations, dim=%d",
        path, ckpt.model, ckpt.n_entities, ckpt.n_relations, ckpt.dim,
    )
