"""scripts/bench_quality.py and its package scripts/quality/: the benchmark on a tiny graph made here, so it cannot
silently rot, one section per module (protocol, cache, runner, render), then the whole command line."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cluster_graph

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the package quality/ and benchdocs.py, as bench_quality.py sees them

from quality import benchmark, cache, protocol, render, runner


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "scripts" / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _graph(seed=0, n=120, clusters=6):
    """A graph a model can learn: r0 links entities of one cluster, r1 cluster c to cluster c + 1 (no wrap)."""
    return cluster_graph(seed, n, clusters)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("kg")
    triples = _graph()
    n = len(triples)
    parts = {"train": triples[: int(0.8 * n)], "valid": triples[int(0.8 * n): int(0.9 * n)], "test": triples[int(0.9 * n):]}
    for name, rows in parts.items():
        (d / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    return d, parts


# ---------------------------------------------------------------------------------------------
# protocol.py
def test_split_follows_the_protocol(dataset):
    _, parts = dataset
    train = parts["train"]
    base, night = protocol.make_split(train, 0.2, seed=1)
    new = set(night.new_entities)
    assert new and not new & base.entities
    assert all(h not in new and t not in new for h, _, t in base.included)  # base: old entities only
    assert all(h in new or t in new for h, _, t in night.delta)  # delta: touches a new entity
    assert sorted(base.included + night.delta) == sorted(train)
    t_new, t_all, t_old = protocol.test_sets(parts["test"], base, night, night.entities - base.entities)
    assert t_new == t_all and t_new
    for h, r, t in t_new:
        assert (h in new or t in new) and night.known((h, r, t))
    assert all(base.known(tr) and tr[0] not in new and tr[2] not in new for tr in t_old)
    # the same seed gives the same split, another seed another one
    assert protocol.make_split(train, 0.2, seed=1)[1].new_entities == night.new_entities
    assert protocol.make_split(train, 0.2, seed=2)[1].new_entities != night.new_entities


def test_chain_nights_grow_the_previous_vocabulary(dataset):
    _, parts = dataset
    nights = protocol.make_chain(parts["train"], [0.1, 0.1, 0.1], seed=0)
    assert len(nights) == 4
    for before, after in itertools.pairwise(nights):
        assert before.entities < after.entities
        assert set(after.new_entities) == after.entities - before.entities
        assert len(after.included) == len(before.included) + len(after.delta)
    assert len(nights[-1].included) == len(parts["train"])


def test_new_entities_test_triples_are_never_trained_on(dataset):
    """What is scored for a new entity is in no run's training data, and names only what the grown model knows."""
    _, parts = dataset
    test = parts["test"] + [("c0_e000", "r0", "unseen"), ("unseen", "r9", "c1_e001")]
    base, night = protocol.make_split(parts["train"], 0.2, seed=3)
    _, t_all, t_old = protocol.test_sets(test, base, night, night.entities - base.entities)
    trained = set(night.included)  # the full retrain's data: base + delta
    assert t_all and not set(t_all) & trained and not set(t_old) & trained
    with_delta = {x for h, _, t in night.delta for x in (h, t)}
    assert all(x in with_delta for h, _, t in t_all for x in (h, t) if x in set(night.new_entities))
    assert not any("unseen" in tr for tr in t_all + t_old)


def test_an_old_entity_reached_only_through_new_ones_is_new_too(dataset):
    """The shuffle picks ``round(fraction * n)`` entities; one whose every triple touches them comes with the delta."""
    _, parts = dataset
    hub = parts["train"][0][0]
    train = [*parts["train"], ("pendant", "r0", hub)]
    names = sorted({x for h, _, t in train for x in (h, t)})
    for seed in range(100):
        picked = {names[j] for j in np.random.default_rng(seed).permutation(len(names))[: round(0.2 * len(names))]}
        if hub in picked and "pendant" not in picked:
            break
    base, night = protocol.make_split(train, 0.2, seed)
    assert picked <= set(night.new_entities) and "pendant" in night.new_entities
    assert "pendant" not in base.entities and ("pendant", "r0", hub) in night.delta


def test_old_sample_is_seeded_and_keeps_file_order(dataset):
    _, parts = dataset
    test = parts["test"]
    got = protocol.sample(test, 10, seed=0)
    assert len(got) == 10 and got == [tr for tr in test if tr in set(got)]
    assert protocol.sample(test, 10, seed=0) == got != protocol.sample(test, 10, seed=1)
    assert protocol.sample(test, 0, seed=0) == test == protocol.sample(test, len(test), seed=0)


