"""Early stopping for ``extend`` on a held-out slice of the delta (``--valid-fraction``).

A slice of the delta triples is held out (never trained on), chosen so every new entity keeps at
least one training triple. After each epoch the held-out triples are ranked (filtered against the
whole delta, both sides pooled) and the new rows of the epoch with the best MRR are kept; training
stops after ``patience`` epochs without improvement. The held-out slice is capped (``max_size``)
because ranking scores every entity: an uncapped slice would cost more than the epochs it saves.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["holdout", "EarlyStopping"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_HELD_OUT = 500


def holdout(
    ids: np.ndarray, n_old: int, fraction: float, seed: int, max_size: int = DEFAULT_MAX_HELD_OUT
) -> tuple[np.ndarray, np.ndarray]:
    """Split delta triples int64 ``[n, 3]`` into ``(train, held_out)``.

    A triple is held out only if each of its new entities (ids >= ``n_old``) keeps another triple in
    train, so no new entity is left untrained by the validation.
    """
    n = len(ids)
    want = min(int(round(fraction * n)), max_size)
    if want <= 0:
        return ids, ids[:0]
    remaining: dict[int, int] = {}
    for e in ids[:, [0, 2]].ravel():
        if e >= n_old:
            remaining[int(e)] = remaining.get(int(e), 0) + 1
    held = np.zeros(n, dtype=bool)
    taken = 0
    for i in np.random.default_rng(seed).permutation(n):
        news = {int(e) for e in (ids[i, 0], ids[i, 2]) if e >= n_old}
        if all(remaining[e] > 1 for e in news):
            for e in news:
                remaining[e] -= 1
            held[i] = True
            taken += 1
            if taken == want:
                break
    return ids[~held], ids[held]


class EarlyStopping:
    """``on_epoch`` callback for :func:`embretrain.train.fit` that remembers the best epoch's new rows.

    Args:
        emb: the :class:`embretrain.train.Embeddings` being trained.
        held_out: int64 ``[m, 3]`` triples to rank after every epoch.
        known: int64 ``[k, 3]`` true triples filtered out of the ranking (the whole delta).
        patience: epochs without a better MRR before training stops (0 = never stop early, still keep the best).
    """

    def __init__(self, emb, held_out: np.ndarray, known: np.ndarray, patience: int = 2):
        self.emb = emb
        self.held_out = held_out
        self.known = known
        self.patience = patience
        self.history: list[float] = []
        self.best_epoch = 0
        self.best_mrr = -1.0
        self._best: list[np.ndarray] | None = None
        self._tables = [*emb.entity_tables.values(), *emb.relation_tables.values()]
        # epoch 0 (the starting rows) competes too: a neighbour start may already beat a trained epoch
        self._check(0)

    def _mrr(self) -> float:
        from .evaluate import filtered_ranks

        rel = self.emb.relation
        ranks = filtered_ranks(
            self.emb.scorer,
            self.emb.entity.all_rows().numpy(),
            None if rel is None else rel.all_rows().numpy(),
            self.held_out,
            [self.known],
        )
        return float(np.mean(1.0 / ranks))

    def _check(self, epoch: int) -> bool:
        mrr = self._mrr()
        self.history.append(round(mrr, 5))
        if mrr > self.best_mrr:
            self.best_mrr, self.best_epoch = mrr, epoch
            self._best = [t.new_rows().copy() for t in self._tables]
        logger.info("early stopping: epoch %d held-out MRR %.4f (best %.4f at epoch %d)", epoch, mrr, self.best_mrr,
                    self.best_epoch)
        return self.patience > 0 and epoch - self.best_epoch >= self.patience

    def __call__(self, epoch: int, loss: float) -> bool:
        return self._check(epoch)

    def finish(self) -> None:
        """Put the best epoch's rows back into the trainable variables."""
        if self._best is not None:
            for table, rows in zip(self._tables, self._best):
                if table.n_new:
                    table.new.assign(rows)

    def report(self) -> dict[str, Any]:
        return {"held_out": int(len(self.held_out)), "best_epoch": self.best_epoch,
                "best_mrr": round(self.best_mrr, 5), "mrr_by_epoch": self.history}
