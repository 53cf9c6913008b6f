"""Same inputs + same --seed => byte-identical tables, across separate processes (as cron would run them)."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np

from embretrain.checkpoint import Checkpoint, native

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}


def _fixture(d):
    """A base big enough for multi-threaded kernels and several batches per epoch (not a 3-row toy)."""
    rng = np.random.default_rng(0)
    n_old, n_new, dim = 2000, 200, 16
    old = [f"e{i}" for i in range(n_old)]
    new = [f"n{i}" for i in range(n_new)]
    rels = [f"r{i}" for i in range(5)]
    native.save(
        Checkpoint(
            model="transe", entities=old, relations=rels,
            entity_tables={"entity_embeddings": rng.normal(size=(n_old, dim)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.normal(size=(5, dim)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        ),
        d / "base.h5",
    )
    (d / "new.tsv").write_text("".join(f"{n}\n" for n in new))
    lines = []
    for i in range(3000):
        a, b = new[i % n_new], old[int(rng.integers(n_old))]
        lines.append((a, rels[i % 5], b) if i % 2 else (b, rels[i % 5], a))
    (d / "delta.tsv").write_text("".join("\t".join(t) + "\n" for t in lines))


def _extend(d, out, seed):
    return subprocess.Popen(
        [sys.executable, "-m", "embretrain", "-q", "extend", "--ckpt", str(d / "base.h5"),
         "--new-entities", str(d / "new.tsv"), "--data", str(d / "delta.tsv"), "--out", str(d / out),
         "--epochs", "2", "--batch-size", "256", "--negatives", "8", "--threads", "2", "--seed", str(seed)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _tables(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in ("entity_embeddings", "relation_embeddings")}


def test_same_seed_gives_byte_identical_tables_and_another_seed_does_not(tmp_path):
    _fixture(tmp_path)
    runs = {out: _extend(tmp_path, out, seed) for out, seed in (("a.h5", 7), ("b.h5", 7), ("c.h5", 8))}
    for out, proc in runs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b, c = (_tables(tmp_path / out) for out in ("a.h5", "b.h5", "c.h5"))
    for name in a:
        assert np.array_equal(a[name], b[name]), name
        assert a[name].tobytes() == b[name].tobytes(), name  # also -0.0 vs 0.0 and NaN payloads
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        assert fa["entity_embeddings"].attrs["sha256"] == fb["entity_embeddings"].attrs["sha256"]
    # not vacuous: the seed really drives the new rows (old rows are frozen, so equal in all three)
    assert not np.array_equal(a["entity_embeddings"][2000:], c["entity_embeddings"][2000:])
    assert np.array_equal(a["entity_embeddings"][:2000], c["entity_embeddings"][:2000])
