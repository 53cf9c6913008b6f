"""``extend --old-rows on-disk``: old rows stay in the input file, and the result is the in-memory one.

Real files, the CLI through click's CliRunner. No timings here (speed lives in scripts/bench_speed.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import toy_graph, write_tsv

pytest.importorskip("tensorflow")

from embretrain import api as et  # noqa: E402
from embretrain import storage  # noqa: E402
from embretrain.checkpoint import ENTITY_TABLE, RELATION_TABLE, native  # noqa: E402
from embretrain.checkpoint.native import write  # noqa: E402
from embretrain.checkpoint.base import Checkpoint  # noqa: E402
from embretrain.storage import DiskNames, DiskRows, NameStack, RowStack, Source  # noqa: E402
from embretrain.cli import main  # noqa: E402
from embretrain.config import resolve_settings  # noqa: E402
from embretrain.errors import CheckpointError  # noqa: E402

TRAIN = ["--epochs", 3, "--batch-size", 16, "--negatives", 4, "--lr", 0.05, "--seed", 1, "--no-progress"]


def run(*args):
    result = CliRunner().invoke(main, ["-q", *[str(a) for a in args]])
    assert "Traceback" not in result.output
    return result


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tables(path: Path) -> dict[str, bytes]:
    """Every dataset of a checkpoint file as raw bytes (tables) or lists (names)."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, dset in f.items():
            if name == "lineage":
                continue
            out[name] = dset[()].tobytes() if dset.dtype.kind == "f" else dset[()].tolist()
            out[name + "@sha256"] = dset.attrs.get("sha256")
    return out


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    d = tmp_path_factory.mktemp("on_disk")
    base_rows, new, delta = toy_graph()
    files = {
        "dir": d,
        "train": write_tsv(d / "train.tsv", base_rows),
        "new": write_tsv(d / "new.tsv", [(n,) for n in new]),
        "delta": write_tsv(d / "delta.tsv", delta),
    }
    for model in ("transe", "distmult"):
        r = run("train", "--data", files["train"], "--out", d / f"{model}.h5", "--model", model, "--dim", 8, *TRAIN)
        assert r.exit_code == 0, r.output
    return files


@pytest.mark.parametrize(
    "model, extra",
    [
        ("transe", []),
        ("transe", ["--init", "neighbors"]),
        ("distmult", ["--init", "neighbors"]),  # bilinear: also the calibration over all old rows
        ("distmult", ["--valid-fraction", "0.3", "--patience", "1", "--epochs", 4]),  # early stopping
    ],
)
def test_on_disk_gives_the_in_memory_result(graph, tmp_path, model, extra):
    base = graph["dir"] / f"{model}.h5"
    before = _sha(base)
    outs = {}
    for mode in ("memory", "on-disk"):
        outs[mode] = tmp_path / f"{mode}.h5"
        r = run("extend", "--ckpt", base, "--new-entities", graph["new"], "--data", graph["delta"],
                "--out", outs[mode], "--old-rows", mode, "--json", *TRAIN, *extra)
        assert r.exit_code == 0, r.output
    assert _sha(base) == before, "the input checkpoint was modified"

    mem, disk = _tables(outs["memory"]), _tables(outs["on-disk"])
    assert mem.keys() == disk.keys()
    for name in mem:
        assert mem[name] == disk[name], f"/{name} differs between --old-rows memory and on-disk"
    old = native.load(base)
    merged = native.load(outs["on-disk"])  # verifies every stored sha256
    assert merged.entities[: old.n_entities] == old.entities
    for name, table in old.tables().items():
        assert merged.tables()[name][: len(table)].tobytes() == table.tobytes(), f"{name}: old rows moved"
    n_old = old.n_entities
    assert not np.array_equal(merged.entity_tables[ENTITY_TABLE][n_old:-1],
                              np.zeros_like(merged.entity_tables[ENTITY_TABLE][n_old:-1]))


def test_on_disk_with_the_api_keeps_tables_and_names_in_the_file(graph):
    base = graph["dir"] / "transe.h5"
    ckpt = et.load(base, old_rows="on-disk")
    assert isinstance(ckpt.entity_tables[ENTITY_TABLE], DiskRows) and ckpt.entity_tables[ENTITY_TABLE].raw
    assert isinstance(ckpt.entities, DiskNames) and ckpt.checksums == "verified"
    in_memory = native.load(base)
    assert list(ckpt.entities) == in_memory.entities and ckpt.entities[3] == in_memory.entities[3]
    np.testing.assert_array_equal(np.asarray(ckpt.entity_tables[ENTITY_TABLE]), in_memory.entity_tables[ENTITY_TABLE])
    settings = resolve_settings(None, {"model": "transe", "dim": 8, "epochs": 1, "batch_size": 16, "negatives": 4})
    grown, summary = et.extend(ckpt, graph["new"], graph["delta"], settings, progress=False)
    assert isinstance(grown.entities, NameStack) and isinstance(grown.entity_tables[ENTITY_TABLE], RowStack)
    assert grown.entities[-len(graph["new"].read_text().split()):] == graph["new"].read_text().split()
    assert summary["entities_added"] == 6
    metrics = et.evaluate(grown, graph["delta"])  # a consumer that needs arrays materialises them
    assert 0 < metrics["mrr"] <= 1


