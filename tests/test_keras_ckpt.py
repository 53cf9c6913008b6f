"""Keras 3 files, proved with the user's own model: a model with an ``Embedding`` layer saves its
weights (or the whole ``.keras`` archive), ``embretrain extend`` grows them, the model rebuilt with
``n_e + k`` rows loads them; old rows bit-identical, the dense layer and optimizer state unchanged.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_tsv
from embretrain.checkpoint import ENTITY_TABLE, format_of, load, save
from embretrain.checkpoint.base import Checkpoint
from embretrain.cli import main
from embretrain.errors import EmbretrainError, UsageError

keras = pytest.importorskip("keras")

N_E, DIM, K = 10, 4, 2
OLD = [f"user{i}" for i in range(N_E)]
NEW = ["newbie", "late one"]


def build(n_e: int):
    """The user's model: ids -> Embedding -> Flatten -> Dense, trained with Adam."""
    model = keras.Sequential([
        keras.Input((2,), dtype="int32"),
        keras.layers.Embedding(n_e, DIM, name="users"),
        keras.layers.Flatten(),
        keras.layers.Dense(1, name="head"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def trained(n_e: int):
    keras.utils.set_random_seed(0)
    model = build(n_e)
    x = np.array([[0, 1], [2, 3], [4, 9]], dtype=np.int32)
    model.fit(x, np.ones((3, 1)), epochs=2, verbose=0)
    return model


def _state(model) -> dict:
    table = model.get_layer("users").embeddings
    return {
        "table": table.numpy(),
        "head": [w.numpy() for w in model.get_layer("head").weights],
        "slots": [v.numpy() for v in model.optimizer.variables if tuple(v.shape) == tuple(table.shape)],
        "iterations": int(model.optimizer.iterations.numpy()),
    }


@pytest.fixture
def inputs(tmp_path):
    pairs = [(n, OLD[(i * 3 + j) % N_E]) for i, n in enumerate(NEW) for j in range(4)]
    return {
        "vocab": write_tsv(tmp_path / "users.txt", [(n,) for n in OLD]),
        "new": write_tsv(tmp_path / "new.txt", [(n,) for n in NEW]),
        "pairs": write_tsv(tmp_path / "pairs.tsv", pairs),
    }


def _extend(ckpt, out, inputs, *extra):
    result = CliRunner().invoke(main, [
        "extend", "--ckpt", str(ckpt), "--new-entities", str(inputs["new"]), "--data", str(inputs["pairs"]),
        "--out", str(out), "--epochs", "2", "--batch-size", "4", *extra,
    ])
    assert result.exit_code == 0, result.output + str(result.exception)


def _check_grown(before: dict, after: dict) -> None:
    assert after["table"].shape == (N_E + K, DIM)
    assert after["table"][:N_E].tobytes() == before["table"].tobytes()
    assert np.abs(after["table"][N_E:]).sum() > 0
    assert all(a.tobytes() == b.tobytes() for a, b in zip(after["head"], before["head"]))
    assert after["iterations"] == before["iterations"] > 0
    assert len(after["slots"]) == len(before["slots"]) == 2  # Adam m and v of the table
    for old, new in zip(before["slots"], after["slots"]):
        assert np.abs(old).sum() > 0
        assert new[:N_E].tobytes() == old.tobytes() and not new[N_E:].any()


def test_weights_file_loads_into_the_rebuilt_model(tmp_path, inputs):
    model = trained(N_E)
    model.save_weights(tmp_path / "model.weights.h5")
    before = _state(model)
    assert format_of(tmp_path / "model.weights.h5") == "keras"

    out = tmp_path / "grown.weights.h5"
    # No --entity-var: "layers/embedding/vars/0" is the only 2-D float32 variable with len(vocab) rows.
    _extend(tmp_path / "model.weights.h5", out, inputs, "--entity-vocab", str(inputs["vocab"]))

    bigger = build(N_E + K)
    bigger.optimizer.build(bigger.trainable_variables)
    bigger.load_weights(out)
    _check_grown(before, _state(bigger))
    assert (tmp_path / "grown.weights.h5.entities.tsv").read_text(encoding="utf-8").splitlines() == OLD + NEW


def test_keras_archive_loads_with_load_model(tmp_path, inputs):
    model = trained(N_E)
    model.save(tmp_path / "model.keras")
    before = _state(model)
    out = tmp_path / "grown.keras"
    _extend(tmp_path / "model.keras", out, inputs, "--entity-var", "layers/embedding/vars/0",
            "--entity-vocab", str(inputs["vocab"]))

    loaded = keras.models.load_model(out)
    assert loaded.get_layer("users").input_dim == N_E + K  # config.json was grown too
    _check_grown(before, _state(loaded))
    with zipfile.ZipFile(out) as z, zipfile.ZipFile(tmp_path / "model.keras") as z0:
        assert json.loads(z.read("metadata.json")) == json.loads(z0.read("metadata.json"))


def test_inspect_and_conversion(tmp_path):
    model = trained(N_E)
    model.save_weights(tmp_path / "m.weights.h5")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.weights.h5")])
    assert result.exit_code == 0, result.output
    assert f"layers/embedding/vars/0: [{N_E}, {DIM}] float32" in result.output
    assert "optimizer/vars/2" in result.output

    native = Checkpoint(model="dot", entities=OLD, relations=[],
                        entity_tables={ENTITY_TABLE: np.arange(N_E * DIM, dtype=np.float32).reshape(N_E, DIM)})
    save(native, tmp_path / "conv.weights.h5", format="keras")
    back = load(tmp_path / "conv.weights.h5")
    assert back.entities == OLD and back.extras["keys"] == {ENTITY_TABLE: "layers/embedding/vars/0"}
    assert back.entity_tables[ENTITY_TABLE].tobytes() == native.entity_tables[ENTITY_TABLE].tobytes()
    # ...and that layout is what a Keras model with one Embedding layer loads.
    plain = keras.Sequential([keras.Input((1,), dtype="int32"), keras.layers.Embedding(N_E, DIM)])
    plain.load_weights(tmp_path / "conv.weights.h5")
    assert plain.layers[0].embeddings.numpy().tobytes() == native.entity_tables[ENTITY_TABLE].tobytes()
    with pytest.raises(UsageError, match="only a .keras input carries"):
        save(native, tmp_path / "conv.keras", format="keras")
    with pytest.raises(UsageError, match="must end in .weights.h5"):
        save(native, tmp_path / "conv.h5", format="keras")


def _hand_archive(path):
    """A .keras archive written with zipfile + h5py (no TensorFlow) and its entity sidecar."""
    import h5py

    h5 = path.with_name("w.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("layers/embedding/vars/0", data=np.ones((N_E, DIM), np.float32))
    cfg = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Embedding", "config": {"name": "embedding", "input_dim": N_E, "output_dim": DIM}}]}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(cfg))
        z.writestr("metadata.json", "{}")
        z.writestr("assets/big.bin", b"\1" * (3 << 20))  # an unrelated member, copied member by member
        z.write(h5, "model.weights.h5")
    h5.unlink()
    path.with_name(path.name + ".entities.tsv").write_text("".join(n + "\n" for n in OLD))
    return path


def test_archive_save_copies_members_streamed_and_writes_the_unit_atomically(tmp_path, monkeypatch):
    from embretrain.checkpoint import keras as keras_fmt

    src = _hand_archive(tmp_path / "m.keras")
    ckpt = load(src)
    assert "keras_members" not in ckpt.extras  # nothing of the archive is held in memory
    out = tmp_path / "out.keras"
    save(ckpt, out)
    with zipfile.ZipFile(out) as z:
        assert z.read("assets/big.bin") == b"\1" * (3 << 20)
        assert json.loads(z.read("config.json"))["config"]["layers"][0]["config"]["input_dim"] == N_E
    listing = sorted(p.name for p in tmp_path.iterdir())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # a failure while writing the checkpoint leaves the old unit (checkpoint + sidecars), no temp file
    monkeypatch.setattr(keras_fmt, "_write_h5", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    grown = load(src)
    grown.entities = OLD + ["fresh"]
    with pytest.raises(EmbretrainError, match="No space left on device; nothing was written"):
        save(grown, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_names_a_sidecar_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    from embretrain.errors import CheckpointError

    src = _hand_archive(tmp_path / "m.keras")
    ckpt = load(src)
    ckpt.entities = OLD[:-1] + ["has\ttab"]
    listing = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError, match=r"entity row 9: name 'has\\ttab' contains a tab"):
        save(ckpt, tmp_path / "out.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
