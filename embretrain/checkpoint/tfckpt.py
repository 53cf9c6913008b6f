"""TensorFlow checkpoints: TF1 ``Saver`` (keys like ``embedding``) and TF2 ``tf.train.Checkpoint``
(object-graph keys like ``model/emb/table/.ATTRIBUTES/VARIABLE_VALUE``).

Reading goes through ``tf.train.load_checkpoint``, which reads both. Writing rebuilds the whole
key -> tensor mapping and stores it with ``tf.raw_ops.SaveV2``: every variable other than the grown
tables is written back with the same key, dtype and value, including the TF2 object graph
(``_CHECKPOINTABLE_OBJECT_GRAPH``, a string scalar), so the user's own ``Saver.restore`` or
``tf.train.Checkpoint.restore`` works on the output once their model is rebuilt with more rows.
The object graph records keys, not shapes, so it stays valid when a table grows.

A path is a checkpoint *prefix* (``model.ckpt-1000``: files ``model.ckpt-1000.index`` and
``model.ckpt-1000.data-*``) or a directory, meaning the latest checkpoint its ``checkpoint`` file names.

Output is atomic and one unit with its sidecars (:func:`~embretrain.atomic.atomic_files`): every file
is made in a scratch directory next to the target, fsynced, and renamed into place sidecars first,
then the data shards, then ``.index`` (the index is what makes a prefix readable), and last the
directory's ``checkpoint`` state file, switched to the new prefix. A failure puts the old files back.
The meta sidecar records the size and sha256 of the ``.index`` it belongs to, checked at load: a
crash between two renames is caught, never read as a new sidecar beside an old checkpoint.

Partitioned variables (TF1 ``get_variable(..., partitioner=fixed_size_partitioner(N))``) are stored
as N slices of one full tensor, part 0's rows first. Which id a row holds depends on how the user's
program looks ids up (``embedding_lookup(list(var), ids, partition_strategy=...)``), which the
checkpoint does not record: a partitioned table needs ``partition_strategy`` (``mod``: id i is row
i // N of part i % N; ``div``: contiguous blocks). Tables and their slots are held in id order and
written back as the N slices TF's partitioner cuts for the new row count, so the user's program
rebuilt with more rows reads every old id's old vector through its own lookup.

The ``.index`` file is read directly (a LevelDB-style table of ``BundleEntryProto``: which
variables are sliced, and where each tensor's bytes are) so that a missing or truncated
``.data-*`` shard is named before anything is read.

Not supported: non-float32 tables, tables sliced along their columns. TensorFlow is imported inside
the functions: importing this module is cheap.

Owns: the TF format's entry in :data:`~embretrain.checkpoint.FORMATS`. Must not: import TensorFlow at
module import, or decide which variable is a table (:mod:`.foreign` does).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_files, check_writable_dir, scratch_dir
from ..errors import CheckpointError, EmbretrainError, UsageError
from .base import Checkpoint
from ..diskspace import check_room, write_failure
from .foreign import (
    LoadOptions,
    VariableGraph,
    build_checkpoint,
    file_binding,
    grown_variables,
    sidecar,
    write_sidecars,
)

__all__ = ["is_tf", "resolve_prefix", "load", "save", "describe", "list_variables", "check_out",
           "part_rows", "object_graph", "read_index"]

logger = logging.getLogger(__name__)

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
STATE_FILE = "checkpoint"  # the directory's "latest checkpoint" index that tf.train.latest_checkpoint reads


def _tf():
    from ..quiet_tf import import_tensorflow

    return import_tensorflow()  # lazy: 3 s, only for TF checkpoints


def _strip_file_suffix(path: str) -> str:
    """``x.index`` / ``x.data-00000-of-00001`` -> ``x`` (users often pass a file instead of the prefix)."""
    if path.endswith(".index"):
        return path[: -len(".index")]
    head, sep, tail = path.rpartition(".data-")
    if sep and "-of-" in tail:
        return head
    return path


def _prefix_from_state(directory: Path) -> Path | None:
    """The prefix named by ``directory/checkpoint`` (``model_checkpoint_path: "..."``), parsed without TF."""
    state = directory / STATE_FILE
    if not state.is_file():
        return None
    for line in state.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model_checkpoint_path":
            name = value.strip().strip('"')
            prefix = Path(name) if os.path.isabs(name) else directory / name
            return prefix
    return None


def resolve_prefix(path: str | os.PathLike) -> Path | None:
    """The checkpoint prefix ``path`` means, or None if it is not a TF checkpoint. Never imports TF."""
    p = Path(_strip_file_suffix(os.fspath(path)))
    if p.is_dir():
        prefix = _prefix_from_state(p)
        if prefix is None:
            indexes = sorted(p.glob("*.index"), key=lambda f: f.stat().st_mtime)
            prefix = Path(str(indexes[-1])[: -len(".index")]) if indexes else None
        return prefix if prefix is not None and Path(f"{prefix}.index").is_file() else None
    return p if Path(f"{p}.index").is_file() else None


def is_tf(path: str | os.PathLike) -> bool:
    """True if ``path`` is a TF checkpoint prefix, one of its files, or a directory holding one."""
    try:
        return resolve_prefix(path) is not None
    except OSError:
        return False


detect = is_tf  # the name the format registry (checkpoint.formats) calls


def _reader(path):
    prefix = resolve_prefix(path)
    if prefix is None:
        raise CheckpointError(f"{path}: no TensorFlow checkpoint here (no {path}.index, no 'checkpoint' file)")
    if Path(path).is_dir():
        logger.info("%s is a directory: reading its checkpoint %s", path, prefix)
    index = read_index(prefix)
    tf = _tf()
    try:
        return prefix, tf.train.load_checkpoint(os.fspath(prefix)), index
    except Exception as err:  # TF raises its own errors (DataLossError, NotFoundError, ...) for bad files
        raise CheckpointError(f"{prefix}: cannot read the TensorFlow checkpoint ({str(err).splitlines()[0]})") from err


# --------------------------------------------------------------------------- the .index file

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table footer magic, used by TF's tensor bundle index


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _table_block(data: bytes, handle: bytes):
    """(key, value) pairs of one table block; keys are prefix-compressed against the previous one."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + 5 > len(data) or data[offset + size] != 0:  # trailer: type 0 = uncompressed, crc32c
        raise ValueError("block out of range or compressed")
    block = data[offset: offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end, pos, key = len(block) - 4 - 4 * n_restarts, 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        fresh, pos = _varint(block, pos)
        n_value, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + fresh]
        pos += fresh
        yield key, block[pos: pos + n_value]
        pos += n_value


