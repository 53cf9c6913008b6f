"""The native file's layout: what its root attributes and datasets must be, checked before any table
data is read, and opening a file so every failure is one CheckpointError naming it.

Owns: the layout constants, probing (``is_native``), opening, and :func:`read_layout` (structure,
parameters, lineage; names and tables stay in the file). Must not: read table rows or names in bulk,
check checksums (:mod:`.checksums`) or write anything (:mod:`.write`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import CheckpointError
from ...models import check_shapes
from ...storage import (
    Source,
)
from ..base import ENTITY_TABLE, RELATION_TABLE
from ..h5guard import check_links, check_storage
from ..h5guard import file_size as _file_size

__all__ = ["FORMAT", "FORMAT_VERSION", "ENTITIES", "RELATIONS", "LINEAGE", "is_native"]

logger = logging.getLogger(__name__)

FORMAT = "embretrain"
FORMAT_VERSION = 1  # bump only for a layout change old readers would misread

ENTITIES = "entities"
RELATIONS = "relations"
LINEAGE = "lineage"
_NOT_TABLES = frozenset({ENTITIES, RELATIONS, LINEAGE})
_RESERVED_ATTRS = frozenset({"format", "format_version", "model", "dim", "params"})

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"




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


def _string_dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset | None:
    """The 1-D string dataset ``name``, or None if absent (names are read later, a block at a time)."""
    if name not in f:
        return None
    dset = f[name]
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 1 or h5py.check_string_dtype(dset.dtype) is None:
        kind = "a group" if isinstance(dset, h5py.Group) else f"dtype {dset.dtype}, shape {dset.shape}"
        raise CheckpointError(f"{path}: /{name} must be a 1-D string dataset, found {kind}")
    check_storage(dset, path)
    return dset


def _read_strings(f: h5py.File, name: str, path: Path) -> list[str] | None:
    """A 1-D string dataset as a list, or None if absent."""
    dset = _string_dataset(f, name, path)
    if dset is None:
        return None
    try:
        # Decode as UTF-8 whatever the declared charset: h5py writes ASCII-tagged bytes by default.
        return dset.asstr("utf-8")[()].tolist()
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: /{name} holds bytes that are not UTF-8 ({err})") from err


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

    entities = _string_dataset(f, ENTITIES, path)
    if entities is None:
        raise CheckpointError(f"{path}: missing the /{ENTITIES} dataset (entity names)")
    relations = _string_dataset(f, RELATIONS, path)
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


