"""Keras 3 files: a weights file (``model.weights.h5``) or a model archive (``model.keras``).

A Keras 3 weights file is plain HDF5, one group per layer and numbered datasets per variable::

    layers/embedding/vars/0     float32 [n_entities, dim]   <- an Embedding layer's table
    layers/dense/vars/0         float32 [dim, units]
    optimizer/vars/2            float32 [n_entities, dim]   <- Adam m of the table (unnamed; matched by shape)

A ``.keras`` archive is a zip of ``config.json`` (the architecture), ``metadata.json`` and
``model.weights.h5``. Both are read with h5py/zipfile, without TensorFlow.

Writing keeps the layout: every group and dataset with its attributes, the grown table under its
own key with more rows, optimizer variables of the table grown with zero rows (see
:mod:`~embretrain.checkpoint.foreign`). In an archive, the Embedding layer's ``input_dim`` in
``config.json`` is raised to the new row count so ``keras.models.load_model`` builds the larger layer;
for a weights file the user rebuilds the model with the larger vocabulary and calls ``load_weights``.
Names and model live in sidecars beside the output (``<out>.entities.tsv``, ``<out>.embretrain.json``),
written with the checkpoint as one unit (:func:`~embretrain.atomic.atomic_files`): a failure leaves
neither, and a success never leaves an old sidecar beside the new file.

An archive is untrusted input. Its member names must be plain relative paths (no absolute path, no
``..``, no backslash or drive letter, no duplicates); each member may inflate to at most
:data:`MAX_RATIO` times its compressed size (and never past the size its header declares); and
nothing is held in memory whole: ``model.weights.h5`` is streamed into a temporary file and opened
there, and on save the other members are copied member by member from the input archive.

Owns: the Keras format's entry in :data:`~embretrain.checkpoint.FORMATS`. Must not: import TensorFlow
or Keras (files are read with h5py and zipfile), or decide which variable is a table (:mod:`.foreign`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_files, check_writable_dir, scratch_dir, scratch_file
from ..diskspace import check_room, table_bytes, write_failure
from ..errors import CheckpointError, EmbretrainError, UsageError
from . import h5write
from .base import Checkpoint
from .foreign import (
    LoadOptions,
    VariableGraph,
    build_checkpoint,
    grown_variables,
    read_meta,
    sidecar,
    table_candidates,
    write_sidecars,
)
from .h5guard import walk as _walk

__all__ = ["is_keras", "load", "save", "describe", "check_out", "WEIGHTS_SUFFIX", "ARCHIVE_SUFFIX"]

logger = logging.getLogger(__name__)

WEIGHTS_SUFFIX = ".weights.h5"
ARCHIVE_SUFFIX = ".keras"
WEIGHTS_MEMBER = "model.weights.h5"
CONFIG_MEMBER = "config.json"
MAX_RATIO = 100  # inflated / compressed bytes per member; float weights deflate ~1.1x, a zip bomb 1000x
MAX_CONFIG_BYTES = 64 << 20  # config.json is parsed in memory
_COPY_BYTES = 1 << 20


def is_keras(path: str | os.PathLike) -> bool:
    """True for a ``.keras`` zip holding ``model.weights.h5``, or an HDF5 file laid out as Keras 3 weights.

    Never raises: used to pick a format for whatever the user passed.
    """
    p = Path(path)
    try:
        if not p.is_file():
            return False
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                return WEIGHTS_MEMBER in z.namelist()
        if not h5py.is_hdf5(p):
            return False
        with h5py.File(p, "r") as f:
            # Keras 3 writes a top-level "layers" (or "vars") group; our native file has /entities instead.
            return "entities" not in f and any(
                isinstance(f.get(g, getlink=True), h5py.HardLink) and isinstance(f.get(g), h5py.Group)
                for g in ("layers", "vars")
            )
    except Exception:  # a probe: anything unreadable is simply "not Keras"
        return False


detect = is_keras  # the name the format registry (checkpoint.formats) calls


def _member_problem(name: str) -> str | None:
    """Why an archive member name is unsafe to carry into an output archive (None if it is safe)."""
    if not name or "\x00" in name:
        return "is empty or holds a NUL"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in name.rstrip("/").split("/")):
        return "has an empty, '.' or '..' component"
    return None


def _members(z: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    """The archive's members, checked: safe names, no duplicates, a bounded inflation ratio."""
    seen: set[str] = set()
    infos = z.infolist()
    for info in infos:
        problem = _member_problem(info.filename)
        if problem:
            raise CheckpointError(f"{path}: archive member {info.filename!r} {problem}; refusing the archive")
        if info.filename in seen:
            raise CheckpointError(f"{path}: archive member {info.filename!r} appears twice; refusing the archive")
        seen.add(info.filename)
        if info.file_size > max(info.compress_size, 1) * MAX_RATIO:
            raise CheckpointError(
                f"{path}: archive member {info.filename!r} inflates from {info.compress_size} to {info.file_size} bytes "
                f"(over {MAX_RATIO}x); refusing a zip bomb"
            )
    return infos


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path) -> bytes:
    if info.file_size > limit:
        raise CheckpointError(f"{path}: archive member {info.filename!r} is {info.file_size} bytes; at most {limit} are read")
    with z.open(info) as fh:  # ZipExtFile never inflates past the declared size (then checks the CRC)
        return fh.read(limit + 1)


