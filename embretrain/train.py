"""The compiled training step and the epoch loop.

One step: sample negatives uniformly over the whole current vocabulary, one draw of K per chunk of
``negative_chunk`` positives (each positive corrupts its head or its tail), look up every id a batch
needs through the split tables in one call per table, score positives ``[B]`` and negatives ``[B, K]``
(a matrix product per chunk where the model allows), and apply a sparse optimizer to the trainable
(new) rows only.
The step is a ``tf.function`` fed by a ``tf.data`` pipeline; a tqdm bar shows triples/s and loss
when stderr is a terminal.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .checkpoint.base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE
from .config import Settings
from .errors import CheckpointError, TrainingError
from .models import Scorer
from .optim import make_optimizer
from .tables import SplitTable

__all__ = ["Embeddings", "TrainResult", "fit", "configure_tensorflow"]

logger = logging.getLogger(__name__)


@dataclass
class Embeddings:
    """A scorer wired to its split tables (entity tables by name, relation tables by name)."""

    scorer: Scorer
    entity_tables: dict[str, SplitTable]
    relation_tables: dict[str, SplitTable] = field(default_factory=dict)
    # Negatives are drawn uniformly from every old entity plus these new entity ids; None = the whole
    # vocabulary. `extend` passes only the new entities that have training examples, so the others keep
    # their initial vector exactly. (A list of the new ids only: never an array the size of the old table.)
    negative_new_ids: np.ndarray | None = None
    # `extend --replay`: old triples int64 [m, 3] replayed each step with negatives drawn from the new
    # entities only, so new rows are pushed out of old queries' answers (see _replay_loss).
    replay_ids: np.ndarray | None = None

    @property
    def entity(self) -> SplitTable:
        return self.entity_tables[ENTITY_TABLE]

    @property
    def context(self) -> SplitTable:
        """Second table of a pair model; the entity table itself when the model is tied (one table)."""
        return self.entity_tables.get(CONTEXT_TABLE, self.entity)

    @property
    def relation(self) -> SplitTable | None:
        return self.relation_tables.get(RELATION_TABLE)

    @property
    def n_entities(self) -> int:
        return self.entity.n_rows

    def sample_negatives(self, rng, shape):
        """Uniform entity ids ``int64 shape`` over the vocabulary (or the old entities + ``negative_new_ids``)."""
        import tensorflow as tf

        if self.negative_new_ids is None:
            return rng.uniform(shape, 0, self.n_entities, dtype=tf.int64)
        n_old, extra = self.entity.n_old, len(self.negative_new_ids)
        pick = rng.uniform(shape, 0, n_old + extra, dtype=tf.int64)
        if extra == 0:
            return pick
        new_ids = tf.constant(self.negative_new_ids, dtype=tf.int64)
        return tf.where(pick < n_old, pick, tf.gather(new_ids, tf.maximum(pick - n_old, 0)))

    def new_entity_pool(self) -> np.ndarray:
        """New entity ids that may move: the trained ones when some new entity has no example, else all."""
        if self.negative_new_ids is not None:
            return np.asarray(self.negative_new_ids, dtype=np.int64)
        return np.arange(self.entity.n_old, self.entity.n_rows, dtype=np.int64)

    def trainable(self) -> list:
        out = []
        for table in [*self.entity_tables.values(), *self.relation_tables.values()]:
            out.extend(table.trainable)
        return out


@dataclass
class TrainResult:
    epochs: int = 0
    steps: int = 0
    examples: int = 0
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    epoch_seconds: list[float] = field(default_factory=list)  # wall time per epoch (the first includes tracing)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


def configure_tensorflow(settings: Settings) -> None:
    """Seed and make ops deterministic; set thread pools (must run before TF's first op)."""
    import tensorflow as tf

    if settings.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, settings.threads))
        except RuntimeError:  # runtime already initialised (second run in one process)
            logger.debug("thread settings ignored: TensorFlow runtime already initialised")
    tf.random.set_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()


def _example_loss(pos, neg, settings: Settings):
    """Per-example loss ``[B]`` from positive scores ``[B]`` and negative scores ``[B, K]``."""
    import tensorflow as tf

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


