"""Name <-> id mapping: old ids never move, new ones are appended.

A :class:`Vocab` is the ordered list of names behind the rows of an embedding table, so
row ``i`` is ``vocab.name(i)``. Growing it (:meth:`Vocab.grow`) returns a new vocab whose
first ``len(old)`` ids are exactly the old ones; that is what lets the old rows of a table
stay frozen while new rows are appended. Growing with names it already has adds nothing,
so rerunning the same delta is harmless.

The mapping helpers turn labelled records read by :mod:`embretrain.data` into int64 id
arrays, reporting unknown names at the file:line they came from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import storage
from .errors import CheckpointError, DataError

if TYPE_CHECKING:
    from .data import PairFile, TripleFile

__all__ = [
    "Vocab",
    "GrowReport",
    "IdTriples",
    "IdPairs",
    "Mask",
    "TRIPLE_ENTITY_COLUMNS",
    "PAIR_ENTITY_COLUMNS",
    "map_triples",
    "map_pairs",
    "touching",
    "name_problem",
    "check_names",
]

logger = logging.getLogger(__name__)

IdTriples = np.ndarray  # int64 [n, 3], columns (head, relation, tail)
IdPairs = np.ndarray  # int64 [n, 2], columns (a, b); both entity ids
Mask = np.ndarray  # bool [n]

TRIPLE_ENTITY_COLUMNS = (0, 2)  # head and tail; column 1 holds relation ids
PAIR_ENTITY_COLUMNS = (0, 1)

_UNKNOWN_HINT = "not in the checkpoint and not in the new {kind}"

# Names must survive a line of a TSV file (delta files, sidecars, exports): a NUL ends a C string, a
# line break splits the line. A tab splits a field, which matters where names are written one per
# line *and* read back as fields (the TF/Keras sidecars): ``tsv=True``.
_BREAKERS = re.compile(r"[\x00\r\n]")
_TSV_BREAKERS = re.compile(r"[\x00\r\n\t]")
_CHAR_NAMES = {"\x00": "a NUL character", "\r": "a carriage return", "\n": "a line break", "\t": "a tab"}


def name_problem(name: object, *, tsv: bool = False) -> str | None:
    """Why ``name`` cannot be stored and read back as a name, or None if it can.

    Unicode-normalisation twins (NFC vs NFD spellings of the same text) are *not* a problem: names are
    opaque code point sequences, so they are two distinct names.
    """
    if not isinstance(name, str):
        return f"is {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    bad = (_TSV_BREAKERS if tsv else _BREAKERS).search(name)
    if bad:
        return f"contains {_CHAR_NAMES[bad.group()]} (at character {bad.start() + 1})"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate (not valid Unicode)"
    return None


def check_names(
    names: Sequence[object], where: str, *, tsv: bool = False, start: int = 0, error: type = CheckpointError
) -> None:
    """Raise ``error`` naming ``where`` and the row of the first name that cannot round-trip.

    One pass over a joined copy finds whether any name is bad (a regex over one string is far cheaper
    than a call per name for a million names); only then are rows looked at one by one.

    Args:
        names: the names (row ``start + i`` is ``names[i]``).
        where: what to name in the message, e.g. ``"base.h5: /entities"``.
        tsv: also refuse tabs (names bound for a one-name-per-line sidecar or a TSV export).
        error: the exception class (CheckpointError for checkpoints, DataError for data files).
    """
    names = names if isinstance(names, list) else list(names)
    if not names:
        return
    try:
        joined = "\x01".join(names)  # any separator that is not itself refused
        clean = (
            not (_TSV_BREAKERS if tsv else _BREAKERS).search(joined)
            and all(names)
        )
        if clean:
            joined.encode("utf-8")
            return
    except (TypeError, UnicodeEncodeError):
        pass
    for i, name in enumerate(names):
        problem = name_problem(name, tsv=tsv)
        if problem:
            raise error(f"{where} row {start + i}: name {name!r} {problem}; names must be non-empty UTF-8 text "
                        f"without NUL or line breaks{' or tabs' if tsv else ''}")


@dataclass
class GrowReport:
    """What :meth:`Vocab.grow` did with its input.

    Every input name is counted exactly once, so
    ``len(added) + already_known + duplicates == len(new_names)``.

    Attributes:
        added: names appended, in input order (their ids follow the old ones).
        already_known: distinct input names the vocab already had (not added again).
        duplicates: repeats inside the input (second and later occurrences of a name).
    """

    added: list[str] = field(default_factory=list)
    already_known: int = 0
    duplicates: int = 0


class Vocab:
    """An ordered, duplicate-free list of names; a name's id is its position.

    Attributes:
        names: the names in id order. Treat as read-only: ids are positions in it.
        index: name -> id.
    """

    __slots__ = ("names", "index")

    def __init__(self, names: Sequence[str]):
        """Build from names in id order.

        Raises:
            ValueError: a name occurs twice (names the first repeated one).
        """
        self.names: list[str] = list(names)
        self.index: dict[str, int] = dict(zip(self.names, range(len(self.names))))
        if len(self.index) != len(self.names):
            seen: dict[str, int] = {}
            for i, name in enumerate(self.names):
                if name in seen:
                    raise ValueError(
                        f"duplicate name {name!r} in vocabulary (positions {seen[name]} and {i})"
                    )
                seen[name] = i

    @classmethod
    def partial(cls, names: Sequence[str], wanted: Iterable[str]) -> Vocab:
        """A vocab over ``names`` whose index holds only the ``wanted`` names (ids as in the full vocab).

        For names left on disk (:class:`~embretrain.storage.DiskNames`): indexing ten
        million names would cost gigabytes, while ``extend`` only needs the ids of the names its
        delta and its new-name files mention. ``names`` is kept as given (not copied); a name not
        in ``wanted`` looks unknown, so map only data whose names are all in ``wanted``.
        The old names are trusted to be unique (checked when they were loaded).
        """
        wanted = set(wanted)
        index: dict[str, int] = {}
        if storage.on_disk(names):
            for start, block in names.name_blocks():
                hits = wanted.intersection(block)
                if hits:
                    index.update((name, start + i) for i, name in enumerate(block) if name in hits)
        else:
            index = {name: i for i, name in enumerate(names) if name in wanted}
        return cls._trusted(names, index)

    @classmethod
    def _trusted(cls, names: list[str], index: dict[str, int]) -> Vocab:
        # Skips the duplicate check: the caller guarantees names/index agree.
        vocab = cls.__new__(cls)
        vocab.names = names
        vocab.index = index
        return vocab

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def __getitem__(self, name: str) -> int:
        """The id of ``name``; ``KeyError`` if unknown."""
        return self.index[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.names == other.names

    def __repr__(self) -> str:
        return f"Vocab({len(self)} names)"

    def name(self, id_: int) -> str:
        """The name with id ``id_``; ``IndexError`` if out of range (negative ids included)."""
        if id_ < 0:
            raise IndexError(f"id {id_} is negative")
        return self.names[id_]

    def grow(self, new_names: Iterable[str]) -> tuple[Vocab, GrowReport]:
        """Return a new vocab: the old names in their old order, then unseen new names in input order.

        ``self`` is not modified. Names already present keep their ids, so growing twice with
        the same names gives an equal vocab and an empty ``added``. Names that are not a list (on
        disk) are not copied: the result's names are a :class:`~embretrain.storage.NameStack` of them and the added ones.
        """
        index = dict(self.index)
        n_old = len(self.names)
        added: list[str] = []
        known_seen: set[str] = set()  # so a known name repeated in the input counts once
        duplicates = 0
        for name in new_names:
            i = index.get(name)
            if i is None:
                index[name] = n_old + len(added)
                added.append(name)
            elif i >= n_old or name in known_seen:
                duplicates += 1
            else:
                known_seen.add(name)
        names = storage.stack_names(self.names, added)  # old names on disk or frozen are not copied
        report = GrowReport(added=list(added), already_known=len(known_seen), duplicates=duplicates)
        logger.debug(
            "grew vocab %d -> %d names (%d already known, %d duplicates)",
            n_old,
            len(names),
            report.already_known,
            report.duplicates,
        )
        return Vocab._trusted(names, index), report


def _unknown(path: str, line: int, kind: str, name: str) -> DataError:
    plural = {"entity": "entities", "relation": "relations"}[kind]
    return DataError.at(path, line, f"unknown {kind} {name!r} ({_UNKNOWN_HINT.format(kind=plural)})")


def map_triples(
    tf: TripleFile, entities: Vocab, relations: Vocab, *, skip_unknown: bool = False
) -> tuple[IdTriples, int]:
    """Map labelled triples to ids.

    Returns:
        ``(ids, n_skipped)``: ids is int64 ``[n, 3]`` (head, relation, tail) in file order;
        ``n_skipped`` counts lines dropped for naming an unknown entity or relation.

    Raises:
        DataError: at ``file:line`` for the first unknown name, unless ``skip_unknown``.
    """
    ent = entities.index
    rel = relations.index
    rows: list[tuple[int, int, int]] = []
    n_skipped = 0
    for (h, r, t), line in zip(tf.triples, tf.lines):
        hi = ent.get(h)
        ri = rel.get(r)
        ti = ent.get(t)
        if hi is None or ri is None or ti is None:
            if skip_unknown:
                n_skipped += 1
                continue
            if hi is None:
                raise _unknown(tf.path, line, "entity", h)
            if ri is None:
                raise _unknown(tf.path, line, "relation", r)
            raise _unknown(tf.path, line, "entity", t)
        rows.append((hi, ri, ti))
    if n_skipped:
        logger.info("%s: skipped %d triples naming unknown entities or relations", tf.path, n_skipped)
    ids = np.array(rows, dtype=np.int64).reshape(len(rows), 3)
    return ids, n_skipped


def map_pairs(
    pf: PairFile, entities: Vocab, *, skip_unknown: bool = False
) -> tuple[IdPairs, np.ndarray, int]:
    """Map labelled pairs to entity ids.

    Returns:
        ``(ids, weights, n_skipped)``: ids int64 ``[n, 2]``, weights float32 ``[n]`` (the
        kept lines' weights), ``n_skipped`` lines dropped for naming an unknown entity.

    Raises:
        DataError: at ``file:line`` for the first unknown name, unless ``skip_unknown``.
    """
    ent = entities.index
    rows: list[tuple[int, int]] = []
    keep: list[int] = []
    for k, ((a, b), line) in enumerate(zip(pf.pairs, pf.lines)):
        ai = ent.get(a)
        bi = ent.get(b)
        if ai is None or bi is None:
            if skip_unknown:
                continue
            raise _unknown(pf.path, line, "entity", a if ai is None else b)
        rows.append((ai, bi))
        keep.append(k)
    n_skipped = len(pf.pairs) - len(rows)
    if n_skipped:
        logger.info("%s: skipped %d pairs naming unknown entities", pf.path, n_skipped)
    ids = np.array(rows, dtype=np.int64).reshape(len(rows), 2)
    weights = np.asarray(pf.weights, dtype=np.float32)
    if n_skipped:
        weights = weights[np.asarray(keep, dtype=np.int64)]
    return ids, weights, n_skipped


def touching(
    ids: np.ndarray, first_new: int, entity_columns: Sequence[int] = TRIPLE_ENTITY_COLUMNS
) -> Mask:
    """Bool ``[n]``: rows where any entity column holds a new id (``>= first_new``).

    ``entity_columns`` is ``TRIPLE_ENTITY_COLUMNS`` (0, 2) for triples, where column 1 is a
    relation id and must not be compared with entity ids, or ``PAIR_ENTITY_COLUMNS`` (0, 1).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected a 2-D id array, got shape {ids.shape}")
    return np.any(ids[:, list(entity_columns)] >= first_new, axis=1)
