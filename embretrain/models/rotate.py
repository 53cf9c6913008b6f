"""RotatE (Sun et al. 2019): ``gamma - sum_k |h_k * e^{i r_k} - t_k|``; relations are phases (radians).

``norm = 2`` scores ``gamma - sqrt(sum_k |h_k * e^{i r_k} - t_k|^2)`` instead (PyKEEN's RotatE): the L2 length of
the rotated difference, which ranks a query against many rows with one matrix product (as TransE-L2), so a step
can meet 1,024 shared negatives at the cost of 32.

Owns RotatE's scoring, queries, widths (entities ``[re | im]``, relations half as wide), the start of new
relation rows, defaults and neighbour estimate. Must not import TensorFlow or numpy at module import, nor
see ids or variables.
"""

from __future__ import annotations

import math

from .base import (GAMMA_PER_DIM, Scorer, checked_norm, l2_distances, lazy_tf, np_halves, pairwise, start_bound,
                   tf_halves, uniform_rows)

__all__ = ["RotatE"]


class RotatE(Scorer):
    """Entities ``[n, d]`` as ``[re | im]`` (``d`` even), relations ``[n_r, d/2]`` phases."""

    name = "rotate"
    param_names = ("gamma", "norm")
    defaults = {"loss": "logistic", "lr": 0.01, "norm": 1}  # gamma: scaled_defaults (0.06 x dim)
    preset = "rotate"
    complex_valued = True

    def __init__(self, gamma: float = 12.0, norm: int = 1):
        super().__init__(gamma=float(gamma), norm=checked_norm(self.name, norm))
        self.matmul_ranking = self.params["norm"] == 2

    def relation_width(self, dim: int) -> int:
        return dim // 2

    @staticmethod
    def _distance_per_bound(dim: int, norm: int = 1) -> float:
        """Expected distance over ``dim / 2`` complex columns for rows uniform in ``[-1, 1]``: each difference
        has real and imaginary parts of std sqrt(2/3); L1 sums moduli of mean sqrt(2/3) * sqrt(pi/2), L2 is
        about sqrt(dim * 2/3)."""
        if int(norm) == 2:
            return math.sqrt(dim * 2.0 / 3.0)
        return math.sqrt(2.0 / 3.0) * math.sqrt(math.pi / 2.0) * dim / 2

    @classmethod
    def scaled_defaults(cls, settings):
        # gamma as the distance models' (GAMMA_PER_DIM per float column): 12 at dim 200; see base.py. The L2 form
        # keeps the L1 form's start bound, so its gamma is that bound times its own expected distance.
        dim, norm = int(settings["dim"]), int(settings.get("norm", 1))
        gamma = GAMMA_PER_DIM * dim
        if norm == 2:
            gamma = gamma / cls._distance_per_bound(dim) * cls._distance_per_bound(dim, 2)
        return {"gamma": round(gamma, 4)}

    def entity_start(self, rng, n_new: int, width: int, n_total: int):
        """Uniform rows whose expected distance is gamma (:func:`~.base.start_bound`; the RotatE paper's
        ``embedding_range``): Glorot rows at gamma 12 score ~12, the loss saturates and a short run ends at
        random level."""
        bound = start_bound(self.params["gamma"], self._distance_per_bound(width, self.params["norm"]))
        return uniform_rows(rng, n_new, width, bound)

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
        if self.params["norm"] == 2:
            return self.params["gamma"] - tf.sqrt(tf.reduce_sum(re * re + im * im, axis=-1) + 1e-12)
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
        if self.params["norm"] == 2:  # [re | im] rows: the L2 length over all of them is the complex one
            return self.params["gamma"] - l2_distances(q, entities)
        (qr, qi), (er, ei) = tf_halves(q), tf_halves(entities)
        return self._distance(pairwise(qr, er), pairwise(qi, ei))
