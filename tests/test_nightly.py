"""scripts/nightly.sh, as cron runs it: extend into a staging file, verify, then publish with rotation.

The published path only ever holds a whole, verified file; a rerun is a no-op that writes nothing;
a failed verification publishes nothing. Quiet on success (cron mails nothing), loud on failure: the
failure, this run's last log lines and the log path on stderr. Real bash and the real CLI; where a step must fail or be
watched, EMBRETRAIN is a small sh wrapper around the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embretrain.checkpoint import Checkpoint, native
from embretrain.lock import output_lock

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "nightly.sh"
BIN = Path(sys.executable).parent
OLD = [f"e{i:02d}" for i in range(20)]
RELS = ["r0", "r1"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(directory: Path) -> dict[str, tuple[str, int, int]]:
    """Every file in ``directory`` (not the logs/ subdirectory): name -> (sha256, size, mtime_ns)."""
    return {
        p.name: (_sha256(p), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def site(tmp_path):
    rng = np.random.default_rng(0)
    pub = tmp_path / "models" / "published.h5"
    pub.parent.mkdir()
    native.save(
        Checkpoint(
            model="transe", entities=OLD, relations=RELS,
            entity_tables={"entity_embeddings": rng.normal(size=(20, 8)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.normal(size=(2, 8)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        ),
        pub,
    )
    day = tmp_path / "incoming" / "2024-05-01"
    day.mkdir(parents=True)
    (day / "new_entities.tsv").write_text("n0\nn1\nn2\n")
    (day / "delta.tsv").write_text("n0\tr0\te01\ne02\tr1\tn1\nn2\tr0\tn0\nn1\tr1\te03\n")
    return pub, day


def _nightly(pub: Path, day: Path, **env):
    # cwd is a scratch directory, as under cron: the script must find embretrain's python on its own
    # (EMBRETRAIN's directory) and never import the repository's checkout from the current directory.
    # No TF_CPP_MIN_LOG_LEVEL / TF_ENABLE_ONEDNN_OPTS either: cron's environment has none.
    base = {k: v for k, v in os.environ.items() if k not in {"PYTHON", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"}}
    full = {**base, "EMBRETRAIN": str(BIN / "embretrain"), "KEEP": "3",
            "EXTEND_ARGS": "--epochs 1 --batch-size 4 --negatives 2", **env}
    cwd = pub.parent.parent / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(["bash", str(SCRIPT), str(pub), str(day)], env=full, capture_output=True, text=True,
                          cwd=cwd, timeout=600, check=False)


def _wrapper(path: Path, body: str) -> dict[str, str]:
    """An EMBRETRAIN that runs ``body`` (sh) and then the real CLI; env for _nightly to use it."""
    path.write_text(f'#!/bin/sh\n{body}\nexec "{BIN / "embretrain"}" "$@"\n')
    path.chmod(0o755)
    return {"EMBRETRAIN": str(path), "PYTHON": sys.executable}  # no python beside the wrapper


def _failure(result, code: int) -> tuple[str, list[str]]:
    """A failed night's stderr: (its first line, the rest); checks the shape and the log path at the end."""
    assert result.returncode == code, result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith(f"{SCRIPT}: FAILED (exit {code}): "), result.stderr
    (log,) = Path(rest[-1].removeprefix("log: ")).parent.glob("nightly-*.log")
    assert rest[-1] == f"log: {log}", result.stderr
    return first, rest


def _logs(pub: Path) -> tuple[str, dict]:
    logs = pub.parent / "logs"
    (log,) = logs.glob("nightly-*.log")
    (report,) = logs.glob("nightly-*.json")
    return log.read_text(), json.loads(report.read_text())


