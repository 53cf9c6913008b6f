"""The freeze: routing lookups, sparse gradients on the new rows only."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from embretrain.tables import SplitTable, glorot_rows  # noqa: E402


def _table(n_old=5, n_new=3, width=4):
    old = np.arange(n_old * width, dtype=np.float32).reshape(n_old, width)
    new = -np.arange(1, n_new * width + 1, dtype=np.float32).reshape(n_new, width)
    return SplitTable(old, new, "t"), old, new


def test_lookup_routes_ids_to_old_and_new_rows():
    table, old, new = _table()
    ids = tf.constant([[0, 6], [4, 5]], dtype=tf.int64)
    got = table.lookup(ids).numpy()
    assert got.shape == (2, 2, 4)
    np.testing.assert_array_equal(got[0, 0], old[0])
    np.testing.assert_array_equal(got[0, 1], new[1])
    np.testing.assert_array_equal(got[1, 0], old[4])
    np.testing.assert_array_equal(got[1, 1], new[0])


def test_only_new_variable_is_trainable_and_its_gradient_is_indexed_slices():
    table, _, _ = _table()
    assert not isinstance(table.old, tf.Variable) and table.new.trainable  # old rows: a constant
    assert table.trainable == [table.new]
    ids = tf.constant([1, 5, 7, 5], dtype=tf.int64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(table.lookup(ids) ** 2)
    grads = tape.gradient(loss, [table.new, table.old])
    assert isinstance(grads[0], tf.IndexedSlices)
    assert sorted(set(grads[0].indices.numpy().tolist())) == [0, 2]  # rows 5 and 7 of the merged table
    assert grads[1] is None  # the frozen variable is not watched


def test_empty_parts():
    old = np.ones((3, 2), np.float32)
    only_old = SplitTable(old, np.zeros((0, 2), np.float32), "a")
    np.testing.assert_array_equal(only_old.lookup(tf.constant([2, 0])).numpy(), old[[2, 0]])
    only_new = SplitTable(np.zeros((0, 2), np.float32), old, "b")
    np.testing.assert_array_equal(only_new.lookup(tf.constant([1])).numpy(), old[[1]])


def test_glorot_rows_bound_uses_merged_table_shape():
    rows = glorot_rows(np.random.default_rng(0), 1000, 10, 1_000_000)
    limit = np.sqrt(6 / (1_000_000 + 10))
    assert rows.dtype == np.float32 and rows.shape == (1000, 10)
    assert np.abs(rows).max() <= limit and np.abs(rows).max() > 0.9 * limit


def test_aligned_old_rows_are_shared_with_tensorflow_not_copied():
    from embretrain.storage import aligned_empty

    old = aligned_empty((6, 4))
    old[:] = np.arange(24, dtype=np.float32).reshape(6, 4)
    old.flags.writeable = False  # how extend loads them
    table = SplitTable(old, np.zeros((2, 4), np.float32), "t")
    assert not old.flags.writeable  # unlocked for the export only
    # same buffer: TF sees the numpy memory itself (one copy of the old table in the process)
    old.flags.writeable = True
    old[3, 1] = 99.0
    assert table.lookup(tf.constant([3], tf.int64)).numpy()[0, 1] == 99.0


def test_unaligned_or_foreign_old_rows_are_copied_safely():
    raw = np.arange(41, dtype=np.float32)
    old = raw[1:].reshape(10, 4)  # 4 bytes past an aligned start: TF would abort on it
    table = SplitTable(old, np.zeros((1, 4), np.float32), "t")

    @tf.function
    def look(ids):
        return table.lookup(ids)

    np.testing.assert_array_equal(look(tf.constant([9, 0], tf.int64)).numpy(), old[[9, 0]])
    f64 = SplitTable(np.ones((3, 2)), np.zeros((1, 2), np.float32), "d")
    np.testing.assert_array_equal(f64.lookup(tf.constant([2, 3])).numpy(), [[1, 1], [0, 0]])


def test_old_rows_on_disk_are_read_per_lookup_with_sparse_gradients(tmp_path):
    import h5py

    from embretrain.storage import DiskRows, Source

    old = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("rows", data=old)
    rows = DiskRows(Source(tmp_path / "t.h5"), "rows")
    assert rows.raw
    table = SplitTable(rows, np.ones((3, 4), np.float32), "t")
    ids = tf.constant([[49, 51], [0, 49]], tf.int64)

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(table.lookup(ids) ** 2)
        return table.lookup(ids), tape.gradient(loss, table.new)

    got, grad = step(ids)
    np.testing.assert_array_equal(got.numpy()[0, 0], old[49])
    np.testing.assert_array_equal(got.numpy()[1, 0], old[0])
    np.testing.assert_array_equal(got.numpy()[0, 1], np.ones(4))
    assert isinstance(grad, tf.IndexedSlices) and grad.indices.numpy().tolist() == [1]
    only_old = SplitTable(rows, np.zeros((0, 4), np.float32), "o")
    np.testing.assert_array_equal(only_old.lookup(tf.constant([7, 7, 2])).numpy(), old[[7, 7, 2]])
    np.testing.assert_array_equal(table.all_rows().numpy()[:50], old)