def test_degree_buckets_use_the_rarer_new_entity():
    delta = [("n1", "r", "o1"), ("n2", "r", "o1"), ("n2", "r", "o2"), ("n2", "r", "o3")] + \
            [("n3", "r", f"o{i}") for i in range(7)]
    test = [("n1", "r", "o9"), ("o9", "r", "n2"), ("n3", "r", "o8"), ("n1", "r", "n3")]
    got = protocol.degree_buckets(test, delta, {"n1", "n2", "n3"})
    assert got == {"1": [("n1", "r", "o9"), ("n1", "r", "n3")], "2": [], "3-5": [("o9", "r", "n2")],
                   "6+": [("n3", "r", "o8")]}


# ---------------------------------------------------------------------------------------------
# cache.py
def _trainer(tmp_path, calls):
    def run():
        calls.append(1)
        ckpt = tmp_path / "base.h5"
        ckpt.write_bytes(b"stands for a checkpoint")
        return {"ckpt": str(ckpt), "wall_s": 12.5, "examples": 40}
    return run


def test_cache_keeps_a_training_only_under_its_settings_and_while_its_checkpoint_exists(tmp_path):
    calls = []
    key = cache.fingerprint("wn18rr", 0.1, ["--epochs", "3"])
    assert key == cache.fingerprint("wn18rr", 0.1, ["--epochs", "3"]) != cache.fingerprint("wn18rr", 0.1, ["--epochs", "4"])
    first = cache.RunCache.open(tmp_path, key, reuse=True)  # no cache.json yet: empty
    entry = first.training("base", _trainer(tmp_path, calls))
    assert first.figures("base_old5", lambda: {"mrr": 0.25}) == {"mrr": 0.25}
    on_disk = json.loads((tmp_path / "cache.json").read_text())
    assert on_disk == {"fingerprint": key, "base": entry, "base_old5": {"mrr": 0.25}}
    # read back: the training and the figures are not made again
    again = cache.RunCache.open(tmp_path, key, reuse=True)
    assert again.training("base", _trainer(tmp_path, calls)) == entry and len(calls) == 1
    assert again.figures("base_old5", lambda: pytest.fail("figures computed twice")) == {"mrr": 0.25}
    # not asked to reuse, other settings, or the checkpoint gone: trained again
    cache.RunCache.open(tmp_path, key, reuse=False).training("base", _trainer(tmp_path, calls))
    other = cache.RunCache.open(tmp_path, cache.fingerprint("fb15k-237"), reuse=True)
    assert other.entries == {"fingerprint": cache.fingerprint("fb15k-237")}
    other.training("base", _trainer(tmp_path, calls))
    assert len(calls) == 3
    gone = cache.RunCache.open(tmp_path, cache.fingerprint("fb15k-237"), reuse=True)
    (tmp_path / "base.h5").unlink()
    gone.training("base", _trainer(tmp_path, calls))
    assert len(calls) == 4


def test_cache_adopts_another_folder_only_with_the_same_base_and_full_data(tmp_path):
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir(), ours.mkdir()
    (theirs / "cache.json").write_text(json.dumps({"fingerprint": "f0", "base": {"ckpt": "b.h5", "examples": 40},
                                                   "full": {"ckpt": "f.h5", "examples": 50}, "full_new": {"mrr": 0.3}}))
    mine = cache.RunCache.open(ours, "f1", reuse=False)
    assert not mine.adopt(theirs, 40, 51) and mine.entries == {"fingerprint": "f1"}
    assert mine.adopt(theirs, 40, 50)
    assert mine.entries["fingerprint"] == "f1" and mine.entries["full_new"] == {"mrr": 0.3}
    mine.save()  # so that this folder can be adopted in turn
    assert json.loads((ours / "cache.json").read_text()) == mine.entries


