"""The neighbour report (``embretrain neighbors``) and the ``sanity`` figure, on a planted fixture.

The fixture is a native checkpoint written with ``api.save``: clusters of old entities with near-identical
vectors, noise entities, and new entities (added by the last run, per the lineage) planted next to a
cluster, plus a pair of new entities planted next to each other.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from embretrain import api
from embretrain.checkpoint import ENTITY_TABLE, RELATION_TABLE, Checkpoint
from embretrain.cli import main
from embretrain.neighbors import _match_block, _query, nearest, report, sanity, top_scores

DIM = 16
N_CLUSTERS, SIZE, N_NOISE = 6, 4, 40


def _planted() -> Checkpoint:
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((N_CLUSTERS + 1, DIM)).astype(np.float32)
    names, rows = [], []
    for c in range(N_CLUSTERS):
        for m in range(SIZE):
            names.append(f"c{c}_{m}")
            rows.append(centers[c] + 0.01 * rng.standard_normal(DIM))
    for i in range(N_NOISE):
        names.append(f"x{i}")
        rows.append(rng.standard_normal(DIM))
    relations = rng.standard_normal((2, DIM)).astype(np.float32)
    n_old = len(names)
    for c in range(N_CLUSTERS):  # new entity n<c> sits in cluster c
        names.append(f"n{c}")
        rows.append(centers[c] + 0.01 * rng.standard_normal(DIM))
    for i in range(2):  # two new entities next to each other, far from every cluster
        names.append(f"twin{i}")
        rows.append(centers[N_CLUSTERS] + 0.01 * rng.standard_normal(DIM))
    table = np.asarray(rows, dtype=np.float32)
    # TransE answers: x0 = n0 + r0 (the best tail of (n0, r0, ?)), x1 = n1 - r1 (the best head of (?, r1, n1))
    table[names.index("x0")] = table[names.index("n0")] + relations[0]
    table[names.index("x1")] = table[names.index("n1")] - relations[1]
    return Checkpoint(
        model="transe",
        entities=names,
        relations=["r0", "r1"],
        entity_tables={ENTITY_TABLE: table},
        relation_tables={RELATION_TABLE: relations},
        params={"norm": 1, "gamma": 12.0},
        lineage=[
            {"command": "train", "entities_added": n_old, "entities_before": 0},
            {"command": "extend", "entities_added": len(names) - n_old, "entities_before": n_old},
        ],
    )


@pytest.fixture
def planted(tmp_path):
    ckpt = _planted()
    path = tmp_path / "planted.h5"
    api.save(ckpt, path)
    return path, ckpt


def _run(*args):
    result = CliRunner().invoke(main, ["neighbors", *map(str, args)])
    return result


def _neighbour_names(output: str, entity: str) -> list[str]:
    """Names listed in the text block of ``entity`` (lines '  rank  cosine  name')."""
    blocks = output.split("\n\n")
    block = next(b for b in blocks if b.startswith(f"{entity} (id"))
    return [line.split()[2] for line in block.splitlines()[1:] if line.split()[0].isdigit()]


def test_finds_the_planted_neighbours(planted):
    path, _ = planted
    result = _run(path, "c2_0", "n4", "--k", "4")
    assert result.exit_code == 0, result.output
    assert set(_neighbour_names(result.stdout, "c2_0")) == {"c2_1", "c2_2", "c2_3", "n2"}
    assert set(_neighbour_names(result.stdout, "n4")) == {"c4_0", "c4_1", "c4_2", "c4_3"}
    assert "n4 (id 68, new): 4 nearest by cosine among all entities" in result.stdout


def test_json_shape(planted):
    path, _ = planted
    result = _run(path, "c0_1", "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"checkpoint", "model", "k", "among", "n_entities", "added", "entities", "seconds"}
    assert (out["model"], out["k"], out["among"], out["n_entities"], out["added"]) == ("transe", 3, "all", 72, [64, 72])
    assert set(out["seconds"]) == {"load", "names", "search"}
    [entry] = out["entities"]
    assert (entry["name"], entry["id"], entry["new"]) == ("c0_1", 1, False)
    assert [set(nb) for nb in entry["neighbors"]] == [{"name", "id", "cosine"}] * 3
    assert {nb["name"] for nb in entry["neighbors"]} <= {"c0_0", "c0_2", "c0_3", "n0"}
    cosines = [nb["cosine"] for nb in entry["neighbors"]]
    assert cosines == sorted(cosines, reverse=True) and cosines[-1] > 0.99
    assert "relation" not in entry


def test_only_new_uses_the_lineage(planted):
    path, _ = planted
    result = _run(path, "--only-new", "--k", "1", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [e["name"] for e in out["entities"]] == [f"n{c}" for c in range(N_CLUSTERS)] + ["twin0", "twin1"]
    assert all(e["new"] for e in out["entities"])
    top = {e["name"]: e["neighbors"][0]["name"] for e in out["entities"]}
    assert top["twin0"] == "twin1" and top["twin1"] == "twin0"
    assert top["n3"].startswith("c3_")


def test_only_new_among_old_skips_the_new_rows(planted):
    path, _ = planted
    result = _run(path, "--only-new", "--among", "old", "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for entry in out["entities"]:
        assert all(nb["id"] < 64 for nb in entry["neighbors"]), entry
    n2 = next(e for e in out["entities"] if e["name"] == "n2")
    assert {nb["name"] for nb in n2["neighbors"][:4]} == {"c2_0", "c2_1", "c2_2", "c2_3"}
    twin = next(e for e in out["entities"] if e["name"] == "twin0")
    assert "twin1" not in {nb["name"] for nb in twin["neighbors"]}


def test_only_new_with_an_old_name_is_a_data_error(planted):
    path, _ = planted
    result = _run(path, "c1_0", "--only-new")
    assert result.exit_code == 3
    assert f"error: {path}: 'c1_0' was not added by the last run (--only-new)" in result.stderr


def test_unknown_names_exit_3_naming_them(planted):
    path, _ = planted
    result = _run(path, "c0_0", "nobody", "ghost")
    assert result.exit_code == 3, result.output
    assert f"error: {path}: no entity named 'nobody', 'ghost'" in result.stderr


def test_no_names_is_a_usage_error(planted):
    path, _ = planted
    result = _run(path)
    assert result.exit_code == 2
    assert "give entity NAME(s), or --only-new" in result.stderr


def test_top_tails_and_heads_under_the_most_frequent_relation(planted, tmp_path):
    path, _ = planted
    data = tmp_path / "delta.tsv"
    data.write_text("n0\tr0\tx0\nn0\tr0\tc0_1\nn0\tr1\tx5\nx1\tr1\tn1\nc1_0\tr1\tn1\n", encoding="utf-8")
    result = _run(path, "n0", "n1", "n2", "--k", "3", "--data", data, "--json")
    assert result.exit_code == 0, result.output
    by_name = {e["name"]: e for e in json.loads(result.stdout)["entities"]}
    n0, n1 = by_name["n0"]["relation"], by_name["n1"]["relation"]
    assert (n0["name"], n0["side"], n0["mentions"], n0["of"]) == ("r0", "tail", 2, 3)
    assert n0["top"][0]["name"] == "x0" and n0["top"][0]["known"] is True
    assert n0["top"][0]["score"] == pytest.approx(12.0, abs=1e-4)  # gamma - 0: x0 = n0 + r0 exactly
    assert (n1["name"], n1["side"], n1["mentions"]) == ("r1", "head", 2)
    assert n1["top"][0]["name"] == "x1" and n1["top"][0]["known"] is True
    assert "relation" not in by_name["n2"]  # not in the data
    text = _run(path, "n0", "--k", "3", "--data", data)
    assert text.exit_code == 0, text.output
    assert "top tails of (n0, r0, ?)  [2 of its 3 data lines; * = in the data]" in text.stdout
    assert "+12.0000  x0  *" in text.stdout


def test_data_for_a_pair_model_is_a_usage_error(tmp_path):
    ckpt = _planted()
    pair = Checkpoint(model="dot", entities=ckpt.entities, relations=[],
                      entity_tables={ENTITY_TABLE: ckpt.entity_tables[ENTITY_TABLE]})
    path = tmp_path / "pair.h5"
    api.save(pair, path)
    data = tmp_path / "d.tsv"
    data.write_text("n0\tr0\tx0\n", encoding="utf-8")
    result = _run(path, "n0", "--data", data)
    assert result.exit_code == 2
    assert "pair model" in result.stderr
    ok = _run(path, "n0", "--k", "4")
    assert ok.exit_code == 0, ok.output
    assert set(_neighbour_names(ok.stdout, "n0")) == {"c0_0", "c0_1", "c0_2", "c0_3"}


@pytest.mark.parametrize("block_rows", [None, 5, 13])
def test_on_disk_streaming_matches_in_memory(planted, tmp_path, block_rows):
    path, _ = planted
    data = tmp_path / "delta.tsv"
    data.write_text("n0\tr0\tx0\nx1\tr1\tn1\n", encoding="utf-8")
    names = ["n0", "n1", "c3_2", "x7", "twin1"]
    in_memory = report(api.load(path), names, k=6, data=data)
    on_disk_ckpt = api.load(path, old_rows="on-disk")
    assert type(on_disk_ckpt.entity_tables[ENTITY_TABLE]).__name__ == "DiskRows"
    on_disk = report(on_disk_ckpt, names, k=6, data=data, block_rows=block_rows)
    in_memory.pop("seconds"), on_disk.pop("seconds")
    assert on_disk == in_memory


@pytest.mark.parametrize("block_rows", [1, 3, 17, 1000])
def test_blocked_top_k_equals_a_full_sort(block_rows):
    rng = np.random.default_rng(3)
    table = rng.standard_normal((200, 8)).astype(np.float32)
    table[50] = table[51]  # a tie: ordered by id whatever the blocks
    ids = np.array([0, 51, 199])
    got_ids, got_cos = nearest(table, ids, k=7, skip=range(100, 150), block_rows=block_rows)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    full = unit[ids] @ unit.T
    full[np.arange(3), ids] = -np.inf
    full[:, 100:150] = -np.inf
    for j in range(3):
        want = sorted(range(200), key=lambda i: (-full[j, i], i))[:7]
        assert got_ids[j].tolist() == want
        np.testing.assert_allclose(got_cos[j], full[j, want], rtol=1e-5)
    assert got_ids[1, 0] == 50  # its exact twin


def test_fewer_rows_than_k_are_padded():
    table = np.eye(3, dtype=np.float32)
    ids, scores = top_scores(table, lambda b: b[:, :1].copy(), 1, 5)  # scores [b, 1]: row 0 first, ties by id
    assert ids.tolist() == [[0, 1, 2, -1, -1]]
    assert np.isneginf(scores[0, 3:]).all()


@pytest.mark.parametrize("model,params", [
    ("transe", {"norm": 1, "gamma": 12.0}), ("transe", {"norm": 2, "gamma": 6.0}),
    ("distmult", {}), ("complex", {}), ("rotate", {"gamma": 9.0}),
])
def test_numpy_queries_match_the_tensorflow_scorers(model, params):
    """The report's numpy scoring is the models' own score, tails and heads."""
    from embretrain.models import get_model

    rng = np.random.default_rng(5)
    scorer = get_model(model, params)
    ent = rng.standard_normal((30, 8)).astype(np.float32)
    rel = rng.standard_normal((3, scorer.relation_width(8))).astype(np.float32)
    e, r = ent[[4, 9, 17]], rel[[0, 2, 1]]
    tails = _match_block(model, params, _query(model, e, r, "tail"))(ent)
    heads = _match_block(model, params, _query(model, e, r, "head"))(ent)
    want_tails = np.asarray(scorer.score(e[:, None, :], r[:, None, :], ent[None, :, :]))
    want_heads = np.asarray(scorer.score(ent[None, :, :], r[:, None, :], e[:, None, :]))
    np.testing.assert_allclose(tails.T, want_tails, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(heads.T, want_heads, rtol=1e-4, atol=1e-4)


def test_no_tensorflow_on_a_native_file(planted, tmp_path):
    path, _ = planted
    data = tmp_path / "delta.tsv"
    data.write_text("n0\tr0\tx0\n", encoding="utf-8")
    code = (
        "import sys\n"
        "from embretrain.cli import main\n"
        f"try:\n    main(['neighbors', {str(path)!r}, 'n0', '--only-new', '--data', {str(data)!r}, '--json'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('NO-TF')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("NO-TF")
    assert json.loads(done.stdout.rsplit("NO-TF", 1)[0])["entities"][0]["relation"]["top"][0]["name"] == "x0"


# --------------------------------------------------------------------------- sanity()


def _delta(ckpt: Checkpoint, lines) -> np.ndarray:
    ent = {n: i for i, n in enumerate(ckpt.entities)}
    rel = {n: i for i, n in enumerate(ckpt.relations)}
    return np.array([(ent[h], rel[r], ent[t]) for h, r, t in lines], dtype=np.int64)


@pytest.mark.parametrize("old_rows", ["memory", "on-disk"])
def test_sanity_share_and_least_like(planted, old_rows):
    path, _ = planted
    ckpt = api.load(path, old_rows=old_rows)
    lines = [(f"n{c}", "r0", f"c{c}_{m}") for c in range(N_CLUSTERS) for m in range(2)]
    lines[-1] = ("n5", "r0", "x9")  # n5: one delta neighbour in its cluster, one noise entity
    lines += [("x3", "r1", "n4")]  # n4: a noise neighbour too (as head)
    lines += [("twin0", "r1", "x12"), ("twin0", "r0", "twin0")]  # twin0: only a far neighbour (self-loop ignored)
    new_ids = range(64, 72)
    out = sanity(ckpt, _delta(ckpt, lines), new_ids, k=4)
    assert (out["k"], out["new_entities"], out["with_delta_neighbours"]) == (4, 8, 7)  # twin1 has no delta line
    assert out["share_delta_neighbour_in_top_k"] == pytest.approx(6 / 7, abs=1e-4)
    # n0..n3: 2/2 found; n4: 2/3; n5: 1/2; twin0: 0/1
    assert out["mean_delta_recall_at_k"] == pytest.approx((4 + 2 / 3 + 1 / 2 + 0) / 7, abs=1e-4)
    least = out["least_like_neighbours"]
    assert [e["name"] for e in least][:1] == ["twin0"]
    assert least[0]["delta_neighbours"] == 1 and least[0]["id"] == 70
    assert {e["name"] for e in least[1:3]} == {"n4", "n5"}
    assert [e["mean_cosine"] for e in least] == sorted(e["mean_cosine"] for e in least)
    json.dumps(out)  # the report is JSON


def test_sanity_pairs_and_nothing_to_say(planted):
    _, ckpt = planted
    pairs = np.array([[64, 0], [1, 64], [65, 65]], dtype=np.int64)  # n0 with c0_0 and c0_1; n1 only with itself
    out = sanity(ckpt, pairs, np.array([64, 65]), k=4)
    assert (out["with_delta_neighbours"], out["share_delta_neighbour_in_top_k"], out["mean_delta_recall_at_k"]) == (1, 1.0, 1.0)
    empty = sanity(ckpt, np.empty((0, 3), dtype=np.int64), range(64, 72))
    assert empty["with_delta_neighbours"] == 0 and empty["share_delta_neighbour_in_top_k"] is None
    assert empty["least_like_neighbours"] == []
    with pytest.raises(ValueError, match=r"\[n, 3\] or \[n, 2\]"):
        sanity(ckpt, np.zeros((2, 4), dtype=np.int64), [64])


def test_only_new_without_lineage_reports_nothing(tmp_path):
    ckpt = _planted()
    ckpt.lineage = []
    path = tmp_path / "bare.h5"
    api.save(ckpt, path)
    text = _run(path, "--only-new")
    assert text.exit_code == 0, text.output
    assert text.stdout == "no entities to report (the lineage records no run that added entities)\n"
    as_json = _run(path, "--only-new", "--json")
    assert json.loads(as_json.stdout)["entities"] == []
    among_old = _run(path, "n0", "--among", "old", "--k", "5", "--json")  # nothing is new: old = every entity
    assert {nb["name"] for nb in json.loads(among_old.stdout)["entities"][0]["neighbors"]} >= {"c0_0", "c0_1", "c0_2", "c0_3"}
