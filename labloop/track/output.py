"""From a solution of the tracking problem to a :class:`~labloop.lineage.Lineage`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from labloop.lineage import Lineage
from labloop.track.events import recalibrate
from labloop.track.gaps import fill_gaps
from labloop.track.marginals import Marginals
from labloop.track.problem import TrackingProblem
from labloop.track.solve import Solution


def calibrated_link_probability(problem: TrackingProblem, marginals: Marginals) -> np.ndarray:
    """Tempered marginal of every candidate link, through the shipped recalibration (the
    map of links that skip a frame for those, where the model has one)."""
    p = recalibrate(marginals.link, problem.model.link_recalibration)
    gap_map = problem.model.gap_link_recalibration
    if gap_map:
        gap = problem.cand.dt > 1
        p[gap] = recalibrate(marginals.link[gap], gap_map)
    return np.clip(p, 0.0, 1.0)


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
               frame_interval_h: float | None, attrs: dict[str, Any],
               fill: bool | None = None) -> Lineage:
    """The lineage of a solution, with calibrated probabilities.

    Nodes are the detections not called false positives, with their columns plus
    ``division_probability`` (probability that the nucleus divides into the next
    frame) and ``false_positive_probability``. Edges carry ``probability`` (the
    link's calibrated marginal), ``error_probability`` and ``frames`` (1, or 2 for
    a closed gap). With ``fill`` (default: the settings' ``fill_gaps``) closed gaps
    are filled by interpolated nuclei whose ids follow the largest detection id.
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
    lineage = Lineage(nodes, edges, frame_interval_h=frame_interval_h, attrs=attrs)
    if problem.settings.fill_gaps if fill is None else fill:
        lineage = fill_gaps(lineage, first_id=int(ids.max()) + 1 if len(ids) else 0)
    return lineage
