"""scripts/bench_continual.py: the snapshots built from a tiny graph made here (breadth-first order, revealed
entities only, deltas, tests never trained on) and the whole benchmark through the CLI."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import h5py
import pytest
from conftest import cluster_graph

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("bench_continual", ROOT / "scripts" / "bench_continual.py")
bench = importlib.util.module_from_spec(SPEC)
sys.modules["bench_continual"] = bench  # dataclasses look their module up while the class is built
SPEC.loader.exec_module(bench)
sys.path.insert(0, str(ROOT / "scripts"))  # quality/, as the script sees it


def _graph(seed=0, n=150, clusters=5):
    """Clusters of entities linked within (r0) and to the next cluster (r1); r2 only among the last cluster."""
    return cluster_graph(seed, n, clusters, interleaved=False, last_relation="r2")


def _dist(order, triples):
    """Hop distance from the walk's first entity (undirected)."""
    adj = {}
    for h, _, t in triples:
        adj.setdefault(h, set()).add(t)
        adj.setdefault(t, set()).add(h)
    dist, frontier = {order[0]: 0}, [order[0]]
    while frontier:
        nxt = []
        for x in frontier:
            for y in adj[x]:
                if y not in dist:
                    dist[y] = dist[x] + 1
                    nxt.append(y)
        frontier = nxt
    return dist


def test_walk_is_breadth_first_seeded_and_covers_every_entity():
    triples = _graph()
    order = bench.bfs_order(triples, seed=0)
    names = {x for h, _, t in triples for x in (h, t)}
    assert len(order) == len(set(order)) == len(names)
    dist = _dist(order, triples)
    hops = [dist[x] for x in order]
    assert hops == sorted(hops) and hops[-1] > 1  # nearer entities always first: breadth-first
    assert bench.bfs_order(triples, seed=0) == order and bench.bfs_order(triples, seed=1) != order


def test_walk_restarts_in_another_component():
    triples = [("a", "r", "b"), ("b", "r", "c"), ("x", "r", "y")]
    order = bench.bfs_order(triples, seed=3)
    assert sorted(order) == ["a", "b", "c", "x", "y"]
    comp = {"a": 0, "b": 0, "c": 0, "x": 1, "y": 1}
    assert [comp[n] for n in order] in ([0, 0, 0, 1, 1], [1, 1, 0, 0, 0])  # one component, then the other


def test_snapshots_follow_the_protocol():
    triples = _graph()
    snaps = bench.build_snapshots(triples, n_snapshots=5, seed=0)
    order = bench.bfs_order(list(dict.fromkeys(triples)), 0)
    assert [len(s.revealed) for s in snaps] == [30] * 5 and [x for s in snaps for x in s.revealed] == order
    seen_rows, revealed, trained_e, trained_r = set(), set(), set(), set()
    for s in snaps:
        revealed |= set(s.revealed)
        rows = s.train + s.valid + s.test
        assert len(rows) == len(set(rows)) and not set(rows) & seen_rows  # every triple in exactly one place
        seen_rows |= set(rows)
        for h, _, t in rows:
            assert h in revealed and t in revealed  # only entities revealed so far
            assert h in s.revealed or t in s.revealed  # and at least one revealed now: a triple is never late
        trained_e |= {x for h, _, t in s.train for x in (h, t)}
        trained_r |= {r for _, r, _ in s.train}
        for h, r, t in s.valid + s.test:  # a model trained on snapshots 0..i has rows for every name it is tested on
            assert h in trained_e and t in trained_e and r in trained_r
        assert len(s.train) - s.moved_to_train == round(len(rows) * 3 / 5)  # 3:1:1 before the moves
    assert seen_rows == set(triples)  # every triple of the graph lands somewhere
    relations = [r for s in snaps for r in s.new_relations]
    assert sorted(relations) == ["r0", "r1", "r2"]  # each relation new exactly once


def test_deltas_touch_new_entities_and_tests_are_never_trained_on():
    snaps = bench.build_snapshots(_graph(), n_snapshots=5, seed=2)
    known_e, known_r = set(), set()
    every_train = {tr for s in snaps for tr in s.train}
    for s in snaps:
        new_e, new_r = set(s.new_entities), set(s.new_relations)
        assert not new_e & known_e and not new_r & known_r
        assert sorted(s.delta + s.dropped) == sorted(s.train)
        for h, r, t in s.delta:
            assert h in new_e or t in new_e or r in new_r
        for h, r, t in s.dropped:  # what extend could not use: every name already frozen
            assert h in known_e and t in known_e and r in known_r
        assert not set(s.test) & every_train and not set(s.valid) & every_train
        known_e |= new_e
        known_r |= new_r
    # under this construction every snapshot triple touches an entity revealed by that snapshot: nothing dropped
    assert sum(len(s.dropped) for s in snaps) == 0