def test_streaming_save_writes_verified_checksums_and_the_concatenation(graph, tmp_path, monkeypatch):
    monkeypatch.setattr(storage.base, "BLOCK_BYTES", 64)  # two rows per block: many blocks per table
    base = graph["dir"] / "transe.h5"
    rng = np.random.default_rng(3)
    for mode, read_only in (("on-disk", False), ("memory", True), ("memory", False)):
        ckpt = native.load(base, old_rows=mode, read_only=read_only)
        new_rows = {n: rng.standard_normal((3, t.shape[1])).astype(np.float32) for n, t in ckpt.tables().items()}
        known = storage.sha256(ckpt.entity_tables[ENTITY_TABLE])  # carried by the rows themselves
        assert (known is not None) == (mode == "on-disk" or read_only)
        grown = Checkpoint(
            model=ckpt.model,
            entities=storage.stack_names(ckpt.entities, ["x1", "x2", "x3"])
            if mode == "on-disk" else list(ckpt.entities) + ["x1", "x2", "x3"],
            relations=list(ckpt.relations) + ["q1", "q2", "q3"],
            entity_tables={n: storage.stack_rows(t, new_rows[n]) for n, t in ckpt.entity_tables.items()},
            relation_tables={n: storage.stack_rows(t, new_rows[n]) for n, t in ckpt.relation_tables.items()},
            params=ckpt.params,
        )
        out = tmp_path / f"{mode}-{read_only}.h5"
        native.save(grown, out)
        assert native.describe(out)["checksums"] == "ok"
        back, plain = native.load(out), native.load(base)
        assert back.entities == plain.entities + ["x1", "x2", "x3"]
        for name, table in plain.tables().items():
            want = np.concatenate([table, new_rows[name]])
            assert back.tables()[name].tobytes() == want.tobytes()
            with h5py.File(out) as f:
                assert f[name].attrs["sha256"] == native.table_sha256(want)
                assert f[name].chunks is None and f[name].compression is None  # contiguous: rows readable raw


def test_in_place_growth_on_disk_keeps_the_old_file_as_backup(graph, tmp_path):
    ckpt = tmp_path / "live.h5"
    ckpt.write_bytes((graph["dir"] / "transe.h5").read_bytes())
    before = _sha(ckpt)
    old = native.load(ckpt)
    r = run("extend", "--ckpt", ckpt, "--new-entities", graph["new"], "--data", graph["delta"], "--out", ckpt,
            "--old-rows", "on-disk", "--json", *TRAIN)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["in_place"] is True
    assert _sha(tmp_path / "live.h5.1") == before  # the previous version, untouched
    grown = native.load(ckpt)
    assert grown.n_entities == old.n_entities + 6
    for name, table in old.tables().items():
        assert grown.tables()[name][: len(table)].tobytes() == table.tobytes()
    assert not list(tmp_path.glob(".live.h5.tmp-*"))


def test_on_disk_refuses_a_tf_checkpoint_with_a_usage_error(graph, tmp_path):
    from embretrain.checkpoint import save

    save(native.load(graph["dir"] / "transe.h5"), tmp_path / "model.ckpt", format="tf")
    r = run("extend", "--ckpt", tmp_path / "model.ckpt", "--new-entities", graph["new"], "--data", graph["delta"],
            "--out", tmp_path / "out.h5", "--old-rows", "on-disk", *TRAIN)
    assert r.exit_code == 2, r.output
    assert "--old-rows on-disk reads native .h5 checkpoints only" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.h5").exists()


def test_rows_of_other_layouts_are_read_through_h5py(tmp_path):
    table = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("chunked", data=table, chunks=(7, 3), compression="gzip")
        f.create_dataset("big_endian", data=table.astype(">f4"))
        f.create_dataset("plain", data=table)
    source = Source(tmp_path / "t.h5")
    ids = np.array([[39, 0, 5], [6, 7, 7]])
    for name, raw in (("chunked", False), ("big_endian", False), ("plain", True)):
        rows = DiskRows(source, name)
        assert rows.raw == raw
        np.testing.assert_array_equal(rows.rows(ids), table[ids])
        np.testing.assert_array_equal(rows[5:9], table[5:9])
        np.testing.assert_array_equal(rows[-1], table[-1])
        np.testing.assert_array_equal(rows[[3, 1], 2], table[[3, 1], 2])
        np.testing.assert_array_equal(np.asarray(rows), table)
        with pytest.raises(IndexError):
            rows.rows([40])
    stack = RowStack([DiskRows(source, "plain"), table[:2]])
    assert stack.shape == (42, 3)
    np.testing.assert_array_equal(stack.rows([41, 0, 40]), np.concatenate([table, table[:2]])[[41, 0, 40]])
    np.testing.assert_array_equal(stack[38:42], np.concatenate([table, table[:2]])[38:42])


