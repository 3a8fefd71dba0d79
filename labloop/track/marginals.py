"""Marginal probabilities of links and divisions by sum-product belief propagation.

Under the Boltzmann distribution ``P(y) ∝ exp(−E(y)/T)`` of the tracking energy
(:mod:`labloop.track.problem`), each detection ``v`` is one factor over its
candidate links: its in-side takes no parent (``a``) or one parent link; its
out-side no child, one, or two (a division). The factor weight ``α(a, b)`` for
``a`` parents and ``b`` children is

    α(0,0) = e^{−F} + e^{−A−D}   α(0,1) = e^{−A}   α(0,2) = e^{−A−C}
    α(1,0) = e^{−D}              α(1,1) = 1        α(1,2) = e^{−C}

(only the called pairs of children may divide). With ``r_f`` the incoming message
ratios of its parent links and ``q_f`` of its child links, the local partition
functions are ``P₀ = 1``, ``P₁ = Σ r_f``, ``Q₀ = 1``, ``Q₁ = Σ q_f``,
``Q₂ = Σ_{pairs (f,g)} e^{−C_{fg}} q_f q_g`` (a division's cost depends on its
pair of children), and the message to one link is the ratio of the local
partition function with that link on to the one with it off — a closed form, so
each sweep is a handful of vectorised segment sums over all links of the movie
(no per-link Python loop, no enumeration). A link's marginal odds are
``e^{−c_e} · m_{source→e} · m_{target→e}``; a detection's division probability is
``Σ_a α(a,2) P_a Q₂ / Z_v`` (per pair: that pair's term of ``Q₂``). Each sweep
widens the context around a link by one detection; on a tree the result is exact,
on the loopy candidate graph it is the Bethe approximation, whose residual bias
the fitted temperature absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labloop.track.costs import EnergyCosts
from labloop.track.settings import MarginalSettings

#: log-messages are clipped to ``±`` this to keep ``exp`` finite
MAX_LOG_MESSAGE = 60.0


@dataclass(frozen=True)
class Marginals:
    """Marginal probabilities under the tempered energy.

    Attributes
    ----------
    link
        ``(E,)`` probability that each candidate link is in the lineage.
    division_pair
        ``(M,)`` probability of each allowed division (mother into a given pair).
    division
        ``(N,)`` probability that each detection divides (into any pair).
    false_positive, appear, disappear
        ``(N,)`` probabilities of those node events.
    iterations
        Sweeps run; ``converged`` whether the tolerance was met.
    """

    link: np.ndarray
    division_pair: np.ndarray
    division: np.ndarray
    false_positive: np.ndarray
    appear: np.ndarray
    disappear: np.ndarray
    iterations: int
    converged: bool


def _exp(x: np.ndarray) -> np.ndarray:
    return np.exp(np.clip(x, -MAX_LOG_MESSAGE, MAX_LOG_MESSAGE))


class _Factors:
    """Local partition-function pieces of every detection for given incoming messages."""

    def __init__(self, source: np.ndarray, target: np.ndarray, n: int, scaled: EnergyCosts,
                 r: np.ndarray, q: np.ndarray) -> None:
        self.n_links = len(source)
        pair_node = scaled.division_nodes
        e1, e2 = scaled.division_links[:, 0], scaled.division_links[:, 1]
        self.pair_weight = np.exp(-scaled.division)
        self.pair_term = self.pair_weight * q[e1] * q[e2]
        self.p1 = np.bincount(target, r, minlength=n)
        self.q1 = np.bincount(source, q, minlength=n)
        self.q2 = np.bincount(pair_node, self.pair_term, minlength=n)
        # S_f: the pair terms that contain link f, divided by q_f
        self.s = (np.bincount(e1, self.pair_weight * q[e2], minlength=self.n_links)
                  + np.bincount(e2, self.pair_weight * q[e1], minlength=self.n_links))
        a, d, f = scaled.appear, scaled.disappear, scaled.false_positive
        self.a00 = np.exp(-f) + np.exp(-a - d)
        self.a01 = np.exp(-a)
        self.a10 = np.exp(-d)
        # α(0,2) = e^{−A}·e^{−C_p} and α(1,2) = e^{−C_p}: the pair weight sits in q2 / s

    def z(self) -> np.ndarray:
        """Local partition function of every detection."""
        return (self.a00 + self.a01 * self.q1 + self.a01 * self.q2
                + self.p1 * (self.a10 + self.q1 + self.q2))


def belief_propagation(source: np.ndarray, target: np.ndarray, n_nodes: int,
                       costs: EnergyCosts, temperature: float,
                       settings: MarginalSettings) -> Marginals:
    """Marginals of the tempered energy by damped, flooding sum-product BP.

    Parameters
    ----------
    source, target
        Candidate links as detection rows.
    n_nodes
        Number of detections.
    costs
        The energy's costs (at ``T = 1``).
    temperature
        ``T > 0``; costs are divided by it.
    settings
        Sweeps, damping and tolerance.
    """
    scaled = costs.scaled(1.0 / temperature)
    unary = -scaled.link
    n_edges = len(source)
    from_source = np.zeros(n_edges)  # log m_{source→e}(1)/m(0)
    from_target = np.zeros(n_edges)
    converged, sweeps = n_edges == 0, 0
    for sweep in range(1, settings.iterations + 1):
        sweeps = sweep
        if n_edges == 0:
            break
        r = _exp(unary + from_source)  # link → its target's factor
        q = _exp(unary + from_target)  # link → its source's factor
        f = _Factors(source, target, n_nodes, scaled, r, q)
        # messages to parent links of v = target
        v = target
        with_parent = f.a10[v] + f.q1[v] + f.q2[v]
        without = f.a00[v] + f.a01[v] * (f.q1[v] + f.q2[v])
        others = np.maximum(f.p1[v] - r, 0.0)
        new_target = np.log(with_parent) - np.log(without + others * with_parent)
        # messages to child links of v = source
        v = source
        q1o = np.maximum(f.q1[v] - q, 0.0)
        q2o = np.maximum(f.q2[v] - q * f.s, 0.0)
        on = f.a01[v] * (1.0 + f.s) + f.p1[v] * (1.0 + f.s)
        off = (f.a00[v] + f.a01[v] * (q1o + q2o)) + f.p1[v] * (f.a10[v] + q1o + q2o)
        new_source = np.log(on) - np.log(off)
        new_source = (1 - settings.damping) * new_source + settings.damping * from_source
        new_target = (1 - settings.damping) * new_target + settings.damping * from_target
        change = max(np.abs(new_source - from_source).max(),
                     np.abs(new_target - from_target).max())
        from_source, from_target = new_source, new_target
        if change < settings.tolerance:
            converged = True
            break
    link = 1.0 / (1.0 + _exp(-(unary + from_source + from_target)))
    f = _Factors(source, target, n_nodes, scaled, _exp(unary + from_source),
                 _exp(unary + from_target))
    z = f.z()
    mother = scaled.division_nodes
    pair = f.pair_term * (f.a01[mother] + f.p1[mother]) / z[mother]
    fp_weight = np.exp(-scaled.false_positive)
    both = f.a00 - fp_weight
    return Marginals(
        link=link,
        division_pair=pair,
        division=np.bincount(mother, pair, minlength=n_nodes),
        false_positive=fp_weight / z,
        appear=(both + f.a01 * (f.q1 + f.q2)) / z,
        disappear=(both + f.a10 * f.p1) / z,
        iterations=sweeps,
        converged=converged,
    )
