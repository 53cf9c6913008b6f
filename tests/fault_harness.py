"""SIGKILL harness for tests/test_faults.py, run in a fresh interpreter: ``python fault_harness.py DIR``.

Why a separate process: each kill needs a process that has imported TensorFlow (3-20 s on a loaded
machine), so the runs are forked from one parent that imported it. fork() is only safe before
TensorFlow has run an op (afterwards its thread pools hold locks the child inherits, and the child
deadlocks), and the pytest process may already have run ops in earlier tests: so the parent is this
fresh interpreter, which imports TensorFlow and never runs an op itself. Each forked child is a
real separate process running the real CLI and killed with a real SIGKILL; a watchdog kills any
child still alive after ``WATCHDOG_S`` so nothing can hang.

DIR holds base.h5, new.tsv and delta.tsv. Kill moments are drawn inside phase windows measured on an
uninterrupted reference run, starting at the log lines that open each phase ("loading", "training",
"writing"), until load, training and writing have each been hit seven times. After every kill the
input must be byte-identical and the output absent (in place: the old version) or complete, valid
and equal to the reference. Prints one JSON summary line; any broken guarantee raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

PHASES = {"load": "INFO loading ", "train": "INFO training ", "write": "INFO writing "}
PHASE_END = {"load": "INFO training ", "train": "INFO writing ", "write": "INFO saved "}
KILLS_PER_PHASE = 7
MAX_TRIALS = 60
WATCHDOG_S = 300.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> dict[str, np.ndarray]:
    from embretrain.checkpoint import native

    return native.load(path).tables()  # recomputes every sha256 and rejects NaN: a partial file cannot pass


def _temps(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name)


def _argv(d: Path, ckpt: Path, out: Path) -> list[str]:
    return ["extend", "--ckpt", str(ckpt), "--new-entities", str(d / "new.tsv"), "--data", str(d / "delta.tsv"),
            "--out", str(out), "--epochs", "2", "--batch-size", "256", "--negatives", "4", "--seed", "3"]


def forked_run(argv, phase=None, delay=0.0):
    """Run the CLI in a forked child; SIGKILL it ``delay`` s after the line opening ``phase``.

    Returns ``(killed, exit_code, {marker: seconds since start})``.
    """
    from embretrain.cli import main

    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.close(r)
            os.dup2(w, 2)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            sys.stdout = open(os.devnull, "w")
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    os.close(w)
    seen: dict[str, float] = {}
    timers = [threading.Timer(WATCHDOG_S, os.kill, (pid, signal.SIGKILL))]  # never hang
    timers[0].start()
    with os.fdopen(r, errors="replace") as stream:
        for line in stream:
            now = time.monotonic() - t0
            for marker in {**PHASES, "done": "INFO saved "}.values():
                if marker in line:
                    seen.setdefault(marker, now)
            if phase and len(timers) == 1 and PHASES[phase] in line:
                timers.append(threading.Timer(delay, os.kill, (pid, signal.SIGKILL)))
                timers[1].start()
    _, status = os.waitpid(pid, 0)
    for t in timers:
        t.cancel()
    if time.monotonic() - t0 >= WATCHDOG_S:
        raise AssertionError(f"a run hung for {WATCHDOG_S} s and was killed by the watchdog")
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return killed, (None if killed else os.WEXITSTATUS(status)), seen


def run(big: Path) -> dict:
    work = big / "work"
    work.mkdir()
    original = _sha256(big / "base.h5")
    # Reference: an uninterrupted run gives the expected tables (runs are deterministic) and phase timings.
    killed, code, seen = forked_run(_argv(big, big / "base.h5", work / "reference.h5"))
    assert not killed and code == 0, code
    expected = _tables(work / "reference.h5")
    windows = {p: seen[PHASE_END[p]] - seen[PHASES[p]] for p in PHASES}

    rng = random.Random(12345)
    kills = {p: 0 for p in PHASES}
    outcomes = {"absent/old": 0, "complete": 0}
    mid_write = 0  # kills that left a temp file behind: they landed while the output was being written
    shared = work / "shared"  # not in place: one directory, so stale temps pile up and get cleaned
    shared.mkdir()
    trials = 0
    for i in range(10 * MAX_TRIALS):
        phase = ("load", "train", "write")[i % 3]
        if min(kills.values()) >= KILLS_PER_PHASE or trials >= MAX_TRIALS:
            break
        if kills[phase] >= KILLS_PER_PHASE:
            continue
        in_place = (i // 3) % 2 == 1
        if in_place:
            d = work / f"inplace{i}"
            d.mkdir()
            shutil.copyfile(big / "base.h5", d / "pub.h5")
            ckpt = out = d / "pub.h5"
        else:
            d, ckpt, out = shared, big / "base.h5", shared / "merged.h5"
            out.unlink(missing_ok=True)
        # writes get up to 1.3x their window so some kills land after the rename as well;
        # a run that finished before its kill moment does not count, the loop goes on
        delay = rng.uniform(0, windows[phase] * (1.3 if phase == "write" else 1.0))
        temps_before = len(_temps(d))
        killed, code, seen = forked_run(_argv(big, ckpt, out), phase, delay)
        if not killed:  # the machine got faster: aim at the shortest windows seen so far
            windows = {p: min(windows[p], seen[PHASE_END[p]] - seen[PHASES[p]]) for p in PHASES}
        trials += 1
        mid_write += len(_temps(d)) > temps_before
        assert killed or code == 0, (phase, code)
        kills[phase] += killed

        assert _sha256(big / "base.h5") == original, "the input checkpoint changed"
        if in_place:
            if _sha256(out) == original:  # the old version, untouched
                outcomes["absent/old"] += 1
            else:  # the new version, complete; the old one kept as the backup
                got = _tables(out)
                assert all(np.array_equal(got[k], expected[k]) for k in expected), "in-place output differs"
                assert _sha256(out.with_name("pub.h5.1")) == original, "the backup is not the old version"
                outcomes["complete"] += 1
            shutil.rmtree(d)
        elif out.exists():
            got = _tables(out)
            assert all(np.array_equal(got[k], expected[k]) for k in expected), "output differs from the reference"
            outcomes["complete"] += 1
        else:
            outcomes["absent/old"] += 1

    # The night after: a normal run succeeds despite a killed run's lock file and temp files, and cleans them.
    stale = len(_temps(shared))
    killed, code, _ = forked_run(_argv(big, big / "base.h5", shared / "merged.h5"))
    assert not killed and code == 0, code
    assert _temps(shared) == [], _temps(shared)
    assert not (shared / "merged.h5.lock").exists()
    got = _tables(shared / "merged.h5")
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    return {"windows_s": {k: round(v, 3) for k, v in windows.items()}, "trials": trials, "kills": kills,
            "outcomes": outcomes, "mid_write": mid_write, "stale_temps_cleaned": stale,
            "final": str(shared / "merged.h5")}


if __name__ == "__main__":
    import tensorflow  # noqa: F401  (imported before any fork; no op is ever run in this process)

    print(json.dumps(run(Path(sys.argv[1]))), flush=True)