def _shared_negative_scores(scorer, q, negatives, chunk: int):
    """Scores ``[b, K]`` of queries ``q [b, d_q]`` against ``negatives [n_chunks, K, d]``, one draw per chunk.

    Each run of ``chunk`` positives shares its chunk's K negative rows (PyTorch-BigGraph's chunked
    negatives): every positive still meets K negatives, but a batch looks up ``b / chunk * K`` negative
    rows instead of ``b * K``, and the bilinear models (and TransE-L2) score a chunk with one matrix product.
    """
    import tensorflow as tf

    b = tf.shape(q)[0]
    scores = scorer.match(_in_chunks(q, tf.shape(negatives)[0], chunk), negatives)  # [n_chunks, chunk, K]
    return tf.reshape(scores, [-1, tf.shape(negatives)[1]])[:b]


def _chunking(settings: Settings, b):
    """(chunk, n_chunks) for a batch of ``b`` positives."""
    chunk = max(1, min(settings.negative_chunk, settings.batch_size))
    return chunk, (b + chunk - 1) // chunk


def _triple_loss(emb: Embeddings, batch, rng, settings: Settings):
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
    return _corrupted_loss(emb, h, r, t, neg, corrupt_head, chunk, settings)


def _corrupted_loss(emb: Embeddings, h, r, t, neg, corrupt_head, chunk: int, settings: Settings):
    """Mean loss of positives ``(h, r, t)`` [b] against chunked negatives ``neg`` [n_chunks, K] replacing the
    head (``corrupt_head``) or the tail of each positive."""
    import tensorflow as tf

    scorer, k, b = emb.scorer, settings.negatives, tf.shape(h)[0]
    # one lookup (one partition/stitch) for every entity id the batch needs
    vecs = emb.entity.lookup(tf.concat([h, t, tf.reshape(neg, [-1])], axis=0))
    hv, tv = vecs[:b], vecs[b : 2 * b]
    nv = tf.reshape(vecs[2 * b :], [-1, k, emb.entity.width])
    rv = emb.relation.lookup(r)
    pos = scorer.score(hv, rv, tv)
    # the open side of each positive as a query: a corrupted head is matched against t - r (TransE), ...
    q = tf.where(corrupt_head[:, None], scorer.head_query(rv, tv), scorer.tail_query(hv, rv))
    negs = _shared_negative_scores(scorer, q, nv, chunk)
    loss = tf.reduce_mean(_example_loss(pos, negs, settings))
    if settings.regularization:
        loss += settings.regularization * (
            tf.reduce_mean(tf.reduce_sum(tf.square(vecs), -1)) + tf.reduce_mean(tf.reduce_sum(tf.square(rv), -1))
        )
    return loss


def _replay_loss(emb: Embeddings, replay, new_pool, b, rng, settings: Settings):
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
                           chunk, settings)


def _pair_loss(emb: Embeddings, batch, weights, rng, settings: Settings):
    import tensorflow as tf

    k = settings.negatives
    a, c = batch[:, 0], batch[:, 1]
    b = tf.shape(batch)[0]
    chunk, n_chunks = _chunking(settings, b)
    neg = emb.sample_negatives(rng, [n_chunks, k])
    av = emb.entity.lookup(a)
    ctx = emb.context.lookup(tf.concat([c, tf.reshape(neg, [-1])], axis=0))
    cv, nv = ctx[:b], tf.reshape(ctx[b:], [n_chunks, k, emb.context.width])
    pos = emb.scorer.score(av, None, cv)
    negs = _shared_negative_scores(emb.scorer, emb.scorer.tail_query(av, None), nv, chunk)
    per = _example_loss(pos, negs, settings)
    loss = tf.reduce_sum(weights * per) / tf.reduce_sum(weights)
    if settings.regularization:
        loss += settings.regularization * tf.reduce_mean(tf.reduce_sum(tf.square(ctx), -1))
    return loss


def _as_checkpoint_error(err):
    """A failed read of old rows left on disk (``--old-rows on-disk``) arrives as a TF op error wrapping our
    CheckpointError: give the user that one sentence (it names the file), not an internal error."""
    marker = "CheckpointError: "
    text = str(getattr(err, "message", err))
    if marker not in text:
        return err
    return CheckpointError(text.split(marker, 1)[1].splitlines()[0].strip())


