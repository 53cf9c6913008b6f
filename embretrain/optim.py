"""Sparse optimizers: update only the rows a batch touched.

Keras 3 ``Adam``/``Adagrad`` (and ``tf.compat.v1.train.AdamOptimizer``) densify ``IndexedSlices``
gradients, so a step costs O(rows in the table); measured 110-290 ms per step on a 1M-row table
instead of ~20 ms. These optimizers keep every step O(rows touched):

- ``sgd``: ``scatter_sub``.
- ``adagrad``: ``tf.raw_ops.ResourceSparseApplyAdagradV2`` (TF's own sparse kernel).
- ``adam``: lazy Adam (moments of a row advance only when the row is touched), written with
  ``gather`` + ``scatter_update`` because no TF2 public API does it without densifying.

Indices are deduplicated first (``tf.unique`` + ``unsorted_segment_sum``, XLA-compiled in the local step): a
batch touches a row many times, and a scatter with repeated indices would apply only one of the updates (or race).
Slots are sized like the trainable variable only (the new rows), never like the whole table.
"""

from __future__ import annotations

import logging

from .quiet_tf import import_tensorflow

__all__ = ["SparseOptimizer", "make_optimizer", "OPTIMIZERS"]

logger = logging.getLogger(__name__)


_compiled_segment_sum = None


def _segment_sum_compiled(values, positions):
    """``unsorted_segment_sum`` compiled by XLA, with one segment per row (a static bound, so XLA compiles once per
    batch size, not once per count of distinct rows); the caller slices the used segments. Measured on 34,816
    looked-up rows of width 200: ~10 ms instead of ~52 ms for TensorFlow's kernel, the same bytes."""
    global _compiled_segment_sum
    tf = import_tensorflow()

    if _compiled_segment_sum is None:
        _compiled_segment_sum = tf.function(
            lambda v, p: tf.math.unsorted_segment_sum(v, p, tf.shape(p)[0]), jit_compile=True)
    return _compiled_segment_sum(values, positions)


def _dedupe(grad, compiled: bool = False):
    tf = import_tensorflow()

    if not isinstance(grad, tf.IndexedSlices):
        raise TypeError(f"expected a sparse (IndexedSlices) gradient, got {type(grad).__name__}")
    unique, pos = tf.unique(grad.indices, out_idx=tf.int32)
    if compiled:
        return unique, _segment_sum_compiled(grad.values, pos)[: tf.shape(unique)[0]]
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
        self.slots["m"] = [tf.Variable(tf.zeros(v.shape), trainable=False, name="m") for v in self.variables]
        self.slots["v"] = [tf.Variable(tf.zeros(v.shape), trainable=False, name="v") for v in self.variables]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def apply(self, grads, variables):
        self.iterations.assign_add(1)
        super().apply(grads, variables)

    def _apply_one(self, i, var, idx, values):
        tf = import_tensorflow()

        t = tf.cast(self.iterations, tf.float32)
        b1, b2 = self.beta_1, self.beta_2
        m_slot, v_slot = self.slots["m"][i], self.slots["v"][i]
        m = b1 * tf.gather(m_slot, idx) + (1.0 - b1) * values
        v = b2 * tf.gather(v_slot, idx) + (1.0 - b2) * tf.square(values)
        m_slot.scatter_update(tf.IndexedSlices(m, idx))
        v_slot.scatter_update(tf.IndexedSlices(v, idx))
        step = self.learning_rate * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
        var.scatter_sub(tf.IndexedSlices(step * m / (tf.sqrt(v) + self.epsilon), idx))


OPTIMIZERS = {"adam": LazyAdam, "adagrad": SparseAdagrad, "sgd": SparseSGD}  # the first is the default


def make_optimizer(name: str, lr: float, *, compiled: bool = False) -> SparseOptimizer:
    return OPTIMIZERS[name](lr, compiled=compiled)
