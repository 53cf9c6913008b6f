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
Names and model live in sidecars beside the output (``<out>.entities.tsv``, ``<out>.embretrain.json``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_write, check_writable_dir
from ..errors import CheckpointError, UsageError
from .base import Checkpoint
from .foreign import LoadOptions, build_checkpoint, grown_variables, read_meta, table_candidates, write_sidecars

__all__ = ["is_keras", "load", "save", "describe", "check_out", "WEIGHTS_SUFFIX", "ARCHIVE_SUFFIX"]

logger = logging.getLogger(__name__)

WEIGHTS_SUFFIX = ".weights.h5"
ARCHIVE_SUFFIX = ".keras"
WEIGHTS_MEMBER = "model.weights.h5"
CONFIG_MEMBER = "config.json"


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
            return "entities" not in f and any(isinstance(f.get(g), h5py.Group) for g in ("layers", "vars"))
    except Exception:  # a probe: anything unreadable is simply "not Keras"
        return False


def _walk(f: h5py.File) -> tuple[dict[str, dict], dict[str, h5py.Dataset]]:
    """(group path -> attrs, in creation-friendly order; dataset path -> dataset)."""
    groups: dict[str, dict] = {"": dict(f.attrs)}
    datasets: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Group):
            groups[name] = dict(obj.attrs)
        else:
            datasets[name] = obj

    f.visititems(visit)  # parents are visited before their children
    return groups, datasets


def _open_weights(path: Path):
    """(h5py.File, other archive members or None, config dict or None)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                members = {name: z.read(name) for name in z.namelist()}
            if WEIGHTS_MEMBER not in members:
                raise CheckpointError(f"{path} is a zip without {WEIGHTS_MEMBER}; not a Keras 3 .keras archive")
            weights = members.pop(WEIGHTS_MEMBER)
            config = json.loads(members[CONFIG_MEMBER]) if CONFIG_MEMBER in members else None
            return h5py.File(io.BytesIO(weights), "r"), members, config
        return h5py.File(path, "r"), None, None
    except CheckpointError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read the Keras file ({err})") from err


def _read_all(path: Path):
    f, members, config = _open_weights(path)
    with f:
        groups, datasets = _walk(f)
        specs = {k: (tuple(d.shape), d.dtype) for k, d in datasets.items()}
        values = {k: d[()] for k, d in datasets.items()}
        attrs = {k: dict(d.attrs) for k, d in datasets.items()}
    return specs, values, groups, attrs, members, config


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
    specs, values, groups, attrs, members, config = _read_all(path)
    extras = {"h5_groups": groups, "h5_attrs": attrs}
    if members is not None:
        extras["keras_members"] = members
    return build_checkpoint(path, "keras", specs, values.__getitem__, opts, sidecar_base=path, extras=extras)


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``embretrain inspect`` shows for a Keras file: every dataset's shape and dtype."""
    path = Path(path)
    specs, _, _, _, members, config = _read_all(path)
    meta = read_meta(path)
    embedding_layers = sorted(_layers(config, "Embedding")) if config else []
    return {
        "path": os.fspath(path),
        "format": "keras archive (.keras)" if members is not None else "keras weights (.weights.h5)",
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
    with h5py.File(target, "w") as f:
        for group, group_attrs in groups.items():
            g = f.require_group(group) if group else f
            g.attrs.update(group_attrs)
        for key in sorted(data, key=lambda k: (k not in attrs, k)):
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
    members = ckpt.extras.get("keras_members") if same_format else None
    if archive and members is None:
        raise UsageError(
            f"{path}: a .keras archive needs the model's architecture, which only a .keras input carries; "
            f"write {path.name[: -len(ARCHIVE_SUFFIX)]}{WEIGHTS_SUFFIX} instead"
        )
    write_sidecars(ckpt, path, keys)
    with atomic_write(path, keep=keep) as tmp:
        if not archive:
            _write_h5(tmp, ckpt, keys, same_format)
        else:
            buffer = io.BytesIO()
            _write_h5(buffer, ckpt, keys, same_format)
            members = dict(members)
            if CONFIG_MEMBER in members:
                members[CONFIG_MEMBER] = _grow_config(members[CONFIG_MEMBER], ckpt, keys)
            with zipfile.ZipFile(tmp, "w") as z:
                for name, content in members.items():
                    z.writestr(name, content)
                z.writestr(WEIGHTS_MEMBER, buffer.getvalue())
    logger.info("saved Keras %s %s: %d entities", "archive" if archive else "weights", path, ckpt.n_entities)


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


def _grow_config(raw: bytes, ckpt: Checkpoint, keys: dict[str, str]) -> bytes:
    """Set ``input_dim`` of each grown table's Embedding layer to its new row count."""
    config = json.loads(raw)
    for name, table in ckpt.tables().items():
        layer = _layer_config(config, keys[name])
        if layer is not None and "input_dim" in layer:
            layer["input_dim"] = int(table.shape[0])
        else:
            logger.warning("config.json has no Embedding layer for %r; its input_dim is left as is", keys[name])
    return json.dumps(config).encode("utf-8")