# ---------------------------------------------------------------------------------------------
# runner.py
def test_old_rows_identical_catches_moved_names_and_changed_rows(dataset, tmp_path):
    from embretrain import api

    _, parts = dataset
    run = runner.Runner(in_process=True)
    args = ["--model", "transe", "--dim", "8", "--epochs", "1", "--batch-size", "64", "--negatives", "4"]
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    summary, wall = run.train(protocol.write_tsv(tmp_path / "a.tsv", parts["train"]), a, [*args, "--seed", "0"])
    assert summary["epochs"] == 1 and wall > 0
    # the same names met in another order, other seed: other ids and other rows
    run.train(protocol.write_tsv(tmp_path / "b.tsv", parts["train"][::-1]), b, [*args, "--seed", "1"])
    moved = runner.restrict_checkpoint(a, b, tmp_path / "moved.h5")  # a's rows in b's order
    changed = runner.restrict_checkpoint(b, a, tmp_path / "changed.h5")  # b's rows in a's order
    assert api.load(moved).entities != api.load(a).entities
    assert runner.old_rows_identical(a, runner.restrict_checkpoint(a, a, tmp_path / "same.h5"))
    assert not runner.old_rows_identical(a, moved)
    assert runner.old_rows_identical(a, runner.restrict_checkpoint(moved, a, tmp_path / "back.h5"))
    assert not runner.old_rows_identical(a, changed)


def test_a_failed_command_raises_with_its_exit_code_and_message(tmp_path):
    """A subprocess, as real benchmarks run it; the missing checkpoint fails before TensorFlow is imported."""
    test = protocol.write_tsv(tmp_path / "test.tsv", [("a", "r", "b")])
    with pytest.raises(RuntimeError, match=r"failed with exit code 4:\n.*missing\.h5: no such checkpoint"):
        runner.Runner().evaluate(tmp_path / "missing.h5", test, [])


# ---------------------------------------------------------------------------------------------
# render.py
def test_update_docs_replaces_only_the_quality_section(tmp_path):
    result = {
        "dataset": "toy", "model": "transe", "seed": 0, "fractions": [0.1], "command": "python scripts/bench_quality.py",
        "counts": {"entities_base": 9, "triples_base": 20, "test_new": 3, "test_old": 4,
                   "nights": [{"new_entities": 1, "new_relations": 0, "delta_triples": 2}]},
        "runs": [
            {"run": "full retrain", "wall_s": 100.0, "train_s": 90.0, "epochs": 5, "new": {"mrr": 0.4}, "old": {"mrr": 0.3}},
            {"run": "extend", "args": [], "wall_s": 4.0, "train_s": 1.0, "epochs": 1,
             "new": {"mrr": 0.39}, "old": {"mrr": 0.29}, "old_rows_identical": True, "mrr_vs_full": 0.975, "time_vs_full": 0.04},
        ],
        "nights": [],
    }
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Speed\n\nfast.\n\n## Quality\n\nold figures\n\n## Later\n\nkept.\n")
    render.update_docs(doc, [result])
    text = doc.read_text()
    assert "## Speed\n\nfast.\n" in text and "## Later\n\nkept.\n" in text and "old figures" not in text
    assert ("| toy | transe | 0 | 1 | 0.390 / 0.400 | 0.97 | 0.290 / 0.300 | 0.97 | 4.0 s / 100.0 s = 1/25.0 | yes "
            "| met | met |") in text
    render.update_docs(doc, [result])  # idempotent
    assert doc.read_text() == text
    # a second run sharing base and full (--reuse-from) folds into the same table, its label made unique
    other = {**result, "command": "python scripts/bench_quality.py --variant x", "runs": [
        result["runs"][0], {**result["runs"][1], "args": ["--epochs", "2"], "mrr_vs_full": 0.5, "new": {"mrr": 0.2}}]}
    render.update_docs(doc, [result, other])
    text = doc.read_text()
    assert "| extend (--epochs 2) | --epochs 2 |" in text and "--variant x" in text
    assert text.count("| toy | transe | 0 |") == 1  # the summary shows the headline run (no options) only
    assert text.count("| full retrain |") == 1
    # new rows that steal old answers (old-only MRR down) do not meet the target, however good their own MRR
    hog = {**result, "runs": [result["runs"][0], {**result["runs"][1], "old": {"mrr": 0.2}}]}
    render.update_docs(doc, [hog])
    assert "| 0.200 / 0.300 | 0.67 | 4.0 s / 100.0 s = 1/25.0 | yes | met | missed |" in doc.read_text()


COMMITTED = sorted((ROOT / "docs" / "quality").glob("*.json"))


def test_quality_section_is_the_same_whatever_order_the_json_files_come_in():
    results = [json.loads(f.read_text()) for f in COMMITTED]
    want = render.quality_section(results)
    for seed in range(3):
        assert render.quality_section(random.Random(seed).sample(results, len(results))) == want
    assert render.quality_section(results[::-1]) == want
    tables = [line[4:] for line in want.splitlines() if line.startswith("### ") and ", " in line]
    assert len(tables) == len(results)
    order = [(list(protocol.DATASETS).index(t.split(", ")[0]), t.split(", ")[1].split()[0]) for t in tables]
    assert [ds for ds, _ in order] == sorted(ds for ds, _ in order)  # fb15k-237 first, then wn18rr


