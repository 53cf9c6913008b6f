"""The training step: chunked shared negatives score what they claim, and training learns with any chunk size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from embretrain import api  # noqa: E402
from embretrain.checkpoint import ENTITY_TABLE, RELATION_TABLE  # noqa: E402
from embretrain.config import Settings  # noqa: E402
from embretrain.models import get_model  # noqa: E402
from embretrain.losses import shared_negative_scores  # noqa: E402


@pytest.mark.parametrize("name", ["transe", "distmult", "rotate"])
@pytest.mark.parametrize("b,chunk", [(10, 4), (8, 4), (3, 8), (5, 1)])
def test_shared_negative_scores_pad_and_match_each_positive(name, b, chunk):
    """Positive i meets exactly the K negatives of chunk i // chunk, also when b is not a multiple of chunk."""
    model = get_model(name)
    rng = np.random.default_rng(0)
    d, k = 6, 3
    n_chunks = -(-b // chunk)
    h = rng.normal(size=(b, d)).astype(np.float32)
    r = rng.normal(size=(b, model.relation_width(d))).astype(np.float32)
    negs = rng.normal(size=(n_chunks, k, d)).astype(np.float32)
    got = shared_negative_scores(model, model.tail_query(tf.constant(h), tf.constant(r)), tf.constant(negs), chunk)
    assert got.shape == (b, k)
    want = np.stack([model.score(h[i][None], r[i][None], negs[i // chunk]).numpy() for i in range(b)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def _toy_graph(n=60, n_rel=3, seed=0):
    """A graph with learnable structure: relation j maps entity e to (e + j + 1) mod n."""
    rng = np.random.default_rng(seed)
    heads = rng.integers(0, n, 600)
    rels = rng.integers(0, n_rel, 600)
    return [(f"e{h}", f"r{r}", f"e{(h + r + 1) % n}") for h, r in zip(heads, rels)]


@pytest.mark.parametrize("chunk", [1, 16, 1024])
def test_training_learns_with_any_negative_chunk(chunk):
    triples = _toy_graph()
    settings = Settings(model="transe", dim=16, epochs=30, batch_size=64, negatives=8, negative_chunk=chunk, lr=0.05)
    ckpt, summary = api.train(triples, settings, progress=False)
    assert summary["losses"][-1] < 0.6 * summary["losses"][0]
    test = sorted(set(triples))[:100]
    result = api.evaluate(ckpt, test, known=[triples])
    # 60 entities: a random table ranks at ~30 on average (MRR ~0.08)
    assert result["mrr"] > 0.3, result


def test_softmax_loss_is_cross_entropy_of_the_positive_among_its_negatives():
    from embretrain.losses import example_loss

    rng = np.random.default_rng(1)
    pos, neg = rng.normal(size=4).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    got = example_loss(tf.constant(pos), tf.constant(neg), Settings(loss="softmax", adversarial_temperature=1.0)).numpy()
    logits = np.concatenate([pos[:, None], neg], axis=1).astype(np.float64)
    want = np.log(np.exp(logits).sum(1)) - pos
    np.testing.assert_allclose(got, want, rtol=1e-5)


# Each lever measured in docs/quality/levers.md: (model, the lever's settings). The lever must learn on a graph the
# model can express, train something else than the same run without it, and keep old rows bit-identical in extend.
LEVERS = {
    "softmax": ("distmult", {"loss": "softmax", "negatives": 32, "negative_chunk": 64}),
    "n3": ("complex", {"regularization": 0.01, "regularizer": "n3"}),
    "lr_decay": ("transe", {"lr_decay": 0.9}),
}


def _lever_settings(model, extra, **more):
    base = dict(model=model, dim=16, epochs=30, batch_size=64, negatives=8, lr=0.05)
    if model == "transe":
        base["gamma"] = 3.0
    return Settings(**{**base, **extra, **more})


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_lever_learns_and_changes_training(lever):
    model, extra = LEVERS[lever]
    triples = _toy_graph()
    ckpt, _ = api.train(triples, _lever_settings(model, extra), progress=False)
    without, _ = api.train(triples, _lever_settings(model, {}), progress=False)
    assert not np.array_equal(ckpt.entity_tables[ENTITY_TABLE], without.entity_tables[ENTITY_TABLE])
    test = sorted(set(triples))[:100]
    # 60 entities: a random table ranks at ~30 on average (MRR ~0.08)
    assert api.evaluate(ckpt, test, known=[triples])["mrr"] > 0.3


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_lever_keeps_old_rows_bit_identical_in_extend(lever, tmp_path):
    model, extra = LEVERS[lever]
    triples = _toy_graph()
    old = [t for t in triples if t[0] not in ("e1", "e2") and t[2] not in ("e1", "e2")]
    delta = [t for t in triples if t not in old]
    base, _ = api.train(old, _lever_settings(model, {}, epochs=5), progress=False)
    api.save(base, tmp_path / "base.h5")
    base = api.load(tmp_path / "base.h5")
    grown, summary = api.extend(base, ["e1", "e2"], delta, _lever_settings(model, extra, epochs=5), progress=False)
    assert summary["epochs"] == 5
    n_old = len(base.entities)
    for name in (ENTITY_TABLE,):
        assert np.array_equal(np.asarray(grown.entity_tables[name])[:n_old], np.asarray(base.entity_tables[name]))
        assert not np.array_equal(np.asarray(grown.entity_tables[name])[n_old:],
                                  api.extend(base, ["e1", "e2"], delta, _lever_settings(model, {}, epochs=5),
                                             progress=False)[0].entity_tables[name][n_old:])
    assert np.array_equal(np.asarray(grown.relation_tables[RELATION_TABLE]), np.asarray(base.relation_tables[RELATION_TABLE]))


def test_extend_compiles_the_scoring_only_for_runs_long_enough_to_pay_for_it(tmp_path, monkeypatch):
    """XLA costs seconds once: `train` always compiles its scoring, `extend` only from LocalExecutor's step count on.
    Both paths keep old rows bit-identical and learn."""
    import embretrain.losses as losses
    from embretrain.train import LocalExecutor

    seen = []
    real = losses.batch_loss

    def spy(*args, compiled=False, **kwargs):
        seen.append(compiled)  # at trace time: which scoring the step was built with
        return real(*args, compiled=compiled, **kwargs)

    monkeypatch.setattr(losses, "batch_loss", spy)
    triples = _toy_graph()
    old = [t for t in triples if t[0] not in ("e1", "e2") and t[2] not in ("e1", "e2")]
    delta = [t for t in triples if t not in old]
    settings = Settings(model="transe", dim=16, epochs=2, batch_size=64, negatives=8, lr=0.05)
    base, _ = api.train(old, settings, progress=False)
    assert seen and all(seen)  # train: compiled
    steps = settings.epochs * -(-len(delta) // settings.batch_size)
    grown = {}
    for threshold in (steps + 1, steps):
        seen.clear()
        monkeypatch.setattr(LocalExecutor, "extend_compile_min_steps", threshold)
        grown[threshold], _ = api.extend(base, ["e1", "e2"], delta, settings, progress=False)
        assert seen and all(c == (threshold <= steps) for c in seen), (threshold, steps, seen)
        n_old = len(base.entities)
        assert np.array_equal(grown[threshold].entity_tables[ENTITY_TABLE][:n_old], base.entity_tables[ENTITY_TABLE])
    # the same draws, scored with and without XLA: new rows agree up to rounding
    np.testing.assert_allclose(grown[steps].entity_tables[ENTITY_TABLE], grown[steps + 1].entity_tables[ENTITY_TABLE],
                               rtol=1e-4, atol=1e-5)
    # and they trained: not the rows the same extend starts from (0 epochs), which would agree as well
    start, _ = api.extend(base, ["e1", "e2"], delta, dataclasses.replace(settings, epochs=0), progress=False)
    again, _ = api.extend(base, ["e1", "e2"], delta, dataclasses.replace(settings, epochs=0), progress=False)
    assert start.entity_tables[ENTITY_TABLE].tobytes() == again.entity_tables[ENTITY_TABLE].tobytes()  # seeded start
    n_old = len(base.entities)
    for rows in grown.values():
        assert np.abs(rows.entity_tables[ENTITY_TABLE][n_old:] - start.entity_tables[ENTITY_TABLE][n_old:]).max() > 1e-3


@pytest.mark.parametrize("n_steps", [15, 16, 17, 33])
def test_several_steps_per_call_give_the_bytes_of_one_step_per_call(n_steps, monkeypatch):
    """The local executor runs up to STEPS_PER_CALL steps per call of its compiled function: the same steps, in the
    same order, so the trained rows and the epoch losses are those of one step per call, whatever the epoch's step
    count (short of a call, a call's multiple, one over)."""
    import embretrain.train as train_module

    triples = _toy_graph()
    batch = 16
    data = (triples * 2)[: n_steps * batch - 3]  # a short last batch
    settings = Settings(model="transe", dim=8, epochs=2, batch_size=batch, negatives=4, lr=0.05)
    runs, epochs = {}, []
    real_run_epoch = train_module.LocalExecutor.run_epoch

    def counted(self, advance):
        stats = real_run_epoch(self, advance)
        epochs.append((stats.examples, stats.steps))
        return stats

    monkeypatch.setattr(train_module.LocalExecutor, "run_epoch", counted)
    for per_call in (1, 16):
        monkeypatch.setattr(train_module, "STEPS_PER_CALL", per_call)
        ckpt, summary = api.train(data, settings, progress=False)
        runs[per_call] = (ckpt.entity_tables[ENTITY_TABLE].tobytes(), ckpt.relation_tables[RELATION_TABLE].tobytes(),
                          summary["losses"])
        # every example of every epoch trained, in n_steps steps: not merely the same result both ways
        assert epochs == [(len(data), n_steps)] * settings.epochs, (per_call, epochs)
        epochs.clear()
    assert runs[1] == runs[16]
