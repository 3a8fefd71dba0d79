"""Peak calling: local maxima of the heatmap, at least a given distance apart in µm.

1. Candidates are voxels that equal the maximum of their 3 × 3 × 3 neighbourhood
   and exceed ``min_height``.
2. Non-maximum suppression in physical units: candidates are visited from the
   highest down and dropped if a kept peak lies within ``min_separation_um``
   (Euclidean distance in µm, so anisotropic voxels are handled exactly).
3. Optional sub-voxel refinement: along each axis a parabola through the peak
   and its two neighbours, ``δ = ½ (h₋ − h₊) / (h₋ − 2h₀ + h₊)``, clipped to ±½.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.spatial import cKDTree

#: Size of the neighbourhood (voxels per axis) a candidate must be the maximum of.
LOCAL_MAX_SIZE = 3
#: Largest sub-voxel shift (voxels).
MAX_SUBVOXEL_SHIFT = 0.5


@dataclass(frozen=True)
class PeakSettings:
    """How peaks are called.

    Parameters
    ----------
    min_separation_um
        Smallest distance between two detections (µm). Two nuclei cannot be
        closer than about the sum of their radii; daughters right after division
        are ≈ 5–6 µm apart for 3.5 µm nuclei.
    min_height
        Heatmap value (network output units, ≈ 1 at a clear centre) below which
        a maximum is not a candidate.
    subvoxel
        Refine positions to sub-voxel precision.
    """

    min_separation_um: float = 3.0
    min_height: float = 0.1
    subvoxel: bool = True


def _refine(heat: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    out = peaks.astype(np.float64)
    for axis in range(3):
        n = heat.shape[axis]
        if n < 3:
            continue
        inner = (peaks[:, axis] > 0) & (peaks[:, axis] < n - 1)
        idx = peaks[inner]
        lo, hi = idx.copy(), idx.copy()
        lo[:, axis] -= 1
        hi[:, axis] += 1
        h0 = heat[tuple(idx.T)].astype(np.float64)
        hm = heat[tuple(lo.T)].astype(np.float64)
        hp = heat[tuple(hi.T)].astype(np.float64)
        curvature = hm - 2 * h0 + hp
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curvature < 0, 0.5 * (hm - hp) / curvature, 0.0)
        out[inner, axis] += np.clip(shift, -MAX_SUBVOXEL_SHIFT, MAX_SUBVOXEL_SHIFT)
    return out


def find_peaks(heat: np.ndarray, voxel_um: Sequence[float], settings: PeakSettings | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a ``(Z, Y, X)`` heatmap at least ``min_separation_um`` apart.

    Parameters
    ----------
    heat
        Heatmap on a grid of voxel size ``voxel_um``.
    voxel_um
        ``(z, y, x)`` voxel size in µm.
    settings
        Thresholds; default :class:`PeakSettings` ``()``.

    Returns
    -------
    coords
        ``(N, 3)`` peak positions in (fractional) voxel coordinates, highest first.
    heights
        ``(N,)`` heatmap values at the peaks.

    Examples
    --------
    >>> heat = np.zeros((1, 9, 9)); heat[0, 2, 2] = 1.0; heat[0, 2, 4] = 0.9
    >>> find_peaks(heat, (1.0, 1.0, 1.0), PeakSettings(min_separation_um=3.0))[1]
    array([1.])
    """
    settings = PeakSettings() if settings is None else settings
    heat = np.asarray(heat)
    voxel = np.asarray(voxel_um, dtype=np.float64)
    local = maximum_filter(heat, size=LOCAL_MAX_SIZE, mode="nearest")
    candidates = np.argwhere((heat == local) & (heat > settings.min_height))
    if len(candidates) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    heights = heat[tuple(candidates.T)].astype(np.float64)
    order = np.argsort(-heights, kind="stable")
    candidates, heights = candidates[order], heights[order]
    positions = candidates * voxel
    tree = cKDTree(positions)
    keep = np.ones(len(candidates), dtype=bool)
    for i, neighbours in enumerate(tree.query_ball_point(positions,
                                                         settings.min_separation_um - 1e-9)):
        if keep[i]:
            for j in neighbours:
                if j > i:
                    keep[j] = False
    candidates, heights = candidates[keep], heights[keep]
    coords = _refine(heat, candidates) if settings.subvoxel else candidates.astype(np.float64)
    return coords, heights
