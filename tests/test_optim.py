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


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_local_steps_compiled_sum_of_repeated_rows_gives_the_same_bytes(name):
    """The local step sums a row's repeated gradients with XLA (one segment per looked-up row, sliced): the update
    must be the plain kernel's, byte for byte, in a traced step as training runs it, over batches of two sizes."""
    rng = np.random.default_rng(3)
    init = rng.normal(size=(50, 8)).astype(np.float32)
    batches = [(rng.integers(0, 50, size=m), rng.normal(size=(m, 8)).astype(np.float32)) for m in (300, 300, 77)]
    after = {}
    for compiled in (False, True):
        var = tf.Variable(init)
        opt = make_optimizer(name, 0.05, compiled=compiled)
        opt.build([var])

        @tf.function
        def step(idx, values):
            opt.apply([tf.IndexedSlices(values, idx, tf.constant([50, 8], dtype=tf.int64))], [var])
            return 0

        for idx, values in batches:
            step(tf.constant(idx, dtype=tf.int64), tf.constant(values))
        after[compiled] = var.numpy()
    assert not np.array_equal(after[True], init)
    assert after[True].tobytes() == after[False].tobytes()


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


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_set_lr_changes_the_next_steps(name):
    """A schedule's set_lr reaches the compiled step: at lr 0 a step moves nothing, at 0.1 it moves the row."""
    var = tf.Variable(np.ones((3, 2), np.float32))
    opt = make_optimizer(name, 0.1)
    opt.build([var])
    grad = tf.IndexedSlices(tf.ones([1, 2]), tf.constant([1], dtype=tf.int64), tf.constant([3, 2], dtype=tf.int64))
    step = tf.function(lambda: opt.apply([grad], [var]))
    opt.set_lr(0.0)
    step()
    np.testing.assert_array_equal(var.numpy(), np.ones((3, 2)))
    opt.set_lr(0.1)
    step()
    assert np.all(var.numpy()[1] < 1.0) and np.all(var.numpy()[[0, 2]] == 1.0)
