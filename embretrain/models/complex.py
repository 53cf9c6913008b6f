"""ComplEx (Trouillon et al. 2016): ``Re(<h, r, conj(t)>)``; entities and relations are ``[re | im]``.

Owns ComplEx's scoring, queries, widths (even; relations as wide as entities), defaults and neighbour
estimate. Must not import TensorFlow or numpy at module import, nor see ids or variables.
"""

from __future__ import annotations

from .base import BILINEAR_DEFAULTS, BilinearScorer, lazy_tf, np_halves, tf_halves

__all__ = ["ComplEx"]


class ComplEx(BilinearScorer):
    """``Re(<h, r, conj(t)>)``; entities ``[n, d]`` and relations ``[n_r, d]`` as ``[re | im]``, ``d`` even."""

    name = "complex"
    defaults = BILINEAR_DEFAULTS
    preset = "complex"
    complex_valued = True

    @staticmethod
    def estimate(h, r, t, side: str):
        """The direction that maximises the score: ``conj(r ∘ conj(t))`` for a head, ``h ∘ r`` for a tail."""
        import numpy as np

        if side == "head":  # score = <h, conj(r * conj(t))> as [re | im]
            (rr, ri), (tr, ti) = np_halves(r), np_halves(t)
            return np.concatenate([rr * tr + ri * ti, rr * ti - ri * tr], axis=-1)
        (hr, hi), (rr, ri) = np_halves(h), np_halves(r)
        return np.concatenate([hr * rr - hi * ri, hr * ri + hi * rr], axis=-1)

    def score(self, h, r, t):
        tf = lazy_tf()
        (hr, hi), (rr, ri), (tr, ti) = tf_halves(h), tf_halves(r), tf_halves(t)
        return tf.reduce_sum((hr * rr - hi * ri) * tr + (hr * ri + hi * rr) * ti, axis=-1)

    def tail_query(self, h, r):
        (hr, hi), (rr, ri) = tf_halves(h), tf_halves(r)
        return lazy_tf().concat([hr * rr - hi * ri, hr * ri + hi * rr], axis=-1)  # h*r as [re | im]

    def head_query(self, r, t):
        # Re(e * a) with a = r * conj(t): e_re*a_re - e_im*a_im
        (rr, ri), (tr, ti) = tf_halves(r), tf_halves(t)
        return lazy_tf().concat([rr * tr + ri * ti, -(ri * tr - rr * ti)], axis=-1)
