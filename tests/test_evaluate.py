"""Filtered realistic ranks, checked by hand on tiny tables."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from embretrain.evaluate import filtered_ranks, metrics  # noqa: E402
from embretrain.models import get_model  # noqa: E402


def _setup():
    # DistMult with relation = ones: score(h, t) = <h, t>. Entity k has 1-D value v[k].
    ent = np.array([[3.0], [2.0], [1.0], [2.0], [0.0]], dtype=np.float32)
    rel = np.ones((1, 1), dtype=np.float32)
    return get_model("distmult"), ent, rel


def test_unfiltered_ranks_and_realistic_ties():
    scorer, ent, rel = _setup()
    # query (0, r, ?) with h = 3: tail scores 9, 6, 3, 6, 0. Answer 1 ties with entity 3 -> rank 2.5
    test = np.array([[0, 0, 1]])
    ranks = filtered_ranks(scorer, ent, rel, test, known=[], sides=("tail",))
    assert ranks[0, 0] == pytest.approx(1 + 1 + 0.5)


def test_filtering_removes_other_true_answers_but_not_the_answer():
    scorer, ent, rel = _setup()
    test = np.array([[0, 0, 1]])
    known = [np.array([[0, 0, 0], [0, 0, 3]])]  # entities 0 and 3 are also true tails of (0, r)
    ranks = filtered_ranks(scorer, ent, rel, test, known, sides=("tail",))
    assert ranks[0, 0] == 1.0
    # head side: (?, r, 1): t = 2, head scores 6, 4, 2, 4, 0; answer 0 is best
    assert filtered_ranks(scorer, ent, rel, test, [], sides=("head",))[0, 0] == 1.0


def test_all_equal_scores_get_middle_rank():
    scorer = get_model("distmult")
    ent = np.zeros((9, 2), np.float32)
    rel = np.ones((1, 2), np.float32)
    ranks = filtered_ranks(scorer, ent, rel, np.array([[0, 0, 4]]), [], sides=("tail",))
    assert ranks[0, 0] == pytest.approx(5.0)  # (1 + 9) / 2


def test_batches_do_not_change_results():
    rng = np.random.default_rng(0)
    ent = rng.normal(size=(50, 4)).astype(np.float32)
    rel = rng.normal(size=(3, 4)).astype(np.float32)
    test = np.stack([rng.integers(0, 50, 40), rng.integers(0, 3, 40), rng.integers(0, 50, 40)], axis=1)
    scorer = get_model("transe", {"norm": 1})
    a = filtered_ranks(scorer, ent, rel, test, [test[:10]], batch_size=7)
    b = filtered_ranks(scorer, ent, rel, test, [test[:10]], batch_size=40)
    np.testing.assert_array_equal(a, b)


def test_metrics():
    m = metrics(np.array([[1.0, 2.0], [4.0, 20.0]]))
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert m["hits@1"] == 0.25 and m["hits@3"] == 0.5 and m["hits@10"] == 0.75 and m["n_ranks"] == 4


def test_evaluating_again_and_again_reuses_one_trace_and_keeps_the_answers(caplog):
    """A notebook evaluating checkpoint after checkpoint: the scoring is traced once per side (a function made per call
    was traced every time, and TensorFlow warned about retracing from the fifth call on)."""
    from embretrain.evaluate import _score_function

    rng = np.random.default_rng(1)
    # distinct (head, relation) queries and integer-valued rows: exact scores, and no test triple filters another
    test = np.stack([np.arange(20), rng.integers(0, 2, 20), rng.integers(0, 30, 20)], axis=1)
    table = lambda *shape: rng.integers(-3, 4, size=shape).astype(np.float32)  # noqa: E731
    scorer = get_model("transe", {"norm": 1, "gamma": 2.0})
    for _ in range(8):  # new tables and a new scorer each time, as after api.load
        ent, rel = table(30, 4), table(2, 4)
        got = filtered_ranks(get_model("transe", {"norm": 1, "gamma": 2.0}), ent, rel, test, [], sides=("tail",))
        tails = -np.abs(ent[test[:, 0], None, :] + rel[test[:, 1], None, :] - ent[None, :, :]).sum(-1)
        true = tails[np.arange(len(test)), test[:, 2]]
        want = 1 + (tails > true[:, None]).sum(1) + ((tails == true[:, None]).sum(1) - 1) / 2
        np.testing.assert_array_equal(got[:, 0], want)
        filtered_ranks(scorer, ent, rel, test, [], sides=("head",))
    assert _score_function(scorer).experimental_get_tracing_count() == 2  # one per side, over 16 calls
    assert "retracing" not in caplog.text
