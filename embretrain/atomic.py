"""Atomic file replacement: readers see the old file or the complete new one, never a partial one.

A checkpoint written in place and interrupted (Ctrl-C, out of disk, a killed job) would leave a
truncated file where a good one used to be. Instead we write to a temporary file in the *same*
directory, fsync it, and ``os.replace`` it over the target: a rename within one filesystem is
atomic on POSIX and Windows, so the target path always holds a whole file.

    >>> with atomic_write("model.h5", keep=3) as tmp:
    ...     write_everything_to(tmp)   # any exception here leaves model.h5 untouched
    >>> # model.h5 is new; the previous one is model.h5.1, older ones model.h5.2, model.h5.3

Multi-file outputs (a TF checkpoint directory, a Keras SavedModel) use :func:`atomic_dir`, which
does the same with a temporary directory. A process killed with SIGKILL cannot clean up its temp
file; :func:`clean_stale_temps` removes those of dead processes (the CLI calls it under the lock).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

__all__ = [
    "atomic_write",
    "atomic_dir",
    "backup_path",
    "check_writable_dir",
    "clean_stale_temps",
    "fsync_path",
    "rotate_backups",
]

logger = logging.getLogger(__name__)

_TMP_PID = re.compile(r"\.tmp-(\d+)-[0-9a-f]+")


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
    # os.access says yes to root everywhere, and knows nothing of read-only mounts or sysfs:
    # create (and remove) a real file, the only test that cannot lie.
    probe = directory / f".{target.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise UsageError(f"cannot write {target}: directory {directory} is not writable ({err.strerror})") from None
    os.close(fd)
    probe.unlink()
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


def _fsync_dir_quietly(directory: Path) -> None:
    try:
        fsync_path(directory)
    except OSError as err:  # some filesystems refuse fsync on directories; the rename already happened
        logger.debug("could not fsync directory %s: %s", directory, err)


def _temp_name(target: Path) -> Path:
    # Same directory, not /tmp: os.replace is only atomic within one filesystem.
    # The leading dot hides it from `ls`; pid + random keep concurrent writers apart, and the pid
    # lets clean_stale_temps tell a dead run's leftovers from a live run's file.
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def backup_path(path: str | os.PathLike, k: int) -> Path:
    """The k-th previous version of ``path``: ``<path>.<k>`` (1 = the most recent)."""
    p = Path(path)
    return p.with_name(f"{p.name}.{k}")


def rotate_backups(target: str | os.PathLike, keep: int) -> None:
    """Shift ``target.1 .. target.(keep-1)`` up by one and hard-link ``target`` as ``target.1``.

    Every step is one rename, and ``target`` itself is never moved (it is linked, so it stays in
    place until the caller renames the new version over it): a crash at any point leaves
    ``target`` whole and at worst one backup missing. ``target.<keep>`` is dropped.
    """
    target = Path(target)
    if keep <= 0 or not target.exists():
        return
    for k in range(keep - 1, 0, -1):
        older = backup_path(target, k)
        if older.exists():
            os.replace(older, backup_path(target, k + 1))
    first = backup_path(target, 1)
    staged = _temp_name(first)
    try:
        os.link(target, staged)  # no copy: the backup shares the old file's blocks
    except OSError:  # filesystems without hard links (some network mounts, FAT)
        shutil.copy2(target, staged)
        fsync_path(staged)
    os.replace(staged, first)
    logger.info("kept the previous %s as %s", target.name, first.name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, keep: int = 0) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The caller creates and closes the file at the yielded path. On normal exit the temp file is
    fsynced, renamed over ``path`` with ``os.replace`` and the directory is fsynced (so the rename
    itself survives a crash). On any exception the temp file is removed and the error re-raised;
    ``path`` is untouched.

    Args:
        keep: keep this many previous versions as ``path.1`` (newest) .. ``path.<keep>``.

    Raises:
        UsageError: the target directory is missing or not writable (checked before anything runs).
    """
    target = Path(path)
    directory = check_writable_dir(target)
    tmp = _temp_name(target)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_write({target}): nothing was written to the temporary file {tmp}")
        # Data must be on disk before the rename: otherwise a crash can leave the new name
        # pointing at an empty or partial file on some filesystems (ext4 delayed allocation).
        fsync_path(tmp)
        rotate_backups(target, keep)
        os.replace(tmp, target)
    except BaseException:  # also Ctrl-C: never leave a stray temp file
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir_quietly(directory)
    logger.debug("wrote %s atomically", target)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        _fsync_dir_quietly(Path(dirpath))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if os.name != "posix" or not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    logger.debug("renameat2(RENAME_EXCHANGE) failed: %s", os.strerror(ctypes.get_errno()))
    return False


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_write` for a directory of files (TF checkpoint, SavedModel).

    Yields an empty temporary directory next to ``path``; fill it. On success every file in it
    is fsynced and it takes ``path``'s place: a plain rename if ``path`` does not exist, else an
    atomic exchange (Linux ``renameat2``) after which the old directory is deleted. Where the
    exchange is unsupported the old directory is renamed aside first, so for an instant ``path``
    is absent (never partial). On any exception the temporary directory is removed.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"cannot write the directory {target}: a file with that name exists")
    directory = check_writable_dir(target.parent / (target.name + ".probe"))  # the parent must be writable
    tmp = _temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp)  # tmp now holds the old version
        else:
            old = _temp_name(target)
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir_quietly(directory)
    logger.debug("wrote directory %s atomically", target)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temp files/directories for ``path`` left by processes that no longer run.

    A run killed with SIGKILL (OOM killer, a timeout) cannot remove its temp file. Call this
    while holding the output's lock; temps of live processes are never touched.

    Returns:
        The paths removed.
    """
    target = Path(path)
    removed = []
    # Also the temp of a temp ("..name.tmp-1-ab.tmp-1-cd") and of a backup (".name.1.tmp-1-ab").
    for name in glob.glob(f".*{glob.escape(target.name)}*.tmp-*", root_dir=target.parent):
        m = _TMP_PID.search(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        stale = target.parent / name
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        removed.append(stale)
        logger.warning("removed %s, left by an earlier run that was killed", stale)
    return removed
