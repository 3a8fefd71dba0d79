"""Lineage metrics against ground truth, computed by traccuracy.

Both lineages become :class:`traccuracy.TrackingGraph` objects (frame key ``t``,
locations ``z, y, x`` in µm, no segmentation). Their nuclei are matched one-to-one
within a radius by :class:`RadiusMatcher` (the same matching as
:func:`labloop.evaluate.matching.match_detections`, so node counts agree with the
detection scores), then traccuracy's metric classes score the match:

- :class:`traccuracy.metrics.BasicMetrics`: a predicted link is *correct* when both
  its ends are matched to truth nuclei that are joined by a truth link; edge
  precision, recall and F1 follow. All other predicted links are *wrong links*.
- :class:`traccuracy.metrics.DivisionMetrics`: a truth division is found when its
  mother is matched to a predicted division and both daughter links are correct;
  with a frame buffer ``b`` a division called up to ``b`` frames early or late
  also counts.
- :class:`traccuracy.metrics.CTCMetrics`: the Cell Tracking Challenge AOGM-based
  DET, LNK and TRA (valid with a one-to-one matching, which has no non-split
  vertices).

Ratios whose denominator is zero follow :mod:`labloop.evaluate._scores` (vacuously
1), and LNK/TRA/DET with an empty reference are 1 without errors and 0 otherwise,
so no score is NaN.

traccuracy takes a few seconds to import, so this module is imported lazily by
:mod:`labloop.evaluate`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from traccuracy import EdgeFlag, TrackingGraph
from traccuracy.matchers import Matched
from traccuracy.matchers._base import Matcher
from traccuracy.metrics import BasicMetrics, CTCMetrics, DivisionMetrics

from labloop.errors import InputError
from labloop.evaluate._scores import precision_recall_f1, to_jsonable
from labloop.evaluate.matching import check_radius, match_detections
from labloop.evaluate.settings import DEFAULT_DIVISION_FRAME_BUFFER
from labloop.lineage import SPATIAL_COLUMNS, Lineage

#: the node attribute that holds the frame
FRAME_KEY = "t"


class RadiusMatcher(Matcher):
    """traccuracy matcher: one-to-one within a radius, most matches then least distance.

    Unlike :class:`traccuracy.matchers.PointMatcher`, whose threshold is soft (a
    pair is left unmatched when that saves more than the threshold in total
    distance), this matcher maximises the number of matches first; it works in
    float64 and needs no per-node Python loop for the assignment.

    Parameters
    ----------
    radius_um
        Largest centre-to-centre distance (µm, inclusive) of a match.
    """

    _matching_type = "one-to-one"

    def __init__(self, radius_um: float) -> None:
        self.radius_um = check_radius(radius_um)

    def _compute_mapping(self, gt_graph: TrackingGraph, pred_graph: TrackingGraph
                         ) -> list[tuple[Any, Any]]:
        matches = match_detections(_graph_table(gt_graph), _graph_table(pred_graph),
                                   self.radius_um)
        return list(zip(matches["truth"].tolist(), matches["predicted"].tolist(), strict=True))


def _graph_table(graph: TrackingGraph) -> pd.DataFrame:
    """Nodes of a tracking graph as a ``t, z, y, x`` table indexed by node id."""
    if graph.location_keys is None:
        raise InputError("the tracking graph has no location keys")
    ids = list(graph.graph.nodes)
    attrs = graph.graph.nodes
    frames = np.array([attrs[n][graph.frame_key] for n in ids], dtype=np.int64)
    if isinstance(graph.location_keys, str):
        rows = [attrs[n][graph.location_keys] for n in ids]
    else:
        rows = [[attrs[n][k] for k in graph.location_keys] for n in ids]
    positions = np.array(rows, dtype=np.float64).reshape(len(ids), len(SPATIAL_COLUMNS))
    table = pd.DataFrame(positions, columns=list(SPATIAL_COLUMNS), index=pd.Index(ids))
    table.insert(0, "t", frames)
    return table


def tracking_graph(lineage: Lineage, name: str | None = None) -> TrackingGraph:
    """Convert a lineage to a :class:`traccuracy.TrackingGraph` with node ids ``1..N``.

    traccuracy asks for non-negative (documented: positive) integer node ids, so the
    lineage's node ids are replaced by their row number plus one: node ``k`` of the
    graph is row ``k − 1`` of ``lineage.nodes``. Only ``t, z, y, x`` are kept as node
    attributes, so no lineage column can collide with traccuracy's annotations.

    Parameters
    ----------
    lineage
        The lineage (positions in µm).
    name
        Name shown in traccuracy's results.

    Returns
    -------
    TrackingGraph
        Frame key ``t``, location keys ``("z", "y", "x")``, no segmentation.
    """
    nodes = lineage.nodes
    graph: nx.DiGraph = nx.DiGraph()
    frames = nodes["t"].to_numpy(dtype=np.int64).tolist()
    positions = nodes[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64).tolist()
    graph.add_nodes_from(
        (k + 1, {"t": t, **dict(zip(SPATIAL_COLUMNS, p, strict=True))})
        for k, (t, p) in enumerate(zip(frames, positions, strict=True))
    )
    source, target = _edge_rows(lineage)
    graph.add_edges_from(zip((source + 1).tolist(), (target + 1).tolist(), strict=True))
    return TrackingGraph(graph, frame_key=FRAME_KEY, label_key=None,
                         location_keys=SPATIAL_COLUMNS, name=name)


def _edge_rows(lineage: Lineage) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers (in ``lineage.nodes``) of each edge's source and target."""
    index = lineage.nodes.index
    return (index.get_indexer(lineage.edges["source"]).astype(np.int64),
            index.get_indexer(lineage.edges["target"]).astype(np.int64))


