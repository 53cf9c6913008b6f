"""Epoch batches (local step and cluster chief): every example once per epoch, whole batches, a seeded order."""

import numpy as np
import pytest

from embretrain.batches import EpochBatches


def epoch(batches):
    return [(ids.numpy(), w.numpy()) for ids, w in batches.next_epoch()]


def make(n, batch, seed=0):
    ids = np.stack([np.arange(n), np.arange(n) % 3, np.arange(n) + 1000], axis=1).astype(np.int64)
    weights = (np.arange(n) / 10).astype(np.float32)
    return ids, weights, EpochBatches(ids, weights, batch, seed)


@pytest.mark.parametrize("n, batch", [(10, 4), (12, 4), (3, 8), (1, 1)])
def test_each_example_once_per_epoch_in_whole_batches(n, batch):
    ids, weights, batches = make(n, batch)
    seen = set()
    for _ in range(3):
        out = epoch(batches)
        sizes = [len(b) for b, _ in out]
        assert sizes == [batch] * (n // batch) + ([n % batch] if n % batch else [])
        rows = np.concatenate([b for b, _ in out])
        w = np.concatenate([x for _, x in out])
        assert sorted(rows[:, 0].tolist()) == list(range(n))
        # each example keeps its own weight and its own columns
        np.testing.assert_array_equal(w, weights[rows[:, 0]])
        np.testing.assert_array_equal(rows, ids[rows[:, 0]])
        seen.add(tuple(rows[:, 0]))
    if n >= 10:
        assert len(seen) > 1, "every epoch came in the same order"


def test_same_seed_same_batches_other_seed_other_order():
    a, b, c = (make(100, 16, seed)[2] for seed in (7, 7, 8))
    for _ in range(2):
        ea, eb, ec = epoch(a), epoch(b), epoch(c)
        assert all((x[0] == y[0]).all() for x, y in zip(ea, eb))
        assert not all((x[0] == y[0]).all() for x, y in zip(ea, ec))


def test_mismatched_weights_refused():
    with pytest.raises(ValueError, match="5 examples but 4 weights"):
        EpochBatches(np.zeros((5, 3), np.int64), np.ones(4, np.float32), 2, 0)


@pytest.mark.parametrize("n, batch", [(10, 4), (12, 4), (3, 8)])
def test_a_clusters_chief_walks_the_batches_a_local_run_walks(n, batch):
    """epoch_arrays (what a cluster's chief schedules) gives, epoch after epoch, the batches of next_epoch (the local
    step's) for the same seed: a cluster run trains on a local run's batches."""
    _, _, local = make(n, batch, seed=5)
    _, _, chief = make(n, batch, seed=5)
    for _ in range(3):
        want, got = epoch(local), list(chief.epoch_arrays())
        assert len(got) == len(want)
        for (ids, w), (ids_want, w_want) in zip(got, want):
            np.testing.assert_array_equal(ids, ids_want)
            np.testing.assert_array_equal(w, w_want)
