"""extend's promises, for every model and every optimizer we ship, on files written and re-read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import toy_graph, write_tsv

pytest.importorskip("tensorflow")

from embretrain import api as et  # noqa: E402
from embretrain.config import resolve_settings  # noqa: E402
from embretrain.errors import DataError, UsageError  # noqa: E402
from embretrain.models import MODELS  # noqa: E402
from embretrain.optim import OPTIMIZERS  # noqa: E402

TRIPLE_MODELS = [name for name, cls in MODELS.items() if cls.kind == "triple"]  # every registered one
OPTIMIZERS = sorted(OPTIMIZERS)  # every sparse optimizer the registry has (adam, adagrad, rmsprop, sgd)


def _settings(model, **kw):
    base = {"model": model, "dim": 8, "epochs": 3, "batch_size": 16, "negatives": 4, "lr": 0.05, "seed": 1}
    base.update(kw)
    return resolve_settings(None, base)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """A trained base checkpoint per model, saved to disk."""
    d = tmp_path_factory.mktemp("bases")
    base_rows, new, delta = toy_graph()
    files = {
        "train": write_tsv(d / "train.tsv", base_rows),
        "new": write_tsv(d / "new.tsv", [(n,) for n in new]),
        "delta": write_tsv(d / "delta.tsv", delta),
    }
    out = {}
    for model in TRIPLE_MODELS:
        ckpt, _ = et.train(files["train"], _settings(model), progress=False)
        et.save(ckpt, d / f"{model}.h5")
        out[model] = d / f"{model}.h5"
    return files, out, new


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("model", TRIPLE_MODELS)
def test_old_rows_bit_identical_new_rows_trained(bases, tmp_path, model, optimizer):
    files, ckpts, new_names = bases
    base = et.load(ckpts[model])
    settings = _settings(model, optimizer=optimizer)
    grown, summary = et.extend(base, files["new"], files["delta"], settings, progress=False)
    initial, _ = et.extend(base, files["new"], files["delta"], dataclasses.replace(settings, epochs=0), progress=False)
    et.save(grown, tmp_path / "merged.h5")
    merged, before = et.load(tmp_path / "merged.h5"), et.load(ckpts[model])

    # vocabulary: old names in old order, then the new ones in file order
    assert merged.entities[: before.n_entities] == before.entities
    assert merged.entities[before.n_entities :] == new_names
    assert merged.relations == before.relations
    for name, old in before.tables().items():
        assert np.array_equal(merged.tables()[name][: old.shape[0]], old), f"{name}: old rows moved"
    assert np.array_equal(merged.relation_tables["relation_embeddings"], before.relation_tables["relation_embeddings"])

    n_old = before.n_entities
    new_part = merged.entity_tables["entity_embeddings"][n_old:]
    init_part = initial.entity_tables["entity_embeddings"][n_old:]
    trained = np.any(new_part != init_part, axis=1)
    assert trained[:-1].all(), "every new entity with a delta triple must have moved"
    assert not trained[-1], "the new entity without any triple must keep its initial vector"
    assert summary["entities_added"] == len(new_names)
    assert summary["entities_untrained"] == 1
    assert summary["examples_dropped_no_new"] == 2
    assert np.all(np.isfinite(new_part))


def test_rerun_adds_nothing_and_lineage_records_runs(bases, tmp_path):
    files, ckpts, _ = bases
    grown, _ = et.extend(et.load(ckpts["transe"]), files["new"], files["delta"], _settings("transe"), progress=False)
    et.save(grown, tmp_path / "m.h5")
    again, summary = et.extend(et.load(tmp_path / "m.h5"), files["new"], files["delta"], _settings("transe"), progress=False)
    assert summary["entities_added"] == 0 and summary["entities_already_known"] == 6
    assert np.array_equal(again.entity_tables["entity_embeddings"], grown.entity_tables["entity_embeddings"])
    assert [r["command"] for r in again.lineage] == ["train", "extend"]
    rec = again.lineage[-1]
    assert rec["entities_before"] == 30 and rec["entities_added"] == 6 and rec["seed"] == 1
    assert set(rec["inputs_sha256"]) == {str(files["new"]), str(files["delta"])}


def test_new_relations_are_trained_old_relations_frozen(bases, tmp_path):
    files, ckpts, _ = bases
    base = et.load(ckpts["distmult"])
    write_tsv(tmp_path / "rels.tsv", [("r_new",)])
    delta = write_tsv(tmp_path / "d.tsv", [("e001", "r_new", "e002"), ("e003", "r_new", "e004"), ("e005", "r0", "e006")])
    grown, summary = et.extend(base, None, delta, _settings("distmult"), new_relations=tmp_path / "rels.tsv", progress=False)
    assert grown.relations == [*base.relations, "r_new"]
    rel = grown.relation_tables["relation_embeddings"]
    assert np.array_equal(rel[:-1], base.relation_tables["relation_embeddings"])
    assert np.array_equal(grown.entity_tables["entity_embeddings"], base.entity_tables["entity_embeddings"])
    assert summary["relations_added"] == 1 and summary["examples_used"] == 2 and summary["examples_dropped_no_new"] == 1


def test_unknown_entity_is_a_file_line_error_or_a_counted_skip(bases, tmp_path):
    files, ckpts, _ = bases
    base = et.load(ckpts["transe"])
    delta = write_tsv(tmp_path / "d.tsv", [("n000", "r0", "e001"), ("n000", "r0", "ghost")])
    with pytest.raises(DataError, match=r"d\.tsv:2: unknown entity 'ghost'"):
        et.extend(base, files["new"], delta, _settings("transe"), progress=False)
    _, summary = et.extend(base, files["new"], delta, _settings("transe"), skip_unknown=True, progress=False)
    assert summary["examples_skipped_unknown"] == 1 and summary["examples_used"] == 1


def test_model_mismatch_is_refused(bases):
    files, ckpts, _ = bases
    with pytest.raises(UsageError, match="transe"):
        et.extend(et.load(ckpts["transe"]), files["new"], files["delta"], _settings("distmult"), progress=False)


@pytest.mark.parametrize("tied", [True, False])
def test_pair_model_single_table_and_context_table(tmp_path, tied):
    rng = np.random.default_rng(0)
    old = [f"w{i}" for i in range(20)]
    pairs = [(old[i % 20], old[(i + int(rng.integers(1, 4))) % 20], 1.0 + i % 3) for i in range(80)]
    train = write_tsv(tmp_path / "pairs.tsv", pairs)
    settings = _settings("dot", tied=tied)
    base, _ = et.train(train, settings, progress=False)
    et.save(base, tmp_path / "base.h5")
    base = et.load(tmp_path / "base.h5")
    assert ("context_embeddings" in base.entity_tables) is (not tied)
    assert base.relations == [] and base.relation_tables == {}
    new = write_tsv(tmp_path / "new.tsv", [("x1",), ("x2",)])
    delta = write_tsv(tmp_path / "delta.tsv", [("x1", "w3"), ("w4", "x1", 2.5), ("x2", "x1")])
    grown, summary = et.extend(base, new, delta, settings, progress=False)
    for name, table in base.entity_tables.items():
        assert np.array_equal(grown.entity_tables[name][:20], table)
        assert grown.entity_tables[name].shape == (22, 8)
    assert summary["examples_used"] == 3
    figures = et.evaluate(grown, delta, [train])
    assert 0 < figures["mrr"] <= 1 and figures["test_examples"] == 3
