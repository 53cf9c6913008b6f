"""Checksum policy of the native format: how a table's and a vocabulary's sha256 are computed, the
streaming scans a load makes (sha256, NaN/Inf, UTF-8, unique names) and how stored and computed
digests are compared.

Owns: :func:`table_sha256`, :func:`vocab_sha256`, the scans and their verdicts. Must not: open
files or decide the layout (:mod:`.layout`), keep anything in memory beyond one block.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import CheckpointError
from ...storage import RowDigest, StrReader
from ...vocab import check_names
from .layout import _attr, _Layout

__all__ = ["NAME_BLOCK", "table_sha256", "vocab_sha256"]

logger = logging.getLogger(__name__)

_HASH_CHUNK_BYTES = 1 << 24  # 16 MiB per hashlib.update: streams big tables without a full copy
_HASH_CHUNK_NAMES = 1 << 16
NAME_BLOCK = 1 << 18  # names read and decoded per h5py call (and written per call by save)

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


def _name_blocks(dset: h5py.Dataset, path: Path, name: str) -> Iterator[tuple[int, list[str], bytes]]:
    """``(start, names, hashed)`` blocks of a vocabulary, in order: the names decoded as UTF-8 (whatever the
    declared charset) and ``hashed``, their bytes in the vocab_sha256 layout (each name as UTF-8 + newline).

    ``hashed`` is the decoded names encoded again, one ``join`` + ``encode`` per block: for valid UTF-8
    (the decoder is strict) that is exactly the stored bytes.
    """
    n = int(dset.shape[0])
    read = StrReader(dset)
    for start in range(0, n, NAME_BLOCK):
        try:
            names = read(start, min(n, start + NAME_BLOCK))
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


def _scan_table(path: Path, name: str, shape, fill, want_digest: bool, into: np.ndarray | None):
    """Read a table a block at a time (``fill(block, start)``), hashing and NaN/Inf-checking each block.

    ``into``: the array to fill (in-memory load), or None to reuse one block buffer (on-disk load).
    Returns the sha256 state (or None if not wanted).
    """
    n_rows, width = int(shape[0]), int(shape[1])
    step = max(1, (_HASH_CHUNK_BYTES) // max(1, width * 4))
    # with the state at each block start: a save that replaces some old rows continues from the last one before them
    digest = RowDigest() if want_digest else None
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


def _check(path: Path, kind: str, name: str, stored: Any, computed: str) -> None:
    if stored != computed:
        raise CheckpointError(
            f"{path}: {kind} '{name}' fails its sha256 checksum (stored {stored}, computed {computed}); "
            "the file is corrupt"
        )


def _status(dset: h5py.Dataset, compute) -> str:
    stored = _attr(dset, "sha256")
    if stored is None:
        return "missing"
    return "ok" if stored == compute() else "MISMATCH"


