"""``embretrain verify OLD NEW``: the gate a pipeline runs before publishing a grown checkpoint.

NEW passes when it holds OLD's model, its vocabularies start with OLD's (same names, same rows),
every table of OLD is in NEW with the same width and its first ``n_old`` rows are bit-identical
(compared as raw bytes, so ``-0.0`` vs ``0.0`` or a changed NaN payload also fail), and, for two
TF or two Keras checkpoints, every other variable of OLD is in NEW unchanged (a variable that grew
with the tables, such as an optimizer slot: its old rows unchanged).

Pending entities (added without data on an earlier night, see :mod:`embretrain.delta`) are the one
exception: the row of an entity pending in OLD may change once, when NEW's lineage records that a run
after OLD trained it. verify reads both lineages itself (native ``/lineage``, the TF/Keras sidecar): the
entities pending in OLD are those OLD's records added as pending and did not train since; NEW's lineage
must start with OLD's, and only the records past OLD's count. Every other old row, an untrained pending
one included, must be bit-identical.

verify is a witness independent of the loader: it never goes through ``checkpoint.load``, so a bug
there cannot make it agree. It reads what the user's own program would read:

* native ``.h5`` and Keras files: the datasets, with plain h5py;
* TF checkpoints: every tensor through TF's own checkpoint reader; a variable saved in N parts
  (TF1 partitioner) is cut as the program's partitioner cuts it (OLD's N parts, for each file's
  own row count) and looked up with TF's ``embedding_lookup`` under the declared
  ``partition_strategy``, so id i is compared with id i as the program sees them.

A file that cannot be read is a :class:`~embretrain.errors.CheckpointError` (exit 4), never an answer.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint.base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .errors import CheckpointError, UsageError

__all__ = ["VerifyResult", "compare", "verify"]

logger = logging.getLogger(__name__)

_OPTION_OF_ROLE = {ENTITY_TABLE: "entity_var", RELATION_TABLE: "relation_var", CONTEXT_TABLE: "context_var"}


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


@dataclass
class _View:
    """What a user's program reads from one checkpoint file.

    Attributes:
        fmt: ``h5``, ``tf`` or ``keras``.
        tables: role (``entity_embeddings``, ...) -> table in id order.
        variables: TF/Keras: every key -> value (partitioned ones in id order); empty for native files.
        parts: TF: key -> number of parts of a partitioned variable.
    """

    path: str
    fmt: str
    model: str | None
    entities: list[str]
    relations: list[str]
    tables: dict[str, np.ndarray]
    variables: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, int] = field(default_factory=dict)
    lineage: list = field(default_factory=list)
    contexts: list[str] | None = None  # the context table's own names (two vocabularies); None: entity-indexed

    def names_of(self, table: str) -> tuple[str, list[str]]:
        """(kind, names) of ``table``'s rows."""
        if table == RELATION_TABLE:
            return "relation", self.relations
        return ("context", self.contexts) if table == CONTEXT_TABLE and self.contexts is not None else ("entity", self.entities)


def _bits(a: np.ndarray) -> np.ndarray:
    """Raw bytes of each row as one uint8 matrix ``[n_rows, row_bytes]``."""
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


