"""Early stopping for ``extend`` on a held-out slice of the delta (``--valid-fraction``).

A slice of the delta triples is held out (never trained on), chosen so every new entity keeps at
least one training triple. After each epoch the held-out triples are ranked (filtered against the
whole delta, both sides pooled) among a fixed random sample of candidate entities, and the new rows
of the epoch with the best MRR are kept; training stops after ``patience`` epochs without
improvement. The slice (``max_size``) and the candidates are capped because ranking against every
entity after every epoch would cost more than the epochs it saves; a sampled MRR is higher than the
full one but orders epochs the same way, which is all the choice needs.

Owns: the held-out split (:func:`holdout`) and the stopper's hooks (``on_epoch``, ``after_fit``,
``report``), which :class:`embretrain.levers.EarlyStop` drives. Must not: train, read files, or decide
whether early stopping applies (levers.py does).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["holdout", "EarlyStopping"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_HELD_OUT = 500
DEFAULT_CANDIDATES = 2000
_CHUNK = 64  # held-out queries scored at once (a broadcasting scorer builds [chunk, candidates, dim])


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
    """Ranks the held-out triples after every epoch and remembers the best epoch's new rows.

    Args:
        emb: the :class:`embretrain.train.Embeddings` being trained.
        held_out: int64 ``[m, 3]`` triples to rank after every epoch.
        known: int64 ``[k, 3]`` true triples filtered out of the ranking (the whole delta).
        patience: epochs without a better MRR before training stops (0 = never stop early, still keep the best).
    """

    def __init__(self, emb, held_out: np.ndarray, known: np.ndarray, patience: int = 2, *,
                 candidates: int = DEFAULT_CANDIDATES, seed: int = 0):
        self.emb = emb
        self.held_out = held_out
        self.patience = patience
        self.history: list[float] = []
        self.best_epoch = 0
        self.best_mrr = -1.0
        self._best: list[np.ndarray] | None = None
        self._tables = [*emb.entity_tables.values(), *emb.relation_tables.values()]
        n = emb.n_entities
        # A fixed random sample of candidate answers: ranking among every entity would cost more than the
        # epochs it saves on a large vocabulary; the answers themselves are always in the sample.
        sample = np.arange(n) if n <= candidates else np.random.default_rng(seed).choice(n, candidates, replace=False)
        self.candidates = np.union1d(sample, held_out[:, [0, 2]].ravel()).astype(np.int64)
        self._filters = [self._filter(known, side) for side in ("tail", "head")]
        # epoch 0 (the starting rows) competes too: a neighbour start may already beat a trained epoch
        self._check(0)

    def _filter(self, known: np.ndarray, side: str) -> np.ndarray:
        """bool ``[m, C]``: candidate j is a true answer (other than or equal to the held-out one) of query i."""
        key_cols, answer = ((0, 1), 2) if side == "tail" else ((1, 2), 0)
        true: dict[tuple[int, int], set[int]] = {}
        for row in known:
            true.setdefault((int(row[key_cols[0]]), int(row[key_cols[1]])), set()).add(int(row[answer]))
        pos = {int(c): j for j, c in enumerate(self.candidates)}
        mask = np.zeros((len(self.held_out), len(self.candidates)), dtype=bool)
        for i, row in enumerate(self.held_out):
            for e in true.get((int(row[key_cols[0]]), int(row[key_cols[1]])), ()):
                if e in pos:
                    mask[i, pos[e]] = True
        return mask

    def _mrr(self) -> float:
        """Filtered MRR of the held-out triples among the candidates, head and tail pooled (realistic ties).

        Only the rows it scores are looked up (candidates, held-out heads, tails and relations): never a
        copy of the whole table, which may be large or left on disk.
        """
        scorer, ent, rel = self.emb.scorer, self.emb.entity, self.emb.relation
        cand = ent.lookup(self.candidates)
        recip = []
        for start in range(0, len(self.held_out), _CHUNK):
            chunk = self.held_out[start : start + _CHUNK]
            h, t = ent.lookup(chunk[:, 0]), ent.lookup(chunk[:, 2])
            r = None if rel is None else rel.lookup(chunk[:, 1])
            true = scorer.score(h, r, t).numpy()[:, None]
            for side, scores in (("tail", scorer.score_tails(h, r, cand)), ("head", scorer.score_heads(r, t, cand))):
                scores = scores.numpy()
                other = ~self._filters[0 if side == "tail" else 1][start : start + _CHUNK]
                rank = 1.0 + ((scores > true) & other).sum(1) + 0.5 * ((scores == true) & other).sum(1)
                recip.append(1.0 / rank)
        return float(np.mean(np.concatenate(recip)))

    def _check(self, epoch: int) -> bool:
        mrr = self._mrr()
        self.history.append(round(mrr, 5))
        if mrr > self.best_mrr:
            self.best_mrr, self.best_epoch = mrr, epoch
            self._best = [t.new_rows().copy() for t in self._tables]
        logger.info("early stopping: epoch %d held-out MRR %.4f (best %.4f at epoch %d)", epoch, mrr, self.best_mrr,
                    self.best_epoch)
        return self.patience > 0 and epoch - self.best_epoch >= self.patience

    def on_epoch(self, epoch: int, loss: float) -> bool:
        """Rank after ``epoch``; True when ``patience`` epochs passed without a better MRR (stop)."""
        return self._check(epoch)

    def after_fit(self) -> None:
        """Put the best epoch's rows back into the trainable variables."""
        if self._best is not None:
            for table, rows in zip(self._tables, self._best):
                if table.n_new:
                    table.new.assign(rows)

    def report(self) -> dict[str, Any]:
        """The summary's ``early_stopping`` section."""
        return {"held_out": int(len(self.held_out)), "best_epoch": self.best_epoch,
                "best_mrr": round(self.best_mrr, 5), "mrr_by_epoch": self.history}
