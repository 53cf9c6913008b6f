"""DistMult (Yang et al. 2015): ``<h, r, t>``.

Owns DistMult's scoring, queries, widths (relations as wide as entities), defaults and neighbour estimate.
Must not import TensorFlow or numpy at module import, nor see ids or variables.
"""

from __future__ import annotations

from .base import BILINEAR_DEFAULTS, BilinearScorer, lazy_tf

__all__ = ["DistMult"]


class DistMult(BilinearScorer):
    """``<h, r, t>``; entities ``[n, d]``, relations ``[n_r, d]``."""

    name = "distmult"
    defaults = BILINEAR_DEFAULTS
    preset = "distmult"

    @staticmethod
    def estimate(h, r, t, side: str):
        """The direction that maximises the score with the neighbour fixed: ``r ∘ t`` for a head, ``h ∘ r``
        for a tail."""
        return r * t if side == "head" else h * r

    def score(self, h, r, t):
        return lazy_tf().reduce_sum(h * r * t, axis=-1)

    def tail_query(self, h, r):
        return h * r

    def head_query(self, r, t):
        return r * t
