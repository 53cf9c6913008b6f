"""TF checkpoints, proved with the users' own code: a TF1 graph program with ``Saver`` and a TF2
``tf.Module`` + ``tf.train.Checkpoint`` save; ``embretrain extend`` grows the checkpoint; the same
program rebuilt with ``n_e + k`` rows restores it; old rows are bit-identical, everything else unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_tsv
from embretrain.checkpoint import ENTITY_TABLE, format_of, load, save
from embretrain.checkpoint.base import Checkpoint
from embretrain.checkpoint.foreign import VariableGraph, _find_slots
from embretrain.cli import main
from embretrain.errors import CheckpointError, EmbretrainError, UsageError

tf = pytest.importorskip("tensorflow")

N_E, DIM, K = 12, 6, 3
OLD = [f"item{i:02d}" for i in range(N_E)]
NEW = [f"new{i}" for i in range(K)]


@pytest.fixture
def inputs(tmp_path):
    """Vocabulary of the user's table, new names, and pairs linking each new name to old ones."""
    pairs = [(n, OLD[(3 * i + j) % N_E]) for i, n in enumerate(NEW) for j in range(4)]
    pairs.append((NEW[0], NEW[1]))
    return {
        "vocab": write_tsv(tmp_path / "vocab.txt", [(n,) for n in OLD]),
        "new": write_tsv(tmp_path / "new.txt", [(n,) for n in NEW]),
        "pairs": write_tsv(tmp_path / "pairs.tsv", pairs),
    }


def _extend(ckpt, out, inputs, *extra: str) -> None:
    result = CliRunner().invoke(
        main,
        ["extend", "--ckpt", str(ckpt), "--new-entities", str(inputs["new"]), "--data", str(inputs["pairs"]),
         "--out", str(out), "--epochs", "2", "--batch-size", "8", "--seed", "1", *extra],
    )
    assert result.exit_code == 0, result.output + str(result.exception)


def _bits(a) -> bytes:
    return np.ascontiguousarray(a).tobytes()


# --------------------------------------------------------------------------- TF1 Saver


def tf1_program(n_e: int, save_to=None, restore_from=None) -> dict:
    """A TF1 graph program as users write it: an embedding, a dense layer W, Adam, a Saver."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        tf.compat.v1.set_random_seed(0)
        embedding = tf.compat.v1.get_variable("embedding", [n_e, DIM])
        w = tf.compat.v1.get_variable("W", [DIM, 2])
        step = tf.compat.v1.train.get_or_create_global_step()
        ids = tf.constant([[0, 1], [2, 3], [4, 5]])
        logits = tf.matmul(tf.reduce_mean(tf.nn.embedding_lookup(embedding, ids), axis=1), w)
        loss = tf.reduce_mean(tf.square(logits - 1.0))
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        saver = tf.compat.v1.train.Saver()
        if restore_from is None:
            sess.run(tf.compat.v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            saver.save(sess, str(save_to), global_step=step)
        else:
            saver.restore(sess, str(restore_from))
        adam = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
        values = {v.op.name: v for v in adam}
        return sess.run(values)


def test_tf1_saver_program_restores_the_grown_checkpoint(tmp_path, inputs):
    before = tf1_program(N_E, save_to=tmp_path / "run" / "model.ckpt")
    assert format_of(tmp_path / "run") == "tf"
    out = tmp_path / "grown" / "model.ckpt-4"
    out.parent.mkdir()
    # The directory means its latest checkpoint; --entity-var omitted: the one variable with N_E rows fits.
    _extend(tmp_path / "run", out, inputs, "--entity-vocab", str(inputs["vocab"]))

    after = tf1_program(N_E + K, restore_from=out)
    assert after["embedding"].shape == (N_E + K, DIM)
    assert _bits(after["embedding"][:N_E]) == _bits(before["embedding"])
    assert np.isfinite(after["embedding"][N_E:]).all() and np.abs(after["embedding"][N_E:]).sum() > 0
    for key in ("W", "W/Adam", "W/Adam_1", "global_step", "beta1_power", "beta2_power"):
        assert _bits(after[key]) == _bits(before[key]), key
    for slot in ("embedding/Adam", "embedding/Adam_1"):  # grown with zero rows
        assert _bits(after[slot][:N_E]) == _bits(before[slot])
        assert not after[slot][N_E:].any()
    # Names beside the prefix; the directory's `checkpoint` file names the new prefix.
    assert (tmp_path / "grown" / "model.ckpt-4.entities.tsv").read_text().split() == OLD + NEW
    assert tf.train.latest_checkpoint(str(tmp_path / "grown")).endswith("model.ckpt-4")
    # And it reads back through our own loader with no options (sidecars say it all).
    again = load(out)
    assert again.entities == OLD + NEW and again.extras["keys"] == {ENTITY_TABLE: "embedding"}


def test_tf1_word2vec_pair_of_tables_grows_both_with_context_var(tmp_path, inputs):
    """A skip-gram program keeps two [n, d] tables (target, context): --context-var names the second one."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        tf.compat.v1.set_random_seed(0)
        for name in ("target", "context"):
            tf.compat.v1.get_variable(name, [N_E, DIM])
        tf.compat.v1.get_variable("W", [DIM, 2])
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(sess, str(tmp_path / "w2v.ckpt"))
    reader = tf.train.load_checkpoint(str(tmp_path / "w2v.ckpt"))
    before = {k: reader.get_tensor(k) for k in ("target", "context", "W")}
    out = tmp_path / "w2v-grown.ckpt"
    _extend(tmp_path / "w2v.ckpt", out, inputs, "--entity-vocab", str(inputs["vocab"]), "--model", "dot",
            "--entity-var", "target", "--context-var", "context")
    reader = tf.train.load_checkpoint(str(out))
    after = {k: reader.get_tensor(k) for k in ("target", "context", "W")}
    for name in ("target", "context"):
        assert after[name].shape == (N_E + K, DIM)
        assert _bits(after[name][:N_E]) == _bits(before[name]), name
        assert np.isfinite(after[name][N_E:]).all()
    assert _bits(after["W"]) == _bits(before["W"])
    again = load(out)
    assert again.extras["keys"] == {ENTITY_TABLE: "target", "context_embeddings": "context"}
    assert again.entities == OLD + NEW


