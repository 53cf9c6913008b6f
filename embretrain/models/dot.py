"""Dot (skip-gram style pairs): ``<a, c_b>`` with a context table, or ``<a, b>`` with one shared table.

Owns the pair model's scoring, queries, widths (no relation table; a context table as wide as the entities)
and defaults. It has no neighbour estimate (``estimate = None``: ``--init neighbors`` keeps Glorot rows).
Must not import TensorFlow or numpy at module import, nor see ids or variables.
"""

from __future__ import annotations

from .base import Scorer, lazy_tf, matmul

__all__ = ["Dot"]


class Dot(Scorer):
    """``<a, c_b>``: entities ``[n, d]`` and an optional context table ``[n, d]``; no relations."""

    name = "dot"
    kind = "pair"
    param_names = ()
    defaults = {"loss": "logistic", "lr": 0.01, "negatives": 5}
    preset = "dot"
    matmul_ranking = True
    estimate = None  # no closed form: a pair says nothing about where a new row should sit but "near its partner"

    def relation_width(self, dim: int) -> None:
        return None

    def score(self, h, r, t):
        return lazy_tf().reduce_sum(h * t, axis=-1)

    def tail_query(self, h, r):
        return h

    def head_query(self, r, t):
        return t

    def match(self, q, entities):
        return matmul(q, entities)
