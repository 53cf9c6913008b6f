"""The checkpoint every format loads into and saves from.

A :class:`Checkpoint` is plain data: vocabularies, float32 tables keyed by name, the scoring
model's name and parameters, and the lineage of runs that made it. Format modules (native HDF5,
TF, Keras) translate between it and bytes on disk. Owns: that record. Must not: read or write
files, or know where its rows live (:mod:`embretrain.storage` does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # storage imports numpy; the CLI imports this module for --help
    from ..storage import Names, Rows

__all__ = ["Checkpoint", "ENTITY_TABLE", "RELATION_TABLE", "CONTEXT_TABLE", "PENDING_ADDED", "PENDING_TRAINED",
           "pending_names"]

logger = logging.getLogger(__name__)

ENTITY_TABLE = "entity_embeddings"
RELATION_TABLE = "relation_embeddings"
CONTEXT_TABLE = "context_embeddings"  # second table of a pair (skip-gram style) model


PENDING_ADDED = "pending_entities_added"  # new entities this run added without data: pending from now on
PENDING_TRAINED = "pending_entities_trained"  # pending entities this run trained: no longer pending


def pending_names(lineage: list[dict[str, Any]]) -> list[str]:
    """Entities pending after the runs of ``lineage`` (oldest first), in the order they were added.

    An extend records the new entities it added without data (:data:`PENDING_ADDED`) and the pending
    ones it trained (:data:`PENDING_TRAINED`); the last word about a name wins. Values that are not
    lists of names (a hand-edited sidecar) are ignored.
    """
    pending: dict[str, None] = {}

    def names(rec, key):
        value = rec.get(key) if isinstance(rec, dict) else None
        return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []

    for rec in lineage:
        for name in names(rec, PENDING_TRAINED):
            pending.pop(name, None)
        for name in names(rec, PENDING_ADDED):
            pending[name] = None
    return list(pending)


@dataclass
class Checkpoint:
    """A trained embedding model.

    Attributes:
        model: scorer name (``transe``, ``distmult``, ``complex``, ``rotate``, ``dot``, ...).
        entities: entity names (:data:`~embretrain.storage.Names`: a list, frozen names, names left
            on disk, or old + new); row i of every entity table is ``entities[i]``.
        relations: relation names; empty for pair models.
        entity_tables: name -> :class:`~embretrain.storage.Rows` ``[n_entities, width]`` (an array,
            frozen rows, rows left on disk, or old + new); always has ``entity_embeddings``. A pair
            model's ``context_embeddings`` is here too, with ``[n_contexts, width]`` rows when
            ``contexts`` is set.
        contexts: names of the ``b`` side of a pair model with two vocabularies (a two-tower model:
            users are entities, items are contexts); row i of ``context_embeddings`` is ``contexts[i]``.
            None (every file before two vocabularies): context rows are indexed by ``entities``.
        relation_tables: name -> Rows ``[n_relations, width]``; ``relation_embeddings`` for triple models.
        params: the scorer's parameters (e.g. ``norm``, ``gamma``), stored as root attributes.
        lineage: one dict per ``train``/``extend`` run, oldest first.
        source: path this checkpoint was loaded from, if any.
        checksums: ``"verified"``, ``"missing"`` (loaded with a warning), ``"unverified"`` or ``"none"``
            (never saved).
        extras: format-specific payload that must survive a round trip (e.g. other TF variables).

    A sha256 computed at load travels with the table or vocabulary itself (frozen and on-disk storage
    carry it, see :func:`embretrain.storage.sha256`), not with the checkpoint.
    """

    model: str
    entities: Names
    relations: Names
    entity_tables: dict[str, Rows]
    relation_tables: dict[str, Rows] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None
    checksums: str = "none"
    extras: dict[str, Any] = field(default_factory=dict)
    contexts: Names | None = None

    @property
    def n_entities(self) -> int:
        return len(self.entities)

    @property
    def n_relations(self) -> int:
        return len(self.relations)

    @property
    def n_contexts(self) -> int:
        """Rows of ``context_embeddings``: its own vocabulary's length, else the entities'."""
        return self.n_entities if self.contexts is None else len(self.contexts)

    def vocab_kind(self, table: str) -> str:
        """Which vocabulary indexes ``table``'s rows: ``"entities"``, ``"relations"`` or ``"contexts"``
        (as the lineage counts them: ``contexts_added``)."""
        if table in self.relation_tables:
            return "relations"
        return "contexts" if table == CONTEXT_TABLE and self.contexts is not None else "entities"

    def names_of(self, table: str) -> Names:
        """The names of ``table``'s rows (row i is name i)."""
        return {"entities": self.entities, "relations": self.relations, "contexts": self.contexts}[self.vocab_kind(table)]

    @property
    def pending(self) -> list[str]:
        """Entities added without data and not trained since (names, oldest first), from the lineage."""
        return pending_names(self.lineage)

    @property
    def dim(self) -> int:
        """Width of ``entity_embeddings`` (float columns; complex models store re|im side by side)."""
        return int(self.entity_tables[ENTITY_TABLE].shape[1])

    @property
    def rel_dim(self) -> int | None:
        table = self.relation_tables.get(RELATION_TABLE)
        return None if table is None else int(table.shape[1])

    def __repr__(self) -> str:
        """One short line for a notebook: model, counts, table shapes, parameters, runs, format, where rows live.

        Never the names (a checkpoint may hold millions): ``<Checkpoint transe: 14951 entities, 237
        relations; entity_embeddings [14951, 200], relation_embeddings [237, 200]; norm=1 gamma=12.0;
        2 runs; h5 'm.h5', rows in memory>``.
        """
        tables = ", ".join(f"{name} [{t.shape[0]}, {t.shape[1]}]" for name, t in self.tables().items())
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        fmt = self.extras.get("format") or ("h5" if self.source else "not saved")
        where = f"{fmt} {self.source!r}" if self.source else fmt
        from .. import storage

        # old rows left in their file (old_rows="on-disk"), alone or under new rows
        rows = "on disk" if any(storage.on_disk(storage.parts(t)[0]) for t in self.tables().values()) else "in memory"
        counts = f"{self.n_entities} entities, {self.n_relations} relations"
        if self.contexts is not None:
            counts += f", {len(self.contexts)} contexts"
        parts = [counts, tables, params,
                 f"{len(self.lineage)} run{'s' if len(self.lineage) != 1 else ''}", f"{where}, rows {rows}"]
        return f"<Checkpoint {self.model}: " + "; ".join(p for p in parts if p) + ">"

    def tables(self) -> dict[str, Rows]:
        """All tables, entity-indexed first."""
        return {**self.entity_tables, **self.relation_tables}
