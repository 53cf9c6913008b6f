"""What one run trains on: input files -> grown vocabularies and id arrays (a :class:`Delta`).

Owns: turning paths or in-memory lists into data files (:func:`triple_file`, :func:`pair_file`,
:func:`name_file`); the difference between triple and pair data, decided once (:class:`DataKind`,
:func:`data_kind`); growing the vocabularies; mapping, dropping and counting the delta; the pool of new
entities negatives may draw; the replay triples; pending entities; and the grown checkpoint's assembly
(:func:`grow_checkpoint`). Must not: import TensorFlow, train, build tables, or write files.

Shapes: ids int64 ``[n, 3]`` (head, relation, tail) for triples, ``[n, 2]`` for pairs; weights float32 ``[n]``.

Pending entities: a new entity with no example keeps its start row; it is recorded as *pending* in the
lineage (:func:`~embretrain.checkpoint.base.pending_names`) and the first later night whose delta names it trains
it. Its id is old (``< n_old``) and old rows are frozen, so that night maps it to a trainable id past the
new ones, ``n_old + n_new + j`` (its start: its current row, :meth:`Delta.trainable_starts`), and
:func:`grow_checkpoint` writes the trained row back at its own id; every other old row is the input's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .checkpoint import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from . import storage
from .data import (_FIELD_NAMES, NameFile, PairFile, TripleFile, _field_label, _parse_weight, read_names, read_pairs,
                   read_triples, sha256_file)
from .errors import DataError, UsageError
from .checkpoint.base import PENDING_ADDED, PENDING_TRAINED, pending_names
from .summary import name_list
from .vocab import PAIR_ENTITY_COLUMNS, TRIPLE_ENTITY_COLUMNS, GrowReport, Vocab, map_pairs, map_triples, touching

__all__ = ["DataKind", "TRIPLES", "PAIRS", "TWO_VOCAB_PAIRS", "data_kind", "Delta", "ContextDelta", "prepare_delta",
           "scratch_delta", "grow_checkpoint", "triple_file", "pair_file", "name_file"]

logger = logging.getLogger(__name__)

_NAME_BREAKERS = re.compile(r"[\t\r\n\x00]")  # what a TSV field, and so a name, cannot hold

TripleInput = Union[str, Path, TripleFile, Sequence[tuple[str, str, str]]]
PairInput = Union[str, Path, PairFile, Sequence[tuple]]
NameInput = Union[str, Path, NameFile, Sequence[str], None]


# ---------------------------------------------------------------------------------------------
# inputs
def _data_file(data, cls, read, from_rows, what: str):
    """``data`` as a ``cls`` file: itself, read from a path (file:line errors), or built from in-memory rows."""
    if isinstance(data, cls):
        return data
    if isinstance(data, (str, Path)):
        return read(data)
    try:
        rows = list(data)
    except TypeError:
        raise DataError(f"expected a path or a list of {what}, got {type(data).__name__}") from None
    return from_rows(rows)


def _lines(rows) -> list[int]:
    return list(range(1, len(rows) + 1))


def _checked_name(value, path: str, line: int, what: str, i: int) -> str:
    """An in-memory name under the rules a data file's names follow (a non-empty str that fits a TSV field)."""
    field = _field_label(what, i)
    if not isinstance(value, str):  # no silent str(): 260881 and "00260881" must not be guessed at
        raise DataError.at(path, line, f"{field} must be a string, got {type(value).__name__} {value!r}")
    if not value:
        raise DataError.at(path, line, f"{field} is empty")
    if _NAME_BREAKERS.search(value):
        raise DataError.at(path, line, f"{field} {value!r} holds a tab, line break or NUL, which names cannot hold")
    return str(value)  # a numpy str_ becomes a plain str


def _checked_rows(rows: list, path: str, what: str, n_fields: tuple[int, ...]) -> list[tuple]:
    """In-memory triples or pairs checked like the lines of a file: ``DataError`` naming the row (1-based)."""
    labels = ", ".join(_FIELD_NAMES[what][: max(n_fields)])
    expected = " or ".join(map(str, n_fields))
    out = []
    for line, row in enumerate(rows, 1):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
            raise DataError.at(path, line, f"expected a tuple ({labels}), got {type(row).__name__} {row!r}")
        if len(row) not in n_fields:
            raise DataError.at(path, line, f"expected {expected} fields ({labels}), found {len(row)}")
        names = tuple(_checked_name(v, path, line, what, i) for i, v in enumerate(row[:2] if what == "pairs" else row))
        out.append(names + tuple(row[2:]) if what == "pairs" else names)
    return out


