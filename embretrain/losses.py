"""Losses of one training step: positives against chunked, sampled negatives (and replayed old triples).

Owns: the loss of a batch for a triple or a pair model (:func:`batch_loss`), the per-example loss
(logistic or margin, optionally self-adversarial; or softmax
cross-entropy against the sampled negatives), chunked shared negatives, and ``--replay``'s loss.
Every executor of :func:`embretrain.train.fit` (local or cluster) calls :func:`batch_loss`, so a step
computes the same thing wherever it runs. Must not: create variables, apply gradients, or know where
rows live; it needs from ``emb`` only ``.scorer``, ``.entity``/``.context``/``.relation`` tables
(``lookup``, ``width``, ``n_old``) and ``sample_negatives`` / ``sample_b_negatives``. ``rng`` is anything with
``tf.random.Generator.uniform``'s signature; the order of its draws is part of the result (same seed,
same bytes), so do not reorder them.

Shapes: a triple batch is int64 ``[b, 3]`` (head, relation, tail), a pair batch ``[b, 2]`` with float32
weights ``[b]``; positive scores ``[b]``, negative scores ``[b, K]``.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["batch_loss", "example_loss", "shared_negative_scores", "triple_loss", "pair_loss", "replay_loss"]

logger = logging.getLogger(__name__)


def example_loss(pos, neg, settings):
    """Per-example loss ``[B]`` from positive scores ``[B]`` and negative scores ``[B, K]``."""
    import tensorflow as tf

    if settings.loss == "softmax":
        # cross-entropy of the positive among its sampled negatives (the sampled form of 1-vs-All): its
        # gradient already weights negatives by softmax(score), so adversarial_temperature does not apply
        return tf.reduce_logsumexp(tf.concat([pos[:, None], neg], axis=1), axis=1) - pos
    if settings.adversarial_temperature > 0:
        # self-adversarial weights (Sun et al. 2019): harder negatives count more; no gradient through them
        weights = tf.stop_gradient(tf.nn.softmax(settings.adversarial_temperature * neg, axis=-1))
    else:
        weights = tf.fill(tf.shape(neg), 1.0 / tf.cast(tf.shape(neg)[1], tf.float32))
    if settings.loss == "margin":
        return tf.reduce_sum(weights * tf.nn.relu(settings.margin - pos[:, None] + neg), axis=-1)
    return tf.nn.softplus(-pos) + tf.reduce_sum(weights * tf.nn.softplus(neg), axis=-1)


def _in_chunks(x, n_chunks: int, chunk: int):
    """``[b, w]`` -> ``[n_chunks, chunk, w]``, zero rows padding the last chunk (their scores are dropped)."""
    import tensorflow as tf

    x = tf.pad(x, [[0, n_chunks * chunk - tf.shape(x)[0]], [0, 0]])
    return tf.reshape(x, [n_chunks, chunk, tf.shape(x)[-1]])


def shared_negative_scores(scorer, q, negatives, chunk: int):
    """Scores ``[b, K]`` of queries ``q [b, d_q]`` against ``negatives [n_chunks, K, d]``, one draw per chunk.

    Each run of ``chunk`` positives shares its chunk's K negative rows (PyTorch-BigGraph's chunked
    negatives): every positive still meets K negatives, but a batch looks up ``b / chunk * K`` negative
    rows instead of ``b * K``, and the bilinear models (and TransE-L2) score a chunk with one matrix product.
    """
    import tensorflow as tf

    b = tf.shape(q)[0]
    scores = scorer.match(_in_chunks(q, tf.shape(negatives)[0], chunk), negatives)  # [n_chunks, chunk, K]
    return tf.reshape(scores, [-1, tf.shape(negatives)[1]])[:b]


def _chunking(settings, b):
    """(chunk, n_chunks) for a batch of ``b`` positives."""
    chunk = max(1, min(settings.negative_chunk, settings.batch_size))
    return chunk, (b + chunk - 1) // chunk


def triple_loss(emb, batch, rng, settings, *, compiled: bool = False):
    """Mean loss of triples ``batch [b, 3]``, each corrupting its head or its tail.

    ``compiled``: score and reduce with XLA (:func:`_corrupted_loss`); same draws, same loss up to rounding.
    """
    import tensorflow as tf

    k = settings.negatives
    h, r, t = batch[:, 0], batch[:, 1], batch[:, 2]
    b = tf.shape(batch)[0]
    chunk, n_chunks = _chunking(settings, b)
    neg = emb.sample_negatives(rng, [n_chunks, k])
    corrupt_head = rng.uniform([b]) < 0.5
    n_old = emb.entity.n_old
    if settings.corrupt == "frozen" and n_old:
        # A negative that replaces the only new entity of a triple scores frozen rows alone: no
        # gradient, wasted work. Corrupt the frozen side instead (random when both or neither are new).
        h_new, t_new = h >= n_old, t >= n_old
        corrupt_head = tf.where(h_new & ~t_new, False, tf.where(t_new & ~h_new, True, corrupt_head))
    return _corrupted_loss(emb, h, r, t, neg, corrupt_head, chunk, settings, compiled)


def _corrupted_loss(emb, h, r, t, neg, corrupt_head, chunk: int, settings, compiled: bool = False):
    """Mean loss of positives ``(h, r, t)`` [b] against chunked negatives ``neg`` [n_chunks, K] replacing the
    head (``corrupt_head``) or the tail of each positive."""
    import tensorflow as tf

    k = settings.negatives
    # one lookup (one partition/stitch) for every entity id the batch needs
    vecs = emb.entity.lookup(tf.concat([h, t, tf.reshape(neg, [-1])], axis=0))
    rv = emb.relation.lookup(r)
    def score_loss(v, r_rows, heads):
        return _score_loss(emb.scorer, settings, chunk, k, v, r_rows, heads)

    if compiled:
        # XLA fuses the scoring, the loss and their gradient: TransE-L1's [n_chunks, chunk, K, d] difference
        # and its gradient are never written to memory (measured in docs/BENCHMARKS.md, "where the time goes").
        # The lookup above and the sparse update stay outside: gathers/stitches over variables (and rows read
        # from disk) do not compile, and the gradient must reach the tables as IndexedSlices.
        score_loss = tf.function(score_loss, jit_compile=True, autograph=False)
    return score_loss(vecs, rv, corrupt_head)


def _score_loss(scorer, settings, chunk: int, k: int, vecs, rv, corrupt_head):
    """Mean loss from looked-up rows: ``vecs [2b + n_chunks * K, d]`` (heads, tails, negatives), ``rv [b, d_r]``."""
    import tensorflow as tf

    b = tf.shape(rv)[0]
    hv, tv = vecs[:b], vecs[b : 2 * b]
    nv = tf.reshape(vecs[2 * b :], [-1, k, tf.shape(vecs)[-1]])
    pos = scorer.score(hv, rv, tv)
    # the open side of each positive as a query: a corrupted head is matched against t - r (TransE), ...
    q = tf.where(corrupt_head[:, None], scorer.head_query(rv, tv), scorer.tail_query(hv, rv))
    negs = shared_negative_scores(scorer, q, nv, chunk)
    loss = tf.reduce_mean(example_loss(pos, negs, settings))
    if settings.regularization and settings.regularizer == "n3":
        # N3 (Lacroix et al. 2018): cubed magnitudes of the positive's own rows only, which is what lets the
        # bilinear models train at large dims without their norms growing; never the negatives' rows
        loss += settings.regularization * tf.reduce_mean(
            tf.reduce_sum(tf.abs(hv) ** 3 + tf.abs(tv) ** 3 + tf.abs(rv) ** 3, -1))
    elif settings.regularization:
        loss += settings.regularization * (
            tf.reduce_mean(tf.reduce_sum(tf.square(vecs), -1)) + tf.reduce_mean(tf.reduce_sum(tf.square(rv), -1))
        )
    return loss


def replay_loss(emb, replay, new_pool, b, rng, settings, *, compiled: bool = False):
    """``b`` old triples drawn from ``replay`` [m, 3], each corrupted with new entities from ``new_pool`` only.

    In a full retrain every old triple meets new entities among its negatives, which keeps new rows out of
    old queries' answers; the delta alone never does that. Old rows are frozen, so the only gradient here
    is the one pushing a new row down for an old query.
    """
    import tensorflow as tf

    batch = tf.gather(replay, rng.uniform([b], 0, tf.shape(replay, out_type=tf.int64)[0], dtype=tf.int64))
    chunk, n_chunks = _chunking(settings, b)
    pick = rng.uniform([n_chunks, settings.negatives], 0, tf.shape(new_pool, out_type=tf.int64)[0], dtype=tf.int64)
    corrupt_head = rng.uniform([b]) < 0.5
    return _corrupted_loss(emb, batch[:, 0], batch[:, 1], batch[:, 2], tf.gather(new_pool, pick), corrupt_head,
                           chunk, settings, compiled)


def pair_loss(emb, batch, weights, rng, settings):
    """Weighted mean loss of pairs ``batch [b, 2]`` (weights ``[b]``), each corrupting its ``b`` side
    with ids of the ``b`` vocabulary (the contexts', when the model has two)."""
    import tensorflow as tf

    k = settings.negatives
    a, c = batch[:, 0], batch[:, 1]
    b = tf.shape(batch)[0]
    chunk, n_chunks = _chunking(settings, b)
    neg = emb.sample_b_negatives(rng, [n_chunks, k])
    av = emb.entity.lookup(a)
    ctx = emb.context.lookup(tf.concat([c, tf.reshape(neg, [-1])], axis=0))
    cv, nv = ctx[:b], tf.reshape(ctx[b:], [n_chunks, k, emb.context.width])
    pos = emb.scorer.score(av, None, cv)
    negs = shared_negative_scores(emb.scorer, emb.scorer.tail_query(av, None), nv, chunk)
    per = example_loss(pos, negs, settings)
    loss = tf.reduce_sum(weights * per) / tf.reduce_sum(weights)
    if settings.regularization:
        loss += settings.regularization * tf.reduce_mean(tf.reduce_sum(tf.square(ctx), -1))
    return loss


def batch_loss(emb, batch, weights, rng, settings, replay: tuple[np.ndarray, np.ndarray] | None = None, *,
               compiled: bool = False):
    """The loss of one step: a pair or triple batch, plus (triples) ``replay = (old triples, new pool)``.

    ``compiled``: the triple path scores with XLA (the executor decides: the local step does, a cluster's
    workers do not).

    Call inside the traced step: ``replay``'s arrays become constants of the step's graph (on a
    cluster they travel with the function to the workers).
    """
    import tensorflow as tf

    if emb.scorer.kind == "pair":
        return pair_loss(emb, batch, weights, rng, settings)
    loss = triple_loss(emb, batch, rng, settings, compiled=compiled)
    if replay is not None:
        old_triples, new_pool = (tf.constant(a, dtype=tf.int64) for a in replay)
        loss += replay_loss(emb, old_triples, new_pool, tf.shape(batch)[0], rng, settings, compiled=compiled)
    return loss
