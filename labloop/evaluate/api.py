"""One call that scores whatever results exist against the ground truth, as JSON."""

from __future__ import annotations

import pandas as pd

from labloop.errors import InputError
from labloop.evaluate._scores import to_jsonable
from labloop.evaluate.calibration import calibration
from labloop.evaluate.matching import check_radius, detection_metrics
from labloop.evaluate.settings import DEFAULT_RADIUS_UM, EvaluationSettings
from labloop.lineage import Lineage


def _truth_summary(truth: Lineage) -> dict[str, int]:
    return {"n_nodes": truth.n_nodes, "n_edges": truth.n_edges,
            "n_divisions": truth.n_divisions, "n_frames": truth.n_frames}


def evaluate(truth: Lineage, predicted: Lineage | None = None,
             detections: pd.DataFrame | None = None,
             radius_um: float = DEFAULT_RADIUS_UM,
             settings: EvaluationSettings | None = None) -> dict[str, object]:
    """Score detections and/or a predicted lineage against the ground truth.

    Parameters
    ----------
    truth
        Ground-truth lineage (positions in µm).
    predicted
        Predicted lineage, whose links carry ``error_probability``.
    detections
        Detections table (``t``, ``z, y, x`` in µm).
    radius_um
        Matching radius (µm, inclusive) for nuclei of the same frame.
    settings
        Division frame buffer and number of calibration bins.

    Returns
    -------
    dict
        JSON-serialisable (plain numbers, lists, ``None`` for undefined values):

        - ``radius_um``; ``truth``: ``n_nodes``, ``n_edges``, ``n_divisions``,
          ``n_frames``;
        - ``detection``: :func:`~labloop.evaluate.matching.detection_metrics` of
          ``detections`` if given, else of the predicted lineage's nodes, with
          ``source`` (``"detections"`` or ``"tracks"``);
        - ``tracked_detection``: detection metrics of the predicted lineage's nodes,
          when both ``detections`` and ``predicted`` are given;
        - ``tracking``: :func:`~labloop.evaluate.tracking.tracking_metrics` of
          ``predicted``;
        - ``calibration``: :func:`~labloop.evaluate.calibration.calibration` of the
          predicted links' ``error_probability`` against whether each link is wrong.

    Raises
    ------
    InputError
        If neither ``predicted`` nor ``detections`` is given, or an input is invalid.
    """
    settings = EvaluationSettings() if settings is None else settings
    radius = check_radius(radius_um)
    if not isinstance(truth, Lineage):
        raise InputError(f"the ground truth must be a Lineage, got {type(truth).__name__}")
    if predicted is None and detections is None:
        raise InputError("nothing to evaluate: give predicted tracks, detections or both")
    result: dict[str, object] = {"radius_um": radius, "truth": _truth_summary(truth)}
    if detections is not None:
        result["detection"] = {"source": "detections",
                               **detection_metrics(truth.nodes, detections, radius)}
    if predicted is not None:
        from labloop.evaluate.tracking import compare_lineages

        if not isinstance(predicted, Lineage):
            raise InputError(f"the predicted tracks must be a Lineage, got "
                             f"{type(predicted).__name__}")
        tracked = {"source": "tracks", **detection_metrics(truth.nodes, predicted.nodes, radius)}
        result["tracked_detection" if detections is not None else "detection"] = tracked
        comparison = compare_lineages(truth, predicted, radius,
                                      division_frame_buffer=settings.division_frame_buffer)
        result["tracking"] = comparison.metrics
        result["calibration"] = calibration(
            predicted.edges["error_probability"].to_numpy(),
            ~comparison.predicted_edge_correct, n_bins=settings.n_bins)
    return to_jsonable(result)
