"""The training loop: one :func:`fit` for every run, local or on a cluster.

Owns: :class:`Embeddings` (a scorer wired to its split tables), the epoch loop of :func:`fit`
(empty checks, divergence checks, epoch bookkeeping, logging, the ``on_epoch`` hook, the final NaN/Inf
check of trained rows), and :class:`LocalExecutor`, which runs an epoch's steps in this process (a
``tf.function`` step fed by :mod:`embretrain.batches`). An executor is what differs between a local run and a cluster
run: :class:`embretrain.distributed.ClusterExecutor` schedules the same step on parameter-server
workers and is handed to :func:`fit` by the caller. Must not: import :mod:`embretrain.distributed`,
read files, or build tables (tables.py does); the loss of a step lives in :mod:`embretrain.losses`.

One step: sample negatives uniformly over the whole current vocabulary, one draw of K per chunk of
``negative_chunk`` positives (each positive corrupts its head or its tail), look up every id a batch
needs through the split tables in one call per table, score positives ``[B]`` and negatives ``[B, K]``
(a matrix product per chunk where the model allows), and apply a sparse optimizer to the trainable
(new) rows only. A tqdm bar shows examples/s and loss when stderr is a terminal.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .checkpoint.base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE
from .batches import EpochBatches
from .config import Settings
from .errors import CheckpointError, TrainingError
from .models import Scorer
from .optim import make_optimizer
from .tables import SplitTable

__all__ = ["Embeddings", "TrainResult", "EpochStats", "LocalExecutor", "fit", "configure_tensorflow"]

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
    # entities only, so new rows are pushed out of old queries' answers (see losses.replay_loss).
    replay_ids: np.ndarray | None = None
    # A pair model with two vocabularies draws its b-side negatives from the context table's own
    # vocabulary: every old context plus these new context ids (None = all of them).
    context_vocab: bool = False
    negative_new_context_ids: np.ndarray | None = None
    # `extend`'s new_negatives: this share of every draw of entity negatives comes from the new entities only. A
    # new row meets far fewer queries as a negative in a delta than in a full retrain (where every old triple can
    # draw it), so without this it can outscore the answers of old queries it was never shown.
    new_negative_share: float = 0.0

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
        ids = _uniform_ids(rng, shape, self.entity, self.negative_new_ids)
        if not self.new_negative_share or self.entity.n_old == 0:
            return ids
        import tensorflow as tf

        pool = tf.constant(self.new_entity_pool())
        if pool.shape[0] == 0:
            return ids
        from_new = tf.gather(pool, rng.uniform(shape, 0, pool.shape[0], dtype=tf.int64))
        return tf.where(rng.uniform(shape) < self.new_negative_share, from_new, ids)

    def sample_b_negatives(self, rng, shape):
        """Ids ``int64 shape`` for a pair model's corrupted ``b`` side: from the context vocabulary when it
        is its own (old contexts + ``negative_new_context_ids``), else :meth:`sample_negatives`."""
        if not self.context_vocab:
            return self.sample_negatives(rng, shape)
        return _uniform_ids(rng, shape, self.context, self.negative_new_context_ids)

    def new_entity_pool(self) -> np.ndarray:
        """New entity ids that may move: the trained ones when some new entity has no example, else all."""
        if self.negative_new_ids is not None:
            return np.asarray(self.negative_new_ids, dtype=np.int64)
        return np.arange(self.entity.n_old, self.entity.n_rows, dtype=np.int64)

    @property
    def all_trainable(self) -> bool:
        """No frozen rows (``train``): every looked-up row gets a gradient, so a step updates as many rows each time."""
        return all(t.n_old == 0 for t in [*self.entity_tables.values(), *self.relation_tables.values()])

    def trainable(self) -> list:
        out = []
        for table in [*self.entity_tables.values(), *self.relation_tables.values()]:
            out.extend(table.trainable)
        return out


def _uniform_ids(rng, shape, table: SplitTable, new_ids: np.ndarray | None):
    """Uniform ids ``int64 shape`` over ``table``'s rows, or over its old rows + ``new_ids`` only."""
    import tensorflow as tf

    if new_ids is None:
        return rng.uniform(shape, 0, table.n_rows, dtype=tf.int64)
    n_old, extra = table.n_old, len(new_ids)
    pick = rng.uniform(shape, 0, n_old + extra, dtype=tf.int64)
    if extra == 0:
        return pick
    new_ids = tf.constant(new_ids, dtype=tf.int64)
    return tf.where(pick < n_old, pick, tf.gather(new_ids, tf.maximum(pick - n_old, 0)))


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
    from .quiet_tf import import_tensorflow

    tf = import_tensorflow()  # usually the run's first TF import: without its start-up chatter

    if settings.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, settings.threads))
        except RuntimeError:  # runtime already initialised (second run in one process)
            logger.debug("thread settings ignored: TensorFlow runtime already initialised")
    tf.random.set_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()


