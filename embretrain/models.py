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

from .errors import CheckpointError, UsageError

__all__ = ["Scorer", "TransE", "DistMult", "ComplEx", "RotatE", "Dot", "MODELS", "get_model"]

logger = logging.getLogger(__name__)


def _tf():
    import tensorflow as tf  # lazy: keep `embretrain --help` instant

    return tf


class Scorer:
    """Base class. Subclasses set ``name``, ``kind`` and implement :meth:`score`."""

    name = ""
    kind = "triple"  # "triple": (head, relation, tail) data; "pair": (a, b[, weight]) data
    param_names: tuple[str, ...] = ()

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise UsageError(f"model {self.name!r} takes no parameter(s) {sorted(unknown)}")
        self.params = {k: params[k] for k in self.param_names if k in params}

    # --- shapes -----------------------------------------------------------------------------
    def check_dim(self, dim: int) -> None:
        if dim < 1:
            raise UsageError(f"--dim must be positive, got {dim}")

    def relation_width(self, dim: int) -> int | None:
        """Width of ``relation_embeddings`` for entity width ``dim`` (None: no relation table)."""
        return dim

    # --- scoring ----------------------------------------------------------------------------
    def score(self, h, r, t):
        """Scores of broadcastable ``h [..., d]``, ``r [..., d_r]``, ``t [..., d]`` -> ``[...]``."""
        raise NotImplementedError

    def score_tails(self, h, r, entities):
        """``h [B, d]``, ``r [B, d_r]``, ``entities [N, d]`` -> ``[B, N]`` scores of every entity as tail."""
        return self.score(h[:, None, :], None if r is None else r[:, None, :], entities[None, :, :])

    def score_heads(self, r, t, entities):
        """``r [B, d_r]``, ``t [B, d]``, ``entities [N, d]`` -> ``[B, N]`` scores of every entity as head."""
        return self.score(entities[None, :, :], None if r is None else r[:, None, :], t[:, None, :])

    # Broadcasting scorers build a [B, N, d] intermediate in score_tails; evaluation sizes its
    # query batches with this flag so that tensor stays small.
    matmul_ranking = False


class TransE(Scorer):
    """TransE (Bordes et al. 2013): ``gamma - ||h + r - t||_p`` with p = ``norm`` (1 or 2)."""

    name = "transe"
    param_names = ("norm", "gamma")

    def __init__(self, norm: int = 1, gamma: float = 12.0):
        if int(norm) not in (1, 2):
            raise UsageError(f"transe: norm must be 1 or 2, got {norm}")
        super().__init__(norm=int(norm), gamma=float(gamma))
        self.matmul_ranking = self.params["norm"] == 2

    def score(self, h, r, t):
        tf = _tf()
        diff = h + r - t
        if self.params["norm"] == 1:
            dist = tf.reduce_sum(tf.abs(diff), axis=-1)
        else:
            dist = tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1) + 1e-12)
        return self.params["gamma"] - dist

    def _l2_all(self, q, entities):
        # ||q - e||^2 = |q|^2 + |e|^2 - 2 q.e: one matrix product instead of a [B, N, d] tensor.
        tf = _tf()
        sq = (
            tf.reduce_sum(q * q, -1, keepdims=True)
            + tf.reduce_sum(entities * entities, -1)[None, :]
            - 2.0 * tf.matmul(q, entities, transpose_b=True)
        )
        return self.params["gamma"] - tf.sqrt(tf.maximum(sq, 0.0) + 1e-12)

    def score_tails(self, h, r, entities):
        if self.params["norm"] == 2:
            return self._l2_all(h + r, entities)
        return super().score_tails(h, r, entities)

    def score_heads(self, r, t, entities):
        if self.params["norm"] == 2:
            return self._l2_all(t - r, entities)
        return super().score_heads(r, t, entities)


class DistMult(Scorer):
    """DistMult (Yang et al. 2015): ``<h, r, t>``."""

    name = "distmult"
    matmul_ranking = True

    def score(self, h, r, t):
        return _tf().reduce_sum(h * r * t, axis=-1)

    def score_tails(self, h, r, entities):
        return _tf().matmul(h * r, entities, transpose_b=True)

    def score_heads(self, r, t, entities):
        return _tf().matmul(r * t, entities, transpose_b=True)


