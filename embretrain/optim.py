"""Sparse optimizers: update only the rows a batch touched.

Keras 3 ``Adam``/``Adagrad`` (and ``tf.compat.v1.train.AdamOptimizer``) densify ``IndexedSlices``
gradients, so a step costs O(rows in the table); measured 110-290 ms per step on a 1M-row table
instead of ~20 ms. These optimizers keep every step O(rows touched):

- ``sgd``: ``scatter_sub``.
- ``adagrad``: ``tf.raw_ops.ResourceSparseApplyAdagradV2`` (TF's own sparse kernel).
- ``adam``: lazy Adam (moments of a row advance only when the row is touched), written with
  ``gather`` + ``scatter_update`` because no TF2 public API does it without densifying.
- ``rmsprop``: the same code with ``beta_1 = 0`` and no first-moment slot (:class:`LazyRMSprop`).

Indices are deduplicated first (``tf.unique`` + ``unsorted_segment_sum``): a batch touches a row many times, and a
scatter with repeated indices would apply only one of the updates (or race). In the local step (``compiled``) the
sum runs with XLA, and for lazy Adam the sum, the moments and the row update are one XLA function
(:func:`_lazy_adam_rows`).
Slots are sized like the trainable variable only (the new rows), never like the whole table.
"""

from __future__ import annotations

import logging

from .quiet_tf import import_tensorflow

__all__ = ["SparseOptimizer", "make_optimizer", "OPTIMIZERS"]

logger = logging.getLogger(__name__)


_compiled = {}


def _xla(fn):
    """``fn`` compiled by XLA, once per process (XLA then compiles once per distinct input shapes)."""
    tf = import_tensorflow()

    if fn not in _compiled:
        _compiled[fn] = tf.function(fn, jit_compile=True, autograph=False)
    return _compiled[fn]


def _round_up(n, step):
    return (n + step - 1) // step * step


