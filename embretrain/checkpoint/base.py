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

__all__ = ["Checkpoint", "ENTITY_TABLE", "RELATION_TABLE", "CONTEXT_TABLE"]

logger = logging.getLogger(__name__)

ENTITY_TABLE = "entity_embeddings"
RELATION_TABLE = "relation_embeddings"
CONTEXT_TABLE = "context_embeddings"  # second table of a pair (skip-gram style) model


@dataclass
class Checkpoint:
    """A trained embedding model.

    Attributes:
        model: scorer name (``transe``, ``distmult``, ``complex``, ``rotate``, ``dot``, ...).
        entities: entity names (:data:`~embretrain.storage.Names`: a list, frozen names, names left
            on disk, or old + new); row i of every entity table is ``entities[i]``.
        relations: relation names; empty for pair models.
        entity_tables: name -> :class:`~embretrain.storage.Rows` ``[n_entities, width]`` (an array,
            frozen rows, rows left on disk, or old + new); always has ``entity_embeddings``.
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

    @property
    def n_entities(self) -> int:
        return len(self.entities)

    @property
    def n_relations(self) -> int:
        return len(self.relations)

    @property
    def dim(self) -> int:
        """Width of ``entity_embeddings`` (float columns; complex models store re|im side by side)."""
        return int(self.entity_tables[ENTITY_TABLE].shape[1])

    @property
    def rel_dim(self) -> int | None:
        table = self.relation_tables.get(RELATION_TABLE)
        return None if table is None else int(table.shape[1])

    def tables(self) -> dict[str, Rows]:
        """All tables, entity-indexed first."""
        return {**self.entity_tables, **self.relation_tables}
