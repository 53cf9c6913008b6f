"""RotatE (Sun et al. 2019): ``gamma - sum_k |h_k * e^{i r_k} - t_k|``; relations are phases (radians).

Owns RotatE's scoring, queries, widths (entities ``[re | im]``, relations half as wide), the start of new
relation rows, defaults and neighbour estimate. Must not import TensorFlow or numpy at module import, nor
see ids or variables.
"""

from __future__ import annotations

import math

from .base import GAMMA_PER_DIM, Scorer, lazy_tf, np_halves, pairwise, start_bound, tf_halves, uniform_rows

__all__ = ["RotatE"]


class RotatE(Scorer):
    """Entities ``[n, d]`` as ``[re | im]`` (``d`` even), relations ``[n_r, d/2]`` phases."""

    name = "rotate"
    param_names = ("gamma",)
    defaults = {"loss": "logistic", "lr": 0.01}  # gamma: scaled_defaults (0.06 x dim)
    preset = "rotate"
    complex_valued = True

    def __init__(self, gamma: float = 12.0):
        super().__init__(gamma=float(gamma))

    def relation_width(self, dim: int) -> int:
        return dim // 2

    @staticmethod
    def _distance_per_bound(dim: int) -> float:
        """Expected ``sum_k |h_k e^{i r_k} - t_k|`` over ``dim / 2`` complex columns for rows uniform in
        ``[-1, 1]``: each difference has real and imaginary parts of std sqrt(2/3), a modulus of mean
        sqrt(2/3) * sqrt(pi/2)."""
        return math.sqrt(2.0 / 3.0) * math.sqrt(math.pi / 2.0) * dim / 2

    @classmethod
    def scaled_defaults(cls, settings):
        # gamma as the distance models' (GAMMA_PER_DIM per float column): 12 at dim 200; see base.py
        return {"gamma": round(GAMMA_PER_DIM * int(settings["dim"]), 4)}

    def entity_start(self, rng, n_new: int, width: int, n_total: int):
        """Uniform rows whose expected distance is gamma (:func:`~.base.start_bound`; the RotatE paper's
        ``embedding_range``): Glorot rows at gamma 12 score ~12, the loss saturates and a short run ends at
        random level."""
        return uniform_rows(rng, n_new, width, start_bound(self.params["gamma"], self._distance_per_bound(width)))

    @staticmethod
    def relation_start(rng, n_new: int, width: int, n_total: int):
        """New relation phases uniform over [-pi, pi] (the RotatE paper's start).

        Glorot phases are a few tenths of a radian: every relation starts as nearly the identity rotation,
        and on WN18RR the trained model kept short rotations, so the query entity itself outscored the
        answer in almost every test triple.
        """
        import numpy as np

        return rng.uniform(-math.pi, math.pi, size=(n_new, width)).astype(np.float32)

    @staticmethod
    def estimate(h, r, t, side: str):
        """``h ∘ e^{ir} ≈ t``: rotate the tail back (``t ∘ e^{-ir}``) or the head forward (``h ∘ e^{ir}``)."""
        import numpy as np

        cos, sin = np.cos(r), np.sin(r)
        if side == "head":  # h = t * e^{-ir}
            tr, ti = np_halves(t)
            return np.concatenate([tr * cos + ti * sin, ti * cos - tr * sin], axis=-1)
        hr, hi = np_halves(h)  # t = h * e^{ir}
        return np.concatenate([hr * cos - hi * sin, hr * sin + hi * cos], axis=-1)

    def _distance(self, re, im):
        tf = lazy_tf()
        return self.params["gamma"] - tf.reduce_sum(tf.sqrt(re * re + im * im + 1e-12), axis=-1)

    def score(self, h, r, t):
        tf = lazy_tf()
        (hr, hi), (tr, ti) = tf_halves(h), tf_halves(t)
        cos, sin = tf.cos(r), tf.sin(r)
        return self._distance(hr * cos - hi * sin - tr, hr * sin + hi * cos - ti)

    def tail_query(self, h, r):
        tf = lazy_tf()
        (hr, hi) = tf_halves(h)
        cos, sin = tf.cos(r), tf.sin(r)
        return tf.concat([hr * cos - hi * sin, hr * sin + hi * cos], axis=-1)  # h * e^{ir}

    def head_query(self, r, t):
        # |e * e^{ir} - t| = |e - t * e^{-ir}|: rotate the tail back.
        tf = lazy_tf()
        (tr, ti) = tf_halves(t)
        cos, sin = tf.cos(r), tf.sin(r)
        return tf.concat([tr * cos + ti * sin, ti * cos - tr * sin], axis=-1)

    def match(self, q, entities):
        (qr, qi), (er, ei) = tf_halves(q), tf_halves(entities)
        return self._distance(pairwise(qr, er), pairwise(qi, ei))