def _as_checkpoint_error(err):
    """A failed read of old rows left on disk (``--old-rows on-disk``) arrives as a TF op error wrapping our
    CheckpointError: give the user that one sentence (it names the file), not an internal error."""
    marker = "CheckpointError: "
    text = str(getattr(err, "message", err))
    if marker not in text:
        return err
    return CheckpointError(text.split(marker, 1)[1].splitlines()[0].strip())


@dataclass
class EpochStats:
    """What an executor reports for one epoch."""

    total_loss: float = 0.0  # sum over steps of (mean loss of the step x its examples)
    examples: int = 0
    steps: int = 0


STEPS_PER_CALL = 16  # training steps per call of the local executor's compiled function


class LocalExecutor:
    """Runs an epoch's steps in this process: a ``tf.function`` step over each epoch's shuffled batches
    (:class:`embretrain.batches.EpochBatches`)."""

    # Compiling costs seconds once: with frozen rows (`extend`) the scoring is compiled only for a run of at least
    # this many steps. Measured on FB15k-237's one-night extend (TransE, 7 epochs of 51 steps, under load): 4-6 s
    # more first epoch, 2-4 ms less per step.
    extend_compile_min_steps = 1500

    def compiles_scoring(self, *, steady_rows: bool, steps: int) -> bool:
        """Whether the step's scoring and loss run with XLA (losses.batch_loss(compiled=True)): measured 1.1-1.3x
        faster epochs on FB15k-237 (docs/BENCHMARKS.md, "where the time goes"). Always in `train` (``steady_rows``:
        no frozen rows), in `extend` for runs of ``extend_compile_min_steps`` or more."""
        return steady_rows or steps >= self.extend_compile_min_steps

    def prepare(self, variables: list, loss_fn, ids: np.ndarray, weights: np.ndarray, settings: Settings, *,
                steady_rows: bool = False) -> None:
        """Build the optimizer, the data pipeline and the compiled step for ``loss_fn(batch, weights, rng)``.

        ``steady_rows``: every step updates as many rows (no frozen rows), so the sparse update is XLA-compiled too.
        With frozen rows the count of new rows a batch touches changes every step, and each new count costs XLA a
        compile: measured on FB15k-237's 7-epoch extend (under load), 25 s with TensorFlow's own ops, 31-34 s
        compiled. The update of ``train`` (FB15k-237, TransE, 32 negatives) measured 24-30 % faster steps compiled.
        """
        import tensorflow as tf

        optimizer = make_optimizer(settings.optimizer, settings.lr, compiled=steady_rows)
        optimizer.build(variables)
        self._optimizer = optimizer
        rng = tf.random.Generator.from_seed(settings.seed)
        self._batches = EpochBatches(ids, weights, settings.batch_size, settings.seed)

        def step(batch, batch_weights):
            with tf.GradientTape() as tape:
                loss = loss_fn(batch, batch_weights, rng)
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        @tf.function(autograph=False)
        def steps(iterator):
            # Several steps per call (Keras's steps_per_execution): one Python round trip, one dataset handoff and
            # one loss read-back per STEPS_PER_CALL steps instead of per step. The steps are the same ops in the
            # same order: the same bytes. Measured on FB15k-237 (quiet): the default step alone 2.2 ms, an epoch of
            # 266 steps 1.3-1.5 s with one call per step.
            # The loop is written with while_loop/cond, not Python's for/if/break: AutoGraph would convert this
            # function and everything it calls, writing each converted function to a file in the temp directory
            # (~35 per run, left there when a run is killed): no file is written that the user did not name.
            def more(i, has_value, losses, sizes):
                return tf.logical_and(has_value, i < STEPS_PER_CALL)

            def one_step(i, has_value, losses, sizes):
                element = iterator.get_next_as_optional()

                def run():
                    batch, batch_weights = element.get_value()
                    return losses.write(i, step(batch, batch_weights)), sizes.write(i, tf.shape(batch)[0])

                losses, sizes = tf.cond(element.has_value(), run, lambda: (losses, sizes))
                return i + 1, element.has_value(), losses, sizes

            start = (tf.constant(0), tf.constant(True),
                     tf.TensorArray(tf.float32, size=0, dynamic_size=True), tf.TensorArray(tf.int32, size=0, dynamic_size=True))
            _, _, losses, sizes = tf.while_loop(more, one_step, start)
            return losses.stack(), sizes.stack()

        self._steps = steps

    def run_epoch(self, advance) -> EpochStats:
        """One pass over the data; ``advance(examples, loss)`` after each step."""
        stats = EpochStats()
        iterator = iter(self._batches.next_epoch())
        while True:
            losses, sizes = self._steps(iterator)
            for loss, size in zip(losses.numpy().tolist(), sizes.numpy().tolist()):
                stats.total_loss += loss * size
                stats.examples += size
                stats.steps += 1
                advance(size, loss)
            if int(sizes.shape[0]) < STEPS_PER_CALL:
                return stats

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following steps."""
        self._optimizer.set_lr(lr)

    def describe(self, stats: EpochStats) -> str:
        """Extra words for the epoch's log line."""
        return ""

    def finish(self) -> None:
        """Wait for outstanding work (nothing is outstanding in this process)."""