def test_committed_docs_are_the_rendering_of_the_committed_json(tmp_path):
    """Figures in docs/BENCHMARKS.md are only written from docs/quality/*.json: rendering them again changes nothing."""
    committed = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(committed, encoding="utf-8")
    notes = (ROOT / "docs" / "quality" / "notes.md").read_text(encoding="utf-8")
    render.update_docs(doc, [json.loads(f.read_text()) for f in COMMITTED], notes)
    assert doc.read_text(encoding="utf-8") == committed


# ---------------------------------------------------------------------------------------------
# bench_quality.py and benchmark.py: the whole benchmark through the command line
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
    assert runs["no training (xavier)"]["epochs"] == 0
    # the main run is the README's headline command: the base's settings and the model's recipe, no options
    from embretrain.config import load_preset

    assert runs["extend"]["args"] == [] and runs["extend"]["epochs"] == load_preset("transe")["extend_epochs"]
    assert runs["extend"]["settings_source"]["lr"] == "base checkpoint"
    assert runs["extend"]["settings_source"]["init"] == "recipe:transe"
    # training the new rows beats leaving them at their Glorot start
    assert runs["extend"]["new"]["mrr"] > runs["no training (xavier)"]["new"]["mrr"]
    assert runs["extend"]["mrr_vs_full"] == pytest.approx(runs["extend"]["new"]["mrr"] / runs["full retrain"]["new"]["mrr"])
    md = (out / "results.md").read_text()
    assert md == render.render_markdown(result)
    assert "| full retrain |" in md and "| neighbors | --init neighbors --corrupt frozen |" in md


def test_reuse_keeps_base_and_full_and_reuse_from_passes_them_on(bench, dataset, tmp_path):
    d, _ = dataset
    common = ["--dataset", str(d), "--model", "transe", "--dim", "8", "--epochs", "2", "--batch-size", "64",
              "--negatives", "4", "--fraction", "0.2", "--in-process", "--no-baseline"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert bench.main([*common, "--out-dir", str(first)]) == 0
    before = json.loads((first / "results.json").read_text())
    stamps = {f: os.stat(first / f).st_mtime_ns for f in ("base.h5", "full.h5")}
    # extend settings are not part of the key: base and full (and their figures) come from the cache
    assert bench.main([*common, "--out-dir", str(first), "--reuse", "--extend-epochs", "1"]) == 0
    again = json.loads((first / "results.json").read_text())
    assert {f: os.stat(first / f).st_mtime_ns for f in stamps} == stamps
    assert again["runs"][:2] == before["runs"][:2] and again["runs"][2]["epochs"] == 1
    # another folder with the same base and full data trains neither, and can be reused in turn
    assert bench.main([*common, "--out-dir", str(second), "--reuse-from", str(first)]) == 0
    assert not (second / "base.h5").exists() and not (second / "full.h5").exists()
    assert json.loads((second / "results.json").read_text())["runs"][:2] == before["runs"][:2]
    assert json.loads((second / "cache.json").read_text())["full"] == json.loads((first / "cache.json").read_text())["full"]


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


def test_diagnose_runs_the_control_from_the_full_retrains_old_rows(bench, dataset, tmp_path):
    d, _ = dataset
    out = tmp_path / "diag"
    argv = ["--dataset", str(d), "--model", "transe", "--dim", "8", "--epochs", "3", "--batch-size", "64",
            "--negatives", "4", "--fraction", "0.2", "--out-dir", str(out), "--in-process", "--no-baseline",
            "--diagnose", "--extend-args", "--init neighbors"]
    assert bench.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    runs = {r["run"]: r for r in result["runs"]}
    control = runs[benchmark.CONTROL]
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
    # the summary shows only the headline extend (no options): neither this run's extend nor the control
    summary = render.summary_table([result])
    assert "control" not in summary and len(summary.splitlines()) == 2
    table = render.diagnosis_table([result]).splitlines()
    assert len(table) == 3 and f"| {control['mrr_vs_full']:.2f} |" in table[2]
    assert f"| {runs['extend']['mrr_vs_full']:.2f} |" in table[2]
