"""Filtered link-prediction ranking: MRR and Hits@k with realistic ranks for ties.

For each test triple (h, r, t) every entity is scored as tail (and as head); entities that form
a known true triple (from ``--known`` files and the test set) are filtered out, except the
answer itself. Rank = 1 + #(higher) + #(equal)/2: the mean of the optimistic and pessimistic
rank, so a model that scores everything equal gets a middle rank, not rank 1.
Queries are scored in batches, with one matrix product per batch for the scorers that allow it.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from .models import Scorer
from .quiet_tf import import_tensorflow

__all__ = ["filtered_ranks", "metrics"]

logger = logging.getLogger(__name__)

_BROADCAST_BUDGET = 1 << 25  # floats in a [B, N, d] intermediate of a broadcasting scorer


_SCORE_FUNCTIONS: dict = {}  # (scorer class, its parameters) -> its ranking function, traced once


def _score_function(scorer: Scorer):
    """The compiled scoring of a batch of queries against every entity, one per model and parameters, kept across
    calls: tables are arguments, not captured, so evaluating checkpoint after checkpoint (a notebook's loop, the
    benchmarks) reuses one trace instead of tracing a new function per call, which TensorFlow warned about from the
    fifth call on. Not eager: RotatE's broadcast distances ran 1.6x slower without the graph (FB15k-237 size)."""
    tf = import_tensorflow()

    key = (type(scorer), repr(sorted(scorer.params.items())))
    if key not in _SCORE_FUNCTIONS:

        @tf.function(reduce_retracing=True, autograph=False)
        def score(ent, rel, ctx, q_ids, r_ids, side_is_tail: bool):
            r = None if rel is None else tf.gather(rel, r_ids)
            if side_is_tail:
                return scorer.score_tails(tf.gather(ent, q_ids), r, ctx)
            return scorer.score_heads(r, tf.gather(ctx, q_ids), ent)

        _SCORE_FUNCTIONS[key] = score
    return _SCORE_FUNCTIONS[key]


def _filter_index(known: list[np.ndarray], key_cols: tuple[int, int], answer_col: int) -> dict:
    index: dict[tuple[int, int], list[int]] = defaultdict(list)
    for ids in known:
        for row in ids:
            index[(int(row[key_cols[0]]), int(row[key_cols[1]]))].append(int(row[answer_col]))
    return {k: np.unique(np.asarray(v, dtype=np.int64)) for k, v in index.items()}


def filtered_ranks(
    scorer: Scorer,
    entities: np.ndarray,
    relations: np.ndarray | None,
    test: np.ndarray,
    known: list[np.ndarray],
    *,
    sides: tuple[str, ...] = ("head", "tail"),
    batch_size: int | None = None,
    context: np.ndarray | None = None,
) -> np.ndarray:
    """Realistic filtered ranks.

    Args:
        entities: float32 ``[N, d]`` entity table (for a pair model: the table answers are scored in).
        relations: float32 ``[R, d_r]`` or None for pair models.
        test: int64 ``[n, 3]`` (head, relation, tail); pair models use relation id 0 and ``relations=None``.
        known: int64 ``[m, 3]`` arrays of true triples to filter (the test set is added).
        context: float32 ``[N_b, d]`` second table of a pair model: tails (``b``) are scored in it and test
            tails are its row ids; ``N_b`` differs from ``N`` when the model has two vocabularies.
    Returns:
        float64 ``[n, len(sides)]`` ranks.
    """
    tf = import_tensorflow()

    n_ent, width = entities.shape
    if batch_size is None:
        batch_size = 256 if scorer.matmul_ranking else max(1, _BROADCAST_BUDGET // max(1, n_ent * width))
    all_known = [*known, test]
    ent = tf.constant(entities)
    ctx = ent if context is None else tf.constant(context)
    rel = None if relations is None else tf.constant(relations)
    traced = _score_function(scorer)

    def score(q_ids, r_ids, side_is_tail: bool):
        return traced(ent, rel, ctx, q_ids, r_ids, side_is_tail)

    ranks = np.zeros((len(test), len(sides)), dtype=np.float64)
    for col, side in enumerate(sides):
        tail = side == "tail"
        # filter: for tail ranking, true tails of (h, r); for head ranking, true heads of (r, t)
        filt = _filter_index(all_known, (0, 1) if tail else (1, 2), 2 if tail else 0)
        for start in range(0, len(test), batch_size):
            chunk = test[start : start + batch_size]
            q_ids = chunk[:, 0] if tail else chunk[:, 2]
            answers = chunk[:, 2] if tail else chunk[:, 0]
            scores = score(tf.constant(q_ids), tf.constant(chunk[:, 1]), tail).numpy()
            rows = np.arange(len(chunk))
            true = scores[rows, answers].copy()
            # knock out the other true answers (vectorised over the batch)
            fr, fc = [], []
            for i, row in enumerate(chunk):
                key = (int(row[0]), int(row[1])) if tail else (int(row[1]), int(row[2]))
                cols = filt.get(key)
                if cols is not None:
                    fr.append(np.full(len(cols), i))
                    fc.append(cols)
            if fr:
                scores[np.concatenate(fr), np.concatenate(fc)] = -np.inf
            higher = (scores > true[:, None]).sum(axis=1)
            equal = (scores == true[:, None]).sum(axis=1)  # answer was knocked out: ties are others only
            ranks[start : start + len(chunk), col] = 1.0 + higher + equal / 2.0
    return ranks


def metrics(ranks: np.ndarray) -> dict[str, float]:
    """MRR, Hits@1/3/10 and the mean rank over all ranks (both sides pooled)."""
    flat = np.asarray(ranks, dtype=np.float64).ravel()
    if flat.size == 0:
        return {"mrr": float("nan"), "hits@1": float("nan"), "hits@3": float("nan"), "hits@10": float("nan"),
                "mean_rank": float("nan"), "n_ranks": 0}
    return {
        "mrr": float(np.mean(1.0 / flat)),
        "hits@1": float(np.mean(flat <= 1)),
        "hits@3": float(np.mean(flat <= 3)),
        "hits@10": float(np.mean(flat <= 10)),
        "mean_rank": float(np.mean(flat)),
        "n_ranks": int(flat.size),
    }