@contextlib.contextmanager
def open_weights(path: Path) -> Iterator[tuple[h5py.File, dict | None, dict | None]]:
    """Yield (h5py.File, archive description or None, config dict or None); files are closed after.

    For an archive, ``model.weights.h5`` is streamed into an anonymous temporary file (memory stays
    bounded whatever the archive declares) and the description records the input (path, size, mtime)
    and its member list, so :func:`save` can copy the other members from it later, one at a time.
    """
    try:
        with contextlib.ExitStack() as stack:
            if zipfile.is_zipfile(path):
                z = stack.enter_context(zipfile.ZipFile(path))
                infos = _members(z, path)
                by_name = {info.filename: info for info in infos}
                if WEIGHTS_MEMBER not in by_name:
                    raise CheckpointError(f"{path} is a zip without {WEIGHTS_MEMBER}; not a Keras 3 .keras archive")
                config = None
                if CONFIG_MEMBER in by_name:
                    config = json.loads(_read_member(z, by_name[CONFIG_MEMBER], MAX_CONFIG_BYTES, path))
                tmp = stack.enter_context(tempfile.TemporaryFile(prefix="embretrain-keras-", suffix=".h5"))
                with z.open(by_name[WEIGHTS_MEMBER]) as src:
                    shutil.copyfileobj(src, tmp, _COPY_BYTES)
                tmp.seek(0)
                st = os.stat(path)
                archive = {
                    "path": os.fspath(path),
                    "stat": [st.st_size, st.st_mtime_ns, st.st_ino],
                    "members": [i.filename for i in infos if i.filename not in (WEIGHTS_MEMBER, CONFIG_MEMBER)],
                }
                f = stack.enter_context(h5py.File(tmp, "r"))
                yield f, archive, config
            else:
                f = stack.enter_context(h5py.File(path, "r"))
                yield f, None, None
    except CheckpointError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot read the Keras file ({err})") from err


def _read_all(path: Path, values: bool = True):
    with open_weights(path) as (f, archive, config):
        groups, datasets = _walk(f, path)
        specs = {k: (tuple(d.shape), d.dtype) for k, d in datasets.items()}
        read = {k: d[()] for k, d in datasets.items()} if values else {}
        attrs = {k: dict(d.attrs) for k, d in datasets.items()}
    return specs, read, groups, attrs, archive, config


def load(path: str | os.PathLike, **options) -> Checkpoint:
    """Read a Keras 3 ``.weights.h5`` or ``.keras`` file.

    Args:
        path: the file.
        **options: :class:`~embretrain.checkpoint.foreign.LoadOptions` fields; ``entity_var`` is a
            dataset path such as ``layers/embedding/vars/0``.

    Returns:
        A Checkpoint with float32 tables ``[n_rows, dim]``; ``extras`` holds every other dataset
        and the HDF5 group/dataset attributes (and, for an archive, its other members).
    """
    path = Path(path)
    opts = LoadOptions.from_kwargs(options)
    specs, values, groups, attrs, archive, config = _read_all(path)
    extras = {"h5_groups": groups, "h5_attrs": attrs}
    if archive is not None:
        extras["keras_archive"] = archive
        extras["keras_config"] = config
    return build_checkpoint(path, "keras", specs, values.__getitem__, opts, sidecar_base=path, extras=extras,
                            graph=VariableGraph(names=layer_names(groups, specs)))


