"""``train --dry-run`` / ``extend --dry-run``: a cron pre-check that reads and checks everything the run would,
prints the counts it would print and exits with its exit code, without TensorFlow and without writing anything.

The dry run and the real run share api.plan_train / api.plan_extend, so these tests compare the two on the same
inputs: same counts, same exit code and error line, the same refusal of a held or hostile lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_tsv

from embretrain import api
from embretrain.checkpoint import Checkpoint
from embretrain.cli import main
from embretrain.lock import lock_path

# Runs the CLI in a fresh interpreter and reports, on its last stderr line, which heavy modules it imported.
RUN_CLI = """\
import sys
from embretrain.cli import main
try:
    main(sys.argv[1:], prog_name="embretrain")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print("IMPORTED=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""
# keys only one side has: the dry run's marker, and what only the real run measures or writes
NOT_SHARED = {"seconds", "status", "dry_run", "out", "exit_code", "in_place"}
FAST = ["--epochs", 1, "--batch-size", 16, "--negatives", 2]  # extend takes its dim from the checkpoint


def cli(*args):
    """(exit code, stdout, stderr lines without the import report, heavy modules imported) of a subprocess run."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    p = subprocess.run([sys.executable, "-c", RUN_CLI, *map(str, args)], capture_output=True, text=True, timeout=300,
                       env=env, check=False)
    lines = p.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("IMPORTED="), p.stderr
    imported = [m for m in lines[-1][len("IMPORTED="):].split(",") if m]
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, lines[:-1], imported


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def error_line(lines) -> str:
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    return errors[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` and ``root`` itself: kind, content sha256, mtime_ns (directories' too)."""
    out = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(p)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), digest, st.st_mtime_ns)
    return out


def base_checkpoint(path: Path, n_old: int = 30, dim: int = 8, fmt: str | None = None) -> Path:
    """A transe checkpoint over the toy graph's names (e000.., r0..r2), written without TensorFlow."""
    rng = np.random.default_rng(0)
    ckpt = Checkpoint(
        model="transe",
        entities=[f"e{i:03d}" for i in range(n_old)],
        relations=["r0", "r1", "r2"],
        entity_tables={"entity_embeddings": rng.uniform(-0.3, 0.3, (n_old, dim)).astype(np.float32)},
        relation_tables={"relation_embeddings": rng.uniform(-0.3, 0.3, (3, dim)).astype(np.float32)},
        params={"norm": 1, "gamma": 12.0},
    )
    api.save(ckpt, path, **({"format": fmt} if fmt else {}))
    return path


@pytest.fixture
def night(toy):
    d = toy["dir"]
    out = d / "out"
    out.mkdir()
    return {**toy, "base": base_checkpoint(d / "base.h5"), "out": out / "merged.h5", "report": out / "report.json"}


def extend_args(night, *extra, ckpt=None, new=None, data=None):
    return ["extend", "--ckpt", ckpt or night["base"], "--new-entities", new or night["new"],
            "--data", data or night["delta"], "--out", night["out"], *extra]


# ------------------------------------------------------------------------------------------ no TF, no writes
@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_extend_dry_run_imports_no_tensorflow_and_writes_nothing(night, fmt):
    d = night["dir"]
    ckpt = night["base"] if fmt == "h5" else base_checkpoint(d / "base.weights.h5", fmt="keras")
    before = snapshot(d)
    argv = extend_args(night, "--dry-run", "--json", "--report", night["report"], "--out-format", "h5", ckpt=ckpt)
    code, stdout, lines, imported = cli(*argv)
    assert code == 0, lines
    assert imported == []
    assert snapshot(d) == before  # no output, no report, no lock file, no probe: not even a directory's mtime moved
    summary = json.loads(stdout)
    assert summary["dry_run"] is True and summary["status"] == "ok" and summary["exit_code"] == 0
    assert summary["entities_added"] == 6 and summary["entities_untrained"] == 1
    assert summary["examples_dropped_no_new"] == 2 and summary["examples_used"] == 11
    assert any("--report" in line and "not written" in line for line in lines)


def test_examples_per_new_entity_counts_each_line_once_per_new_entity(night):
    # n000: 2 lines + the n000-n001 line + a self-loop; n001: 2 + the n000-n001 line; n005: no line (pending)
    rows = [*night["delta_rows"], ("n000", "r0", "n000")]
    delta = write_tsv(night["dir"] / "delta2.tsv", rows)
    code, stdout, lines, _ = cli(*extend_args(night, "--dry-run", "--json", data=delta))
    assert code == 0, lines
    summary = json.loads(stdout)
    assert summary["examples_per_new_entity"] == {"min": 0, "median": 2.0, "max": 4, "with_1": 0, "with_2_to_5": 5,
                                                  "with_6_or_more": 0}
    assert summary["entities_untrained"] == 1  # the pending entity: n005, the 0 in min