@contextmanager
def _quiet_traccuracy() -> Iterator[None]:
    """Silence traccuracy's NaN warnings and log lines: we handle empty cases ourselves."""
    logger = logging.getLogger("traccuracy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class LineageComparison:
    """A predicted lineage scored against the truth.

    Attributes
    ----------
    metrics
        Flat dict of numbers (see :func:`tracking_metrics`).
    predicted_edge_correct
        Boolean ``(n_predicted_edges,)``, aligned with ``predicted.edges`` rows: the
        link's ends are matched to truth nuclei joined by a truth link.
    truth_edge_found
        Boolean ``(n_truth_edges,)``, aligned with ``truth.edges`` rows.
    node_matches
        The node matching: columns ``truth``, ``predicted`` (node ids of each
        lineage).
    """

    metrics: dict[str, float | int | None]
    predicted_edge_correct: np.ndarray
    truth_edge_found: np.ndarray
    node_matches: pd.DataFrame


def _edge_flags(lineage: Lineage, graph: TrackingGraph, flag: EdgeFlag) -> np.ndarray:
    """Whether each edge row of ``lineage`` carries ``flag`` in its tracking graph."""
    flagged = graph.get_edges_with_flag(flag)
    source, target = _edge_rows(lineage)
    return np.array([(s + 1, t + 1) in flagged
                     for s, t in zip(source.tolist(), target.tolist(), strict=True)], dtype=bool)


def _ctc_score(value: float, errors: float) -> float:
    """A CTC score, or — when its reference is empty (NaN) — 1 without errors, else 0."""
    if math.isnan(value):
        return 1.0 if errors == 0 else 0.0
    return float(value)


def _division_scores(results: dict[str, dict[str, float]], frame_buffer: int
                     ) -> dict[str, float | int]:
    """Flatten traccuracy's division results per frame buffer."""
    base = results["Frame Buffer 0"]
    n_truth = int(base["Total GT Divisions"])
    n_pred = int(base["Total Predicted Divisions"])
    scores: dict[str, float | int] = {
        "n_truth_divisions": n_truth,
        "n_predicted_divisions": n_pred,
        "correct_divisions": int(base["True Positive Divisions"]),
        "false_divisions": int(base["False Positive Divisions"]),
        "missed_divisions": int(base["False Negative Divisions"]),
        "wrong_children_divisions": int(base["Wrong Children Divisions"]),
    }
    for buffer in range(frame_buffer + 1):
        tp = int(results[f"Frame Buffer {buffer}"]["True Positive Divisions"])
        suffix = "" if buffer == 0 else f"_buffer{buffer}"
        for key, value in precision_recall_f1(tp, n_pred, n_truth).items():
            scores[f"division_{key}{suffix}"] = value
    return scores


def compare_lineages(truth: Lineage, predicted: Lineage, radius_um: float,
                     division_frame_buffer: int = DEFAULT_DIVISION_FRAME_BUFFER,
                     matcher: Matcher | None = None) -> LineageComparison:
    """Score a predicted lineage against the truth with traccuracy.

    Parameters
    ----------
    truth, predicted
        Lineages with positions in µm.
    radius_um
        Matching radius (µm, inclusive) for nuclei of the same frame.
    division_frame_buffer
        Divisions are also scored allowing them to be called up to this many frames
        early or late (keys ``division_*_buffer{b}``), for each ``b`` from 1 up.
    matcher
        Any one-to-one traccuracy matcher to use instead of :class:`RadiusMatcher`
        (e.g. ``traccuracy.matchers.PointMatcher(threshold=radius_um)``); it sees
        graphs whose node ids are row numbers plus one (see :func:`tracking_graph`).

    Returns
    -------
    LineageComparison
        The metrics, per-link correctness of both lineages and the node matching.
    """
    for lineage, name in ((truth, "truth"), (predicted, "predicted")):
        if not isinstance(lineage, Lineage):
            raise InputError(f"the {name} lineage must be a Lineage, got "
                              f"{type(lineage).__name__}")
    if not (isinstance(division_frame_buffer, int | np.integer) and division_frame_buffer >= 0):
        raise InputError(f"the division frame buffer must be a whole number of frames ≥ 0, "
                          f"got {division_frame_buffer}")
    radius = check_radius(radius_um)
    gt_graph = tracking_graph(truth, name="truth")
    pred_graph = tracking_graph(predicted, name="predicted")
    matcher = RadiusMatcher(radius) if matcher is None else matcher
    with _quiet_traccuracy():
        matched: Matched = matcher.compute_mapping(gt_graph, pred_graph)
        basic = BasicMetrics().compute(matched).results
        divisions = DivisionMetrics(max_frame_buffer=int(division_frame_buffer)
                                    ).compute(matched).results
        ctc = CTCMetrics().compute(matched).results

    metrics: dict[str, Any] = {
        "radius_um": radius,
        "n_truth_nodes": int(basic["Total GT Nodes"]),
        "n_predicted_nodes": int(basic["Total Pred Nodes"]),
        "matched_nodes": int(basic["True Positive Nodes"]),
        "n_truth_edges": int(basic["Total GT Edges"]),
        "n_predicted_edges": int(basic["Total Pred Edges"]),
        "correct_links": int(basic["True Positive Edges"]),
        "wrong_links": int(basic["False Positive Edges"]),
        "missed_links": int(basic["False Negative Edges"]),
    }
    edge = precision_recall_f1(metrics["correct_links"], metrics["n_predicted_edges"],
                               metrics["n_truth_edges"])
    metrics.update({f"edge_{key}": value for key, value in edge.items()})
    metrics.update(_division_scores(divisions, int(division_frame_buffer)))
    node_errors = ctc["fp_nodes"] + ctc["ns_nodes"] + ctc["fn_nodes"]
    edge_errors = ctc["fp_edges"] + ctc["fn_edges"] + ctc["ws_edges"]
    metrics.update({
        "DET": _ctc_score(ctc["DET"], node_errors),
        "LNK": _ctc_score(ctc["LNK"], edge_errors),
        "TRA": _ctc_score(ctc["TRA"], node_errors + edge_errors),
        "AOGM": float(ctc["AOGM"]),
        **{f"ctc_{key}": int(ctc[key]) for key in
           ("fp_nodes", "fn_nodes", "ns_nodes", "fp_edges", "fn_edges", "ws_edges")},
    })

    pairs = np.array(matched.mapping, dtype=np.int64).reshape(-1, 2)
    node_matches = pd.DataFrame({
        "truth": truth.nodes.index.to_numpy()[pairs[:, 0] - 1],
        "predicted": predicted.nodes.index.to_numpy()[pairs[:, 1] - 1],
    })
    return LineageComparison(
        metrics=to_jsonable(metrics),
        predicted_edge_correct=_edge_flags(predicted, matched.pred_graph, EdgeFlag.TRUE_POS),
        truth_edge_found=_edge_flags(truth, matched.gt_graph, EdgeFlag.TRUE_POS),
        node_matches=node_matches,
    )


def tracking_metrics(truth: Lineage, predicted: Lineage, radius_um: float,
                     division_frame_buffer: int = DEFAULT_DIVISION_FRAME_BUFFER
                     ) -> dict[str, float | int | None]:
    """Link, division and CTC scores of a predicted lineage against the truth.

    Parameters
    ----------
    truth, predicted
        Lineages with positions in µm.
    radius_um
        Matching radius (µm, inclusive) for nuclei of the same frame.
    division_frame_buffer
        Largest frame shift at which a division still counts (0 = exact frame);
        scores are reported for each buffer from 0 to this value.

    Returns
    -------
    dict
        Flat dict of plain numbers:

        - nodes: ``n_truth_nodes``, ``n_predicted_nodes``, ``matched_nodes``;
        - links: ``n_truth_edges``, ``n_predicted_edges``, ``correct_links``,
          ``wrong_links`` (predicted links not in the truth), ``missed_links``,
          ``edge_precision``, ``edge_recall``, ``edge_f1``;
        - divisions: ``n_truth_divisions``, ``n_predicted_divisions``,
          ``correct_divisions``, ``false_divisions``, ``missed_divisions``,
          ``wrong_children_divisions``, ``division_precision``, ``division_recall``,
          ``division_f1`` and the same with suffix ``_buffer{b}``;
        - Cell Tracking Challenge: ``DET``, ``LNK``, ``TRA``, ``AOGM`` and the error
          counts ``ctc_fp_nodes``, ``ctc_fn_nodes``, ``ctc_ns_nodes``,
          ``ctc_fp_edges``, ``ctc_fn_edges``, ``ctc_ws_edges``;
        - ``radius_um``.

    Examples
    --------
    >>> nodes = pd.DataFrame({"t": [0, 1, 1], "z": [0.0] * 3, "y": [0.0, 2, -2], "x": [0.0] * 3})
    >>> lineage = Lineage(nodes, pd.DataFrame({"source": [0, 0], "target": [1, 2]}))
    >>> scores = tracking_metrics(lineage, lineage, radius_um=1.0)
    >>> scores["edge_f1"], scores["division_f1"], scores["LNK"], scores["TRA"]
    (1.0, 1.0, 1.0, 1.0)
    """
    return compare_lineages(truth, predicted, radius_um, division_frame_buffer).metrics


def edge_correctness(truth: Lineage, predicted: Lineage, radius_um: float) -> pd.Series:
    """Whether each predicted link is right.

    A predicted link is right when both its ends are matched (within ``radius_um``)
    to truth nuclei joined by a truth link.

    Parameters
    ----------
    truth, predicted
        Lineages with positions in µm.
    radius_um
        Matching radius (µm, inclusive).

    Returns
    -------
    Series of bool
        Aligned with ``predicted.edges`` (same index), named ``correct``.
    """
    correct = compare_lineages(truth, predicted, radius_um, division_frame_buffer=0)
    return pd.Series(correct.predicted_edge_correct, index=predicted.edges.index,
                     name="correct")


__all__ = [
    "LineageComparison",
    "RadiusMatcher",
    "compare_lineages",
    "edge_correctness",
    "tracking_graph",
    "tracking_metrics",
]
