"""Candidate links: KD-tree searches around drift-corrected positions.

For frames ``t`` and ``t + Δt`` (``Δt = 1``, and 2 with gap closing):

1. *Local spacing* ``s_i``: median distance of nucleus ``i`` to its
   ``spacing_neighbours`` nearest neighbours of the same frame (robust to one
   spurious detection next to it). Distances are compared to ``s`` so the tracker
   is scale-free.
2. *Local drift* ``v_i`` (µm per frame): mean displacement of the mutual nearest
   neighbour pairs ``t → t+1`` (closer than half a spacing) among the
   ``drift_neighbours`` nearest nuclei of ``i`` — ``i`` itself excluded, so a
   link's own displacement never corrects itself. It removes tissue flow.
3. *Candidates*: the ``max_candidates`` nearest successors of ``x_i + Δt·v_i``
   and the ``max_candidates`` nearest predecessors of each later nucleus, within
   ``max_displacement_spacing · s_i`` (and ``max_distance_um``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from labloop.track.detections import Detections
from labloop.track.settings import CandidateSettings

#: mutual nearest neighbours closer than this many local spacings give the drift
DRIFT_PAIR_MAX_SPACING = 0.5


@dataclass(frozen=True)
class Candidates:
    """Candidate links between detection rows.

    Attributes
    ----------
    source, target
        Row indices (into :class:`~labloop.track.detections.Detections`), ``(E,)``.
    dt
        Frames spanned (1, or 2 for a closed gap).
    residual_um
        Drift-corrected displacement ``x_j − x_i − Δt·v_i`` (µm), ``(E, 3)``.
    spacing_um
        Local spacing ``s`` of every detection (µm), ``(N,)``.
    drift_um
        Local drift ``v`` of every detection (µm per frame), ``(N, 3)``.
    """

    source: np.ndarray
    target: np.ndarray
    dt: np.ndarray
    residual_um: np.ndarray
    spacing_um: np.ndarray
    drift_um: np.ndarray

    @property
    def n(self) -> int:
        """Number of candidate links."""
        return len(self.source)

    def take(self, keep: np.ndarray) -> Candidates:
        """The candidates selected by a mask or index array."""
        return Candidates(self.source[keep], self.target[keep], self.dt[keep],
                          self.residual_um[keep], self.spacing_um, self.drift_um)


def local_spacing(det: Detections, settings: CandidateSettings) -> np.ndarray:
    """Median distance (µm) of each detection to its nearest same-frame neighbours."""
    spacing = np.full(det.n, np.nan)
    for k, _ in enumerate(det.frames):
        rows = np.arange(det.frame_start[k], det.frame_start[k + 1])
        if len(rows) < 2:
            continue
        n_nb = min(settings.spacing_neighbours, len(rows) - 1)
        dist, _ = cKDTree(det.pos[rows]).query(det.pos[rows], n_nb + 1)
        spacing[rows] = np.median(dist[:, 1:], axis=1)
    known = np.isfinite(spacing) & (spacing > 0)
    fallback = float(np.median(spacing[known])) if known.any() else settings.fallback_spacing_um
    spacing[~known] = fallback
    return spacing


def local_drift(det: Detections, spacing: np.ndarray, settings: CandidateSettings
                ) -> np.ndarray:
    """Local drift (µm per frame) of each detection from mutual nearest neighbours."""
    drift = np.zeros((det.n, 3))
    if not settings.drift_correction:
        return drift
    for k in range(len(det.frames) - 1):
        if det.frames[k + 1] != det.frames[k] + 1:
            continue
        a = np.arange(det.frame_start[k], det.frame_start[k + 1])
        b = np.arange(det.frame_start[k + 1], det.frame_start[k + 2])
        if len(a) < 2 or len(b) < 1:
            continue
        d_ab, j = cKDTree(det.pos[b]).query(det.pos[a])
        _, i_back = cKDTree(det.pos[a]).query(det.pos[b])
        mutual = (i_back[j] == np.arange(len(a))) & (d_ab < DRIFT_PAIR_MAX_SPACING * spacing[a])
        if not mutual.any():
            continue
        pair_src = np.flatnonzero(mutual)
        moves = det.pos[b[j[pair_src]]] - det.pos[a[pair_src]]
        n_nb = min(settings.drift_neighbours + 1, len(pair_src))
        _, nb = cKDTree(det.pos[a[pair_src]]).query(det.pos[a], n_nb)
        nb = nb.reshape(len(a), n_nb)
        is_self = pair_src[nb] == np.arange(len(a))[:, None]
        weight = (~is_self).astype(np.float64)
        if n_nb > settings.drift_neighbours:  # drop the farthest when self was not among them
            weight[np.arange(len(a)), n_nb - 1] *= is_self.any(axis=1)
        total = weight.sum(axis=1)
        summed = np.einsum("ab,abc->ac", weight, moves[nb])
        ok = total > 0
        drift[a[ok]] = summed[ok] / total[ok, None]
    return drift


def _pairs(det: Detections, a: np.ndarray, b: np.ndarray, dt: int, spacing: np.ndarray,
           drift: np.ndarray, settings: CandidateSettings) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (source, target) rows from frame rows ``a`` to frame rows ``b``."""
    predicted = det.pos[a] + dt * drift[a]
    k = min(settings.max_candidates, len(b))
    _, fwd = cKDTree(det.pos[b]).query(predicted, k)
    fwd = fwd.reshape(len(a), k)
    src = np.repeat(np.arange(len(a)), k)
    tgt = fwd.ravel()
    k_back = min(settings.max_candidates, len(a))
    _, back = cKDTree(predicted).query(det.pos[b], k_back)
    back = back.reshape(len(b), k_back)
    src = np.concatenate([src, back.ravel()])
    tgt = np.concatenate([tgt, np.repeat(np.arange(len(b)), k_back)])
    pairs = np.unique(np.stack([src, tgt], axis=1), axis=0)
    return a[pairs[:, 0]], b[pairs[:, 1]]


def build_candidates(det: Detections, settings: CandidateSettings) -> Candidates:
    """All candidate links of a movie (see the module docstring)."""
    spacing = local_spacing(det, settings)
    drift = local_drift(det, spacing, settings)
    sources, targets, dts = [], [], []
    steps = (1, 2) if settings.gap_closing else (1,)
    for k, frame in enumerate(det.frames):
        a = np.arange(det.frame_start[k], det.frame_start[k + 1])
        for dt in steps:
            b = det.rows_of(int(frame) + dt)
            if len(a) == 0 or len(b) == 0:
                continue
            s, t = _pairs(det, a, b, dt, spacing, drift, settings)
            sources.append(s)
            targets.append(t)
            dts.append(np.full(len(s), dt))
    if not sources:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(empty, empty, empty, np.zeros((0, 3)), spacing, drift)
    source = np.concatenate(sources).astype(np.int64)
    target = np.concatenate(targets).astype(np.int64)
    dt = np.concatenate(dts).astype(np.int64)
    residual = det.pos[target] - det.pos[source] - dt[:, None] * drift[source]
    length = np.linalg.norm(residual, axis=1)
    keep = length <= settings.max_displacement_spacing * spacing[source] * np.sqrt(dt)
    if settings.max_distance_um is not None:
        keep &= length <= settings.max_distance_um
    return Candidates(source[keep], target[keep], dt[keep], residual[keep], spacing, drift)
