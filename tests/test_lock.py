"""One run at a time per output: the second gets LockedError at once, naming the lock and the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from embretrain.errors import EXIT_LOCKED, LockedError
from embretrain.lock import lock_path, output_lock

HOLD = """
import sys, time
from embretrain.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_file_holds_our_pid_and_is_removed_after(tmp_path):
    out = tmp_path / "m.h5"
    with output_lock(out) as path:
        assert path == lock_path(out) == tmp_path / "m.h5.lock"
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()


def test_second_holder_fails_at_once_naming_lock_and_pid(tmp_path):
    out = tmp_path / "m.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(LockedError) as err:
            with output_lock(out):
                pass
        assert time.perf_counter() - t0 < 30.0  # non-blocking: a blocking lock would wait for the holder (killed below)
        assert err.value.exit_code == EXIT_LOCKED
        assert f"pid {holder.pid}" in str(err.value) and str(lock_path(out)) in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    # flock dies with its process: no stale lock after a SIGKILL
    with output_lock(out):
        pass


WRITES_PID_LATE = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(0.3)  # the window output_lock has between its flock and writing the pid, widened
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
time.sleep(30)
"""


def test_a_run_that_loses_the_race_by_microseconds_still_names_the_holder(tmp_path):
    # Seen in CI: two runs started together; the loser read the lock file after the winner's flock
    # and before its pid was written, and said "an unknown process".
    out = tmp_path / "m.h5"
    holder = subprocess.Popen([sys.executable, "-c", WRITES_PID_LATE, str(lock_path(out))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_path(out).read_text() == ""  # the race's window: locked, no pid yet
        with pytest.raises(LockedError) as err:
            with output_lock(out):
                pass
        assert f"pid {holder.pid} holds" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_sequential_runs_reacquire_and_other_outputs_are_free(tmp_path):
    with output_lock(tmp_path / "a.h5"):
        with output_lock(tmp_path / "b.h5"):  # a different output is not blocked
            pass
    with output_lock(tmp_path / "a.h5"):
        pass


def test_a_leftover_lock_file_does_not_block(tmp_path):
    out = tmp_path / "m.h5"
    lock_path(out).write_text("99999999\n")  # e.g. from a run on a filesystem that lost the unlink
    with output_lock(out):
        pass


def test_a_planted_symlink_lock_is_refused_and_its_target_untouched(tmp_path):
    from embretrain.errors import UsageError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock_path(tmp_path / "m.h5").symlink_to(victim)
    with pytest.raises(UsageError, match=r"m\.h5\.lock is a symbolic link"):
        with output_lock(tmp_path / "m.h5"):
            pytest.fail("must not lock")
    assert victim.read_text() == "precious\n" and lock_path(tmp_path / "m.h5").is_symlink()


def test_release_never_removes_a_file_that_replaced_the_lock(tmp_path):
    out = tmp_path / "m.h5"
    with output_lock(out) as path:
        path.unlink()
        path.write_text("someone else's\n")  # not our inode any more
    assert path.read_text() == "someone else's\n"
