"""The in-memory checkpoint every format loads into and saves from.

A :class:`Checkpoint` is plain data: vocabularies, float32 tables keyed by name, the scoring
model's name and parameters, and the lineage of runs that made it. Format modules
(``native`` for our HDF5 file, later TF and Keras) translate between it and bytes on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Checkpoint", "ENTITY_TABLE", "RELATION_TABLE", "CONTEXT_TABLE"]

logger = logging.getLogger(__name__)

ENTITY_TABLE = "entity_embeddings"
RELATION_TABLE = "relation_embeddings"
CONTEXT_TABLE = "context_embeddings"  # second table of a pair (skip-gram style) model


@dataclass
class Checkpoint:
    """A trained embedding model.

    Attributes:
        model: scorer name (``transe``, ``distmult``, ``complex``, ``rotate``, ``dot``).
        entities: entity names; row i of every entity table is ``entities[i]``.
        relations: relation names; empty for pair models.
        entity_tables: name -> float32 array ``[n_entities, width]``; always has ``entity_embeddings``.
        relation_tables: name -> float32 array ``[n_relations, width]``; ``relation_embeddings`` for triple models.
        params: the scorer's parameters (e.g. ``norm``, ``gamma``), stored as root attributes.
        lineage: one dict per ``train``/``extend`` run, oldest first.
        source: path this checkpoint was loaded from, if any.
        checksums: ``"verified"``, ``"missing"`` (loaded with a warning) or ``"none"`` (never saved).
        extras: format-specific payload that must survive a round trip (e.g. other TF variables).
        digests: sha256 states computed while loading, by table or vocabulary name:
            ``name -> (the object as loaded, hashlib state of its bytes)``. A saver writing a table
            that starts with that very object continues the hash instead of reading the rows again;
            only trusted for objects that cannot change (read-only arrays, on-disk rows and names),
            see :meth:`digest`.
    """

    model: str
    entities: list[str]
    relations: list[str]
    entity_tables: dict[str, np.ndarray]
    relation_tables: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None
    checksums: str = "none"
    extras: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)

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
        from .disk_rows import DiskRows, RowStack  # here: disk_rows is a sibling, loaded with the package

        def on_disk(t) -> bool:  # old rows left in their file (old_rows="on-disk"), alone or under new rows
            return isinstance(t, DiskRows) or (isinstance(t, RowStack) and any(map(on_disk, t.parts)))

        rows = "on disk" if any(map(on_disk, self.tables().values())) else "in memory"
        parts = [f"{self.n_entities} entities, {self.n_relations} relations", tables, params,
                 f"{len(self.lineage)} run{'s' if len(self.lineage) != 1 else ''}", f"{where}, rows {rows}"]
        return f"<Checkpoint {self.model}: " + "; ".join(p for p in parts if p) + ">"

    def tables(self) -> dict[str, np.ndarray]:
        """All tables, entity-indexed first."""
        return {**self.entity_tables, **self.relation_tables}

    def digest(self, name: str):
        """A copy of the sha256 state recorded at load for table or vocabulary ``name``, or None.

        None unless the checkpoint still holds the very object that was hashed and that object is
        immutable (a read-only array, or rows/names left on disk): a writeable array may have been
        changed in place since.
        """
        entry = self.digests.get(name)
        if entry is None:
            return None
        obj, state = entry
        current = {"entities": self.entities, "relations": self.relations}.get(name, self.tables().get(name))
        if current is not obj:
            return None
        if isinstance(obj, np.ndarray) and obj.flags.writeable:
            return None
        if isinstance(obj, list):  # names kept in a list can be edited in place (a tuple cannot)
            return None
        return state.copy()
