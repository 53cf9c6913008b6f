"""scripts/bench_throughput.py: the head-to-head harness run for real on a tiny graph made here.

The embretrain side always runs (two fresh child processes: shared and independent negatives); the PyKEEN side runs
when pykeen is installed (the optional `bench` extra; CI does not install it).
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_throughput.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_graph(folder: Path) -> dict:
    """A learnable graph (r0 within a cluster, r1 to the next cluster) split 80/10/10, plus one test triple naming an
    entity that never occurs in train (the harness must cut it for both tools)."""
    rng = random.Random(0)
    ents = [f"c{i % 5}_e{i:03d}" for i in range(100)]
    triples = set()
    for e in ents:
        c = int(e[1])
        same = [x for x in ents if x[1] == e[1] and x != e]
        nxt = [x for x in ents if int(x[1]) == c + 1]
        for _ in range(4):
            triples.add((e, "r0", rng.choice(same)))
            if nxt:
                triples.add((e, "r1", rng.choice(nxt)))
    triples = sorted(triples)
    rng.shuffle(triples)
    n = len(triples)
    splits = {"train": triples[: int(0.8 * n)], "valid": triples[int(0.8 * n) : int(0.9 * n)],
              "test": triples[int(0.9 * n) :]}
    train_names = {x for h, _, t in splits["train"] for x in (h, t)}
    # only test triples the train split can name, then one that it cannot
    splits["test"] = [tr for tr in splits["test"] if tr[0] in train_names and tr[2] in train_names]
    splits["valid"] = [tr for tr in splits["valid"] if tr[0] in train_names and tr[2] in train_names]
    splits["test"].append(("never_seen", "r0", splits["train"][0][0]))
    folder.mkdir()
    for name, rows in splits.items():
        (folder / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return {k: len(v) for k, v in splits.items()}


def _run(tmp_path: Path, tools: str, *more: str, models: str = "transe") -> tuple[dict, dict]:
    data = tmp_path / "graph"
    sizes = _write_graph(data)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(data), "--tools", tools, "--models", models, "--rounds", "1",
         "--epochs", "2", "--dim", "16", "--batch-size", "64", "--negatives", "8", "--json-out", str(out), *more],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), sizes


def test_flops_per_positive_counts_the_model_arithmetic(bench):
    # TransE at the settings: ~60k operations per positive (forward (5 + 3K) d, backward twice that)
    assert bench.flops_per_positive("transe", 200, 32) == 3 * (5 + 3 * 32) * 200 == 60_600
    assert bench.flops_per_positive("distmult", 200, 32) == 3 * (4 + 2 * 32) * 200
    assert bench.flops_per_positive("complex", 200, 32) == 3 * (8 + 2 * 32) * 200
    with pytest.raises(ValueError):
        bench.flops_per_positive("rotate", 200, 32)


def test_embretrain_side_writes_the_json(tmp_path, bench):
    result, sizes = _run(tmp_path, "embretrain")
    meta, runs = result["meta"], result["runs"]
    assert meta["counts"]["train"] == sizes["train"]
    assert meta["counts"]["test"] == sizes["test"] - 1 and meta["counts"]["test_dropped"] == 1
    assert [p["round"] for p in result["peaks"]] == [1] and result["peaks"][0]["gflops"] > 1
    assert [(r["tool"], r["negative_chunk"]) for r in runs] == [("embretrain", 64), ("embretrain", 1)]
    peak = result["peaks"][0]["gflops"]
    for r in runs:
        assert r["examples"] == sizes["train"] and len(r["epoch_seconds"]) == 2
        assert r["steady_epoch_s"] == pytest.approx(r["epoch_seconds"][1], abs=1e-3)
        assert r["positives_per_s"] == pytest.approx(sizes["train"] / r["steady_epoch_s"], rel=0.01)
        assert r["flops_per_positive"] == bench.flops_per_positive("transe", 16, 8)
        assert r["gflops"] == pytest.approx(r["positives_per_s"] * r["flops_per_positive"] / 1e9, rel=0.01)
        assert r["peak_fraction"] == pytest.approx(r["gflops"] / peak, rel=0.05)
        assert 0 < r["test_mrr"] <= 1 and r["test_triples"] == sizes["test"] - 1
    # a learnable graph: the model ranks far better than chance (1 / 100 entities)
    assert max(r["test_mrr"] for r in runs) > 0.05
    assert result["ratios"] == []  # no peer in this run, so no ratio
    section = bench.docs_section(result, None, "bench.json")
    assert section.startswith("## Throughput") and "`bench.json`" in section
    assert "not rerun" not in section and "16,000" not in section
    assert "embretrain, independent negatives (chunk 1)" in result["markdown"]


def _check_curves(result, tools):
    """--mrr-epochs 1,2: each step's MRR after 1 and 2 epochs, untimed; after 2 it is the timed 2-epoch run's MRR
    (same seed, same data: each tool is deterministic), so the curve is what equal epochs give, not another run."""
    curves = result["curves"]
    assert [(c["tool"], c["label"]) for c in curves] == [(r["tool"], r["label"]) for r in result["runs"]]
    assert {c["tool"] for c in curves} == set(tools)
    for c in curves:
        timed = next(r for r in result["runs"] if r["label"] == c["label"])
        assert sorted(c["mrr"]) == ["1", "2"] and 0 < c["mrr"]["1"] <= 1
        assert c["mrr"]["2"] == pytest.approx(timed["test_mrr"], abs=1e-4)
        assert c["mrr"]["1"] != c["mrr"]["2"]  # one epoch is not the timed run's two: each count is trained to
    assert "| model | tool / step | after 1 | after 2 | best |" in result["markdown"]


def test_mrr_after_several_epoch_counts(tmp_path):
    result, _ = _run(tmp_path, "embretrain", "--mrr-epochs", "2,1")
    _check_curves(result, ["embretrain"])


def test_mrr_over_seeds(tmp_path):
    result, _ = _run(tmp_path, "embretrain", "--mrr-epochs", "2", "--mrr-seeds", "5,0,5", "--seed", "0")
    curves = result["curves"]
    # --seed's curves first (the timed runs' seed), then each other seed once
    assert [c["seed"] for c in curves] == [0, 0, 5, 5]
    for c in curves[:2]:
        timed = next(r for r in result["runs"] if r["label"] == c["label"])
        assert c["mrr"]["2"] == pytest.approx(timed["test_mrr"], abs=1e-4)
    assert {c["label"]: c["mrr"] for c in curves[:2]} != {c["label"]: c["mrr"] for c in curves[2:]}
    rows = result["seed_summary"]
    assert [(r["label"], r["seeds"]) for r in rows] == [(c["label"], 2) for c in curves[:2]]
    for r in rows:
        values = [c["mrr"]["2"] for c in curves if c["label"] == r["label"]]
        assert r["mrr_mean"] == pytest.approx(sum(values) / 2, abs=1e-4)
        assert r["mrr_se"] == pytest.approx(abs(values[0] - values[1]) / 2, abs=1e-4)
        assert "difference_mean" not in r  # no peer in this run
    assert "The same over seeds" in result["markdown"]


def test_seed_summary_pairs_each_seed_with_the_peers_same_seed(bench):
    def curve(tool, label, seed, mrr):
        return {"model": "distmult", "tool": tool, "label": label, "seed": seed, "mrr": {"3": mrr}}

    curves = [curve("embretrain", "default", 0, 0.20), curve("pykeen", "peer", 0, 0.19),
              curve("embretrain", "default", 1, 0.18), curve("pykeen", "peer", 1, 0.18),
              curve("embretrain", "default", 2, 0.22), curve("pykeen", "peer", 2, 0.19)]
    mine, peer = bench.seed_summary(curves)
    assert mine["mrr_mean"] == pytest.approx(0.2) and mine["mrr_se"] == pytest.approx(0.02 / 3**0.5, abs=1e-4)
    # differences 0.01, 0.00, 0.03: mean 0.0133, sd 0.01528, se 0.00882
    assert mine["difference_mean"] == pytest.approx(0.0133, abs=1e-4) and mine["pairs"] == 3
    assert mine["difference_se"] == pytest.approx(0.0088, abs=1e-4)
    assert peer["mrr_mean"] == pytest.approx(0.1867, abs=1e-4) and "difference_mean" not in peer
    table = bench.render_seed_summary([mine, peer])
    assert "| distmult | default | 3 | 3 | 0.2000 +- 0.0115 | +0.0133 +- 0.0088 |" in table


def test_mrr_seeds_needs_epoch_counts(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--mrr-seeds", "1,2"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "--mrr-seeds needs --mrr-epochs" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("pykeen") is None, reason="pykeen not installed (the `bench` extra)")
def test_pykeen_side_and_ratios(tmp_path):
    result, sizes = _run(tmp_path, "embretrain,pykeen", "--mrr-epochs", "1,2")
    _check_curves(result, ["embretrain", "pykeen"])
    runs = {r["label"]: r for r in result["runs"]}
    peer = next(r for r in result["runs"] if r["tool"] == "pykeen")
    assert peer["examples"] == sizes["train"] and 0 < peer["test_mrr"] <= 1
    assert peer["test_triples"] == sizes["test"] - 1  # the same test triples as embretrain ranked
    assert len(result["ratios"]) == 2
    for q in result["ratios"]:
        mine = runs[q["label"]]
        assert q["speed_ratio"] == pytest.approx(mine["positives_per_s"] / peer["positives_per_s"], abs=0.01)
        assert q["mrr_difference"] == pytest.approx(mine["test_mrr"] - peer["test_mrr"], abs=1e-4)


def test_more_chunk_sizes_and_a_model_without_a_pykeen_twin(tmp_path, bench):
    """--chunks adds embretrain steps with negatives shared by chunks of those sizes; a model PyKEEN has no twin of
    here (ComplEx) runs embretrain's steps only, whether or not pykeen is installed."""
    result, sizes = _run(tmp_path, "embretrain,pykeen", "--chunks", "4", models="complex")
    assert [(r["tool"], r["negative_chunk"]) for r in result["runs"]] == [
        ("embretrain", 8), ("embretrain", 4), ("embretrain", 1)]  # ComplEx's default chunk: 8
    assert result["runs"][0]["label"] == "embretrain, shared negatives (default, chunks of 8)"
    assert all(r["model"] == "complex" and 0 < r["test_mrr"] <= 1 for r in result["runs"])
    assert result["ratios"] == []
