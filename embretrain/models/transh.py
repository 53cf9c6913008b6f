"""TransH (Wang et al. 2014): translate on a relation-specific hyperplane, ``gamma - ||h_perp + d_r - t_perp||_p``.

A relation row is ``[w_r | d_r]`` (width ``2 * dim``): ``w_r`` the hyperplane's normal (normalised when
scoring, so any non-zero row is valid), ``d_r`` the translation; ``x_perp = x - (w.x) w``. Entities that
differ only along ``w_r`` look the same to relation r, so r can be many-to-one or one-to-many while other
relations still tell those entities apart, which TransE (one point per entity for every relation) cannot.

Owns TransH's scoring, queries, widths, defaults and neighbour estimate. Must not import TensorFlow or
numpy at module import, nor see ids or variables. The paper's soft constraints (``|e| <= 1``, ``d_r``
orthogonal to ``w_r``) are not imposed: ``--regularization`` bounds the rows, and a ``d_r`` off the plane
only adds a constant ``|w.d|`` to every candidate's distance.
"""

from __future__ import annotations

from .base import DistanceScorer, lazy_tf, lp_distance, matmul, pairwise

__all__ = ["TransH"]

_EPS = 1e-12  # as tf.math.l2_normalize's default epsilon, so numpy estimates see the same normal as training


class TransH(DistanceScorer):
    """Entities ``[n, d]``; relations ``[n_r, 2d]`` as ``[normal | translation]``.

    Queries carry the hyperplane with them: ``tail_query(h, r) = [h_perp + d_r | w_r]`` and
    ``head_query(r, t) = [t_perp - d_r | w_r]`` (width ``2d``); :meth:`match` projects each candidate onto
    its query's plane, so shared (chunked) negatives and ranking against every entity need no relation.
    """

    name = "transh"
    defaults = {"loss": "logistic", "norm": 1, "lr": 0.01}  # gamma: DistanceScorer.scaled_defaults (0.06 x dim)
    preset = "transh"

    def relation_width(self, dim: int) -> int:
        return 2 * dim

    def relation_start(self, rng, n_new: int, width: int, n_total: int):
        """``[normal | translation]``, both on the entities' scale: the normal is normalised when scoring (any
        non-zero row will do), the translation starts like an entity row (expected distance at gamma)."""
        import numpy as np

        dim = width // 2
        return np.concatenate([self.entity_start(rng, n_new, dim, n_total) for _ in range(2)], axis=1)

    @staticmethod
    def estimate(h, r, t, side: str):
        """The row that scores its triple best and moves least from the neighbour: ``t - d_perp`` for a head,
        ``h + d_perp`` for a tail (``d_perp`` the translation projected on the plane; the part along the
        normal is free, so the neighbour's is kept)."""
        import numpy as np

        w, d = np.split(r, 2, axis=-1)
        w = w / np.sqrt(np.maximum(np.sum(w * w, axis=-1, keepdims=True), _EPS))
        d_perp = d - np.sum(d * w, axis=-1, keepdims=True) * w
        return t - d_perp if side == "head" else h + d_perp

    # --- scoring ----------------------------------------------------------------------------
    @staticmethod
    def _split(r):
        """``[..., 2d]`` -> (unit normal ``[..., d]``, translation ``[..., d]``)."""
        tf = lazy_tf()
        w, d = tf.split(r, 2, axis=-1)
        return tf.math.l2_normalize(w, axis=-1, epsilon=_EPS), d

    @staticmethod
    def _project(x, w):
        return x - lazy_tf().reduce_sum(x * w, axis=-1, keepdims=True) * w

    def score(self, h, r, t):
        w, d = self._split(r)
        diff = self._project(h, w) + d - self._project(t, w)
        return self.params["gamma"] - lp_distance(diff, self.params["norm"])

    def tail_query(self, h, r):
        w, d = self._split(r)
        # ||h_perp + d - e_perp|| = ||q - e_perp||
        return lazy_tf().concat([self._project(h, w) + d, w], axis=-1)

    def head_query(self, r, t):
        w, d = self._split(r)
        # ||e_perp + d - t_perp|| = ||e_perp - q||
        return lazy_tf().concat([self._project(t, w) - d, w], axis=-1)

    def match(self, q, entities):
        tf = lazy_tf()
        p, w = tf.split(q, 2, axis=-1)  # [..., C, d] each
        s = matmul(w, entities)  # [..., C, N]: w_c . e_n
        if self.params["norm"] == 1:
            # p_c - e_n_perp = p_c - e_n + (w_c . e_n) w_c
            diff = pairwise(p, entities) + s[..., None] * w[..., :, None, :]
            return self.params["gamma"] - lp_distance(diff, self.params["norm"])
        # ||p - e + s w||^2 = |p|^2 + |e|^2 - 2 p.e + s^2 |w|^2 + 2 s (p.w) - 2 s^2: matrix products only
        pw = tf.reduce_sum(p * w, -1)[..., :, None]
        ww = tf.reduce_sum(w * w, -1)[..., :, None]
        sq = (
            tf.reduce_sum(p * p, -1)[..., :, None]
            + tf.reduce_sum(entities * entities, -1)[..., None, :]
            - 2.0 * matmul(p, entities)
            + s * s * (ww - 2.0)
            + 2.0 * s * pw
        )
        return self.params["gamma"] - tf.sqrt(tf.maximum(sq, 0.0) + 1e-12)
