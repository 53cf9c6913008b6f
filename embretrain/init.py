"""Where a new entity's row starts: Glorot (``xavier``) or a closed form from its frozen neighbours.

Owns the placement procedure of ``--init neighbors``; each model owns its own closed form (``estimate`` in
``embretrain/models/<model>.py``, read through the registry). Must not hold any model's formula, import
TensorFlow, or change an old row.

A new entity that appears in a delta triple with an already placed entity gets the position that triple
asks for (the model's ``estimate``: e.g. TransE ``t - r`` for ``(new, r, t)``, ``h + r`` for ``(h, r, new)``),
combined over all such triples. For bilinear models (``estimate_is_direction``: DistMult, ComplEx) an estimate
is the direction that maximises the score with the neighbour fixed: each is normalised to unit length,
averaged, then scaled to the median norm of the old rows (a bilinear score grows with the norm, so the
direction is what the neighbours tell us, the size is what the table is used to), and finally shifted along
the mean query direction to an old row's score level (see ``_calibrate``).

Estimates are averaged, or (``neighbors-median``) combined by their coordinate-wise median, the L1
centre (TransE's default distance is L1). Entities whose neighbours are all new are placed in later
passes from their placed neighbours; an entity with no placeable neighbour keeps its Glorot row. Triples with a
new relation are skipped (the relation row is itself untrained). Models without a closed form (``estimate =
None``, e.g. the pair model) keep Glorot rows.
Arrays: entities float32 ``[n_old, d]``, relations ``[n_rel_old, d_r]``, triples int64 ``[n, 3]``.
Only the rows the delta touches are gathered (the old table may be on disk); statistics over all old
rows (median norm, score level) are computed a block at a time.
"""

from __future__ import annotations

import logging

import numpy as np

from .storage import BLOCK_BYTES, blocks, take
from .models import Estimate, scorer_class

__all__ = ["INIT_CHOICES", "neighbor_rows"]

logger = logging.getLogger(__name__)

