"""The native HDF5 checkpoint: exact round trips, the fixed on-disk layout, and clean errors."""

from __future__ import annotations

import hashlib
import json
import warnings

import h5py
import numpy as np
import pytest

from embretrain.checkpoint import native
from embretrain.checkpoint.native import checksums, write
from embretrain.checkpoint.base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from embretrain.errors import CheckpointError, UsageError

ENTITIES = ["00260881", "/m/027rn", "Zürich", "New York City", "名前", "tab\tinside", "x"]
RELATIONS = ["/film/film/genre", "located in", "ä"]
PARAMS = {"norm": 1, "gamma": 12.5, "mode": "soft", "adversarial": True, "bias": False, "tiny": 1e-300}
LINEAGE = [
    {"command": "train", "epochs": 3, "seed": 0, "added": {"entities": 7, "relations": 3}},
    {"command": "extend", "frozen_rows": 7, "note": "Zürich → Genève", "loss": [0.5, 0.25]},
]


def _table(rows: int, width: int, seed: int) -> np.ndarray:
    table = np.random.default_rng(seed).standard_normal((rows, width)).astype(np.float32)
    table.flat[0] = -0.0  # edge values must survive bit for bit
    table.flat[1] = np.float32(1e-45)  # subnormal
    table.flat[2] = np.finfo(np.float32).max
    return table


@pytest.fixture
def triple_ckpt() -> Checkpoint:
    return Checkpoint(
        model="transe",
        entities=list(ENTITIES),
        relations=list(RELATIONS),
        entity_tables={ENTITY_TABLE: _table(len(ENTITIES), 4, 1)},
        relation_tables={RELATION_TABLE: _table(len(RELATIONS), 4, 2)},
        params=dict(PARAMS),
        lineage=[dict(r) for r in LINEAGE],
    )


@pytest.fixture
def pair_ckpt() -> Checkpoint:
    return Checkpoint(
        model="dot",
        entities=list(ENTITIES),
        relations=[],
        entity_tables={ENTITY_TABLE: _table(len(ENTITIES), 3, 3), CONTEXT_TABLE: _table(len(ENTITIES), 3, 4)},
    )


@pytest.fixture
def saved(tmp_path, triple_ckpt):
    path = tmp_path / "model.h5"
    native.save(triple_ckpt, path)
    return path


def _assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert a.model == b.model
    assert a.entities == b.entities
    assert a.relations == b.relations
    assert list(a.entity_tables) == list(b.entity_tables)
    assert list(a.relation_tables) == list(b.relation_tables)
    for name, table in a.tables().items():
        other = b.tables()[name]
        assert other.dtype == np.float32 and other.flags.c_contiguous
        assert np.array_equal(table.view(np.uint32), other.view(np.uint32)), name  # bit-identical, -0.0 too
    assert a.params == b.params
    assert a.lineage == b.lineage


# --------------------------------------------------------------------------- round trips


def test_round_trip_triple_model(saved, triple_ckpt):
    loaded = native.load(saved)
    _assert_same(triple_ckpt, loaded)
    assert loaded.source == str(saved)
    assert loaded.checksums == "verified"


def test_params_keep_their_python_types(saved):
    params = native.load(saved).params
    assert params == PARAMS
    assert {k: type(v) for k, v in params.items()} == {k: type(v) for k, v in PARAMS.items()}


def test_round_trip_pair_model_without_relation_table(tmp_path, pair_ckpt):
    path = tmp_path / "pair.h5"
    native.save(pair_ckpt, path)
    loaded = native.load(path)
    _assert_same(pair_ckpt, loaded)
    assert loaded.relations == [] and loaded.relation_tables == {}
    assert list(loaded.entity_tables) == [ENTITY_TABLE, CONTEXT_TABLE]
    with h5py.File(path) as f:
        assert f[native.RELATIONS].shape == (0,)  # present even though empty
        assert RELATION_TABLE not in f
        assert f[CONTEXT_TABLE].attrs["indexed_by"] == "entities"


def test_extra_relation_indexed_table_round_trips(tmp_path, triple_ckpt):
    triple_ckpt.relation_tables["relation_bias"] = _table(len(RELATIONS), 1, 5)
    path = tmp_path / "m.h5"
    native.save(triple_ckpt, path)
    _assert_same(triple_ckpt, native.load(path))


