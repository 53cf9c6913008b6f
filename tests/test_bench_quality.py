"""scripts/bench_quality.py: the benchmark's protocol on a tiny graph made here, so it cannot silently rot."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "scripts" / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _graph(seed=0, n=120, clusters=6):
    """A graph a model can learn: r0 links entities of one cluster, r1 cluster c to cluster c + 1 (no wrap)."""
    rng = random.Random(seed)
    ents = [f"c{i % clusters}_e{i:03d}" for i in range(n)]
    by_cluster = {c: [e for e in ents if e.startswith(f"c{c}_")] for c in range(clusters)}
    triples = set()
    for e in ents:
        c = int(e[1:e.index("_")])
        for _ in range(4):
            triples.add((e, "r0", rng.choice([x for x in by_cluster[c] if x != e])))
            if c + 1 < clusters:
                triples.add((e, "r1", rng.choice(by_cluster[c + 1])))
    triples = sorted(triples)
    rng.shuffle(triples)
    return triples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("kg")
    triples = _graph()
    n = len(triples)
    parts = {"train": triples[: int(0.8 * n)], "valid": triples[int(0.8 * n): int(0.9 * n)], "test": triples[int(0.9 * n):]}
    for name, rows in parts.items():
        (d / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    return d, parts


def test_split_follows_the_protocol(bench, dataset):
    _, parts = dataset
    train = parts["train"]
    base, night = bench.make_split(train, 0.2, seed=1)
    new = set(night.new_entities)
    assert new and not new & base.entities
    assert all(h not in new and t not in new for h, _, t in base.included)  # base: old entities only
    assert all(h in new or t in new for h, _, t in night.delta)  # delta: touches a new entity
    assert sorted(base.included + night.delta) == sorted(train)
    t_new, t_all, t_old = bench.test_sets(parts["test"], base, night, night.entities - base.entities)
    assert t_new == t_all and t_new
    for h, r, t in t_new:
        assert (h in new or t in new) and night.known((h, r, t))
    assert all(base.known(tr) and tr[0] not in new and tr[2] not in new for tr in t_old)
    # the same seed gives the same split, another seed another one
    assert bench.make_split(train, 0.2, seed=1)[1].new_entities == night.new_entities
    assert bench.make_split(train, 0.2, seed=2)[1].new_entities != night.new_entities


def test_chain_nights_grow_the_previous_vocabulary(bench, dataset):
    _, parts = dataset
    nights = bench.make_chain(parts["train"], [0.1, 0.1, 0.1], seed=0)
    assert len(nights) == 4
    for before, after in zip(nights, nights[1:]):
        assert before.entities < after.entities
        assert set(after.new_entities) == after.entities - before.entities
        assert len(after.included) == len(before.included) + len(after.delta)
    assert len(nights[-1].included) == len(parts["train"])


def test_benchmark_end_to_end_through_the_cli(bench, dataset, tmp_path):
    d, _ = dataset
    out = tmp_path / "out"
    argv = ["--dataset", str(d), "--model", "transe", "--dim", "16", "--epochs", "30", "--batch-size", "64",
            "--negatives", "8", "--lr", "0.05", "--fraction", "0.2", "--seed", "0", "--out-dir", str(out),
            "--in-process", "--variant", "neighbors=--init neighbors --corrupt frozen"]
    assert bench.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    runs = {r["run"]: r for r in result["runs"]}
    assert list(runs) == ["train on base", "full retrain", "no training (xavier)", "extend", "neighbors"]
    for label in ("no training (xavier)", "extend", "neighbors"):
        assert runs[label]["old_rows_identical"] is True
        assert runs[label]["new"]["test_examples"] == result["counts"]["test_new"] > 0
    assert runs["no training (xavier)"]["epochs"] == 0 and runs["extend"]["epochs"] == 30
    # training the new rows beats leaving them at their Glorot start
    assert runs["extend"]["new"]["mrr"] > runs["no training (xavier)"]["new"]["mrr"]
    assert runs["extend"]["mrr_vs_full"] == pytest.approx(runs["extend"]["new"]["mrr"] / runs["full retrain"]["new"]["mrr"])
    md = (out / "results.md").read_text()
    assert md == bench.render_markdown(result)
    assert "| full retrain |" in md and "| neighbors | --init neighbors --corrupt frozen |" in md


def test_chain_mode_reports_every_night(bench, dataset, tmp_path):
    d, _ = dataset
    out = tmp_path / "chain"
    argv = ["--dataset", str(d), "--dim", "8", "--epochs", "2", "--batch-size", "64", "--negatives", "4",
            "--chain", "2", "--chain-fraction", "0.1", "--out-dir", str(out), "--in-process", "--no-baseline"]
    assert bench.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    nights = result["nights"]
    assert [n["night"] for n in nights] == [1, 2]
    assert all(n["old_rows_identical"] and n["new_so_far"]["test_examples"] > 0 for n in nights)
    assert nights[1]["new_so_far"]["test_examples"] >= nights[0]["new_so_far"]["test_examples"]
    assert "Chain, night by night" in (out / "results.md").read_text()


def test_update_docs_replaces_only_the_quality_section(bench, tmp_path):
    result = {
        "dataset": "toy", "model": "transe", "seed": 0, "fractions": [0.1], "command": "python scripts/bench_quality.py",
        "counts": {"entities_base": 9, "triples_base": 20, "test_new": 3, "test_old": 4,
                   "nights": [{"new_entities": 1, "new_relations": 0, "delta_triples": 2}]},
        "runs": [
            {"run": "full retrain", "wall_s": 100.0, "train_s": 90.0, "epochs": 5, "new": {"mrr": 0.4}, "old": {"mrr": 0.3}},
            {"run": "extend", "args": ["--epochs", "1"], "wall_s": 4.0, "train_s": 1.0, "epochs": 1,
             "new": {"mrr": 0.39}, "old": {"mrr": 0.29}, "old_rows_identical": True, "mrr_vs_full": 0.975, "time_vs_full": 0.04},
        ],
        "nights": [],
    }
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Speed\n\nfast.\n\n## Quality\n\nold figures\n\n## Later\n\nkept.\n")
    bench.update_docs(doc, [result])
    text = doc.read_text()
    assert "## Speed\n\nfast.\n" in text and "## Later\n\nkept.\n" in text and "old figures" not in text
    assert "| toy | transe | extend: `--epochs 1` | 0.390 | 0.400 | 0.97 | 1/25.0 | 0.290 / 0.300 | yes | met |" in text
    bench.update_docs(doc, [result])  # idempotent
    assert doc.read_text() == text
    # a second run sharing base and full (--reuse-from) folds into the same table, its label made unique
    other = {**result, "command": "python scripts/bench_quality.py --variant x", "runs": [
        result["runs"][0], {**result["runs"][1], "args": ["--epochs", "2"], "mrr_vs_full": 0.5, "new": {"mrr": 0.2}}]}
    bench.update_docs(doc, [result, other])
    text = doc.read_text()
    assert "| extend (--epochs 2) | --epochs 2 |" in text and "--variant x" in text
    assert text.count("| full retrain |") == 1
    # new rows that steal old answers (old-only MRR down) do not meet the target, however good their own MRR
    hog = {**result, "runs": [result["runs"][0], {**result["runs"][1], "old": {"mrr": 0.2}}]}
    bench.update_docs(doc, [hog])
    assert "| 0.290 / 0.300 |" not in doc.read_text() and "| 0.200 / 0.300 | yes | missed |" in doc.read_text()


def test_diagnose_runs_the_control_from_the_full_retrains_old_rows(bench, dataset, tmp_path):
    d, _ = dataset
    out = tmp_path / "diag"
    argv = ["--dataset", str(d), "--model", "transe", "--dim", "8", "--epochs", "3", "--batch-size", "64",
            "--negatives", "4", "--fraction", "0.2", "--out-dir", str(out), "--in-process", "--no-baseline",
            "--diagnose", "--extend-args", "--init neighbors"]
    assert bench.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    runs = {r["run"]: r for r in result["runs"]}
    control = runs[bench.CONTROL]
    assert control["control"] is True and control["args"] == runs["extend"]["args"] == ["--init", "neighbors"]
    # the control grows the full retrain's rows of the base vocabulary, and keeps them bit-identical
    from embretrain import api

    start, base, full = (api.load(out / f) for f in ("full-old-rows.h5", "base.h5", "full.h5"))
    assert start.entities == base.entities and start.relations == base.relations
    row = {n: i for i, n in enumerate(full.entities)}
    name = base.entities[3]
    assert (start.entity_tables["entity_embeddings"][3] == full.entity_tables["entity_embeddings"][row[name]]).all()
    assert control["old_rows_identical"] is True and control["new"]["test_examples"] == result["counts"]["test_new"]
    # every new-entity test triple lands in one degree bucket, each scored for the three checkpoints
    by_degree = result["by_degree"]
    assert sum(b["test"] for b in by_degree) == result["counts"]["test_new"]
    assert all(0 < b[k] <= 1 for b in by_degree for k in ("full retrain", "extend", "control"))
    md = (out / "results.md").read_text()
    assert "| control" not in md.split("| extend |")[0]  # the control comes after the runs users can make
    assert "delta triples per new entity" in md
    # the control is never the summary's "best extend run"; the diagnosis table sets it beside extend
    summary = bench.summary_table([result])
    assert "control" not in summary and "| extend: `--init neighbors` |" in summary
    table = bench.diagnosis_table([result]).splitlines()
    assert len(table) == 3 and f"| {control['mrr_vs_full']:.2f} |" in table[2]
    assert f"| {runs['extend']['mrr_vs_full']:.2f} |" in table[2]


def test_degree_buckets_use_the_rarer_new_entity(bench):
    delta = [("n1", "r", "o1"), ("n2", "r", "o1"), ("n2", "r", "o2"), ("n2", "r", "o3")] + \
            [("n3", "r", f"o{i}") for i in range(7)]
    test = [("n1", "r", "o9"), ("o9", "r", "n2"), ("n3", "r", "o8"), ("n1", "r", "n3")]
    got = bench.degree_buckets(test, delta, {"n1", "n2", "n3"})
    assert got == {"1": [("n1", "r", "o9"), ("n1", "r", "n3")], "2": [], "3-5": [("o9", "r", "n2")],
                   "6+": [("n3", "r", "o8")]}