def test_grow_verify_then_rerun_is_a_noop(site):
    pub, day = site
    original = _sha256(pub)

    first = _nightly(pub, day)
    assert first.returncode == 0, first.stderr
    assert first.stderr == "" and first.stdout == ""  # a successful night prints nothing: cron mails nothing
    grown = native.load(pub)
    assert grown.entities == OLD + ["n0", "n1", "n2"]
    assert _sha256(pub.with_name("published.h5.1")) == original  # the previous version is kept
    log, report = _logs(pub)
    assert report["status"] == "ok" and report["entities_added"] == 3
    assert "verified and published" in log and ("OK" in log)
    assert "training 3 new entities" in log  # embretrain's own lines went to the log
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.1", "published.h5.nightly.lock"]

    after_first = _sha256(pub)
    second = _nightly(pub, day)
    assert second.returncode == 0, second.stderr
    assert _sha256(pub) == after_first  # nothing rewritten
    assert not pub.with_name("published.h5.2").exists()  # and no backup rotated
    log, report = _logs(pub)
    assert report["status"] == "nothing_to_do"
    assert "nothing to do" in log and "already applied" in log
    assert second.stderr == "" and second.stdout == ""

    # --strict through EXTEND_ARGS turns the no-op into exit 7 for those who want to be told
    strict = _nightly(pub, day, EXTEND_ARGS="--strict")
    assert strict.returncode == 7, strict.stderr
    assert _sha256(pub) == after_first
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.1", "published.h5.nightly.lock"]


def test_rerun_of_an_applied_day_writes_nothing(site):
    pub, day = site
    assert _nightly(pub, day).returncode == 0
    before = _snapshot(pub.parent)
    assert set(before) == {"published.h5", "published.h5.1", "published.h5.nightly.lock"}

    again = _nightly(pub, day)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert "already applied" in _logs(pub)[0]
    assert _snapshot(pub.parent) == before  # same files, same bytes, same mtimes: nothing written
    assert not pub.with_name("published.h5.staging").exists()


def test_bad_day_fails_with_embretrains_code_and_changes_nothing(site):
    pub, day = site
    original = _sha256(pub)
    (day / "delta.tsv").write_text("n0\tr0\n")
    result = _nightly(pub, day)
    first, _ = _failure(result, 3)
    assert first.endswith(f"embretrain extend exited 3; {pub} is unchanged")
    assert f"{day / 'delta.tsv'}:1" in result.stderr  # the cause, from the log's last lines
    assert "Traceback" not in result.stderr and "absl" not in result.stderr
    assert _sha256(pub) == original
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.nightly.lock"]


def test_failed_verification_publishes_nothing(site, tmp_path):
    pub, day = site
    before = _snapshot(pub.parent)
    # the real CLI, except that `verify` says the rows differ
    env = _wrapper(tmp_path / "embretrain-verify-fails", 'if [ "$1" = verify ]; then echo "DIFFERS: e00"; exit 1; fi')
    result = _nightly(pub, day, **env)
    first, rest = _failure(result, 6)
    assert "nothing published" in first and "DIFFERS: e00" in rest[-2]  # verify's output, just before the path
    assert _snapshot(pub.parent)["published.h5"] == before["published.h5"]  # byte-identical, not even touched
    (rejected,) = pub.parent.glob("published.h5.rejected-*")
    assert native.load(rejected).n_entities == 23  # the grown file, kept for inspection
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.nightly.lock", rejected.name]


def test_published_path_never_holds_an_unverified_file(site, tmp_path):
    """A wrapper records what the published path holds right after extend and while verify runs."""
    pub, day = site
    original = _sha256(pub)
    seen = tmp_path / "seen.txt"
    env = _wrapper(tmp_path / "embretrain-watched", f'''
if [ "$1" = extend ]; then
    "{BIN / "embretrain"}" "$@"; rc=$?
    echo "after-extend $(sha256sum < "{pub}" | cut -d' ' -f1)" >> "{seen}"
    exit $rc
fi
if [ "$1" = verify ]; then
    echo "verify-old $2 $(sha256sum < "$2" | cut -d' ' -f1)" >> "{seen}"
    echo "verify-new $3 $(sha256sum < "$3" | cut -d' ' -f1)" >> "{seen}"
    [ -e "{pub}.1" ] && echo "backup-during-verify" >> "{seen}"
fi''')
    result = _nightly(pub, day, **env)
    assert result.returncode == 0, result.stderr

    lines = dict((line.split(" ", 1) + [""])[:2] for line in seen.read_text().splitlines())
    assert lines["after-extend"] == original  # extend did not touch the published path
    assert lines["verify-old"] == f"{pub} {original}"  # verify compares against the still-published old file
    staging, verified = lines["verify-new"].split()
    assert staging == f"{pub}.staging"
    assert verified == _sha256(pub)  # what is published now is exactly the file that was verified
    assert "backup-during-verify" not in lines  # no rotation before verification
    assert _sha256(pub.with_name("published.h5.1")) == original


