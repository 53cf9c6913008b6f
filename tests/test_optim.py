"""Sparse optimizers: only touched rows move; repeated indices are summed, not dropped."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from embretrain.optim import OPTIMIZERS, make_optimizer  # noqa: E402


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_only_touched_rows_change(name):
    init = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    var = tf.Variable(init)
    opt = make_optimizer(name, 0.1)
    opt.build([var])
    grad = tf.IndexedSlices(tf.ones([3, 3]), tf.constant([1, 4, 1], dtype=tf.int64), tf.constant([6, 3], dtype=tf.int64))
    opt.apply([grad], [var])
    after = var.numpy()
    changed = np.where(np.any(after != init, axis=1))[0].tolist()
    assert changed == [1, 4]
    assert np.all(after[[1, 4]] < init[[1, 4]])  # moved against the gradient


def test_sgd_sums_repeated_indices():
    var = tf.Variable(np.zeros((2, 1), np.float32))
    opt = make_optimizer("sgd", 1.0)
    opt.build([var])
    grad = tf.IndexedSlices(tf.ones([3, 1]), tf.constant([0, 0, 0], dtype=tf.int64), tf.constant([2, 1], dtype=tf.int64))
    opt.apply([grad], [var])
    np.testing.assert_array_equal(var.numpy(), [[-3.0], [0.0]])


def test_lazy_adam_first_step_matches_adam():
    # first Adam step moves each touched coordinate by lr * sign(g) (bias-corrected)
    var = tf.Variable(np.zeros((3, 2), np.float32))
    opt = make_optimizer("adam", 0.05)
    opt.build([var])
    grad = tf.IndexedSlices(tf.constant([[2.0, -0.5]]), tf.constant([2], dtype=tf.int64), tf.constant([3, 2], dtype=tf.int64))
    opt.apply([grad], [var])
    np.testing.assert_allclose(var.numpy()[2], [-0.05, 0.05], rtol=1e-4)
    assert np.all(var.numpy()[:2] == 0)
    assert opt.slots["m"][0].shape == var.shape  # slots sized like the trainable rows only


def test_dense_gradient_is_refused():
    var = tf.Variable(np.zeros((2, 2), np.float32))
    opt = make_optimizer("sgd", 0.1)
    opt.build([var])
    with pytest.raises(TypeError, match="sparse"):
        opt.apply([tf.ones([2, 2])], [var])
