"""Calibrated detection scores: peak height → probability of a true nucleus.

The network's peak height is monotone in, but not equal to, the probability that
a peak is a real nucleus. :class:`ScoreCalibration` is an isotonic
(monotone non-decreasing, piecewise-linear) map fitted by pool-adjacent-violators
on held-out simulated volumes, where every candidate peak is labelled 1 if it is
matched one-to-one to a true nucleus within the matching radius and 0 otherwise.
A score ``s`` then means: of all peaks scored ``s``, a fraction ``s`` are true.

Peaks on the outermost voxel layer of a frame are calibrated separately
(:class:`BorderAwareCalibration`): many of them are the cut-off parts of nuclei
whose centre lies outside the image, which do not count as nuclei of the frame,
so the same height means a lower probability there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Calibration curves are stored with at most this many knots (keeps the model
#: file's JSON header small).
MAX_KNOTS = 64
#: Default number of equal-width score bins of the expected calibration error.
ECE_BINS = 10


def pool_adjacent_violators(y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Least-squares non-decreasing fit to ``y`` (in the given order).

    Parameters
    ----------
    y
        Values ordered by the predictor (here: 0/1 labels sorted by peak height).
    weight
        Positive weights, default 1.

    Returns
    -------
    ndarray
        The isotonic fit, same length as ``y``.
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=np.float64)
    means: list[float] = []
    weights: list[float] = []
    counts: list[int] = []
    for value, wt in zip(y.tolist(), w.tolist(), strict=True):
        means.append(value)
        weights.append(wt)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            merged = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            counts[-2] += counts[-1]
            means[-2], weights[-2] = merged, total
            del means[-1], weights[-1], counts[-1]
    return np.repeat(np.asarray(means), np.asarray(counts))


@dataclass(frozen=True)
class ScoreCalibration:
    """A monotone piecewise-linear map from peak height to probability.

    Attributes
    ----------
    heights
        Increasing knot positions (peak heights, network output units).
    probabilities
        Non-decreasing probabilities at the knots, in ``[0, 1]``; constant beyond
        the first and last knot.
    """

    heights: tuple[float, ...]
    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        h = np.asarray(self.heights, dtype=np.float64)
        p = np.asarray(self.probabilities, dtype=np.float64)
        if h.ndim != 1 or h.shape != p.shape or h.size < 2:
            raise ValueError("calibration needs ≥ 2 knots with as many probabilities")
        if np.any(np.diff(h) <= 0) or np.any(np.diff(p) < 0):
            raise ValueError("calibration knots must increase and probabilities not decrease")
        if np.any(p < 0) or np.any(p > 1) or not np.all(np.isfinite(h)):
            raise ValueError("calibration probabilities must lie in [0, 1]")

    @staticmethod
    def identity() -> ScoreCalibration:
        """Score = peak height clipped to ``[0, 1]`` (an uncalibrated model)."""
        return ScoreCalibration((0.0, 1.0), (0.0, 1.0))

    def __call__(self, heights: np.ndarray) -> np.ndarray:
        """Calibrated scores in ``[0, 1]`` for peak ``heights``."""
        return np.interp(np.asarray(heights, dtype=np.float64), self.heights, self.probabilities)

    @staticmethod
    def fit(heights: np.ndarray, is_true: np.ndarray, max_knots: int = MAX_KNOTS
            ) -> ScoreCalibration:
        """Fit by isotonic regression of the labels on the heights.

        Parameters
        ----------
        heights
            Peak heights of candidate detections on held-out volumes.
        is_true
            1 where the candidate matched a true nucleus, else 0.
        max_knots
            The fitted step function is summarised by the mean height and
            probability of at most this many blocks of equal sample count,
            joined linearly.
        """
        heights = np.asarray(heights, dtype=np.float64)
        labels = np.asarray(is_true, dtype=np.float64)
        if heights.size < 2 or heights.shape != labels.shape:
            raise ValueError("calibration needs at least two labelled peaks")
        order = np.argsort(heights, kind="stable")
        h, fitted = heights[order], pool_adjacent_violators(labels[order])
        blocks = np.array_split(np.arange(h.size), min(max_knots, h.size))
        knot_h = np.array([h[b].mean() for b in blocks if b.size])
        knot_p = np.array([fitted[b].mean() for b in blocks if b.size])
        knot_h, unique = np.unique(knot_h, return_index=True)
        knot_p = np.maximum.accumulate(knot_p[unique])
        if knot_h.size < 2:
            knot_h = np.array([knot_h[0], knot_h[0] + 1.0])
            knot_p = np.array([knot_p[0], knot_p[0]])
        return ScoreCalibration(tuple(knot_h.tolist()), tuple(np.clip(knot_p, 0, 1).tolist()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the model file)."""
        return {"method": "isotonic", "heights": list(self.heights),
                "probabilities": list(self.probabilities)}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> ScoreCalibration:
        """Inverse of :meth:`to_dict`."""
        return ScoreCalibration(tuple(float(v) for v in values["heights"]),
                                tuple(float(v) for v in values["probabilities"]))