def triple_file(data: TripleInput) -> TripleFile:
    """Triples from a path, a :class:`TripleFile`, or in-memory ``(head, relation, tail)`` tuples of names.

    Raises:
        DataError: a malformed line or row (file and line, or ``<triples>`` and row number, named).
    """
    def from_rows(rows):
        return TripleFile(path="<triples>", triples=_checked_rows(rows, "<triples>", "triples", (3,)),
                          lines=_lines(rows))

    return _data_file(data, TripleFile, read_triples, from_rows, "triples")


def pair_file(data: PairInput) -> PairFile:
    """Pairs from a path, a :class:`PairFile`, or in-memory ``(a, b)`` / ``(a, b, weight)`` tuples (weight > 0)."""
    def from_rows(rows):
        rows = _checked_rows(rows, "<pairs>", "pairs", (2, 3))
        weights = np.array([_parse_weight("<pairs>", line, str(p[2])) if len(p) > 2 else 1.0
                            for line, p in enumerate(rows, 1)], dtype=np.float32)
        return PairFile(path="<pairs>", pairs=[(p[0], p[1]) for p in rows], weights=weights, lines=_lines(rows))

    return _data_file(data, PairFile, read_pairs, from_rows, "pairs")


def name_file(data: NameInput) -> NameFile:
    """Names from a path, a :class:`NameFile`, or an in-memory list of names (None: no names)."""
    if data is None:
        return NameFile(path="<none>", names=[], lines=[])

    def from_rows(rows):
        names = [_checked_name(n, "<names>", line, "names", 0) for line, n in enumerate(rows, 1)]
        return NameFile(path="<names>", names=names, lines=_lines(rows))

    return _data_file(data, NameFile, read_names, from_rows, "names")


def _reject_repeats(f: NameFile, kind: str) -> None:
    """A name listed twice in one night's file is a broken export, not something to guess about."""
    first: dict[str, int] = {}
    for name, line in zip(f.names, f.lines):
        if name in first:
            raise DataError.at(f.path, line, f"new {kind} {name!r} is listed twice (first on line {first[name]})")
        first[name] = line


