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


def _run_steps(name, compiled, init, batches):
    var = tf.Variable(init)
    opt = make_optimizer(name, 0.05, compiled=compiled)
    opt.build([var])

    @tf.function
    def step(idx, values):
        opt.apply([tf.IndexedSlices(values, idx, tf.constant(init.shape, dtype=tf.int64))], [var])
        return 0

    for idx, values in batches:
        step(tf.constant(idx, dtype=tf.int64), tf.constant(values))
    return var.numpy()


# batches as training makes them (a steady size, then a short last one) and as a caller may (each count new, none)
_SIZES = (300, 300, 77, 299, 1, 0, 300)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_local_steps_compiled_update_matches_the_plain_one(name):
    """The local step sums a row's repeated gradients with XLA, padded to a few static sizes (and lazy Adam's whole
    update is XLA): sgd and adagrad must give the plain kernels' bytes; Adam may differ in the last bit (XLA fuses a
    multiply and an add) but never between two runs, and must move only the rows the batches touched."""
    rng = np.random.default_rng(3)
    init = rng.normal(size=(50, 8)).astype(np.float32)
    batches = [(rng.integers(0, 40, size=m), rng.normal(size=(m, 8)).astype(np.float32)) for m in _SIZES]
    plain = _run_steps(name, False, init, batches)
    compiled = _run_steps(name, True, init, batches)
    assert not np.array_equal(compiled, init)
    if name in ("adam", "rmsprop"):
        np.testing.assert_allclose(compiled, plain, rtol=1e-5, atol=1e-6)
        assert compiled.tobytes() == _run_steps(name, True, init, batches).tobytes()
    else:
        assert compiled.tobytes() == plain.tobytes()
    assert compiled[40:].tobytes() == init[40:].tobytes()  # rows no batch looked up


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


def _numpy_lazy_adam(init, batches, lr=0.05, b1=0.9, b2=0.999, eps=1e-8):
    """Lazy Adam written out in numpy (tf-addons LazyAdam's rule, in float64): an independent witness for both
    of embretrain's paths, which share one maths function."""
    var, m, v = init.astype(np.float64), np.zeros(init.shape), np.zeros(init.shape)
    for t, (idx, values) in enumerate(batches, start=1):
        if len(idx) == 0:
            continue
        rows = np.unique(idx)
        g = np.zeros((len(rows), init.shape[1]))
        np.add.at(g, np.searchsorted(rows, idx), values)  # repeated rows: their gradients summed
        m[rows] = b1 * m[rows] + (1 - b1) * g
        v[rows] = b2 * v[rows] + (1 - b2) * g * g
        var[rows] -= lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[rows] / (np.sqrt(v[rows]) + eps)
    return var


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("name, b1", [("adam", 0.9), ("rmsprop", 0.0)])
def test_lazy_adam_follows_the_written_out_rule_over_steps_with_repeated_rows(name, b1, compiled):
    """rmsprop is the same rule with beta_1 = 0; both against the numpy witness."""
    rng = np.random.default_rng(7)
    init = rng.normal(size=(50, 8)).astype(np.float32)
    batches = [(rng.integers(0, 40, size=m), rng.normal(size=(m, 8)).astype(np.float32)) for m in _SIZES]
    got = _run_steps(name, compiled, init, batches)
    np.testing.assert_allclose(got, _numpy_lazy_adam(init, batches, b1=b1), rtol=1e-5, atol=1e-5)
    assert got[40:].tobytes() == init[40:].tobytes()
    # and the two differ: momentum carries earlier steps' gradients into later ones
    assert np.abs(got - _numpy_lazy_adam(init, batches, b1=0.9 - b1)).max() > 1e-3


def test_rmsprop_takes_each_gradients_whole_step_at_once_and_keeps_no_first_moment():
    """A row touched once and then never: Adam without momentum has moved it by its whole step, and a later step
    that touches only other rows moves it no further (lazy = dense for this rule); lazy Adam moved it by 1 - beta_1 of
    that and keeps the rest in its momentum for the row's next touch."""
    g = tf.constant([[1.0, -2.0]])
    shape = tf.constant([3, 2], dtype=tf.int64)
    moved = {}
    for name in ("rmsprop", "adam"):
        var = tf.Variable(np.zeros((3, 2), np.float32))
        opt = make_optimizer(name, 0.1)
        opt.build([var])
        for _ in range(50):  # t = 50: bias corrections near 1, the first moment's (1 - 0.9^t) is ~1 as well
            opt.apply([tf.IndexedSlices(tf.zeros([1, 2]), tf.constant([0], dtype=tf.int64), shape)], [var])
        opt.apply([tf.IndexedSlices(g, tf.constant([2], dtype=tf.int64), shape)], [var])
        once = var.numpy()[2].copy()
        opt.apply([tf.IndexedSlices(tf.ones([1, 2]), tf.constant([1], dtype=tf.int64), shape)], [var])
        assert var.numpy()[2].tobytes() == once.tobytes()  # not touched: not moved, whichever the rule
        moved[name] = once
    bias_v = np.sqrt(1 - 0.999**51)
    np.testing.assert_allclose(moved["rmsprop"], -0.1 * bias_v * np.sign([1.0, -2.0]) / np.sqrt(0.001), rtol=1e-3)
    np.testing.assert_allclose(moved["adam"], 0.1 * moved["rmsprop"] / (1 - 0.9**51), rtol=1e-3)
    opt = make_optimizer("rmsprop", 0.1)
    opt.build([tf.Variable(np.zeros((3, 2), np.float32))])
    assert set(opt.slots) == {"v"}  # no first-moment slot: a third less optimizer memory than Adam