def test_save_converts_tables_to_float32(tmp_path, triple_ckpt):
    triple_ckpt.entity_tables[ENTITY_TABLE] = np.asfortranarray(np.arange(28, dtype=np.float64).reshape(7, 4))
    path = tmp_path / "m.h5"
    native.save(triple_ckpt, path)
    loaded = native.load(path).entity_tables[ENTITY_TABLE]
    assert loaded.dtype == np.float32 and np.array_equal(loaded, np.arange(28).reshape(7, 4))


def test_save_replaces_existing_file_and_leaves_no_temp(saved, pair_ckpt):
    native.save(pair_ckpt, saved)
    assert native.load(saved).model == "dot"
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_empty_lineage_and_params(tmp_path, pair_ckpt):
    path = tmp_path / "m.h5"
    native.save(pair_ckpt, path)
    loaded = native.load(path)
    assert loaded.lineage == [] and loaded.params == {}


# --------------------------------------------------------------------------- on-disk layout


def test_on_disk_layout(saved, triple_ckpt):
    with h5py.File(saved) as f:
        assert f.attrs["format"] == "embretrain"
        assert f.attrs["format_version"] == 1
        assert f.attrs["model"] == "transe"
        assert f.attrs["dim"] == 4
        assert json.loads(f.attrs["params"]) == list(PARAMS)
        for name, value in PARAMS.items():
            assert f.attrs[name] == value
        assert set(f) == {"entities", "relations", "entity_embeddings", "relation_embeddings", "lineage"}

        for vocab, names in (("entities", ENTITIES), ("relations", RELATIONS)):
            dset = f[vocab]
            info = h5py.check_string_dtype(dset.dtype)
            assert (info.encoding, info.length) == ("utf-8", None)  # variable-length UTF-8
            assert dset.asstr()[()].tolist() == names
            joined = "".join(n + "\n" for n in names).encode("utf-8")
            assert dset.attrs["sha256"] == hashlib.sha256(joined).hexdigest()

        for name, indexed_by, rows in (
            ("entity_embeddings", "entities", len(ENTITIES)),
            ("relation_embeddings", "relations", len(RELATIONS)),
        ):
            dset = f[name]
            assert dset.dtype == np.dtype("<f4") and dset.shape == (rows, 4)
            assert dset.compression is None and dset.chunks is None  # contiguous, uncompressed
            assert dset.attrs["indexed_by"] == indexed_by
            raw = np.ascontiguousarray(triple_ckpt.tables()[name], dtype="<f4").tobytes()
            assert dset.attrs["sha256"] == hashlib.sha256(raw).hexdigest()

        assert [json.loads(s) for s in f["lineage"].asstr()[()]] == LINEAGE


def test_table_sha256_streams_in_chunks(monkeypatch):
    table = _table(1000, 7, 9)
    expected = hashlib.sha256(table.astype("<f4").tobytes()).hexdigest()
    assert native.table_sha256(table) == expected
    monkeypatch.setattr(checksums, "_HASH_CHUNK_BYTES", 100)  # several rows per block, odd remainder
    assert native.table_sha256(table) == expected
    monkeypatch.setattr(checksums, "_HASH_CHUNK_NAMES", 2)
    assert native.vocab_sha256(ENTITIES) == hashlib.sha256("".join(n + "\n" for n in ENTITIES).encode()).hexdigest()


# --------------------------------------------------------------------------- checksums


def test_flipped_float_fails_checksum(saved):
    with h5py.File(saved, "r+") as f:
        f[ENTITY_TABLE][2, 1] += 1.0  # the sha256 attribute is left as it was
    with pytest.raises(CheckpointError) as err:
        native.load(saved)
    message = str(err.value)
    assert message.startswith(f"{saved}: table 'entity_embeddings' fails its sha256 checksum (stored ")
    assert message.endswith("); the file is corrupt")


def test_flipped_raw_byte_fails_checksum(saved):
    with h5py.File(saved) as f:
        offset = f[RELATION_TABLE].id.get_offset()
        nbytes = f[RELATION_TABLE].id.get_storage_size()
    assert offset is not None and nbytes == len(RELATIONS) * 4 * 4
    data = bytearray(saved.read_bytes())
    data[offset + 5] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="table 'relation_embeddings' fails its sha256 checksum"):
        native.load(saved)
    native.load(saved, verify=False)  # still readable when asked not to verify