@dataclass(frozen=True)
class BorderAwareCalibration:
    """Separate isotonic calibrations for interior peaks and peaks on the frame's faces.

    Attributes
    ----------
    interior
        Calibration of peaks not on the outermost voxel layer.
    border
        Calibration of peaks on the outermost voxel layer (of an axis with more
        than one voxel).
    """

    interior: ScoreCalibration
    border: ScoreCalibration

    @staticmethod
    def identity() -> BorderAwareCalibration:
        """Both parts the identity (an uncalibrated model)."""
        return BorderAwareCalibration(ScoreCalibration.identity(), ScoreCalibration.identity())

    def __call__(self, heights: np.ndarray, on_border: np.ndarray | None = None) -> np.ndarray:
        """Calibrated scores for peak ``heights`` (``on_border``: default all interior)."""
        scores = self.interior(heights)
        if on_border is not None and np.any(on_border):
            border = np.asarray(on_border, dtype=bool)
            scores[border] = self.border(np.asarray(heights)[border])
        return scores

    @staticmethod
    def fit(heights: np.ndarray, on_border: np.ndarray, is_true: np.ndarray
            ) -> BorderAwareCalibration:
        """Fit both parts; a part with fewer than two peaks uses the other part's fit."""
        heights, labels = np.asarray(heights), np.asarray(is_true)
        border = np.asarray(on_border, dtype=bool)
        interior = ScoreCalibration.fit(heights[~border], labels[~border]) if (
            (~border).sum() >= 2) else ScoreCalibration.fit(heights, labels)
        edge = ScoreCalibration.fit(heights[border], labels[border]) if (
            border.sum() >= 2) else interior
        return BorderAwareCalibration(interior, edge)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the model file)."""
        return {"method": "isotonic-border-aware", "interior": self.interior.to_dict(),
                "border": self.border.to_dict()}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> BorderAwareCalibration:
        """Inverse of :meth:`to_dict` (also reads a plain :class:`ScoreCalibration`)."""
        if "interior" not in values:
            plain = ScoreCalibration.from_dict(values)
            return BorderAwareCalibration(plain, plain)
        return BorderAwareCalibration(ScoreCalibration.from_dict(values["interior"]),
                                      ScoreCalibration.from_dict(values["border"]))


def on_border(index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Whether integer voxel ``index`` rows ``(N, 3)`` lie on the outermost layer of ``shape``."""
    index = np.asarray(index).reshape(-1, 3)
    flags = np.zeros(len(index), dtype=bool)
    for axis, n in enumerate(shape):
        if n > 1:
            flags |= (index[:, axis] <= 0) | (index[:, axis] >= n - 1)
    return flags


def expected_calibration_error(scores: np.ndarray, is_true: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Expected calibration error: ``Σ_b (n_b / n) · |mean score_b − fraction true_b|``.

    Parameters
    ----------
    scores
        Predicted probabilities in ``[0, 1]``.
    is_true
        Outcomes (0/1).
    bins
        Number of equal-width score bins.

    Returns
    -------
    float
        0 for perfect calibration; ``nan`` without any score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(is_true, dtype=np.float64)
    if scores.size == 0:
        return float("nan")
    index = np.minimum((scores * bins).astype(np.int64), bins - 1)
    error = 0.0
    for b in range(bins):
        member = index == b
        if member.any():
            error += member.mean() * abs(scores[member].mean() - labels[member].mean())
    return float(error)
