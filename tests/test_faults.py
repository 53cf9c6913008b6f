"""Faults a cron job meets: SIGKILL at any moment, a file-size limit, a second run on the same output.

The guarantee under test: the input checkpoint is never damaged, and the output is either absent
(or, in place, the old version) or complete and valid — never a partial file.

SIGKILL: TensorFlow takes 3-20 s to import on a loaded machine, so a fresh interpreter per kill
would make 21 kills take minutes. The runs are forked instead from this process after
``import tensorflow`` (no op has run yet, so no TF thread pool exists to be broken by fork);
each child is a real, separate process running the real CLI, killed with a real SIGKILL. Kill
moments are drawn inside phase windows measured on an uninterrupted reference run, starting at the
log lines that open each phase ("loading", "training", "writing"), so load, training and writing
are each hit seven times. The file-size-limit and the concurrency tests use fresh subprocesses.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from embretrain.checkpoint import Checkpoint, native
from embretrain.errors import EXIT_INTERNAL, EXIT_LOCKED

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
N_OLD, DIM, N_NEW = 150_000, 64, 100  # a 44 MB table: writing it takes measurable time
PHASES = {"load": "INFO loading ", "train": "INFO training ", "write": "INFO writing "}
PHASE_END = {"load": "INFO training ", "train": "INFO writing ", "write": "INFO saved "}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> dict[str, np.ndarray]:
    ckpt = native.load(path)  # recomputes every sha256 and rejects NaN: a partial file cannot pass
    return ckpt.tables()


def _temps(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name)


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
    return d


def _argv(d: Path, ckpt: Path, out: Path) -> list[str]:
    return ["extend", "--ckpt", str(ckpt), "--new-entities", str(d / "new.tsv"), "--data", str(d / "delta.tsv"),
            "--out", str(out), "--epochs", "2", "--batch-size", "256", "--negatives", "4", "--seed", "3"]


def _forked_run(argv, phase=None, delay=0.0):
    """Run the CLI in a forked child; SIGKILL it ``delay`` s after the line opening ``phase``.

    Returns ``(killed, exit_code, {marker: seconds since start})``.
    """
    import tensorflow  # noqa: F401  (imported before fork, see the module docstring)

    from embretrain.cli import main

    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 70
        try:
            os.close(r)
            os.dup2(w, 2)
            sys.stderr = os.fdopen(2, "w", buffering=1)  # pytest replaced sys.stderr; logging must reach fd 2
            sys.stdout = open(os.devnull, "w")
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    os.close(w)
    seen: dict[str, float] = {}
    timer = None
    with os.fdopen(r, errors="replace") as stream:
        for line in stream:
            now = time.monotonic() - t0
            for marker in {**PHASES, **{"done": "INFO saved "}}.values():
                if marker in line:
                    seen.setdefault(marker, now)
            if phase and timer is None and PHASES[phase] in line:
                timer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
                timer.start()
    _, status = os.waitpid(pid, 0)
    if timer:
        timer.cancel()
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return killed, (None if killed else os.WEXITSTATUS(status)), seen


def test_sigkill_at_random_moments_never_leaves_a_partial_file(big, tmp_path):
    original = _sha256(big / "base.h5")
    # Reference: an uninterrupted run gives the expected tables (runs are deterministic) and phase timings.
    killed, code, seen = _forked_run(_argv(big, big / "base.h5", tmp_path / "reference.h5"))
    assert not killed and code == 0
    expected = _tables(tmp_path / "reference.h5")
    windows = {p: seen[PHASE_END[p]] - seen[PHASES[p]] for p in PHASES}

    rng = random.Random(12345)
    kills = {p: 0 for p in PHASES}
    outcomes = {"absent/old": 0, "complete": 0}
    mid_write = 0  # kills that left a temp file behind: they landed while the output was being written
    shared = tmp_path / "shared"  # not in place: one directory, so stale temps pile up and get cleaned
    shared.mkdir()

    def trials():
        """Cycle the phases (in place every other time) until each has 7 kills; a run that finished
        before its kill moment (load varies) does not count, so the loop keeps going (at most 45)."""
        for i in range(45):
            phase = ("load", "train", "write")[i % 3]
            if min(kills.values()) >= 7:
                return
            if kills[phase] < 7:
                yield i, phase, (i // 3) % 2 == 1

    for i, phase, in_place in trials():
        if in_place:
            d = tmp_path / f"inplace{i}"
            d.mkdir()
            shutil.copyfile(big / "base.h5", d / "pub.h5")
            ckpt = out = d / "pub.h5"
        else:
            d, ckpt, out = shared, big / "base.h5", shared / "merged.h5"
            out.unlink(missing_ok=True)
        # writes get up to 1.6x their window so some kills land after the rename as well
        delay = rng.uniform(0, windows[phase] * (1.6 if phase == "write" else 1.0))
        temps_before = len(_temps(d))
        killed, code, _ = _forked_run(_argv(big, ckpt, out), phase, delay)
        mid_write += len(_temps(d)) > temps_before
        assert killed or code == 0, (phase, code)
        kills[phase] += killed

        assert _sha256(big / "base.h5") == original
        if in_place:
            if _sha256(out) == original:  # the old version, untouched
                outcomes["absent/old"] += 1
            else:  # the new version, complete; the old one kept as the backup
                got = _tables(out)
                assert all(np.array_equal(got[k], expected[k]) for k in expected)
                assert _sha256(out.with_name("pub.h5.1")) == original
                outcomes["complete"] += 1
            shutil.rmtree(d)
        elif out.exists():
            got = _tables(out)
            assert all(np.array_equal(got[k], expected[k]) for k in expected)
            outcomes["complete"] += 1
        else:
            outcomes["absent/old"] += 1

    print(f"\nphase windows (s): {windows}; kills per phase: {kills}; outcomes: {outcomes}; mid-write: {mid_write}")
    assert sum(kills.values()) >= 20 and min(kills.values()) >= 6, kills
    assert mid_write >= 2, "the write-phase kills never hit a write in progress: the test proved little"

    # The night after: a normal run succeeds despite a killed run's lock file and temp files, and cleans them.
    killed, code, _ = _forked_run(_argv(big, big / "base.h5", shared / "merged.h5"))
    assert not killed and code == 0
    assert _temps(shared) == [] and not (shared / "merged.h5.lock").exists()
    got = _tables(shared / "merged.h5")
    assert all(np.array_equal(got[k], expected[k]) for k in expected)

    from embretrain.cli import main

    if "verify" in main.commands:  # the publishing gate of scripts/nightly.sh agrees
        from click.testing import CliRunner

        result = CliRunner().invoke(main, ["verify", str(big / "base.h5"), str(shared / "merged.h5")])
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
