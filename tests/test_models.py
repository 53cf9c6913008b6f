"""Scorers: known values, broadcasting, the fast all-entity paths agree with plain scoring, sparse gradients,
and the shape contract; every registered model is covered (tests/test_model_registry.py checks it is)."""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from embretrain.errors import CheckpointError, UsageError  # noqa: E402
from embretrain.models import MODELS, get_model, model_names  # noqa: E402

# every registered scorer, and each distance model's L2 norm too (it takes the matrix-product path)
EVERY_SCORER = [(name, {}) for name in model_names()] + [
    (name, {"norm": 2}) for name, cls in MODELS.items() if "norm" in cls.param_names
]
SCORER_IDS = [name + "".join(f"-{k}{v}" for k, v in params.items()) for name, params in EVERY_SCORER]


def test_transe_known_values():
    h, r, t = (tf.constant([[1.0, 2.0]]), tf.constant([[0.5, 0.5]]), tf.constant([[1.0, 1.0]]))
    l1 = get_model("transe", {"norm": 1, "gamma": 10.0}).score(h, r, t).numpy()
    l2 = get_model("transe", {"norm": 2, "gamma": 0.0}).score(h, r, t).numpy()
    np.testing.assert_allclose(l1, [10.0 - 2.0])
    np.testing.assert_allclose(l2, [-np.sqrt(0.25 + 2.25)], rtol=1e-5)


