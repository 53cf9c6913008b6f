"""``embretrain verify OLD NEW``: the gate a pipeline runs before publishing a grown checkpoint.

NEW passes when it holds OLD's model, its vocabularies start with OLD's (same names, same rows),
every table of OLD is in NEW with the same width and its first ``n_old`` rows are bit-identical
(compared as raw bytes, so ``-0.0`` vs ``0.0`` or a changed NaN payload also fail), and, for two
TF or Keras checkpoints, every other variable of OLD is in NEW unchanged (optimizer slots of a
grown table: their old rows unchanged).

Works for any supported format; for native files it reads HDF5 only (no TensorFlow import).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checkpoint import Checkpoint

__all__ = ["VerifyResult", "compare", "verify"]

logger = logging.getLogger(__name__)


@dataclass
class VerifyResult:
    """Outcome of a verification.

    Attributes:
        ok: NEW extends OLD without changing it.
        message: one sentence; on failure it names the first differing entity (or relation/variable).
        first_entity: name of the first entity whose row or name differs (None if none does).
        checked: counts of what was compared (``entities``, ``relations``, ``tables``, ``variables``).
    """

    ok: bool
    message: str
    first_entity: str | None = None
    checked: dict[str, Any] = field(default_factory=dict)


def _bits(a: np.ndarray) -> np.ndarray:
    """Raw bytes of each row as one void-free uint8 matrix ``[n_rows, row_bytes]``."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(a.shape[0], -1) if a.ndim >= 1 and a.shape[0] else a.view(np.uint8).reshape(0, 0)


def _first_vocab_difference(old: list[str], new: list[str]) -> int | None:
    for i, name in enumerate(old):
        if i >= len(new) or new[i] != name:
            return i
    return None


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (bytes, str)) or isinstance(b, (bytes, str)):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def compare(old: Checkpoint, new: Checkpoint) -> VerifyResult:
    """Check that ``new`` extends ``old`` (see the module docstring)."""
    checked = {"entities": old.n_entities, "relations": old.n_relations, "tables": 0, "variables": 0}
    if old.model != new.model:
        return VerifyResult(False, f"model differs: OLD is {old.model!r}, NEW is {new.model!r}", checked=checked)
    for kind, a, b in (("entity", old.entities, new.entities), ("relation", old.relations, new.relations)):
        i = _first_vocab_difference(a, b)
        if i is not None:
            found = f"{b[i]!r}" if i < len(b) else f"nothing (NEW has only {len(b)} {kind} names)"
            return VerifyResult(
                False, f"{kind} row {i}: OLD has {a[i]!r}, NEW has {found}",
                first_entity=a[i] if kind == "entity" else None, checked=checked,
            )
    new_tables = new.tables()
    for name, table in old.tables().items():
        relation = name in old.relation_tables
        names = old.relations if relation else old.entities
        other = new_tables.get(name)
        if other is None:
            return VerifyResult(False, f"NEW has no table {name!r}", checked=checked)
        if other.shape[1:] != table.shape[1:] or other.dtype != table.dtype:
            return VerifyResult(
                False, f"table {name!r}: OLD is {table.dtype} {list(table.shape)}, NEW is {other.dtype} {list(other.shape)}",
                checked=checked,
            )
        differs = np.flatnonzero((_bits(table) != _bits(other[: table.shape[0]])).any(axis=1))
        if differs.size:
            row = int(differs[0])
            kind = "relation" if relation else "entity"
            return VerifyResult(
                False,
                f"table {name!r}: row {row} ({kind} {names[row]!r}) differs"
                + (f", and {differs.size - 1} more row(s)" if differs.size > 1 else ""),
                first_entity=None if relation else names[row], checked=checked,
            )
        checked["tables"] += 1
    problem = _compare_variables(old, new, checked)
    if problem:
        return VerifyResult(False, problem, checked=checked)
    return VerifyResult(
        True,
        f"NEW extends OLD: {old.n_entities} entities and {old.n_relations} relations keep their names and rows "
        f"({checked['tables']} table(s) bit-identical, {checked['variables']} other variable(s) unchanged); "
        f"NEW adds {new.n_entities - old.n_entities} entities and {new.n_relations - old.n_relations} relations",
        checked=checked,
    )


def _compare_variables(old: Checkpoint, new: Checkpoint, checked: dict) -> str | None:
    """Other TF/Keras variables of OLD must be in NEW unchanged; slots only in their old rows."""
    if old.extras.get("format") != new.extras.get("format") or "variables" not in old.extras:
        return None
    old_vars, new_vars = old.extras["variables"], new.extras.get("variables", {})
    slots = old.extras.get("slots", {})
    for key, value in old_vars.items():
        if key not in new_vars:
            return f"NEW lacks variable {key!r}"
        other = new_vars[key]
        if key in slots:
            a, b = np.asarray(value), np.asarray(other)
            same = a.dtype == b.dtype and a.shape[1:] == b.shape[1:] and a.tobytes() == b[: a.shape[0]].tobytes()
        else:
            same = _same_value(value, other)
        if not same:
            return f"variable {key!r} differs between OLD and NEW"
        checked["variables"] += 1
    return None


def verify(
    old: str | os.PathLike,
    new: str | os.PathLike,
    *,
    old_options: dict[str, Any] | None = None,
    new_options: dict[str, Any] | None = None,
) -> VerifyResult:
    """Load two checkpoints (any formats) and :func:`compare` them.

    Args:
        old, new: checkpoint paths.
        old_options, new_options: load options (``entity_var``, ``entity_vocab``, ...) for each.

    Raises:
        CheckpointError: a checkpoint cannot be read at all (that is not a "differs" answer).
    """
    from .checkpoint import load

    old_ckpt = load(old, **(old_options or {}))
    new_ckpt = load(new, **(new_options or {}))
    result = compare(old_ckpt, new_ckpt)
    logger.info("verify %s -> %s: %s", old, new, result.message)
    return result
