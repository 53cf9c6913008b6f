"""The first things a notebook asks of a checkpoint: one name's vector, its most similar names, gensim's view.

    >>> from embretrain import api as et
    >>> from embretrain.notebook import vector, most_similar, to_gensim
    >>> ckpt = et.load("merged.h5")
    >>> ckpt
    <Checkpoint transe: 14951 entities, 237 relations; ...>
    >>> vector(ckpt, "Zürich").shape
    (200,)
    >>> most_similar(ckpt, "Zürich", k=3)
    [('Geneva', 0.91), ('Basel', 0.88), ('Bern', 0.87)]
    >>> kv = to_gensim(ckpt)              # gensim.models.KeyedVectors: kv["Zürich"], kv.most_similar(...)

The names follow gensim's ``KeyedVectors`` (``get_vector``, ``most_similar`` returning ``(key, cosine)``
pairs), as functions over a :class:`~embretrain.checkpoint.Checkpoint` rather than methods on it: the
checkpoint stays plain data. Works on tables left on disk (``et.load(path, old_rows="on-disk")``): a name
is found by a block-wise scan of the names and :func:`most_similar` streams the table
(:func:`embretrain.neighbors.nearest`), so neither is read whole.

Owns: name lookups for these helpers and the conversion to gensim. Must not: import TensorFlow or write files.
"""

from __future__ import annotations

import logging

import numpy as np

from .checkpoint import ENTITY_TABLE, Checkpoint
from .storage import as_array, take
from .errors import DataError, UsageError

__all__ = ["vector", "most_similar", "to_gensim"]

logger = logging.getLogger(__name__)


def _names(ckpt: Checkpoint, table: str):
    tables = ckpt.tables()
    if table not in tables:
        raise UsageError(f"the checkpoint has no table {table!r}; it has {', '.join(tables)}")
    return ckpt.relations if table in ckpt.relation_tables else ckpt.entities


def _id(ckpt: Checkpoint, name: str, table: str) -> int:
    """Row of ``name`` in ``table``'s vocabulary: one scan, never a whole index (names may be on disk)."""
    from .vocab import Vocab

    names = _names(ckpt, table)
    if isinstance(names, (list, tuple)):
        try:
            return names.index(name)  # scans in C: faster on 10M names than building a dict
        except ValueError:
            pass
    else:  # names left in the file: read block by block
        vocab = Vocab.partial(names, [name])
        if name in vocab:
            return vocab[name]
    kind = "relation" if table in ckpt.relation_tables else "entity"
    raise DataError(f"{ckpt.source or 'the checkpoint'}: no {kind} named {name!r}")


def vector(ckpt: Checkpoint, name: str, table: str = ENTITY_TABLE) -> np.ndarray:
    """float32 ``[width]``: the row of ``name`` in ``table`` (a copy; gensim's ``kv[name]``).

    Raises:
        DataError: no such name. UsageError: no such table.
    """
    return np.array(take(ckpt.tables()[table], np.array([_id(ckpt, name, table)]))[0], dtype=np.float32)


def most_similar(ckpt: Checkpoint, name: str, k: int = 10, table: str = ENTITY_TABLE) -> list[tuple[str, float]]:
    """The ``k`` rows of ``table`` nearest ``name`` by cosine, best first, itself excluded.

    ``[(name, cosine), ...]`` like gensim's ``kv.most_similar(name, topn=k)``; one blocked pass over
    the table (:func:`embretrain.neighbors.nearest`).

    Raises:
        DataError: no such name. UsageError: no such table, or ``k < 1``.
    """
    from .neighbors import nearest

    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    names = _names(ckpt, table)
    ids, cosines = nearest(ckpt.tables()[table], [_id(ckpt, name, table)], k)
    return [(names[int(i)], float(c)) for i, c in zip(ids[0], cosines[0]) if i >= 0]


def to_gensim(ckpt: Checkpoint, table: str = ENTITY_TABLE):
    """``table`` as a ``gensim.models.KeyedVectors`` (names as keys, rows in id order), read into memory.

    Raises:
        UsageError: gensim is not installed (``pip install gensim``), or no such table.
    """
    try:
        from gensim.models import KeyedVectors
    except ImportError:
        raise UsageError("to_gensim needs gensim: pip install gensim") from None
    names = _names(ckpt, table)
    rows = as_array(ckpt.tables()[table])
    kv = KeyedVectors(vector_size=int(rows.shape[1]), count=0, dtype=np.float32)
    kv.add_vectors(list(names), np.asarray(rows, dtype=np.float32))
    return kv
