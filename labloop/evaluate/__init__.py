"""Metrics against ground truth: detections, links, divisions and calibration.

- :func:`match_detections`, :func:`detection_metrics`: one-to-one matching of
  nuclei within a radius (µm), frame by frame (:mod:`.matching`).
- :func:`tracking_metrics`, :func:`edge_correctness`, :func:`compare_lineages`:
  link, division and Cell Tracking Challenge (DET, LNK, TRA) scores computed by
  traccuracy (:mod:`.tracking`, imported on first use: traccuracy is slow to import).
- :func:`calibration`: reliability table and expected calibration error of error
  probabilities, with the spread sampling alone puts on it (:func:`ece_sampling_spread`)
  (:mod:`.calibration`).
- :func:`evaluate`: all of the above that the inputs allow, as JSON (:mod:`.api`).

Every score follows one convention for empty inputs: a ratio with a zero
denominator is 1 (precision with no predictions, recall with nothing to find), F1
is 1 when both sides are empty and 0 when only one is; no score is NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labloop.evaluate.api import evaluate
from labloop.evaluate.calibration import (
    calibration,
    ece_sampling_spread,
    share_of_wrong_among_most_doubtful,
)
from labloop.evaluate.matching import detection_metrics, match_detections
from labloop.evaluate.settings import (
    DEFAULT_DIVISION_FRAME_BUFFER,
    DEFAULT_RADIUS_UM,
    EvaluationSettings,
)

if TYPE_CHECKING:
    from labloop.evaluate.tracking import (
        LineageComparison,
        RadiusMatcher,
        compare_lineages,
        edge_correctness,
        tracking_graph,
        tracking_metrics,
    )

_LAZY = ("LineageComparison", "RadiusMatcher", "compare_lineages", "edge_correctness",
         "tracking_graph", "tracking_metrics")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from labloop.evaluate import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_DIVISION_FRAME_BUFFER",
    "DEFAULT_RADIUS_UM",
    "EvaluationSettings",
    "LineageComparison",
    "RadiusMatcher",
    "calibration",
    "compare_lineages",
    "detection_metrics",
    "ece_sampling_spread",
    "edge_correctness",
    "evaluate",
    "match_detections",
    "share_of_wrong_among_most_doubtful",
    "tracking_graph",
    "tracking_metrics",
]
