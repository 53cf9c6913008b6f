"""What TF and Keras checkpoints share: picking the tables among named variables, vocabularies and
metadata kept beside the file, and growing optimizer slots.

A "foreign" checkpoint is a flat mapping ``key -> array`` written by the user's own code. We pick
the embedding tables out of it (``--entity-var`` / ``--relation-var``, or the one 2-D float32
variable that fits), take names from ``--entity-vocab`` or the sidecar ``<ckpt>.entities.tsv``, and
keep every other variable in ``Checkpoint.extras`` so the writer can put it back unchanged.

Optimizer slots of a table must grow with it, or the user's ``restore`` fails on a shape mismatch.
They are recognised two ways:

* by key: ``<table key>/Adam``, ``<table key>/Adam_1``, ``<table key>/Adagrad`` (TF1 ``Saver``) or
  ``<table path>/.OPTIMIZER_SLOT/<optimizer>/m/...`` (TF2 object graph): any variable under the
  table's own path whose first dimension is the table's row count;
* through the TF2 object graph (:class:`VariableGraph`): a Keras 3 optimizer saved with
  ``tf.train.Checkpoint(opt=...)`` stores unnamed variables (``opt/_variables/2``), but its
  per-variable lists (``_momentums``, ``_velocities``, ``momentums``) say that item i belongs to
  item i of its ``_trainable_variables``; the shapes must agree. An optimizer variable the graph
  does not tie to a variable, with a table's shape, is refused rather than guessed;
* by shape, only where no object graph exists (Keras ``.weights.h5`` files: ``optimizer/vars/2``):
  one whose shape equals a table's shape, where no other (non-table) variable has that shape,
  belongs to that table.

Slots are grown with **zero rows** for the new entities: zero Adam moments / Adagrad accumulators
are exactly the state of a variable the optimizer has not touched yet.

Sidecars written beside a TF or Keras output ``<out>``:

* ``<out>.entities.tsv`` / ``<out>.relations.tsv``: one name per line, row i on line i + 1;
* ``<out>.contexts.tsv``: the same for the context table of a pair model with two vocabularies;
* ``<out>.embretrain.json``: model, parameters, which key holds which table, and the lineage.

Owns: what TF and Keras share (table choice, sidecars, slots, the shape contract at load). Must not:
read or write either format's bytes (:mod:`.tfckpt`, :mod:`.keras` do), or import TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_write
from ..errors import CheckpointError, DataError, UsageError
from .base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint

__all__ = [
    "LoadOptions",
    "PARTITION_STRATEGIES",
    "TF2_SUFFIX",
    "VariableGraph",
    "build_checkpoint",
    "grown_variables",
    "sidecar",
    "write_sidecars",
    "read_meta",
    "file_binding",
    "table_candidates",
]

logger = logging.getLogger(__name__)

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
META_SUFFIX = ".embretrain.json"
_VOCAB_SUFFIX = {ENTITY_TABLE: ".entities.tsv", RELATION_TABLE: ".relations.tsv", CONTEXT_TABLE: ".contexts.tsv"}
_OPTIMIZER_PARTS = ("optimizer",)  # a key component starting with this marks optimizer state
PARTITION_STRATEGIES = ("mod", "div")  # tf.compat.v1.nn.embedding_lookup's partition_strategy


@dataclass
class VariableGraph:
    """What a TF2 checkpoint's object graph says about its variables (none for TF1 and Keras files).

    Attributes:
        paths: key -> object path from the root (``model/item_emb/_embeddings``).
        names: key -> the variable's own name (``item_emb/embeddings``: a Keras layer's name comes first).
        slot_owner: optimizer variable key -> key of the variable it belongs to, as the graph proves it.
        optimizer_keys: every key that is optimizer state (slots, ``iterations``, learning rate).
    """

    paths: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    slot_owner: dict[str, str] = field(default_factory=dict)
    optimizer_keys: set[str] = field(default_factory=set)


@dataclass
class LoadOptions:
    """Per-format load options (the CLI's ``--entity-var`` etc.); all optional.

    Attributes:
        entity_var: key of the entity table ``[n_entities, dim]``.
        relation_var: key of the relation table ``[n_relations, rel_dim]`` (triple models).
        context_var: key of the second table of an untied ``dot`` model (``b`` side).
        entity_vocab: file with one entity name per line; row i is on line i + 1.
        relation_vocab: the same for relations.
        context_vocab: the same for the context table's rows, when they are a vocabulary of their own (a
            two-tower model: users in the entity table, items in the context table, of different sizes).
            Not given (and no ``<ckpt>.contexts.tsv``): context rows are indexed by the entities.
        model: scorer name; default ``dot`` when only an entity table is given.
        partition_strategy: ``mod`` or ``div``, how the user's program looks ids up in a table
            saved in parts (TF1 partitioned variables); the checkpoint does not record it.
    """

    entity_var: str | None = None
    relation_var: str | None = None
    context_var: str | None = None
    entity_vocab: str | os.PathLike | None = None
    relation_vocab: str | os.PathLike | None = None
    context_vocab: str | os.PathLike | None = None
    model: str | None = None
    partition_strategy: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "LoadOptions":
        known = {k: kwargs.get(k) for k in ("entity_var", "relation_var", "context_var", "entity_vocab",
                                            "relation_vocab", "context_vocab", "model", "partition_strategy")}
        unknown = set(kwargs) - set(known)
        if unknown:
            raise UsageError(f"unknown checkpoint option(s): {', '.join(sorted(unknown))}")
        if known["partition_strategy"] not in (None, *PARTITION_STRATEGIES):
            raise UsageError(f"partition_strategy must be mod or div, not {known['partition_strategy']!r}")
        return cls(**known)


def sidecar(base: str | os.PathLike, kind: str) -> Path:
    """Path of a sidecar beside ``base``: ``kind`` is ``entities``, ``relations``, ``contexts`` or ``meta``."""
    suffix = {"entities": _VOCAB_SUFFIX[ENTITY_TABLE], "relations": _VOCAB_SUFFIX[RELATION_TABLE],
              "contexts": _VOCAB_SUFFIX[CONTEXT_TABLE], "meta": META_SUFFIX}[kind]
    return Path(f"{os.fspath(base)}{suffix}")


MAX_META_BYTES = 64 << 20  # the meta sidecar holds the lineage (a record a night); far below this for decades


def read_meta(base: str | os.PathLike, *, binds: str | os.PathLike | None = None) -> dict[str, Any]:
    """The ``<base>.embretrain.json`` sidecar as a dict, or ``{}`` if there is none.

    Only a regular file of at most :data:`MAX_META_BYTES` is read (a FIFO or device is refused at open
    without blocking, a huge file before it is read). ``binds``: the file the sidecar must belong to;
    a sidecar that records another file's size and sha256 under ``"binds"`` (a crash between the
    renames of one save left a new sidecar beside an old checkpoint) is refused.

    Raises:
        CheckpointError: unreadable, too big, not a JSON object, or bound to other bytes than ``binds``.
    """
    path = sidecar(base, "meta")
    if not os.path.lexists(path):
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the embretrain metadata beside the checkpoint ({err.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{path}: the embretrain metadata beside the checkpoint is not a regular file")
        if st.st_size > MAX_META_BYTES:
            raise CheckpointError(f"{path}: {st.st_size} bytes is too big for the embretrain metadata (at most {MAX_META_BYTES})")
        data = fh.read(MAX_META_BYTES + 1)
    if len(data) > MAX_META_BYTES:
        raise CheckpointError(f"{path}: too big for the embretrain metadata (at most {MAX_META_BYTES} bytes)")
    try:
        meta = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot read the embretrain metadata beside the checkpoint ({reason})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if binds is not None and "binds" in meta:
        _check_binding(path, meta["binds"], Path(binds))
    return meta


def file_binding(path: Path) -> dict[str, Any]:
    """``{"file", "size", "sha256"}`` of a small file (a TF ``.index``) a sidecar belongs to."""
    import hashlib

    data = path.read_bytes()
    return {"file": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _check_binding(meta_path: Path, recorded: Any, target: Path) -> None:
    try:
        actual = file_binding(target)
    except OSError as err:
        raise CheckpointError(f"{target}: cannot read it to check {meta_path} ({err.strerror})") from None
    if not isinstance(recorded, dict) or {k: recorded.get(k) for k in ("size", "sha256")} != {
        k: actual[k] for k in ("size", "sha256")
    }:
        raise CheckpointError(
            f"{meta_path} belongs to another version of {target} (size and sha256 differ); "
            "a save was interrupted between its renames: restore both files from one save"
        )


def _read_vocab(path: str | os.PathLike, n_rows: int, kind: str, key: str) -> list[str]:
    """Names in row order from a one-name-per-line file that must have exactly ``n_rows`` lines."""
    from ..data import read_names
    from ..vocab import Vocab, check_names

    names = read_names(path)
    # read_names skips blank lines; here a skipped line would shift every later row by one.
    for row, line in enumerate(names.lines):
        if line != row + 1:
            raise DataError.at(path, row + 1, f"blank line in a {kind} vocabulary; row i must be on line i + 1")
    if len(names.names) != n_rows:
        raise CheckpointError(
            f"{path} lists {len(names.names)} {kind} names but variable {key!r} has {n_rows} rows; "
            "row i of the table must be the name on line i + 1"
        )
    # what a native load refuses (NUL, line breaks, empty names) is refused here too; one name per
    # line means no tab either (the same check the writer makes)
    check_names(names.names, os.fspath(path), tsv=True)
    try:
        Vocab(names.names)
    except ValueError as err:
        raise DataError.at(path, None, str(err)) from None
    return list(names.names)


def is_table_like(shape: tuple[int, ...], dtype: Any) -> bool:
    return len(shape) == 2 and np.dtype(dtype) == np.float32


def _is_optimizer_key(key: str) -> bool:
    return any(part.startswith(_OPTIMIZER_PARTS) or part == ".OPTIMIZER_SLOT" for part in key.split("/"))


def _slot_prefix(key: str) -> str:
    """Keys under this prefix are slots of ``key`` (``emb/Adam``, ``model/emb/.OPTIMIZER_SLOT/...``)."""
    return key.removesuffix(TF2_SUFFIX) + "/"


def table_candidates(
    specs: dict[str, tuple[tuple[int, ...], Any]], n_rows: int | None = None, exclude: set[str] | frozenset = frozenset()
) -> list[str]:
    """Keys of 2-D float32 variables that could be an embedding table (not optimizer state).

    Args:
        specs: key -> (shape, dtype) of every variable.
        n_rows: if known (a vocabulary was given), only variables with that many rows fit.
        exclude: keys known to be optimizer state (a TF2 object graph's ``opt/_variables/N``).
    """
    owners = [k for k, (shape, dtype) in specs.items()
              if is_table_like(shape, dtype) and not _is_optimizer_key(k) and k not in exclude]
    # A slot (`emb/Adam`) lives under another candidate's path.
    prefixes = [_slot_prefix(k) for k in owners]
    owners = [k for k in owners if not any(k.startswith(p) for p in prefixes if p != _slot_prefix(k))]
    if n_rows is not None:
        owners = [k for k in owners if specs[k][0][0] == n_rows]
    return owners


def _describe_keys(specs, keys, graph: VariableGraph | None = None) -> str:
    def name(k: str) -> str:
        alias = graph.names.get(k) if graph is not None else None
        return f"{k} ({alias})" if alias else k

    return "; ".join(f"{name(k)} {list(specs[k][0])}" for k in keys) or "none"


def _resolve_key(specs, key: str, option: str, path, graph: VariableGraph) -> str:
    """The storage key ``key`` means: a key, a TF2 key without its suffix, an object path or variable
    name from the object graph, or a Keras layer name (one component of exactly one candidate's key,
    path or name: ``item_emb`` for ``model/item_emb/_embeddings``)."""
    if key in specs:
        return key
    if key + TF2_SUFFIX in specs:  # `model/emb/table` for `model/emb/table/.ATTRIBUTES/VARIABLE_VALUE`
        return key + TF2_SUFFIX
    candidates = table_candidates(specs, exclude=graph.optimizer_keys)
    spellings = {k: [k, graph.paths.get(k, ""), graph.names.get(k, "")] for k in candidates}
    fits = [k for k, forms in spellings.items() if key in forms]
    if not fits:
        fits = [k for k, forms in spellings.items() if any(key in form.split("/") for form in forms)]
    if len(fits) == 1:
        logger.info("%s: %s %s means variable %r %s", path, option, key, fits[0], list(specs[fits[0]][0]))
        return fits[0]
    what = f"{len(fits)} variables match it" if fits else "no variable or layer has that name"
    raise UsageError(
        f"{path}: {option} {key}: {what}; table candidates (2-D float32, not optimizer state): "
        f"{_describe_keys(specs, fits or candidates, graph)}"
    )


def _pick_entity_key(specs, path, n_rows: int | None, graph: VariableGraph) -> str:
    fits = table_candidates(specs, n_rows, exclude=graph.optimizer_keys)
    if len(fits) == 1:
        logger.info("%s: using %r %s as the entity table", path, fits[0], list(specs[fits[0]][0]))
        return fits[0]
    every = table_candidates(specs, exclude=graph.optimizer_keys)
    what = "no 2-D float32 variable" if not fits else f"{len(fits)} 2-D float32 variables"
    rows = f" with {n_rows} rows (the vocabulary's length)" if n_rows is not None else ""
    raise CheckpointError(
        f"{path}: {what}{rows} could be the entity table; name it with entity_var KEY. "
        f"Candidates: {_describe_keys(specs, every, graph)}"
    )


def _vocab_rows(opts_path, side: Path) -> tuple[Path | None, int | None]:
    path = Path(opts_path) if opts_path is not None else (side if side.is_file() else None)
    if path is None:
        return None, None
    from ..data import read_names

    return path, len(read_names(path).names)


def build_checkpoint(
    path: str | os.PathLike,
    fmt: str,
    specs: dict[str, tuple[tuple[int, ...], Any]],
    read: Callable[[str], Any],
    opts: LoadOptions,
    sidecar_base: str | os.PathLike,
    extras: dict[str, Any] | None = None,
    graph: VariableGraph | None = None,
    on_tables: Callable[[dict[str, str]], None] | None = None,
    binds: str | os.PathLike | None = None,
) -> Checkpoint:
    """Turn a flat ``key -> array`` checkpoint into a :class:`Checkpoint`.

    Args:
        path: what the user passed (for messages).
        fmt: ``"tf"`` or ``"keras"``; stored as ``extras["format"]``.
        specs: key -> (shape, dtype) of every variable, in the file's order.
        read: key -> value (``np.ndarray``, or ``bytes`` for a TF string scalar).
        opts: the user's load options; the ``<base>.embretrain.json`` sidecar fills the gaps.
        sidecar_base: ``<base>`` of ``<base>.entities.tsv`` etc.
        extras: format-specific extras to merge (e.g. the Keras archive's other members).
        graph: what a TF2 object graph says (names users know, optimizer state and its owners).
        on_tables: called with table name -> key once the tables are chosen, before anything is
            read (the TF reader checks partitioned tables there).
        binds: the file the meta sidecar must belong to (see :func:`read_meta`).

    Returns:
        A Checkpoint whose ``extras`` hold ``format``, ``keys`` (table name -> key), ``variables``
        (every other key -> value, file order), ``slots`` (slot key -> table name).
    """
    graph = graph or VariableGraph()
    meta = read_meta(sidecar_base, binds=binds)
    meta_keys: dict[str, str] = dict(meta.get("tables") or {})
    wanted = {
        ENTITY_TABLE: opts.entity_var or meta_keys.get(ENTITY_TABLE),
        RELATION_TABLE: opts.relation_var or (None if opts.entity_var else meta_keys.get(RELATION_TABLE)),
        CONTEXT_TABLE: opts.context_var or (None if opts.entity_var else meta_keys.get(CONTEXT_TABLE)),
    }
    options = {ENTITY_TABLE: "entity_var", RELATION_TABLE: "relation_var", CONTEXT_TABLE: "context_var"}
    keys = {name: _resolve_key(specs, key, options[name], path, graph) for name, key in wanted.items() if key}

    ent_vocab_path, ent_rows = _vocab_rows(opts.entity_vocab, sidecar(sidecar_base, "entities"))
    if ENTITY_TABLE not in keys:
        keys[ENTITY_TABLE] = _pick_entity_key(specs, path, ent_rows, graph)
    for name, key in keys.items():
        shape, dtype = specs[key]
        if not is_table_like(shape, dtype):
            raise CheckpointError(
                f"{path}: variable {key!r} has shape {list(shape)} and dtype {np.dtype(dtype).name}; "
                "an embedding table must be 2-D float32"
            )
    if len(set(keys.values())) != len(keys):
        raise CheckpointError(f"{path}: the same variable is named for two tables ({keys})")
    if on_tables is not None:
        on_tables(keys)

    model = opts.model or meta.get("model")
    if model is None:
        if RELATION_TABLE in keys:
            raise UsageError(
                f"{path} does not say its model: with relation_var give model (transe, distmult, complex, rotate)"
            )
        model = "dot"
    from ..models import get_model

    kind = get_model(model).kind
    if kind == "pair" and RELATION_TABLE in keys:
        raise UsageError(f"model {model!r} scores pairs with the entity table alone; drop relation_var")
    if kind != "pair" and RELATION_TABLE not in keys:
        raise UsageError(f"model {model!r} needs a relation table: give relation_var KEY")

    n_entities = specs[keys[ENTITY_TABLE]][0][0]
    if ent_vocab_path is None:
        raise CheckpointError(
            f"{path} carries no entity names: give entity_vocab FILE with one name per line "
            f"({n_entities} lines for {keys[ENTITY_TABLE]!r})"
        )
    entities = _read_vocab(ent_vocab_path, n_entities, "entity", keys[ENTITY_TABLE])
    relations: list[str] = []
    if RELATION_TABLE in keys:
        n_relations = specs[keys[RELATION_TABLE]][0][0]
        rel_path, _ = _vocab_rows(opts.relation_vocab, sidecar(sidecar_base, "relations"))
        if rel_path is None:
            raise CheckpointError(
                f"{path} carries no relation names: give relation_vocab FILE "
                f"({n_relations} lines for {keys[RELATION_TABLE]!r})"
            )
        relations = _read_vocab(rel_path, n_relations, "relation", keys[RELATION_TABLE])
    contexts = _context_names(path, specs, keys, opts, sidecar_base, n_entities)

    tables = {name: np.ascontiguousarray(read(key), dtype=np.float32) for name, key in keys.items()}
    table_keys = set(keys.values())
    variables = {k: read(k) for k in specs if k not in table_keys}
    slots = _find_slots(specs, keys, graph if graph.paths else None)

    params = meta.get("params")
    if params is None:
        from ..config import MODEL_DEFAULTS, MODEL_PARAMS, Settings

        defaults = MODEL_DEFAULTS.get(model, {})
        params = {p: defaults.get(p, getattr(Settings, p)) for p in MODEL_PARAMS.get(model, ())}
    logger.info(
        "%s: %s checkpoint, model %s, tables %s, %d other variables (%d optimizer slots of the tables)",
        path, fmt, model, keys, len(variables), len(slots),
    )
    ckpt = Checkpoint(
        model=model,
        entities=entities,
        relations=relations,
        entity_tables={n: t for n, t in tables.items() if n != RELATION_TABLE},
        relation_tables={n: t for n, t in tables.items() if n == RELATION_TABLE},
        params=dict(params),
        lineage=list(meta.get("lineage") or []),
        source=os.fspath(path),
        checksums="none",
        extras={**(extras or {}), "format": fmt, "keys": keys, "variables": variables, "slots": slots},
        contexts=contexts,
    )
    from ..models import check_shapes

    # the shape contract every format meets at load (native checks it in its layout): one line naming
    # the tables and widths now, not a TensorFlow stack after training
    check_shapes(ckpt.model, ckpt.params, {n: int(t.shape[1]) for n, t in ckpt.tables().items()}, where=os.fspath(path))
    return ckpt


def _context_names(path, specs, keys: dict[str, str], opts: LoadOptions, sidecar_base, n_entities: int):
    """The context table's own names (``--context-vocab`` or ``<ckpt>.contexts.tsv``), or None when its
    rows are indexed by the entities (then it must have as many rows)."""
    if CONTEXT_TABLE not in keys:
        if opts.context_vocab is not None:
            raise UsageError(f"{path}: context_vocab names the rows of the context table: give context_var KEY too")
        return None
    key = keys[CONTEXT_TABLE]
    n_rows = specs[key][0][0]
    vocab_path, _ = _vocab_rows(opts.context_vocab, sidecar(sidecar_base, "contexts"))
    if vocab_path is not None:
        return _read_vocab(vocab_path, n_rows, "context", key)
    if n_rows != n_entities:
        raise CheckpointError(
            f"{path}: context table {key!r} has {n_rows} rows but there are {n_entities} entities; if its rows "
            "are a vocabulary of their own (items of a two-tower model), give context_vocab FILE"
        )
    return None


def _find_slots(specs, keys: dict[str, str], graph: VariableGraph | None = None) -> dict[str, str]:
    """slot key -> table name, for optimizer state that must grow with a table (see module doc).

    Raises:
        CheckpointError: optimizer state that may belong to a table but cannot be tied to it.
    """
    slots: dict[str, str] = {}
    table_keys = set(keys.values())
    for name, key in keys.items():
        prefix, n_rows = _slot_prefix(key), specs[key][0][0]
        for k, (shape, _) in specs.items():
            if k not in table_keys and k.startswith(prefix) and len(shape) >= 1 and shape[0] == n_rows:
                slots[k] = name
    if graph is not None:
        return _graph_slots(specs, keys, graph, slots)
    # Unnamed Keras 3 optimizer variables: match by shape, only where the shape is unambiguous.
    owners_by_shape: dict[tuple, list[str]] = {}
    for k, (shape, dtype) in specs.items():
        if k in slots or _is_optimizer_key(k):
            continue
        owners_by_shape.setdefault(tuple(shape), []).append(k)
    for k, (shape, _) in specs.items():
        if k in slots or k in table_keys or not _is_optimizer_key(k) or len(shape) != 2:
            continue
        owners = owners_by_shape.get(tuple(shape), [])
        tables = [name for name, key in keys.items() if key in owners]
        if not tables:
            continue
        if len(tables) != len(owners):
            others = [o for o in owners if o not in table_keys]
            raise CheckpointError(
                f"cannot tell whether optimizer variable {k!r} {list(shape)} belongs to table "
                f"{keys[tables[0]]!r} or to {others[0]!r} (same shape); "
                "save the checkpoint without the optimizer, or with named slots"
            )
        slots[k] = tables[0]
    return slots


def _graph_slots(specs, keys: dict[str, str], graph: VariableGraph, slots: dict[str, str]) -> dict[str, str]:
    """Slots the TF2 object graph ties to a table; refuse optimizer state it cannot place."""
    table_of = {key: name for name, key in keys.items()}
    for slot, owner in graph.slot_owner.items():
        if owner not in table_of or slot not in specs:
            continue
        if specs[slot][0] != specs[owner][0]:
            raise CheckpointError(
                f"optimizer variable {slot!r} {list(specs[slot][0])} belongs to table {owner!r} "
                f"{list(specs[owner][0])} but has another shape; cannot grow it with the table"
            )
        slots[slot] = table_of[owner]
    table_shapes = {tuple(specs[key][0]): key for key in keys.values()}
    loose = [k for k in sorted(graph.optimizer_keys)
             if k in specs and k not in slots and k not in graph.slot_owner and tuple(specs[k][0]) in table_shapes]
    if loose:
        raise CheckpointError(
            f"cannot prove which variable optimizer state {', '.join(repr(k) for k in loose)} belongs to "
            f"(it has the shape of table {table_shapes[tuple(specs[loose[0]][0])]!r}, but the object graph does not "
            "tie it to a variable); save the checkpoint without the optimizer"
        )
    return slots


def grown_variables(ckpt: Checkpoint) -> dict[str, Any]:
    """``extras["variables"]`` with every slot of a grown table padded with zero rows.

    Returns:
        key -> value in the original order; values of non-slot variables are the loaded objects.

    Raises:
        CheckpointError: a table shrank, or a shape-matched slot is shared by tables that grew differently.
    """
    tables = ckpt.tables()
    keys: dict[str, str] = ckpt.extras.get("keys", {})
    variables: dict[str, Any] = dict(ckpt.extras.get("variables", {}))
    for key, name in ckpt.extras.get("slots", {}).items():
        value = np.asarray(variables[key])
        n_rows = tables[name].shape[0]
        if value.shape[0] > n_rows:
            raise CheckpointError(f"slot {key!r} has {value.shape[0]} rows but table {keys.get(name, name)!r} has {n_rows}")
        if value.shape[0] < n_rows:
            pad = np.zeros((n_rows - value.shape[0], *value.shape[1:]), dtype=value.dtype)
            variables[key] = np.concatenate([value, pad])
            logger.info("grew optimizer slot %s by %d zero rows", key, n_rows - value.shape[0])
    return variables


def _write_vocab(path: Path, names, kind: str, shown_as: Path) -> None:
    from ..vocab import check_names

    # one name per line: what a load would refuse (or misread) is never written
    check_names(list(names), f"cannot write {shown_as}: {kind}", tsv=True)
    with atomic_write(path) as tmp:
        tmp.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def write_sidecars(
    ckpt: Checkpoint,
    base: str | os.PathLike,
    keys: dict[str, str],
    binds: dict[str, Any] | None = None,
    shown_as: str | os.PathLike | None = None,
) -> None:
    """Write ``<base>.entities.tsv``, ``<base>.relations.tsv`` (triple models), ``<base>.contexts.tsv`` (a pair
    model with two vocabularies) and ``<base>.embretrain.json``.

    ``binds``: :func:`file_binding` of the file the sidecars belong to, recorded in the meta sidecar and
    checked by :func:`read_meta` at load. ``shown_as``: the base messages name (the final output, when
    ``base`` is in a scratch directory).
    """
    shown = shown_as if shown_as is not None else base
    _write_vocab(sidecar(base, "entities"), ckpt.entities, "entity", sidecar(shown, "entities"))
    if ckpt.relations:
        _write_vocab(sidecar(base, "relations"), ckpt.relations, "relation", sidecar(shown, "relations"))
    if ckpt.contexts is not None:
        _write_vocab(sidecar(base, "contexts"), ckpt.contexts, "context", sidecar(shown, "contexts"))
    meta = {
        "tool": "embretrain",
        "model": ckpt.model,
        "params": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in ckpt.params.items()},
        "tables": keys,
        "counts": {"entities": ckpt.n_entities, "relations": ckpt.n_relations,
                   **({} if ckpt.contexts is None else {"contexts": len(ckpt.contexts)})},
        "lineage": ckpt.lineage,
    }
    if binds is not None:
        meta["binds"] = binds
    with atomic_write(sidecar(base, "meta")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
