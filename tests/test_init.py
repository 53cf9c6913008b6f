"""--init neighbors: closed-form starts for new entities from their frozen neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embretrain.init import neighbor_rows
from embretrain.models import MODELS, TransE, get_model

# every registered model with a closed form (the others keep Glorot rows: see the last tests)
WITH_ESTIMATE = [name for name, cls in MODELS.items() if cls.estimate is not None]


def _tables(model: str, n_old=20, dim=8, n_rel=3, seed=0):
    rng = np.random.default_rng(seed)
    ent = rng.normal(size=(n_old, dim)).astype(np.float32)
    width = get_model(model).relation_width(dim)
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


@pytest.mark.parametrize("model", WITH_ESTIMATE)
def test_every_estimate_scores_its_own_triple_better_than_any_old_row(model):
    """A model's closed form, from either side, scores its triple at least as well as every old row does (for a
    direction, bilinear models: compared at the same norm, before init.py's calibration)."""
    pytest.importorskip("tensorflow")
    ent, rel = _tables(model, n_old=200, dim=8)
    scorer, cls = get_model(model), MODELS[model]
    h, r, t = ent[7].astype(np.float64), rel[1].astype(np.float64), ent[4].astype(np.float64)
    for side in ("head", "tail"):
        est = cls.estimate(h[None], r[None], t[None], side)
        cands = np.concatenate([ent, est.astype(np.float32)])
        if cls.estimate_is_direction:
            cands = cands / np.linalg.norm(cands, axis=1, keepdims=True)
        rr = np.repeat(rel[1][None], len(cands), 0)
        scores = (scorer.score(cands, rr, np.repeat(ent[4][None], len(cands), 0)) if side == "head"
                  else scorer.score(np.repeat(ent[7][None], len(cands), 0), rr, cands)).numpy()
        assert scores[-1] >= scores[:-1].max() - 1e-4, (model, side)


def test_transh_start_lies_where_its_triples_put_it_on_each_hyperplane():
    """TransH: ``t - d_perp`` / ``h + d_perp`` keep the neighbour's offset along the normal and fit the triple
    exactly when the translation lies on the plane."""
    ent, rel = _tables("transh")
    n_old, d = ent.shape
    w, t_ = rel[0, :d], rel[0, d:]
    unit = w / np.linalg.norm(w)
    rel[0, d:] = t_ - (t_ @ unit) * unit  # translation on the plane
    rows, _ = neighbor_rows("transh", ent, rel, np.array([[n_old, 0, 3]], np.int64), np.zeros((1, d), np.float32))
    np.testing.assert_allclose(rows[0], ent[3] - rel[0, d:], rtol=1e-5, atol=1e-6)
    tf = pytest.importorskip("tensorflow")
    scorer = get_model("transh", {"gamma": 12.0})
    score = scorer.score(tf.constant(rows), tf.constant(rel[:1]), tf.constant(ent[3:4])).numpy()[0]
    assert score == pytest.approx(12.0, abs=1e-4)


class _NoClosedForm(TransE):
    """A triple model registered without a neighbour estimate."""

    name = "noclosedform"
    estimate = None


def test_a_triple_model_without_a_closed_form_keeps_glorot_rows_cleanly(toy, monkeypatch, caplog):
    """--init neighbors on a model with ``estimate = None`` is a warning and the xavier start, never an
    internal error."""
    from embretrain import api
    from embretrain.config import Settings

    monkeypatch.setitem(MODELS, _NoClosedForm.name, _NoClosedForm)
    settings = Settings(model=_NoClosedForm.name, dim=8, epochs=1, batch_size=64, negatives=4)
    base, _ = api.train(toy["train"], settings)
    runs = {}
    for init in ("xavier", "neighbors"):
        runs[init], summary = api.extend(base, toy["new"], toy["delta"],
                                         Settings(model=_NoClosedForm.name, epochs=0, init=init))
    assert summary.get("init_placed_from_neighbors", 0) == 0
    assert "no closed form" in caplog.text
    assert np.array_equal(runs["xavier"].entity_tables["entity_embeddings"],
                          runs["neighbors"].entity_tables["entity_embeddings"])


def test_estimates_are_combined_a_chunk_of_whole_groups_at_a_time_with_the_same_rows(monkeypatch):
    """Memory bounded by the chunk, not the delta: chunks of 7 estimates give the rows one chunk gives, bit for bit."""
    import embretrain.init as init

    ids = np.array([0, 0, 1, 2, 2, 2, 2, 3, 5, 5, 9])
    chunks = list(init._group_chunks(ids, 3))
    assert chunks == [(0, 3), (3, 7), (7, 10), (10, 11)]  # the run of 2s is one slice, longer than 3
    assert list(init._group_chunks(ids[:0], 3)) == []

    rng = np.random.default_rng(3)
    ent, rel = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)
    triples = np.stack([rng.integers(0, 80, 600), rng.integers(0, 4, 600), rng.integers(0, 80, 600)], 1).astype(np.int64)
    start = rng.normal(size=(30, 8)).astype(np.float32)
    for model, median in (("transe", True), ("distmult", False)):
        whole = neighbor_rows(model, ent, rel, triples, start, median=median)
        monkeypatch.setattr(init, "_CHUNK_TRIPLES", 7)
        chunked = neighbor_rows(model, ent, rel, triples, start, median=median)
        monkeypatch.undo()
        assert whole[1] == chunked[1] == 30 and np.array_equal(whole[0], chunked[0]), model