def test_complex_equals_complex_arithmetic():
    rng = np.random.default_rng(0)
    h, r, t = (rng.normal(size=(3, 8)).astype(np.float32) for _ in range(3))
    c = lambda x: x[:, :4] + 1j * x[:, 4:]  # noqa: E731
    want = np.real(np.sum(c(h) * c(r) * np.conj(c(t)), axis=1))
    got = get_model("complex").score(tf.constant(h), tf.constant(r), tf.constant(t)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_rotate_is_a_rotation():
    h = tf.constant([[1.0, 0.0]])  # 1 + 0i
    r = tf.constant([[np.pi / 2]])  # rotate by 90 degrees -> 0 + 1i
    t = tf.constant([[0.0, 1.0]])
    assert get_model("rotate", {"gamma": 5.0}).score(h, r, t).numpy()[0] == pytest.approx(5.0, abs=1e-4)


def test_rotate_l2_is_the_length_of_the_rotated_difference():
    h = tf.constant([[1.0, 2.0, 0.0, 0.0]])  # 1 + 0i, 2 + 0i
    r = tf.constant([[np.pi / 2, 0.0]])  # rotate the first by 90 degrees -> 0 + 1i; the second stays 2
    t = tf.constant([[0.0, 2.0, 0.0, 1.0]])  # 0 + 0i, 2 + 1i: differences 0 + 1i and 0 - 1i
    l1 = get_model("rotate", {"gamma": 5.0}).score(h, r, t).numpy()[0]
    l2 = get_model("rotate", {"gamma": 5.0, "norm": 2}).score(h, r, t).numpy()[0]
    assert l1 == pytest.approx(5.0 - 2.0, abs=1e-4) and l2 == pytest.approx(5.0 - np.sqrt(2.0), abs=1e-4)


def test_a_rotate_checkpoint_without_norm_is_the_l1_model_it_was_written_with(tmp_path):
    """Checkpoints written before RotatE had an L2 form carry gamma only: they load, score and grow as L1."""
    import h5py

    from embretrain import api as et
    from embretrain.config import Settings

    lines = [f"e{i}\tr{i % 3}\te{(i * 7 + 1) % 40}" for i in range(120)]
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    base, _ = et.train(tmp_path / "t.tsv", Settings(model="rotate", dim=8, epochs=1, batch_size=32, negatives=4),
                       progress=False)
    et.save(base, tmp_path / "b.h5")
    with h5py.File(tmp_path / "b.h5", "r+") as f:
        params = [p for p in json.loads(f.attrs["params"]) if p != "norm"]
        f.attrs["params"] = json.dumps(params)
        del f.attrs["norm"]
    old = et.load(tmp_path / "b.h5")
    assert "norm" not in old.params and get_model("rotate", old.params).params["norm"] == 1
    (tmp_path / "new.tsv").write_text("x\n")
    (tmp_path / "d.tsv").write_text("x\tr1\te3\ne5\tr2\tx\n")
    grown, _ = et.extend(old, tmp_path / "new.tsv", tmp_path / "d.tsv", progress=False)
    assert grown.params.get("norm", 1) == 1
    ent = base.entity_tables["entity_embeddings"]
    assert np.array_equal(np.asarray(grown.entity_tables["entity_embeddings"])[: len(ent)], np.asarray(ent))


@pytest.mark.parametrize("name,params", EVERY_SCORER, ids=SCORER_IDS)
def test_score_tails_and_heads_match_broadcast_scoring(name, params):
    model = get_model(name, params)
    rng = np.random.default_rng(1)
    d = 6
    rw = model.relation_width(d) or d
    ent = tf.constant(rng.normal(size=(7, d)).astype(np.float32))
    h = tf.constant(rng.normal(size=(4, d)).astype(np.float32))
    t = tf.constant(rng.normal(size=(4, d)).astype(np.float32))
    r = None if model.kind == "pair" else tf.constant(rng.normal(size=(4, rw)).astype(np.float32))
    r3 = None if r is None else r[:, None, :]
    want_tails = model.score(h[:, None, :], r3, ent[None, :, :]).numpy()
    want_heads = model.score(ent[None, :, :], r3, t[:, None, :]).numpy()
    np.testing.assert_allclose(model.score_tails(h, r, ent).numpy(), want_tails, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(model.score_heads(r, t, ent).numpy(), want_heads, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name,params", EVERY_SCORER, ids=SCORER_IDS)
def test_chunked_match_equals_scoring_each_negative(name, params):
    """The training step's shared negatives: chunks [n, C] of queries against [n, K] candidates per chunk."""
    model = get_model(name, params)
    rng = np.random.default_rng(2)
    n, c, k, d = 3, 4, 5, 6
    rw = model.relation_width(d) or d
    f = lambda *shape: tf.constant(rng.normal(size=shape).astype(np.float32))  # noqa: E731
    h, t, negs = f(n, c, d), f(n, c, d), f(n, k, d)
    r = None if model.kind == "pair" else f(n, c, rw)
    r4 = None if r is None else r[:, :, None, :]
    want_tails = model.score(h[:, :, None, :], r4, negs[:, None, :, :]).numpy()
    want_heads = model.score(negs[:, None, :, :], r4, t[:, :, None, :]).numpy()
    got_tails = model.match(model.tail_query(h, r), negs).numpy()
    got_heads = model.match(model.head_query(r, t), negs).numpy()
    assert got_tails.shape == (n, c, k)
    np.testing.assert_allclose(got_tails, want_tails, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got_heads, want_heads, rtol=1e-3, atol=1e-3)


def test_bad_model_and_params():
    with pytest.raises(UsageError, match="unknown model"):
        get_model("nope")
    with pytest.raises(UsageError, match="norm"):
        get_model("transe", {"norm": 3})
    with pytest.raises(UsageError, match="even"):
        MODELS["complex"]().check_dim(5)


def test_rotate_relations_start_as_rotations_of_any_angle(toy):
    """RotatE's relation phases start uniform over [-pi, pi] (the paper's start), not Glorot's few tenths of a radian;
    entity rows and other models' relations keep the Glorot start."""
    from embretrain import api
    from embretrain.config import Settings

    def start(model, dim=64):
        ckpt, _ = api.train(toy["train"], Settings(model=model, dim=dim, epochs=0, seed=3), progress=False)
        return np.asarray(ckpt.entity_tables["entity_embeddings"]), np.asarray(ckpt.relation_tables["relation_embeddings"])

    ent, rel = start("rotate")
    assert np.abs(rel).max() > 2.5 and np.abs(rel).max() <= np.pi
    assert np.abs(ent).max() < 0.5
    _, rel_transe = start("transe")
    assert np.abs(rel_transe).max() < 0.5


def test_distmult_known_values():
    h, r, t = tf.constant([[1.0, 2.0]]), tf.constant([[3.0, 4.0]]), tf.constant([[5.0, 6.0]])
    assert get_model("distmult").score(h, r, t).numpy()[0] == pytest.approx(1 * 3 * 5 + 2 * 4 * 6)


def test_dot_known_values_ignore_the_relation():
    a, c = tf.constant([[1.0, -2.0, 0.5]]), tf.constant([[4.0, 1.0, 2.0]])
    assert get_model("dot").score(a, None, c).numpy()[0] == pytest.approx(4.0 - 2.0 + 1.0)


def test_transh_translates_on_the_relations_hyperplane():
    """Normal z (any length), translation x: h and t differing only along z and by x in the plane score gamma;
    a zero normal is TransE."""
    scorer = get_model("transh", {"norm": 1, "gamma": 7.0})
    h, t = tf.constant([[1.0, 2.0, 5.0]]), tf.constant([[2.0, 2.0, -3.0]])
    on_plane = tf.constant([[0.0, 0.0, 2.0, 1.0, 0.0, 0.0]])  # [w | d]
    assert scorer.score(h, on_plane, t).numpy()[0] == pytest.approx(7.0, abs=1e-5)
    off = tf.constant([[0.0, 0.0, 2.0, 1.0, 1.0, 0.0]])
    assert scorer.score(h, off, t).numpy()[0] == pytest.approx(6.0, abs=1e-5)  # one unit off in y
    no_normal = tf.constant([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    want = get_model("transe", {"gamma": 7.0}).score(h, no_normal[:, 3:], t).numpy()
    np.testing.assert_allclose(scorer.score(h, no_normal, t).numpy(), want, rtol=1e-6)


def _grid(k: int):
    """A planted graph: cell (x, y) of a k x k grid links to its row hub and to its column hub.

    Two cells of one row must look alike to `same_row` and different to `same_col`: TransH keeps them apart
    along `same_row`'s normal, while one translation per relation (TransE) maps them all to one point.
    """
    cells = [(x, y) for x in range(k) for y in range(k)]
    return [(f"g{x}_{y}", "same_row", f"row{x}") for x, y in cells] + \
        [(f"g{x}_{y}", "same_col", f"col{y}") for x, y in cells]


def test_transh_learns_a_planted_graph_far_above_an_untrained_table():
    from embretrain import api
    from embretrain.config import resolve_settings

    triples = _grid(6)  # 48 entities: a random table scores MRR ~0.1
    settings = resolve_settings(None, {"model": "transh", "dim": 16, "epochs": 30, "batch_size": 16, "negatives": 8,
                                       "lr": 0.05, "seed": 0})
    untrained, _ = api.train(triples, resolve_settings(None, {"model": "transh", "dim": 16, "epochs": 0}),
                             progress=False)
    trained, _ = api.train(triples, settings, progress=False)
    before = api.evaluate(untrained, triples, known=[triples])["mrr"]
    after = api.evaluate(trained, triples, known=[triples])["mrr"]
    assert before < 0.3 and after > 0.9, (before, after)


def test_transh_extend_keeps_old_rows_bit_identical_and_places_new_cells(tmp_path):
    """Train on the grid without its last row of cells, then grow it with them through the CLI
    (--init neighbors, no epochs): `verify` proves the old rows, and the closed form alone ranks the new
    cells' hubs far above a Glorot start."""
    from click.testing import CliRunner

    from conftest import write_tsv
    from embretrain import api
    from embretrain.cli import main

    k = 6
    triples = _grid(k)
    new_cells = [f"g{k - 1}_{y}" for y in range(k)]
    base_rows = [t for t in triples if t[0] not in new_cells] + [("g0_0", "same_row", f"row{k - 1}")]  # keep row5's hub
    delta = [t for t in triples if t[0] in new_cells]
    files = {"train": write_tsv(tmp_path / "train.tsv", base_rows), "new": write_tsv(tmp_path / "new.tsv",
             [(n,) for n in new_cells]), "delta": write_tsv(tmp_path / "delta.tsv", delta)}
    run = CliRunner().invoke(main, ["-q", "train", "--data", str(files["train"]), "--model", "transh", "--dim", "16",
                                    "--epochs", "30", "--batch-size", "16", "--negatives", "8", "--lr", "0.05", "--gamma", "12",
                                    "--out", str(tmp_path / "base.h5")])
    assert run.exit_code == 0, run.output
    mrr = {}
    for init in ("xavier", "neighbors"):
        out = tmp_path / f"{init}.h5"
        run = CliRunner().invoke(main, ["-q", "extend", "--ckpt", str(tmp_path / "base.h5"), "--new-entities",
                                        str(files["new"]), "--data", str(files["delta"]), "--epochs", "0",
                                        "--init", init, "--out", str(out)])
        assert run.exit_code == 0, run.output
        run = CliRunner().invoke(main, ["verify", str(tmp_path / "base.h5"), str(out)])
        assert run.exit_code == 0, run.output
        grown = api.load(out)
        assert grown.relation_tables["relation_embeddings"].shape == (2, 32)  # [normal | translation]
        mrr[init] = api.evaluate(grown, delta, known=[base_rows])["mrr"]
    # a Glorot start still ranks the right kind of hub (a row, a column) first by the translation alone
    assert mrr["neighbors"] > 0.9 and mrr["neighbors"] > mrr["xavier"] + 0.4, mrr


@pytest.mark.parametrize("name", model_names())
def test_training_gradients_are_sparse_and_touch_new_rows_only(name):
    """The step's loss (chunked shared negatives) through split tables: every gradient is an IndexedSlices
    over rows of the trainable (new) part; the frozen part is a constant."""
    from embretrain.config import Settings
    from embretrain.tables import SplitTable
    from embretrain.losses import pair_loss, triple_loss
    from embretrain.train import Embeddings

    scorer = get_model(name)
    rng = np.random.default_rng(0)
    d, n_old, n_new, n_rel = 6, 12, 4, 3
    table = lambda n, w: rng.normal(size=(n, w)).astype(np.float32) * 0.3  # noqa: E731
    ent = {"entity_embeddings": SplitTable(table(n_old, d), table(n_new, d), "e")}
    rel = {}
    if scorer.kind == "pair":
        ent["context_embeddings"] = SplitTable(table(n_old, d), table(n_new, d), "c")
    else:
        w = scorer.relation_width(d)
        rel["relation_embeddings"] = SplitTable(table(n_rel - 1, w), table(1, w), "r")
    emb = Embeddings(scorer, ent, rel)
    settings = Settings(model=name, dim=d, negatives=5, negative_chunk=2, batch_size=6)
    batch = tf.constant([[n_old, 0, 1], [2, 1, n_old + 2], [3, n_rel - 1, 4], [n_old + 1, 2, 5], [6, 0, 7], [8, 1, 9]],
                        tf.int64)
    with tf.GradientTape() as tape:
        if scorer.kind == "pair":
            pairs = tf.stack([batch[:, 0], batch[:, 2]], 1)
            loss = pair_loss(emb, pairs, tf.ones([6]), tf.random.Generator.from_seed(1), settings)
        else:
            loss = triple_loss(emb, batch, tf.random.Generator.from_seed(1), settings)
    grads = tape.gradient(loss, emb.trainable())
    assert np.isfinite(loss.numpy())
    for var, grad in zip(emb.trainable(), grads):
        assert isinstance(grad, tf.IndexedSlices), (var.name, type(grad))
        assert grad.dense_shape.numpy()[0] == var.shape[0]  # indices into the new rows alone
    # the batch's new entities get a gradient (the new relation too, for triple models)
    assert np.abs(tf.convert_to_tensor(grads[0]).numpy()).sum() > 0


@pytest.mark.parametrize("name", model_names())
def test_shape_contract_accepts_its_widths_and_names_the_table_it_refuses(name):
    scorer = get_model(name)
    d = 8
    rel = scorer.relation_width(d)
    ctx = d if scorer.kind == "pair" else None
    scorer.check_dim(d)
    scorer.check_widths(d, rel, ctx)
    if scorer.kind == "pair":
        scorer.check_widths(d, None, None)  # tied: one shared table
        with pytest.raises(CheckpointError, match=r"context_embeddings has width 6; entity_embeddings has width 8"):
            scorer.check_widths(d, None, 6)
        with pytest.raises(CheckpointError, match="unexpected relation_embeddings"):
            scorer.check_widths(d, 8, None)
    else:
        wrong = rf"{name}: relation_embeddings has width {rel + 1}; .* {d} needs width {rel}"
        with pytest.raises(CheckpointError, match=wrong):
            scorer.check_widths(d, rel + 1, None)
        with pytest.raises(CheckpointError, match="relation_embeddings is missing"):
            scorer.check_widths(d, None, None)
        with pytest.raises(CheckpointError, match="unexpected context_embeddings"):
            scorer.check_widths(d, rel, d)
    if scorer.complex_valued:
        with pytest.raises(CheckpointError, match=f"{name}: entity_embeddings has odd width 7"):
            scorer.check_widths(7, scorer.relation_width(7), None)
        with pytest.raises(UsageError, match="even"):
            scorer.check_dim(7)
    else:
        scorer.check_dim(7)
    with pytest.raises(CheckpointError, match="entity_embeddings has width 0"):
        scorer.check_widths(0, scorer.relation_width(0), None)
