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

Tables are read and written a block of rows at a time (:data:`~embretrain.storage.BLOCK_BYTES`): a load
reads straight into one preallocated array while hashing and NaN-checking each block, and a save
streams each table (also a lazy :class:`~embretrain.storage.RowStack` of old rows + new rows) into the file,
continuing the sha256 the load computed for the old rows. A save gives every table its file space
first and writes the rows with positional writes from a second thread (old rows left on disk are
copied file to file by the kernel) while h5py writes the names; a load reads names into numpy's
``StringDType`` where it can. The layout above is unchanged (a table's creation properties now say its
space is allocated early and never filled by HDF5). ``load(..., old_rows="on-disk")`` leaves tables and
names in the file (:mod:`embretrain.storage`).

The package, one job per module: :mod:`.layout` (what the file must hold; probing and opening),
:mod:`.checksums` (how sha256s are computed and judged; the streaming scans), :mod:`.read` and
:mod:`.write` (the threaded positional I/O of each direction), :mod:`.report` (``inspect``). This
module is the format's entry in :data:`embretrain.checkpoint.FORMATS`: ``detect``, ``load``, ``save``,
``describe``, ``check_out``. Must not: import TensorFlow, or know the TF/Keras formats.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...atomic import check_writable_dir
from .checksums import table_sha256, vocab_sha256
from .layout import FORMAT, FORMAT_VERSION, RELATIONS, is_native
from .read import OLD_ROWS, load
from .report import describe
from .write import save

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "OLD_ROWS",
    "RELATIONS",
    "check_out",
    "describe",
    "detect",
    "is_native",
    "load",
    "save",
    "table_sha256",
    "vocab_sha256",
]


def detect(path: str | os.PathLike) -> bool:
    """Any file not claimed by another format: :func:`load` explains what is wrong with one that is not ours."""
    return Path(path).is_file()


def check_out(path: str | os.PathLike) -> None:
    """Fail before training if ``path`` cannot be written (its directory is missing or read-only)."""
    check_writable_dir(path)
