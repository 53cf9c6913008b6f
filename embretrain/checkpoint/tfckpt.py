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

Output is atomic: files are written into a temporary directory next to the target, fsynced, moved
into place data first and ``.index`` last (the index is what makes a prefix readable), then the
directory's ``checkpoint`` state file is switched to the new prefix.

Not supported: partitioned variables (written back as one unpartitioned tensor) and non-float32 tables.
TensorFlow is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write, check_writable_dir, fsync_path
from ..errors import CheckpointError, UsageError
from .base import Checkpoint
from .foreign import LoadOptions, build_checkpoint, grown_variables, sidecar, write_sidecars

__all__ = ["is_tf", "resolve_prefix", "load", "save", "describe", "list_variables", "check_out"]

logger = logging.getLogger(__name__)

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
STATE_FILE = "checkpoint"  # the directory's "latest checkpoint" index that tf.train.latest_checkpoint reads


def _tf():
    import tensorflow as tf  # lazy: 3 s, only for TF checkpoints

    return tf


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


def _reader(path):
    prefix = resolve_prefix(path)
    if prefix is None:
        raise CheckpointError(f"{path}: no TensorFlow checkpoint here (no {path}.index, no 'checkpoint' file)")
    tf = _tf()
    try:
        return prefix, tf.train.load_checkpoint(os.fspath(prefix))
    except Exception as err:  # TF raises its own errors (DataLossError, NotFoundError, ...) for bad files
        raise CheckpointError(f"{prefix}: cannot read the TensorFlow checkpoint ({str(err).splitlines()[0]})") from err


def _specs(reader) -> dict[str, tuple[tuple[int, ...], Any]]:
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    return {k: (tuple(int(n) for n in shapes[k]), dtypes[k].as_numpy_dtype) for k in sorted(shapes)}


def list_variables(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype name) of every variable in a TF checkpoint."""
    _, reader = _reader(path)
    return {k: (shape, np.dtype(dtype).name if dtype is not object else "string")
            for k, (shape, dtype) in _specs(reader).items()}


def load(path: str | os.PathLike, **options) -> Checkpoint:
    """Read a TF1 or TF2 checkpoint (prefix, prefix file or directory).

    Args:
        path: ``model.ckpt-1000``, ``model.ckpt-1000.index`` or a directory.
        **options: :class:`~embretrain.checkpoint.foreign.LoadOptions` fields (``entity_var``,
            ``relation_var``, ``entity_vocab``, ``relation_vocab``, ``model``, ``context_var``).

    Returns:
        A Checkpoint with float32 tables ``[n_rows, dim]``; ``extras`` holds every other variable
        (``variables``), the table keys (``keys``), the slots and ``tf_kind`` (``tf1``/``tf2``).

    Raises:
        CheckpointError: unreadable checkpoint, no fitting variable, vocabulary of the wrong length.
        UsageError: options that contradict each other (e.g. a triple model without ``--relation-var``).
    """
    opts = LoadOptions.from_kwargs(options)
    prefix, reader = _reader(path)
    specs = _specs(reader)
    kind = "tf2" if OBJECT_GRAPH_KEY in specs else "tf1"
    return build_checkpoint(
        path, "tf", specs, reader.get_tensor, opts, sidecar_base=prefix,
        extras={"tf_kind": kind, "tf_prefix": os.fspath(prefix)},
    )


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``embretrain inspect`` shows for a TF checkpoint: every variable's shape and dtype."""
    from .foreign import read_meta, table_candidates

    prefix, reader = _reader(path)
    specs = _specs(reader)
    meta = read_meta(prefix)
    candidates = table_candidates(specs)
    return {
        "path": os.fspath(path),
        "format": "tensorflow " + ("TF2 object-based (tf.train.Checkpoint)" if OBJECT_GRAPH_KEY in specs
                                    else "TF1 name-based (Saver)"),
        "prefix": os.fspath(prefix),
        "model": meta.get("model"),
        "variables": {k: f"{list(shape)} {'string' if dtype is object else np.dtype(dtype).name}"
                      for k, (shape, dtype) in specs.items()},
        "table_candidates": {k: list(specs[k][0]) for k in candidates},
        "tables": meta.get("tables") or {},
        "vocabularies": {kind: os.fspath(sidecar(prefix, kind)) for kind in ("entities", "relations")
                         if sidecar(prefix, kind).is_file()},
        "lineage": meta.get("lineage") or [],
    }


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

    tf = _tf()
    names = sorted(tensors)
    with tf.device("/cpu:0"):
        values = [tf.constant(tensors[k]) for k in names]
    write_sidecars(ckpt, prefix, keys)
    tmp = directory / f".{prefix.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        tf.raw_ops.SaveV2(prefix=os.fspath(tmp / prefix.name), tensor_names=names,
                          shape_and_slices=[""] * len(names), tensors=values)
        files = sorted(tmp.iterdir(), key=lambda f: f.name.endswith(".index"))  # .index last
        for f in files:
            fsync_path(f)
        for f in files:
            os.replace(f, directory / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        fsync_path(directory)
    _switch_state(directory, prefix)
    logger.info("saved TF checkpoint %s: %d variables, %d entities", prefix, len(names), ckpt.n_entities)


def _switch_state(directory: Path, prefix: Path) -> None:
    """Point ``directory/checkpoint`` at ``prefix``, keeping the checkpoints it already lists."""
    tf = _tf()
    state = tf.train.get_checkpoint_state(os.fspath(directory))
    known = list(state.all_model_checkpoint_paths) if state else []
    rel = prefix.name
    known = [p for p in known if Path(p).name != rel] + [rel]
    # The CheckpointState text proto, written like the rest (temp + fsync + rename) rather than through the
    # deprecated tf.compat.v1.train.update_checkpoint_state; json.dumps gives proto-compatible string quoting.
    text = f"model_checkpoint_path: {json.dumps(rel)}\n" + "".join(
        f"all_model_checkpoint_paths: {json.dumps(p)}\n" for p in known
    )
    with atomic_write(directory / STATE_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_out(path: str | os.PathLike) -> None:
    """Fail before training if a TF checkpoint cannot be written at prefix ``path``."""
    prefix = Path(_strip_file_suffix(os.fspath(path)))
    if prefix.is_dir():
        raise UsageError(f"{prefix} is a directory; give a checkpoint prefix such as {prefix / 'model.ckpt-1'}")
    check_writable_dir(prefix)

