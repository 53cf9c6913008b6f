"""The model registry: every scorer embretrain knows, one file each, and the lookups the rest is generated from.

Owns ``MODELS`` (name -> scorer class, in the order the CLI lists them), :func:`model_names`,
:func:`scorer_class` and :func:`get_model`. ``config.MODEL_PARAMS`` / ``MODEL_DEFAULTS``, the CLI's ``--model``
choices, ``--init neighbors`` (init.py) and the model tests all read it. Must not hold model code (that is
each model's own file) nor import TensorFlow or numpy (``embretrain --help`` reads it).

Adding a model: write ``embretrain/models/<name>.py`` (a :class:`~.base.Scorer` subclass with all its parts,
see base.py), import it below and add it to ``MODELS``; add ``embretrain/presets/<name>.toml`` (or ``preset = None``) and
a ``test_<name>_...`` in tests/test_models.py. tests/test_model_registry.py fails until every part is there.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..errors import CheckpointError, UsageError
from .base import Estimate, Scorer, glorot_limit
from .complex import ComplEx
from .distmult import DistMult
from .dot import Dot
from .rotate import RotatE
from .transe import TransE
from .transh import TransH

__all__ = ["Scorer", "TransE", "DistMult", "ComplEx", "RotatE", "Dot", "TransH", "MODELS", "get_model",
           "model_names", "scorer_class", "glorot_limit", "Estimate", "check_shapes"]

logger = logging.getLogger(__name__)

MODELS: dict[str, type[Scorer]] = {m.name: m for m in (TransE, DistMult, ComplEx, RotatE, Dot, TransH)}


def model_names() -> tuple[str, ...]:
    """Every registered model name, in registry order."""
    return tuple(MODELS)


def scorer_class(name: str, *, from_checkpoint: bool = False) -> type[Scorer]:
    """The scorer class registered as ``name``; an unknown name is a :class:`UsageError`
    (:class:`CheckpointError` when the name was read from a checkpoint)."""
    cls = MODELS.get(name)
    if cls is None:
        err = CheckpointError if from_checkpoint else UsageError
        raise err(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return cls


def get_model(name: str, params: dict[str, Any] | None = None, *, from_checkpoint: bool = False) -> Scorer:
    """Instantiate the scorer ``name`` with ``params`` (unknown keys for that model are ignored with a debug log)."""
    cls = scorer_class(name, from_checkpoint=from_checkpoint)
    params = dict(params or {})
    kept = {k: v for k, v in params.items() if k in cls.param_names}
    for k in set(params) - set(kept):
        logger.debug("model %s ignores parameter %s", name, k)
    if not from_checkpoint:
        return cls(**kept)
    # A file's parameters are data: a list, a string or an out-of-range value is a bad checkpoint.
    bad = {k: v for k, v in kept.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        raise CheckpointError(f"model {name!r}: parameter(s) {bad} must be numbers")
    try:
        scorer = cls(**kept)
    except (UsageError, TypeError, ValueError, OverflowError) as err:
        raise CheckpointError(f"model {name!r}: bad parameters in the checkpoint ({err})") from None
    bad = {k: v for k, v in scorer.params.items() if not math.isfinite(v)}
    if bad:
        raise CheckpointError(f"model {name!r}: parameter(s) {bad} must be finite")
    return scorer


def check_shapes(model: str, params: dict[str, Any] | None, widths: dict[str, int], *, where: str = "") -> Scorer:
    """Check a checkpoint's model, parameters and table widths; return the scorer.

    The one check every loader calls (native at load; TF/Keras after picking their tables): ``widths`` maps
    our table names (``entity_embeddings``, ``relation_embeddings``, ``context_embeddings``) to their widths.

    Raises:
        CheckpointError: one line, prefixed with ``where`` (the file), naming the tables and widths.
    """
    prefix = f"{where}: " if where else ""
    try:
        if not isinstance(model, str):
            raise CheckpointError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        scorer = get_model(model, params, from_checkpoint=True)
        if "entity_embeddings" not in widths:
            raise CheckpointError("there is no entity_embeddings table")
        scorer.check_widths(widths["entity_embeddings"], widths.get("relation_embeddings"),
                            widths.get("context_embeddings"))
    except CheckpointError as err:
        raise CheckpointError(f"{prefix}{err}; the tables cannot be trained as model {model!r}"
                              if "width" in str(err) else f"{prefix}{err}") from None
    return scorer
