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
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import LockedError

__all__ = ["lock_path", "output_lock"]

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 20  # each retry means another process unlinked the file between our open and flock


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file guarding ``out``: ``<out>.lock`` in the same directory."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "an unknown process"


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock on ``out`` for the ``with`` block; yield the lock file's path.

    Raises:
        LockedError: another process holds the lock (raised at once, never waits).
    """
    path = lock_path(out)
    for _ in range(_MAX_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise LockedError(
                    f"{out} is locked by another run ({holder} holds {path}); wait for it to finish "
                    "(the lock dies with its process, so there is never a stale lock to remove)"
                ) from None
            raise
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
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        logger.debug("locked %s (%s)", out, path)
        yield path
    finally:
        # Unlink while still holding the lock, then close: whoever opened the old inode retries.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
        logger.debug("released %s", path)
