"""What an HDF5 file may make us read: links, storage and declared sizes, checked before any data is read.

A checkpoint may come from anywhere. h5py follows external links (another file), soft links (one name
reading another dataset), external raw storage and virtual datasets (other files again), and trusts the
shape a header declares. The native loader, the Keras reader and ``verify`` all open files from users, so
they all pass through these checks first. This module owns only those checks: it reads no values and knows
no layout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from ..errors import CheckpointError

__all__ = ["MAX_FILTER_RATIO", "check_links", "check_storage", "file_size", "walk"]

_VLEN_BYTES = 16  # what HDF5 stores per variable-length string in the dataset itself (length + heap id)
# Compressed data may be smaller than it declares, but not by more than this: float tables and names
# compress 1-10x; a dataset of zeros declaring 10^12 rows compresses 1000x and is a bomb, not a table.
MAX_FILTER_RATIO = 64


def check_links(group: h5py.Group, path: Path, names: Iterable[str] | None = None) -> None:
    """Refuse external and soft links among ``names`` (default: every member) of ``group``.

    An external link makes h5py open another file (the loader would read, and hash, a file it was not
    given; with raw offsets, bytes of the wrong file); a soft link makes one name read another dataset.
    ``f.get(name, getlink=True)`` says what a name is without following it.

    Raises:
        CheckpointError: naming the file, the link and where it points.
    """
    for name in list(group.keys()) if names is None else names:
        link = group.get(name, getlink=True)
        where = f"{group.name.rstrip('/')}/{name}"
        if isinstance(link, h5py.ExternalLink):
            raise CheckpointError(
                f"{path}: {where} is an external link to {link.filename}:{link.path}; a checkpoint must hold its "
                "datasets itself (embretrain never reads a file it was not given)"
            )
        if isinstance(link, h5py.SoftLink):
            raise CheckpointError(
                f"{path}: {where} is a soft link to {link.path}; each dataset of the layout must be stored under its own name"
            )


def file_size(f: h5py.File) -> int:
    try:
        if f.driver == "sec2":
            return os.fstat(f.id.get_vfd_handle()).st_size
    except (OSError, ValueError):
        pass
    return int(f.id.get_filesize())


def check_storage(dset: h5py.Dataset, path: Path, size: int | None = None) -> None:
    """Check ``dset``'s declared size against the bytes stored for it, before anything is allocated.

    Refuses: external storage (raw data in other files) and virtual datasets (mapped from other files);
    storage larger than the file; unfiltered data with fewer stored bytes than declared (unallocated, or
    a header declaring more rows than exist); filtered (compressed) data declaring more than
    :data:`MAX_FILTER_RATIO` times what it stores.

    Raises:
        CheckpointError: naming the file and dataset.
    """
    where = f"{path}: {dset.name}"
    if dset.is_virtual:
        raise CheckpointError(f"{where} is a virtual dataset (mapped from other files); a checkpoint must hold its data itself")
    if dset.external:
        raise CheckpointError(
            f"{where} keeps its data in external file(s) {', '.join(str(e[0]) for e in dset.external)}; "
            "a checkpoint must hold its data itself"
        )
    n = int(np.prod(dset.shape, dtype=object)) if dset.shape else 1
    info = h5py.check_string_dtype(dset.dtype)
    per = _VLEN_BYTES if (info is not None and info.length is None) or dset.dtype.kind == "O" else dset.dtype.itemsize
    declared = n * max(1, per)
    stored = int(dset.id.get_storage_size())
    size = size if size is not None else file_size(dset.file)
    if stored > size:
        raise CheckpointError(f"{where} claims {stored} bytes of storage in a {size}-byte file; the file is corrupt")
    if not n:
        return
    filtered = dset.id.get_create_plist().get_nfilters() > 0
    if not filtered and stored < declared:
        raise CheckpointError(
            f"{where} declares shape {tuple(dset.shape)} ({declared} bytes) but stores {stored} bytes; "
            "the file is truncated or corrupt"
        )
    if filtered and declared > max(stored, 1) * MAX_FILTER_RATIO:
        raise CheckpointError(
            f"{where} declares shape {tuple(dset.shape)} ({declared} bytes) from {stored} compressed bytes "
            f"(over {MAX_FILTER_RATIO}x); refusing a compression bomb"
        )


def walk(f: h5py.File, path: Path) -> tuple[dict[str, dict], dict[str, h5py.Dataset]]:
    """(group path -> attrs, parents first; dataset path -> dataset) of a whole file.

    Every link is looked at without being followed: an external or soft link anywhere is refused
    (it would read another file, or one variable under two names), and every dataset's declared size
    must be backed by its stored bytes (:func:`check_storage`) before anything is read.
    """
    groups: dict[str, dict] = {"": dict(f.attrs)}
    datasets: dict[str, h5py.Dataset] = {}
    size = file_size(f)
    check_links(f, path)

    def visit(name: str, link) -> None:
        if not isinstance(link, h5py.HardLink):
            parent, _, leaf = name.rpartition("/")
            check_links(f[parent] if parent else f, path, [leaf])
            return
        obj = f[name]
        if isinstance(obj, h5py.Group):
            groups[name] = dict(obj.attrs)
        else:
            check_storage(obj, path, size)
            datasets[name] = obj

    f.visititems_links(visit)  # parents are visited before their children; only hard links are descended
    return groups, datasets
