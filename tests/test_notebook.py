"""The Python API in a notebook: a short checkpoint repr, ``__all__`` everywhere, DataError for malformed
in-memory data, and the helpers users reach for first (vector, most_similar, to_gensim)."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest

import embretrain
from embretrain import api as et
from embretrain.checkpoint import ENTITY_TABLE, RELATION_TABLE, native
from embretrain.checkpoint.base import Checkpoint
from embretrain.errors import DataError, UsageError
from embretrain.notebook import most_similar, to_gensim, vector

N, DIM = 2000, 6


@pytest.fixture
def planted(tmp_path):
    """A saved TransE checkpoint whose entity rows are random, except e0001 = 2 * e0000 (cosine 1) and
    e0002 = e0000 + small noise: e0000's two nearest are e0001 then e0002."""
    rng = np.random.default_rng(3)
    table = rng.standard_normal((N, DIM)).astype(np.float32)
    table[1] = 2 * table[0]
    table[2] = table[0] + np.float32(0.05) * rng.standard_normal(DIM).astype(np.float32)
    ckpt = Checkpoint(model="transe", entities=[f"e{i:04d}" for i in range(N)], relations=["likes", "knows"],
                      entity_tables={ENTITY_TABLE: table},
                      relation_tables={RELATION_TABLE: rng.standard_normal((2, DIM)).astype(np.float32)},
                      params={"norm": 1, "gamma": 12.0},
                      lineage=[{"command": "train", "entities_before": 0, "entities_added": N}])
    path = tmp_path / "m.h5"
    native.save(ckpt, path)
    return path, table


def test_repr_is_one_short_line_without_names(planted):
    path, _ = planted
    for ckpt, rows in ((et.load(path), "in memory"), (et.load(path, old_rows="on-disk"), "on disk")):
        text = repr(ckpt)
        assert text == (f"<Checkpoint transe: {N} entities, 2 relations; entity_embeddings [{N}, {DIM}], "
                        f"relation_embeddings [2, {DIM}]; norm=1 gamma=12.0; 1 run; h5 {str(path)!r}, rows {rows}>")
        assert "e0000" not in text and "likes" not in text
    unsaved = Checkpoint(model="dot", entities=["a"], relations=[], entity_tables={ENTITY_TABLE: np.ones((1, 2), "f4")})
    assert repr(unsaved) == "<Checkpoint dot: 1 entities, 0 relations; entity_embeddings [1, 2]; 0 runs; not saved, rows in memory>"


def test_every_public_module_declares_all():
    for info in pkgutil.walk_packages(embretrain.__path__, "embretrain."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{info.name}.__all__ names what it does not define: {missing}"


def test_vector_and_most_similar_find_the_planted_neighbours(planted):
    path, table = planted
    for ckpt in (et.load(path), et.load(path, old_rows="on-disk")):
        assert vector(ckpt, "e0002").tobytes() == table[2].tobytes()
        assert vector(ckpt, "knows", RELATION_TABLE).shape == (DIM,)
        top = most_similar(ckpt, "e0000", k=5)
        assert [name for name, _ in top[:2]] == ["e0001", "e0002"]
        assert top[0][1] == pytest.approx(1.0, abs=1e-6)
        unit = table / np.linalg.norm(table, axis=1, keepdims=True)
        cos = unit @ unit[0]
        cos[0] = -np.inf  # itself excluded
        assert [n for n, _ in top] == [f"e{i:04d}" for i in np.argsort(-cos)[:5]]  # brute force agrees
        assert [c for _, c in top] == pytest.approx(np.sort(cos)[::-1][:5], abs=1e-5)
        with pytest.raises(DataError, match=r"m\.h5: no entity named 'nobody'"):
            vector(ckpt, "nobody")
        with pytest.raises(UsageError, match="no table 'context_embeddings'"):
            most_similar(ckpt, "e0000", table="context_embeddings")


def test_to_gensim_holds_every_name_and_row(planted):
    pytest.importorskip("gensim")
    path, table = planted
    kv = to_gensim(et.load(path, old_rows="on-disk"))
    assert kv.index_to_key == [f"e{i:04d}" for i in range(N)]
    assert kv.vectors.tobytes() == table.tobytes()
    assert kv["e0002"].tobytes() == table[2].tobytes()
    ours = most_similar(et.load(path), "e0000", k=4)
    assert [n for n, _ in kv.most_similar("e0000", topn=4)] == [n for n, _ in ours]


BAD_TRIPLES = [
    ([("a", "r")], r"^<triples>:1: expected 3 fields \(head, relation, tail\), found 2$"),
    ([("a", "r", "b"), "arb"], r"^<triples>:2: expected a tuple \(head, relation, tail\), got str 'arb'$"),
    ([("a", "r", 7)], r"^<triples>:1: field 3 \(tail\) must be a string, got int 7$"),
    ([("a", "", "b")], r"^<triples>:1: field 2 \(relation\) is empty$"),
    ([("a\tb", "r", "c")], r"^<triples>:1: field 1 \(head\) 'a\\tb' holds a tab, line break or NUL"),
    (42, r"^expected a path or a list of triples, got int$"),
]


@pytest.mark.parametrize(("data", "message"), BAD_TRIPLES)
def test_malformed_in_memory_triples_are_data_errors(data, message, planted):
    pytest.importorskip("tensorflow")
    from embretrain.config import Settings

    with pytest.raises(DataError, match=message):
        et.train(data, Settings(model="transe", dim=4, epochs=1), progress=False)
    ckpt = et.load(planted[0])
    with pytest.raises(DataError, match=message):
        et.extend(ckpt, ["n"], data, Settings(model="transe", epochs=1), progress=False)
    with pytest.raises(DataError, match=message):
        et.evaluate(ckpt, data)


def test_malformed_in_memory_pairs_and_names_are_data_errors(planted):
    pytest.importorskip("tensorflow")
    from embretrain.config import Settings

    dot = Settings(model="dot", dim=4, epochs=1)
    for pairs, message in (([("a",)], r"^<pairs>:1: expected 2 or 3 fields \(a, b, weight\), found 1$"),
                           ([("a", "b", "x")], r"^<pairs>:1: field 3 \(weight\) is not a number: 'x'$"),
                           ([("a", "b", 1), ("a", "c", -2)], r"^<pairs>:2: field 3 \(weight\) must be a finite number > 0")):
        with pytest.raises(DataError, match=message):
            et.train(pairs, dot, progress=False)
    base, _ = et.train([("a", "b", 2.0), ("b", "c")], dot, progress=False)
    with pytest.raises(DataError, match=r"^<names>:2: field 1 \(name\) must be a string, got int 5$"):
        et.extend(base, ["d", 5], [("d", "a")], dot, progress=False)
    with pytest.raises(DataError, match=r"^<names>:1: field 1 \(name\) 'd\\ne' holds a tab, line break or NUL"):
        et.extend(base, ["d\ne"], [("d\ne", "a")], dot, progress=False)
    grown, _ = et.extend(base, np.array(["d"]), np.array([["d", "a"]]), dot, progress=False)  # numpy strings are names
    assert grown.entities[-1] == "d" and type(grown.entities[-1]) is str