def read_index(prefix: Path) -> dict[str, Any]:
    """What ``<prefix>.index`` says: ``slices`` (key -> [(start, length) per dim] per slice, for
    sliced variables) and ``extents`` (shard -> bytes its tensors need), after checking that every
    ``.data-*`` shard exists and is long enough.

    Raises:
        CheckpointError: unreadable index, missing or truncated data shard (the file is named).
    """
    _tf()  # importing a submodule loads all of TF: without its start-up chatter
    from tensorflow.core.protobuf import tensor_bundle_pb2  # the proto TF writes, shipped with TF

    index = Path(f"{prefix}.index")
    try:
        data = index.read_bytes()
        if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
            raise ValueError("no table footer")
        footer = data[-48:]
        _, pos = _varint(footer, 0)
        _, pos = _varint(footer, pos)  # skip the metaindex handle
        entries = [kv for _, handle in _table_block(data, footer[pos:]) for kv in _table_block(data, handle)]
        header = tensor_bundle_pb2.BundleHeaderProto.FromString(entries[0][1]) if entries and not entries[0][0] else None
        if header is None:
            raise ValueError("no bundle header")
        slices: dict[str, list] = {}
        needed: dict[int, int] = {}
        for key, value in entries[1:]:
            entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
            if entry.slices:
                slices[key.decode("utf-8", "replace")] = [
                    [(e.start, e.length if e.HasField("length") else -1) for e in sl.extent] for sl in entry.slices
                ]
            elif entry.size:
                needed[entry.shard_id] = max(needed.get(entry.shard_id, 0), entry.offset + entry.size)
    except (OSError, ValueError, IndexError, struct.error) as err:
        raise CheckpointError(f"{index}: cannot read the checkpoint index ({err})") from err
    except Exception as err:  # protobuf's DecodeError
        raise CheckpointError(f"{index}: cannot read the checkpoint index ({type(err).__name__}: {err})") from err
    n_shards = header.num_shards
    for shard in range(n_shards):
        name = Path(f"{prefix}.data-{shard:05d}-of-{n_shards:05d}")
        if not name.is_file():
            raise CheckpointError(f"{name}: data shard missing (the index {index.name} lists {n_shards} shard(s))")
        if name.stat().st_size < needed.get(shard, 0):
            raise CheckpointError(
                f"{name}: truncated ({name.stat().st_size} bytes, the index needs {needed[shard]})"
            )
    return {"slices": slices, "num_shards": n_shards}