def _bad_file(path: Path, names: list[str], table: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "embretrain", "format_version": 1, "model": "dot", "dim": table.shape[1],
                        "params": "[]"})
        f.create_dataset("entities", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("relations", data=np.array([], dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("entity_embeddings", data=table).attrs["indexed_by"] = "entities"
    return path


@pytest.mark.parametrize("mode", ["memory", "on-disk"])
def test_bad_old_rows_or_names_fail_the_same_way_in_both_modes(tmp_path, mode):
    table = np.ones((5, 2), np.float32)
    table[3, 1] = np.nan
    with pytest.raises(CheckpointError, match=r"NaN or Inf in 1 row\(s\) \(first: row 3\)"):
        native.load(_bad_file(tmp_path / "nan.h5", list("abcde"), table), old_rows=mode, verify=False)
    with pytest.raises(CheckpointError, match=r"lists 'b' twice \(rows 1 and 4\)"):
        native.load(_bad_file(tmp_path / "dup.h5", list("abcdb"), np.ones((5, 2), np.float32)), old_rows=mode,
                    verify=False)


def test_relation_table_on_disk_is_usable_for_neighbors_init(graph):
    from embretrain.init import neighbor_rows

    base = graph["dir"] / "distmult.h5"
    disk, mem = native.load(base, old_rows="on-disk"), native.load(base)
    triples = np.array([[0, 1, 30], [30, 0, 5], [31, 2, 30]])
    start = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    a = neighbor_rows("distmult", disk.entity_tables[ENTITY_TABLE], disk.relation_tables[RELATION_TABLE], triples, start)
    b = neighbor_rows("distmult", mem.entity_tables[ENTITY_TABLE], mem.relation_tables[RELATION_TABLE], triples, start)
    assert a[1] == b[1] == 2 and a[0].tobytes() == b[0].tobytes()


def test_on_disk_input_cut_short_during_training_is_a_checkpoint_error(graph, tmp_path):
    """The input is read during training in on-disk mode: if it is damaged meanwhile, the error names it (exit 4 on the CLI)."""
    base = tmp_path / "base.h5"
    base.write_bytes((graph["dir"] / "transe.h5").read_bytes())
    ckpt = et.load(base, old_rows="on-disk")
    table = ckpt.entity_tables[ENTITY_TABLE]
    with open(base, "r+b") as fh:  # cut the file inside the entity table: reads of its last rows fail
        fh.truncate(table._offset + table.row_bytes)
    settings = resolve_settings(overrides={"epochs": 1, "batch_size": 16, "negatives": 4, "seed": 1}, model="transe")
    with pytest.raises(CheckpointError, match=str(base)):
        et.extend(ckpt, graph["new"], graph["delta"], settings, progress=False)


@pytest.mark.parametrize("copy", ["copy_file_range", "refused", "absent", "through h5py"])
def test_save_copies_old_rows_file_to_file_or_falls_back(graph, tmp_path, monkeypatch, copy):
    """On-disk old rows go into the merged file by copy_file_range, a buffered copy where the kernel
    refuses it (or Python lacks it), or h5py for an output layout positional writes cannot reach."""
    import errno
    import os

    monkeypatch.setattr(storage.base, "BLOCK_BYTES", 64)
    fallbacks = []
    if copy == "refused":
        def refuse(*args):
            fallbacks.append(args)
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    elif copy == "absent":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    elif copy == "through h5py":
        monkeypatch.setattr(write, "raw_offset", lambda dset: None)
    base = graph["dir"] / "transe.h5"
    ckpt = native.load(base, old_rows="on-disk", read_only=True)
    rng = np.random.default_rng(5)
    new_rows = {n: rng.standard_normal((2, t.shape[1])).astype(np.float32) for n, t in ckpt.tables().items()}
    grown = Checkpoint(
        model=ckpt.model,
        entities=storage.stack_names(ckpt.entities, ["y1", "y2"]),
        relations=storage.stack_names(ckpt.relations, ["p1", "p2"]),
        entity_tables={n: storage.stack_rows(t, new_rows[n]) for n, t in ckpt.entity_tables.items()},
        relation_tables={n: storage.stack_rows(t, new_rows[n]) for n, t in ckpt.relation_tables.items()},
        params=ckpt.params,
    )
    out = tmp_path / "merged.h5"
    native.save(grown, out)
    assert native.describe(out)["checksums"] == "ok"
    plain = native.load(base)
    back = native.load(out)
    assert back.entities == plain.entities + ["y1", "y2"] and back.relations == plain.relations + ["p1", "p2"]
    for name, table in plain.tables().items():
        assert back.tables()[name].tobytes() == np.concatenate([table, new_rows[name]]).tobytes()
    assert bool(fallbacks) == (copy == "refused")
