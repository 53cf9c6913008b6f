"""Scorers: known values, broadcasting, and the fast all-entity paths agree with plain scoring."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from embretrain.errors import UsageError  # noqa: E402
from embretrain.models import MODELS, get_model  # noqa: E402

# every scorer and both TransE norms (L2 takes the matrix-product path)
EVERY_SCORER = [("transe", {"norm": 1}), ("transe", {"norm": 2}), ("distmult", {}), ("complex", {}), ("rotate", {}),
                ("dot", {})]


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


@pytest.mark.parametrize("name,params", EVERY_SCORER)
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


@pytest.mark.parametrize("name,params", EVERY_SCORER)
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