def layer_names(groups: dict[str, dict], keys) -> dict[str, str]:
    """key -> the name the user gave its layer (``layers/embedding_1/vars/0`` -> ``item_emb``): Keras 3 keys
    a layer by its class, and keeps the layer's own name in the ``name`` attribute of its ``vars`` group."""
    names = {}
    for key in keys:
        name = groups.get(key.rpartition("/")[0], {}).get("name")
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if isinstance(name, str) and not key.startswith("optimizer/"):
            names[key] = name
    return names


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``embretrain inspect`` shows for a Keras file: every dataset's shape and dtype."""
    path = Path(path)
    specs, _, _, _, archive, config = _read_all(path, values=False)  # shapes only: nothing big is read
    meta = read_meta(path)
    embedding_layers = sorted(_layers(config, "Embedding")) if config else []
    return {
        "path": os.fspath(path),
        "format": "keras archive (.keras)" if archive is not None else "keras weights (.weights.h5)",
        "model": meta.get("model"),
        "variables": {k: f"{list(shape)} {np.dtype(dtype).name}" for k, (shape, dtype) in specs.items()},
        "table_candidates": {k: list(specs[k][0]) for k in table_candidates(specs)},
        "embedding_layers": embedding_layers,
        "tables": meta.get("tables") or {},
        "lineage": meta.get("lineage") or [],
    }


def _layers(node: Any, class_name: str) -> dict[str, dict]:
    """layer name -> its ``config`` dict, for every layer of ``class_name`` anywhere in a Keras config."""
    found: dict[str, dict] = {}
    if isinstance(node, dict):
        cfg = node.get("config")
        if node.get("class_name") == class_name and isinstance(cfg, dict) and "name" in cfg:
            found[cfg["name"]] = cfg
        for value in node.values():
            found.update(_layers(value, class_name))
    elif isinstance(node, list):
        for value in node:
            found.update(_layers(value, class_name))
    return found


def check_out(path: str | os.PathLike) -> None:
    """Fail before training if ``path`` is not a name Keras 3 will load."""
    name = os.fspath(path)
    if not (name.endswith(WEIGHTS_SUFFIX) or name.endswith(ARCHIVE_SUFFIX)):
        raise UsageError(f"{name}: a Keras output must end in {WEIGHTS_SUFFIX} or {ARCHIVE_SUFFIX} (Keras 3 refuses other names)")
    check_writable_dir(path)


def _write_h5(target, ckpt: Checkpoint, keys: dict[str, str], same_format: bool) -> None:
    tables = ckpt.tables()
    data: dict[str, Any] = {keys[name]: np.ascontiguousarray(t, dtype=np.float32) for name, t in tables.items()}
    groups: dict[str, dict] = dict(ckpt.extras.get("h5_groups", {})) if same_format else {"": {}}
    attrs: dict[str, dict] = ckpt.extras.get("h5_attrs", {}) if same_format else {}
    if same_format:
        data.update(grown_variables(ckpt))
    else:
        for name, key in keys.items():
            layer = key.rsplit("/vars/", 1)[0]
            groups.update({"layers": {}, layer: {}, f"{layer}/vars": {"name": name}})
    with h5write.create(target) as w:
        f = w.file
        for group, group_attrs in groups.items():
            g = f.require_group(group) if group else f
            g.attrs.update(group_attrs)
        for key in sorted(data, key=lambda k: (k not in attrs, k)):
            w.reserve(h5write.stored_bytes(data[key]))
            dset = f.create_dataset(key, data=data[key])
            dset.attrs.update(attrs.get(key, {}))


def _fresh_keys(ckpt: Checkpoint) -> dict[str, str]:
    """Keys for tables that came from no Keras file: the paths Keras 3 gives the Embedding layers of a
    model in the order entity, [context | relation] (``layers/embedding``, ``layers/embedding_1``)."""
    return {name: f"layers/embedding{'_' + str(i) if i else ''}/vars/0" for i, name in enumerate(ckpt.tables())}


