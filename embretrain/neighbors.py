"""Nearest neighbours of entities: the report of ``embretrain neighbors`` and the sanity figure for ``extend --report``.

A person looking at last night's new rows wants to know whether they landed among sensible
entities. This module answers with cosine similarity over the entity table and, for triple models,
with the model's own top tails/heads under an entity's most frequent relation.

Cost follows one pass over the table: the table is read block by block (:func:`storage.blocks`;
a table left on disk is streamed and the next block is read while the current one is multiplied),
each block is scored against all queries with one matrix product, and a top-k is merged per block
with ``np.argpartition``. The table is never copied whole, so a 10M-row file needs a few blocks of
memory. Numpy only: no TensorFlow, so the report runs on a machine that merely serves the vectors.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .checkpoint import ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .storage import BLOCK_BYTES, blocks, is_lazy, take
from .errors import DataError, UsageError

__all__ = ["AMONG", "format_text", "load_for_report", "nearest", "report", "sanity", "top_scores"]

logger = logging.getLogger(__name__)

AMONG = ("all", "old")  # candidate neighbours: every entity, or those not added by the last run
_TINY = np.float32(1e-30)  # norm floor: a zero row has cosine 0 with everything instead of NaN
_SCORE_BUDGET = 1 << 23  # float32 scores held per block ([queries, block rows]): 32 MiB
_QUERY_CHUNK = 8192  # queries per pass over the table in sanity(): bounds the top-k state

Ids = np.ndarray  # int64 [n] entity ids
ScoreBlock = Callable[[np.ndarray], np.ndarray]  # rows [b, dim] -> scores [b, q], higher is better


# --------------------------------------------------------------------------- streaming top-k


def _read_ahead(table, block_rows: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`blocks` of ``table``; for a table on disk the next block is read in a second thread while
    the caller scores the current one (``preadv`` and BLAS both release the GIL)."""
    it = blocks(table, block_rows)
    if not is_lazy(table):
        yield from it  # in-memory blocks are views: nothing to overlap
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embretrain-neighbors") as pool:
        pending = pool.submit(next, it, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, it, None)
            yield item


