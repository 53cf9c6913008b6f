"""Shuffled batches of the training examples, one epoch at a time, for the local step and a cluster's chief.

Each epoch draws one permutation of the examples from a numpy ``Generator`` seeded with the run's seed (the same
batches for the same seed, on every machine) and hands ``tf.data`` whole batches: ``[steps, batch, k]`` slices of
the permuted array, plus the short last batch. ``tf.data`` only prefetches them.

The permutation is hand-written (one ``Generator.permutation`` and one gather per epoch) rather than
``tf.data.Dataset.shuffle``: with a buffer as large as the data, that shuffles and batches element by element, ~1.8 ms
of CPU per batch of 1,024 on a background thread that competes with the step for the cores (measured on FB15k-237,
272k triples: 0.49 s per epoch for the pipeline alone, 0.15 s for this one; DistMult's default epoch 1.84 s before,
1.05-1.13 s after: docs/BENCHMARKS.md, "Throughput"). Its buffer also held every example as a separate element.
Memory: one permuted copy of the examples per epoch (freed with the epoch).

A cluster's chief walks the same epochs as numpy batches (:meth:`EpochBatches.epoch_arrays`) and hands each one to
the step it schedules, so that every example is trained once per epoch whichever worker runs its batch (see
:mod:`embretrain.distributed`, "Data").
"""

from __future__ import annotations

import numpy as np

__all__ = ["EpochBatches"]


class EpochBatches:
    """``next_epoch()``: a ``tf.data.Dataset`` of ``(ids [b, k], weights [b])`` batches in this epoch's order."""

    def __init__(self, ids: np.ndarray, weights: np.ndarray, batch_size: int, seed: int):
        if len(ids) != len(weights):
            raise ValueError(f"{len(ids)} examples but {len(weights)} weights")
        self.ids, self.weights, self.batch_size = ids, weights, int(batch_size)
        self._rng = np.random.default_rng(seed)

    def _permuted(self):
        order = self._rng.permutation(len(self.ids))
        return self.ids[order], self.weights[order]

    def epoch_arrays(self):
        """The next epoch as numpy ``(ids [b, k], weights [b])`` batches: the same batches :meth:`next_epoch`
        would have given for this epoch."""
        ids, weights = self._permuted()
        for start in range(0, len(ids), self.batch_size):
            yield ids[start:start + self.batch_size], weights[start:start + self.batch_size]

    def next_epoch(self):
        import tensorflow as tf

        ids, weights = self._permuted()
        b = self.batch_size
        full = len(ids) // b * b
        width = ids.shape[1]
        ds = tf.data.Dataset.from_tensor_slices((ids[:full].reshape(-1, b, width), weights[:full].reshape(-1, b)))
        if full < len(ids):
            ds = ds.concatenate(tf.data.Dataset.from_tensors((ids[full:], weights[full:])))
        options = tf.data.Options()
        # a fixed prefetch depth, autotuning off: with it on, the last next() of an epoch stalled for 1-2.4 s
        # (measured on 200k triples). Two batches are enough: the step, not this pipeline, is the bottleneck.
        options.autotune.enabled = False
        return ds.prefetch(2).with_options(options)
