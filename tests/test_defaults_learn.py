"""Every registered model learns at its defaults at any dim: `train --data X --model M --dim D` and nothing else
(no preset, no --lr/--gamma/--epochs) on a tiny planted graph the model can express ends far above random, and a
plain `extend` of such a base places new entities far above random with every old row bit-identical.

The graphs are planted by the model itself: random unit rows in a few dimensions, each (head, relation) linked
to the tail its own score ranks first, so any model of width >= the planted one can express them exactly.
Before the defaults chose margin and start together, the distance models ended at random level at dims 16-32
(Glorot rows against gamma 12 score ~12 and the logistic loss saturates). Before the batch size was fitted to small
data, every model stopped far short at 20 Adam steps (0.20-0.41 at dim 8).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from click.testing import CliRunner  # noqa: E402

from conftest import write_tsv  # noqa: E402
from embretrain import api  # noqa: E402
from embretrain.cli import main  # noqa: E402
from embretrain.models import MODELS, get_model, model_names  # noqa: E402

N_ENTITIES, N_RELATIONS, LATENT = 120, 6, 4
DIMS = (8, 16, 32, 64)
# A random ranking's MRR over N candidates is H_N / N (~0.045 here). The defaults reach 0.40 (DistMult, dim 8) to 1.0;
# the distance models were at 0.6-1.2x random before the defaults chose margin and start together, and every model at
# 0.20-0.41 at dim 8 (0.26-0.45 at dim 16) before an unchosen batch size was fitted to the data (one Adam step per
# epoch on these 720 triples: Settings.for_examples).
TIMES_RANDOM, FLOOR = 4.0, 0.3


def planted(name: str, seed: int = 0) -> list[tuple[str, ...]]:
    """Triples (or pairs) that ``name``'s own score ranks first for random rows of width LATENT."""
    scorer = get_model(name)
    rng = np.random.default_rng(seed)
    unit = lambda n: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(  # noqa: E731
        rng.normal(size=(n, LATENT))).astype(np.float32)
    ent = unit(N_ENTITIES)
    if scorer.kind == "pair":
        s = ent @ unit(N_ENTITIES).T
        np.fill_diagonal(s, -np.inf)
        return [(f"e{i}", f"e{j}") for i, j in enumerate(s.argmax(1))]
    width = scorer.relation_width(LATENT)
    if name == "rotate":
        rel = rng.uniform(-np.pi, np.pi, size=(N_RELATIONS, width))
    else:  # translations shorter than the entity cloud; bilinear diagonals of unit mean square
        rel = rng.normal(size=(N_RELATIONS, width)) * (1.0 if scorer.matmul_ranking else 0.5)
    rel = rel.astype(np.float32)
    triples = []
    for r in range(N_RELATIONS):
        s = scorer.score_tails(tf.constant(ent), tf.constant(np.repeat(rel[r : r + 1], N_ENTITIES, 0)),
                               tf.constant(ent)).numpy()
        np.fill_diagonal(s, -np.inf)
        triples += [(f"e{i}", f"r{r}", f"e{j}") for i, j in enumerate(s.argmax(1))]
    return triples


def random_mrr(n: int) -> float:
    return float(np.mean(1.0 / np.arange(1, n + 1)))


def cli(*args: str) -> None:
    run = CliRunner().invoke(main, ["-q", *args])
    assert run.exit_code == 0, run.output


@pytest.mark.parametrize("name", model_names())
def test_train_with_only_the_defaults_learns_at_every_small_dim(name, tmp_path):
    rows = planted(name)
    data = write_tsv(tmp_path / "train.tsv", rows)
    n = len({x for row in rows for x in (row[0], row[-1])})
    mrr = {}
    for dim in DIMS:
        out = tmp_path / f"{dim}.h5"
        cli("train", "--data", str(data), "--model", name, "--dim", str(dim), "--out", str(out))
        mrr[dim] = api.evaluate(api.load(out), data, known=[data])["mrr"]
    floor = max(TIMES_RANDOM * random_mrr(n), FLOOR)
    assert all(m > floor for m in mrr.values()), (name, mrr, floor)


@pytest.mark.parametrize("name", model_names())
def test_plain_extend_of_a_default_base_places_new_entities_far_above_random(name, tmp_path):
    """Hold 15 entities out of the base; `extend` with no option trains them from the model's start."""
    rows = planted(name)
    new = {f"e{i}" for i in range(N_ENTITIES - 15, N_ENTITIES)}
    base_rows = [r for r in rows if r[0] not in new and r[-1] not in new]
    known = {x for r in base_rows for x in (r[0], r[-1])}
    delta = [r for r in rows if (r[0] in new or r[-1] in new) and {r[0], r[-1]} <= new | known]
    files = {"train": write_tsv(tmp_path / "train.tsv", base_rows), "delta": write_tsv(tmp_path / "delta.tsv", delta),
             "new": write_tsv(tmp_path / "new.tsv", [(e,) for e in sorted(new)])}
    cli("train", "--data", str(files["train"]), "--model", name, "--dim", "32", "--out", str(tmp_path / "base.h5"))
    cli("extend", "--ckpt", str(tmp_path / "base.h5"), "--new-entities", str(files["new"]), "--data",
        str(files["delta"]), "--out", str(tmp_path / "grown.h5"))
    cli("verify", str(tmp_path / "base.h5"), str(tmp_path / "grown.h5"))  # exit 0: every old row bit-identical
    base, grown = api.load(tmp_path / "base.h5"), api.load(tmp_path / "grown.h5")
    for table, old in base.tables().items():
        assert np.array_equal(np.asarray(grown.tables()[table])[: len(old)], old), table
    res = api.evaluate(grown, files["delta"], known=[files["train"], files["delta"]], new_only=True)
    floor = max(TIMES_RANDOM * random_mrr(len(grown.entities)), FLOOR)
    assert res["test_examples"] > 0 and res["mrr"] > floor, (name, res["mrr"], floor)


def test_distance_models_start_where_scores_do_not_saturate():
    """At the default gamma of any dim, start rows put a triple's mean score near 0 (not near gamma)."""
    from embretrain.config import resolve_settings

    rng = np.random.default_rng(0)
    for name in ("transe", "transh", "rotate"):
        for dim in (16, 200, 1000):
            settings = resolve_settings(None, {"model": name, "dim": dim})
            scorer = get_model(name, {k: getattr(settings, k) for k in MODELS[name].param_names})
            assert scorer.params["gamma"] == pytest.approx(0.06 * dim, rel=0.01)
            ent = scorer.entity_start(rng, 400, dim, 400)
            rel_width = scorer.relation_width(dim)
            rel = (scorer.relation_start or (lambda *a: None))(rng, 200, rel_width, 200)
            scores = scorer.score(tf.constant(ent[:200]), tf.constant(rel), tf.constant(ent[200:])).numpy()
            assert abs(scores.mean()) < 0.15 * scorer.params["gamma"], (name, dim, scores.mean())