def _row_differences(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """int64 ids of the rows of ``old`` whose bytes differ from the first rows of ``new``, ascending."""
    return np.flatnonzero((_bits(old) != _bits(new[: old.shape[0]])).any(axis=1))


def _first_row_difference(old: np.ndarray, new: np.ndarray) -> tuple[int, int] | None:
    """(first differing old row, how many differ) between ``old`` and the first rows of ``new``."""
    differs = _row_differences(old, new)
    return (int(differs[0]), int(differs.size)) if differs.size else None


def _pending_trained(old: _View, new: _View) -> tuple[set[str], set[str]]:
    """``(entities pending in OLD, those of them NEW's later records train)``, read from the lineages.

    The records are read here, not through the loader or :func:`embretrain.checkpoint.base.pending_names`:
    the last word per name wins over OLD's records; NEW must carry OLD's records first (else it
    trained nothing as far as verify can tell).
    """
    from .checkpoint.base import PENDING_ADDED, PENDING_TRAINED

    def names(rec, key) -> list[str]:
        value = rec.get(key) if isinstance(rec, dict) else None
        return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []

    pending: set[str] = set()
    for rec in old.lineage:
        pending.difference_update(names(rec, PENDING_TRAINED))
        pending.update(names(rec, PENDING_ADDED))
    if not pending or new.lineage[: len(old.lineage)] != old.lineage:
        return pending, set()
    trained = {n for rec in new.lineage[len(old.lineage):] for n in names(rec, PENDING_TRAINED)}
    return pending, pending & trained


def _compare_views(old: _View, new: _View) -> VerifyResult:
    checked = {"entities": len(old.entities), "relations": len(old.relations), "tables": 0, "variables": 0}
    pending, trained = _pending_trained(old, new)
    may_change = np.array(sorted(i for i, name in enumerate(old.entities) if name in trained), dtype=np.int64)
    changed_pending: set[int] = set()
    if old.model and new.model and old.model != new.model:
        return VerifyResult(False, f"model differs: OLD is {old.model!r}, NEW is {new.model!r}", checked=checked)
    for kind, a, b in (("entity", old.entities, new.entities), ("relation", old.relations, new.relations),
                       ("context", old.contexts or [], new.contexts or [])):
        i = _first_vocab_difference(a, b)
        if i is not None:
            found = f"{b[i]!r}" if i < len(b) else f"nothing (NEW has only {len(b)} {kind} names)"
            return VerifyResult(
                False, f"{kind} row {i}: OLD has {a[i]!r}, NEW has {found}",
                first_entity=a[i] if kind == "entity" else None, checked=checked,
            )
    for name, table in old.tables.items():
        kind, names = old.names_of(name)
        other = new.tables.get(name)
        if other is None:
            return VerifyResult(False, f"NEW has no table {name!r}", checked=checked)
        if other.shape[1:] != table.shape[1:] or other.dtype != table.dtype or other.shape[0] < table.shape[0]:
            return VerifyResult(
                False, f"table {name!r}: OLD is {table.dtype} {list(table.shape)}, NEW is {other.dtype} {list(other.shape)}",
                checked=checked,
            )
        differs = _row_differences(table, other)
        if kind == "entity" and len(may_change):
            changed_pending.update(np.intersect1d(differs, may_change).tolist())
            differs = np.setdiff1d(differs, may_change)
        if len(differs):
            row, count = int(differs[0]), len(differs)
            why = (" (pending in OLD, but no run after OLD records training it)"
                   if kind == "entity" and names[row] in pending else "")
            return VerifyResult(
                False,
                f"table {name!r}: row {row} ({kind} {names[row]!r}) differs{why}"
                + (f", and {count - 1} more row(s)" if count > 1 else ""),
                first_entity=None if kind == "relation" else names[row], checked=checked,
            )
        checked["tables"] += 1
    if changed_pending:  # only then: a plain extension reports what it always did
        checked["pending_trained"] = len(changed_pending)
    if old.fmt == new.fmt and old.fmt != "h5":
        problem, entity = _compare_variables(old, new, checked)
        if problem:
            return VerifyResult(False, problem, first_entity=entity, checked=checked)
    contexts = (f", {len(old.contexts)} contexts", f", {len(new.contexts or []) - len(old.contexts)} contexts") \
        if old.contexts is not None else ("", "")
    if old.contexts is not None:
        checked["contexts"] = len(old.contexts)
    return VerifyResult(
        True,
        f"NEW extends OLD: {len(old.entities)} entities{contexts[0]} and {len(old.relations)} relations keep their names "
        f"and rows ({checked['tables']} table(s) bit-identical, {checked['variables']} other variable(s) unchanged); "
        f"NEW adds {len(new.entities) - len(old.entities)} entities{contexts[1]} and "
        f"{len(new.relations) - len(old.relations)} relations"
        + (f"; {len(changed_pending)} pending {'entity was' if len(changed_pending) == 1 else 'entities were'} "
           "trained, as NEW's lineage records" if changed_pending else ""),
        checked=checked,
    )


def _compare_variables(old: _View, new: _View, checked: dict) -> tuple[str | None, str | None]:
    """Every variable of OLD in NEW unchanged; one with as many rows as a grown vocabulary only in its old rows."""
    grown = {len(old.entities): ("entity", old.entities), len(old.relations): ("relation", old.relations)}
    if old.contexts is not None:
        grown.setdefault(len(old.contexts), ("context", old.contexts))
    for key, value in old.variables.items():
        if key not in new.variables:
            return f"NEW lacks variable {key!r}", None
        other = new.variables[key]
        a, b = np.asarray(value), np.asarray(other)
        if a.ndim >= 1 and a.shape[0] in grown and a.shape[0] > 0 and b.ndim == a.ndim and b.shape[0] >= a.shape[0]:
            if a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
                return f"variable {key!r}: OLD is {a.dtype} {list(a.shape)}, NEW is {b.dtype} {list(b.shape)}", None
            diff = _first_row_difference(a, b)
            if diff:
                kind, names = grown[a.shape[0]]
                return (f"variable {key!r}: row {diff[0]} ({kind} {names[diff[0]]!r}) differs",
                        names[diff[0]] if kind == "entity" else None)
        elif not _same_value(value, other):
            return f"variable {key!r} differs between OLD and NEW", None
        checked["variables"] += 1
    return None, None


# --------------------------------------------------------------------------- independent readers


def _read_vocab(path: Path, what: str) -> list[str]:
    try:
        return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read the {what} names ({err})") from err


def _names(option, base: str, suffix: str, what: str, required: bool, path) -> list[str]:
    file = Path(option) if option else Path(f"{base}{suffix}")
    if not file.is_file():
        if not required:
            return []
        option = f"{what}_vocab"
        raise CheckpointError(f"{path} carries no {what} names: give {option} FILE (for NEW: new_{option})")
    return _read_vocab(file, what)


def _meta(base: str, binds: str | None = None) -> dict[str, Any]:
    from .checkpoint.foreign import read_meta

    return read_meta(base, binds=binds)  # bounded, and bound to the TF .index it was written with


def _lineage(records, path) -> list:
    """Lineage records (JSON texts) as dicts; one that is not JSON makes the file unreadable (exit 4)."""
    import json

    try:
        return [json.loads(str(r)) for r in records]
    except (json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"{path}: a /lineage record is not JSON ({err})") from err


def _read_native(path: Path) -> _View:
    import h5py

    from .checkpoint.h5guard import walk

    try:
        with h5py.File(path, "r") as f:
            # links and storage first (the file must not make us read another one); values read here, not by the loader
            _, datasets = walk(f, path)
            if "entities" not in datasets or ENTITY_TABLE not in datasets:
                raise CheckpointError(f"{path}: not an embretrain checkpoint (no /entities or /{ENTITY_TABLE})")
            entities = [str(n) for n in datasets["entities"].asstr()[()]]
            relations = [str(n) for n in datasets["relations"].asstr()[()]] if "relations" in datasets else []
            contexts = [str(n) for n in datasets["contexts"].asstr()[()]] if "contexts" in datasets else None
            tables = {
                name: np.asarray(obj[()]) for name, obj in datasets.items()
                if "/" not in name and obj.ndim == 2
                and (obj.attrs.get("indexed_by") in ("entities", "relations", "contexts")
                     or name in (ENTITY_TABLE, RELATION_TABLE, CONTEXT_TABLE))
            }
            model = f.attrs.get("model")
            lineage = _lineage(datasets["lineage"].asstr()[()], path) if "lineage" in datasets else []
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot read the HDF5 checkpoint ({err})") from err
    model = model.decode() if isinstance(model, bytes) else (str(model) if model is not None else None)
    return _View(os.fspath(path), "h5", model, entities, relations, tables, lineage=lineage, contexts=contexts)


def _roles(path, variables: dict[str, Any], options: dict[str, Any], meta: dict[str, Any], n_rows: int,
           graph=None) -> dict[str, str]:
    """role -> key, from the options (keys or layer names) or the sidecar; else the one entity table candidate
    with ``n_rows`` (the vocabulary's length) rows."""
    from .checkpoint.foreign import VariableGraph, _resolve_key, table_candidates

    specs = {k: (tuple(np.shape(v)), np.asarray(v).dtype if not isinstance(v, bytes) else object)
             for k, v in variables.items()}
    graph = graph or VariableGraph()
    wanted = {role: options.get(opt) for role, opt in _OPTION_OF_ROLE.items() if options.get(opt)}
    if not wanted:
        wanted = dict(meta.get("tables") or {})
    keys = {role: _resolve_key(specs, key, "--" + _OPTION_OF_ROLE.get(role, "entity_var").replace("_", "-"), path, graph)
            for role, key in wanted.items()}
    if ENTITY_TABLE not in keys:
        fits = table_candidates(specs, n_rows, exclude=graph.optimizer_keys)
        if len(fits) != 1:
            raise UsageError(f"{path}: name the entity table with entity_var (candidates: {', '.join(fits) or 'none'})")
        keys[ENTITY_TABLE] = fits[0]
    return keys


def _foreign_view(path, fmt: str, base: str, variables: dict[str, Any], options: dict[str, Any],
                  parts: dict[str, int], graph=None) -> _View:
    meta = _meta(base, f"{base}.index" if fmt == "tf" else None)
    entities = _names(options.get("entity_vocab"), base, ".entities.tsv", "entity", True, path)
    keys = _roles(path, variables, options, meta, len(entities), graph)
    relations = _names(options.get("relation_vocab"), base, ".relations.tsv", "relation", RELATION_TABLE in keys, path)
    contexts = (_names(options.get("context_vocab"), base, ".contexts.tsv", "context", False, path) or None
                if CONTEXT_TABLE in keys else None)  # none: the context rows are indexed by the entities
    tables = {role: np.asarray(variables[key]) for role, key in keys.items()}
    model = options.get("model") or meta.get("model")
    lineage = meta.get("lineage") if isinstance(meta.get("lineage"), list) else []
    return _View(os.fspath(path), fmt, model, entities, relations, tables,
                 {k: v for k, v in variables.items() if k not in keys.values()}, parts, lineage=lineage,
                 contexts=contexts)


def _read_keras(path: Path, options: dict[str, Any]) -> _View:
    import h5py

    from .checkpoint.h5guard import walk
    from .checkpoint.keras import open_weights

    # open_weights streams an archive's weights member to a temporary file within the zip-bomb caps;
    # the values are then read here, with plain h5py
    with open_weights(path) as (f, _archive, _config):
        try:
            groups, datasets = walk(f, path)
            variables: dict[str, Any] = {name: obj[()] for name, obj in datasets.items()}
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: cannot read the Keras file ({err})") from err
    from .checkpoint.foreign import VariableGraph
    from .checkpoint.keras import layer_names

    # layer names (--entity-var user_emb) from the vars groups' "name" attributes, read here by h5py
    return _foreign_view(path, "keras", os.fspath(path), variables, options, {},
                         VariableGraph(names=layer_names(groups, variables)))


def _tf_parts(listing: list[bytes], key: str) -> int:
    """How many slices TF's reader lists for ``key``: its debug listing has one line per slice,
    keyed ``\\x00<name>\\x00\\x01<extents>`` (TF's ordered-code slice key)."""
    marker = b"\x00" + key.encode() + b"\x00\x01"
    return sum(1 for line in listing if line.startswith(marker))


def _read_tf(path, options: dict[str, Any], parts_of: dict[str, int] | None) -> _View:
    """Every tensor through TF's reader; partitioned ones looked up id by id through TF's own
    ``embedding_lookup`` (``parts_of``: OLD's parts, which the program keeps when it grows)."""
    from .checkpoint.tfckpt import OBJECT_GRAPH_KEY, object_graph, read_index, resolve_prefix

    prefix = resolve_prefix(path)
    if prefix is None:
        raise CheckpointError(f"{path}: no TensorFlow checkpoint here")
    read_index(prefix)  # names a missing or truncated data shard (TF's own message does not)
    from .quiet_tf import import_tensorflow

    tf = import_tensorflow()

    try:
        reader = tf.train.load_checkpoint(os.fspath(prefix))
        variables = {k: reader.get_tensor(k) for k in sorted(reader.get_variable_to_shape_map())}
        listing = reader.debug_string().split(b"\n")
    except Exception as err:  # TF's NotFoundError, DataLossError, ... for a missing or damaged file
        raise CheckpointError(f"{prefix}: cannot read the TensorFlow checkpoint ({str(err).splitlines()[0]})") from err
    own_parts = {k: n for k in variables if np.ndim(variables[k]) >= 1 and (n := _tf_parts(listing, k)) > 1}
    parts = dict(own_parts) if parts_of is None else {k: n for k, n in parts_of.items() if k in variables}
    strategy = options.get("partition_strategy")
    if parts and strategy is None:
        shown = ", ".join(f"{k!r} ({n} parts)" for k, n in sorted(parts.items()))
        raise UsageError(f"{prefix}: {shown} partitioned; give partition_strategy mod or div as your program uses")
    for key, n_parts in parts.items():
        full = variables[key]
        sizes = [len(block) for block in np.array_split(np.arange(full.shape[0]), n_parts)]  # first ones longer
        pieces = tf.split(full, sizes)
        variables[key] = tf.compat.v1.nn.embedding_lookup(
            pieces, tf.range(full.shape[0]), partition_strategy=strategy).numpy()
    graph = object_graph(reader) if OBJECT_GRAPH_KEY in variables else None
    return _foreign_view(path, "tf", os.fspath(prefix), variables, options, parts, graph)


def _read(path, options: dict[str, Any], parts_of: dict[str, int] | None = None) -> _View:
    from .checkpoint import format_of

    fmt = format_of(path)
    if fmt == "h5":
        given = [k for k, v in options.items() if v is not None and k != "model"]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{path} is a native checkpoint that names its own tables and vocabularies; drop {flags}")
        view = _read_native(Path(path))
    elif fmt == "keras":
        view = _read_keras(Path(path), options)
    else:
        view = _read_tf(path, options, parts_of)
    _check_usable(view)
    return view


def _check_usable(view: _View) -> None:
    """A file that could not be trained or written back is not a valid checkpoint, whatever its rows:
    names must round-trip and the tables must fit the model's shape contract (exit 4)."""
    from .models import check_shapes
    from .vocab import check_names

    check_names(view.entities, f"{view.path}: /entities")
    check_names(view.relations, f"{view.path}: /relations")
    check_names(view.contexts or [], f"{view.path}: /contexts")
    if view.model is not None and ENTITY_TABLE in view.tables:
        check_shapes(view.model, {}, {role: int(t.shape[1]) for role, t in view.tables.items()}, where=view.path)


# --------------------------------------------------------------------------- entry points


def compare(old: Checkpoint, new: Checkpoint) -> VerifyResult:
    """Check that in-memory ``new`` extends ``old`` (tables and vocabularies; see the module docstring)."""

    def view(c: Checkpoint) -> _View:
        return _View(c.source or "", "memory", c.model, list(c.entities), list(c.relations), c.tables(),
                     lineage=list(c.lineage), contexts=None if c.contexts is None else list(c.contexts))

    return _compare_views(view(old), view(new))


def verify(
    old: str | os.PathLike,
    new: str | os.PathLike,
    *,
    old_options: dict[str, Any] | None = None,
    new_options: dict[str, Any] | None = None,
) -> VerifyResult:
    """Read two checkpoints (any formats) independently of the loader and compare them.

    Args:
        old, new: checkpoint paths.
        old_options, new_options: ``entity_var`` (key or layer name), ``entity_vocab``, ...,
            ``partition_strategy`` for each.

    Raises:
        CheckpointError: a checkpoint cannot be read at all (that is not a "differs" answer).
        UsageError: a partitioned table without ``partition_strategy``, a table name that fits nothing.
    """
    old_view = _read(old, dict(old_options or {}))
    new_view = _read(new, dict(new_options or {}), parts_of=old_view.parts if old_view.fmt == "tf" else None)
    result = _compare_views(old_view, new_view)
    logger.info("verify %s -> %s: %s", old, new, result.message)
    return result
