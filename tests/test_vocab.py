"""Vocab: old ids never move, new ones are appended; mapping reports unknown names at file:line."""

from __future__ import annotations

import numpy as np
import pytest

from embretrain.data import PairFile, TripleFile, read_triples
from embretrain.errors import DataError
from embretrain.vocab import (
    PAIR_ENTITY_COLUMNS,
    TRIPLE_ENTITY_COLUMNS,
    GrowReport,
    Vocab,
    map_pairs,
    map_triples,
    touching,
)


def test_basic_lookup():
    v = Vocab(["a", "00260881", "Zürich"])
    assert len(v) == 3
    assert v["00260881"] == 1
    assert v.name(2) == "Zürich"
    assert "a" in v and "b" not in v and 1 not in v
    assert v.index == {"a": 0, "00260881": 1, "Zürich": 2}
    assert list(v) == ["a", "00260881", "Zürich"]
    with pytest.raises(KeyError):
        v["b"]
    with pytest.raises(IndexError):
        v.name(3)
    with pytest.raises(IndexError):
        v.name(-1)


def test_duplicate_names_rejected_naming_the_first():
    with pytest.raises(ValueError, match=r"duplicate name 'b' .*positions 1 and 3"):
        Vocab(["a", "b", "c", "b", "a"])


def test_init_copies_its_input():
    names = ["a", "b"]
    v = Vocab(names)
    names.append("c")
    assert len(v) == 2


def test_grow_keeps_old_ids_and_appends_in_input_order():
    old = Vocab(["a", "b", "c"])
    new, report = old.grow(["z", "b", "y", "z", "x", "b", "a"])
    assert new.names == ["a", "b", "c", "z", "y", "x"]
    assert [new[n] for n in old.names] == [0, 1, 2]  # old ids never move
    assert report == GrowReport(added=["z", "y", "x"], already_known=2, duplicates=2)
    # every input name is counted exactly once
    assert len(report.added) + report.already_known + report.duplicates == 7
    # the original is untouched
    assert old.names == ["a", "b", "c"] and "z" not in old


def test_grow_rerun_is_harmless():
    base = Vocab(["a", "b"])
    once, first = base.grow(["c", "d"])
    twice, second = once.grow(["c", "d"])
    assert twice == once
    assert twice.names == ["a", "b", "c", "d"]
    assert first.added == ["c", "d"]
    assert second == GrowReport(added=[], already_known=2, duplicates=0)


def test_grow_accepts_any_iterable_and_empty():
    v, report = Vocab([]).grow(n for n in ["x", "y", "x"])
    assert v.names == ["x", "y"] and v.index == {"x": 0, "y": 1}
    assert report == GrowReport(added=["x", "y"], already_known=0, duplicates=1)
    same, empty = v.grow([])
    assert same.names == ["x", "y"] and empty == GrowReport()


@pytest.fixture
def delta(tmp_path):
    path = tmp_path / "delta.tsv"
    path.write_text("a\tlikes\tb\n\nb\tlikes\tnew1\nfoo\tlikes\ta\na\thates\tb\nnew1\tlikes\tbar\n")
    return read_triples(path)


ENTS = Vocab(["a", "b"]).grow(["new1"])[0]
RELS = Vocab(["likes"])


def test_map_triples_unknown_entity_names_file_and_line(delta):
    with pytest.raises(DataError) as info:
        map_triples(delta, ENTS, RELS)
    assert str(info.value) == (
        f"{delta.path}:4: unknown entity 'foo' (not in the checkpoint and not in the new entities)"
    )


def test_map_triples_unknown_relation(delta):
    ents = Vocab(["a", "b", "new1", "foo"])
    with pytest.raises(DataError) as info:
        map_triples(delta, ents, RELS)
    assert str(info.value) == (
        f"{delta.path}:5: unknown relation 'hates' (not in the checkpoint and not in the new relations)"
    )


def test_map_triples_skip_unknown_counts_dropped_lines(delta):
    ids, n_skipped = map_triples(delta, ENTS, RELS, skip_unknown=True)
    assert n_skipped == 3  # foo (line 4), hates (line 5), bar (line 6)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, np.array([[0, 0, 1], [1, 0, 2]]))


def test_map_triples_all_known():
    tf = TripleFile(path="t.tsv", triples=[("b", "r", "a"), ("a", "r", "a")], lines=[1, 2])
    ids, n_skipped = map_triples(tf, Vocab(["a", "b"]), Vocab(["r"]))
    assert n_skipped == 0
    np.testing.assert_array_equal(ids, [[1, 0, 0], [0, 0, 0]])


def test_map_triples_everything_skipped_gives_empty_n_by_3():
    tf = TripleFile(path="t.tsv", triples=[("x", "r", "y")], lines=[7])
    ids, n_skipped = map_triples(tf, Vocab(["a"]), Vocab(["r"]), skip_unknown=True)
    assert ids.shape == (0, 3) and ids.dtype == np.int64 and n_skipped == 1


def test_map_pairs_keeps_weights_aligned_with_kept_rows():
    pf = PairFile(
        path="p.tsv",
        pairs=[("a", "b"), ("a", "zz"), ("c", "a")],
        weights=np.array([1.0, 2.0, 3.0], dtype=np.float32),
        lines=[1, 2, 4],
    )
    ents = Vocab(["a", "b", "c"])
    with pytest.raises(DataError, match=r"^p\.tsv:2: unknown entity 'zz' "):
        map_pairs(pf, ents)
    ids, weights, n_skipped = map_pairs(pf, ents, skip_unknown=True)
    np.testing.assert_array_equal(ids, [[0, 1], [2, 0]])
    assert ids.dtype == np.int64 and weights.dtype == np.float32
    np.testing.assert_array_equal(weights, np.array([1.0, 3.0], dtype=np.float32))
    assert n_skipped == 1


def test_touching_triples_ignores_relation_column():
    ids = np.array([[0, 5, 1], [0, 0, 3], [4, 0, 1], [1, 9, 2]], dtype=np.int64)
    # first_new=3: relation ids 5 and 9 must not count as "new entities"
    np.testing.assert_array_equal(touching(ids, 3), [False, True, True, False])
    np.testing.assert_array_equal(touching(ids, 3, TRIPLE_ENTITY_COLUMNS), [False, True, True, False])


def test_touching_pairs():
    ids = np.array([[0, 1], [0, 3], [3, 0], [2, 2]], dtype=np.int64)
    np.testing.assert_array_equal(touching(ids, 3, PAIR_ENTITY_COLUMNS), [False, True, True, False])


def test_touching_empty():
    mask = touching(np.zeros((0, 3), dtype=np.int64), 0)
    assert mask.shape == (0,) and mask.dtype == bool
