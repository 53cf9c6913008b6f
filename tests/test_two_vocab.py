"""A pair model whose two sides have their own tables and vocabularies (issue 13, "Two vocabularies").

A two-tower recommender keeps users (the ``a`` side, the entity table) and items (the ``b`` side, the
context table) in tables of different sizes. Tested as its users have it:

* a Keras two-tower model (user ``Embedding`` + item ``Embedding``, dot product) saved with
  ``save_weights``, grown with new items (user table frozen), then with new users (item table frozen),
  through the CLI; the user's model rebuilt with the larger ``input_dim``s restores each output with
  ``load_weights`` and reads every old user and item row bit-identical through its own layers; Adam's
  moments of old rows come back unchanged, new rows' are zero; new items (and users) rank their planted
  partners far above random and far above their untrained start;
* the same model's tables in a TF2 ``tf.train.Checkpoint`` (a ``tf.Module`` with Keras layers and a Keras 3
  Adam), restored with ``tf.train.Checkpoint.restore``;
* the native format: ``/contexts`` with its sha256, ``context_embeddings`` indexed by it, a round trip,
  growth with old rows left on disk, ``verify`` reading both vocabularies; files without ``/contexts``
  (every pair file written before) load and grow as before;
* negatives of the ``b`` side are drawn from the ``b`` vocabulary (old contexts + new ones with data).
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_tsv
from embretrain import api
from embretrain.checkpoint import CONTEXT_TABLE, ENTITY_TABLE
from embretrain.cli import main

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

DIM, GROUPS = 8, 4
N_USERS, N_ITEMS = 40, 48  # two vocabularies of different sizes
USERS = [f"user{i:02d}" for i in range(N_USERS)]
ITEMS = [f"item{j:02d}" for j in range(N_ITEMS)]
NEW_ITEMS = [f"new_item{k}" for k in range(6)]
NEW_USERS = [f"new_user{k}" for k in range(4)]


def group(i: int) -> int:
    return i % GROUPS


def planted(n: int, seed: int) -> np.ndarray:
    """Rows of group i % 4 near 3 * e_g: a user and an item score ~9 in the same group, ~0 across groups."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(0, 0.1, (n, DIM)).astype(np.float32)
    rows[np.arange(n), np.arange(n) % GROUPS] += 3.0
    return rows


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(*args):
    result = _run(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _bits(a) -> bytes:
    return np.ascontiguousarray(a).tobytes()


TRAIN = ("--epochs", "60", "--batch-size", "16", "--lr", "0.05", "--seed", "3")


# --------------------------------------------------------------------------- the user's programs


def two_tower(n_users: int, n_items: int):
    """The user's Keras program: user and item towers, a dot product, Adam."""
    user = keras.Input((1,), dtype="int32", name="user")
    item = keras.Input((1,), dtype="int32", name="item")
    u = keras.layers.Flatten()(keras.layers.Embedding(n_users, DIM, name="user_emb")(user))
    v = keras.layers.Flatten()(keras.layers.Embedding(n_items, DIM, name="item_emb")(item))
    model = keras.Model([user, item], keras.layers.Dot(axes=-1)([u, v]))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def keras_rows(model) -> dict[str, np.ndarray]:
    """What the program reads: its layers' tables and Adam's moments of each (by shape)."""
    users = model.get_layer("user_emb").get_weights()[0]
    items = model.get_layer("item_emb").get_weights()[0]
    moments = {name: [v.numpy() for v in model.optimizer.variables if tuple(v.shape) == t.shape]
               for name, t in (("users", users), ("items", items))}
    return {"users": users, "items": items, **{f"{k}_moments": v for k, v in moments.items()}}


def restored(path, n_users: int, n_items: int) -> dict[str, np.ndarray]:
    """Rebuild the program with the grown input_dims and load_weights(path)."""
    model = two_tower(n_users, n_items)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(str(path))
    return keras_rows(model)


def base_interactions():
    """Every (user, item) of the same group: what the base model was trained on (the ranking filter)."""
    return [(u, it) for i, u in enumerate(USERS) for j, it in enumerate(ITEMS) if group(i) == group(j)]


@pytest.fixture
def keras_base(tmp_path):
    model = two_tower(N_USERS, N_ITEMS)
    ids = np.arange(N_USERS)[:, None]
    model.fit([ids, ids % N_ITEMS], np.ones((N_USERS, 1)), verbose=0, epochs=1)  # Adam state for both tables
    model.get_layer("user_emb").set_weights([planted(N_USERS, 1)])
    model.get_layer("item_emb").set_weights([planted(N_ITEMS, 2)])
    model.save_weights(str(tmp_path / "base.weights.h5"))
    group_users = {g: [u for i, u in enumerate(USERS) if group(i) == g] for g in range(GROUPS)}
    group_items = {g: [it for j, it in enumerate(ITEMS) if group(j) == g] for g in range(GROUPS)}
    # each new item: 6 users of its group interact (train), 3 others are held out (test)
    item_train = [(u, n) for k, n in enumerate(NEW_ITEMS) for u in group_users[group(k)][:6]]
    item_test = [(u, n) for k, n in enumerate(NEW_ITEMS) for u in group_users[group(k)][6:9]]
    user_train = [(n, it) for k, n in enumerate(NEW_USERS) for it in group_items[group(k)][:9]]
    user_test = [(n, it) for k, n in enumerate(NEW_USERS) for it in group_items[group(k)][9:12]]
    return {
        "dir": tmp_path,
        "ckpt": tmp_path / "base.weights.h5",
        "before": keras_rows(model),
        "users": write_tsv(tmp_path / "users.txt", [(u,) for u in USERS]),
        "items": write_tsv(tmp_path / "items.txt", [(it,) for it in ITEMS]),
        "new_items": write_tsv(tmp_path / "new_items.txt", [(n,) for n in NEW_ITEMS]),
        "new_users": write_tsv(tmp_path / "new_users.txt", [(n,) for n in NEW_USERS]),
        "base_pairs": write_tsv(tmp_path / "base_pairs.tsv", base_interactions()),
        "item_train": write_tsv(tmp_path / "item_pairs.tsv", item_train),
        "item_test": write_tsv(tmp_path / "item_test.tsv", item_test),
        "user_train": write_tsv(tmp_path / "user_pairs.tsv", user_train),
        "user_test": write_tsv(tmp_path / "user_test.tsv", user_test),
    }


def _keras_options(b):
    return ("--entity-var", "user_emb", "--context-var", "item_emb",
            "--entity-vocab", b["users"], "--context-vocab", b["items"])


def _grow_items(b, out, *extra):
    return _ok("extend", "--ckpt", b["ckpt"], *_keras_options(b), "--new-contexts", b["new_items"],
               "--data", b["item_train"], "--out", out, *TRAIN, "--json", *extra)


def _untrained_mrr(b, test, known, **names) -> float:
    """The same growth with no training step: the new rows' Glorot start, scored the same way."""
    from embretrain.config import resolve_settings

    ckpt = api.load(b["ckpt"], entity_var="user_emb", context_var="item_emb", entity_vocab=b["users"],
                    context_vocab=b["items"])
    grown, _ = api.extend(ckpt, names.get("new_entities"), names["data"], resolve_settings(None, {"epochs": 0}, model="dot"),
                          new_contexts=names.get("new_contexts"))
    return api.evaluate(grown, test, known)["mrr"]


def _summary(result) -> dict:
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- Keras save_weights


def test_keras_two_tower_grows_items_then_users(keras_base):
    b, before = keras_base, keras_base["before"]
    d = b["dir"]
    # 1. new items from user -> item interactions, the user table frozen
    summary = _summary(_grow_items(b, d / "items.weights.h5"))
    assert (summary["contexts_before"], summary["contexts_added"], summary["contexts_untrained"]) == (N_ITEMS, 6, 0)
    assert (summary["entities_before"], summary["entities_added"]) == (N_USERS, 0)
    assert (d / "items.weights.h5.contexts.tsv").read_text().split() == ITEMS + NEW_ITEMS
    assert (d / "items.weights.h5.entities.tsv").read_text().split() == USERS

    after = restored(d / "items.weights.h5", N_USERS, N_ITEMS + 6)
    assert _bits(after["users"]) == _bits(before["users"])  # the frozen tower, whole
    assert _bits(after["items"][:N_ITEMS]) == _bits(before["items"])
    assert np.abs(after["items"][N_ITEMS:]).sum() > 0
    for old, new in zip(before["items_moments"], after["items_moments"]):
        assert np.abs(old).sum() > 0 and _bits(new[:N_ITEMS]) == _bits(old) and not new[N_ITEMS:].any()
    for old, new in zip(before["users_moments"], after["users_moments"]):
        assert _bits(new) == _bits(old)

    # new items rank their planted users (and users rank them) far above random and their untrained start
    grown = api.load(d / "items.weights.h5")  # the sidecars say everything
    assert list(grown.contexts) == ITEMS + NEW_ITEMS and grown.n_contexts == N_ITEMS + 6
    known = [b["base_pairs"], b["item_train"]]
    figures = api.evaluate(grown, b["item_test"], known)
    start = _untrained_mrr(b, b["item_test"], known, new_contexts=b["new_items"], data=b["item_train"])
    assert figures["test_examples"] == 18 and figures["test_skipped_unknown"] == 0
    assert figures["mrr"] > 0.6 and figures["mrr"] > 3 * start, (figures, start)
    assert api.evaluate(grown, b["item_test"], known, new_only=True)["test_examples"] == 18

    ok = _run("verify", b["ckpt"], d / "items.weights.h5", *_keras_options(b))
    assert ok.exit_code == 0, ok.output
    assert "40 entities, 48 contexts" in ok.output and "6 contexts" in ok.output

    # 2. new users from their interactions with frozen items: no option needed, the sidecars describe it
    summary = _summary(_ok("extend", "--ckpt", d / "items.weights.h5", "--new-entities", b["new_users"],
                           "--data", b["user_train"], "--out", d / "users.weights.h5", *TRAIN, "--json"))
    assert (summary["entities_added"], summary["contexts_before"], summary["contexts_added"]) == (4, N_ITEMS + 6, 0)
    again = restored(d / "users.weights.h5", N_USERS + 4, N_ITEMS + 6)
    assert _bits(again["items"]) == _bits(after["items"])  # the frozen tower, whole
    assert _bits(again["users"][:N_USERS]) == _bits(before["users"])
    for old, new in zip(before["users_moments"], again["users_moments"]):
        assert _bits(new[:N_USERS]) == _bits(old) and not new[N_USERS:].any()
    grown_users = api.load(d / "users.weights.h5")
    known = [b["base_pairs"], b["item_train"], b["user_train"]]
    figures = api.evaluate(grown_users, b["user_test"], known, new_only=True)
    assert figures["test_examples"] == 12 and figures["mrr"] > 0.5, figures
    random = np.mean([1 / r for r in range(1, N_ITEMS + 7)])
    assert figures["mrr"] > 3 * random
    ok = _run("verify", d / "items.weights.h5", d / "users.weights.h5")
    assert ok.exit_code == 0, ok.output


def test_verify_names_a_changed_item_row(keras_base):
    b, d = keras_base, keras_base["dir"]
    _grow_items(b, d / "out.weights.h5", "--epochs", "1")
    with h5py.File(d / "out.weights.h5", "r+") as f:
        f["layers/embedding_1/vars/0"][5, 0] += 1.0
    bad = _run("verify", b["ckpt"], d / "out.weights.h5", *_keras_options(b))
    assert bad.exit_code == 1, bad.output
    assert "context 'item05'" in bad.output


# --------------------------------------------------------------------------- TF2 tf.train.Checkpoint


class TwoTower(tf.Module):
    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        self.user_emb = keras.layers.Embedding(n_users, DIM, name="user_emb")
        self.item_emb = keras.layers.Embedding(n_items, DIM, name="item_emb")
        self.user_emb.build((None,))
        self.item_emb.build((None,))


def tf2_program(n_users: int, n_items: int, save_to=None, restore_from=None) -> dict:
    model = TwoTower(n_users, n_items)
    opt = keras.optimizers.Adam(0.1)
    variables = [model.user_emb.embeddings, model.item_emb.embeddings]
    opt.build(variables)
    ckpt = tf.train.Checkpoint(model=model, opt=opt)
    if restore_from is None:
        # one step of some gradient, so Adam's moments of both tables hold state
        opt.apply([tf.random.stateless_normal(v.shape, seed=[i, 7]) for i, v in enumerate(variables)], variables)
        model.user_emb.embeddings.assign(planted(n_users, 1))
        model.item_emb.embeddings.assign(planted(n_items, 2))
        ckpt.save(str(save_to))
    else:
        ckpt.restore(str(restore_from)).assert_existing_objects_matched()
    return {"users": model.user_emb.embeddings.numpy(), "items": model.item_emb.embeddings.numpy(),
            "slots": [v.numpy() for v in opt.variables if len(v.shape) == 2]}


def test_tf2_checkpoint_two_tower_grows_items(keras_base, tmp_path):
    b = keras_base
    before = tf2_program(N_USERS, N_ITEMS, save_to=tmp_path / "tf2" / "ckpt")
    (tmp_path / "grown").mkdir()
    out = tmp_path / "grown" / "ckpt-2"
    _ok("extend", "--ckpt", tmp_path / "tf2", *_keras_options(b), "--new-contexts", b["new_items"],
        "--data", b["item_train"], "--out", out, *TRAIN)
    after = tf2_program(N_USERS, N_ITEMS + 6, restore_from=out)
    assert _bits(after["users"]) == _bits(before["users"])
    assert _bits(after["items"][:N_ITEMS]) == _bits(before["items"]) and np.abs(after["items"][N_ITEMS:]).sum() > 0
    assert len(after["slots"]) == 4
    for old, new in zip(before["slots"], after["slots"]):
        assert _bits(new[: old.shape[0]]) == _bits(old) and not new[old.shape[0]:].any()
    figures = api.evaluate(api.load(out), b["item_test"], [b["base_pairs"], b["item_train"]])
    assert figures["mrr"] > 0.6, figures
    ok = _run("verify", tmp_path / "tf2", out, *_keras_options(b))
    assert ok.exit_code == 0, ok.output


# --------------------------------------------------------------------------- native


def test_native_round_trip_with_contexts(keras_base):
    from embretrain.checkpoint.native import vocab_sha256
    from embretrain.verify import verify

    b, d = keras_base, keras_base["dir"]
    _grow_items(b, d / "grown.h5", "--out-format", "h5")
    with h5py.File(d / "grown.h5") as f:
        names = [n.decode() for n in f["contexts"][()]]
        assert names == ITEMS + NEW_ITEMS
        assert f["contexts"].attrs["sha256"] == vocab_sha256(names)
        assert f[CONTEXT_TABLE].attrs["indexed_by"] == "contexts" and f[CONTEXT_TABLE].shape == (N_ITEMS + 6, DIM)
        assert f[ENTITY_TABLE].shape == (N_USERS, DIM)
        items = f[CONTEXT_TABLE][()]
    assert _bits(items[:N_ITEMS]) == _bits(keras_base["before"]["items"])
    old_options = {"entity_var": "user_emb", "context_var": "item_emb", "entity_vocab": b["users"],
                   "context_vocab": b["items"]}
    assert verify(b["ckpt"], d / "grown.h5", old_options=old_options).ok

    ckpt = api.load(d / "grown.h5")
    assert ckpt.checksums == "verified" and list(ckpt.contexts) == ITEMS + NEW_ITEMS
    assert "48 contexts" not in repr(ckpt) and "54 contexts" in repr(ckpt)
    api.save(ckpt, d / "again.h5")
    with h5py.File(d / "grown.h5") as f, h5py.File(d / "again.h5") as g:
        for name in ("entities", "contexts"):
            assert list(f[name][()]) == list(g[name][()]) and f[name].attrs["sha256"] == g[name].attrs["sha256"]
        for name in (ENTITY_TABLE, CONTEXT_TABLE):
            assert _bits(f[name][()]) == _bits(g[name][()]) and f[name].attrs["sha256"] == g[name].attrs["sha256"]
    info = json.loads(_ok("inspect", d / "grown.h5", "--json").stdout)
    assert info["counts"]["contexts"] == N_ITEMS + 6 and info["vocabularies"]["contexts"]["checksum"] == "ok"
    assert info["tables"][CONTEXT_TABLE]["indexed_by"] == "contexts"
    exported = _ok("export", d / "grown.h5", "--format", "tsv", "--table", CONTEXT_TABLE, "--only-new",
                   "--out", d / "new_items.vectors.tsv")
    assert [line.split("\t")[0] for line in (d / "new_items.vectors.tsv").read_text().splitlines()] == NEW_ITEMS, exported.output

    # grow the native file with new users, its old rows left on disk; verify reads both vocabularies
    _ok("extend", "--ckpt", d / "grown.h5", "--new-entities", b["new_users"], "--data", b["user_train"],
        "--out", d / "users.h5", "--old-rows", "on-disk", "--epochs", "2", "--seed", "3")
    ok = _run("verify", d / "grown.h5", d / "users.h5")
    assert ok.exit_code == 0 and "54 contexts" in ok.output, ok.output
    shutil.copy(d / "users.h5", d / "tampered.h5")
    with h5py.File(d / "tampered.h5", "r+") as f:
        f[CONTEXT_TABLE][50, 1] = 7.0  # a new item of the first run: an old row for this one
    bad = _run("verify", d / "grown.h5", d / "tampered.h5")
    assert bad.exit_code == 1 and "context 'new_item2'" in bad.output, bad.output
    with h5py.File(d / "tampered.h5", "r+") as f:
        del f["contexts"]
        f.create_dataset("contexts", data=ITEMS + NEW_ITEMS[::-1], dtype=h5py.string_dtype(),
                         ).attrs["sha256"] = "0" * 64
    assert _run("inspect", d / "tampered.h5").exit_code == 0  # inspect reports
    broken = _run("evaluate", "--ckpt", d / "tampered.h5", "--test", b["item_test"])
    assert broken.exit_code == 4 and "contexts" in broken.output, broken.output


def test_old_native_pair_files_load_and_grow_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"w{i}" for i in range(10)]
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:  # a pair file as every version before two vocabularies wrote it
        f.attrs.update(format="embretrain", format_version=1, model="dot", dim=4, params="[]")
        f.create_dataset("entities", data=names, dtype=h5py.string_dtype())
        f.create_dataset("relations", shape=(0,), dtype=h5py.string_dtype())
        for table in (ENTITY_TABLE, CONTEXT_TABLE):
            f.create_dataset(table, data=rng.normal(size=(10, 4)).astype(np.float32)).attrs["indexed_by"] = "entities"
    ckpt = api.load(old)
    assert ckpt.contexts is None and ckpt.n_contexts == 10 and ckpt.vocab_kind(CONTEXT_TABLE) == "entities"
    new = write_tsv(tmp_path / "new.txt", [("w10",)])
    pairs = write_tsv(tmp_path / "pairs.tsv", [("w10", "w1"), ("w2", "w10")])
    _ok("extend", "--ckpt", old, "--new-entities", new, "--data", pairs, "--out", tmp_path / "grown.h5", "--epochs", "1")
    with h5py.File(tmp_path / "grown.h5") as f:
        assert "contexts" not in f and f[CONTEXT_TABLE].attrs["indexed_by"] == "entities"
        assert f[CONTEXT_TABLE].shape == (11, 4)
    assert _run("verify", old, tmp_path / "grown.h5").exit_code == 0
    refused = _run("extend", "--ckpt", old, "--new-contexts", new, "--data", pairs, "--out", tmp_path / "x.h5")
    assert refused.exit_code == 2 and "context vocabulary of its own" in refused.output, refused.output

    # a hand-written two-vocabulary file: /contexts names the context rows (no indexed_by needed) ...
    hand = tmp_path / "hand.h5"
    with h5py.File(hand, "w") as f:
        f.attrs["model"] = "dot"
        f.create_dataset("entities", data=names, dtype=h5py.string_dtype())
        f.create_dataset("contexts", data=["c0", "c1", "c2"], dtype=h5py.string_dtype())
        f.create_dataset(ENTITY_TABLE, data=rng.normal(size=(10, 4)).astype(np.float32))
        f.create_dataset(CONTEXT_TABLE, data=rng.normal(size=(3, 4)).astype(np.float32))
    with pytest.warns(UserWarning):
        assert list(api.load(hand).contexts) == ["c0", "c1", "c2"]
    # ... and /contexts without a context table is refused
    with h5py.File(hand, "r+") as f:
        del f[CONTEXT_TABLE]
    bad = _run("inspect", hand)
    assert bad.exit_code == 4 and "/contexts" in bad.output, bad.output


