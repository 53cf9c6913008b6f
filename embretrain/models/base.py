"""The scorer interface every model file implements, and the helpers they share.

Owns :class:`Scorer` (what a model must provide: scores, queries, widths, defaults, parameter names and its
neighbour estimate) and small shape helpers. Must not name any particular model (each lives in its own file,
registered in ``embretrain/models/__init__.py``), see ids or variables (lookup, freezing and sparsity live in
``tables.py``), or import TensorFlow or numpy at module import (``embretrain --help`` reads the registry).

``score(h, r, t)`` takes float32 tensors whose leading dimensions broadcast against each other,
e.g. ``h [B, 1, d]``, ``r [B, 1, d_r]``, ``t [B, K, d]`` -> scores ``[B, K]``. Higher is better.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, ClassVar, Mapping

from ..errors import CheckpointError, UsageError
from ..quiet_tf import import_tensorflow

__all__ = ["Scorer", "DistanceScorer", "BilinearScorer", "Estimate", "GAMMA_PER_DIM", "BILINEAR_DEFAULTS",
           "glorot_limit", "lazy_tf", "lp_distance", "start_bound", "uniform_rows", "tf_halves",
           "np_halves", "matmul", "pairwise"]

logger = logging.getLogger(__name__)

# The names tables have in a checkpoint (checkpoint/base.py holds the same three; not imported from there so that
# reading the registry never imports the checkpoint package).
_ENTITY, _RELATION, _CONTEXT = "entity_embeddings", "relation_embeddings", "context_embeddings"

# (h [m, d], r [m, d_r], t [m, d], side "head" | "tail") -> float64 [m, d]: numpy estimates of the ``side``
# entity of each triple from the other side (the row that scores the triple best, or its direction).
Estimate = Callable[[Any, Any, Any, str], Any]


def lazy_tf():
    """The tensorflow module, imported on first use (keeps `embretrain --help` and `inspect` instant)."""
    tf = import_tensorflow()

    return tf


class Scorer:
    """Base class of every model.

    A model file declares, beside its scoring code (checked by tests/test_model_registry.py):

    - ``name`` (the registry key and the checkpoint's ``model`` attribute) and ``kind`` ("triple" or "pair");
    - ``param_names``: the scoring parameters the checkpoint stores (Settings fields of the same name);
    - ``defaults``: the settings a run of this model starts from (below presets, files and the command line);
    - ``preset``: the name of its shipped preset (``embretrain/presets/<name>.toml``, whose extend keys are the
      recipe a plain ``extend`` follows), or None to say it has none;
    - ``estimate``: a numpy :data:`Estimate` for ``--init neighbors``, or None when there is no closed form;
      ``estimate_is_direction`` marks score-grows-with-norm (bilinear) models whose estimates are directions;
    - its shape contract: :meth:`relation_width` and ``complex_valued`` (even widths), checked by
      :meth:`check_dim` (a new run) and :meth:`check_widths` (tables read from a file).

    A score with one entity left open is a *query* matched against candidate rows:
    ``score(h, r, e) == match(tail_query(h, r), e)`` and ``score(e, r, t) == match(head_query(r, t), e)``.
    Ranking against every entity and training against shared negatives are the same call; for the bilinear
    models (and TransE with the L2 norm) ``match`` is one matrix product.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "triple"  # "triple": (head, relation, tail) data; "pair": (a, b[, weight]) data
    param_names: ClassVar[tuple[str, ...]]
    defaults: ClassVar[Mapping[str, Any]]
    preset: ClassVar[str | None]
    estimate: ClassVar[Estimate | None]
    estimate_is_direction: ClassVar[bool] = False
    complex_valued: ClassVar[bool] = False  # entity rows are [re | im]: widths must be even
    # ``match`` is a matrix product (no [C, N, d] intermediate); evaluation sizes its query batches by it.
    matmul_ranking = False
    # (rng, n_new, width, n_total) -> float32 [n_new, width]: the start of new entity (and context) rows and of
    # new relation rows; None: Glorot over the merged table [n_total, width] (tables.glorot_rows)
    entity_start = None
    relation_start = None

    @classmethod
    def scaled_defaults(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other settings (e.g. a margin that grows with ``dim``), from the merged
        ``settings``; applied at the level of :attr:`defaults` (a preset or the command line overrides them)."""
        return {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise UsageError(f"model {self.name!r} takes no parameter(s) {sorted(unknown)}")
        self.params = {k: params[k] for k in self.param_names if k in params}

    # --- shapes -----------------------------------------------------------------------------
    def relation_width(self, dim: int) -> int | None:
        """Width of ``relation_embeddings`` for entity width ``dim`` (None: no relation table)."""
        raise NotImplementedError

    def check_dim(self, dim: int) -> None:
        """A new run's entity width ``dim``: :class:`UsageError` if this model cannot use it."""
        if dim < 1:
            raise UsageError(f"dim must be positive, got {dim}")
        if self.complex_valued and dim % 2:
            raise UsageError(f"{self.name}: dim must be even (real and imaginary halves), got {dim}")

    def check_widths(self, entity_width: int, relation_width: int | None, context_width: int | None = None) -> None:
        """Tables read from a file fit this model: :class:`CheckpointError` naming the table and widths if not.

        ``relation_width`` / ``context_width`` are None when the file has no such table.
        """
        if entity_width < 1:
            raise CheckpointError(f"{self.name}: {_ENTITY} has width {entity_width}; it needs at least one column")
        if self.complex_valued and entity_width % 2:
            raise CheckpointError(f"{self.name}: {_ENTITY} has odd width {entity_width}; "
                                  "it needs real and imaginary halves")
        want = self.relation_width(entity_width)
        if want is None and relation_width is not None:
            raise CheckpointError(f"{self.name}: unexpected {_RELATION} (width {relation_width}); "
                                  f"a {self.kind} model has no relation table")
        if want is not None and relation_width != want:
            got = "is missing" if relation_width is None else f"has width {relation_width}"
            raise CheckpointError(f"{self.name}: {_RELATION} {got}; {_ENTITY} of width {entity_width} "
                                  f"needs width {want}")
        if context_width is not None:
            if self.kind != "pair":
                raise CheckpointError(f"{self.name}: unexpected {_CONTEXT} (width {context_width}); "
                                      "only a pair model has a context table")
            if context_width != entity_width:
                raise CheckpointError(f"{self.name}: {_CONTEXT} has width {context_width}; "
                                      f"{_ENTITY} has width {entity_width}; they must match")

    # --- scoring ----------------------------------------------------------------------------
    def score(self, h, r, t):
        """Scores of broadcastable ``h [..., d]``, ``r [..., d_r]``, ``t [..., d]`` -> ``[...]``."""
        raise NotImplementedError

    def tail_query(self, h, r):
        """``h [..., d]``, ``r [..., d_r]`` -> query ``[..., d_q]`` scoring any entity as the tail."""
        raise NotImplementedError

    def head_query(self, r, t):
        """``r [..., d_r]``, ``t [..., d]`` -> query ``[..., d_q]`` scoring any entity as the head.

        Same width ``d_q`` as :meth:`tail_query` (the training step picks one or the other per example).
        """
        raise NotImplementedError

    def match(self, q, entities):
        """Queries ``q [..., C, d_q]`` against candidates ``entities [..., N, d]`` -> scores ``[..., C, N]``.

        Leading dimensions are batch dimensions (equal in both, or absent in both).
        """
        raise NotImplementedError

    def score_tails(self, h, r, entities):
        """``h [B, d]``, ``r [B, d_r]``, ``entities [N, d]`` -> ``[B, N]`` scores of every entity as tail."""
        return self.match(self.tail_query(h, r), entities)

    def score_heads(self, r, t, entities):
        """``r [B, d_r]``, ``t [B, d]``, ``entities [N, d]`` -> ``[B, N]`` scores of every entity as head."""
        return self.match(self.head_query(r, t), entities)


# Distance models' default gamma, per float column of the entity rows: 12 at the presets' dim 200. The margin is a
# sum over columns, so a fixed gamma is a different model at every width: at dim 16, gamma 12 leaves rows started
# at the distance scale still saturated after a default run (Adam moves each column ~lr per step), at dim 1000 it is
# tiny. Scaling gamma with dim keeps the start's per-column bound (~0.075) and the steps' relative size the same at
# any dim (tests/test_defaults_learn.py).
GAMMA_PER_DIM = 0.06
_MEAN_ABS_NORMAL = math.sqrt(2.0 / math.pi)  # E|x| / std of a centred normal


def start_bound(gamma: float, mean_distance_per_bound: float) -> float:
    """Uniform bound ``a`` of start rows whose expected distance ``mean_distance_per_bound * a`` is ``gamma``.

    Scores then start near 0, where the logistic loss moves positives and negatives alike. Rows far below the
    margin (Glorot rows against gamma 12) score ~gamma, the loss saturates and a short run stays at random level;
    the RotatE paper's ``embedding_range = (gamma + 2) / hidden_dim`` is the same idea.
    """
    return float(gamma) / mean_distance_per_bound


def uniform_rows(rng, n_new: int, width: int, bound: float):
    """float32 ``[n_new, width]`` uniform in ``[-bound, bound]``."""
    import numpy as np

    return rng.uniform(-bound, bound, size=(n_new, width)).astype(np.float32)


class DistanceScorer(Scorer):
    """A model whose score is ``gamma - ||...||_p`` with p = ``norm`` (1 or 2): TransE, TransH.

    With the L2 norm its ``match`` should be matrix products (``|q|^2 + |e|^2 - 2 q.e``), hence ``matmul_ranking``.

    Defaults and start are chosen together: ``gamma`` defaults to ``GAMMA_PER_DIM * dim`` (L1; for L2 the L2
    length of the same rows), and new entity and relation rows start uniform with the bound that puts the
    expected ``||h + r - t||_p`` at ``gamma`` (so a start depends on the checkpoint's gamma and width only: an
    extend starts new rows on the scale the base was trained at, never on the merged table's row count).
    """

    param_names = ("norm", "gamma")

    @staticmethod
    def _distance_per_bound(norm: int, dim: int) -> float:
        """Expected ``||h + r - t||_p`` for rows uniform in ``[-1, 1]`` (a sum of three such has std 1)."""
        return _MEAN_ABS_NORMAL * dim if int(norm) == 1 else math.sqrt(dim)

    @classmethod
    def scaled_defaults(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        dim, norm = int(settings["dim"]), int(settings["norm"])
        bound = GAMMA_PER_DIM / _MEAN_ABS_NORMAL  # the L1 default's start bound, for either norm
        return {"gamma": round(bound * cls._distance_per_bound(norm, dim), 4)}

    def entity_start(self, rng, n_new: int, width: int, n_total: int):
        """Uniform rows whose expected distance is gamma (see :func:`start_bound`)."""
        p = self.params
        return uniform_rows(rng, n_new, width, start_bound(p["gamma"], self._distance_per_bound(p["norm"], width)))

    def __init__(self, norm: int = 1, gamma: float = 12.0):
        super().__init__(norm=checked_norm(self.name, norm), gamma=float(gamma))
        self.matmul_ranking = self.params["norm"] == 2


# The bilinear models' default ``negative_chunk`` (positives sharing one draw of negatives; the dataclass default,
# 64, is the distance models'). A shared negative's gradient is the sum of its chunk's queries, and Adam moves a row
# about lr per touch whatever that sum's size, so with chunks of 64 a bilinear model's negatives move in few, large,
# correlated steps and it learns less per epoch. Measured (3 epochs, logistic loss, 32 negatives, dim 200, test MRR
# of chunks of 64 -> 8): FB15k-237 DistMult 0.177/0.182/0.181 -> 0.198/0.193/0.189 (seeds 0-2), ComplEx 0.169 -> 0.184;
# WN18RR DistMult 0.298/0.298/0.295 -> 0.379/0.332/0.353, ComplEx 0.309 -> 0.393. With the optimizer below,
# independent negatives (1) gain nothing more (seed 0: FB15k-237 0.1945 against 0.1940, WN18RR 0.408 against 0.410) at
# 3-4x the step time (docs/throughput/bilinear-chunks/README.md). TransE does better with 64.
BILINEAR_NEGATIVE_CHUNK = 8
# ... and their default optimizer: Adam without momentum (optim.LazyRMSprop says why). Same figures, chunks of 8,
# rmsprop against adam: FB15k-237 DistMult 0.194/0.191/0.191 against 0.198/0.193/0.189, ComplEx 0.184 against 0.184;
# WN18RR DistMult 0.410/0.407/0.411 against 0.379/0.332/0.353 (PyKEEN's dense Adam: 0.409), ComplEx 0.414 against 0.393.
BILINEAR_OPTIMIZER = "rmsprop"
# The settings a DistMult or ComplEx run starts from (each model file declares ``defaults = BILINEAR_DEFAULTS``).
BILINEAR_DEFAULTS = {"loss": "logistic", "lr": 0.01, "regularization": 1e-6, "negative_chunk": BILINEAR_NEGATIVE_CHUNK,
                     "optimizer": BILINEAR_OPTIMIZER}


class BilinearScorer(Scorer):
    """A model whose score is linear in each entity (``<q, e>`` for a query ``q``): DistMult, ComplEx.

    ``match`` is one matrix product, relations are as wide as entities, and a neighbour estimate is the
    direction that maximises the score (``estimate_is_direction``: init.py scales and calibrates it). Their
    defaults share negatives by chunks of :data:`BILINEAR_NEGATIVE_CHUNK` and train with :data:`BILINEAR_OPTIMIZER`.
    """

    param_names = ()
    matmul_ranking = True
    estimate_is_direction = True

    def relation_width(self, dim: int) -> int:
        return dim

    def match(self, q, entities):
        return matmul(q, entities)


# --- helpers the model files share --------------------------------------------------------------
def matmul(q, entities):
    """``q [..., C, d]`` . ``entities [..., N, d]`` -> ``[..., C, N]``."""
    return lazy_tf().matmul(q, entities, transpose_b=True)


def pairwise(q, entities):
    """``q [..., C, d]``, ``entities [..., N, d]`` -> ``q_c - e_n`` as ``[..., C, N, d]`` (broadcast)."""
    return q[..., :, None, :] - entities[..., None, :, :]


def checked_norm(model: str, norm) -> int:
    """A distance model's ``norm`` (1 or 2) as an int; anything else is a :class:`UsageError` naming the model."""
    if int(norm) not in (1, 2):
        raise UsageError(f"{model}: norm must be 1 or 2, got {norm}")
    return int(norm)


def l2_distances(q, entities):
    """``||q_c - e_n||_2`` as ``[..., C, N]`` from ``|q|^2 + |e|^2 - 2 q.e``: one matrix product instead of a
    ``[..., C, N, d]`` difference tensor (kept differentiable at 0 like :func:`lp_distance`)."""
    tf = lazy_tf()
    sq = (
        tf.reduce_sum(q * q, -1)[..., :, None]
        + tf.reduce_sum(entities * entities, -1)[..., None, :]
        - 2.0 * matmul(q, entities)
    )
    return tf.sqrt(tf.maximum(sq, 0.0) + 1e-12)


def lp_distance(diff, norm: int):
    """``||diff||_p`` over the last axis for p = ``norm`` (1 or 2; L2 kept differentiable at 0)."""
    tf = lazy_tf()
    if norm == 1:
        return tf.reduce_sum(tf.abs(diff), axis=-1)
    return tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1) + 1e-12)


def tf_halves(x):
    """A ``[re | im]`` tensor -> ``(re, im)``."""
    re, im = lazy_tf().split(x, 2, axis=-1)
    return re, im


def np_halves(x):
    """A ``[re | im]`` numpy array -> ``(re, im)`` (views)."""
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


def glorot_limit(n_rows: int, width: int) -> float:
    """Glorot/Xavier uniform bound for a ``[n_rows, width]`` table."""
    return math.sqrt(6.0 / (n_rows + width))
