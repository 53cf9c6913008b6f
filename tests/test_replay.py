"""extend --replay: old triples replayed with new-entity negatives push new rows out of old answers; old rows stay put."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import toy_graph, write_tsv

pytest.importorskip("tensorflow")

from embretrain import api as et  # noqa: E402
from embretrain.checkpoint import ENTITY_TABLE, native  # noqa: E402
from embretrain.cli import main  # noqa: E402
from embretrain.config import Settings  # noqa: E402
from embretrain.errors import UsageError  # noqa: E402

TRAIN = ["--dim", "8", "--epochs", "3", "--batch-size", "16", "--negatives", "4", "--lr", "0.05", "--seed", "1",
         "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    base, new, delta = toy_graph()
    out = {"dir": d, "train": write_tsv(d / "train.tsv", base), "new": write_tsv(d / "new.tsv", [(n,) for n in new]),
           "delta": write_tsv(d / "delta.tsv", delta), "n_delta": len(delta), "n_base": len(base),
           "n_delta_old_only": sum(1 for h, _, t in delta if h not in set(new) and t not in set(new))}
    r = CliRunner().invoke(main, ["-q", "train", "--data", str(out["train"]), "--out", str(d / "base.h5"), *TRAIN])
    assert r.exit_code == 0, r.output
    return out


def _extend(files, out, *extra):
    args = ["-q", "extend", "--ckpt", str(files["dir"] / "base.h5"), "--new-entities", str(files["new"]),
            "--data", str(files["delta"]), "--out", str(out), "--json", *TRAIN[2:], *extra]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_replay_moves_new_rows_differently_and_keeps_old_rows(files, tmp_path):
    plain = _extend(files, tmp_path / "plain.h5")
    replayed = _extend(files, tmp_path / "replay.h5", "--replay", str(files["train"]))
    assert replayed["replay_examples"] == files["n_base"] and replayed["replay_skipped"] == 0
    assert "replay_examples" not in plain
    base = native.load(files["dir"] / "base.h5")
    a, b = native.load(tmp_path / "plain.h5"), native.load(tmp_path / "replay.h5")
    n_old = base.n_entities
    for name, table in base.tables().items():
        assert np.array_equal(b.tables()[name][: len(table)], table), f"{name}: old rows moved"
    assert not np.array_equal(a.entity_tables[ENTITY_TABLE][n_old:], b.entity_tables[ENTITY_TABLE][n_old:])
    assert b.lineage[-1]["replay_examples"] == files["n_base"]
    assert str(files["train"]) in b.lineage[-1]["inputs_sha256"]


def test_replay_lines_touching_new_names_are_skipped(files, tmp_path):
    """The delta as replay file: only its lines among old entities are replayed, the others are skipped."""
    summary = _extend(files, tmp_path / "out.h5", "--replay", str(files["delta"]))
    n_old_only = files["n_delta_old_only"]
    assert n_old_only < files["n_delta"]
    assert summary["replay_examples"] == n_old_only
    assert summary["replay_skipped"] == files["n_delta"] - n_old_only


def test_replay_needs_a_triple_model():
    ckpt, _ = et.train([("a", "b"), ("b", "c")], Settings(model="dot", dim=4, epochs=1), progress=False)
    with pytest.raises(UsageError, match="triple model"):
        et.extend(ckpt, ["d"], [("d", "a")], Settings(model="dot", dim=4, epochs=1), replay=[("a", "r", "b")])