def fit(
    emb: Embeddings,
    ids: np.ndarray,
    settings: Settings,
    *,
    weights: np.ndarray | None = None,
    progress: bool | None = None,
    on_epoch=None,
) -> TrainResult:
    """Train the trainable rows of ``emb`` on ``ids``.

    Args:
        ids: int64 ``[n, 3]`` (head, relation, tail) for triple models, ``[n, 2]`` for pair models.
        weights: float32 ``[n]`` pair weights (pair models only; default 1).
        progress: show a tqdm bar (default: only when stderr is a terminal).
        on_epoch: optional ``callback(epoch, mean_loss) -> bool``; returning True stops training.

    Raises:
        TrainingError: the loss became NaN or Inf (nothing has been written).
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    result = TrainResult()
    variables = emb.trainable()
    n = int(ids.shape[0])
    if n == 0 or not variables or settings.epochs == 0:
        return result
    pair = emb.scorer.kind == "pair"
    if weights is None:
        weights = np.ones(n, dtype=np.float32)

    optimizer = make_optimizer(settings.optimizer, settings.lr)
    optimizer.build(variables)
    rng = tf.random.Generator.from_seed(settings.seed)
    ds = tf.data.Dataset.from_tensor_slices((ids.astype(np.int64), weights.astype(np.float32)))
    ds = ds.shuffle(n, seed=settings.seed, reshuffle_each_iteration=True)
    # tf.data's autotuning off, with a fixed prefetch depth: with it on, the last next() of an epoch stalled
    # for 1-2.4 s (measured on 200k triples: epochs padded to ~5.1 s instead of ~2.8-3.8 s, from 10k to 10M
    # old rows), a large share of a nightly run's few epochs. Two batches are enough: the step, not this
    # in-memory pipeline, is the bottleneck.
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.batch(settings.batch_size).prefetch(2).with_options(options)

    replay = new_pool = None
    if emb.replay_ids is not None and len(emb.replay_ids) and not pair and len(emb.new_entity_pool()):
        replay = tf.constant(emb.replay_ids, dtype=tf.int64)
        new_pool = tf.constant(emb.new_entity_pool(), dtype=tf.int64)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, ids.shape[1]], tf.int64),
            tf.TensorSpec([None], tf.float32),
        ]
    )
    def step(batch, batch_weights):
        with tf.GradientTape() as tape:
            if pair:
                loss = _pair_loss(emb, batch, batch_weights, rng, settings)
            else:
                loss = _triple_loss(emb, batch, rng, settings)
                if replay is not None:
                    loss += _replay_loss(emb, replay, new_pool, tf.shape(batch)[0], rng, settings)
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss

    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        total, count = 0.0, 0
        epoch_start = time.perf_counter()
        bar = tqdm(total=n, desc=f"epoch {epoch}/{settings.epochs}", unit="ex", disable=not show, leave=False)
        for batch, batch_weights in ds:
            try:
                loss = float(step(batch, batch_weights))
            except tf.errors.OpError as err:
                raise _as_checkpoint_error(err) from err
            size = int(batch.shape[0])
            total += loss * size
            count += size
            result.steps += 1
            bar.update(size)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.close()
        mean = total / max(count, 1)
        if not math.isfinite(mean):
            raise TrainingError(
                f"training diverged at epoch {epoch} (loss is {mean}); nothing was written. "
                "Try a smaller --lr."
            )
        result.losses.append(mean)
        result.epoch_seconds.append(time.perf_counter() - epoch_start)
        result.epochs = epoch
        result.examples += count
        logger.info("epoch %d/%d loss %.5f", epoch, settings.epochs, mean)
        if on_epoch is not None and on_epoch(epoch, mean):
            break
    result.seconds = time.perf_counter() - start
    for var in variables:
        if not np.all(np.isfinite(var.numpy())):
            raise TrainingError(f"trained rows of {var.name} contain NaN or Inf; nothing was written. Try a smaller --lr.")
    return result
