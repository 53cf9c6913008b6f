"""extend's ``new_negatives``: a share of every draw of negatives comes from the new entities only."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from embretrain.cli import main  # noqa: E402
from embretrain.models import get_model  # noqa: E402
from embretrain.tables import split_tables  # noqa: E402
from embretrain.train import Embeddings  # noqa: E402


def _share_of_new(share: float, n_old: int = 100, n_new: int = 10, draws: int = 20000) -> float:
    rng = np.random.default_rng(0)
    old = {"entity_embeddings": rng.normal(size=(n_old, 4)).astype(np.float32)}
    emb = Embeddings(get_model("transe"), split_tables(old, n_new, rng), new_negative_share=share)
    ids = emb.sample_negatives(tf.random.Generator.from_seed(1), [draws]).numpy()
    assert ids.min() >= 0 and ids.max() < n_old + n_new
    return float(np.mean(ids >= n_old))


def test_a_share_of_the_negatives_comes_from_the_new_rows():
    uniform = 10 / 110
    assert _share_of_new(0.0) == pytest.approx(uniform, abs=0.01)
    assert _share_of_new(0.5) == pytest.approx(0.5 + 0.5 * uniform, abs=0.015)
    assert _share_of_new(0.9) == pytest.approx(0.9 + 0.1 * uniform, abs=0.015)


def test_extend_with_new_negatives_keeps_old_rows_and_records_the_setting(toy):
    d = toy["dir"]
    run = CliRunner().invoke
    assert run(main, ["train", "--data", str(toy["train"]), "--out", str(d / "b.h5"), "--preset", "ci-smoke"]).exit_code == 0
    argv = ["extend", "--ckpt", str(d / "b.h5"), "--new-entities", str(toy["new"]), "--data", str(toy["delta"]),
            "--preset", "ci-smoke", "--json"]
    plain = run(main, argv + ["--out", str(d / "plain.h5")])
    mixed = run(main, argv + ["--out", str(d / "mixed.h5"), "--new-negatives", "0.5"])
    assert plain.exit_code == 0 and mixed.exit_code == 0, mixed.output
    summary = json.loads(mixed.stdout)
    assert summary["settings_source"]["new_negatives"] == "option"
    assert run(main, ["verify", str(d / "b.h5"), str(d / "mixed.h5")]).exit_code == 0
    import h5py

    with h5py.File(d / "plain.h5") as a, h5py.File(d / "mixed.h5") as b:
        n_old = len(h5py.File(d / "b.h5")["entities"])
        assert np.array_equal(a["entity_embeddings"][:n_old], b["entity_embeddings"][:n_old])
        assert not np.array_equal(a["entity_embeddings"][n_old:], b["entity_embeddings"][n_old:])  # other draws
    bad = run(main, argv + ["--out", str(d / "bad.h5"), "--new-negatives", "1"])
    assert bad.exit_code == 2 and "--new-negatives" in bad.output