def _padded_slices(grad):
    """``grad``'s distinct rows, padded to few static sizes for XLA: ``(unique [kb], k, values [nb, d], positions
    [nb])`` where ``unique[:k]`` are the distinct rows (``tf.unique``: XLA has no op whose size depends on the data)
    and ``positions`` maps each value to its row, padding values to the spare segment ``kb``.

    XLA compiles once per input shape, and both counts change every step of ``extend`` (how many looked-up rows are
    new ones) and of a last short batch: unpadded, each new count was a compile (a 7-epoch extend on FB15k-237 took
    85 s instead of 23 s). So ``n`` looked-up rows are padded to 8 sizes per doubling (``nb``, at most 12.5 % more
    rows) and the ``k`` distinct ones to a multiple of ``nb / 16`` (``kb``): a few dozen compiles at most."""
    tf = import_tensorflow()

    if not isinstance(grad, tf.IndexedSlices):
        raise TypeError(f"expected a sparse (IndexedSlices) gradient, got {type(grad).__name__}")
    unique, positions = tf.unique(grad.indices, out_idx=tf.int32)
    n, k = tf.shape(positions)[0], tf.shape(unique)[0]
    octave = tf.bitwise.left_shift(1, tf.maximum(_bit_length(n) - 4, 0))  # 2^(floor(log2 n) - 3), at least 1
    nb = _round_up(n, octave)
    kb = tf.minimum(_round_up(k, tf.maximum(nb // 16, 1)), nb)
    values = tf.pad(grad.values, [[0, nb - n], [0, 0]])
    positions = tf.pad(positions, [[0, nb - n]], constant_values=kb)
    return tf.pad(unique, [[0, kb - k]]), k, values, positions


def _bit_length(n):
    """``n.bit_length()`` of a non-negative int32 tensor: how many powers of two up to 2^30 it reaches."""
    tf = import_tensorflow()

    return tf.reduce_sum(tf.cast(n >= tf.bitwise.left_shift(1, tf.range(31)), tf.int32))


def _padded_sum(unique, values, positions):
    """The sum of each distinct row's values (segments ``0..kb-1``; segment ``kb`` collects the zero padding).
    Added in their original order, as TensorFlow's own kernel adds them: the same bytes, ~5x faster measured on
    34,816 looked-up rows of width 200."""
    tf = import_tensorflow()

    return tf.math.unsorted_segment_sum(values, positions, tf.shape(unique)[0] + 1)[:-1]


def _dedupe(grad, compiled: bool = False):
    """``(distinct rows, their summed gradients)``: XLA-compiled in the local step (``compiled``)."""
    tf = import_tensorflow()

    if compiled:
        unique, k, values, positions = _padded_slices(grad)
        return unique[:k], _xla(_padded_sum)(unique, values, positions)[:k]
    if not isinstance(grad, tf.IndexedSlices):
        raise TypeError(f"expected a sparse (IndexedSlices) gradient, got {type(grad).__name__}")
    unique, pos = tf.unique(grad.indices, out_idx=tf.int32)
    return unique, tf.math.unsorted_segment_sum(grad.values, pos, tf.shape(unique)[0])


class SparseOptimizer:
    """Base: call :meth:`build` once with the trainable variables, then :meth:`apply` each step."""

    name = ""

    def __init__(self, lr: float, *, compiled: bool = False):
        self.lr = float(lr)
        self.compiled = compiled  # sum a row's repeated gradients with XLA (the local step; a cluster's workers do not)
        self.slots: dict[str, list] = {}

    def build(self, variables) -> None:
        import tensorflow as tf

        self.variables = list(variables)
        # a variable, not a constant of the traced step, so a schedule can change it between epochs
        self.learning_rate = tf.Variable(self.lr, dtype=tf.float32, trainable=False, name="learning_rate")

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next steps (a schedule calls this between epochs)."""
        self.learning_rate.assign(lr)

    def apply(self, grads, variables) -> None:
        for grad, var in zip(grads, variables):
            if grad is None:
                continue
            index = self._index(var)
            idx, values = _dedupe(grad, self.compiled)
            self._apply_one(index, var, idx, values)

    def _index(self, var) -> int:
        for i, v in enumerate(self.variables):
            if v is var:
                return i
        raise KeyError(f"variable {var.name} was not built into the optimizer")

    def _apply_one(self, i, var, idx, values) -> None:
        raise NotImplementedError


class SparseSGD(SparseOptimizer):
    name = "sgd"

    def _apply_one(self, i, var, idx, values):
        tf = import_tensorflow()

        var.scatter_sub(tf.IndexedSlices(self.learning_rate * values, idx))


class SparseAdagrad(SparseOptimizer):
    name = "adagrad"

    def __init__(self, lr: float, initial_accumulator: float = 0.1, epsilon: float = 1e-7, *, compiled: bool = False):
        super().__init__(lr, compiled=compiled)
        self.initial_accumulator = initial_accumulator
        self.epsilon = epsilon

    def build(self, variables):
        tf = import_tensorflow()

        super().build(variables)
        self.slots["accumulator"] = [
            tf.Variable(tf.fill(v.shape, self.initial_accumulator), trainable=False, name="accumulator")
            for v in self.variables
        ]

    def _apply_one(self, i, var, idx, values):
        tf = import_tensorflow()

        tf.raw_ops.ResourceSparseApplyAdagradV2(
            var=var.handle,
            accum=self.slots["accumulator"][i].handle,
            lr=tf.cast(self.learning_rate, var.dtype),
            epsilon=tf.constant(self.epsilon, var.dtype),
            grad=values,
            indices=idx,
            use_locking=False,
            update_slots=True,
        )


def _lazy_adam_rows(var, m_slot, v_slot, unique, k, values, positions, lr, t, b1, b2, eps):
    """Lazy Adam on the ``k`` distinct rows ``unique[:k]`` (:func:`_padded_slices`): the sum of a row's gradients,
    its moments, the row. The local step of ``train`` runs it as one XLA computation; ``extend`` and a cluster's
    servers with TensorFlow's own kernels (the same bytes as a scatter_sub of the step: ``p - x`` either way).

    The padded slots past ``k`` repeat the last distinct row with its own values. Writing a row twice with the same
    value is a no-op, so every write is an update, never an add (``scatter_sub`` would subtract twice). Measured on
    13,193 distinct of 34,816 looked-up rows of width 200: 11.7 ms instead of 19.4 ms for the same TensorFlow ops
    outside XLA. XLA may fuse a multiply and an add (FMA): rows can differ from the plain path's in the last bit,
    never between two runs of the compiled path."""
    tf = import_tensorflow()

    take = tf.minimum(tf.range(tf.shape(unique)[0]), k - 1)
    rows, summed = tf.gather(unique, take), tf.gather(_padded_sum(unique, values, positions), take)
    if m_slot is None:  # beta_1 = 0 (rmsprop): the first moment is the gradient itself, nothing to keep
        m = summed
    else:
        m = b1 * tf.gather(m_slot, rows) + (1.0 - b1) * summed
        m_slot.scatter_update(tf.IndexedSlices(m, rows))
    v = b2 * tf.gather(v_slot, rows) + (1.0 - b2) * tf.square(summed)
    v_slot.scatter_update(tf.IndexedSlices(v, rows))
    step = lr * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
    var.scatter_update(tf.IndexedSlices(tf.gather(var, rows) - step * m / (tf.sqrt(v) + eps), rows))
    return 0


class LazyAdam(SparseOptimizer):
    """Adam whose moments are read and written only for the touched rows (as in tf-addons LazyAdam)."""

    name = "adam"

    def __init__(self, lr: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8, *,
                 compiled: bool = False):
        super().__init__(lr, compiled=compiled)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, variables):
        tf = import_tensorflow()

        super().build(variables)
        if self.beta_1:
            self.slots["m"] = [tf.Variable(tf.zeros(v.shape), trainable=False, name="m") for v in self.variables]
        self.slots["v"] = [tf.Variable(tf.zeros(v.shape), trainable=False, name="v") for v in self.variables]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def apply(self, grads, variables):
        tf = import_tensorflow()

        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        update = _xla(_lazy_adam_rows) if self.compiled else _lazy_adam_rows  # one maths, with or without XLA
        for grad, var in zip(grads, variables):
            if grad is None:
                continue
            i = self._index(var)
            m = self.slots["m"][i] if "m" in self.slots else None
            update(var, m, self.slots["v"][i], *_padded_slices(grad), self.learning_rate, t,
                   self.beta_1, self.beta_2, self.epsilon)


class LazyRMSprop(LazyAdam):
    """Adam without momentum (beta_1 = 0): RMSprop with Adam's bias-corrected second moment (beta_2 = 0.999).

    Each gradient's whole step is taken when it comes, so updating the touched rows only is the dense rule (a dense
    step's zero gradient moves no row; it only decays ``v``, which the lazy form leaves to the row's next touch).
    Lazy Adam's momentum instead spreads a gradient over the row's *next touches*: for rows a step rarely touches,
    much of each step comes late. The bilinear models' default: measured equal to lazy Adam on FB15k-237 and far
    ahead on WN18RR (docs/throughput/bilinear-chunks/README.md); TransE learns faster with it too, which at its
    default objective overfits sooner, so TransE keeps Adam. No first-moment slot: a third less optimizer memory
    and traffic than Adam.
    """

    name = "rmsprop"

    def __init__(self, lr: float, beta_2: float = 0.999, epsilon: float = 1e-8, *, compiled: bool = False):
        super().__init__(lr, beta_1=0.0, beta_2=beta_2, epsilon=epsilon, compiled=compiled)


# the first is the dataclass default (models may default to another: their ``defaults``)
OPTIMIZERS = {"adam": LazyAdam, "rmsprop": LazyRMSprop, "adagrad": SparseAdagrad, "sgd": SparseSGD}


def make_optimizer(name: str, lr: float, *, compiled: bool = False) -> SparseOptimizer:
    return OPTIMIZERS[name](lr, compiled=compiled)