def test_tf1_candidates_are_listed_when_no_variable_fits(tmp_path):
    tf1_program(N_E, save_to=tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "model.ckpt-3")
    assert "name it with entity_var" in str(err.value)  # the API's name; the CLI shows --entity-var
    assert f"embedding [{N_E}, {DIM}]" in str(err.value) and f"W [{DIM}, 2]" in str(err.value)
    with pytest.raises(CheckpointError, match="entity_vocab"):
        load(tmp_path / "model.ckpt-3", entity_var="embedding")
    with pytest.raises(UsageError, match="entity_var emb: no variable or layer has that name; .*embedding \\[12, 6\\]"):
        load(tmp_path / "model.ckpt-3", entity_var="emb")
    short = tmp_path / "short.txt"
    write_tsv(short, [(n,) for n in OLD[:-1]])
    with pytest.raises(CheckpointError, match=f"lists {N_E - 1} entity names but variable 'embedding' has {N_E} rows"):
        load(tmp_path / "model.ckpt-3", entity_var="embedding", entity_vocab=short)
    with pytest.raises(UsageError, match="give model"):
        load(tmp_path / "model.ckpt-3", entity_var="embedding", relation_var="W", entity_vocab=short)


def test_inspect_lists_tf_variables(tmp_path):
    tf1_program(N_E, save_to=tmp_path / "model.ckpt")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"embedding: [{N_E}, {DIM}] float32" in result.output
    assert "embedding/Adam_1" in result.output and "global_step: [] int64" in result.output
    assert "TF1" in result.output


# --------------------------------------------------------------------------- TF2 object graph


class Recommender(tf.Module):
    """A TF2 model as users write it: a table, a dense layer, tracked by attribute."""

    def __init__(self, n_e: int):
        super().__init__()
        init = tf.random.stateless_uniform([n_e, DIM], seed=[1, 2])
        self.emb = tf.Module()
        self.emb.table = tf.Variable(init, name="table")
        self.dense = tf.Variable(tf.random.stateless_normal([DIM, 4], seed=[3, 4]), name="dense")
        self.step = tf.Variable(0, dtype=tf.int64)