def test_max_entities_keeps_the_walks_first_entities():
    triples = _graph()
    snaps = bench.build_snapshots(triples, n_snapshots=5, seed=0, max_entities=50)
    kept = {x for s in snaps for x in s.revealed}
    assert kept == set(bench.bfs_order(triples, 0)[:50])
    assert all(h in kept and t in kept for s in snaps for h, _, t in s.train + s.valid + s.test)


def test_benchmark_end_to_end_through_the_cli(tmp_path):
    data = tmp_path / "kg"
    data.mkdir()
    triples = _graph()
    n = len(triples)
    for name, rows in (("train", triples[: int(0.8 * n)]), ("valid", triples[int(0.8 * n): int(0.9 * n)]),
                       ("test", triples[int(0.9 * n):])):
        (data / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    out, doc = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Quality\n\nkept.\n")
    smoke = str(ROOT / "embretrain" / "presets" / "ci-smoke.toml")
    argv = ["--dataset", str(data), "--out-dir", str(out), "--in-process", "--json", str(tmp_path / "r.json"),
            "--train-args", f"--config {smoke} --model transe --epochs 5", "--variant", f"smoke=--config {smoke}",
            "--variant", "headline=--epochs 2", "--full-retrain", "--test-sample", "12", "--label", "tiny graph",
            "--update-docs", str(doc)]
    assert bench.main(argv) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res == json.loads((out / "results.json").read_text())
    assert [v["name"] for v in res["variants"]] == ["smoke", "headline"]
    with h5py.File(out / "snapshot0.h5") as f:
        n0 = len(f["entities"])
    assert n0 == res["counts"][0]["new_entities"]
    for v in res["variants"]:
        assert [st["snapshot"] for st in v["extend"]] == [1, 2, 3, 4]
        assert all(st["old_rows_identical"] for st in v["extend"])
        assert [st["delta"] for st in v["extend"]] == [c["delta"] for c in res["counts"][1:]]
        with h5py.File(out / f"{v['name']}-snapshot4.h5") as f:  # the final model knows every trained entity
            assert len(f["entities"]) == sum(c["new_entities"] for c in res["counts"])
        per = v["per_snapshot"]
        # a seeded sample of each snapshot's test is scored, the same for every model
        assert [p["final"]["test_examples"] for p in per] == [min(12, c["test"]) for c in res["counts"]]
        assert [p["lkge_candidates"]["test_examples"] for p in per] == [min(12, c["test"]) for c in res["counts"]]
        assert all(p["final"]["test_skipped_unknown"] == 0 for p in per)  # the final model knows every name
        assert all(0 < p["final"]["mrr"] <= 1 and 0 < p["lkge_candidates"]["mrr"] <= 1 for p in per)
        # snapshot 4's checkpoint is the final one: both protocols agree there
        assert per[-1]["final"]["mrr"] == pytest.approx(per[-1]["lkge_candidates"]["mrr"])
        n_test = [p["final"]["test_examples"] for p in per]
        want = sum(p["final"]["mrr"] * k for p, k in zip(per, n_test)) / sum(n_test)
        assert v["mean_mrr"] == pytest.approx(want)
    assert res["variants"][1]["extend"][0]["epochs"] == 2
    assert res["full_retrain"]["examples"] == sum(c["train"] for c in res["counts"])
    text = doc.read_text()
    assert "## Quality\n\nkept.\n" in text and text.count(bench.HEADING) == 1 and "| smoke |" in text
    assert f"### {data}, seed 0: tiny graph\n" in text  # the label tells runs of one dataset and seed apart
    bench.main(["--from-json", str(tmp_path / "r.json"), "--update-docs", str(doc)])
    assert doc.read_text() == text  # rendering again from the JSON changes nothing


def test_committed_section_is_the_rendering_of_the_committed_json():
    """docs/BENCHMARKS.md's section is only ever written from docs/continual/*.json and notes.md."""
    results = [json.loads(f.read_text()) for f in sorted((ROOT / "docs" / "continual").glob("*.json"))]
    notes = (ROOT / "docs" / "continual" / "notes.md").read_text(encoding="utf-8")
    assert results and bench.render_markdown(results, notes) in (ROOT / "docs" / "BENCHMARKS.md").read_text()
