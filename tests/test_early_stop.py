"""--valid-fraction: a held-out slice of the delta picks the epoch whose new rows are kept."""

from __future__ import annotations

import numpy as np
import pytest

from embretrain.early_stop import EarlyStopping, holdout


def _delta(n_old=50, n_new=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(n_old, n_old + n_new):
        for _ in range(rng.integers(1, 5)):  # some new entities have a single triple
            old = int(rng.integers(0, n_old))
            rows.append([e, int(rng.integers(0, 3)), old] if rng.random() < 0.5 else [old, int(rng.integers(0, 3)), e])
    return np.array(rows, np.int64)


def test_holdout_never_takes_the_last_triple_of_a_new_entity():
    ids = _delta()
    train, held = holdout(ids, 50, 0.5, seed=0)
    assert len(train) + len(held) == len(ids) and len(held) > 0
    new_in_delta = set(ids[:, [0, 2]].ravel()) - set(range(50))
    assert new_in_delta <= set(train[:, [0, 2]].ravel())  # every new entity still trains
    assert {tuple(r) for r in train} | {tuple(r) for r in held} == {tuple(r) for r in ids}


def test_holdout_is_capped_and_seeded():
    ids = _delta(n_new=200)
    _, held = holdout(ids, 50, 0.9, seed=3, max_size=20)
    assert len(held) == 20
    assert np.array_equal(held, holdout(ids, 50, 0.9, seed=3, max_size=20)[1])
    assert len(holdout(ids, 50, 0.0, seed=3)[1]) == 0


def test_best_epoch_rows_are_restored():
    from embretrain.models import get_model
    from embretrain.tables import SplitTable
    from embretrain.train import Embeddings

    rng = np.random.default_rng(0)
    n_old, n_new, dim = 40, 10, 8
    old, rel = rng.normal(size=(n_old, dim)).astype(np.float32), rng.normal(size=(2, dim)).astype(np.float32)
    # the truth: new entity i sits at old[i] + r0, so (old[i], r0, new_i) holds
    good = (old[:n_new] + rel[0]).astype(np.float32)
    held = np.array([[i, 0, n_old + i] for i in range(n_new)], np.int64)
    emb = Embeddings(get_model("transe", {"norm": 2}),
                     {"entity_embeddings": SplitTable(old, np.zeros((n_new, dim), np.float32), "e")},
                     {"relation_embeddings": SplitTable(rel, np.zeros((0, dim), np.float32), "r")})
    stop = EarlyStopping(emb, held, held, patience=2)
    emb.entity.new.assign(good)  # epoch 1: perfect rows
    assert stop.on_epoch(1, 0.0) is False
    emb.entity.new.assign(rng.normal(size=(n_new, dim)).astype(np.float32))  # epochs 2-3: worse
    assert stop.on_epoch(2, 0.0) is False
    assert stop.on_epoch(3, 0.0) is True  # two epochs without improvement
    stop.after_fit()
    assert np.array_equal(emb.entity.new_rows(), good)
    report = stop.report()
    assert report["best_epoch"] == 1 and report["best_mrr"] == pytest.approx(1.0)
    assert len(report["mrr_by_epoch"]) == 4 and report["mrr_by_epoch"][2] < 1.0


def test_extend_with_valid_fraction_reports_and_keeps_old_rows(toy):
    from embretrain import api
    from embretrain.config import Settings

    base, _ = api.train(toy["train"], Settings(model="transe", dim=8, epochs=2, batch_size=64, negatives=4))
    grown, summary = api.extend(base, toy["new"], toy["delta"],
                                Settings(model="transe", epochs=4, valid_fraction=0.3, patience=0, negatives=4))
    es = summary["early_stopping"]
    assert es["held_out"] > 0 and len(es["mrr_by_epoch"]) == 5 and summary["epochs"] == 4  # patience 0: all epochs
    assert es["best_mrr"] == max(es["mrr_by_epoch"])
    old = base.entity_tables["entity_embeddings"]
    assert np.array_equal(grown.entity_tables["entity_embeddings"][: len(old)], old)


def test_held_out_mrr_equals_filtered_ranking_when_every_entity_is_a_candidate():
    from embretrain.evaluate import filtered_ranks
    from embretrain.models import get_model
    from embretrain.tables import SplitTable
    from embretrain.train import Embeddings

    rng = np.random.default_rng(1)
    n_old, n_new, dim = 30, 8, 6
    old, new = rng.normal(size=(n_old, dim)).astype(np.float32), rng.normal(size=(n_new, dim)).astype(np.float32)
    rel = rng.normal(size=(3, dim)).astype(np.float32)
    known = _delta(n_old=n_old, n_new=n_new, seed=4)
    held = known[:10]
    scorer = get_model("distmult")
    emb = Embeddings(scorer, {"entity_embeddings": SplitTable(old, new, "e")},
                     {"relation_embeddings": SplitTable(rel, np.zeros((0, dim), np.float32), "r")})
    stop = EarlyStopping(emb, held, known, candidates=1000)
    ranks = filtered_ranks(scorer, np.concatenate([old, new]), rel, held, [known])
    assert stop.history[0] == pytest.approx(np.mean(1.0 / ranks), abs=1e-5)
    # a small candidate sample ranks among fewer entities: the MRR can only go up
    assert EarlyStopping(emb, held, known, candidates=5).history[0] >= stop.history[0] - 1e-9
