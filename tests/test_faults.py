"""Faults a cron job meets: SIGKILL at any moment, a file-size limit, a second run on the same output.

The guarantee under test: the input checkpoint is never damaged, and the output is either absent
(or, in place, the old version) or complete and valid — never a partial file.

SIGKILL: TensorFlow takes 3-20 s to import on a loaded machine, so a fresh interpreter per kill
would make 21 kills take minutes. ``tests/fault_harness.py`` runs in one fresh interpreter that
imports TensorFlow (and never runs an op, which is what makes fork safe) and forks each run from
there: every run is a real separate process running the real CLI, killed with a real SIGKILL at a
moment drawn inside the measured load / training / writing windows. The file-size-limit and the
concurrency tests use fresh subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embretrain.checkpoint import Checkpoint, native
from embretrain.errors import EXIT_INTERNAL, EXIT_LOCKED

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
N_OLD, DIM, N_NEW = 150_000, 64, 100  # a 44 MB table: writing it takes measurable time
BASE_SHA: list[str] = []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> dict[str, np.ndarray]:
    ckpt = native.load(path)  # recomputes every sha256 and rejects NaN: a partial file cannot pass
    return ckpt.tables()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    old = [f"e{i}" for i in range(N_OLD)]
    rels = [f"r{i}" for i in range(4)]
    native.save(
        Checkpoint(
            model="transe", entities=old, relations=rels,
            entity_tables={"entity_embeddings": rng.normal(size=(N_OLD, DIM)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.normal(size=(4, DIM)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        ),
        d / "base.h5",
    )
    new = [f"n{i}" for i in range(N_NEW)]
    (d / "new.tsv").write_text("".join(f"{n}\n" for n in new))
    (d / "delta.tsv").write_text("".join(f"{new[i % N_NEW]}\t{rels[i % 4]}\t{old[i * 37 % N_OLD]}\n" for i in range(1000)))
    BASE_SHA[:] = [_sha256(d / "base.h5")]
    return d


def _argv(d: Path, ckpt: Path, out: Path) -> list[str]:
    return ["extend", "--ckpt", str(ckpt), "--new-entities", str(d / "new.tsv"), "--data", str(d / "delta.tsv"),
            "--out", str(out), "--epochs", "2", "--batch-size", "256", "--negatives", "4", "--seed", "3"]


def test_sigkill_at_random_moments_never_leaves_a_partial_file(big):
    """21+ kills in load, training and writing, in place and not (see tests/fault_harness.py)."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fault_harness.py")), str(big)],
        env=ENV, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nSIGKILL harness: {summary}")
    kills = summary["kills"]
    assert sum(kills.values()) >= 20 and min(kills.values()) >= 6, kills
    assert summary["mid_write"] >= 2, "the write-phase kills never hit a write in progress: the test proved little"
    assert _sha256(big / "base.h5") == BASE_SHA[0]

    from embretrain.cli import main

    if "verify" in main.commands:  # the publishing gate of scripts/nightly.sh agrees
        from click.testing import CliRunner

        result = CliRunner().invoke(main, ["verify", str(big / "base.h5"), summary["final"]])
        assert result.exit_code == 0, result.output


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us; ignored, write() gets EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_file_size_limit_fails_cleanly_and_loses_nothing(big, tmp_path):
    pub = tmp_path / "pub.h5"
    shutil.copyfile(big / "base.h5", pub)
    before = _sha256(pub)
    size = pub.stat().st_size
    proc = subprocess.run(
        [sys.executable, "-m", "embretrain", *_argv(big, pub, pub), "--keep", "2"],
        env=ENV, capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size(size // 2),
    )
    assert proc.returncode == EXIT_INTERNAL, proc.stderr
    assert "File too large" in proc.stderr and f"cannot write {pub}" in proc.stderr
    assert "nothing was written" in proc.stderr and "Traceback" not in proc.stderr
    assert _sha256(pub) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub.h5"]  # no backup shuffle, no temp, no lock


def test_two_concurrent_runs_one_wins_the_other_exits_locked(big, tmp_path):
    out = tmp_path / "merged.h5"
    procs = [
        subprocess.Popen([sys.executable, "-m", "embretrain", *_argv(big, big / "base.h5", out)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        results.append((p.returncode, err))
    codes = sorted(code for code, _ in results)
    assert codes == [0, EXIT_LOCKED], results
    loser = next(err for code, err in results if code == EXIT_LOCKED)
    winner_pid = next(p.pid for p, (code, _) in zip(procs, results) if code == 0)
    assert f"is locked by another run (pid {winner_pid} holds {out}.lock)" in loser
    assert "Traceback" not in loser
    _tables(out)  # the winner's output is complete and valid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.h5"]
