"""The registry of checkpoint formats: one :class:`Format` per format, and the only list of them.

Each format is a module with five functions: ``detect(path) -> bool`` (looks at files only, never
imports TensorFlow), ``load(path, **options) -> Checkpoint``, ``save(ckpt, path, *, keep=0)``,
``describe(path) -> dict`` (what ``inspect`` shows) and ``check_out(path)`` (fail before training if
the output could not be written). :data:`FORMATS` names them; the CLI's ``--out-format`` choices,
detection order and dispatch in :mod:`embretrain.checkpoint` all read it.

Owns: :class:`Format` and :data:`FORMATS`. Must not: import a format's module before it is used
(``embretrain --help`` imports this file), or hold any format's logic.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Checkpoint

__all__ = ["Format", "FORMATS", "FORMAT_NAMES"]


@dataclass(frozen=True)
class Format:
    """One checkpoint format.

    Attributes:
        name: as ``--out-format`` takes it.
        title: how messages call it ("a TensorFlow checkpoint").
        module: the implementing module, relative to this package (imported on first use).
        self_describing: the file names its own tables, vocabularies and model (no ``entity_var`` etc.).
        on_disk: old rows can stay in the file while training (``old_rows="on-disk"``).
        fallback: claims whatever no other format detects (tried last).
    """

    name: str
    title: str
    module: str
    self_describing: bool = False
    on_disk: bool = False
    fallback: bool = False

    @property
    def impl(self) -> ModuleType:
        return importlib.import_module(self.module, __package__)

    def detect(self, path: str | os.PathLike) -> bool:
        return self.impl.detect(path)

    def load(self, path: str | os.PathLike, **options: Any) -> Checkpoint:
        return self.impl.load(path, **options)

    def save(self, ckpt: Checkpoint, path: str | os.PathLike, **kwargs: Any) -> None:
        self.impl.save(ckpt, path, **kwargs)

    def describe(self, path: str | os.PathLike) -> dict:
        return self.impl.describe(path)

    def check_out(self, path: str | os.PathLike) -> None:
        self.impl.check_out(path)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("h5", "native", ".native", self_describing=True, on_disk=True, fallback=True),
        Format("tf", "TensorFlow", ".tfckpt"),
        Format("keras", "Keras", ".keras"),
    )
}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