def part_rows(n_rows: int, n_parts: int) -> list[int]:
    """Rows of each part when TF's partitioners cut ``n_rows`` into ``n_parts``: the first
    ``n_rows % n_parts`` parts one row longer (``fixed_size_partitioner``; what both
    ``embedding_lookup`` strategies assume)."""
    base, extra = divmod(n_rows, n_parts)
    return [base + (1 if p < extra else 0) for p in range(n_parts)]


def _row_parts(slices: list) -> list[int] | None:
    """Rows per part of a variable sliced along axis 0 only, in part order; None otherwise."""
    ordered = sorted(slices, key=lambda sl: sl[0][0])
    # Cut by rows: every slice spans the same (hence every) column range; TF writes it as (0, width) or full.
    if any(sl[1:] != ordered[0][1:] or any(start != 0 for start, _ in sl[1:]) for sl in ordered):
        return None
    return [sl[0][1] for sl in ordered]


def _full_rows_of_ids(n_rows: int, n_parts: int, strategy: str) -> np.ndarray:
    """For each id, its row in the full (part 0 first) tensor: ``full[order] == table``."""
    ids = np.arange(n_rows)
    if strategy == "div" or n_parts == 1:
        return ids
    starts = np.concatenate([[0], np.cumsum(part_rows(n_rows, n_parts))[:-1]])
    return starts[ids % n_parts] + ids // n_parts


def _partition_check(prefix: Path, key: str, slices: list, shape: tuple[int, ...]) -> list[int]:
    rows = _row_parts(slices)
    if rows is None:
        raise CheckpointError(f"{prefix}: table {key!r} is sliced along its columns; only row partitions are supported")
    if rows != part_rows(shape[0], len(rows)):
        raise CheckpointError(
            f"{prefix}: table {key!r} is stored in parts of {rows} rows, not as TF's partitioners cut "
            f"{shape[0]} rows into {len(rows)} ({part_rows(shape[0], len(rows))}); cannot map its ids"
        )
    return rows


# --------------------------------------------------------------------------- the TF2 object graph


def object_graph(reader) -> VariableGraph:
    """Names, object paths and optimizer ownership from a TF2 checkpoint's object graph.

    A Keras 3 optimizer node has children ``_variables`` (all its state, in creation order),
    ``_trainable_variables`` (the model variables it updates) and one list per kind of slot
    (``_momentums``, ``_velocities``, ``momentums``, ...) whose item i belongs to trainable
    variable i. Legacy optimizers record ``slot_variables`` on the graph's nodes directly.
    """
    _tf()
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    nodes = graph.nodes
    key_of: dict[int, str] = {}
    info = VariableGraph()
    for i, node in enumerate(nodes):
        for attr in node.attributes:
            if attr.name == "VARIABLE_VALUE":
                key_of[i] = attr.checkpoint_key
                info.names[attr.checkpoint_key] = attr.full_name
    paths, queue = {0: ""}, [0]
    while queue:  # breadth first: a variable reachable twice (model and optimizer) gets its shortest path
        parent = queue.pop(0)
        for child in nodes[parent].children:
            if child.node_id not in paths:
                paths[child.node_id] = f"{paths[parent]}/{child.local_name}".lstrip("/")
                queue.append(child.node_id)
    info.paths = {key: paths[i] for i, key in key_of.items() if i in paths}

    def listed(node_id: int) -> dict[int, int]:
        return {int(c.local_name): c.node_id for c in nodes[node_id].children if c.local_name.isdigit()}

    for node in nodes:
        for slot in node.slot_variables:
            if slot.slot_variable_node_id in key_of and slot.original_variable_node_id in key_of:
                info.slot_owner[key_of[slot.slot_variable_node_id]] = key_of[slot.original_variable_node_id]
                info.optimizer_keys.add(key_of[slot.slot_variable_node_id])
        children = {c.local_name: c.node_id for c in node.children}
        if "_variables" not in children or "_trainable_variables" not in children:
            continue
        state = set(listed(children["_variables"]).values())
        trainable = listed(children["_trainable_variables"])
        info.optimizer_keys.update(key_of[i] for i in state if i in key_of)
        for name, child in children.items():
            items = listed(child)
            if name in ("_variables", "_trainable_variables") or not items:
                continue
            if all(i in state and i in key_of for i in items.values()) and set(items) <= set(trainable):
                for position, slot in items.items():
                    if trainable[position] in key_of:
                        info.slot_owner[key_of[slot]] = key_of[trainable[position]]
    return info