def test_renamed_entity_fails_checksum(saved):
    with h5py.File(saved, "r+") as f:
        f["entities"][2] = "Zurich"
    with pytest.raises(CheckpointError, match="vocabulary 'entities' fails its sha256 checksum"):
        native.load(saved)


def test_verify_false_skips_checksums(saved):
    with h5py.File(saved, "r+") as f:
        f[ENTITY_TABLE][0, 0] = 42.0
    loaded = native.load(saved, verify=False)
    assert loaded.entity_tables[ENTITY_TABLE][0, 0] == 42.0
    assert loaded.checksums == "unverified"


def test_missing_checksums_load_with_warning(saved, triple_ckpt):
    with h5py.File(saved, "r+") as f:
        for name in ("entities", "relations", ENTITY_TABLE, RELATION_TABLE):
            del f[name].attrs["sha256"]
    with pytest.warns(UserWarning, match="no sha256 checksum on entities, relations, entity_embeddings"):
        loaded = native.load(saved)
    assert loaded.checksums == "missing"
    _assert_same(triple_ckpt, loaded)


# --------------------------------------------------------------------------- hand-written files


def test_hand_written_pair_file_loads(tmp_path):
    path = tmp_path / "hand.h5"
    table = _table(3, 2, 7)
    with h5py.File(path, "w") as f:
        f["entities"] = ["a", "b", "c"]  # h5py's default: variable-length strings
        f["entity_embeddings"] = table
        f.attrs["temperature"] = 0.5
    with pytest.warns(UserWarning) as record:
        loaded = native.load(path)
    messages = " ".join(str(w.message) for w in record)
    assert "no 'format' attribute" in messages and "no sha256 checksum" in messages
    assert loaded.model == "dot"
    assert loaded.entities == ["a", "b", "c"] and loaded.relations == []
    assert np.array_equal(loaded.entity_tables[ENTITY_TABLE], table)
    assert loaded.params == {"temperature": 0.5}
    assert loaded.checksums == "missing"
    assert not native.is_native(path)


def test_hand_written_relation_table_infers_indexed_by(tmp_path):
    path = tmp_path / "hand.h5"
    with h5py.File(path, "w") as f:
        f["entities"] = ["a", "b"]
        f["relations"] = ["r"]
        f["entity_embeddings"] = np.ones((2, 2), dtype=">f4")  # big-endian is still float32
        f["relation_embeddings"] = np.ones((1, 2), dtype=np.float32)
        f.attrs["model"] = "distmult"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = native.load(path)
    assert loaded.model == "distmult"
    assert loaded.relation_tables[RELATION_TABLE].shape == (1, 2)
    assert loaded.entity_tables[ENTITY_TABLE].dtype == np.dtype("=f4")


def test_hand_written_triple_file_without_model_asks_for_it(tmp_path):
    path = tmp_path / "hand.h5"
    with h5py.File(path, "w") as f:
        f["entities"] = ["a"]
        f["relations"] = ["r"]
        f["entity_embeddings"] = np.ones((1, 2), dtype=np.float32)
        f["relation_embeddings"] = np.ones((1, 2), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match=r"no 'model' attribute; set it"):
            native.load(path)


# --------------------------------------------------------------------------- broken files


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        native.load(tmp_path / "nope.h5")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        native.load(tmp_path)


def test_text_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("entity\tvector\n")
    with pytest.raises(CheckpointError, match=r"is not an HDF5 file"):
        native.load(path)
    with pytest.raises(CheckpointError, match=r"is not an HDF5 file"):
        native.describe(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 100])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    cut = keep if isinstance(keep, int) else int(len(data) * keep)
    saved.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        native.load(saved)
    assert str(err.value).startswith(str(saved))
    assert not native.is_native(saved)


def test_other_hdf5_file(tmp_path):
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as f:
        f["model_weights"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="not an embretrain checkpoint"):
        native.load(path)


def _mutate(path, change):
    with h5py.File(path, "r+") as f:
        change(f)


