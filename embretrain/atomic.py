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

Every path written here may sit in a directory others can write to, so nothing is followed:

* temporary files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a name planted in advance,
  symlink or not, makes the create fail instead of writing through it);
* the target itself is replaced by ``rename``: a symlink at the target is replaced by the new file
  and whatever it pointed to is left untouched (a warning says so); a target that is neither a
  regular file nor a symlink (a directory, a FIFO, a device) is refused before anything is written;
* backups ``OUT.1..N`` are renamed, never opened, so a symlink planted at ``OUT.k`` is moved as a
  link; a directory or other special file there is refused before anything is written.

Outputs made of several files that must change together (a TF/Keras checkpoint and its name
sidecars) use :func:`atomic_files`.

Owns: every rename that publishes an output, and its temporary files. Must not: know any file format
or what it writes (callers fill the temporary paths it hands out).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import glob
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .errors import UsageError

__all__ = [
    "atomic_write",
    "atomic_dir",
    "atomic_files",
    "scratch_file",
    "scratch_dir",
    "check_target",
    "backup_path",
    "check_backups",
    "check_writable_dir",
    "clean_stale_temps",
    "fsync_path",
    "rotate_backups",
]

logger = logging.getLogger(__name__)

_TMP_PID = re.compile(r"\.tmp-(\d+)-[0-9a-f]+")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TMPFILE = getattr(os, "O_TMPFILE", 0)  # Linux: an unnamed file in a directory
# the filesystem (NFS, FUSE, ...) or kernel has no O_TMPFILE: fall back to a named probe
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS}


def check_target(path: str | os.PathLike, *, what: str = "file") -> None:
    """Refuse to replace ``path`` if it exists and is not a regular file or a symlink.

    A rename over a directory fails half-way through a run, and one over a FIFO or a device
    (``--out /dev/null``) would put a file where the system expects something else.

    Raises:
        UsageError: naming ``path`` and what it is.
    """
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as err:
        raise UsageError(f"cannot write {target}: {err.strerror}") from None
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
    raise UsageError(f"cannot write the {what} {target}: it exists and is {kind}; remove it or choose another path")


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
    check_target(target)
    # W_OK to create the temp file, X_OK to reach names inside the directory.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {target}: directory {directory} is not writable")
    # os.access says yes to root everywhere, and knows nothing of read-only mounts or sysfs:
    # create a real file, the only test that cannot lie. An unnamed one (O_TMPFILE) where the
    # filesystem can: the kernel checks the same permissions and mount flags, but no name appears
    # in the directory and its mtime does not move (a dry run writes nothing, not even a probe).
    if _TMPFILE:
        try:
            os.close(os.open(directory, os.O_WRONLY | _TMPFILE | _CLOEXEC, 0o600))
            return directory
        except OSError as err:
            if err.errno not in _NO_TMPFILE:
                raise _not_writable(target, directory, err) from None
    probe = directory / f".{target.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    except OSError as err:
        raise _not_writable(target, directory, err) from None
    os.close(fd)
    probe.unlink()
    return directory


def _not_writable(target: Path, directory: Path, err: OSError) -> UsageError:
    return UsageError(f"cannot write {target}: directory {directory} is not writable ({err.strerror})")


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


def _create_temp(target: Path) -> Path:
    """Create a fresh, empty temporary file for ``target`` (``O_EXCL | O_NOFOLLOW``) and return its path.

    Writers then open this file of ours by name (h5py, zipfile, ``write_text``): truncating it is safe.
    """
    for _ in range(8):
        tmp = _temp_name(target)
        try:
            # 0o666 and the umask: the same mode the file would get from open() or h5py.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
        except FileExistsError:  # a planted name (or a 1-in-2^32 clash): never write through it
            logger.warning("%s already exists (not ours); trying another temporary name", tmp)
            continue
        os.close(fd)
        return tmp
    raise UsageError(f"cannot create a temporary file beside {target}: every name tried already exists")


