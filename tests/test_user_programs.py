"""Users' own TensorFlow programs against what ``extend`` writes (issue 13).

* A TF1 graph whose tables are partitioned (``fixed_size_partitioner``, 3 and 4 parts) and looked up
  with ``partition_strategy="mod"`` or ``"div"``: rebuilt with ``n + k`` rows, it restores the output
  and reads every old id's old vector (and old Adam moments) through its own ``embedding_lookup``,
  then trains one more step.
* A TF2 module with a Keras ``Embedding`` layer and a Keras 3 Adam or SGD-with-momentum, saved with
  ``tf.train.Checkpoint``: restored after growth, the old rows' moments come back bit-identical, new
  rows' moments are zero, and ``opt.apply`` runs.
* ``verify`` reads through TF's reader and lookup: it fails on a checkpoint grown with the wrong
  strategy (what embretrain did before it knew about partitions), naming the first differing entity.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_tsv
from embretrain.cli import main

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

N, DIM, K = 12, 4, 3
OLD = [f"item{i:02d}" for i in range(N)]
NEW = [f"new{i}" for i in range(K)]
TRAIN_IDS = [0, 1, 2, 4, 5, 7, 10, 11]


@pytest.fixture
def inputs(tmp_path):
    pairs = [(n, OLD[(3 * i + j) % N]) for i, n in enumerate(NEW) for j in range(3)]
    return {
        "vocab": write_tsv(tmp_path / "vocab.txt", [(n,) for n in OLD]),
        "new": write_tsv(tmp_path / "new.txt", [(n,) for n in NEW]),
        "pairs": write_tsv(tmp_path / "pairs.tsv", pairs),
    }


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _extend(ckpt, out, inputs, *extra):
    result = _run("extend", "--ckpt", ckpt, "--new-entities", inputs["new"], "--data", inputs["pairs"],
                  "--out", out, "--epochs", "1", "--batch-size", "8", "--seed", "1", *extra)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _bits(a) -> bytes:
    return np.ascontiguousarray(a).tobytes()


# --------------------------------------------------------------------------- TF1 partitioned tables


def tf1_partitioned(n: int, parts: dict[str, int], strategy: str, save_to=None, restore_from=None) -> dict:
    """The classic TF1 sharded program: tables cut by fixed_size_partitioner, looked up with ``strategy``,
    Adam, a Saver. Returns each table and its Adam moments as the program reads them, id by id."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        tf.compat.v1.set_random_seed(0)
        tables = {name: tf.compat.v1.get_variable(name, [n, DIM], partitioner=tf.compat.v1.fixed_size_partitioner(p))
                  for name, p in parts.items()}
        w = tf.compat.v1.get_variable("W", [DIM, 1])
        ids = tf.constant(TRAIN_IDS)
        looked = [tf.compat.v1.nn.embedding_lookup(list(t), ids, partition_strategy=strategy) for t in tables.values()]
        loss = tf.reduce_mean(tf.square(tf.matmul(tf.add_n(looked), w) - 1.0))
        opt = tf.compat.v1.train.AdamOptimizer(0.1)
        train = opt.minimize(loss)
        saver = tf.compat.v1.train.Saver()
        if restore_from is None:
            sess.run(tf.compat.v1.global_variables_initializer())
            for _ in range(2):
                sess.run(train)
            saver.save(sess, str(save_to))
        else:
            saver.restore(sess, str(restore_from))
        every = tf.range(n)
        read = {}
        for name, t in tables.items():
            read[name] = tf.compat.v1.nn.embedding_lookup(list(t), every, partition_strategy=strategy)
            for slot in ("m", "v"):
                read[f"{name}/{slot}"] = tf.compat.v1.nn.embedding_lookup(
                    [opt.get_slot(part, slot) for part in t], every, partition_strategy=strategy)
        values = sess.run(read)
        if restore_from is not None:
            sess.run(train)  # the program goes on training from the grown checkpoint
        return values


@pytest.mark.parametrize("strategy, parts", [("mod", {"embedding": 3, "context": 4}),
                                             ("div", {"embedding": 4, "context": 3})])
def test_partitioned_tf1_program_reads_old_ids_after_growth(tmp_path, inputs, strategy, parts):
    before = tf1_partitioned(N, parts, strategy, save_to=tmp_path / "run" / "model.ckpt")
    info = _run("inspect", tmp_path / "run")
    assert info.exit_code == 0, info.output
    assert f"embedding: {parts['embedding']} parts of" in info.output and "--partition-strategy" in info.output
    assert "run is a directory: reading its checkpoint" in info.output and "model.ckpt" in info.output

    args = ["--entity-var", "embedding", "--context-var", "context", "--entity-vocab", inputs["vocab"]]
    refused = _run("extend", "--ckpt", tmp_path / "run", "--new-entities", inputs["new"], "--data", inputs["pairs"],
                   "--out", tmp_path / "m", *args)
    assert refused.exit_code == 2 and "--partition-strategy" in refused.output, refused.output

    out = tmp_path / "grown" / "model.ckpt-1"
    out.parent.mkdir()
    _extend(tmp_path / "run", out, inputs, *args, "--partition-strategy", strategy)
    after = tf1_partitioned(N + K, parts, strategy, restore_from=out)
    for name in parts:
        assert _bits(after[name][:N]) == _bits(before[name]), name
        assert np.abs(after[name][N:]).sum() > 0
        for slot in ("m", "v"):
            assert np.abs(before[f"{name}/{slot}"]).sum() > 0
            assert _bits(after[f"{name}/{slot}"][:N]) == _bits(before[f"{name}/{slot}"]), (name, slot)
            assert not after[f"{name}/{slot}"][N:].any()
    ok = _run("verify", tmp_path / "run", out, *args, "--partition-strategy", strategy)
    assert ok.exit_code == 0, ok.output