# --------------------------------------------------------------------------- the b side's negatives


def test_b_negatives_come_from_the_context_vocabulary():
    from embretrain.models import get_model
    from embretrain.tables import split_tables
    from embretrain.train import Embeddings

    rng = np.random.default_rng(0)
    old = {ENTITY_TABLE: planted(5, 1), CONTEXT_TABLE: planted(40, 2)}
    tables = split_tables(old, {ENTITY_TABLE: 0, CONTEXT_TABLE: 4}, rng)
    assert tables[ENTITY_TABLE].trainable == []  # the frozen tower has nothing to train
    assert [tuple(v.shape) for v in tables[CONTEXT_TABLE].trainable] == [(4, DIM)]
    emb = Embeddings(get_model("dot"), tables, context_vocab=True, negative_new_context_ids=np.array([41, 43]))
    draws = emb.sample_b_negatives(tf.random.Generator.from_seed(0), [200, 8]).numpy()
    allowed = set(range(40)) | {41, 43}  # old items and the new ones with data; never 40 or 42
    assert set(np.unique(draws)) == allowed  # ids past the 5 entities: the b vocabulary
    one_vocab = Embeddings(get_model("dot"), split_tables({ENTITY_TABLE: planted(5, 1), CONTEXT_TABLE: planted(5, 2)}, 1, rng))
    assert np.unique(one_vocab.sample_b_negatives(tf.random.Generator.from_seed(0), [100, 4]).numpy()).max() == 5