def save(ckpt: Checkpoint, path: str | os.PathLike, *, keep: int = 0) -> None:
    """Write ``ckpt`` as ``<path>`` (``.weights.h5`` or ``.keras``), atomically, plus sidecars.

    ``keep`` > 0 keeps that many previous versions as ``<path>.1`` .. (see :func:`~embretrain.atomic.atomic_write`).

    Raises:
        UsageError: ``path`` has neither suffix, or a ``.keras`` archive is asked for a checkpoint
            that did not come from one (there is no architecture to put in it).
    """
    path = Path(path)
    check_out(path)
    same_format = ckpt.extras.get("format") == "keras"
    keys = dict(ckpt.extras["keys"]) if same_format else _fresh_keys(ckpt)
    archive = path.name.endswith(ARCHIVE_SUFFIX)
    source = ckpt.extras.get("keras_archive") if same_format else None
    if archive and source is None:
        raise UsageError(
            f"{path}: a .keras archive needs the model's architecture, which only a .keras input carries; "
            f"write {path.name[: -len(ARCHIVE_SUFFIX)]}{WEIGHTS_SUFFIX} instead"
        )
    kinds = ("entities", "relations", "contexts", "meta")
    # the archive needs its weights twice (a scratch file, then the zip member)
    check_room(path, (2 if archive else 1) * table_bytes(ckpt.tables().values()))
    try:
        with scratch_dir(path) as scratch:
            # foreign.write_sidecars writes <base>.entities.tsv etc.; base in the scratch directory, so
            # nothing reaches the target directory until the whole unit is ready
            base = scratch / path.name
            write_sidecars(ckpt, base, keys, shown_as=path)  # names checked here, before the checkpoint is written
            made = {kind: sidecar(base, kind) for kind in kinds if sidecar(base, kind).exists()}
            targets = {kind: sidecar(path, kind) for kind in made}
            stale = [sidecar(path, kind) for kind in kinds if kind not in made]  # e.g. relations of an older model
            with atomic_files({**targets, "checkpoint": path}, primary="checkpoint", remove=stale, keep=keep) as tmps:
                for kind, written in made.items():
                    os.replace(written, tmps[kind])
                if not archive:
                    _write_h5(tmps["checkpoint"], ckpt, keys, same_format)
                else:
                    _write_archive(tmps["checkpoint"], source, ckpt, keys, same_format)
    except (OSError, RuntimeError) as err:  # out of disk, an I/O error (h5py says RuntimeError)
        raise EmbretrainError(f"{write_failure(path, err)}; nothing was written and {path} is unchanged") from err
    logger.info("saved Keras %s %s: %d entities", "archive" if archive else "weights", path, ckpt.n_entities)


def _write_archive(tmp: Path, source: dict, ckpt: Checkpoint, keys: dict[str, str], same_format: bool) -> None:
    """The output archive: the input's other members copied one at a time (never held in memory whole),
    ``config.json`` with the grown ``input_dim``, and the new weights file streamed from a scratch file."""
    src = Path(source["path"])
    try:
        st = os.stat(src)
        changed = [st.st_size, st.st_mtime_ns, st.st_ino] != list(source["stat"])
    except OSError:
        changed = True
    if changed:
        raise CheckpointError(f"{src} changed or disappeared since it was loaded; its archive members cannot be copied")
    with scratch_file(tmp) as weights, zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w") as zout:
        _write_h5(weights, ckpt, keys, same_format)
        infos = {info.filename: info for info in _members(zin, src)}
        for name in source["members"]:
            info = infos[name]
            out_info = zipfile.ZipInfo(name, date_time=info.date_time)
            out_info.compress_type = info.compress_type
            out_info.external_attr = info.external_attr
            with zin.open(info) as fin, zout.open(out_info, "w", force_zip64=info.file_size > 1 << 31) as fout:
                shutil.copyfileobj(fin, fout, _COPY_BYTES)
        config = ckpt.extras.get("keras_config")
        if config is not None:
            zout.writestr(CONFIG_MEMBER, _grow_config(config, ckpt, keys))
        zout.write(weights, WEIGHTS_MEMBER)


def _snake(class_name: str) -> str:
    """Keras' ``naming.to_snake_case``: the name a layer gets in the weights file (``Embedding`` -> ``embedding``)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_config(config: dict, key: str) -> dict | None:
    """The config of the layer whose variable is at ``key`` (``layers/embedding_1/vars/0``), or None.

    Keras 3 names a layer in the weights file by its *class* in snake case, numbered in order
    (``embedding``, ``embedding_1``, ...), not by its ``name``; follow that through nested models.
    """
    parts = key.split("/")
    node = config
    i = 0
    while i + 1 < len(parts) and parts[i] == "layers":
        entries = (node.get("config") or {}).get("layers") or []
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", parts[i + 1])
        wanted, index = match.group(1), int(match.group(2) or 0)
        same = [e for e in entries if isinstance(e, dict) and _snake(str(e.get("class_name", ""))) == wanted]
        if index >= len(same):  # "embedding_2" might be a class named so, not a counter
            same = [e for e in entries if isinstance(e, dict) and _snake(str(e.get("class_name", ""))) == parts[i + 1]]
            index = 0
        if index >= len(same):
            return None
        node = same[index]
        i += 2
    return node.get("config") if node is not config else None


def _grow_config(config: dict, ckpt: Checkpoint, keys: dict[str, str]) -> bytes:
    """Set ``input_dim`` of each grown table's Embedding layer to its new row count (on a copy)."""
    config = json.loads(json.dumps(config))
    for name, table in ckpt.tables().items():
        layer = _layer_config(config, keys[name])
        if layer is not None and "input_dim" in layer:
            layer["input_dim"] = int(table.shape[0])
        else:
            logger.warning("config.json has no Embedding layer for %r; its input_dim is left as is", keys[name])
    return json.dumps(config).encode("utf-8")