def test_verify_catches_a_mod_table_grown_as_if_div(tmp_path, inputs):
    """Reading mod-partitioned parts in stored order (what embretrain did before) moves old ids."""
    tf1_partitioned(N, {"embedding": 3}, "mod", save_to=tmp_path / "run" / "model.ckpt")
    out = tmp_path / "grown" / "model.ckpt-1"
    out.parent.mkdir()
    args = ["--entity-var", "embedding", "--entity-vocab", inputs["vocab"]]
    _extend(tmp_path / "run", out, inputs, *args, "--partition-strategy", "div")  # the wrong strategy
    bad = _run("verify", tmp_path / "run", out, *args, "--partition-strategy", "mod")
    assert bad.exit_code == 1, bad.output
    # id 1 is row 4 of the 12-row full tensor (part 1 starts at 4) but row 5 of the 15-row one.
    assert "row 1 (entity 'item01') differs" in bad.output
    missing = _run("verify", tmp_path / "run", out, *args)
    assert missing.exit_code == 2 and "--partition-strategy" in missing.output


# --------------------------------------------------------------------------- TF2 + Keras 3 optimizers


class Recommender(tf.Module):
    def __init__(self, n: int):
        super().__init__()
        self.item_emb = keras.layers.Embedding(n, DIM, name="item_emb",
                                               embeddings_initializer=keras.initializers.RandomUniform(seed=1))
        self.item_emb.build((None,))
        self.dense = tf.Variable(tf.random.stateless_normal([DIM, 1], seed=[3, 4]), name="dense")


def keras_program(n: int, optimizer: str, save_to=None, restore_from=None) -> dict:
    model = Recommender(n)
    opt = keras.optimizers.Adam(0.1) if optimizer == "adam" else keras.optimizers.SGD(0.1, momentum=0.9)
    variables = [model.item_emb.embeddings, model.dense]
    opt.build(variables)
    ckpt = tf.train.Checkpoint(model=model, opt=opt)

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.matmul(model.item_emb(tf.constant(TRAIN_IDS)), model.dense) ** 2)
        opt.apply(tape.gradient(loss, variables), variables)

    if restore_from is None:
        step()
        step()
        ckpt.save(str(save_to))
    else:
        ckpt.restore(str(restore_from)).assert_existing_objects_matched()
    values = {"table": model.item_emb.embeddings.numpy(), "dense": model.dense.numpy(),
              "iterations": int(opt.iterations.numpy()),
              "slots": [v.numpy() for v in opt.variables if tuple(v.shape) == (n, DIM)]}
    if restore_from is not None:
        step()
    return values


@pytest.mark.parametrize("optimizer, n_slots", [("adam", 2), ("sgd", 1)])
def test_keras3_optimizer_state_grows_with_the_table(tmp_path, inputs, optimizer, n_slots):
    before = keras_program(N, optimizer, save_to=tmp_path / "tf2" / "ckpt")
    info = _run("inspect", tmp_path / "tf2")
    assert "model/item_emb/_embeddings (variable item_emb/embeddings)" in info.output, info.output
    assert "opt/_variables/2/.ATTRIBUTES/VARIABLE_VALUE" not in info.output.split("table_candidates:")[1].split("objects:")[0]

    wrong = _run("extend", "--ckpt", tmp_path / "tf2", "--new-entities", inputs["new"], "--data", inputs["pairs"],
                 "--out", tmp_path / "c", "--entity-var", "user_emb", "--entity-vocab", inputs["vocab"])
    assert wrong.exit_code == 2, wrong.output
    assert "--entity-var user_emb" in wrong.output and "model/item_emb/_embeddings" in wrong.output

    out = tmp_path / "grown" / "ckpt-2"
    out.parent.mkdir()
    # No --entity-var: the optimizer's [N, DIM] moments are not candidates, so the layer's table is the one.
    _extend(tmp_path / "tf2", out, inputs, "--entity-vocab", inputs["vocab"])
    after = keras_program(N + K, optimizer, restore_from=out)
    assert _bits(after["table"][:N]) == _bits(before["table"]) and _bits(after["dense"]) == _bits(before["dense"])
    assert after["iterations"] == before["iterations"] == 2
    assert len(before["slots"]) == len(after["slots"]) == n_slots
    for old, new in zip(before["slots"], after["slots"]):
        assert np.abs(old).sum() > 0
        assert _bits(new[:N]) == _bits(old) and not new[N:].any()
    ok = _run("verify", tmp_path / "tf2", out, "--entity-var", "item_emb", "--entity-vocab", inputs["vocab"])
    assert ok.exit_code == 0, ok.output