def _replay(emb: Embeddings):
    """``(old triples, new entity pool)`` for ``--replay``'s loss, or None when there is nothing to replay."""
    if emb.replay_ids is None or not len(emb.replay_ids) or emb.scorer.kind == "pair":
        return None
    pool = emb.new_entity_pool()
    return (np.asarray(emb.replay_ids, dtype=np.int64), pool) if len(pool) else None


def _decay_lr(executor, settings: Settings, epoch: int) -> None:
    """Exponential schedule: the epoch after ``epoch`` trains at ``lr * lr_decay ** epoch``."""
    if not hasattr(executor, "set_lr"):
        raise TrainingError(f"lr_decay is not supported by the {type(executor).__name__}; use lr_decay = 1")
    executor.set_lr(settings.lr * settings.lr_decay**epoch)


def fit(
    emb: Embeddings,
    ids: np.ndarray,
    settings: Settings,
    *,
    weights: np.ndarray | None = None,
    progress: bool | None = None,
    on_epoch=None,
    executor=None,
) -> TrainResult:
    """Train the trainable rows of ``emb`` on ``ids``.

    Args:
        ids: int64 ``[n, 3]`` (head, relation, tail) for triple models, ``[n, 2]`` for pair models.
        weights: float32 ``[n]`` pair weights (pair models only; default 1).
        progress: show a tqdm bar (default: only when stderr is a terminal).
        on_epoch: optional ``callback(epoch, mean_loss) -> bool``, called when every step of the epoch
            has run (the rows are settled); returning True stops training.
        executor: where the steps run: :class:`LocalExecutor` (default), or a cluster's
            (:class:`embretrain.distributed.ClusterExecutor`, made by the caller).

    Raises:
        TrainingError: the loss became NaN or Inf (nothing has been written).
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from .losses import batch_loss

    result = TrainResult()
    variables = emb.trainable()
    n = int(ids.shape[0])
    if n == 0 or not variables or settings.epochs == 0:
        return result
    if weights is None:
        weights = np.ones(n, dtype=np.float32)
    executor = executor or LocalExecutor()
    replay = _replay(emb)
    compiled = executor.compiles_scoring(steady_rows=emb.all_trainable,
                                         steps=settings.epochs * math.ceil(n / settings.batch_size))

    def loss_fn(batch, batch_weights, rng):
        return batch_loss(emb, batch, batch_weights, rng, settings, replay, compiled=compiled)

    executor.prepare(variables, loss_fn, ids.astype(np.int64), weights.astype(np.float32), settings,
                     steady_rows=emb.all_trainable)
    show = (sys.stderr.isatty() and logger.isEnabledFor(logging.INFO)) if progress is None else progress
    start = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        bar = tqdm(total=n, desc=f"epoch {epoch}/{settings.epochs}", unit="ex", disable=not show, leave=False)

        def advance(size: int, loss: float) -> None:
            bar.update(size)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

        try:
            stats = executor.run_epoch(advance)
        except tf.errors.OpError as err:
            mapped = _as_checkpoint_error(err)
            if mapped is err:
                raise
            raise mapped from err
        finally:
            bar.close()
        mean = stats.total_loss / max(stats.examples, 1)
        if not math.isfinite(mean):
            raise TrainingError(
                f"training diverged at epoch {epoch} (loss is {mean}); nothing was written. "
                "Try a smaller learning rate (lr)."
            )
        result.losses.append(mean)
        result.epoch_seconds.append(time.perf_counter() - epoch_start)
        result.epochs = epoch
        result.steps += stats.steps
        result.examples += stats.examples
        logger.debug("epoch %d/%d loss %.5f%s", epoch, settings.epochs, mean, executor.describe(stats))
        if on_epoch is not None and on_epoch(epoch, mean):
            break
        if settings.lr_decay != 1.0:
            _decay_lr(executor, settings, epoch)
    executor.finish()
    result.seconds = time.perf_counter() - start
    for name, table in {**emb.entity_tables, **emb.relation_tables}.items():
        if not np.all(np.isfinite(table.new_rows())):
            raise TrainingError(
                f"trained rows of {name} contain NaN or Inf; nothing was written. Try a smaller learning rate (lr)."
            )
    return result