def tf2_program(n_e: int, save_to=None, restore_from=None):
    import keras

    model = Recommender(n_e)
    opt = keras.optimizers.Adam(0.1)
    variables = [model.emb.table, model.dense]
    opt.build(variables)
    ckpt = tf.train.Checkpoint(model=model, optimizer=opt)
    if restore_from is None:
        for _ in range(2):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.matmul(tf.gather(model.emb.table, [0, 5]), model.dense) ** 2)
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            model.step.assign_add(1)
        ckpt.save(str(save_to))
    else:
        ckpt.restore(str(restore_from)).assert_existing_objects_matched()
    slots = [v.numpy() for v in opt.variables if tuple(v.shape) == (n_e, DIM)]  # Adam m, v of the table
    return {"table": model.emb.table.numpy(), "dense": model.dense.numpy(), "step": model.step.numpy(),
            "iterations": opt.iterations.numpy(), "slots": slots, "save_counter": ckpt.save_counter.numpy()}


def test_tf2_checkpoint_program_restores_the_grown_checkpoint(tmp_path, inputs):
    before = tf2_program(N_E, save_to=tmp_path / "tf2" / "ckpt")
    out = tmp_path / "grown" / "ckpt-2"
    out.parent.mkdir()
    _extend(tmp_path / "tf2", out, inputs, "--entity-var", "model/emb/table", "--entity-vocab", str(inputs["vocab"]))

    after = tf2_program(N_E + K, restore_from=out)
    assert _bits(after["table"][:N_E]) == _bits(before["table"])
    assert after["table"].shape == (N_E + K, DIM) and np.abs(after["table"][N_E:]).sum() > 0
    assert _bits(after["dense"]) == _bits(before["dense"])
    assert after["step"] == before["step"] == 2 and after["iterations"] == before["iterations"] == 2
    assert after["save_counter"] == before["save_counter"]
    assert len(before["slots"]) == len(after["slots"]) == 2
    for old, new in zip(before["slots"], after["slots"]):
        assert np.abs(old).sum() > 0  # trained state, so equality below means something
        assert _bits(new[:N_E]) == _bits(old) and not new[N_E:].any()
    # The object graph proto went through unchanged (restore above would fail otherwise).
    reader_old = tf.train.load_checkpoint(str(tmp_path / "tf2"))
    reader_new = tf.train.load_checkpoint(str(out))
    key = "_CHECKPOINTABLE_OBJECT_GRAPH"
    assert reader_old.get_tensor(key) == reader_new.get_tensor(key)
    assert reader_new.get_variable_to_dtype_map() == reader_old.get_variable_to_dtype_map()