INIT_CHOICES = ("xavier", "neighbors", "neighbors-median")
_MAX_PASSES = 4
_CHUNK_TRIPLES = 1 << 15  # triples whose estimates are computed at once
def _block_rows(table) -> int:
    """Old rows per block for whole-table statistics: 16 MiB of float32 rows (bounded memory at any width; a
    function of the width alone, so results do not depend on where the rows live)."""
    return max(1, BLOCK_BYTES // (4 * int(table.shape[1])))


def _group_chunks(sorted_ids: np.ndarray, size: int):
    """``(lo, hi)`` slices of ``sorted_ids`` of about ``size`` items that never split a run of equal ids (a run
    longer than ``size`` is one slice of its own)."""
    n, lo = len(sorted_ids), 0
    while lo < n:
        hi = min(lo + size, n)
        if hi < n:  # extend to the end of the group at hi - 1
            hi = int(np.searchsorted(sorted_ids, sorted_ids[hi - 1], side="right"))
        yield lo, hi
        lo = hi


def _combine(ids: np.ndarray, est: np.ndarray, median: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(unique ids, one row per id)``: the mean of each id's estimates, or their coordinate-wise median.
    ``ids`` are sorted (the caller groups the estimates by the entity they place)."""
    uniq, starts, counts = np.unique(ids, return_index=True, return_counts=True)
    if not median:
        return uniq, np.add.reduceat(est, starts, axis=0) / counts[:, None]
    rows = np.empty((len(uniq), est.shape[1]))
    for i, (a, c) in enumerate(zip(starts, counts)):
        rows[i] = est[a] if c == 1 else np.median(est[a : a + c], axis=0)
    return uniq, rows


def _calibrate(estimate: Estimate, rows: np.ndarray, entities, relations: np.ndarray, n_queries: int = 4096):
    """Shift bilinear rows along the mean query directions so their mean scores match a typical old row's.

    A direction taken from the neighbours alone tends to align with what every query has in common (a
    bias all trained rows learnt to avoid): such a row then outranks old answers of old queries
    (measured on WN18RR DistMult: old-only MRR 0.39 -> 0.02). Removing the excess along the mean
    queries (as head and as tail) keeps what the neighbours say and gives the row an old entity's level.
    ``entities``: the old table (array or on-disk rows), read a block at a time.
    """
    rng = np.random.default_rng(0)
    n_old = int(entities.shape[0])
    h, t = rng.integers(0, n_old, n_queries), rng.integers(0, n_old, n_queries)
    r = relations[rng.integers(0, len(relations), n_queries)].astype(np.float64)
    eh, et = take(entities, h).astype(np.float64), take(entities, t).astype(np.float64)
    # mean query of each role (as tail: h*r, as head: r*t); they differ for an asymmetric model (ComplEx)
    q_bar = np.stack([estimate(eh, r, et, "tail").mean(0), estimate(eh, r, et, "head").mean(0)])
    scores = np.concatenate([block.astype(np.float64) @ q_bar.T for _, block in blocks(entities, _block_rows(entities))])
    level = np.median(scores, axis=0)  # [2]: a typical old row's mean score in each role
    # smallest change (within the span of the two mean queries) that puts both levels at an old row's
    return rows - (rows @ q_bar.T - level) @ np.linalg.pinv(q_bar).T


def neighbor_rows(
    model: str,
    entities: np.ndarray,
    relations: np.ndarray,
    triples: np.ndarray,
    start: np.ndarray,
    *,
    median: bool = False,
) -> tuple[np.ndarray, int]:
    """New entity rows placed from their neighbours.

    Args:
        model: scorer name (a registered triple model; one without a closed form keeps ``start``).
        entities: float32 ``[n_old, d]`` frozen entity rows: an array, or rows left on disk
            (:class:`~embretrain.storage.DiskRows`); only the rows the delta touches are read.
        relations: float32 ``[n_rel_old, d_r]`` frozen relation rows (triples with a relation id beyond
            them are skipped).
        triples: int64 ``[n, 3]`` delta triples in the grown id space (new entities have ids >= n_old).
        start: float32 ``[n_new, d]`` initial rows (Glorot); kept for entities nothing can place.
        median: combine estimates by their coordinate-wise median instead of the mean (``--init
            neighbors-median``): for TransE with an L1 distance it is the point nearest to all of them,
            as the mean is for L2, and it ignores an outlying neighbour.
    Returns:
        ``(rows float32 [n_new, d], number of entities placed)``.
    """
    cls = scorer_class(model)
    n_new = start.shape[0]
    if cls.estimate is None:
        logger.warning("model %s has no closed form for a neighbour start; new rows start from Glorot", model)
        return start, 0
    estimate, bilinear = cls.estimate, cls.estimate_is_direction
    n_old, d = (int(x) for x in entities.shape)
    relations = np.asarray(relations)
    triples = triples[triples[:, 1] < relations.shape[0]]
    # A local table: the old neighbours the delta mentions (sorted), then the new entities.
    ends = triples[:, [0, 2]]
    old_ids = np.unique(ends[ends < n_old])
    k = len(old_ids)

    def local(ids: np.ndarray) -> np.ndarray:
        return np.where(ids < n_old, np.searchsorted(old_ids, np.minimum(ids, n_old - 1) if n_old else ids), ids - n_old + k)

    triples = np.stack([local(triples[:, 0]), triples[:, 1], local(triples[:, 2])], axis=1)
    # The local table in two parts: the old neighbours as float32 (as stored: widened exactly when gathered, so half
    # the memory of a float64 copy, which at 1M old rows was ~190 MB of a 200k-triple extend's peak) and the new rows
    # in float64 (they are placed, and read back in later passes, at full precision).
    old_rows, new_rows = take(entities, old_ids).reshape(k, d).astype(np.float32, copy=False), start.astype(np.float64)

    def table(ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), d))
        is_old = ids < k
        out[is_old] = old_rows[ids[is_old]]
        out[~is_old] = new_rows[ids[~is_old] - k]
        return out

    placed = np.zeros(k + n_new, dtype=bool)
    placed[:k] = True
    if n_old:
        norms = np.concatenate([np.linalg.norm(block, axis=1) for _, block in blocks(entities, _block_rows(entities))])
        target_norm = float(np.median(norms))
        del norms
    else:
        target_norm = 1.0
    for _ in range(_MAX_PASSES):
        # estimate the not-yet-placed side of each triple from its already placed other side
        jobs = [(side, triples[~placed[triples[:, col]] & placed[triples[:, other]]], col)
                for side, col, other in (("head", 0, 2), ("tail", 2, 0))]
        ids = np.concatenate([m[:, col] for _, m, col in jobs])
        if not len(ids):
            break
        job_side = np.concatenate([np.full(len(m), i, np.int8) for i, (_, m, _) in enumerate(jobs)])
        job_triple = np.concatenate([m for _, m, _ in jobs])
        # Grouped by the entity they place (stable: each group keeps the order of the estimates), a chunk of
        # whole groups at a time: all of a 10^6-triple delta's estimates at once would be GBs (d = 128: 1 KB each
        # in float64, measured 300 MB above a run's base for 200k triples), and so would their sorted copy.
        order = np.argsort(ids, kind="stable")
        ids, job_side, job_triple = ids[order], job_side[order], job_triple[order]
        for lo, hi in _group_chunks(ids, _CHUNK_TRIPLES):
            c, s = job_triple[lo:hi], job_side[lo:hi]
            e = np.empty((hi - lo, d))
            for i, (side, _, _) in enumerate(jobs):
                mine = s == i
                if mine.any():
                    t = c[mine]
                    e[mine] = estimate(table(t[:, 0]), relations[t[:, 1]].astype(np.float64), table(t[:, 2]), side)
            if bilinear:
                e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            fresh, rows = _combine(ids[lo:hi], e, median=median)
            if bilinear:
                rows *= target_norm / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            new_rows[fresh - k] = rows  # fresh ids are new: every old neighbour was placed from the start
            placed[fresh] = True
    if bilinear and n_old:
        new_rows[placed[k:]] = _calibrate(estimate, new_rows[placed[k:]], entities, relations)
    n_placed = int(placed[k:].sum())
    logger.info("init neighbors: %d of %d new entities placed from their neighbours", n_placed, n_new)
    return new_rows.astype(np.float32), n_placed