def _replace(name, data, **attrs):
    def change(f):
        del f[name]
        f[name] = data
        f[name].attrs.update(attrs)

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.__delitem__("entities"), "missing the /entities dataset"),
        (lambda f: f.__delitem__(ENTITY_TABLE), "missing the /entity_embeddings dataset"),
        (_replace(ENTITY_TABLE, np.zeros((7, 4))), "must be a 2-D float32 dataset, found dtype float64"),
        (_replace(ENTITY_TABLE, np.zeros(28, np.float32)), r"must be a 2-D float32 dataset.*shape \(28,\)"),
        (_replace("entities", np.arange(7)), "must be a 1-D string dataset"),
        (_replace("entities", ENTITIES[:-1]), "table /entity_embeddings has 7 rows but /entities has 6 names"),
        (_replace("relations", RELATIONS + ["extra"]), "/relation_embeddings has 3 rows but /relations has 4 names"),
        (_replace("entities", ENTITIES[:-1] + ["Zürich"]), r"/entities lists 'Zürich' twice \(rows 2 and 6\)"),
        (lambda f: f.attrs.__setitem__("format_version", 2), "format_version 2 is newer than this embretrain reads"),
        (lambda f: f.attrs.__setitem__("format", "other"), "'format' attribute is 'other'"),
        (lambda f: f.attrs.__setitem__("dim", 5), "'dim' attribute is 5"),
        (lambda f: f[ENTITY_TABLE].attrs.__setitem__("indexed_by", "nodes"), "indexed_by='nodes'"),
        (lambda f: f.attrs.__setitem__("params", '["norm", "nope"]'), "nope are listed in 'params'"),
        (_replace("lineage", ["{not json"]), "/lineage record 0 is not valid JSON"),
    ],
)
def test_malformed_files_raise_checkpoint_error(saved, change, message):
    _mutate(saved, change)
    with pytest.raises(CheckpointError, match=message) as err:
        native.load(saved)
    assert str(err.value).startswith(str(saved))


# --------------------------------------------------------------------------- is_native


def test_is_native(tmp_path, saved):
    assert native.is_native(saved)
    assert native.is_native(str(saved))
    text = tmp_path / "t.txt"
    text.write_text("hello")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "keras"
    for path in (text, empty, other, tmp_path / "missing.h5", tmp_path):
        assert native.is_native(path) is False


# --------------------------------------------------------------------------- describe


def test_describe(saved):
    info = native.describe(saved)
    assert json.loads(json.dumps(info)) == info  # printable as JSON by `embretrain inspect`
    assert info["path"] == str(saved)
    assert info["format"] == "embretrain" and info["format_version"] == 1
    assert info["model"] == "transe" and info["dim"] == 4
    assert info["params"] == PARAMS
    assert info["counts"] == {"entities": 7, "relations": 3}
    assert info["tables"] == {
        ENTITY_TABLE: {"shape": [7, 4], "dtype": "float32", "indexed_by": "entities", "checksum": "ok"},
        RELATION_TABLE: {"shape": [3, 4], "dtype": "float32", "indexed_by": "relations", "checksum": "ok"},
    }
    assert info["vocabularies"] == {
        "entities": {"count": 7, "checksum": "ok"},
        "relations": {"count": 3, "checksum": "ok"},
    }
    assert info["checksums"] == "ok"
    assert info["lineage"] == LINEAGE


def test_describe_reports_mismatch_without_raising(saved):
    with h5py.File(saved, "r+") as f:
        f[RELATION_TABLE][0, 0] = 7.0
        del f["entities"].attrs["sha256"]
    info = native.describe(saved)
    assert info["tables"][RELATION_TABLE]["checksum"] == "MISMATCH"
    assert info["tables"][ENTITY_TABLE]["checksum"] == "ok"
    assert info["vocabularies"]["entities"]["checksum"] == "missing"
    assert info["checksums"] == "MISMATCH"


def test_describe_hand_written_file_reports_missing(tmp_path):
    path = tmp_path / "hand.h5"
    with h5py.File(path, "w") as f:
        f["entities"] = ["a"]
        f["entity_embeddings"] = np.ones((1, 2), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # describe reports; it does not warn
        info = native.describe(path)
    assert info["format"] is None and info["model"] == "dot"
    assert info["checksums"] == "missing"
    assert "relations" not in info["vocabularies"] and info["counts"]["relations"] == 0


# --------------------------------------------------------------------------- save refuses what it cannot store


def test_save_rows_must_match_names(tmp_path, triple_ckpt):
    triple_ckpt.entities.append("extra")
    with pytest.raises(CheckpointError, match="has 7 rows but there are 8 entities"):
        native.save(triple_ckpt, tmp_path / "m.h5")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "params, message",
    [
        ({"format": "x"}, "reserved"),
        ({"bad": None}, "must be int, float, str or bool"),
        ({"big": 2**70}, "64 bits"),
    ],
)
def test_save_rejects_bad_params(tmp_path, triple_ckpt, params, message):
    triple_ckpt.params = params
    with pytest.raises(CheckpointError, match=message):
        native.save(triple_ckpt, tmp_path / "m.h5")