def test_untrained_new_items_keep_their_start_and_bad_inputs_are_named(keras_base):
    b, d = keras_base, keras_base["dir"]
    more = write_tsv(d / "more_items.txt", [(n,) for n in NEW_ITEMS + ["lonely"]])
    plan = _summary(_ok("extend", "--dry-run", "--json", "--ckpt", b["ckpt"], *_keras_options(b), "--new-contexts", more,
                        "--data", b["item_train"], "--out", d / "o.weights.h5"))
    assert (plan["contexts_added"], plan["contexts_untrained"], plan["examples_used"]) == (7, 1, 36)
    from embretrain.config import resolve_settings

    ckpt = api.load(b["ckpt"], entity_var="user_emb", context_var="item_emb", entity_vocab=b["users"],
                    context_vocab=b["items"])
    grown, _ = api.extend(ckpt, None, b["item_train"], resolve_settings(None, {"epochs": 0}, model="dot"), new_contexts=more)
    start = np.asarray(grown.entity_tables[CONTEXT_TABLE])[-1].copy()
    grown, _ = api.extend(ckpt, None, b["item_train"], resolve_settings(None, {"epochs": 3}, model="dot"), new_contexts=more)
    assert _bits(np.asarray(grown.entity_tables[CONTEXT_TABLE])[-1]) == _bits(start)  # never drawn, never moved

    # a new user without data stays pending, and trains (in the user table only) the night a pair names it
    night1, _ = api.extend(ckpt, ["late_user"], b["item_train"], resolve_settings(None, {"epochs": 1}, model="dot"),
                           new_contexts=more)
    assert night1.pending == ["late_user"] and night1.n_contexts == N_ITEMS + 7
    night2, summary = api.extend(night1, None, [("late_user", "item03")], resolve_settings(None, {"epochs": 2}, model="dot"))
    assert summary["entities_pending_trained"]["count"] == 1 and night2.pending == []
    items1, items2 = (np.asarray(c.entity_tables[CONTEXT_TABLE]) for c in (night1, night2))
    assert _bits(items1) == _bits(items2)  # the item table has no pending row: frozen whole
    users1, users2 = (np.asarray(c.entity_tables[ENTITY_TABLE]) for c in (night1, night2))
    assert _bits(users1[:-1]) == _bits(users2[:-1]) and _bits(users1[-1]) != _bits(users2[-1])

    unknown = write_tsv(d / "unknown.tsv", [("user01", "item01"), ("user02", "no_such_item")])
    bad = _run("extend", "--ckpt", b["ckpt"], *_keras_options(b), "--new-contexts", b["new_items"],
               "--data", unknown, "--out", d / "o.weights.h5")
    assert bad.exit_code == 3 and "unknown.tsv:2: unknown context 'no_such_item'" in bad.output, bad.output
    short = write_tsv(d / "short.txt", [(it,) for it in ITEMS[:-1]])
    bad = _run("extend", "--ckpt", b["ckpt"], "--entity-var", "user_emb", "--context-var", "item_emb",
               "--entity-vocab", b["users"], "--context-vocab", short, "--new-contexts", b["new_items"],
               "--data", b["item_train"], "--out", d / "o.weights.h5")
    assert bad.exit_code == 4 and "47 context names" in bad.output, bad.output
    bad = _run("extend", "--ckpt", b["ckpt"], "--entity-var", "user_emb", "--context-var", "item_emb",
               "--entity-vocab", b["users"], "--new-contexts", b["new_items"], "--data", b["item_train"],
               "--out", d / "o.weights.h5")
    assert bad.exit_code == 4 and "--context-vocab" in bad.output, bad.output
    bad = _run("extend", "--ckpt", b["ckpt"], "--entity-var", "user_emb", "--entity-vocab", b["users"],
               "--context-vocab", b["items"], "--new-contexts", b["new_items"], "--data", b["item_train"],
               "--out", d / "o.weights.h5")
    assert bad.exit_code == 2 and "--context-var" in bad.output, bad.output
