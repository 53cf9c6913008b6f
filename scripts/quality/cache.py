"""``cache.json``: the base and full-retrain runs of an out-dir, kept so extend variants can be compared cheaply.

The two trainings are the expensive part of a quality run; ``--reuse`` keeps them (and their figures) when a
later run has the same settings, and ``--reuse-from`` takes another folder's when its base and full retrain
saw the same data. An entry is valid only under the fingerprint of the settings that made it, and a
training only while its checkpoint is still on disk. Every change is written through at once, so an
interrupted benchmark keeps what it paid for.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RunCache", "fingerprint"]

logger = logging.getLogger(__name__)

Entry = dict[str, Any]


def fingerprint(*settings: Any) -> str:
    """A short stable key of JSON-able ``settings`` (dataset, split, run options): what a cache entry depends on."""
    return hashlib.sha256(json.dumps(list(settings)).encode()).hexdigest()[:16]


class RunCache:
    """The entries of one ``cache.json``: ``{"fingerprint": ..., "base": {...}, "full": {...}, <figures>: {...}}``."""

    def __init__(self, path: Path, key: str, entries: Entry | None = None):
        self.path = path
        self.key = key
        # entries made under other settings describe other runs: start afresh
        self.entries: Entry = entries if entries and entries.get("fingerprint") == key else {"fingerprint": key}

    @classmethod
    def open(cls, out_dir: Path, key: str, reuse: bool) -> RunCache:
        """The cache of ``out_dir``: its ``cache.json`` when ``reuse`` and it was made under ``key``, else empty."""
        path = out_dir / "cache.json"
        return cls(path, key, json.loads(path.read_text()) if reuse and path.is_file() else None)

    def adopt(self, other_dir: Path, base_examples: int, full_examples: int) -> bool:
        """Take every entry of ``other_dir``'s cache if its base and full retrain trained on as many triples as
        ours would (e.g. a chain whose nights add up to a one-step run's new entities); False: kept ours."""
        other = json.loads((other_dir / "cache.json").read_text())
        if other.get("base", {}).get("examples") != base_examples or \
                other.get("full", {}).get("examples") != full_examples:
            return False
        self.entries = {**other, "fingerprint": self.key}
        return True

    def training(self, name: str, run: Callable[[], Entry]) -> Entry:
        """The entry ``name`` (with a ``"ckpt"`` path) if its checkpoint is still on disk, else ``run()``'s, stored."""
        entry = self.entries.get(name)
        if entry and Path(entry["ckpt"]).is_file():
            logger.info("reusing %s", entry["ckpt"])
            return entry
        return self._put(name, run())

    def figures(self, name: str, compute: Callable[[], Entry]) -> Entry:
        """The stored figures ``name``, else ``compute()``'s, stored."""
        return self.entries.get(name) or self._put(name, compute())

    def save(self) -> None:
        """Write every entry to ``cache.json`` (also those adopted from another folder, for a later ``adopt``)."""
        self.path.write_text(json.dumps(self.entries, indent=2))

    def _put(self, name: str, entry: Entry) -> Entry:
        self.entries[name] = entry
        self.save()
        return entry
