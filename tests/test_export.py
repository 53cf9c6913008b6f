"""Exports: word2vec text/binary as word2vec.c writes them, TSV, the TensorBoard projector's log directory
(read back with TensorBoard's own projector protobuf and plugin), ``--only-new`` from the lineage, and names
the formats cannot hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from embretrain.checkpoint import ENTITY_TABLE, RELATION_TABLE, native
from embretrain.checkpoint.base import Checkpoint
from embretrain.cli import main
from embretrain.errors import UsageError
from embretrain.export import export

ENTITIES = ["a", "b", "Zürich", "New York", "e4", "n1", "n2"]


@pytest.fixture
def ckpt_path(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((len(ENTITIES), 5)).astype(np.float32)
    table[0, 0] = np.float32(1e-45)  # subnormal: must survive the text round trip
    table[0, 1] = np.finfo(np.float32).max
    ckpt = Checkpoint(
        model="transe", entities=ENTITIES, relations=["r0", "r1"],
        entity_tables={ENTITY_TABLE: table},
        relation_tables={RELATION_TABLE: rng.standard_normal((2, 5)).astype(np.float32)},
        params={"norm": 1, "gamma": 12.0},
        lineage=[{"command": "train", "entities_before": 0, "entities_added": 5},
                 {"command": "extend", "entities_before": 5, "entities_added": 2, "relations_added": 0}],
    )
    path = tmp_path / "m.h5"
    native.save(ckpt, path)
    return path


def _table(path):
    return native.load(path).entity_tables[ENTITY_TABLE]


def _run(*args):
    result = CliRunner().invoke(main, ["export", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_word2vec_text_round_trips_every_float32(ckpt_path, tmp_path):
    _run(ckpt_path, "--format", "word2vec", "--out", tmp_path / "v.txt")
    lines = (tmp_path / "v.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{len(ENTITIES)} 5"
    names = [line.split(" ")[0] for line in lines[1:]]
    assert names == ["a", "b", "Zürich", "New_York", "e4", "n1", "n2"]  # word2vec cannot hold a space
    values = np.array([[np.float32(x) for x in line.split(" ")[1:]] for line in lines[1:]], dtype=np.float32)
    assert values.tobytes() == _table(ckpt_path).tobytes()


def test_word2vec_binary_layout(ckpt_path, tmp_path):
    _run(ckpt_path, "--format", "word2vec-binary", "--out", tmp_path / "v.bin")
    data = (tmp_path / "v.bin").read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header == f"{len(ENTITIES)} 5".encode()
    table = _table(ckpt_path)
    for i, name in enumerate(["a", "b", "Zürich", "New_York", "e4", "n1", "n2"]):
        word, rest = rest.split(b" ", 1)
        assert word.decode("utf-8") == name
        assert np.frombuffer(rest[:20], dtype="<f4").tobytes() == table[i].tobytes()
        assert rest[20:21] == b"\n"
        rest = rest[21:]
    assert rest == b""


def test_only_new_tsv_and_projector(ckpt_path, tmp_path):
    _run(ckpt_path, "--format", "tsv", "--only-new", "--out", tmp_path / "new.tsv")
    rows = [line.split("\t") for line in (tmp_path / "new.tsv").read_text(encoding="utf-8").splitlines()]
    assert [r[0] for r in rows] == ["n1", "n2"]
    assert [r[-1] for r in rows] == ["false", "false"]  # the pending flag, last
    assert np.array([r[1:-1] for r in rows], dtype=np.float32).tobytes() == _table(ckpt_path)[5:].tobytes()

    _run(ckpt_path, "--format", "tsv", "--table", "relation_embeddings", "--out", tmp_path / "rel.tsv")
    assert [line.split("\t")[0] for line in (tmp_path / "rel.tsv").read_text().splitlines()] == ["r0", "r1"]


def test_only_new_needs_a_run_that_added_rows(tmp_path):
    ckpt = Checkpoint(model="dot", entities=["x"], relations=[], entity_tables={ENTITY_TABLE: np.ones((1, 2), np.float32)})
    with pytest.raises(UsageError, match="lineage records no run"):
        export(ckpt, "tsv", tmp_path / "x.tsv", only_new=True)
    assert not (tmp_path / "x.tsv").exists()
    collide = Checkpoint(model="dot", entities=["a b", "a_b"], relations=[],
                         entity_tables={ENTITY_TABLE: np.ones((2, 2), np.float32)})
    with pytest.raises(UsageError, match="collide"):
        export(collide, "word2vec", tmp_path / "c.txt")


def test_gensim_reads_both_word2vec_outputs(ckpt_path, tmp_path):
    gensim_models = pytest.importorskip("gensim.models")
    _run(ckpt_path, "--format", "word2vec", "--out", tmp_path / "v.txt")
    _run(ckpt_path, "--format", "word2vec-binary", "--out", tmp_path / "v.bin")
    table = _table(ckpt_path)
    for path, binary in ((tmp_path / "v.txt", False), (tmp_path / "v.bin", True)):
        kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
        assert kv.index_to_key == ["a", "b", "Zürich", "New_York", "e4", "n1", "n2"]
        assert kv.vectors.astype(np.float32).tobytes() == table.tobytes()


def _projector_config(directory):
    """The directory's config, parsed with TensorBoard's own protobuf (as its projector plugin does)."""
    projector = pytest.importorskip("tensorboard.plugins.projector")
    from google.protobuf import text_format

    config = projector.ProjectorConfig()
    text_format.Parse((directory / "projector_config.pbtxt").read_text(encoding="utf-8"), config)
    return config


def test_projector_writes_the_plugins_config_tensor_and_metadata(ckpt_path, tmp_path):
    _run(ckpt_path, "--format", "projector")  # default output beside the checkpoint
    proj = tmp_path / "m.h5.projector"
    (embedding,) = _projector_config(proj).embeddings
    assert embedding.tensor_name == "entity_embeddings"
    assert list(embedding.tensor_shape) == [len(ENTITIES), 5]
    assert (embedding.tensor_path, embedding.metadata_path) == ("vectors.tsv", "metadata.tsv")
    vectors = np.loadtxt(proj / embedding.tensor_path, delimiter="\t", dtype=np.float32)
    assert vectors.tobytes() == _table(ckpt_path).tobytes()
    rows = [line.split("\t") for line in (proj / embedding.metadata_path).read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["name", "is_new", "pending"]  # several columns: the header row names them
    assert rows[1:] == [[name, "true" if name in ("n1", "n2") else "false", "false"] for name in ENTITIES]

    _run(ckpt_path, "--format", "projector", "--only-new", "--out", tmp_path / "new")
    (embedding,) = _projector_config(tmp_path / "new").embeddings
    assert list(embedding.tensor_shape) == [2, 5]
    assert (tmp_path / "new" / "metadata.tsv").read_text(encoding="utf-8") == "name\tis_new\tpending\nn1\ttrue\tfalse\nn2\ttrue\tfalse\n"


def test_tensorboards_projector_plugin_serves_the_export(ckpt_path, tmp_path):
    """What a person sees in `tensorboard --logdir DIR`: the plugin's own routes over the exported directory."""
    pytest.importorskip("tensorboard.plugins.projector")
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector import projector_plugin
    from werkzeug import Response
    from werkzeug.test import Client

    logdir = tmp_path / "relations"
    _run(ckpt_path, "--format", "projector", "--table", "relation_embeddings", "--out", logdir)
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir),
                                    data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir)))
    apps = projector_plugin.ProjectorPlugin(context).get_plugin_apps()

    def get(route, **query):
        response = Client(apps[route], Response).get(route, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    assert json.loads(get("/runs")) == ["."]
    info = json.loads(get("/info", run="."))
    assert info["embeddings"][0]["tensorShape"] == [2, 5]
    tensor = np.frombuffer(get("/tensor", run=".", name="relation_embeddings"), dtype=np.float32)
    assert tensor.tobytes() == native.load(ckpt_path).relation_tables[RELATION_TABLE].tobytes()
    metadata = get("/metadata", run=".", name="relation_embeddings").decode("utf-8")
    assert metadata == "name\tis_new\tpending\nr0\tfalse\tfalse\nr1\tfalse\tfalse\n"  # the lineage added no relations last
