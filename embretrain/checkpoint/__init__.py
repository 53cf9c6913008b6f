"""Checkpoint formats: one module per format, one ``load``/``save`` entry that picks by what is on disk."""

from __future__ import annotations

from .base import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint

__all__ = ["Checkpoint", "ENTITY_TABLE", "RELATION_TABLE", "CONTEXT_TABLE", "load", "save", "describe"]


def load(path, **kwargs) -> Checkpoint:
    """Load any supported checkpoint (today: the native HDF5 file)."""
    from . import native

    return native.load(path, **kwargs)


def save(ckpt: Checkpoint, path, **kwargs) -> None:
    """Write ``ckpt`` atomically to ``path`` in the native HDF5 format."""
    from . import native

    native.save(ckpt, path, **kwargs)


def describe(path) -> dict:
    """What ``embretrain inspect`` shows: format, model, dims, counts, checksum status, lineage."""
    from . import native

    return native.describe(path)
