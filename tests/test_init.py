"""--init neighbors: closed-form starts for new entities from their frozen neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embretrain.init import neighbor_rows
from embretrain.models import get_model


def _tables(model: str, n_old=20, dim=8, n_rel=3, seed=0):
    rng = np.random.default_rng(seed)
    ent = rng.normal(size=(n_old, dim)).astype(np.float32)
    width = dim // 2 if model == "rotate" else dim
    rel = rng.uniform(-np.pi, np.pi, size=(n_rel, width)).astype(np.float32) if model == "rotate" \
        else rng.normal(size=(n_rel, width)).astype(np.float32)
    return ent, rel


def test_transe_mean_of_t_minus_r_and_h_plus_r():
    ent, rel = _tables("transe")
    n_old = len(ent)
    triples = np.array([[n_old, 0, 3], [5, 1, n_old]], dtype=np.int64)
    start = np.zeros((1, 8), np.float32)
    rows, placed = neighbor_rows("transe", ent, rel, triples, start)
    assert placed == 1
    np.testing.assert_allclose(rows[0], ((ent[3] - rel[0]) + (ent[5] + rel[1])) / 2, rtol=1e-6)


def test_rotate_start_scores_a_perfect_triple():
    ent, rel = _tables("rotate")
    n_old = len(ent)
    scorer = get_model("rotate", {"gamma": 12.0})
    for triple in ([n_old, 2, 4], [7, 2, n_old]):
        rows, _ = neighbor_rows("rotate", ent, rel, np.array([triple], np.int64), np.zeros((1, 8), np.float32))
        table = np.concatenate([ent, rows])
        h, r, t = table[triple[0]], rel[triple[1]], table[triple[2]]
        # rotating back/forward puts the new entity exactly where the triple wants it: distance 0
        assert float(scorer.score(h[None], r[None], t[None])[0]) == pytest.approx(12.0, abs=1e-3)


@pytest.mark.parametrize("model", ["distmult", "complex"])
def test_bilinear_start_fits_its_triple_without_outranking_old_answers(model):
    rng = np.random.default_rng(0)
    n_old, dim = 300, 16
    # trained bilinear tables share a common direction; a naive closed form would ride on it
    bias = np.abs(rng.normal(size=dim))
    ent = (rng.normal(size=(n_old, dim)) * 0.5 + bias).astype(np.float32)
    rel = (rng.normal(size=(4, dim)) * 0.5 + bias).astype(np.float32)
    scorer = get_model(model)
    triples = np.array([[n_old, 1, 2], [n_old, 2, 7]], np.int64)
    rows, placed = neighbor_rows(model, ent, rel, triples, np.zeros((1, dim), np.float32))
    assert placed == 1
    table = np.concatenate([ent, rows])
    # the new entity is a better head for its own triples than most old entities
    for _, r, t in triples:
        scores = scorer.score(table, np.repeat(rel[r][None], len(table), 0), np.repeat(ent[t][None], len(table), 0)).numpy()
        assert (scores[:n_old] > scores[n_old]).mean() < 0.5
    # ... but not a winner of every old query: its mean score over random old queries is an old row's level
    qh, qr = rng.integers(0, n_old, 500), rng.integers(0, 4, 500)
    mean_scores = np.array([scorer.score(np.repeat(e[None], 500, 0), rel[qr], ent[qh]).numpy().mean() for e in table])
    assert 0.1 < (mean_scores[:n_old] > mean_scores[n_old]).mean() < 0.9


def test_new_neighbours_are_placed_in_a_later_pass_and_lonely_ones_keep_their_start():
    ent, rel = _tables("transe")
    n_old = len(ent)
    # n_old placed from e3; n_old+1 only touches n_old (second pass); n_old+2 touches a new relation only
    triples = np.array([[n_old, 0, 3], [n_old + 1, 1, n_old], [n_old + 2, 3, 4]], np.int64)
    start = np.full((3, 8), 7.0, np.float32)
    rows, placed = neighbor_rows("transe", ent, rel, triples, start)
    assert placed == 2
    np.testing.assert_allclose(rows[0], ent[3] - rel[0], rtol=1e-6)
    np.testing.assert_allclose(rows[1], rows[0] - rel[1], rtol=1e-6)
    assert np.array_equal(rows[2], start[2])


def test_extend_with_neighbors_init_and_no_epochs_writes_the_closed_form(toy):
    from embretrain import api
    from embretrain.config import Settings

    settings = Settings(model="transe", dim=8, epochs=3, batch_size=64, negatives=4)
    base, _ = api.train(toy["train"], settings)
    grown, summary = api.extend(base, toy["new"], toy["delta"], Settings(model="transe", epochs=0, init="neighbors"))
    assert summary["init_placed_from_neighbors"] == len(toy["new_names"]) - 1  # the last one has no triple
    ent, rel = grown.entity_tables["entity_embeddings"], grown.relation_tables["relation_embeddings"]
    e, r = {n: i for i, n in enumerate(grown.entities)}, {n: i for i, n in enumerate(grown.relations)}
    name = toy["new_names"][2]
    estimates = [ent[e[t]] - rel[r[rel_]] for h, rel_, t in toy["delta_rows"] if h == name and t in e and t < "n"]
    estimates += [ent[e[h]] + rel[r[rel_]] for h, rel_, t in toy["delta_rows"] if t == name and h < "n"]
    np.testing.assert_allclose(ent[e[name]], np.mean(estimates, axis=0), rtol=1e-5, atol=1e-6)
    old = base.entity_tables["entity_embeddings"]
    assert np.array_equal(ent[: len(old)], old)


def test_median_is_the_l1_centre_and_ignores_an_outlier():
    ent, rel = _tables("transe")
    n_old = len(ent)
    rel = np.zeros_like(rel)
    ent[4] = ent[3] + 0.01
    ent[5] = ent[3] + 100.0  # an outlying neighbour
    triples = np.array([[n_old, 0, 3], [n_old, 0, 4], [n_old, 0, 5]], dtype=np.int64)
    start = np.zeros((1, 8), np.float32)
    l1, _ = neighbor_rows("transe", ent, rel, triples, start, median=True)
    l2, _ = neighbor_rows("transe", ent, rel, triples, start)
    np.testing.assert_allclose(l1[0], ent[4], rtol=1e-6)  # the middle one, per coordinate
    np.testing.assert_allclose(l2[0], ent[3:6].mean(axis=0), rtol=1e-5)


def test_preset_extend_epochs_apply_to_extend_unless_epochs_is_given(toy, tmp_path):
    from click.testing import CliRunner

    from embretrain import api
    from embretrain.cli import main

    preset = tmp_path / "p.toml"
    preset.write_text('model = "transe"\ndim = 8\nepochs = 3\nbatch_size = 64\nnegatives = 4\n'
                      'extend_epochs = 0\ninit = "neighbors"\n')
    base = tmp_path / "base.h5"
    run = CliRunner().invoke(main, ["-q", "train", "--config", str(preset), "--data", str(toy["train"]), "--out", str(base), "--json"])
    assert run.exit_code == 0, run.output
    assert api.load(base).lineage[-1]["epochs"] == 3  # train ignores extend_epochs
    for extra, epochs in (([], 0), (["--epochs", "2"], 2)):
        out = tmp_path / f"grown{epochs}.h5"
        run = CliRunner().invoke(main, ["-q", "extend", "--config", str(preset), "--ckpt", str(base), "--new-entities",
                                        str(toy["new"]), "--data", str(toy["delta"]), "--out", str(out), "--json", *extra])
        assert run.exit_code == 0, run.output
        summary = json.loads(run.stdout[run.stdout.index("{"):])
        assert summary["epochs"] == epochs and summary["init_placed_from_neighbors"] == len(toy["new_names"]) - 1
