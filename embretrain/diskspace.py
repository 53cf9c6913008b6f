"""Disk space and failed writes: refuse a write the filesystem has no room for before it starts, and say
in one line why a write failed.

Owns: :func:`check_room`, :func:`table_bytes`, :func:`write_failure`. Every writer of an output
(the three checkpoint formats) calls these; how an HDF5 file is kept from meeting a full disk while it is
written is :mod:`embretrain.checkpoint.h5write`'s.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np

from .errors import EmbretrainError

__all__ = ["check_room", "table_bytes", "write_failure"]

_ERRNO = re.compile(r"errno = (\d+)")


def write_failure(path: str | os.PathLike, err: BaseException) -> str:
    """One line for a failed write of ``path``: the system's reason, without HDF5's stack of messages."""
    code = getattr(err, "errno", None)
    if not code:
        found = _ERRNO.findall(str(err))
        code = int(found[-1]) if found else None
    reason = os.strerror(code) if code else " ".join(str(err).split())
    return f"cannot write {path}: {reason}"


def table_bytes(tables) -> int:
    """Bytes of these float32 tables' rows: what every format stores at least (the lower bound :func:`check_room` takes)."""
    return sum(4 * int(np.prod(table.shape)) for table in tables)


def check_room(path: str | os.PathLike, nbytes: int, why: str = "") -> None:
    """Refuse to start writing ``nbytes`` beside ``path`` if its filesystem has less room than that.

    ``nbytes`` is a lower bound of the file's size (its tables; ``why`` says which, in the message), so a
    write this refuses could not succeed. A check, not a reservation: another writer can still fill the
    disk meanwhile (then the write fails cleanly, see :mod:`embretrain.checkpoint.h5write`). Filesystems
    that report no sizes (zero blocks) are not checked.

    Raises:
        EmbretrainError: exit 6, naming the output, what it needs and what is free.
    """
    directory = Path(path).parent
    try:
        st = os.statvfs(directory)
    except OSError:
        return
    if st.f_blocks == 0:
        return
    # root may also use the blocks a filesystem keeps back for it (ext4: 5 %)
    free = (st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    if free < nbytes:
        raise EmbretrainError(
            f"cannot write {path}: it needs at least {_mb(nbytes)}{f' ({why})' if why else ''} and {directory} has {_mb(free)} free "
            f"({os.strerror(errno.ENOSPC)}); nothing was written"
        )


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"