def test_tf2_verify_and_corruption(tmp_path, inputs):
    tf2_program(N_E, save_to=tmp_path / "tf2" / "ckpt")
    out = tmp_path / "g" / "ckpt-2"
    out.parent.mkdir()
    _extend(tmp_path / "tf2", out, inputs, "--entity-var", "model/emb/table", "--entity-vocab", str(inputs["vocab"]))
    args = ["verify", str(tmp_path / "tf2"), str(out), "--entity-var", "model/emb/table",
            "--entity-vocab", str(inputs["vocab"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 table(s) bit-identical" in result.output

    # A grown checkpoint whose dense layer moved is not a pure extension.
    grown = load(out)
    grown.extras["variables"]["model/dense/.ATTRIBUTES/VARIABLE_VALUE"] = (
        grown.extras["variables"]["model/dense/.ATTRIBUTES/VARIABLE_VALUE"] + 1.0
    )
    save(grown, tmp_path / "g" / "bad")
    result = CliRunner().invoke(main, args[:2] + [str(tmp_path / "g" / "bad")] + args[3:])
    assert result.exit_code == 1, result.output
    assert "variable 'model/dense/.ATTRIBUTES/VARIABLE_VALUE' differs" in result.output


# --------------------------------------------------------------------------- conversions and slots


def test_native_to_tf_and_back_keeps_every_bit(tmp_path):
    rng = np.random.default_rng(0)
    ckpt = Checkpoint(
        model="transe", entities=OLD, relations=["r0", "r1"],
        entity_tables={ENTITY_TABLE: rng.standard_normal((N_E, 4)).astype(np.float32)},
        relation_tables={"relation_embeddings": rng.standard_normal((2, 4)).astype(np.float32)},
        params={"norm": 2, "gamma": 6.0},
        lineage=[{"command": "train", "entities_added": N_E}],
    )
    save(ckpt, tmp_path / "conv", format="tf")
    back = load(tmp_path / "conv")
    assert back.model == "transe" and back.params == {"norm": 2, "gamma": 6.0}
    assert back.entities == OLD and back.relations == ["r0", "r1"] and back.lineage == ckpt.lineage
    for name, table in ckpt.tables().items():
        assert _bits(back.tables()[name]) == _bits(table)
    save(back, tmp_path / "again.h5", format="h5")
    assert _bits(load(tmp_path / "again.h5").entity_tables[ENTITY_TABLE]) == _bits(ckpt.entity_tables[ENTITY_TABLE])


def test_slot_detection_by_name_and_by_shape():
    f32 = np.float32
    specs = {
        "emb": ((10, 4), f32), "emb/Adagrad": ((10, 4), f32), "W": ((4, 4), f32),
        "model/t/.ATTRIBUTES/VARIABLE_VALUE": ((7, 4), f32),
        "model/t/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE": ((7, 4), f32),
        "optimizer/_variables/2/.ATTRIBUTES/VARIABLE_VALUE": ((10, 4), f32),
        "optimizer/_variables/3/.ATTRIBUTES/VARIABLE_VALUE": ((4, 4), f32),
    }
    slots = _find_slots(specs, {ENTITY_TABLE: "emb", "relation_embeddings": "model/t/.ATTRIBUTES/VARIABLE_VALUE"})
    assert slots == {
        "emb/Adagrad": ENTITY_TABLE,
        "model/t/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE": "relation_embeddings",
        "optimizer/_variables/2/.ATTRIBUTES/VARIABLE_VALUE": ENTITY_TABLE,
    }
    # A model variable with the table's shape makes an unnamed optimizer variable ambiguous: refuse.
    specs["other"] = ((10, 4), f32)
    with pytest.raises(CheckpointError, match="cannot tell whether optimizer variable"):
        _find_slots(specs, {ENTITY_TABLE: "emb"})


def test_missing_or_truncated_data_shard_is_a_checkpoint_error(tmp_path, inputs):
    tf1_program(N_E, save_to=tmp_path / "model.ckpt")
    prefix = tmp_path / "model.ckpt-3"
    data = tmp_path / "model.ckpt-3.data-00000-of-00001"
    whole = data.read_bytes()
    vocab = ["--entity-var", "embedding", "--entity-vocab", str(inputs["vocab"]), "--new-entity-vocab", str(inputs["vocab"])]
    for damage, words in ((lambda: data.unlink(), "data shard missing"), (lambda: data.write_bytes(whole[:100]), "truncated")):
        damage()
        with pytest.raises(CheckpointError, match=f"model.ckpt-3.data-00000-of-00001: {words}"):
            load(prefix, entity_var="embedding", entity_vocab=inputs["vocab"])
        for args in (["inspect", str(prefix)], ["verify", str(prefix), str(prefix), *vocab]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 4, (args, result.output)
            assert "model.ckpt-3.data-00000-of-00001" in result.output
    data.write_bytes(whole)
    assert CliRunner().invoke(main, ["verify", str(prefix), str(prefix), *vocab]).exit_code == 0


def test_object_graph_slots_are_proven_or_refused():
    f32 = np.float32
    table, m, loose = ("model/emb/.ATTRIBUTES/VARIABLE_VALUE", "opt/_variables/2/.ATTRIBUTES/VARIABLE_VALUE",
                       "opt/_variables/3/.ATTRIBUTES/VARIABLE_VALUE")
    specs = {table: ((10, 4), f32), m: ((10, 4), f32), loose: ((10, 4), f32)}
    graph = VariableGraph(paths={table: "model/emb"}, slot_owner={m: table, loose: table}, optimizer_keys={m, loose})
    assert _find_slots(specs, {ENTITY_TABLE: table}, graph) == {m: ENTITY_TABLE, loose: ENTITY_TABLE}
    # State with the table's shape that the graph does not tie to any variable: refuse, never guess.
    graph.slot_owner.pop(loose)
    with pytest.raises(CheckpointError, match="cannot prove which variable optimizer state 'opt/_variables/3"):
        _find_slots(specs, {ENTITY_TABLE: table}, graph)
    # Tied to the table but shaped otherwise (a factored optimizer): it cannot grow with the table.
    specs[loose] = ((10,), f32)
    graph.slot_owner[loose] = table
    with pytest.raises(CheckpointError, match="belongs to table .* but has another shape"):
        _find_slots(specs, {ENTITY_TABLE: table}, graph)


# --------------------------------------------------------------------------- hostile TF outputs and inputs


def _transe(n_e: int = N_E, rel_width: int = 4, seed: int = 0, relations=("r0", "r1")) -> Checkpoint:
    rng = np.random.default_rng(seed)
    return Checkpoint(
        model="transe", entities=[f"item{i:02d}" for i in range(n_e)], relations=list(relations),
        entity_tables={ENTITY_TABLE: rng.standard_normal((n_e, 4)).astype(np.float32)},
        relation_tables={"relation_embeddings": rng.standard_normal((len(relations), rel_width)).astype(np.float32)},
        params={"norm": 2, "gamma": 6.0},
    )


def _files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_tf_transe_relation_width_is_refused_at_load(tmp_path):
    """The model's shape contract is checked at load for TF as for native: exit 4 naming the widths."""
    save(_transe(), tmp_path / "ok", format="tf")
    meta = (tmp_path / "ok.embretrain.json").read_text()
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "bad"), tensor_names=["entity_embeddings", "relation_embeddings"],
                      shape_and_slices=["", ""], tensors=[np.zeros((N_E, 4), np.float32), np.zeros((2, 3), np.float32)])
    for kind in ("entities.tsv", "relations.tsv"):
        (tmp_path / f"bad.{kind}").write_bytes((tmp_path / f"ok.{kind}").read_bytes())
    import json

    bad_meta = json.loads(meta)
    bad_meta.pop("binds")  # a sidecar written by hand: nothing to bind
    (tmp_path / "bad.embretrain.json").write_text(json.dumps(bad_meta))
    with pytest.raises(CheckpointError, match=r"bad.*relation_embeddings has width 3; entity_embeddings of width 4"):
        load(tmp_path / "bad")
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "ok"), str(tmp_path / "bad")])
    assert result.exit_code == 4 and "relation_embeddings has width 3" in result.output, result.output