def _block_rows(table, n_queries: int, block_rows: int | None) -> int:
    if block_rows:
        return block_rows
    by_bytes = max(1, BLOCK_BYTES // (int(table.shape[1]) * 4))
    return max(256, min(by_bytes, _SCORE_BUDGET // max(1, n_queries)))


def top_scores(
    table,
    score_block: ScoreBlock,
    n_queries: int,
    k: int,
    *,
    self_ids: Ids | None = None,
    skip: range = range(0),
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows of ``table`` for each of ``n_queries`` queries, in one pass over the table.

    Args:
        table: ``[n, dim]`` float32 rows (ndarray, or a table left on disk).
        score_block: rows ``[b, dim]`` -> float32 scores ``[b, n_queries]`` (higher is better). Rows first:
            ``block @ queries.T`` runs ~3x faster than ``queries @ block.T`` for a few queries (BLAS walks
            the block once, in memory order).
        self_ids: int64 ``[n_queries]``; row ``self_ids[j]`` is never a result of query j.
        skip: rows that are never results (e.g. the entities added by the last run).
        block_rows: rows per block (default: 16 MiB blocks, fewer rows when there are many queries).

    Returns:
        ``(ids int64 [n_queries, k], scores float32 [n_queries, k])``, best first, equal scores by lower id;
        where fewer than ``k`` rows qualify, the tail is padded with id -1 and score -inf.
    """
    best_s = np.full((n_queries, 0), -np.inf, dtype=np.float32)
    best_i = np.empty((n_queries, 0), dtype=np.int64)
    if self_ids is not None:
        self_ids = np.asarray(self_ids, dtype=np.int64)
    for start, block in _read_ahead(table, _block_rows(table, n_queries, block_rows)):
        stop = start + len(block)
        s = np.asarray(score_block(block), dtype=np.float32)
        lo, hi = max(skip.start, start), min(skip.stop, stop)
        if lo < hi:
            s[lo - start : hi - start] = -np.inf
        if self_ids is not None:
            mine = np.flatnonzero((self_ids >= start) & (self_ids < stop))
            s[self_ids[mine] - start, mine] = -np.inf
        if len(s) > k:
            part = np.argpartition(s, -k, axis=0)[-k:]
            cand_s, cand_i = np.take_along_axis(s, part, axis=0).T, part.T + start
        else:
            cand_s, cand_i = s.T, np.broadcast_to(np.arange(start, stop, dtype=np.int64), s.T.shape)
        best_s = np.concatenate([best_s, cand_s], axis=1)
        best_i = np.concatenate([best_i, cand_i], axis=1)
        if best_s.shape[1] > k:
            part = np.argpartition(best_s, -k, axis=1)[:, -k:]
            best_s, best_i = np.take_along_axis(best_s, part, axis=1), np.take_along_axis(best_i, part, axis=1)
    # argpartition leaves the k best in no particular order: sort by score, then id (of rows tied exactly
    # at the k-th place, which one is kept may depend on the blocks)
    order = np.lexsort((best_i, -best_s), axis=-1)
    best_s, best_i = np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)
    best_i = np.where(np.isneginf(best_s), -1, best_i)
    if best_s.shape[1] < k:  # a table with fewer than k rows
        pad = k - best_s.shape[1]
        best_s = np.pad(best_s, ((0, 0), (0, pad)), constant_values=-np.inf)
        best_i = np.pad(best_i, ((0, 0), (0, pad)), constant_values=-1)
    return best_i, best_s


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), _TINY)


def _cosine_block(queries: np.ndarray) -> ScoreBlock:
    qn_t = np.ascontiguousarray(_unit(queries).T)  # [dim, q]

    def score(block: np.ndarray) -> np.ndarray:
        # divide the [b, q] product by the block's norms rather than normalising the block: no copy of it
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        s = block @ qn_t
        s /= np.maximum(norms, _TINY)[:, None]
        return s

    return score


def nearest(table, ids: Iterable[int], k: int = 10, *, skip: range = range(0),
            block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest rows of ``table`` by cosine similarity, itself excluded.

    Args:
        table: ``[n, dim]`` float32 (ndarray or on disk).
        ids: int ids of the query rows ``[q]``.
        skip: rows never returned (``--among old`` skips the entities added by the last run).

    Returns:
        ``(ids int64 [q, k], cosines float32 [q, k])`` as :func:`top_scores`.
    """
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    return top_scores(table, _cosine_block(take(table, ids)), len(ids), k, self_ids=ids, skip=skip,
                      block_rows=block_rows)


# --------------------------------------------------------------------------- model scores in numpy
#
# The scorers in models.py are written against TensorFlow; the report must not import it. These are the
# same queries (``Scorer.tail_query`` / ``head_query`` / ``match``), in numpy, for a handful of vectors.


def _halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


def _query(model: str, e: np.ndarray, r: np.ndarray, side: str) -> np.ndarray:
    """Queries ``[c, d]`` scoring any entity as the ``side`` ("tail": ``(e, r, ?)``, "head": ``(?, r, e)``).

    The model's own numpy neighbour estimate (models/<name>.py) is exactly this query: the row that
    scores the triple best (for bilinear models, its direction, which ranks the same).
    """
    from .models import scorer_class

    estimate = scorer_class(model).estimate
    if estimate is None:
        raise UsageError(f"model {model!r} has no relation queries")
    return np.asarray(estimate(e, r, e, side), dtype=np.float32)


def _match_block(model: str, params: dict[str, Any], queries: np.ndarray) -> ScoreBlock:
    """Scores ``[b, c]`` of a block of entity rows ``[b, d]`` against queries ``[c, d]`` (the model's ``match``)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    q_t = np.ascontiguousarray(q.T)
    gamma = np.float32(params.get("gamma", 12.0))
    if model in ("distmult", "complex"):
        return lambda block: block @ q_t
    if model == "transe" and int(params.get("norm", 1)) == 2:
        qq = np.einsum("ij,ij->i", q, q)[None, :]

        def l2(block):
            sq = np.einsum("ij,ij->i", block, block)[:, None] + qq - 2.0 * (block @ q_t)
            return gamma - np.sqrt(np.maximum(sq, 0.0) + np.float32(1e-12))

        return l2
    if model == "transe":  # L1: no matrix product; one pass over the block per query
        return lambda block: gamma - np.stack([np.abs(block - row).sum(axis=1) for row in q], axis=1)
    if model == "rotate":
        qr, qi = _halves(q)

        def rotate(block):
            br, bi = _halves(block)
            return gamma - np.stack(
                [np.sqrt(np.square(br - a) + np.square(bi - b) + np.float32(1e-12)).sum(axis=1)
                 for a, b in zip(qr, qi)],
                axis=1,
            )

        return rotate
    raise UsageError(f"model {model!r} has no relation queries")


# --------------------------------------------------------------------------- the report


def load_for_report(path, **load_options) -> Checkpoint:
    """Load ``path`` for a report: a native ``.h5`` file is left on disk (rows streamed, a 10M-row table
    costs a few blocks of memory), anything else is read into memory. ``load_options`` are the TF/Keras
    ones (``entity_var``, ``entity_vocab``, ...)."""
    from .checkpoint import format_of, load

    if format_of(path) == "h5" and not load_options:
        return load(path, old_rows="on-disk")
    return load(path, **load_options)


def _names_of(names: Sequence[str], ids: Iterable[int]) -> dict[int, str]:
    """id -> name for a few ids (one read each when the names are on disk)."""
    return {i: names[i] for i in sorted({int(i) for i in ids if i >= 0})}


def _resolve(ckpt: Checkpoint, names: Sequence[str], only_new: bool, added: range) -> list[tuple[str, int]]:
    from .vocab import Vocab

    where = ckpt.source or "the checkpoint"
    if not names:
        if not only_new:
            raise UsageError("give entity NAME(s), or only_new for the entities added by the last run")
        return list(zip(ckpt.entities[added.start : added.stop], added))
    names = list(dict.fromkeys(names))
    vocab = Vocab.partial(ckpt.entities, names)  # scans names on disk block by block, indexes only these
    unknown = [n for n in names if n not in vocab]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DataError(f"{where}: no entity named {listed}")
    if only_new:
        old = [n for n in names if vocab[n] not in added]
        if old:
            raise DataError(f"{where}: {old[0]!r} was not added by the last run (only_new)")
    return [(n, vocab[n]) for n in names]


def _relation_queries(ckpt: Checkpoint, data, queried: list[tuple[str, int]]):
    """For each queried entity mentioned in ``data``: its most frequent (relation, side), the count and the
    counterparts the data already gives, or None."""
    from .data import read_triples
    from .vocab import Vocab

    wanted = {name for name, _ in queried}
    counts: dict[str, Counter] = defaultdict(Counter)
    known: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    f = read_triples(data)
    for h, r, t in f.triples:
        if h in wanted:
            counts[h][(r, "tail")] += 1
            known[(h, r, "tail")].add(t)
        if t in wanted:
            counts[t][(r, "head")] += 1
            known[(t, r, "head")].add(h)
    # most frequent (relation, side); ties: the relation seen first in the file (Counter keeps insertion order)
    picks = {name: c.most_common(1)[0] for name, c in counts.items()}
    relations = Vocab.partial(ckpt.relations, {r for (r, _), _ in picks.values()})
    out = []
    for name, _ in queried:
        if name not in picks:
            out.append(None)
            continue
        (rel, side), n = picks[name]
        if rel not in relations:
            raise DataError.at(f.path, None, f"relation {rel!r} (most frequent for {name!r}) is not in the checkpoint")
        out.append({"relation": rel, "relation_id": relations[rel], "side": side, "mentions": n,
                    "of": sum(counts[name].values()), "known": known[(name, rel, side)]})
    return out


def report(
    ckpt: Checkpoint,
    names: Sequence[str] = (),
    *,
    k: int = 10,
    only_new: bool = False,
    among: str = "all",
    data=None,
    block_rows: int | None = None,
) -> dict[str, Any]:
    """Nearest entities of each named entity, and (triple models, with ``data``) its model's top tails/heads.

    Args:
        names: entity names; with ``only_new`` and no names, every entity added by the last run.
        k: neighbours (and predicted tails/heads) per entity.
        only_new: the names must be among the entities added by the last run (lineage).
        among: ``"all"`` entities as candidate neighbours, or ``"old"``: not those added by the last run.
        data: triples (path or :class:`~embretrain.data.TripleFile`) giving each entity's most frequent
            relation and side; its top ``k`` counterparts under the model's score are listed.

    Returns:
        A JSON-serialisable dict: ``checkpoint``, ``model``, ``k``, ``among``, ``n_entities``,
        ``added`` (``[start, stop)`` of the last run's ids), ``entities``: one dict per queried entity with
        ``name``, ``id``, ``new``, ``neighbors`` (``name``, ``id``, ``cosine``, best first) and, when
        ``data`` mentions it, ``relation`` (``name``, ``side`` predicted, ``mentions``, ``of``, ``top``:
        ``name``, ``id``, ``score``, ``known`` = the data has that triple), and ``seconds`` (``names``:
        finding them; ``search``: the rest).

    Raises:
        DataError: a name is not in the checkpoint (or, with ``only_new``, was not added by the last run).
        UsageError: no names and no ``only_new``; ``among`` unknown; ``data`` for a pair model.
    """
    from .summary import last_added

    if among not in AMONG:
        raise UsageError(f"among must be one of {', '.join(AMONG)}, got {among!r}")
    t0 = time.perf_counter()
    added = last_added(ckpt.lineage, "entities")
    queried = _resolve(ckpt, names, only_new, added)
    t_names = time.perf_counter() - t0  # finding the names: a scan of every name when they are on disk
    table = ckpt.entity_tables[ENTITY_TABLE]
    ids = np.array([i for _, i in queried], dtype=np.int64)
    skip = added if among == "old" else range(0)
    out: dict[str, Any] = {
        "checkpoint": ckpt.source, "model": ckpt.model, "k": k, "among": among,
        "n_entities": ckpt.n_entities, "added": [added.start, added.stop], "entities": [],
    }
    if not len(ids):
        out["seconds"] = {"names": round(t_names, 3), "search": 0.0}
        return out
    nn_ids, nn_cos = nearest(table, ids, k, skip=skip, block_rows=block_rows)

    rel_info: list = [None] * len(queried)
    top_ids = top_sc = None
    if data is not None:
        if not ckpt.relations or RELATION_TABLE not in ckpt.relation_tables:
            raise UsageError(
                f"--data gives the top tails/heads of triple models; {ckpt.source} holds a {ckpt.model!r} pair model"
            )
        rel_info = _relation_queries(ckpt, data, queried)
        asked = [j for j, info in enumerate(rel_info) if info is not None]
        if asked:
            e = take(table, ids[asked])
            r = take(ckpt.relation_tables[RELATION_TABLE], np.array([rel_info[j]["relation_id"] for j in asked]))
            sides = [rel_info[j]["side"] for j in asked]
            q = np.stack([_query(ckpt.model, e[m : m + 1], r[m : m + 1], s)[0] for m, s in enumerate(sides)])
            top_ids, top_sc = top_scores(table, _match_block(ckpt.model, ckpt.params, q), len(q), k,
                                         block_rows=block_rows)
            row_of = {j: m for m, j in enumerate(asked)}

    shown = set(nn_ids.ravel().tolist()) | (set(top_ids.ravel().tolist()) if top_ids is not None else set())
    name_of = _names_of(ckpt.entities, shown)
    for j, (name, i) in enumerate(queried):
        keep = nn_ids[j] >= 0
        entry: dict[str, Any] = {
            "name": name, "id": int(i), "new": i in added,
            "neighbors": [{"name": name_of[int(n)], "id": int(n), "cosine": round(float(c), 6)}
                          for n, c in zip(nn_ids[j][keep], nn_cos[j][keep])],
        }
        info = rel_info[j]
        if info is not None:
            m = row_of[j]
            entry["relation"] = {
                "name": info["relation"], "side": info["side"], "mentions": info["mentions"], "of": info["of"],
                "top": [{"name": name_of[int(n)], "id": int(n), "score": round(float(s), 6),
                         "known": name_of[int(n)] in info["known"]}
                        for n, s in zip(top_ids[m], top_sc[m]) if n >= 0],
            }
        out["entities"].append(entry)
    out["seconds"] = {"names": round(t_names, 3), "search": round(time.perf_counter() - t0 - t_names, 3)}
    return out


def format_text(result: dict[str, Any]) -> list[str]:
    """The report as lines of text: one block per entity."""
    among = "old entities" if result["among"] == "old" else "all entities"
    if not result["entities"]:
        return ["no entities to report (the lineage records no run that added entities)"]
    lines: list[str] = []
    for entry in result["entities"]:
        if lines:
            lines.append("")
        tag = ", new" if entry["new"] else ""
        lines.append(f"{entry['name']} (id {entry['id']}{tag}): {result['k']} nearest by cosine among {among}")
        for rank, nb in enumerate(entry["neighbors"], 1):
            lines.append(f"  {rank:>3}  {nb['cosine']:+.4f}  {nb['name']}")
        rel = entry.get("relation")
        if rel:
            name, r = entry["name"], rel["name"]
            pattern = f"({name}, {r}, ?)" if rel["side"] == "tail" else f"(?, {r}, {name})"
            lines.append(
                f"  top {rel['side']}s of {pattern}  [{rel['mentions']} of its {rel['of']} data lines; * = in the data]"
            )
            for rank, hit in enumerate(rel["top"], 1):
                lines.append(f"  {rank:>3}  {hit['score']:+.4f}  {hit['name']}{'  *' if hit['known'] else ''}")
    return lines


# --------------------------------------------------------------------------- sanity figure for extend --report


def sanity(ckpt: Checkpoint, delta_ids, new_ids, k: int = 10, *, block_rows: int | None = None) -> dict[str, Any]:
    """How much the new rows look like the entities their delta lines connect them to.

    A new entity's *delta neighbours* are the other entities sharing a delta line with it. A row that
    trained well usually has some of them among its nearest entities by cosine (for translation models
    like TransE this is a looser expectation than for bilinear or pair models: watch the figure over
    nights rather than its absolute value).

    Args:
        ckpt: the grown checkpoint (tables in memory or on disk).
        delta_ids: the delta in the grown id space, int64 ``[n, 3]`` (head, relation, tail; triple models)
            or ``[n, 2]`` (a, b; pair models); a weight column is not expected.
        new_ids: int ids ``[m]`` of the new entities (in the grown id space, e.g. ``range(n_old, n_old + n_new)``).
        k: size of the neighbourhood searched.

    Returns:
        A JSON-serialisable dict: ``k``; ``new_entities`` (m); ``with_delta_neighbours`` (new entities with at
        least one); ``share_delta_neighbour_in_top_k`` (share of those with at least one delta neighbour among
        their k nearest, None if none); ``mean_delta_recall_at_k`` (mean share of an entity's delta neighbours
        in its k nearest); ``mean_cosine_to_delta_neighbours``; ``least_like_neighbours``: up to 5 new entities
        with the lowest mean cosine to their delta neighbours (``name``, ``id``, ``mean_cosine``,
        ``delta_neighbours``), lowest first; ``seconds``.
    """
    t0 = time.perf_counter()
    delta = np.asarray(delta_ids, dtype=np.int64)
    if delta.ndim != 2 or delta.shape[1] not in (2, 3):
        raise ValueError(f"delta_ids must be int [n, 3] or [n, 2], got shape {delta.shape}")
    new = np.unique(np.asarray(list(new_ids) if not isinstance(new_ids, np.ndarray) else new_ids, dtype=np.int64))
    a, b = (delta[:, 0], delta[:, 2]) if delta.shape[1] == 3 else (delta[:, 0], delta[:, 1])
    pairs = np.concatenate([np.stack([a, b], 1), np.stack([b, a], 1)])
    pairs = pairs[np.isin(pairs[:, 0], new) & (pairs[:, 0] != pairs[:, 1])]
    pairs = np.unique(pairs, axis=0)  # sorted by new id, then neighbour id
    who, starts = np.unique(pairs[:, 0], return_index=True)
    groups = np.split(pairs[:, 1], starts[1:]) if len(who) else []

    out: dict[str, Any] = {"k": k, "new_entities": len(new), "with_delta_neighbours": len(who),
                           "share_delta_neighbour_in_top_k": None, "mean_delta_recall_at_k": None,
                           "mean_cosine_to_delta_neighbours": None, "least_like_neighbours": []}
    if len(who):
        table = ckpt.entity_tables[ENTITY_TABLE]
        hits = np.zeros(len(who), dtype=bool)
        recall = np.zeros(len(who))
        mean_cos = np.zeros(len(who))
        for lo in range(0, len(who), _QUERY_CHUNK):
            chunk = who[lo : lo + _QUERY_CHUNK]
            top, _ = nearest(table, chunk, k, block_rows=block_rows)
            theirs = groups[lo : lo + len(chunk)]
            sizes = [len(g) for g in theirs]
            # one read for all delta neighbours of the chunk (sorted unique ids touch a file in order)
            cos = np.einsum("ij,ij->i", _unit(take(table, np.concatenate(theirs))),
                            np.repeat(_unit(take(table, chunk)), sizes, axis=0))
            for j, (group, group_cos) in enumerate(zip(theirs, np.split(cos, np.cumsum(sizes)[:-1]))):
                found = np.isin(group, top[j])
                hits[lo + j], recall[lo + j], mean_cos[lo + j] = found.any(), found.mean(), group_cos.mean()
        worst = np.argsort(mean_cos, kind="stable")[:5]
        name_of = _names_of(ckpt.entities, who[worst])
        out.update(
            share_delta_neighbour_in_top_k=round(float(hits.mean()), 4),
            mean_delta_recall_at_k=round(float(recall.mean()), 4),
            mean_cosine_to_delta_neighbours=round(float(mean_cos.mean()), 4),
            least_like_neighbours=[{"name": name_of[int(who[w])], "id": int(who[w]),
                                    "mean_cosine": round(float(mean_cos[w]), 4),
                                    "delta_neighbours": len(groups[w])} for w in worst],
        )
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
