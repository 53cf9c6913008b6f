"""One run at a time per output: an exclusive, non-blocking lock on ``<out>.lock``.

    >>> with output_lock("merged.h5"):      # a second run raises LockedError at once
    ...     train_and_write("merged.h5")

The lock is ``fcntl.flock`` on an open file descriptor, so the kernel releases it when the
process dies, even on SIGKILL: a crashed nightly run never leaves a stale lock behind. The
file holds the holder's pid so the second run can say who has it. Hand-written on the stdlib
(about 30 lines) rather than adding ``filelock`` as a dependency: we need the pid in the message
and the unlink-on-release protocol below, and filelock's Unix lock is the same flock call.

The lock file is removed on release so a successful or failed run leaves no litter. Unlinking a
flock'd file is racy unless the next acquirer checks that the path it locked is still the file on
disk (another process may have unlinked it after we opened it); :func:`output_lock` does that
check and retries, the usual pattern for removable lock files.

The lock path sits in a directory other users may write to (a shared model directory, run from
cron as root), so it is opened as hostile: never through a symlink (``O_NOFOLLOW``), never
truncated on open, and only a regular file with one link whose content is empty or a pid is
taken over. Anything else (a symlink planted at ``<out>.lock``, a directory, a FIFO, a hard link
to another file, a file with other content) is refused with a :class:`UsageError` naming it, and
left exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import LockedError, UsageError

__all__ = ["lock_path", "output_lock", "probe_lock"]

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 20  # each retry means another process unlinked the file between our open and flock
_MAX_LOCK_BYTES = 64  # a pid and a newline; anything longer was not written by a lock holder
_HOLDER_WAIT_S = 1.0  # how long a loser waits for the winner's pid to appear in the file
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file guarding ``out``: ``<out>.lock`` in the same directory."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _holder(fd: int) -> str:
    """Who holds the lock on ``fd``'s file, as the holder wrote it.

    The holder writes its pid just *after* its flock succeeds (only then is the file its own to
    write), so a run that lost the race by microseconds may read an empty or half-written file.
    Re-read for a moment before giving up on a name: the pid appears within microseconds unless the
    holder is stopped.
    """
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            text = os.pread(fd, _MAX_LOCK_BYTES, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        if text.isdigit():
            return f"pid {text}"
        if time.monotonic() >= deadline:
            return "an unknown process"
        time.sleep(0.01)


def _refuse(path: Path, what: str) -> UsageError:
    return UsageError(
        f"{path} {what}; refusing to use it as the lock file (it is left untouched): remove it, "
        "or choose another output path"
    )


def _open_lock(path: Path, *, create: bool = True) -> int:
    """Open (creating if absent, unless not ``create``) the lock file without following a symlink or
    truncating anything.

    Raises:
        UsageError: ``path`` is a symlink, not a regular file, has other hard links, or holds
            something that is not a pid.
        FileNotFoundError: no file at ``path`` (and not ``create``, or it was removed meanwhile).
    """
    flags = os.O_RDWR | _NOFOLLOW | _CLOEXEC
    if create:
        try:
            # O_EXCL first: a file we create is ours to write; a nonblocking open never hangs on a FIFO.
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
    try:
        fd = os.open(path, flags | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise _refuse(path, f"is a symbolic link (to {os.readlink(path)!r})") from None
        if err.errno == errno.ENOENT:  # removed since the O_EXCL attempt (or absent): the caller decides
            raise
        if err.errno == errno.EISDIR:
            raise _refuse(path, "is a directory") from None
        raise UsageError(f"cannot open the lock file {path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "is not a regular file")
        if st.st_nlink > 1:  # a hard link to someone else's file: writing our pid would change it
            raise _refuse(path, f"is a regular file with {st.st_nlink} hard links")
        if st.st_size > _MAX_LOCK_BYTES or not os.pread(fd, _MAX_LOCK_BYTES, 0).strip().isdigit() and st.st_size:
            raise _refuse(path, f"holds {st.st_size} bytes that are not a process id")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _raise_locked(out, path: Path, fd: int, err: OSError) -> None:
    """Close ``fd`` after a failed flock and raise: LockedError naming the holder, or ``err`` itself."""
    holder = _holder(fd)
    os.close(fd)
    if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
        raise LockedError(
            f"{out} is locked by another run ({holder} holds {path}); wait for it to finish "
            "(the lock dies with its process, so there is never a stale lock to remove)"
        ) from None
    raise err


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock on ``out`` for the ``with`` block; yield the lock file's path.

    Raises:
        LockedError: another process holds the lock (raised at once, never waits).
    """
    path = lock_path(out)
    for _ in range(_MAX_ATTEMPTS):
        try:
            fd = _open_lock(path)
        except FileNotFoundError:  # unlinked by the previous holder between our two opens
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            _raise_locked(out, path, fd, err)
        # The previous holder may have unlinked the file after we opened it: then we locked an
        # orphan inode, and a third process could lock a fresh file at the same path. Retry.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - needs dozens of competing processes
        raise LockedError(f"{out}: could not take the lock {path} (it keeps being replaced)")

    try:
        # Only a file that is ours (created above) or a dead holder's pid file (checked in _open_lock)
        # gets here, so this truncation never touches someone else's data.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        logger.debug("locked %s (%s)", out, path)
        yield path
    finally:
        # Unlink while still holding the lock, then close: whoever opened the old inode retries.
        # Only if the name still is our file: never remove what someone put there meanwhile.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                path.unlink()
        os.close(fd)
        logger.debug("released %s", path)


def probe_lock(out: str | os.PathLike) -> None:
    """Fail as :func:`output_lock` would, without taking the lock or leaving anything behind (a dry run).

    No file at ``<out>.lock`` means no holder (a holder's file exists for as long as it holds it), and
    none is created. An existing file gets the same refusals as :func:`output_lock` (symlink,
    directory, FIFO, hard links, content that is not a pid) and is then tested with a *shared*
    non-blocking flock, released at once: it conflicts only with a holder's exclusive lock, so two
    dry runs never stop each other, and the file is neither truncated nor written nor removed. A real
    run starting in the microseconds the probe holds it finds it locked and exits like any second run.

    Raises:
        LockedError: another process holds the lock.
        UsageError: something other than a lock file is at ``<out>.lock``.
    """
    path = lock_path(out)
    try:
        fd = _open_lock(path, create=False)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        _raise_locked(out, path, fd, err)
    os.close(fd)  # releases the shared lock
