"""Pending entities: a new entity listed without data keeps its start row, is named as pending everywhere a
person looks (summary, --report, lineage, inspect, exports, dry run), and is trained on the first later
night whose delta names it, with every other old row bit-identical; verify accepts that one change only.

Three nights through the CLI: night 1 adds A and B with data for A only (B pending); night 2 names
nothing about B (B still pending, its row untouched); night 3's delta names B (B trained at its own id,
no longer pending).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_tsv

from embretrain import api, storage
from embretrain.checkpoint import Checkpoint
from embretrain.cli import main
from embretrain.config import resolve_settings

pytest.importorskip("tensorflow")

FAST = ["--epochs", 2, "--batch-size", 16, "--negatives", 2, "--seed", 3]
N_OLD = 30
NIGHTS = {
    1: (["A", "B"], [("A", "r0", "e001"), ("e002", "r1", "A"), ("A", "r2", "e003")]),
    2: (["C"], [("C", "r0", "e004"), ("e005", "r1", "C")]),
    3: (["D"], [("D", "r0", "e006"), ("B", "r1", "e007"), ("e008", "r2", "B"), ("B", "r0", "D")]),
}


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def base_checkpoint(path: Path, fmt: str | None = None, model: str = "transe") -> Path:
    rng = np.random.default_rng(0)
    entities = [f"e{i:03d}" for i in range(N_OLD)]
    if model == "dot":
        ckpt = Checkpoint(model="dot", entities=entities, relations=[], params={},
                          entity_tables={"entity_embeddings": rng.uniform(-0.3, 0.3, (N_OLD, 8)).astype(np.float32),
                                         "context_embeddings": rng.uniform(-0.3, 0.3, (N_OLD, 8)).astype(np.float32)})
    else:
        ckpt = Checkpoint(
            model="transe", entities=entities, relations=["r0", "r1", "r2"],
            entity_tables={"entity_embeddings": rng.uniform(-0.3, 0.3, (N_OLD, 8)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.uniform(-0.3, 0.3, (3, 8)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        )
    api.save(ckpt, path, **({"format": fmt} if fmt else {}))
    return path


def night_files(d: Path, night: int, pairs: bool = False) -> tuple[Path, Path]:
    new, rows = NIGHTS[night]
    if pairs:
        rows = [(h, t) for h, _, t in rows]
    return write_tsv(d / f"new{night}.tsv", [(n,) for n in new]), write_tsv(d / f"delta{night}.tsv", rows)


def extend(d: Path, night: int, ckpt: Path, out: Path, *extra, pairs: bool = False):
    """Run one night through the CLI with --json and --report; return (summary, report)."""
    new, delta = night_files(d, night, pairs)
    report = d / f"report{night}.json"
    result = run("extend", "--ckpt", ckpt, "--new-entities", new, "--data", delta, "--out", out, "--json",
                 "--report", report, *FAST, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), json.loads(report.read_text(encoding="utf-8"))


def table(path, name="entity_embeddings") -> tuple[list[str], np.ndarray]:
    ckpt = api.load(path)
    return list(ckpt.entities), np.asarray(ckpt.tables()[name])


def lineage(path: Path) -> list[dict]:
    with h5py.File(path, "r") as f:
        return [json.loads(r) for r in f["lineage"].asstr()[()]]


def pending_of(summary: dict) -> list[str]:
    assert summary["entities_pending"]["count"] == len(summary["entities_pending"]["names"])
    return summary["entities_pending"]["names"]


@pytest.fixture
def nights(tmp_path):
    """The three native checkpoints after nights 1, 2 and 3 (and the night's summaries and reports)."""
    d = tmp_path
    paths = {0: base_checkpoint(d / "base.h5")}
    out = {}
    for night in (1, 2, 3):
        paths[night] = d / f"night{night}.h5"
        out[night] = extend(d, night, paths[night - 1], paths[night])
    return d, paths, out


# ------------------------------------------------------------------------------------------ night 1: B pending
def test_night_1_names_the_entity_without_data_as_pending_everywhere(nights):
    d, paths, out = nights
    summary, report = out[1]
    assert summary["entities_untrained"] == 1
    assert summary["entities_pending"] == {"count": 1, "names": ["B"]}
    assert summary["entities_pending_trained"] == {"count": 0, "names": []}
    assert report["entities_pending"] == summary["entities_pending"] and report["status"] == "ok"
    rec = lineage(paths[1])[-1]
    assert rec["pending_entities_added"] == ["B"] and rec["pending_entities_trained"] == []
    assert rec["entities_pending"] == {"count": 1, "names": ["B"]}
    assert api.load(paths[1]).pending == ["B"]

    text = run("inspect", paths[1])
    assert text.exit_code == 0, text.output
    assert "pending entities: 1 (B)" in text.output and "+2 entities (1 pending)" in text.output
    info = json.loads(run("inspect", paths[1], "--json").stdout)
    assert info["pending"] == {"count": 1, "names": ["B"]}

    # exports: a column in TSV and the projector's metadata; word2vec can leave B out
    assert run("export", paths[1], "--format", "tsv", "--out", d / "v.tsv").exit_code == 0
    flags = {line.split("\t")[0]: line.split("\t")[-1] for line in (d / "v.tsv").read_text().splitlines()}
    assert flags["B"] == "true" and flags["A"] == "false" and flags["e000"] == "false"
    assert run("export", paths[1], "--format", "projector", "--out", d / "proj").exit_code == 0
    meta = [line.split("\t") for line in (d / "proj" / "metadata.tsv").read_text().splitlines()]
    assert meta[0] == ["name", "is_new", "pending"] and meta[-1] == ["B", "true", "true"]
    assert meta[-2] == ["A", "true", "false"]
    result = run("export", paths[1], "--format", "word2vec", "--skip-pending", "--json", "--out", d / "v.txt")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pending_skipped"] == 1
    lines = (d / "v.txt").read_text().splitlines()
    assert lines[0] == f"{N_OLD + 1} 8" and [line.split(" ")[0] for line in lines[1:]][-1] == "A"
    with_b = run("export", paths[1], "--format", "word2vec", "--out", d / "all.txt")
    assert with_b.exit_code == 0 and (d / "all.txt").read_text().splitlines()[-1].startswith("B ")


# ------------------------------------------------------------------------------------------ night 2: untouched
def test_night_2_keeps_b_pending_and_every_old_row_bit_identical(nights):
    _, paths, out = nights
    summary, report = out[2]
    assert pending_of(summary) == ["B"] and pending_of(report) == ["B"]
    assert summary["entities_pending_trained"]["count"] == 0
    names1, rows1 = table(paths[1])
    names2, rows2 = table(paths[2])
    assert names2[: len(names1)] == names1 and names2[-1] == "C"
    assert rows2[: len(rows1)].tobytes() == rows1.tobytes()  # B's row and every other old row
    assert api.load(paths[2]).pending == ["B"]
    assert run("verify", paths[1], paths[2]).exit_code == 0


# ------------------------------------------------------------------------------------------ night 3: B trained
def test_night_3_trains_b_at_its_own_id_and_nothing_else_old_moves(nights):
    d, paths, out = nights
    summary, report = out[3]
    assert summary["entities_pending"] == {"count": 0, "names": []}
    assert summary["entities_pending_trained"] == {"count": 1, "names": ["B"]} == report["entities_pending_trained"]
    assert summary["examples_used"] == 4 and summary["entities_untrained"] == 0
    names2, rows2 = table(paths[2])
    names3, rows3 = table(paths[3])
    b = names2.index("B")
    assert names3[: len(names2)] == names2 and names3[-1] == "D"
    assert not np.array_equal(rows3[b], rows2[b])  # trained
    others = np.arange(len(names2)) != b
    assert rows3[: len(names2)][others].tobytes() == rows2[others].tobytes()
    relations = table(paths[2], "relation_embeddings")[1]
    assert table(paths[3], "relation_embeddings")[1].tobytes() == relations.tobytes()
    assert api.load(paths[3]).pending == []
    rec = lineage(paths[3])[-1]
    assert rec["pending_entities_trained"] == ["B"] and rec["pending_entities_added"] == []
    info = json.loads(run("inspect", paths[3], "--json").stdout)
    assert info["checksums"] == "ok" and info["pending"] == {"count": 0, "names": []}

    ok = run("verify", paths[2], paths[3], "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["checked"]["pending_trained"] == 1
    assert run("verify", paths[1], paths[3]).exit_code == 0  # B pending in night 1 too, trained after it

    # a rerun of night 3 has nothing left to do: B is no longer pending
    again, _ = extend(d, 3, paths[3], d / "again.h5")
    assert again["nothing_to_do"] is True and again["entities_pending"]["count"] == 0


def _tampered(src: Path, dst: Path, row: int) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        dset = f["entity_embeddings"]
        dset[row] = dset[row] + 1.0  # no sha256 update: verify reads the rows, not the checksums
    return dst


def test_verify_accepts_only_the_recorded_change_of_a_pending_row(nights):
    d, paths, _ = nights
    names = table(paths[2])[0]
    a = names.index("A")  # old, trained on night 1: must never move
    bad = run("verify", paths[2], _tampered(paths[3], d / "bad_a.h5", a))
    assert bad.exit_code == 1 and "entity 'A'" in bad.output and "pending" not in bad.output
    bad = run("verify", paths[2], _tampered(paths[3], d / "bad_e.h5", 0))
    assert bad.exit_code == 1 and "entity 'e000'" in bad.output
    # B is pending in night 1, but night 2 does not record training it: its row may not change there
    b = names.index("B")
    bad = run("verify", paths[1], _tampered(paths[2], d / "bad_b.h5", b))
    assert bad.exit_code == 1
    assert "entity 'B'" in bad.output and "pending in OLD, but no run after OLD records training it" in bad.output
    # night 3 with a lineage that does not continue night 2's: the change of B is not accepted
    forged = d / "forged.h5"
    shutil.copy(paths[3], forged)
    with h5py.File(forged, "r+") as f:
        records = list(f["lineage"].asstr()[()])
        del f["lineage"]
        f.create_dataset("lineage", data=records[:1] + records[2:], dtype=h5py.string_dtype("utf-8"))
    assert run("verify", paths[2], forged).exit_code == 1


def test_on_disk_night_3_writes_the_same_file_as_in_memory(nights):
    d, paths, _ = nights
    extend(d, 3, paths[2], d / "disk.h5", "--old-rows", "on-disk")
    for name in ("entity_embeddings", "relation_embeddings"):
        assert table(d / "disk.h5", name)[1].tobytes() == table(paths[3], name)[1].tobytes()
    assert json.loads(run("inspect", d / "disk.h5", "--json").stdout)["checksums"] == "ok"


# ------------------------------------------------------------------------------------------ the sha256 hand-over
@pytest.mark.parametrize("old_rows", ["memory", "on-disk"])
def test_replaced_rows_continue_the_load_sha256_up_to_the_block_before_them(tmp_path, monkeypatch, old_rows):
    """The save re-hashes from the last load block that starts at or before B, not the whole old table."""
    from embretrain.checkpoint.native import checksums

    monkeypatch.setattr(checksums, "_HASH_CHUNK_BYTES", 4 * 8 * 4)  # load blocks of 4 rows of width 8
    d = tmp_path
    base = base_checkpoint(d / "base.h5")
    extend(d, 1, base, d / "n1.h5")
    ckpt = api.load(d / "n1.h5", old_rows=old_rows, read_only=True)
    b = list(ckpt.entities).index("B")  # 31
    new, delta = night_files(d, 3)
    grown, _ = api.extend(ckpt, new, delta, resolve_settings(None, {"epochs": 1, "batch_size": 16}, model="transe"),
                          progress=False)
    head, patched, added = storage.parts(grown.entity_tables["entity_embeddings"])
    assert head.shape[0] == b // 4 * 4 == 28 and storage.sha256(head) is not None  # the state over rows [0, 28)
    assert isinstance(patched, storage.PatchedRows) and added.shape[0] == 1
    api.save(grown, d / "n3.h5")
    info = json.loads(run("inspect", d / "n3.h5", "--json").stdout)
    assert info["checksums"] == "ok"  # every stored sha256 recomputed from the file's bytes
    old = np.asarray(ckpt.entity_tables["entity_embeddings"])
    rows = np.asarray(api.load(d / "n3.h5").entity_tables["entity_embeddings"])
    assert rows[:b].tobytes() == old[:b].tobytes() and not np.array_equal(rows[b], old[b])


# ------------------------------------------------------------------------------------------ TF and Keras
@pytest.mark.parametrize("fmt,suffix", [("keras", "base.weights.h5"), ("tf", "ckpt/model")])
def test_pending_entities_in_a_foreign_checkpoint_live_in_its_sidecar_lineage(tmp_path, fmt, suffix):
    d = tmp_path
    for sub in ("ckpt", "n1", "n2", "n3"):
        (d / sub).mkdir()
    paths = {0: base_checkpoint(d / suffix, fmt=fmt)}
    for night in (1, 2, 3):
        paths[night] = d / (f"n{night}.weights.h5" if fmt == "keras" else f"n{night}/model")
        summary, _ = extend(d, night, paths[night - 1], paths[night])
        assert pending_of(summary) == (["B"] if night < 3 else [])
    meta = json.loads(Path(f"{paths[1]}.embretrain.json").read_text(encoding="utf-8"))
    assert meta["lineage"][-1]["pending_entities_added"] == ["B"]
    assert "pending entities: 1 (B)" in run("inspect", paths[2]).output
    names2, rows2 = table(paths[2])
    names3, rows3 = table(paths[3])
    b = names2.index("B")
    assert table(paths[1])[1].tobytes() == rows2[: len(names2) - 1].tobytes()  # night 2 moved no old row
    assert not np.array_equal(rows3[b], rows2[b])
    others = np.arange(len(names2)) != b
    assert rows3[: len(names2)][others].tobytes() == rows2[others].tobytes()
    assert run("verify", paths[2], paths[3]).exit_code == 0
    assert run("verify", paths[1], paths[2]).exit_code == 0


# ------------------------------------------------------------------------------------------ dry run, pair models
def test_dry_run_shows_which_entities_stay_pending_and_which_get_trained(nights):
    d, paths, _ = nights
    for night, pending, trained in ((2, ["B"], []), (3, [], ["B"])):
        new, delta = night_files(d, night)
        argv = ["extend", "--ckpt", paths[night - 1], "--new-entities", new, "--data", delta, "--out", d / "x.h5"]
        dry = run(*argv, "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        summary = json.loads(dry.stdout)
        assert pending_of(summary) == pending and summary["entities_pending_trained"]["names"] == trained
        assert not (d / "x.h5").exists()
    text = run(*argv, "--dry-run")
    assert "entities pending trained: 1 (B)" in text.output and "entities pending: 0" in text.output


def test_a_pair_model_trains_both_tables_rows_of_a_pending_entity(tmp_path):
    d = tmp_path
    paths = {0: base_checkpoint(d / "base.h5", model="dot")}
    for night in (1, 2, 3):
        paths[night] = d / f"n{night}.h5"
        extend(d, night, paths[night - 1], paths[night], pairs=True)
    names = table(paths[2])[0]
    b = names.index("B")
    others = np.arange(len(names)) != b
    for name in ("entity_embeddings", "context_embeddings"):
        before, after = table(paths[2], name)[1], table(paths[3], name)[1]
        assert not np.array_equal(after[b], before[b])
        assert after[: len(names)][others].tobytes() == before[others].tobytes()
    assert run("verify", paths[2], paths[3]).exit_code == 0
