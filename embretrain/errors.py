"""Typed errors with exit codes.

The library raises these with a full sentence saying what is wrong and what to do
("delta.tsv:17: expected 3 tab-separated fields, found 2"); the CLI turns each into
one clean line on stderr and the exit code below. Nothing else decides exit codes.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_DATA",
    "EXIT_CHECKPOINT",
    "EXIT_LOCKED",
    "EXIT_INTERNAL",
    "EXIT_NOTHING_TO_DO",
    "EmbretrainError",
    "UsageError",
    "DataError",
    "CheckpointError",
    "LockedError",
    "NothingToDoError",
    "TrainingError",
]

EXIT_OK = 0
EXIT_USAGE = 2  # same code click uses for bad options
EXIT_DATA = 3  # a data file (TSV, names) is missing or malformed
EXIT_CHECKPOINT = 4  # a checkpoint is missing, corrupt, or of the wrong shape
EXIT_LOCKED = 5  # another run holds the lock on this output
EXIT_INTERNAL = 6  # a bug or a failed run (NaN loss, out of disk, ...)
EXIT_NOTHING_TO_DO = 7  # only with --strict: the run would add nothing


class EmbretrainError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code = EXIT_INTERNAL
    exit_hard = False  # end the process without the interpreter's teardown (the CLI; see distributed.ClusterLost)


class UsageError(EmbretrainError):
    """Options that cannot work together, a bad config file, ..."""

    exit_code = EXIT_USAGE


class DataError(EmbretrainError):
    """A TSV or name file is missing, unreadable or malformed.

    Build the message with :meth:`at` so it names file and line.
    """

    exit_code = EXIT_DATA

    @classmethod
    def at(cls, path, line: int | None, message: str) -> "DataError":
        where = f"{path}:{line}" if line is not None else f"{path}"
        return cls(f"{where}: {message}")


class CheckpointError(EmbretrainError):
    """A checkpoint is missing, truncated, fails its checksum, or does not fit."""

    exit_code = EXIT_CHECKPOINT


class LockedError(EmbretrainError):
    """Another run is writing the same output."""

    exit_code = EXIT_LOCKED


class NothingToDoError(EmbretrainError):
    """Raised only under ``--strict`` when a rerun would add nothing."""

    exit_code = EXIT_NOTHING_TO_DO


class TrainingError(EmbretrainError):
    """Training diverged (NaN/Inf) or failed; nothing was written."""

    exit_code = EXIT_INTERNAL
