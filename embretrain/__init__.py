"""embretrain: grow a trained embedding table without retraining it.

The Python API lives in :mod:`embretrain.api` (TensorFlow is imported only by the calls that
train or score, so importing it is instant)::

    from embretrain import api

    base = api.load("base.h5")
    grown, summary = api.extend(base, "new.tsv", "delta.tsv")
    api.save(grown, "merged.h5")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
