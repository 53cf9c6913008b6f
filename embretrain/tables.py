"""The freeze: one table split into a frozen old part and a trainable new part.

Rows ``[0, n_old)`` live in a non-trainable variable, rows ``[n_old, n_old + n_new)`` in a
trainable one. :meth:`SplitTable.lookup` routes each id to the right variable with
``dynamic_partition``/``dynamic_stitch`` (measured faster than ``tf.where`` + two gathers), so the
gradient that reaches ``new`` is a ``tf.IndexedSlices`` over the rows a batch touched, and the old
rows cannot move: no gradient, no optimizer slot, nothing to update. Every command that trains
goes through this class; nothing else decides what is trainable. ``train`` from scratch is the
case ``n_old = 0``.
"""

from __future__ import annotations

import logging

import numpy as np

from .models import glorot_limit

__all__ = ["SplitTable", "glorot_rows", "routed_lookup"]

logger = logging.getLogger(__name__)


def glorot_rows(rng: np.random.Generator, n_new: int, width: int, n_total: int) -> np.ndarray:
    """Glorot-uniform rows ``float32 [n_new, width]``.

    The bound is computed for the whole merged table ``[n_total, width]``: new rows start from
    the same distribution a full retrain of that table would start from, however few they are.
    """
    limit = glorot_limit(n_total, width)
    return rng.uniform(-limit, limit, size=(n_new, width)).astype(np.float32)


def routed_lookup(ids, old, new, n_old: int, n_new: int, width: int, gather):
    """Rows for ``ids`` int ``[...]`` -> ``[..., width]``: ids < n_old from ``old``, the rest from ``new``.

    ``gather(params, ids)`` reads one part: ``tf.gather`` for plain variables, ``tf.nn.embedding_lookup``
    for sharded ones (the parameter-server strategy). Routing with ``dynamic_partition``/``dynamic_stitch``
    keeps the gradient reaching ``new`` an ``IndexedSlices`` over the touched rows.
    """
    import tensorflow as tf

    if n_new == 0:
        return gather(old, ids)
    if n_old == 0:
        return gather(new, ids)
    flat = tf.reshape(ids, [-1])
    is_new = tf.cast(flat >= n_old, tf.int32)
    positions = tf.range(tf.size(flat))
    old_ids, new_ids = tf.dynamic_partition(flat, is_new, 2)
    old_pos, new_pos = tf.dynamic_partition(positions, is_new, 2)
    rows = tf.dynamic_stitch([old_pos, new_pos], [gather(old, old_ids), gather(new, new_ids - n_old)])
    return tf.reshape(rows, tf.concat([tf.shape(ids), [width]], axis=0))


class SplitTable:
    """A ``[n_old + n_new, width]`` embedding table whose first ``n_old`` rows are frozen.

    Args:
        old: float32 ``[n_old, width]``; copied into a non-trainable variable (never read back:
            savers take old rows from the source, so they come out bit-identical).
        new: float32 ``[n_new, width]`` initial values of the trainable rows.
        name: variable name prefix.
    """

    def __init__(self, old: np.ndarray, new: np.ndarray, name: str):
        import tensorflow as tf

        if old.ndim != 2 or new.ndim != 2 or old.shape[1] != new.shape[1]:
            raise ValueError(f"{name}: old {old.shape} and new {new.shape} must be 2-D of equal width")
        self.name = name
        self.n_old = int(old.shape[0])
        self.n_new = int(new.shape[0])
        self.width = int(old.shape[1])
        self.old = tf.Variable(old, trainable=False, name=f"{name}_old", dtype=tf.float32)
        self.new = tf.Variable(new, trainable=True, name=f"{name}_new", dtype=tf.float32)

    @property
    def n_rows(self) -> int:
        return self.n_old + self.n_new

    def lookup(self, ids):
        """``ids`` int ``[...]`` -> float32 ``[..., width]``; ids >= n_old read the trainable variable."""
        import tensorflow as tf

        return routed_lookup(ids, self.old, self.new, self.n_old, self.n_new, self.width, tf.gather)

    def all_rows(self):
        """The whole table as one tensor ``[n_rows, width]`` (for evaluation, not training)."""
        import tensorflow as tf

        return tf.concat([self.old, self.new], axis=0)

    def new_rows(self) -> np.ndarray:
        """Current values of the trainable rows, float32 ``[n_new, width]``."""
        return self.new.numpy()

    @property
    def trainable(self) -> list:
        return [self.new] if self.n_new else []