def test_train_dry_run_imports_no_tensorflow_writes_nothing_and_counts_like_train(night):
    d = night["dir"]
    before = snapshot(d)
    argv = ["--data", night["train"], "--out", night["out"], "--json", "--dim", 8, *FAST]
    code, stdout, lines, imported = cli("train", "--dry-run", *argv)
    assert (code, imported) == (0, []), lines
    assert snapshot(d) == before
    dry = json.loads(stdout)

    real = run("train", *argv)
    assert real.exit_code == 0, real.output
    real = json.loads(real.stdout)
    shared = (set(dry) & set(real)) - NOT_SHARED
    assert shared == {"command", "model", "entities", "relations", "examples"}
    assert {k: dry[k] for k in shared} == {k: real[k] for k in shared}


# ------------------------------------------------------------------------------------------ same counts
@pytest.mark.parametrize("case", ["plain", "levers"])
def test_dry_run_prints_the_counts_the_real_run_prints(night, case):
    new, delta, extra = night["new"], night["delta"], []
    if case == "levers":  # an already known name, an unknown line skipped, replay, a held-out slice, a neighbour start
        new = write_tsv(night["dir"] / "new2.tsv", [("e001",), *[(n,) for n in night["new_names"]]])
        delta = write_tsv(night["dir"] / "delta2.tsv", [*night["delta_rows"], ("n000", "r0", "nobody")])
        extra = ["--skip-unknown", "--replay", night["train"], "--valid-fraction", 0.3, "--init", "neighbors"]
    argv = extend_args(night, "--json", *extra, *FAST, new=new, data=delta)
    code, stdout, lines, imported = cli(*argv, "--dry-run")
    assert (code, imported) == (0, []), lines
    dry = json.loads(stdout)

    real = run(*argv)
    assert real.exit_code == 0, real.output
    real = json.loads(real.stdout)
    shared = (set(dry) & set(real)) - NOT_SHARED
    assert {"entities_added", "entities_already_known", "entities_duplicate", "examples_used",
            "examples_dropped_no_new", "examples_skipped_unknown", "entities_untrained",
            "examples_per_new_entity"} <= shared
    assert {k: dry[k] for k in shared} == {k: real[k] for k in shared}
    if case == "levers":
        assert dry["entities_already_known"] == 1 and dry["examples_skipped_unknown"] == 1
        assert dry["replay_examples"] == real["replay_examples"] > 0
        # examples_used is what is trained on: the held-out slice is not (the plan holds it out as the run does)
        assert dry["examples_used"] + real["early_stopping"]["held_out"] + 2 == len(night["delta_rows"])


def test_plan_extend_is_what_extend_reports(night):
    pytest.importorskip("tensorflow")
    from embretrain.config import Settings

    ckpt = api.load(night["base"])
    settings = Settings(model="transe", dim=8, epochs=1, batch_size=16, negatives=2)
    plan = api.plan_extend(ckpt, night["new"], night["delta"], settings)
    planned = plan.summary()
    _, summary = api.extend(ckpt, night["new"], night["delta"], settings, progress=False)
    assert list(planned) == [k for k in summary if k in planned]  # same keys in the same order
    assert {k: v for k, v in planned.items() if k != "seconds"} == {k: summary[k] for k in planned if k != "seconds"}


# ------------------------------------------------------------------------------------------ same failures
def _corrupt(path: Path) -> Path:
    with h5py.File(path, "r+") as f:
        f["entity_embeddings"][0, 0] += 1.0  # the stored sha256 no longer matches
    return path


def known_names(night) -> Path:
    """A new-entity file whose every name the checkpoint already has (a rerun of a night that succeeded)."""
    return write_tsv(night["dir"] / "old.tsv", [("e001",), ("e002",)])


