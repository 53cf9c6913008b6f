"""embretrain: grow a trained embedding table without retraining it.

The public API is small and lazy (TensorFlow is imported only by the calls that train or score):

    >>> import embretrain as et
    >>> ckpt = et.load("base.h5")
    >>> grown, summary = et.extend(ckpt, new_entities=["x", "y"], triples=[("x", "likes", "y")])
    >>> et.save(grown, "merged.h5")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load", "save", "train", "extend", "evaluate", "Settings", "Checkpoint"]


def __getattr__(name):  # PEP 562: keep `import embretrain` (and the CLI's --help) instant
    if name in ("load", "save", "train", "extend", "evaluate"):
        from . import api

        return getattr(api, name)
    if name == "Settings":
        from .config import Settings

        return Settings
    if name == "Checkpoint":
        from .checkpoint.model import Checkpoint

        return Checkpoint
    raise AttributeError(f"module 'embretrain' has no attribute {name!r}")
