"""Checkpoint formats: one module per format, one ``load``/``save`` entry that picks by what is on disk.

Formats (names as ``--out-format`` takes them):

* ``h5``: our native HDF5 file (:mod:`.native`);
* ``tf``: a TensorFlow checkpoint prefix or directory, TF1 ``Saver`` or TF2 ``tf.train.Checkpoint`` (:mod:`.tfckpt`);
* ``keras``: a Keras 3 ``.weights.h5`` file or ``.keras`` archive (:mod:`.keras`).

Every format is one entry of :data:`FORMATS` (:mod:`.formats`: detect, load, save, describe,
check_out); the functions here dispatch through it, and the CLI's choices come from it. Detection
only looks at files (signatures, ``<prefix>.index``, zip members); it never imports TensorFlow, so
``inspect`` and ``verify`` on native files stay fast. Owns: picking a format and the load options'
rules. Must not: hold any one format's logic, or know where rows live (:mod:`embretrain.storage`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UsageError
from .base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .formats import FORMAT_NAMES, FORMATS, Format

__all__ = [
    "Checkpoint",
    "ENTITY_TABLE",
    "RELATION_TABLE",
    "CONTEXT_TABLE",
    "FORMATS",
    "FORMAT_NAMES",
    "Format",
    "LOAD_OPTIONS",
    "format_of",
    "load",
    "save",
    "describe",
    "check_out",
]

logger = logging.getLogger(__name__)

# Options for checkpoints that do not describe themselves (TF, Keras); see foreign.LoadOptions.
LOAD_OPTIONS = ("entity_var", "relation_var", "context_var", "entity_vocab", "relation_vocab", "context_vocab", "model",
                "partition_strategy")


def format_of(path: str | os.PathLike) -> str:
    """The name of the format of what is at ``path`` (a key of :data:`FORMATS`).

    Raises:
        CheckpointError: nothing readable there, naming what was looked for.
    """
    p = Path(path)
    for fmt in sorted(FORMATS.values(), key=lambda f: f.fallback):  # the catch-all last
        if fmt.detect(p):
            return fmt.name
    if p.is_dir():
        raise CheckpointError(
            f"{p} is a directory without a TensorFlow checkpoint (no 'checkpoint' file, no *.index); "
            "give a checkpoint file or prefix"
        )
    raise CheckpointError(f"{p}: no such checkpoint (no file, directory or TensorFlow prefix {p}.index)")


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(foreign load options that were given, everything else)."""
    given = {k: v for k, v in kwargs.items() if k in LOAD_OPTIONS and v is not None}
    rest = {k: v for k, v in kwargs.items() if k not in LOAD_OPTIONS}
    return given, rest


def check_old_rows(path, old_rows: str) -> None:
    """``old_rows="on-disk"`` needs a format that can leave old rows in the file (UsageError otherwise)."""
    fmt = FORMATS[format_of(path)]
    if old_rows != "memory" and not fmt.on_disk:
        raise UsageError(
            f"--old-rows {old_rows} reads native .h5 checkpoints only; {path} is a "
            f"{fmt.title} checkpoint (drop old_rows, or grow it once with out_format h5)"
        )


def load(path, **kwargs) -> Checkpoint:
    """Load any supported checkpoint, format detected from what is on disk.

    Args:
        path: native ``.h5``; TF prefix, prefix file or directory; ``.weights.h5`` or ``.keras``.
        **kwargs: ``entity_var``, ``relation_var``, ``context_var``, ``entity_vocab``,
            ``relation_vocab``, ``context_vocab``, ``model``, ``partition_strategy`` for TF/Keras (None = not given); ``verify`` for native;
            ``old_rows`` (``"memory"`` or ``"on-disk"``, native only) and ``read_only`` (see
            :func:`.native.load`).

    Raises:
        CheckpointError: unreadable or unusable checkpoint.
        UsageError: TF/Keras options given for a native file (it names its own tables), or
            ``old_rows="on-disk"`` for a TF/Keras checkpoint.
    """
    fmt = FORMATS[format_of(path)]
    old_rows = kwargs.pop("old_rows", None) or "memory"
    read_only = bool(kwargs.pop("read_only", False))
    check_old_rows(path, old_rows)
    given, rest = _split(kwargs)
    if not fmt.self_describing:
        if rest:
            raise UsageError(f"option(s) {', '.join(rest)} do not apply to a {fmt.name} checkpoint")
        return fmt.load(path, **given)
    ckpt = fmt.load(path, old_rows=old_rows, read_only=read_only, **rest)
    model = given.pop("model", None)
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{path} is a native checkpoint that names its own tables and vocabularies; drop {flags}")
    if model is not None and model != ckpt.model:
        raise UsageError(f"{path} holds a {ckpt.model!r} model, not {model!r}")
    return ckpt


def _out_format(ckpt: Checkpoint | None, fmt: str | None) -> Format:
    fmt = fmt or (ckpt.extras.get("format") if ckpt is not None else None) or "h5"
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def check_out(path, fmt: str | None = None, ckpt: Checkpoint | None = None) -> None:
    """Fail fast (before training) if the output could not be written in format ``fmt``."""
    _out_format(ckpt, fmt).check_out(path)


def save(ckpt: Checkpoint, path, format: str | None = None, **kwargs) -> None:  # noqa: A002 - CLI name
    """Write ``ckpt`` atomically; ``format`` defaults to the format it was loaded from (native if none).

    ``h5`` drops TF/Keras extras (only the tables are kept); ``tf``/``keras`` write names and model
    to sidecars beside the output.
    """
    _out_format(ckpt, format).save(ckpt, path, **kwargs)


def describe(path) -> dict:
    """What ``embretrain inspect`` shows: for native files format, model, dims, counts, checksum
    status and lineage; for TF and Keras files every variable's key, shape and dtype."""
    return FORMATS[format_of(path)].describe(path)
