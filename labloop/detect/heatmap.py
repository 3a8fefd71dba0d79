"""Training targets: an adaptive centre heatmap that keeps touching nuclei apart.

Each nucleus ``i`` contributes an isotropic Gaussian (in µm) centred on it,

    h_i(p) = exp(−|p − c_i|² / (2 s_i²)),   s_i = max(s_min, min(k_r · r_i, k_nn · d_i)),

where ``r_i`` is its radius and ``d_i`` the distance to its nearest neighbour,
and the heatmap is the *maximum* (not the sum) over nuclei. The width follows
the nucleus size, but shrinks for nuclei with a close neighbour so that two
touching nuclei (or two daughters just after division) keep two separate peaks
with a clear valley between them: with ``k_nn = 0.25`` the midpoint between two
neighbours is 2 widths from each centre, ``exp(−2) ≈ 0.14`` of the peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from labloop.detect.resample import WorkingGrid


@dataclass(frozen=True)
class HeatmapSettings:
    """Widths of the centre Gaussians.

    Parameters
    ----------
    radius_fraction
        ``k_r``: Gaussian width per µm of nucleus radius.
    neighbour_fraction
        ``k_nn``: largest width per µm of nearest-neighbour distance.
    min_sigma_um
        ``s_min``: smallest width (µm).
    truncate_sigmas
        Each Gaussian is evaluated out to this many widths.
    default_radius_um
        Radius assumed for nuclei without a ``radius_um`` (user annotations).
    """

    radius_fraction: float = 0.4
    neighbour_fraction: float = 0.25
    min_sigma_um: float = 0.8
    truncate_sigmas: float = 3.0
    default_radius_um: float = 3.5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def centre_sigmas_um(positions_um: np.ndarray, radii_um: np.ndarray,
                     settings: HeatmapSettings) -> np.ndarray:
    """Gaussian width (µm) of each nucleus, see the module docstring."""
    positions_um = np.asarray(positions_um, dtype=np.float64).reshape(-1, 3)
    sigma = settings.radius_fraction * np.asarray(radii_um, dtype=np.float64)
    if len(positions_um) > 1:
        distance, _ = cKDTree(positions_um).query(positions_um, k=2)
        sigma = np.minimum(sigma, settings.neighbour_fraction * distance[:, 1])
    return np.maximum(sigma, settings.min_sigma_um)


def centre_heatmap(positions_um: np.ndarray, radii_um: np.ndarray | None, grid: WorkingGrid,
                   settings: HeatmapSettings | None = None) -> np.ndarray:
    """Render the target heatmap of nuclei on a working grid.

    Parameters
    ----------
    positions_um
        ``(N, 3)`` centres ``(z, y, x)`` in µm, in the frame's coordinates (may lie
        outside the frame: their tails still count).
    radii_um
        ``(N,)`` radii in µm, or ``None`` for ``settings.default_radius_um``.
    grid
        The working grid of the frame.
    settings
        Widths; default :class:`HeatmapSettings` ``()``.

    Returns
    -------
    ndarray of float32, shape ``grid.shape``, values in ``[0, 1]``.
        For a 2D grid (``Z = 1``) the Gaussians are evaluated in ``y, x`` only.
    """
    settings = HeatmapSettings() if settings is None else settings
    positions_um = np.asarray(positions_um, dtype=np.float64).reshape(-1, 3)
    planar = grid.shape[0] == 1
    if planar:
        positions_um = positions_um.copy()
        positions_um[:, 0] = grid.index_to_um(np.zeros((1, 3)))[0, 0]
    radii = (np.full(len(positions_um), settings.default_radius_um) if radii_um is None
             else np.asarray(radii_um, dtype=np.float64))
    sigma = centre_sigmas_um(positions_um, radii, settings)
    heat = np.zeros(grid.shape, dtype=np.float32)
    voxel = np.asarray(grid.voxel_um)
    centres = grid.um_to_index(positions_um)
    shape = np.asarray(grid.shape)
    for centre, s in zip(centres, sigma, strict=True):
        half = np.ceil(settings.truncate_sigmas * s / voxel).astype(np.int64)
        if planar:
            half[0] = 0
        lower = np.maximum(np.floor(centre).astype(np.int64) - half, 0)
        upper = np.minimum(np.ceil(centre).astype(np.int64) + half + 1, shape)
        if np.any(upper <= lower):
            continue
        axes = [((np.arange(lower[a], upper[a]) - centre[a]) * voxel[a]) ** 2
                for a in range(3)]
        if planar:
            axes[0] = np.zeros(upper[0] - lower[0])
        d2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
        patch = np.exp(-d2 / (2.0 * s * s)).astype(np.float32)
        region = heat[lower[0]:upper[0], lower[1]:upper[1], lower[2]:upper[2]]
        np.maximum(region, patch, out=region)
    return heat