def _specs(reader) -> dict[str, tuple[tuple[int, ...], Any]]:
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    return {k: (tuple(int(n) for n in shapes[k]), dtypes[k].as_numpy_dtype) for k in sorted(shapes)}


def list_variables(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype name) of every variable in a TF checkpoint."""
    _, reader, _ = _reader(path)
    return {k: (shape, np.dtype(dtype).name if dtype is not object else "string")
            for k, (shape, dtype) in _specs(reader).items()}


def load(path: str | os.PathLike, **options) -> Checkpoint:
    """Read a TF1 or TF2 checkpoint (prefix, prefix file or directory).

    Args:
        path: ``model.ckpt-1000``, ``model.ckpt-1000.index`` or a directory.
        **options: :class:`~embretrain.checkpoint.foreign.LoadOptions` fields (``entity_var``,
            ``relation_var``, ``entity_vocab``, ``relation_vocab``, ``model``, ``context_var``,
            ``partition_strategy``).

    Returns:
        A Checkpoint with float32 tables ``[n_rows, dim]`` in id order; ``extras`` holds every other
        variable (``variables``; partitioned ones in id order too), the table keys (``keys``), the
        slots, ``partitions`` (key -> slices as stored), ``partition_strategy`` and ``tf_kind``.

    Raises:
        CheckpointError: unreadable checkpoint (a missing or truncated data shard is named), no
            fitting variable, vocabulary of the wrong length, optimizer state that cannot be placed.
        UsageError: options that contradict each other (e.g. a triple model without ``--relation-var``),
            a partitioned table without ``partition_strategy``, a ``--entity-var`` that names nothing.
    """
    opts = LoadOptions.from_kwargs(options)
    prefix, reader, index = _reader(path)
    specs = _specs(reader)
    kind = "tf2" if OBJECT_GRAPH_KEY in specs else "tf1"
    graph = object_graph(reader) if kind == "tf2" else None
    slices = index["slices"]
    strategy = opts.partition_strategy

    def check_tables(keys: dict[str, str]) -> None:
        parted = {key: _partition_check(prefix, key, slices[key], specs[key][0]) for key in keys.values() if key in slices}
        parted = {key: rows for key, rows in parted.items() if len(rows) > 1}
        if parted and strategy is None:
            shown = "; ".join(f"{key!r} in {len(rows)} parts of {rows} rows" for key, rows in parted.items())
            raise UsageError(
                f"{prefix}: table {shown} is partitioned; give partition_strategy mod or div, as your program "
                "passes it to embedding_lookup (TF1's default is mod; the checkpoint does not record it)"
            )
        if strategy is not None and not parted:
            logger.warning("%s: no table is partitioned; --partition-strategy %s is not needed", prefix, strategy)

    def read(key: str):
        value = reader.get_tensor(key)
        rows = _row_parts(slices[key]) if key in slices else None
        if strategy is not None and rows is not None and len(rows) > 1:
            value = value[_full_rows_of_ids(value.shape[0], len(rows), strategy)]  # full tensor -> id order
        return value

    try:
        return build_checkpoint(
            path, "tf", specs, read, opts, sidecar_base=prefix, graph=graph, on_tables=check_tables,
            binds=Path(f"{prefix}.index"),
            extras={"tf_kind": kind, "tf_prefix": os.fspath(prefix), "partitions": slices,
                    "partition_strategy": strategy},
        )
    except (CheckpointError, UsageError):
        raise
    except Exception as err:  # TF's own errors for unreadable bytes (DataLossError, OutOfRangeError, ...)
        if type(err).__module__.startswith("tensorflow"):
            raise CheckpointError(f"{prefix}: cannot read the TensorFlow checkpoint ({str(err).splitlines()[0]})") from err
        raise


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``embretrain inspect`` shows for a TF checkpoint: every variable's shape and dtype, which
    object (Keras layer) each TF2 key belongs to, and how partitioned variables are cut."""
    from .foreign import read_meta, table_candidates

    prefix, reader, index = _reader(path)
    specs = _specs(reader)
    graph = object_graph(reader) if OBJECT_GRAPH_KEY in specs else VariableGraph()
    meta = read_meta(prefix)
    candidates = table_candidates(specs, exclude=graph.optimizer_keys)
    partitions = {}
    for key, slices in index["slices"].items():
        rows = _row_parts(slices)
        partitions[key] = (f"{len(rows)} parts of {rows} rows (extend needs --partition-strategy mod|div)"
                           if rows is not None else f"{len(slices)} slices (not by rows)")
    info = {
        "path": os.fspath(path),
        "format": "tensorflow " + ("TF2 object-based (tf.train.Checkpoint)" if OBJECT_GRAPH_KEY in specs
                                    else "TF1 name-based (Saver)"),
        "prefix": os.fspath(prefix),
        "model": meta.get("model"),
        "variables": {k: f"{list(shape)} {'string' if dtype is object else np.dtype(dtype).name}"
                      for k, (shape, dtype) in specs.items()},
        "table_candidates": {k: list(specs[k][0]) for k in candidates},
    }
    if partitions:
        info["partitions"] = partitions
    if graph.paths:
        info["objects"] = {
            k: f"{graph.paths.get(k, '?')} (variable {graph.names.get(k) or '?'})"
            + (f", optimizer state of {graph.slot_owner[k]}" if k in graph.slot_owner
               else ", optimizer state" if k in graph.optimizer_keys else "")
            for k in specs if k in graph.paths
        }
    info.update({
        "tables": meta.get("tables") or {},
        "vocabularies": {kind: os.fspath(sidecar(prefix, kind)) for kind in ("entities", "relations", "contexts")
                         if sidecar(prefix, kind).is_file()},
        "lineage": meta.get("lineage") or [],
    })
    return info