CASES = {
    # name: (setup(night) -> extend argv, exit code, text the error line must contain)
    "malformed line": (lambda n: extend_args(n, data=write_tsv(n["dir"] / "bad.tsv", [("n000", "r0")])), 3,
                       "bad.tsv:1: expected 3 tab-separated fields"),
    "unknown name": (lambda n: extend_args(n, data=write_tsv(n["dir"] / "bad.tsv", [("n000", "r0", "e000"),
                                                                                     ("n001", "r9", "e000")])), 3,
                     "bad.tsv:2"),
    "repeated new name": (lambda n: extend_args(n, new=write_tsv(n["dir"] / "new2.tsv", [("n000",), ("n000",)])), 3,
                          "new2.tsv:2"),
    "corrupt checkpoint": (lambda n: extend_args(n, ckpt=_corrupt(n["base"])), 4, "sha256"),
    "missing output directory": (lambda n: [*extend_args(n)[:-1], n["dir"] / "nowhere" / "m.h5"], 2, "does not exist"),
    "symlink at the lock": (lambda n: (lock_path(n["out"]).symlink_to(n["train"]), extend_args(n))[1], 2,
                            "is a symbolic link"),
    "rerun with --strict": (lambda n: extend_args(n, "--strict", "--skip-unknown", new=known_names(n)), 7,
                            "nothing to do"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_fails_the_dry_run_like_the_real_run(night, name):
    setup, want, text = CASES[name]
    argv = setup(night)
    before = snapshot(night["dir"])
    code, _, lines, imported = cli(*argv, "--dry-run")
    assert (code, imported) == (want, []), lines
    dry_error = error_line(lines)
    assert text in dry_error
    assert snapshot(night["dir"]) == before

    code, _, lines, _ = cli(*argv)  # each fails before training: no TensorFlow here either
    assert code == want, lines
    assert error_line(lines) == dry_error


def test_nothing_to_do_exits_0_in_both(night):
    argv = extend_args(night, "--json", "--skip-unknown", new=known_names(night))
    code, stdout, lines, _ = cli(*argv, "--dry-run")
    assert code == 0, lines
    dry = json.loads(stdout)
    code, stdout, _, _ = cli(*argv)
    real = json.loads(stdout)
    assert dry["status"] == real["status"] == "nothing_to_do"
    assert {k: dry[k] for k in set(dry) - NOT_SHARED} == {k: real[k] for k in set(real) - NOT_SHARED}


# ------------------------------------------------------------------------------------------ the lock
HOLD = """\
import sys
from embretrain.lock import output_lock
with output_lock(sys.argv[1]):
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_held_lock_gives_exit_5_in_the_dry_run_too_and_stays_held(night):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(night["out"])], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        lock = lock_path(night["out"])
        before = snapshot(night["dir"])
        code, _, lines, imported = cli(*extend_args(night), "--dry-run")
        assert (code, imported) == (5, []), lines
        dry_error = error_line(lines)
        assert f"pid {holder.pid}" in dry_error and str(lock) in dry_error
        assert snapshot(night["dir"]) == before  # the holder's pid file is neither truncated nor removed
        code, _, lines, _ = cli(*extend_args(night))
        assert code == 5 and error_line(lines) == dry_error
        assert lock.read_text() == f"{holder.pid}\n"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not lock_path(night["out"]).exists()


def test_a_dead_holders_lock_file_passes_and_is_left_as_it_was(night):
    lock = lock_path(night["out"])
    lock.write_text("99999999\n")  # a lock file the real run would take over
    before = snapshot(night["dir"])
    code, _, lines, _ = cli(*extend_args(night), "--dry-run")
    assert code == 0, lines
    assert snapshot(night["dir"]) == before


def test_dry_runs_do_not_block_each_other(night):
    """The probe takes a shared lock for an instant: two dry runs at once both pass."""
    procs = [subprocess.Popen([sys.executable, "-c", RUN_CLI, *map(str, extend_args(night)), "--dry-run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


# ------------------------------------------------------------------------------------------ TF checkpoints
def test_a_tf_checkpoint_dry_run_reads_it_with_tensorflow_and_counts_like_the_real_run(night):
    pytest.importorskip("tensorflow")
    prefix = night["dir"] / "tf" / "model.ckpt-1"
    prefix.parent.mkdir()
    base_checkpoint(prefix, fmt="tf")
    before = snapshot(night["dir"])
    dry = run(*extend_args(night, "--json", "--dry-run", ckpt=prefix))
    assert dry.exit_code == 0, dry.output
    assert snapshot(night["dir"]) == before
    real = run(*extend_args(night, "--json", *FAST, ckpt=prefix))
    assert real.exit_code == 0, real.output
    dry, real = json.loads(dry.stdout), json.loads(real.stdout)
    shared = (set(dry) & set(real)) - NOT_SHARED
    assert "examples_per_new_entity" in shared
    assert {k: dry[k] for k in shared} == {k: real[k] for k in shared}