def test_keep_rotates_versions_over_two_nights(site, tmp_path):
    pub, day = site
    original = _sha256(pub)
    assert _nightly(pub, day).returncode == 0
    night1 = _sha256(pub)

    day2 = tmp_path / "incoming" / "2024-05-02"
    day2.mkdir()
    (day2 / "new_entities.tsv").write_text("m0\nm1\n")
    (day2 / "delta.tsv").write_text("m0\tr0\tn1\ne05\tr1\tm1\nm1\tr0\te00\n")
    second = _nightly(pub, day2)
    assert second.returncode == 0, second.stderr

    assert native.load(pub).entities == OLD + ["n0", "n1", "n2", "m0", "m1"]
    assert _sha256(pub.with_name("published.h5.1")) == night1  # newest previous version
    assert _sha256(pub.with_name("published.h5.2")) == original
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.1", "published.h5.2",
                                  "published.h5.nightly.lock"]


def test_keep_zero_keeps_no_versions(site):
    pub, day = site
    result = _nightly(pub, day, KEEP="0")
    assert result.returncode == 0, result.stderr
    assert native.load(pub).n_entities == 23
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.nightly.lock"]


def test_leftover_staging_of_a_killed_run_is_removed(site):
    pub, day = site
    original = _sha256(pub)
    # a run killed between extend and publish: its staging file, and the lock file of a SIGKILLed extend
    pub.with_name("published.h5.staging").write_bytes(b"half of an old staging file")
    pub.with_name("published.h5.staging.lock").write_text("999999\n")
    result = _nightly(pub, day)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # a notice, not a failure: the log has it
    assert "left by an earlier run that was killed" in _logs(pub)[0]
    assert native.load(pub).n_entities == 23
    assert _sha256(pub.with_name("published.h5.1")) == original
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.1", "published.h5.nightly.lock"]


def test_publish_is_refused_while_the_published_file_is_locked(site):
    """A manual `extend --out PUBLISHED` holds PUBLISHED.lock: the nightly publishes nothing, exit 5."""
    pub, day = site
    before = _snapshot(pub.parent)
    with output_lock(pub):
        result = _nightly(pub, day)
    first, rest = _failure(result, 5)
    assert "nothing published" in first and any("locked by another run" in line for line in rest)
    assert _snapshot(pub.parent)["published.h5"] == before["published.h5"]
    assert _names(pub.parent) == ["logs", "published.h5", "published.h5.nightly.lock"]


@pytest.mark.parametrize(("env", "message"), [
    ({"KEEP": "-1"}, "KEEP must be a whole number"),
    ({"PYTHON": "/nonexistent/python"}, "cannot import embretrain"),
])
def test_bad_setup_is_a_usage_error_before_anything_runs(site, env, message):
    pub, day = site
    before = _snapshot(pub.parent)
    result = _nightly(pub, day, **env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert {k: v for k, v in _snapshot(pub.parent).items() if k != "published.h5.nightly.lock"} == before


def test_a_failing_night_shows_only_its_own_log_lines(site, tmp_path):
    """The day's log keeps every run of the day; cron's mail shows this run's last lines, not the morning's."""
    pub, day = site
    assert _nightly(pub, day).stderr == ""
    bad = tmp_path / "incoming" / "2024-05-02"
    bad.mkdir()
    (bad / "new_entities.tsv").write_text("m0\n")
    (bad / "delta.tsv").write_text("m0\tr0\te01\nm0\tnot-a-relation\te02\n")
    result = _nightly(pub, bad, TAIL_LINES="5")
    first, rest = _failure(result, 3)
    assert rest[0] == "last lines of the log:" and 1 <= len(rest) - 2 <= 5
    assert any(f"{bad / 'delta.tsv'}:2" in line for line in rest)
    assert str(day) not in result.stderr  # the successful run earlier today is in the log, not in the mail
    log, _ = _logs(pub)
    assert str(day) in log and log.rstrip().endswith(first.split("FAILED (exit 3): ")[1])