def _default_keys(ckpt: Checkpoint) -> dict[str, str]:
    """Keys for tables that came from no TF checkpoint: the table names, as a TF1 Saver would store them."""
    return {name: name for name in ckpt.tables()}


def save(ckpt: Checkpoint, path: str | os.PathLike, *, keep: int = 0) -> None:
    """Write ``ckpt`` as a TF checkpoint at prefix ``path`` (atomically; see the module docstring).

    A checkpoint loaded from TF keeps all its other variables and its table keys; anything else
    is written with one variable per table, keyed by table name (``entity_embeddings``, ...).
    Names go to ``<path>.entities.tsv`` / ``<path>.relations.tsv``, model and lineage to
    ``<path>.embretrain.json``.

    ``keep`` (previous versions as ``<path>.1``) is not supported for a prefix of several files:
    write the grown checkpoint to a new prefix (``model.ckpt-1001``) to keep the old one.
    """
    prefix = Path(_strip_file_suffix(os.fspath(path)))
    if keep:
        logger.warning("--keep does not apply to TF checkpoints; %s is overwritten (use a new prefix to keep it)", prefix)
    directory = check_writable_dir(prefix)
    same_format = ckpt.extras.get("format") == "tf"
    keys = dict(ckpt.extras["keys"]) if same_format else _default_keys(ckpt)
    tables = ckpt.tables()
    missing = set(tables) - set(keys)
    if missing:
        raise CheckpointError(f"cannot save: no TF key for table(s) {', '.join(sorted(missing))}")
    tensors: dict[str, Any] = {keys[name]: np.ascontiguousarray(t, dtype=np.float32) for name, t in tables.items()}
    if same_format:
        tensors.update(grown_variables(ckpt))
    elif ckpt.extras.get("variables"):
        logger.info("converting from %s: only the tables are written to the TF checkpoint", ckpt.extras.get("format"))

    names, specs, parts = _sliced(tensors, ckpt.extras if same_format else {})
    tf = _tf()
    with tf.device("/cpu:0"):
        values = [tf.constant(v) for v in parts]
    state = _state_text(directory, prefix)
    kinds = ("entities", "relations", "contexts", "meta")
    check_room(prefix, sum(getattr(v, "nbytes", 0) for v in parts))
    try:
        with scratch_dir(prefix) as scratch:
            # everything is made in the scratch directory first; nothing reaches the target directory
            # until the whole unit (shards, sidecars, state file) is ready
            base = scratch / prefix.name
            tf.raw_ops.SaveV2(prefix=os.fspath(base), tensor_names=names, shape_and_slices=specs, tensors=values)
            shards = sorted(scratch.iterdir(), key=lambda f: f.name.endswith(".index"))  # .index last
            # the meta sidecar names the .index it belongs to: a crash between the renames below cannot
            # pair a new sidecar with an old checkpoint unnoticed (read_meta checks it at load)
            write_sidecars(ckpt, base, keys, binds=file_binding(Path(f"{base}.index")), shown_as=prefix)
            made = {kind: sidecar(base, kind) for kind in kinds if sidecar(base, kind).exists()}
            stale = [sidecar(prefix, kind) for kind in kinds if kind not in made]  # e.g. relations of an older model
            written = {**{kind: f for kind, f in made.items()}, **{f.name: f for f in shards}}
            targets = {key: directory / f.name for key, f in written.items()}
            state_tmp = scratch / STATE_FILE
            state_tmp.write_text(state, encoding="utf-8")
            written[STATE_FILE] = state_tmp
            targets[STATE_FILE] = directory / STATE_FILE
            # renamed in this order: sidecars, data shards, .index, then the state file that makes
            # tf.train.latest_checkpoint see the new prefix
            with atomic_files(targets, primary=STATE_FILE, remove=stale) as tmps:
                for key, f in written.items():
                    os.replace(f, tmps[key])
    except (OSError, tf.errors.OpError) as err:  # out of disk, an I/O error
        raise EmbretrainError(f"{write_failure(prefix, err)}; nothing was written and {prefix} is unchanged") from err
    logger.info("saved TF checkpoint %s: %d variables, %d entities", prefix, len(tensors), ckpt.n_entities)


