"""From a solution of the tracking problem to a :class:`~labloop.lineage.Lineage`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from labloop.lineage import Lineage
from labloop.track.events import recalibrate
from labloop.track.marginals import Marginals
from labloop.track.problem import TrackingProblem
from labloop.track.solve import Solution


def calibrated_link_probability(problem: TrackingProblem, marginals: Marginals) -> np.ndarray:
    """Tempered marginal of every candidate link, through the shipped recalibration."""
    return np.clip(recalibrate(marginals.link, problem.model.link_recalibration), 0.0, 1.0)


def calibrated_division_probability(problem: TrackingProblem, marginals: Marginals,
                                    solution: Solution) -> np.ndarray:
    """Division probability of every detection, through the shipped recalibration.

    For a mother whose division is called: the marginal probability that it
    divides into exactly the two children it has in the lineage. For every other
    detection: the marginal probability that it divides at all (a missed division).
    """
    p = marginals.division.copy()
    called = np.flatnonzero(solution.division)
    p[problem.costs.division_nodes[called]] = marginals.division_pair[called]
    return np.clip(recalibrate(p, problem.model.division_recalibration), 0.0, 1.0)


def to_lineage(problem: TrackingProblem, solution: Solution, marginals: Marginals,
               frame_interval_h: float | None, attrs: dict[str, Any]) -> Lineage:
    """The lineage of a solution, with calibrated probabilities.

    Nodes are the detections not called false positives, with their columns plus
    ``division_probability`` (probability that the nucleus divides into the next
    frame) and ``false_positive_probability``. Edges carry ``probability`` (the
    link's calibrated marginal), ``error_probability`` and ``frames`` (1, or 2 for
    a closed gap).
    """
    det, cand = problem.det, problem.cand
    keep = ~solution.false_positive
    nodes = det.table.iloc[np.flatnonzero(keep)].copy()
    division = calibrated_division_probability(problem, marginals, solution)
    nodes["division_probability"] = division[keep]
    nodes["false_positive_probability"] = marginals.false_positive[keep]
    ids = det.table.index.to_numpy()
    chosen = np.flatnonzero(solution.link)
    edges = pd.DataFrame({
        "source": ids[cand.source[chosen]],
        "target": ids[cand.target[chosen]],
        "probability": calibrated_link_probability(problem, marginals)[chosen],
        "frames": cand.dt[chosen],
    })
    return Lineage(nodes, edges, frame_interval_h=frame_interval_h, attrs=attrs)