def test_save_numpy_scalar_params_become_python(tmp_path, triple_ckpt):
    triple_ckpt.params = {"norm": np.int32(2), "gamma": np.float64(0.1), "on": np.bool_(True)}
    native.save(triple_ckpt, tmp_path / "m.h5")
    params = native.load(tmp_path / "m.h5").params
    assert params == {"norm": 2, "gamma": 0.1, "on": True}
    assert [type(v) for v in params.values()] == [int, float, bool]


def test_save_rejects_duplicate_names(tmp_path, triple_ckpt):
    triple_ckpt.relations[2] = triple_ckpt.relations[0]
    with pytest.raises(CheckpointError, match="appears twice"):
        native.save(triple_ckpt, tmp_path / "m.h5")


def test_save_into_missing_directory_is_usage_error(tmp_path, triple_ckpt):
    with pytest.raises(UsageError, match="does not exist"):
        native.save(triple_ckpt, tmp_path / "missing" / "m.h5")


# --------------------------------------------------------------------------- names: fast and plain paths


@pytest.fixture(params=["string-dtype", "bytes"])
def name_reader(request, monkeypatch):
    """Run a test with names read into numpy's StringDType (when this numpy has it) and as Python bytes."""
    from embretrain.storage import disk

    if request.param == "bytes":
        monkeypatch.setattr(disk, "_STRING_DTYPE", None)
    return request.param


def _names_file(path, names, *, dtype=None, table_rows=None, sha=True):
    """A minimal pair-model checkpoint whose names were written by plain h5py (``dtype``: how)."""
    n = len(names) if table_rows is None else table_rows
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "embretrain", "format_version": 1, "model": "dot", "dim": 2, "params": "[]"})
        if dtype == "fixed":
            f.create_dataset("entities", data=np.array([s.encode("utf-8") for s in names], dtype="S"))
        elif dtype == "ascii-bytes":  # h5py's default tag for bytes: ASCII, holding UTF-8 anyway
            data = np.empty(len(names), dtype=object)
            data[:] = [s.encode("utf-8") for s in names]
            f.create_dataset("entities", data=data, dtype=h5py.string_dtype("ascii"))
        else:  # str objects, the way most users write names
            data = np.empty(len(names), dtype=object)
            data[:] = names
            f.create_dataset("entities", data=data, dtype=h5py.string_dtype("utf-8"))
        if sha:
            f["entities"].attrs["sha256"] = native.vocab_sha256(names)
        table = f.create_dataset("entity_embeddings", data=np.ones((n, 2), np.float32))
        table.attrs["indexed_by"] = "entities"
        if sha:
            table.attrs["sha256"] = native.table_sha256(np.ones((n, 2), np.float32))
    return path


@pytest.mark.parametrize("mode", native.OLD_ROWS)
@pytest.mark.parametrize("dtype", ["utf-8-str", "ascii-bytes", "fixed"])
def test_names_written_by_plain_h5py_load_in_both_modes(tmp_path, name_reader, mode, dtype):
    names = ENTITIES + [f"n{i}" for i in range(50)] + ["ünïcödé", "🙂 emoji", "two\ttabs\there"]
    if dtype == "fixed":
        names = [n for n in names if n]  # fixed-length strings cannot hold a trailing NUL anyway
    path = _names_file(tmp_path / "plain.h5", names, dtype=dtype)
    ckpt = native.load(path, old_rows=mode)
    assert ckpt.checksums == "verified"
    assert list(ckpt.entities) == names
    assert native.describe(path)["vocabularies"]["entities"]["checksum"] == "ok"


