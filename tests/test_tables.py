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
    assert not table.old.trainable and table.new.trainable
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