def _halves(x):
    tf = _tf()
    re, im = tf.split(x, 2, axis=-1)
    return re, im


class _Complex(Scorer):
    def check_dim(self, dim: int) -> None:
        super().check_dim(dim)
        if dim % 2:
            raise UsageError(f"{self.name}: --dim must be even (real and imaginary halves), got {dim}")


class ComplEx(_Complex):
    """ComplEx (Trouillon et al. 2016): ``Re(<h, r, conj(t)>)``; entities and relations are ``[re | im]``."""

    name = "complex"
    matmul_ranking = True

    def score(self, h, r, t):
        tf = _tf()
        (hr, hi), (rr, ri), (tr, ti) = _halves(h), _halves(r), _halves(t)
        return tf.reduce_sum((hr * rr - hi * ri) * tr + (hr * ri + hi * rr) * ti, axis=-1)

    def score_tails(self, h, r, entities):
        tf = _tf()
        (hr, hi), (rr, ri) = _halves(h), _halves(r)
        q = tf.concat([hr * rr - hi * ri, hr * ri + hi * rr], axis=-1)  # h*r as [re | im]
        return tf.matmul(q, entities, transpose_b=True)

    def score_heads(self, r, t, entities):
        tf = _tf()
        (rr, ri), (tr, ti) = _halves(r), _halves(t)
        # Re(h * a) with a = r * conj(t): h_re*a_re - h_im*a_im
        q = tf.concat([rr * tr + ri * ti, -(ri * tr - rr * ti)], axis=-1)
        return tf.matmul(q, entities, transpose_b=True)


class RotatE(_Complex):
    """RotatE (Sun et al. 2019): ``gamma - sum_k |h_k * e^{i r_k} - t_k|``; relations are phases (radians)."""

    name = "rotate"
    param_names = ("gamma",)

    def __init__(self, gamma: float = 12.0):
        super().__init__(gamma=float(gamma))

    def relation_width(self, dim: int) -> int:
        return dim // 2

    def score(self, h, r, t):
        tf = _tf()
        (hr, hi), (tr, ti) = _halves(h), _halves(t)
        cos, sin = tf.cos(r), tf.sin(r)
        re = hr * cos - hi * sin - tr
        im = hr * sin + hi * cos - ti
        return self.params["gamma"] - tf.reduce_sum(tf.sqrt(re * re + im * im + 1e-12), axis=-1)

    def score_heads(self, r, t, entities):
        # |h * e^{ir} - t| = |h - t * e^{-ir}|: rotate the tail back, then compare with every entity.
        tf = _tf()
        (tr, ti) = _halves(t)
        cos, sin = tf.cos(r), tf.sin(r)
        q = tf.concat([tr * cos + ti * sin, ti * cos - tr * sin], axis=-1)
        zero = tf.zeros_like(r)
        return self.score(entities[None, :, :], zero[:, None, :], q[:, None, :])


class Dot(Scorer):
    """Pair model (skip-gram style): ``<a, c_b>`` with a context table, or ``<a, b>`` with one shared table."""

    name = "dot"
    kind = "pair"
    matmul_ranking = True

    def relation_width(self, dim: int) -> None:
        return None

    def score(self, h, r, t):
        return _tf().reduce_sum(h * t, axis=-1)

    def score_tails(self, h, r, entities):
        return _tf().matmul(h, entities, transpose_b=True)

    def score_heads(self, r, t, entities):
        return _tf().matmul(t, entities, transpose_b=True)


MODELS: dict[str, type[Scorer]] = {m.name: m for m in (TransE, DistMult, ComplEx, RotatE, Dot)}


def get_model(name: str, params: dict[str, Any] | None = None, *, from_checkpoint: bool = False) -> Scorer:
    """Instantiate the scorer ``name`` with ``params`` (unknown keys for that model are ignored with a debug log)."""
    cls = MODELS.get(name)
    if cls is None:
        err = CheckpointError if from_checkpoint else UsageError
        raise err(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    params = dict(params or {})
    kept = {k: v for k, v in params.items() if k in cls.param_names}
    for k in set(params) - set(kept):
        logger.debug("model %s ignores parameter %s", name, k)
    return cls(**kept)


def glorot_limit(n_rows: int, width: int) -> float:
    """Glorot/Xavier uniform bound for a ``[n_rows, width]`` table."""
    return math.sqrt(6.0 / (n_rows + width))