@pytest.mark.parametrize("mode", native.OLD_ROWS)
def test_non_ascii_names_round_trip_through_the_fast_save_and_plain_h5py(tmp_path, name_reader, mode, monkeypatch):
    monkeypatch.setattr(checksums, "NAME_BLOCK", 7)
    monkeypatch.setattr(write, "NAME_BLOCK", 7)  # many blocks, the last one short
    names = ENTITIES + [f"名前{i}" for i in range(40)] + ["a\tb", "é" * 300]
    path = _names_file(tmp_path / "in.h5", names)
    ckpt = native.load(path, old_rows=mode, read_only=True)
    from embretrain import storage

    new = ["Genève", "ß", "新"]
    assert storage.sha256(ckpt.entities) is not None  # the old names carry their load-time sha256
    grown = Checkpoint(
        model="dot",
        entities=storage.stack_names(ckpt.entities, new),
        relations=[],
        entity_tables={ENTITY_TABLE: storage.stack_rows(ckpt.entity_tables[ENTITY_TABLE], np.zeros((3, 2), np.float32))},
    )
    native.save(grown, tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5") as f:
        dset = f["entities"]
        info = h5py.check_string_dtype(dset.dtype)
        assert (dset.ndim, info.encoding, info.length) == (1, "utf-8", None)
        assert dset.asstr()[:].tolist() == names + new
        assert dset.attrs["sha256"] == native.vocab_sha256(names + new)
        assert f.attrs["format_version"] == 1
    assert list(native.load(tmp_path / "out.h5").entities) == names + new


@pytest.mark.parametrize("mode", native.OLD_ROWS)
def test_duplicate_in_a_big_vocabulary_is_caught_across_blocks(tmp_path, name_reader, mode, monkeypatch):
    monkeypatch.setattr(checksums, "NAME_BLOCK", 1000)
    names = [f"entity/{i}" for i in range(5000)]
    names[4321] = names[17]
    path = _names_file(tmp_path / "dup.h5", names)
    with pytest.raises(CheckpointError, match=r"dup\.h5: /entities lists 'entity/17' twice \(rows 17 and 4321\)"):
        native.load(path, old_rows=mode)


@pytest.mark.parametrize("mode", native.OLD_ROWS)
def test_colliding_name_hashes_are_compared_exactly(tmp_path, mode, monkeypatch):
    """Uniqueness is checked on 64-bit hashes; a collision alone must not fail a load, a real repeat must."""
    monkeypatch.setattr(checksums, "_name_hashes", lambda names: np.zeros(len(names), dtype=np.int64))
    monkeypatch.setattr(checksums, "hash", lambda item: 0, raising=False)
    names = [f"x{i}" for i in range(300)]
    assert list(native.load(_names_file(tmp_path / "ok.h5", names), old_rows=mode).entities) == names
    names[299] = "x3"
    with pytest.raises(CheckpointError, match=r"lists 'x3' twice \(rows 3 and 299\)"):
        native.load(_names_file(tmp_path / "dup.h5", names), old_rows=mode)


@pytest.mark.parametrize("mode", native.OLD_ROWS)
@pytest.mark.parametrize("charset", ["utf-8", "ascii"])
def test_names_that_are_not_utf8_fail_naming_the_file(tmp_path, name_reader, mode, charset):
    path = tmp_path / "latin1.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "embretrain", "format_version": 1, "model": "dot", "dim": 2, "params": "[]"})
        data = np.empty(3, dtype=object)
        data[:] = [b"ok", "Z\u00fcrich".encode("latin-1"), b"x"]
        f.create_dataset("entities", data=data, dtype=h5py.string_dtype(charset))
        f.create_dataset("entity_embeddings", data=np.ones((3, 2), np.float32)).attrs["indexed_by"] = "entities"
    with pytest.raises(CheckpointError, match=r"latin1\.h5: /entities holds bytes that are not UTF-8"):
        native.load(path, old_rows=mode, verify=False)


def test_utf8_vlen_names_are_read_into_string_dtype_when_numpy_and_h5py_can(tmp_path):
    from embretrain.storage import StrReader

    path = _names_file(tmp_path / "fast.h5", ["a", "Zürich", "名前"])
    with h5py.File(path) as f:
        read = StrReader(f["entities"])
        assert read(0, 3) == ["a", "Zürich", "名前"]
        can = hasattr(np, "dtypes") and hasattr(np.dtypes, "StringDType") and \
            tuple(int(x) for x in h5py.__version__.split(".")[:2]) >= (3, 14)
        assert read.fast == can  # the fast path did not quietly fall back


def test_a_failed_table_write_leaves_the_target_and_no_temp_file(saved, triple_ckpt, monkeypatch):
    import errno

    from embretrain.errors import EmbretrainError

    before = saved.read_bytes()

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write, "pwrite_all", full)  # the thread streaming the tables fails
    with pytest.raises(EmbretrainError, match=r"cannot write .*No space left on device.*is unchanged"):
        native.save(triple_ckpt, saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_a_name_that_cannot_be_encoded_is_refused_before_anything_is_written(saved, triple_ckpt):
    before = saved.read_bytes()
    triple_ckpt.entities[3] = "bad \udc80 surrogate"
    with pytest.raises(CheckpointError, match="cannot save: entity names, row 3: .* unpaired surrogate"):
        native.save(triple_ckpt, saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


@pytest.mark.parametrize("shape", [(3, 5), (1 << 17, 128)])  # below and above the size mapped on its own
def test_aligned_empty_is_aligned_writable_and_freezable(shape):
    from embretrain.storage import aligned_empty

    table = aligned_empty(shape)
    assert table.shape == shape and table.dtype == np.float32 and table.flags.c_contiguous
    assert table.ctypes.data % 64 == 0
    table[-1] = 1.5
    assert table[-1, -1] == 1.5
    table.flags.writeable = False  # what load(read_only=True) does
    with pytest.raises(ValueError):
        table[0, 0] = 0.0


# --------------------------------------------------------------------------- the format registry and the sha256 hand-over


def test_every_registered_format_has_its_five_parts_and_the_cli_offers_exactly_them():
    import click

    from embretrain.checkpoint import FORMAT_NAMES, FORMATS
    from embretrain.cli import main

    for fmt in FORMATS.values():
        for part in ("detect", "load", "save", "describe", "check_out"):
            assert callable(getattr(fmt.impl, part)), f"format {fmt.name} lacks {part}"
    assert [f.name for f in FORMATS.values() if f.fallback] == ["h5"]  # one catch-all, tried last
    (choice,) = [p for p in main.commands["extend"].params if p.name == "out_format"]
    assert isinstance(choice.type, click.Choice) and tuple(choice.type.choices) == FORMAT_NAMES


def test_a_sha256_travels_with_frozen_rows_not_with_the_checkpoint(tmp_path, triple_ckpt):
    """The saver continues the state the rows carry (a planted wrong state proves it is used, not recomputed);
    a slice, a copy or rows unlocked for writing carry none, so their sha256 is computed from their bytes."""
    import hashlib

    from embretrain import storage

    path = tmp_path / "m.h5"
    native.save(triple_ckpt, path)
    ckpt = native.load(path, read_only=True)
    table = ckpt.entity_tables[ENTITY_TABLE]
    assert storage.sha256(table).hexdigest() == native.table_sha256(table)
    assert storage.sha256(table[1:]) is None and storage.sha256(np.array(table)) is None

    planted = storage.freeze_rows(np.array(table), hashlib.sha256(b"not these rows"))
    native.save(Checkpoint(model=ckpt.model, entities=list(ckpt.entities), relations=list(ckpt.relations),
                           entity_tables={**ckpt.entity_tables, ENTITY_TABLE: planted},
                           relation_tables=ckpt.relation_tables, params=ckpt.params), tmp_path / "planted.h5")
    with pytest.raises(CheckpointError, match="entity_embeddings' fails its sha256 checksum"):
        native.load(tmp_path / "planted.h5")

    unlocked = storage.freeze_rows(np.array(table), hashlib.sha256(b"stale"))
    unlocked.flags.writeable = True
    unlocked[0] = 7.0  # changed after it was hashed: its state must not be trusted
    assert storage.sha256(unlocked) is None
    native.save(Checkpoint(model=ckpt.model, entities=list(ckpt.entities), relations=list(ckpt.relations),
                           entity_tables={**ckpt.entity_tables, ENTITY_TABLE: unlocked},
                           relation_tables=ckpt.relation_tables, params=ckpt.params), tmp_path / "edited.h5")
    back = native.load(tmp_path / "edited.h5")
    assert back.checksums == "verified" and np.all(back.entity_tables[ENTITY_TABLE][0] == 7.0)