# ---------------------------------------------------------------------------------------------
# triples or pairs
@dataclass(frozen=True)
class DataKind:
    """Everything that differs between triple data (with relations) and pair data (a dot model)."""

    name: str  # the scorer's kind: "triple" | "pair"
    entity_columns: tuple[int, ...]  # id columns holding entities

    @property
    def has_relations(self) -> bool:
        return self.name == "triple"

    def read(self, data):
        return triple_file(data) if self.has_relations else pair_file(data)

    def names(self, f) -> tuple[list[str], list[str]]:
        """Entity and relation names of a data file, each in order of first appearance."""
        if not self.has_relations:
            return list(dict.fromkeys(n for p in f.pairs for n in p)), []
        return (list(dict.fromkeys(n for h, _, t in f.triples for n in (h, t))),
                list(dict.fromkeys(r for _, r, _ in f.triples)))

    def map(self, f, entities: Vocab, relations: Vocab, *, skip_unknown: bool = False, contexts: Vocab | None = None):
        """``(ids, weights or None, n_unknown)``: names to ids (unknown names an error, or skipped and counted)."""
        if not self.has_relations:
            return map_pairs(f, entities, skip_unknown=skip_unknown, contexts=contexts)
        ids, n_unknown = map_triples(f, entities, relations, skip_unknown=skip_unknown)
        return ids, None, n_unknown

    def touching_new(self, ids: np.ndarray, n_old: int, r_old: int) -> np.ndarray:
        """bool ``[n]``: examples naming a new entity (or, for triples, a new relation)."""
        keep = touching(ids, n_old, self.entity_columns)
        return keep | (ids[:, 1] >= r_old) if self.has_relations else keep

    def empty_tables(self, scorer, settings) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Entity and relation tables with no rows yet (``train`` grows them from nothing)."""
        scorer.check_dim(settings.dim)
        empty = lambda width: np.zeros((0, width), dtype=np.float32)  # noqa: E731
        if self.has_relations:
            return {ENTITY_TABLE: empty(settings.dim)}, {RELATION_TABLE: empty(scorer.relation_width(settings.dim))}
        context = {} if settings.tied else {CONTEXT_TABLE: empty(settings.dim)}
        return {ENTITY_TABLE: empty(settings.dim), **context}, {}


TRIPLES = DataKind("triple", TRIPLE_ENTITY_COLUMNS)
PAIRS = DataKind("pair", PAIR_ENTITY_COLUMNS)
TWO_VOCAB_PAIRS = DataKind("pair", (0,))  # b (column 1) indexes the contexts, a vocabulary of its own


def data_kind(scorer, two_vocab: bool = False) -> DataKind:
    return (TWO_VOCAB_PAIRS if two_vocab else PAIRS) if scorer.kind == "pair" else TRIPLES


# ---------------------------------------------------------------------------------------------
# the delta
@dataclass
class Delta:
    """What a run trains on, in the grown id space (new entities have ids >= ``n_old``).

    Attributes:
        ids: int64 ``[n, 3]`` / ``[n, 2]`` training examples (those touching nothing new are dropped).
        weights: float32 ``[n]`` pair weights, None for triples.
        negative_new_ids: new entity ids negatives may draw besides the old ones; None = all of them
            (every new entity has an example). Untrained new rows must not move.
        replay_ids: int64 ``[m, 3]`` old triples to replay (``replay``), None when not asked for.
        files: the input files, for the lineage's sha256 (names that are not files are left out).
        pending_before: entities pending before this run (names, from the checkpoint's lineage).
        pending_ids: int64 ``[j]`` old ids of the pending entities this run trains; in ``ids`` entity
            ``pending_ids[i]`` is the trainable id ``n_old + n_new + i``.
        pending_trained: their names (``pending_ids``' order).
        untrained: the new entities without an example: pending from this run on.
    """

    kind: DataKind
    entities: Vocab
    relations: Vocab
    n_old: int
    r_old: int
    ids: np.ndarray
    weights: np.ndarray | None
    entity_report: GrowReport
    relation_report: GrowReport
    negative_new_ids: np.ndarray | None = None
    replay_ids: np.ndarray | None = None
    n_dropped: int = 0
    n_unknown: int = 0
    n_untrained: int = 0
    n_replay_skipped: int = 0
    files: tuple = field(default_factory=tuple)
    pending_before: list[str] = field(default_factory=list)
    pending_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pending_trained: list[str] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)
    contexts: ContextDelta | None = None  # the b side of a pair model with two vocabularies

    @property
    def n_new(self) -> int:
        return len(self.entity_report.added)

    @property
    def r_new(self) -> int:
        return len(self.relation_report.added)

    @property
    def n_pending_trained(self) -> int:
        return len(self.pending_ids)

    @property
    def n_trainable(self) -> int:
        """Trainable rows of each entity table: the new entities, then the pending ones trained tonight."""
        return self.n_new + self.n_pending_trained

    @property
    def nothing_to_do(self) -> bool:
        """Every new name is already known and no pending entity is named (a rerun of a night that
        succeeded, or an empty day)."""
        return (not self.n_new and not self.r_new and not self.n_pending_trained
                and not (self.contexts and self.contexts.n_new))

    def pending_after(self) -> list[str]:
        """Entities pending once this run is saved: those still untrained, then tonight's new ones without data."""
        trained = set(self.pending_trained)
        return [n for n in self.pending_before if n not in trained] + self.untrained

    def pending_record(self) -> dict[str, list[str]]:
        """The lineage's record of pending entities (every name; :func:`~embretrain.checkpoint.base.pending_names`
        reads it back); nothing for a run that has none to record."""
        if not self.untrained and not self.pending_trained:
            return {}
        return {PENDING_ADDED: list(self.untrained), PENDING_TRAINED: list(self.pending_trained)}

    def trainable_starts(self, old, start_rows):
        """``start_rows`` for one entity table's :func:`~embretrain.tables.split_tables`: its own start
        rows for the new entities, then the current rows (``old``, that table's frozen rows) of the
        pending entities trained tonight, so they start where they are."""
        if not self.n_pending_trained:
            return start_rows
        from .tables import glorot_rows  # numpy only; delta builds no table

        start_rows = start_rows or glorot_rows
        current = storage.take(old, self.pending_ids)

        def starts(rng, n, width, n_total):
            j = self.n_pending_trained
            rows = start_rows(rng, n - j, width, n_total - j)  # drawn as if nothing were pending: same bytes
            return np.concatenate([np.asarray(rows, dtype=np.float32), current])

        return starts

    def counts(self) -> dict[str, int]:
        """What ``extend`` did with its inputs: the summary's and the lineage's counts, in their order."""
        counts = {
            "entities_before": self.n_old,
            "entities_added": self.n_new,
            "entities_already_known": self.entity_report.already_known,
            "entities_duplicate": self.entity_report.duplicates,
            "relations_before": self.r_old,
            "relations_added": self.r_new,
            "relations_already_known": self.relation_report.already_known,
            "relations_duplicate": self.relation_report.duplicates,
            "examples_used": int(len(self.ids)),
            "examples_dropped_no_new": self.n_dropped,
            "examples_skipped_unknown": int(self.n_unknown),
            "entities_untrained": self.n_untrained,
            "entities_pending": name_list(self.pending_after()),
            "entities_pending_trained": name_list(self.pending_trained),
            "examples_per_new_entity": self.examples_per_new_entity(),
        }
        if self.contexts is not None:
            counts.update(self.contexts.counts())
        if self.replay_ids is not None:
            counts.update(replay_examples=int(len(self.replay_ids)), replay_skipped=int(self.n_replay_skipped))
        return counts

    def new_entity_examples(self) -> np.ndarray:
        """int64 ``[n_new]``: the training examples naming each new entity (a self-loop counts once)."""
        cols = self.ids[:, list(self.kind.entity_columns)] - self.n_old
        named = (cols >= 0) & (cols < self.n_new)  # not the pending entities trained past them
        if named.shape[1] > 1:  # not with two vocabularies: column 1 holds context ids
            named[:, 1] &= cols[:, 1] != cols[:, 0]
        return np.bincount(cols[named], minlength=self.n_new)

    def examples_per_new_entity(self) -> dict[str, float | int | None]:
        """How well the new entities are covered: min/median/max examples each (0 while some are untrained),
        and how many have 1, 2 to 5, 6 or more. A new entity with one example barely moves from its start."""
        n = self.new_entity_examples()
        if not len(n):
            return {"min": None, "median": None, "max": None, "with_1": 0, "with_2_to_5": 0, "with_6_or_more": 0}
        return {"min": int(n.min()), "median": float(np.median(n)), "max": int(n.max()), "with_1": int((n == 1).sum()),
                "with_2_to_5": int(((n >= 2) & (n <= 5)).sum()), "with_6_or_more": int((n >= 6).sum())}

    def input_hashes(self) -> dict[str, str]:
        """sha256 of each input that is a file on disk, by path."""
        return {str(f.path): sha256_file(f.path) for f in self.files if f is not None and Path(f.path).is_file()}


@dataclass
class ContextDelta:
    """The ``b`` side of a pair model with a vocabulary of its own (items for users), grown like the entities.

    Attributes:
        vocab: the grown context vocabulary: old names first, in their old order, then the new ones.
        n_old: context rows before the run.
        negative_new_ids: new context ids ``b``-side negatives may draw besides the old ones; None = all
            of them (every new context has an example).
        n_untrained: new contexts without an example (they keep their initial vector).
    """

    vocab: Vocab
    n_old: int
    report: GrowReport
    negative_new_ids: np.ndarray | None = None
    n_untrained: int = 0

    @classmethod
    def of(cls, vocab: Vocab, n_old: int, report: GrowReport, b_ids: np.ndarray) -> ContextDelta:
        seen = np.unique(b_ids)
        trained_new = seen[seen >= n_old]
        n_untrained = len(report.added) - len(trained_new)
        return cls(vocab, n_old, report, None if n_untrained == 0 else trained_new, int(n_untrained))

    @property
    def n_new(self) -> int:
        return len(self.report.added)

    def counts(self) -> dict[str, int]:
        return {"contexts_before": self.n_old, "contexts_added": self.n_new,
                "contexts_already_known": self.report.already_known, "contexts_duplicate": self.report.duplicates,
                "contexts_untrained": self.n_untrained}


def _grown_vocab(ckpt: Checkpoint, kind: str, new_names: list[str], wanted: set[str]):
    """Grow a vocabulary (old names in a list, a read-only tuple or on disk) indexing only ``wanted``.

    Old names that cannot change (a tuple, names on disk) are not copied: the result's names are a
    NameStack whose old part carries its load-time sha256, so a save only hashes the added ones.
    """
    old = getattr(ckpt, kind)
    if isinstance(old, list) and len(set(old)) != len(old):
        Vocab(old)  # raises, naming the first repeated name
    vocab, report = Vocab.partial(old, wanted | set(new_names)).grow(new_names)
    return vocab, report


def _train_pending(ids: np.ndarray, kind: DataKind, entities: Vocab, pending: list[str],
                   first: int) -> tuple[list[str], np.ndarray]:
    """Map the pending entities the examples ``ids`` name to trainable ids ``first + j`` (in place).

    Returns ``(their names, their old ids int64 [j])``, in the order they were added. An old id is
    frozen, so a pending entity cannot train under it; the trainable id routes it to the trainable
    rows, and :func:`grow_checkpoint` writes the result back at the old id.
    """
    cols = list(kind.entity_columns)
    candidates = [n for n in pending if n in entities]  # pending names tonight's files mention (indexed)
    mentioned = np.isin(np.array([entities[n] for n in candidates], dtype=np.int64), ids[:, cols])
    names = [n for n, hit in zip(candidates, mentioned.tolist()) if hit]  # by an example, not a skipped line
    old_ids = np.array([entities[n] for n in names], dtype=np.int64)
    if len(old_ids):
        order = np.argsort(old_ids)
        sorted_ids, trainable = old_ids[order], (first + order).astype(np.int64)
        named = ids[:, cols]
        at = np.minimum(np.searchsorted(sorted_ids, named), len(sorted_ids) - 1)
        hit = sorted_ids[at] == named
        named[hit] = trainable[at[hit]]
        ids[:, cols] = named
    return names, old_ids


def prepare_delta(ckpt: Checkpoint, scorer, new_entities: NameInput, data, *, new_relations: NameInput = None,
                  skip_unknown: bool = False, replay: TripleInput | None = None, new_contexts: NameInput = None) -> Delta:
    """Read the night's files and express them in the grown id space of ``ckpt``.

    A pair model with two vocabularies (``ckpt.contexts``) maps ``a`` to entities and ``b`` to contexts,
    each side growing by its own new names (``new_entities``, ``new_contexts``).

    Raises:
        DataError: a new-name file lists a name twice, or data names something unknown (unless
            ``skip_unknown``).
        UsageError: ``replay`` or new relations with a pair model; new contexts without a context vocabulary.
    """
    kind = data_kind(scorer, two_vocab=ckpt.contexts is not None)
    ctx_file = name_file(new_contexts)
    _reject_repeats(ctx_file, "context")
    if ctx_file.names and ckpt.contexts is None:
        raise UsageError(f"{ctx_file.path}: new contexts need a pair model with a context vocabulary of its own")
    ent_file, rel_file = name_file(new_entities), name_file(new_relations)
    _reject_repeats(ent_file, "entity")
    _reject_repeats(rel_file, "relation")
    # Index only the old names this run mentions (its delta and new names): one pass over the old
    # names instead of a dict of all of them (which for names left on disk would not fit in memory).
    f = kind.read(data)
    ent_wanted, rel_wanted = (set(names) for names in kind.names(f))
    pending_before = pending_names(ckpt.lineage)
    replay_file = None
    if replay is not None:
        if not kind.has_relations:
            raise UsageError("replay needs a triple model, not a pair model")
        replay_file = triple_file(replay)
        ent_names, rel_names = TRIPLES.names(replay_file)
        ent_wanted |= set(ent_names)
        rel_wanted |= set(rel_names)
    entities, ent_report = _grown_vocab(ckpt, "entities", ent_file.names, ent_wanted)
    relations, rel_report = _grown_vocab(ckpt, "relations", rel_file.names, rel_wanted)
    if not kind.has_relations and rel_report.added:
        raise UsageError(f"{rel_file.path}: a pair model ({ckpt.model}) has no relations to add")
    n_old, r_old = ckpt.n_entities, ckpt.n_relations

    contexts, ctx_report = (None, None) if ckpt.contexts is None else _grown_vocab(
        ckpt, "contexts", ctx_file.names, {b for _, b in f.pairs})
    ids, weights, n_unknown = kind.map(f, entities, relations, skip_unknown=skip_unknown, contexts=contexts)
    n_new = len(ent_report.added)
    named_pending, pending_ids = _train_pending(ids, kind, entities, pending_before, n_old + n_new)
    keep = kind.touching_new(ids, n_old, r_old) | (contexts is not None and ids[:, 1] >= ckpt.n_contexts)
    ids = ids[keep]
    weights = None if weights is None else weights[keep]
    seen = np.unique(ids[:, list(kind.entity_columns)])
    trained_new = seen[seen >= n_old]  # new entities with an example, and the pending ones named
    with_data = set((seen[(seen >= n_old) & (seen < n_old + n_new)] - n_old).tolist())
    untrained = [name for i, name in enumerate(ent_report.added) if i not in with_data]
    n_untrained = len(untrained)
    replay_ids, n_replay_skipped = None, 0
    if replay_file is not None:
        replay_ids, _, _ = TRIPLES.map(replay_file, entities, relations, skip_unknown=True)
        old_only = (replay_ids[:, [0, 2]] < n_old).all(axis=1) & (replay_ids[:, 1] < r_old)
        # a pending row is no trained fact about an old entity: its triples are not replayed
        pending = [entities[n] for n in pending_before if n in entities]
        old_only &= ~np.isin(replay_ids[:, [0, 2]], pending).any(axis=1)
        replay_ids = replay_ids[old_only]
        n_replay_skipped = len(replay_file.triples) - len(replay_ids)
    return Delta(
        kind=kind, entities=entities, relations=relations, n_old=n_old, r_old=r_old, ids=ids, weights=weights,
        entity_report=ent_report, relation_report=rel_report,
        # negatives: every old entity and every new one that has data
        negative_new_ids=None if n_untrained == 0 else trained_new,
        replay_ids=replay_ids, n_dropped=int((~keep).sum()), n_unknown=int(n_unknown), n_untrained=n_untrained,
        n_replay_skipped=n_replay_skipped, files=(ent_file, rel_file, f, replay_file, ctx_file),
        pending_before=pending_before, pending_ids=pending_ids, pending_trained=named_pending, untrained=untrained,
        contexts=None if contexts is None else ContextDelta.of(contexts, ckpt.n_contexts, ctx_report, ids[:, 1]),
    )


def scratch_delta(scorer, data) -> Delta:
    """``train`` from scratch: every name is new, in order of first appearance in ``data``."""
    kind = data_kind(scorer)
    f = kind.read(data)
    ent_names, rel_names = kind.names(f)
    entities, relations = Vocab(ent_names), Vocab(rel_names)
    ids, weights, _ = kind.map(f, entities, relations)
    return Delta(kind=kind, entities=entities, relations=relations, n_old=0, r_old=0, ids=ids, weights=weights,
                 entity_report=GrowReport(added=ent_names), relation_report=GrowReport(added=rel_names), files=(f,))


def grow_checkpoint(ckpt: Checkpoint, delta: Delta, new_rows: dict[str, np.ndarray]) -> Checkpoint:
    """``ckpt`` with the delta's names and ``new_rows`` (by table name) appended.

    Old rows come from ``ckpt`` (the loaded arrays or the input file), never from TensorFlow: bit-identical
    by construction. The merged tables are lazy (old part + new rows): a save streams them, so the old
    table is never copied; ``np.asarray`` builds one for a consumer that needs an array. An entity table's
    trainable rows past the new ones (``new_rows[k][n_new:]``) are the pending entities trained tonight:
    they replace those entities' old rows, at their own ids (:func:`~embretrain.storage.stack_rows`).
    """
    entity_tables = set(ckpt.entity_tables)

    def grown(tables):
        out = {}
        for k, v in tables.items():
            rows = new_rows[k]
            # pending entities have rows in every entity table, but not in a context table of its own
            if k in entity_tables and delta.n_pending_trained and (delta.contexts is None or k != CONTEXT_TABLE):
                out[k] = storage.stack_rows(v, rows[: delta.n_new], replace=(delta.pending_ids, rows[delta.n_new :]))
            else:
                out[k] = storage.stack_rows(v, rows)
        return out

    return Checkpoint(
        model=ckpt.model,
        entities=delta.entities.names,
        relations=delta.relations.names,
        entity_tables=grown(ckpt.entity_tables),
        relation_tables=grown(ckpt.relation_tables),
        params=dict(ckpt.params),
        lineage=list(ckpt.lineage),
        extras=dict(ckpt.extras),
        contexts=ckpt.contexts if delta.contexts is None else delta.contexts.vocab.names,
    )
