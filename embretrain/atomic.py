"""Atomic file replacement: readers see the old file or the complete new one, never a partial one.

A checkpoint written in place and interrupted (Ctrl-C, out of disk, a killed job) would leave a
truncated file where a good one used to be. Instead we write to a temporary file in the *same*
directory, fsync it, and ``os.replace`` it over the target: a rename within one filesystem is
atomic on POSIX and Windows, so the target path always holds a whole file.

    >>> with atomic_write("model.h5") as tmp:
    ...     write_everything_to(tmp)   # any exception here leaves model.h5 untouched
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

__all__ = ["atomic_write", "check_writable_dir", "fsync_path"]

logger = logging.getLogger(__name__)


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Fail fast if the file ``path`` could not be written (before hours of training).

    Args:
        path: the *file* that will be written; its parent directory is checked.

    Returns:
        The parent directory.

    Raises:
        UsageError: the directory does not exist, is not a directory or is not writable,
            or ``path`` itself is an existing directory.
    """
    target = Path(path)
    directory = target.parent  # Path("x.h5").parent == Path("."), so bare names work
    if target.is_dir():
        raise UsageError(f"{target} is a directory; give a file name to write to, e.g. {target / 'model.h5'}")
    if not directory.exists():
        raise UsageError(f"cannot write {target}: directory {directory} does not exist; create it first")
    if not directory.is_dir():
        raise UsageError(f"cannot write {target}: {directory} is not a directory")
    # W_OK to create the temp file, X_OK to reach names inside the directory.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {target}: directory {directory} is not writable")
    return directory


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or, on POSIX, a directory) from the OS cache to disk."""
    p = Path(path)
    if p.is_dir():
        if os.name != "posix":
            return  # directories cannot be opened for fsync on Windows; the rename is still atomic
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    else:
        flags = os.O_RDONLY
    fd = os.open(p, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The caller creates and closes the file at the yielded path. On normal exit the temp file is
    fsynced, renamed over ``path`` with ``os.replace`` and the directory is fsynced (so the rename
    itself survives a crash). On any exception the temp file is removed and the error re-raised;
    ``path`` is untouched.

    Raises:
        UsageError: the target directory is missing or not writable (checked before anything runs).
    """
    target = Path(path)
    directory = check_writable_dir(target)
    # Same directory, not /tmp: os.replace is only atomic within one filesystem.
    # The leading dot hides it from `ls`; pid + random keep concurrent writers apart.
    tmp = directory / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_write({target}): nothing was written to the temporary file {tmp}")
        # Data must be on disk before the rename: otherwise a crash can leave the new name
        # pointing at an empty or partial file on some filesystems (ext4 delayed allocation).
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:  # also Ctrl-C: never leave a stray temp file
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    try:
        fsync_path(directory)
    except OSError as err:  # some filesystems refuse fsync on directories; the file is already in place
        logger.debug("could not fsync directory %s: %s", directory, err)
    logger.debug("wrote %s atomically", target)