def test_tf_sidecar_of_another_save_is_refused(tmp_path):
    """A crash between the renames of one save (new meta sidecar, old .index) is caught at load."""
    save(_transe(seed=0), tmp_path / "m", format="tf")
    old_meta = (tmp_path / "m.embretrain.json").read_bytes()
    assert load(tmp_path / "m").entities[0] == "item00"
    save(_transe(seed=1), tmp_path / "m", format="tf")
    (tmp_path / "m.embretrain.json").write_bytes(old_meta)  # the unit half replaced
    with pytest.raises(CheckpointError, match=r"m\.embretrain\.json belongs to another version of .*m\.index"):
        load(tmp_path / "m")
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "m"), str(tmp_path / "m")])
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert result.output.count("m.embretrain.json") == 1 and "m.index" in result.output


def test_tf_save_is_one_unit_a_failed_rename_puts_every_old_file_back(tmp_path, monkeypatch):
    import os

    from embretrain import atomic

    save(_transe(seed=0), tmp_path / "m", format="tf")
    before = _files(tmp_path)
    real = os.replace

    def fail_on_index(src, dst, *a, **kw):
        if str(dst).endswith("m.index"):
            raise OSError(5, "Input/output error")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", fail_on_index)
    with pytest.raises(EmbretrainError, match="Input/output error; nothing was written"):
        save(_transe(n_e=N_E + 2, seed=1, relations=("r0",)), tmp_path / "m", format="tf")
    monkeypatch.undo()
    assert _files(tmp_path) == before  # sidecars, shards, state file: the old unit, nothing left over
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    assert load(tmp_path / "m").n_entities == N_E


def test_tf_state_file_is_switched_last_and_names_with_tabs_are_never_written(tmp_path):
    save(_transe(), tmp_path / "a", format="tf")
    save(_transe(seed=1), tmp_path / "b", format="tf")
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("b")
    before = _files(tmp_path)
    bad = _transe()
    bad.entities[3] = "tab\there"
    with pytest.raises(CheckpointError, match=r"cannot write .*c\.entities\.tsv: entity row 3: name 'tab\\there' contains a tab"):
        save(bad, tmp_path / "c", format="tf")
    assert _files(tmp_path) == before