@contextlib.contextmanager
def scratch_file(target: str | os.PathLike) -> Iterator[Path]:
    """A private temporary file beside ``target`` (same naming as atomic_write's, so a killed run's is
    cleaned up by :func:`clean_stale_temps`), removed when the block ends whatever happens."""
    tmp = _create_temp(Path(target))
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def scratch_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A private temporary directory beside ``target`` (atomic_write's naming: a killed run's is cleaned
    up by :func:`clean_stale_temps`), removed with its content when the block ends whatever happens."""
    tmp = _temp_name(Path(target))
    tmp.mkdir(mode=0o700)  # fails on any existing name, symlink included
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    if keep <= 0 or not os.path.lexists(target):
        return
    check_backups(target, keep)
    for k in range(keep - 1, 0, -1):
        older = backup_path(target, k)
        if os.path.lexists(older):  # a symlink is renamed as a link, never followed
            os.replace(older, backup_path(target, k + 1))
    first = backup_path(target, 1)
    staged = _temp_name(first)
    try:
        # no copy: the backup shares the old file's blocks; a symlink target is linked as a link
        os.link(target, staged, follow_symlinks=False)
    except OSError:  # filesystems without hard links (some network mounts, FAT)
        shutil.copy2(target, staged, follow_symlinks=False)
        if not staged.is_symlink():
            fsync_path(staged)
    os.replace(staged, first)
    logger.info("kept the previous %s as %s", target.name, first.name)


def check_backups(target: str | os.PathLike, keep: int) -> None:
    """Every backup slot that rotation renames over must be a file or a symlink (checked before any rename, and by
    the CLI before loading anything)."""
    for k in range(1, keep + 1):
        check_target(backup_path(target, k), what="backup")


def _warn_symlink(target: Path) -> None:
    if target.is_symlink():
        logger.warning(
            "%s is a symbolic link (to %s): it is replaced by the new file, and what it points to is left as it was",
            target, os.readlink(target),
        )


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
    if keep > 0:
        check_backups(target, keep)
    tmp = _create_temp(target)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_write({target}): nothing was written to the temporary file {tmp}")
        # Data must be on disk before the rename: otherwise a crash can leave the new name
        # pointing at an empty or partial file on some filesystems (ext4 delayed allocation).
        fsync_path(tmp)
        rotate_backups(target, keep)
        _warn_symlink(target)
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


def libc_function(name: str):
    """The C library's function ``name`` (errno kept for ``ctypes.get_errno``), or None where there is none:
    the Linux system calls Python's ``os`` does not offer (renameat2, fallocate with flags)."""
    libc_name = ctypes.util.find_library("c")
    if os.name != "posix" or not libc_name:
        return None
    return getattr(ctypes.CDLL(libc_name, use_errno=True), name, None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    renameat2 = libc_function("renameat2")
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
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
    if os.path.lexists(target) and not target.is_symlink() and not target.is_dir():
        raise UsageError(f"cannot write the directory {target}: a file with that name exists")
    directory = check_writable_dir(target.parent / (target.name + ".probe"))  # the parent must be writable
    tmp = _temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        _warn_symlink(target)
        if not os.path.lexists(target):
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            _remove(tmp)  # tmp now holds the old version (a symlink: only the link goes)
        else:
            old = _temp_name(target)
            os.rename(target, old)
            os.rename(tmp, target)
            _remove(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir_quietly(directory)
    logger.debug("wrote directory %s atomically", target)


def _remove(path: Path) -> None:
    """Remove a file, a symlink (not what it points to) or a directory tree (rmtree never follows links)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextlib.contextmanager
def atomic_files(
    targets: Mapping[str, str | os.PathLike],
    *,
    primary: str,
    remove: Sequence[str | os.PathLike] = (),
    keep: int = 0,
) -> Iterator[dict[str, Path]]:
    """Write several files that belong together (a checkpoint and its sidecars) as one unit.

    Yields ``{key: temporary path}`` for every ``targets`` entry; the caller writes them all. Then every
    temp is fsynced, and only then are they renamed into place, the ``primary`` one *last*, each
    old file kept aside by a hard link until the unit is in place. If writing or any rename fails, the
    renames already done are undone (old files put back, new ones removed), every temp is removed,
    and the error re-raised: the targets hold the old unit or the new one, never a mix, never new
    sidecars without their checkpoint. ``remove``: files of the old unit the new one does not have
    (e.g. ``<out>.relations.tsv`` when the new model has no relations), removed with the same undo.

    A SIGKILL between two renames can still leave a mix; the primary goes last so that an orphan
    sidecar never has a new checkpoint beside it, and a reader that binds them (the meta sidecar
    names the checkpoint's size and sha256) catches an old/new pair.

    Args:
        targets: key -> final path; all must be in writable directories.
        primary: the key of the checkpoint itself (renamed last, with ``keep`` backups).
        keep: backups of the primary as for :func:`atomic_write`.
    """
    paths = {key: Path(p) for key, p in targets.items()}
    if primary not in paths:
        raise ValueError(f"atomic_files: primary {primary!r} is not one of the targets")
    for p in (*paths.values(), *map(Path, remove)):
        check_writable_dir(p)
    if keep > 0:
        check_backups(paths[primary], keep)
    temps: dict[str, Path] = {}
    undo: list[tuple[Path, Path | None]] = []  # (final path, saved old file or None if there was none)
    try:
        for key, p in paths.items():
            temps[key] = _create_temp(p)
        yield dict(temps)
        for key, tmp in temps.items():
            if not tmp.exists():
                raise RuntimeError(f"atomic_files({paths[key]}): nothing was written to {tmp}")
            fsync_path(tmp)
        order = [k for k in paths if k != primary] + [primary]
        gone = [Path(p) for p in remove if os.path.lexists(p)]
        for final in gone:  # stale members of the old unit go first, kept aside for the undo
            saved = _temp_name(final)
            os.rename(final, saved)
            undo.append((final, saved))
        for key in order:
            final = paths[key]
            saved = None
            if key == primary and keep > 0:
                rotate_backups(final, keep)
            if os.path.lexists(final):
                saved = _temp_name(final)
                os.link(final, saved, follow_symlinks=False)
            _warn_symlink(final)
            try:
                os.replace(temps[key], final)
            except BaseException:
                if saved is not None:  # final was not replaced: the saved link is just a second name
                    saved.unlink()
                raise
            temps.pop(key)
            undo.append((final, saved))
    except BaseException:
        for final, saved in reversed(undo):
            with contextlib.suppress(OSError):
                if saved is not None:
                    os.replace(saved, final)
                else:
                    final.unlink()
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    for _, saved in undo:
        if saved is not None:
            with contextlib.suppress(FileNotFoundError):
                saved.unlink()
    for directory in {p.parent for p in paths.values()}:
        _fsync_dir_quietly(directory)
    logger.debug("wrote %s atomically as one unit", ", ".join(map(str, paths.values())))


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
