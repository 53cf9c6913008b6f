"""The optional levers of ``extend``: a neighbour start, early stopping, and replay of old triples; and, for
``train`` too, TensorBoard curves (:func:`with_tensorboard`, the hook itself in :mod:`embretrain.tensorboard`).

Owns: deciding which levers a run uses (:func:`choose_levers`) and each lever's part in the run, through
explicit hooks that the pipeline calls in order: ``before_fit(emb)`` once the split tables exist,
``on_epoch(epoch, loss) -> stop?`` after every epoch, ``after_fit()`` when training ends, and
``report()`` for the summary. Must not: train, build tables, or write into another lever's state; the
maths lives in :mod:`embretrain.init` (closed-form starts) and :mod:`embretrain.early_stop`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from .checkpoint import ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .config import Settings
from .delta import Delta
from .errors import UsageError

__all__ = ["Lever", "NeighbourStart", "EarlyStop", "Replay", "choose_levers"]

logger = logging.getLogger(__name__)


class Lever:
    """A lever that does nothing; subclasses override the hooks they need."""

    def before_fit(self, emb) -> None:
        """The split tables exist and hold their start rows; training has not begun."""

    def on_epoch(self, epoch: int, loss: float) -> bool:
        """An epoch ended (its rows are settled); True asks training to stop."""
        return False

    def after_fit(self) -> None:
        """Training ended; the new rows are about to be read."""

    def report(self) -> dict[str, Any]:
        """Keys this lever adds to the run's summary."""
        return {}


class Replay(Lever):
    """Old triples replayed each step with negatives drawn from the new entities only (see losses.replay_loss)."""

    def __init__(self, replay_ids: np.ndarray):
        self.replay_ids = replay_ids

    def before_fit(self, emb) -> None:
        emb.replay_ids = self.replay_ids


class NeighbourStart(Lever):
    """New entity rows start from a closed form over their frozen neighbours (``init = neighbors[-median]``)."""

    def __init__(self, ckpt: Checkpoint, train_ids: np.ndarray, *, median: bool, pair: bool):
        self.ckpt, self.train_ids, self.median, self.pair = ckpt, train_ids, median, pair
        self.placed: int | None = None

    def before_fit(self, emb) -> None:
        if self.pair:
            logger.warning("init neighbors has no closed form for a pair model; new rows start from Glorot")
            return
        from .init import neighbor_rows

        # training triples only: a held-out slice must not leak into the start
        rows, self.placed = neighbor_rows(self.ckpt.model, self.ckpt.entity_tables[ENTITY_TABLE],
                                          self.ckpt.relation_tables[RELATION_TABLE], self.train_ids,
                                          emb.entity.new_rows(), median=self.median)
        emb.entity.new.assign(rows)

    def report(self) -> dict[str, Any]:
        return {} if self.placed is None else {"init_placed_from_neighbors": self.placed}


class EarlyStop(Lever):
    """Keep the epoch whose new rows rank a held-out slice of the delta best; stop after ``patience`` worse ones."""

    def __init__(self, held_out: np.ndarray, known: np.ndarray, patience: int):
        self.held_out, self.known, self.patience = held_out, known, patience
        self.stopper = None
        self.last_check_seconds = 0.0  # the last epoch's ranking: not training time (see tensorboard.py)

    def before_fit(self, emb) -> None:
        from .early_stop import EarlyStopping

        self.stopper = EarlyStopping(emb, self.held_out, self.known, self.patience)

    def on_epoch(self, epoch: int, loss: float) -> bool:
        t0 = time.perf_counter()
        stop = self.stopper.on_epoch(epoch, loss)
        self.last_check_seconds = time.perf_counter() - t0
        return stop

    def after_fit(self) -> None:
        self.stopper.after_fit()

    def report(self) -> dict[str, Any]:
        return {"early_stopping": self.stopper.report()}


def choose_levers(settings: Settings, ckpt: Checkpoint, delta: Delta) -> tuple[Delta, list[Lever]]:
    """``(the delta to train on, levers in hook order)`` for an ``extend`` of ``ckpt`` by ``delta``.

    Early stopping holds its slice out of the delta's examples first (the returned delta's ``ids`` are
    the training examples, which ``examples_used`` counts), so the neighbour start sees training
    triples only. Hook order is replay, neighbour start, early stopping: the stopper's epoch 0 ranks the
    neighbour start.

    Raises:
        UsageError: early stopping (``valid_fraction``) asked of a pair model.
    """
    ids, levers = delta.ids, []
    if delta.replay_ids is not None:
        levers.append(Replay(delta.replay_ids))
    held_out = ids[:0]
    if settings.valid_fraction > 0:
        if not delta.kind.has_relations:
            raise UsageError("valid_fraction (early stopping) needs a triple model, not a pair model")
        from .early_stop import holdout

        ids, held_out = holdout(ids, delta.n_old, settings.valid_fraction, settings.seed)
    if settings.init in ("neighbors", "neighbors-median"):
        levers.append(NeighbourStart(ckpt, ids, median=settings.init == "neighbors-median",
                                     pair=not delta.kind.has_relations))
    if len(held_out):
        levers.append(EarlyStop(held_out, np.concatenate([ids, held_out]), settings.patience))
    return dataclasses.replace(delta, ids=ids), levers
