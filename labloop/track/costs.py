"""Costs of the energy: one small function per event, each ``−log odds`` of its probability.

- link ``c_e = −logit p_link(e)``;
- appearance ``A_v = −logit p_appear(v)``, 0 in the first frame (no evidence either
  way: nothing was imaged before);
- disappearance ``D_v = −logit p_disappear(v)``, 0 in the last frame;
- false positive ``F_v = −logit p_fp(v)``;
- division of ``v`` into the children of links ``e₁, e₂``:
  ``C_{v,e₁,e₂} = −logit p_division(v, e₁, e₂)``, only for pairs with
  ``p_division ≥ min_division_probability`` (no other division is allowed at all).

Costs are clipped to ``±max_cost`` so that no event is impossible. The event
model may add one fitted offset per node event (see
:class:`~labloop.track.events.EventModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labloop.track.candidates import Candidates
from labloop.track.detections import Detections
from labloop.track.settings import SolverSettings


@dataclass(frozen=True)
class EnergyCosts:
    """Costs of every variable of the energy (dimensionless, in units of ``k T`` at ``T = 1``).

    Attributes
    ----------
    link
        ``(E,)`` link costs.
    appear, disappear, false_positive
        ``(N,)`` node costs.
    division_nodes
        Mother (detection row) of each allowed division, ``(M,)`` (a mother may
        have several candidate pairs of children).
    division_links
        The two child links (candidate indices) of each allowed division, ``(M, 2)``.
    division
        ``(M,)`` division costs.
    """

    link: np.ndarray
    appear: np.ndarray
    disappear: np.ndarray
    false_positive: np.ndarray
    division_nodes: np.ndarray
    division_links: np.ndarray
    division: np.ndarray

    def vector(self) -> np.ndarray:
        """All costs in the solver's variable order: links, a, d, f, divisions."""
        return np.concatenate([self.link, self.appear, self.disappear, self.false_positive,
                               self.division])

    def scaled(self, factor: float) -> EnergyCosts:
        """Costs multiplied by ``factor`` (e.g. ``1/T``)."""
        return EnergyCosts(self.link * factor, self.appear * factor, self.disappear * factor,
                           self.false_positive * factor, self.division_nodes,
                           self.division_links, self.division * factor)

    def perturbed(self, noise: np.ndarray) -> EnergyCosts:
        """Costs plus a noise vector in :meth:`vector` order."""
        v = self.vector() + noise
        e, n, m = len(self.link), len(self.appear), len(self.division)
        return EnergyCosts(v[:e], v[e:e + n], v[e + n:e + 2 * n], v[e + 2 * n:e + 3 * n],
                           self.division_nodes, self.division_links,
                           v[e + 3 * n:e + 3 * n + m])


def negative_log_odds(p: np.ndarray, max_cost: float) -> np.ndarray:
    """``−log(p / (1 − p))`` clipped to ``±max_cost``."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0)
    cost = np.log1p(-np.minimum(p, 1 - 1e-16)) - np.log(p)
    return np.clip(cost, -max_cost, max_cost)


def link_costs(p: np.ndarray, settings: SolverSettings) -> np.ndarray:
    """Link costs ``c_e``."""
    return negative_log_odds(p, settings.max_cost)


def appear_costs(det: Detections, p: np.ndarray, settings: SolverSettings) -> np.ndarray:
    """Appearance costs ``A_v`` (0 in the first frame)."""
    cost = negative_log_odds(p, settings.max_cost)
    if det.n:
        cost[det.t == det.frames[0]] = 0.0
    return cost


def disappear_costs(det: Detections, p: np.ndarray, settings: SolverSettings) -> np.ndarray:
    """Disappearance costs ``D_v`` (0 in the last frame)."""
    cost = negative_log_odds(p, settings.max_cost)
    if det.n:
        cost[det.t == det.frames[-1]] = 0.0
    return cost


def false_positive_costs(p: np.ndarray, settings: SolverSettings) -> np.ndarray:
    """False-positive costs ``F_v``."""
    return negative_log_odds(p, settings.max_cost)


def division_costs(p: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                   settings: SolverSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Allowed divisions (called pairs): mothers, child links ``(M, 2)`` and costs."""
    node, first, second = pairs
    keep = p >= settings.min_division_probability
    return (node[keep], np.stack([first[keep], second[keep]], axis=1).reshape(-1, 2),
            negative_log_odds(p[keep], settings.max_cost))


def event_costs(det: Detections, cand: Candidates, probability: dict[str, np.ndarray],
                pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                settings: SolverSettings, offsets: dict[str, float] | None = None
                ) -> EnergyCosts:
    """All costs of the energy from the event probabilities (plus fitted offsets)."""
    offsets = {} if offsets is None else offsets
    nodes, links, division = division_costs(probability["division"], pairs, settings)
    first = det.t == det.frames[0] if det.n else np.zeros(0, bool)
    last = det.t == det.frames[-1] if det.n else np.zeros(0, bool)
    return EnergyCosts(
        link=link_costs(probability["link"], settings),
        appear=appear_costs(det, probability["appear"], settings)
        + offsets.get("appear", 0.0) * ~first,
        disappear=disappear_costs(det, probability["disappear"], settings)
        + offsets.get("disappear", 0.0) * ~last,
        false_positive=false_positive_costs(probability["false_positive"], settings)
        + offsets.get("false_positive", 0.0),
        division_nodes=nodes,
        division_links=links,
        division=division + offsets.get("division", 0.0),
    )
