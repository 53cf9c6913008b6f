"""Scorers: vectors in, scores out.

A scorer never sees ids or variables (lookup, freezing and sparsity live in ``tables.py``).
``score(h, r, t)`` takes float32 tensors whose leading dimensions broadcast against each other,
e.g. ``h [B, 1, d]``, ``r [B, 1, d_r]``, ``t [B, K, d]`` -> scores ``[B, K]``. Higher is better.

Complex-valued models (ComplEx, RotatE) store an entity as ``[re | im]`` side by side, so their
entity width ``dim`` must be even. Adding a model = one small class + one ``MODELS`` entry.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from .errors import CheckpointError, UsageError

__all__ = ["Scorer", "TransE", "DistMult", "ComplEx", "RotatE", "Dot", "MODELS", "get_model", "check_shapes"]

logger = logging.getLogger(__name__)


def _tf():
    import tensorflow as tf  # lazy: keep `embretrain --help` instant

    return tf


class Scorer:
    """Base class. Subclasses set ``name``, ``kind`` and implement :meth:`score`, :meth:`tail_query`,
    :meth:`head_query` and :meth:`match`.

    A score with one entity left open is a *query* matched against candidate rows:
    ``score(h, r, e) == match(tail_query(h, r), e)`` and ``score(e, r, t) == match(head_query(r, t), e)``.
    Ranking against every entity and training against shared negatives are the same call; for the bilinear
    models (and TransE with the L2 norm) ``match`` is one matrix product.
    """

    name = ""
    kind = "triple"  # "triple": (head, relation, tail) data; "pair": (a, b[, weight]) data
    param_names: tuple[str, ...] = ()
    # ``match`` is a matrix product (no [C, N, d] intermediate); evaluation sizes its query batches by it.
    matmul_ranking = False

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise UsageError(f"model {self.name!r} takes no parameter(s) {sorted(unknown)}")
        self.params = {k: params[k] for k in self.param_names if k in params}

    # --- shapes -----------------------------------------------------------------------------
    def check_dim(self, dim: int) -> None:
        if dim < 1:
            raise UsageError(f"--dim must be positive, got {dim}")

    def check_tables(self, widths: dict[str, int]) -> str | None:
        """The shape contract of a checkpoint's tables: ``widths`` maps table name -> width (columns).

        Returns None if the tables fit this scorer, else one sentence naming the tables and widths.
        Checked at load so a file that would train into a TensorFlow shape error is refused first.
        """
        dim = widths.get("entity_embeddings")
        if dim is None:
            return "there is no entity_embeddings table"
        try:
            self.check_dim(dim)
        except UsageError:
            return f"entity_embeddings is {dim} wide; {self._dim_rule()}"
        rel = widths.get("relation_embeddings")
        want = self.relation_width(dim)
        if want is None and rel is not None:
            return f"model {self.name!r} has no relations, but the file has relation_embeddings ({rel} wide)"
        if want is not None and rel is None:
            return f"model {self.name!r} needs a relation_embeddings table (width {want}); the file has none"
        if want is not None and rel != want:
            return (f"relation_embeddings is {rel} wide but entity_embeddings is {dim} wide; "
                    f"model {self.name!r} needs relation width {self._relation_rule()} = {want}")
        ctx = widths.get("context_embeddings")
        if ctx is not None and ctx != dim:
            return f"context_embeddings is {ctx} wide but entity_embeddings is {dim} wide; they must be equal"
        return None

    def _dim_rule(self) -> str:
        return "it must be at least 1"

    def _relation_rule(self) -> str:
        return "== entity width"

    relation_start = None  # (rng, n_new, width, n_total) -> float32 [n_new, width] start of new relation rows; None: Glorot

    def relation_width(self, dim: int) -> int | None:
        """Width of ``relation_embeddings`` for entity width ``dim`` (None: no relation table)."""
        return dim

    # --- scoring ----------------------------------------------------------------------------
    def score(self, h, r, t):
        """Scores of broadcastable ``h [..., d]``, ``r [..., d_r]``, ``t [..., d]`` -> ``[...]``."""
        raise NotImplementedError

    def tail_query(self, h, r):
        """``h [..., d]``, ``r [..., d_r]`` -> query ``[..., d_q]`` scoring any entity as the tail."""
        raise NotImplementedError

    def head_query(self, r, t):
        """``r [..., d_r]``, ``t [..., d]`` -> query ``[..., d_q]`` scoring any entity as the head."""
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


def _matmul(q, entities):
    return _tf().matmul(q, entities, transpose_b=True)


def _pairwise(q, entities):
    """``q [..., C, d]``, ``entities [..., N, d]`` -> ``q_c - e_n`` as ``[..., C, N, d]`` (broadcast)."""
    return q[..., :, None, :] - entities[..., None, :, :]


class TransE(Scorer):
    """TransE (Bordes et al. 2013): ``gamma - ||h + r - t||_p`` with p = ``norm`` (1 or 2)."""

    name = "transe"
    param_names = ("norm", "gamma")

    def __init__(self, norm: int = 1, gamma: float = 12.0):
        if int(norm) not in (1, 2):
            raise UsageError(f"transe: norm must be 1 or 2, got {norm}")
        super().__init__(norm=int(norm), gamma=float(gamma))
        self.matmul_ranking = self.params["norm"] == 2

    def _distance(self, diff):
        tf = _tf()
        if self.params["norm"] == 1:
            return tf.reduce_sum(tf.abs(diff), axis=-1)
        return tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1) + 1e-12)

    def score(self, h, r, t):
        return self.params["gamma"] - self._distance(h + r - t)

    def tail_query(self, h, r):
        return h + r  # ||h + r - e|| = ||q - e||

    def head_query(self, r, t):
        return t - r  # ||e + r - t|| = ||e - q||

    def match(self, q, entities):
        tf = _tf()
        if self.params["norm"] == 1:
            return self.params["gamma"] - self._distance(_pairwise(q, entities))
        # ||q - e||^2 = |q|^2 + |e|^2 - 2 q.e: one matrix product instead of a [C, N, d] tensor.
        sq = (
            tf.reduce_sum(q * q, -1)[..., :, None]
            + tf.reduce_sum(entities * entities, -1)[..., None, :]
            - 2.0 * _matmul(q, entities)
        )
        return self.params["gamma"] - tf.sqrt(tf.maximum(sq, 0.0) + 1e-12)


class DistMult(Scorer):
    """DistMult (Yang et al. 2015): ``<h, r, t>``."""

    name = "distmult"
    matmul_ranking = True

    def score(self, h, r, t):
        return _tf().reduce_sum(h * r * t, axis=-1)

    def tail_query(self, h, r):
        return h * r

    def head_query(self, r, t):
        return r * t

    def match(self, q, entities):
        return _matmul(q, entities)


def _halves(x):
    tf = _tf()
    re, im = tf.split(x, 2, axis=-1)
    return re, im


class _Complex(Scorer):
    def check_dim(self, dim: int) -> None:
        super().check_dim(dim)
        if dim % 2:
            raise UsageError(f"{self.name}: --dim must be even (real and imaginary halves), got {dim}")

    def _dim_rule(self) -> str:
        return f"model {self.name!r} needs an even width (real and imaginary halves)"


class ComplEx(_Complex):
    """ComplEx (Trouillon et al. 2016): ``Re(<h, r, conj(t)>)``; entities and relations are ``[re | im]``."""

    name = "complex"
    matmul_ranking = True

    def score(self, h, r, t):
        tf = _tf()
        (hr, hi), (rr, ri), (tr, ti) = _halves(h), _halves(r), _halves(t)
        return tf.reduce_sum((hr * rr - hi * ri) * tr + (hr * ri + hi * rr) * ti, axis=-1)

    def tail_query(self, h, r):
        (hr, hi), (rr, ri) = _halves(h), _halves(r)
        return _tf().concat([hr * rr - hi * ri, hr * ri + hi * rr], axis=-1)  # h*r as [re | im]

    def head_query(self, r, t):
        # Re(e * a) with a = r * conj(t): e_re*a_re - e_im*a_im
        (rr, ri), (tr, ti) = _halves(r), _halves(t)
        return _tf().concat([rr * tr + ri * ti, -(ri * tr - rr * ti)], axis=-1)

    def match(self, q, entities):
        return _matmul(q, entities)


class RotatE(_Complex):
    """RotatE (Sun et al. 2019): ``gamma - sum_k |h_k * e^{i r_k} - t_k|``; relations are phases (radians)."""

    name = "rotate"
    param_names = ("gamma",)

    def __init__(self, gamma: float = 12.0):
        super().__init__(gamma=float(gamma))

    def relation_width(self, dim: int) -> int:
        return dim // 2

    def _relation_rule(self) -> str:
        return "entity width / 2 (one phase per complex coordinate)"

    @staticmethod
    def relation_start(rng, n_new: int, width: int, n_total: int):
        """New relation phases uniform over [-pi, pi] (the RotatE paper's start).

        Glorot phases are a few tenths of a radian: every relation starts as nearly the identity rotation,
        and on WN18RR the trained model kept short rotations, so the query entity itself outscored the
        answer in almost every test triple.
        """
        return rng.uniform(-math.pi, math.pi, size=(n_new, width)).astype(np.float32)

    def _distance(self, re, im):
        return self.params["gamma"] - _tf().reduce_sum(_tf().sqrt(re * re + im * im + 1e-12), axis=-1)

    def score(self, h, r, t):
        tf = _tf()
        (hr, hi), (tr, ti) = _halves(h), _halves(t)
        cos, sin = tf.cos(r), tf.sin(r)
        return self._distance(hr * cos - hi * sin - tr, hr * sin + hi * cos - ti)

    def tail_query(self, h, r):
        tf = _tf()
        (hr, hi) = _halves(h)
        cos, sin = tf.cos(r), tf.sin(r)
        return tf.concat([hr * cos - hi * sin, hr * sin + hi * cos], axis=-1)  # h * e^{ir}

    def head_query(self, r, t):
        # |e * e^{ir} - t| = |e - t * e^{-ir}|: rotate the tail back.
        tf = _tf()
        (tr, ti) = _halves(t)
        cos, sin = tf.cos(r), tf.sin(r)
        return tf.concat([tr * cos + ti * sin, ti * cos - tr * sin], axis=-1)

    def match(self, q, entities):
        (qr, qi), (er, ei) = _halves(q), _halves(entities)
        return self._distance(_pairwise(qr, er), _pairwise(qi, ei))


class Dot(Scorer):
    """Pair model (skip-gram style): ``<a, c_b>`` with a context table, or ``<a, b>`` with one shared table."""

    name = "dot"
    kind = "pair"
    matmul_ranking = True

    def relation_width(self, dim: int) -> None:
        return None

    def score(self, h, r, t):
        return _tf().reduce_sum(h * t, axis=-1)

    def tail_query(self, h, r):
        return h

    def head_query(self, r, t):
        return t

    def match(self, q, entities):
        return _matmul(q, entities)


MODELS: dict[str, type[Scorer]] = {m.name: m for m in (TransE, DistMult, ComplEx, RotatE, Dot)}


def get_model(name: str, params: dict[str, Any] | None = None, *, from_checkpoint: bool = False) -> Scorer:
    """Instantiate the scorer ``name`` with ``params`` (unknown keys for that model are ignored with a debug log)."""
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        err = CheckpointError if from_checkpoint else UsageError
        raise err(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
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

    The one check every loader calls (native at load; TF/Keras after picking their tables):
    ``widths`` maps our table names (``entity_embeddings``, ``relation_embeddings``,
    ``context_embeddings``) to their widths. Imports no TensorFlow.

    Raises:
        CheckpointError: one line, prefixed with ``where`` (the file), naming the tables and widths.
    """
    prefix = f"{where}: " if where else ""
    try:
        scorer = get_model(model, params, from_checkpoint=True)
    except CheckpointError as err:
        raise CheckpointError(f"{prefix}{err}") from None
    problem = scorer.check_tables(widths)
    if problem:
        raise CheckpointError(f"{prefix}{problem}; the tables cannot be trained as model {model!r}")
    return scorer


def glorot_limit(n_rows: int, width: int) -> float:
    """Glorot/Xavier uniform bound for a ``[n_rows, width]`` table."""
    return math.sqrt(6.0 / (n_rows + width))