def _sliced(tensors: dict[str, Any], extras: dict[str, Any]) -> tuple[list[str], list[str], list[Any]]:
    """SaveV2's (names, shape_and_slices, values): a partitioned variable as the slices its program's
    partitioner expects for its current row count (several entries with one name), the rest whole."""
    slices = extras.get("partitions") or {}
    strategy = extras.get("partition_strategy")
    names, specs, values = [], [], []
    for key in sorted(tensors):
        value = tensors[key]
        stored = slices.get(key)
        rows = _row_parts(stored) if stored else None
        if stored is None:
            names.append(key)
            specs.append("")
            values.append(value)
            continue
        value = np.asarray(value)
        if rows is not None and strategy is not None and len(rows) > 1:
            full = np.empty_like(value)
            full[_full_rows_of_ids(value.shape[0], len(rows), strategy)] = value  # id order -> full tensor
            value = full
        if rows is not None and (len(rows) > 1 and strategy is not None or sum(rows) != value.shape[0]):
            sizes = part_rows(value.shape[0], len(rows))  # as the program's partitioner cuts the new row count
            starts = np.cumsum([0] + sizes[:-1])
            cuts = [[(int(start), size)] + [(0, -1)] * (value.ndim - 1) for start, size in zip(starts, sizes)]
        else:
            cuts = stored  # not grown: cut as it was
        full_shape = " ".join(str(d) for d in value.shape)
        for cut in cuts:
            index = tuple(slice(s, None if n == -1 else s + n) for s, n in cut)
            names.append(key)
            specs.append(f"{full_shape} " + ":".join("-" if n == -1 else f"{s},{n}" for s, n in cut))
            values.append(np.ascontiguousarray(value[index]))
    return names, specs, values


def _state_text(directory: Path, prefix: Path) -> str:
    """The ``directory/checkpoint`` state pointing at ``prefix``, keeping the checkpoints it already lists."""
    tf = _tf()
    state = tf.train.get_checkpoint_state(os.fspath(directory))
    known = list(state.all_model_checkpoint_paths) if state else []
    rel = prefix.name
    known = [p for p in known if Path(p).name != rel] + [rel]
    # The CheckpointState text proto, written with the rest of the unit rather than through the
    # deprecated tf.compat.v1.train.update_checkpoint_state; json.dumps gives proto-compatible string quoting.
    return f"model_checkpoint_path: {json.dumps(rel)}\n" + "".join(
        f"all_model_checkpoint_paths: {json.dumps(p)}\n" for p in known
    )


def check_out(path: str | os.PathLike) -> None:
    """Fail before training if a TF checkpoint cannot be written at prefix ``path``."""
    prefix = Path(_strip_file_suffix(os.fspath(path)))
    if prefix.is_dir():
        raise UsageError(f"{prefix} is a directory; give a checkpoint prefix such as {prefix / 'model.ckpt-1'}")
    check_writable_dir(prefix)

