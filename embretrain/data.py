"""Reading the TSV inputs: triples, weighted pairs and name lists, with file:line errors.

Three formats, all UTF-8, one record per line, fields separated by a single tab:

* triples: ``head<TAB>relation<TAB>tail``
* pairs: ``a<TAB>b[<TAB>weight]`` (weight a finite float > 0, default 1.0)
* names (new entities, relations, vocab files): one name per line

Names are opaque strings: ``"00260881"`` stays a string with its leading zeros, and spaces
and any unicode inside a name are kept. Blank lines are skipped, CRLF line endings are
accepted, and ``*.gz`` files are decompressed on the fly. Anything else that looks wrong
(a byte-order mark, invalid UTF-8, an empty field, a NUL or a carriage return inside a line,
a huge line, no records at all) is a :class:`~embretrain.errors.DataError` whose message starts
with ``path:line:`` so the user can jump straight to it.

Inputs must be regular files (symlinks to them are followed: an input is only read). A FIFO,
a socket or a device (``/dev/zero``, a process substitution) is refused at open without blocking:
every input is read twice (hashed for the lineage, then parsed), and an endless stream would never
finish; an endless regular file without newlines stops at the 1 MiB line cap.

Every reader goes through :func:`iter_records`, the one place these rules live.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import contextlib
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np

from .errors import DataError

__all__ = [
    "MAX_LINE_BYTES",
    "PathLike",
    "Triple",
    "Pair",
    "TripleFile",
    "PairFile",
    "NameFile",
    "read_triples",
    "read_pairs",
    "read_names",
    "read_all_triples",
    "iter_records",
    "sha256_file",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Triple = tuple[str, str, str]  # (head, relation, tail) names
Pair = tuple[str, str]  # (a, b) names

MAX_LINE_BYTES = 1 << 20  # longer lines are almost surely a wrong file (binary, one-line JSON)

_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"

# Field labels per record kind, used only to make error messages specific.
_FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "triples": ("head", "relation", "tail"),
    "pairs": ("a", "b", "weight"),
    "names": ("name",),
}


@dataclass
class TripleFile:
    """Triples read from one file.

    Attributes:
        path: the path as given (used in error messages).
        triples: ``(head, relation, tail)`` names, in file order.
        lines: ``lines[i]`` is the 1-based line number of ``triples[i]``.
    """

    path: str
    triples: list[Triple]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.triples)


@dataclass
class PairFile:
    """Weighted pairs read from one file.

    Attributes:
        path: the path as given.
        pairs: ``(a, b)`` names, in file order.
        weights: float32 ``[n]``; 1.0 where the line had no weight.
        lines: ``lines[i]`` is the 1-based line number of ``pairs[i]``.
    """

    path: str
    pairs: list[Pair]
    weights: np.ndarray
    lines: list[int]

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass
class NameFile:
    """Names read from one file (one per line), in file order, duplicates kept.

    Attributes:
        path: the path as given.
        names: the names.
        lines: ``lines[i]`` is the 1-based line number of ``names[i]``.
    """

    path: str
    names: list[str]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.names)


def _open_error(path: str, err: OSError) -> DataError:
    """Turn an OSError from open/read into one clear sentence naming the path."""
    if isinstance(err, FileNotFoundError):
        return DataError.at(path, None, "file not found")
    if isinstance(err, IsADirectoryError):
        return DataError.at(path, None, "is a directory, expected a file")
    if isinstance(err, PermissionError):
        return DataError.at(path, None, "permission denied; cannot read the file")
    reason = err.strerror or str(err)
    return DataError.at(path, None, f"cannot read the file ({reason})")


_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


def _open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading raw bytes, refusing anything but a regular file.

    ``O_NONBLOCK``: opening a FIFO for reading would otherwise wait forever for a writer (a cron job
    hung with no message); it has no effect on a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise _open_error(path, err) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise DataError.at(path, None, "is a directory, expected a file")
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise DataError.at(path, None, f"is {kind}, expected a regular file (inputs are read twice: "
                                           "save the stream to a file first)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def _open_binary(path: str) -> Iterator[BinaryIO]:
    """The raw file, or its decompressed stream for ``*.gz``; both closed after the block."""
    with _open_regular(path) as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw


def _iter_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, content)`` for every line, line ending removed, blank lines included.

    Lines are read with a size limit so a multi-gigabyte "line" is never loaded whole.
    """
    is_gz = path.endswith(".gz")
    # +2 leaves room for "\r\n", so a line whose content is exactly MAX_LINE_BYTES passes.
    limit = MAX_LINE_BYTES + 2
    with _open_binary(path) as f:
        readline = f.readline
        line_no = 0
        while True:
            try:
                raw = readline(limit)
            except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                # EOFError: a truncated .gz; BadGzipFile: not gzip at all.
                where = f"after line {line_no}" if line_no else "at the start"
                raise DataError.at(
                    path, None, f"corrupt or truncated gzip file ({where}: {err})"
                ) from None
            except OSError as err:
                raise _open_error(path, err) from None
            if not raw:
                return
            line_no += 1
            if raw[-1:] == b"\n":
                raw = raw[:-1]
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            if len(raw) > MAX_LINE_BYTES:
                raise DataError.at(
                    path,
                    line_no,
                    f"line is longer than {MAX_LINE_BYTES} bytes; is this really a "
                    "tab-separated text file?",
                )
            if line_no == 1:
                _check_first_line(path, raw, is_gz)
            yield line_no, raw


def _check_first_line(path: str, raw: bytes, is_gz: bool) -> None:
    if raw.startswith(_BOM):
        # Keeping the BOM would silently glue U+FEFF onto the first name.
        raise DataError.at(
            path,
            1,
            "file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without a BOM",
        )
    if not is_gz and raw.startswith(_GZIP_MAGIC):
        raise DataError.at(
            path, 1, "file looks gzip-compressed; give it a .gz suffix or decompress it"
        )


