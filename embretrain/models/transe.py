"""TransE (Bordes et al. 2013): ``gamma - ||h + r - t||_p``, p = ``norm`` (1 or 2).

Owns TransE's scoring, queries, widths (relations as wide as entities), defaults and neighbour estimate.
Must not import TensorFlow or numpy at module import, nor see ids or variables.
"""

from __future__ import annotations

from .base import DistanceScorer, l2_distances, lp_distance, pairwise

__all__ = ["TransE"]


class TransE(DistanceScorer):
    """``gamma - ||h + r - t||_p``; entities ``[n, d]``, relations ``[n_r, d]``."""

    name = "transe"
    defaults = {"loss": "logistic", "norm": 1, "lr": 0.01}  # gamma: DistanceScorer.scaled_defaults (0.06 x dim)
    preset = "transe"

    def relation_width(self, dim: int) -> int:
        return dim

    def relation_start(self, rng, n_new: int, width: int, n_total: int):
        """Translations start on the entities' scale (the bound that puts the expected distance at gamma)."""
        return self.entity_start(rng, n_new, width, n_total)

    @staticmethod
    def estimate(h, r, t, side: str):
        """``h + r ≈ t``: a head at ``t - r``, a tail at ``h + r``."""
        return t - r if side == "head" else h + r

    def score(self, h, r, t):
        return self.params["gamma"] - lp_distance(h + r - t, self.params["norm"])

    def tail_query(self, h, r):
        return h + r  # ||h + r - e|| = ||q - e||

    def head_query(self, r, t):
        return t - r  # ||e + r - t|| = ||e - q||

    def match(self, q, entities):
        if self.params["norm"] == 1:
            return self.params["gamma"] - lp_distance(pairwise(q, entities), 1)
        return self.params["gamma"] - l2_distances(q, entities)