def _field_label(what: str, i: int) -> str:
    labels = _FIELD_NAMES.get(what, ())
    if i < len(labels):
        return f"field {i + 1} ({labels[i]})"
    return f"field {i + 1}"


def _count_message(what: str, n_fields: tuple[int, ...], found: int) -> str:
    labels = _FIELD_NAMES.get(what, ())
    lo, hi = min(n_fields), max(n_fields)
    if what == "names":
        return f"expected 1 name per line, found {found} tab-separated fields (names cannot contain tabs)"
    if lo == hi:
        expected = f"{lo} tab-separated fields"
        shown = ", ".join(labels[:lo])
    else:
        expected = " or ".join(str(n) for n in sorted(set(n_fields))) + " tab-separated fields"
        shown = ", ".join(labels[:lo]) + "".join(f"[, {x}]" for x in labels[lo:hi])
    detail = f" ({shown})" if shown else ""
    return f"expected {expected}{detail}, found {found}"


def iter_records(
    path: PathLike, n_fields: tuple[int, ...], what: str
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_no, fields)`` for every non-blank line of ``path``.

    Args:
        path: a text file, or ``*.gz``.
        n_fields: the allowed field counts, e.g. ``(3,)`` or ``(2, 3)``.
        what: ``"triples"``, ``"pairs"`` or ``"names"``; names the fields in errors and
            the record kind in "file has no ...".

    Raises:
        DataError: on any rule violation (see the module docstring), naming file and line.
    """
    path = os.fspath(path)
    allowed = frozenset(n_fields)
    n_records = 0
    for line_no, raw in _iter_lines(path):
        if not raw:
            continue
        if b"\x00" in raw:
            at = raw.index(b"\x00") + 1
            raise DataError.at(path, line_no, f"line contains a NUL character (at byte {at})")
        if b"\r" in raw:  # only a line ending's CR is removed; one inside would end up inside a name
            at = raw.index(b"\r") + 1
            raise DataError.at(path, line_no, f"line contains a carriage return inside it (at byte {at}); "
                                              "names cannot hold line breaks")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError.at(
                path,
                line_no,
                f"invalid UTF-8 at byte {err.start + 1} of the line; the file must be UTF-8 encoded",
            ) from None
        fields = text.split("\t")
        if "" in fields:
            i = fields.index("")
            hint = " (the line ends with a tab)" if i == len(fields) - 1 and len(fields) > 1 else ""
            raise DataError.at(path, line_no, f"{_field_label(what, i)} is empty{hint}")
        if len(fields) not in allowed:
            raise DataError.at(path, line_no, _count_message(what, n_fields, len(fields)))
        n_records += 1
        yield line_no, fields
    if n_records == 0:
        raise DataError.at(path, None, f"file has no {what}")


def read_triples(path: PathLike) -> TripleFile:
    """Read ``head<TAB>relation<TAB>tail`` lines."""
    path = os.fspath(path)
    triples: list[Triple] = []
    lines: list[int] = []
    for line_no, fields in iter_records(path, (3,), "triples"):
        triples.append((fields[0], fields[1], fields[2]))
        lines.append(line_no)
    logger.debug("read %d triples from %s", len(triples), path)
    return TripleFile(path=path, triples=triples, lines=lines)


def _parse_weight(path: str, line_no: int, text: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise DataError.at(
            path, line_no, f"field 3 (weight) is not a number: {text!r}"
        ) from None
    # Weights are stored as float32, where 1e-50 would become 0 and 1e40 inf.
    if not (_F32_TINY <= w <= _F32_MAX):  # also False for nan
        raise DataError.at(
            path,
            line_no,
            f"field 3 (weight) must be a finite number > 0 (and within float32 range), got {text!r}",
        )
    return w


def read_pairs(path: PathLike) -> PairFile:
    """Read ``a<TAB>b[<TAB>weight]`` lines; a missing weight is 1.0."""
    path = os.fspath(path)
    pairs: list[Pair] = []
    weights: list[float] = []
    lines: list[int] = []
    for line_no, fields in iter_records(path, (2, 3), "pairs"):
        pairs.append((fields[0], fields[1]))
        weights.append(_parse_weight(path, line_no, fields[2]) if len(fields) == 3 else 1.0)
        lines.append(line_no)
    logger.debug("read %d pairs from %s", len(pairs), path)
    return PairFile(path=path, pairs=pairs, weights=np.asarray(weights, dtype=np.float32), lines=lines)


def read_names(path: PathLike) -> NameFile:
    """Read one name per line (duplicates are kept; :meth:`Vocab.grow` counts them)."""
    path = os.fspath(path)
    names: list[str] = []
    lines: list[int] = []
    for line_no, fields in iter_records(path, (1,), "names"):
        names.append(fields[0])
        lines.append(line_no)
    logger.debug("read %d names from %s", len(names), path)
    return NameFile(path=path, names=names, lines=lines)


def read_all_triples(paths: Iterable[PathLike]) -> list[TripleFile]:
    """Read several triple files (e.g. ``--known a --known b``), in the order given."""
    return [read_triples(p) for p in paths]


def sha256_file(path: PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of the raw bytes on disk (compressed bytes for ``*.gz``), for lineage."""
    path = os.fspath(path)
    digest = hashlib.sha256()
    try:
        with _open_regular(path) as f:
            while chunk := f.read(chunk_bytes):
                digest.update(chunk)
    except OSError as err:
        raise _open_error(path, err) from None
    return digest.hexdigest()
