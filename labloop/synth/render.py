"""Noise-free rendering of nuclei as soft-edged ellipsoids blurred by the optics.

Each nucleus is an ellipsoid (semi-axes ``a, b, c`` in µm, orientation as a
quaternion) filled at its brightness with a sigmoid edge::

    f(p) = brightness · boost · σ((1 − ρ(p)) · r / w),   ρ(p)² = dᵀ A d

where ``d`` is the offset from the centre (µm), ``A = R diag(a⁻², b⁻², c⁻²) Rᵀ``
(so ``ρ = 1`` on the surface), ``r`` the equivalent radius and ``w`` the edge
width. Nuclei are drawn only into their own bounding box on the anisotropic
voxel grid, then the volume is blurred by an anisotropic Gaussian point-spread
function (``scipy.ndimage.gaussian_filter``) computed on a padded grid, so light
from nuclei just outside the image reaches its border as it would.

Positions come from :func:`labloop.synth.cells.simulate_cells` or any other
simulator (e.g. the JAX tissue model): only ``t, z, y, x`` are required.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation
from scipy.special import expit

from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.synth.config import SynthConfig
from labloop.synth.geometry import in_fov, nearest_voxel

#: A nucleus is drawn out to this many edge widths beyond its surface, where the
#: sigmoid edge has fallen below 0.25 % of the fill.
EDGE_CUTOFF_WIDTHS = 6.0
#: The point-spread blur is truncated at this many standard deviations, and the
#: grid is padded by as much so that the blur sees nuclei beyond the border.
PSF_TRUNCATE_SIGMAS = 4.0

SEMI_AXIS_COLUMNS = ("axis_a_um", "axis_b_um", "axis_c_um")
QUATERNION_COLUMNS = ("quat_x", "quat_y", "quat_z", "quat_w")


def _node_table(nodes: Lineage | pd.DataFrame) -> pd.DataFrame:
    table = nodes.nodes if isinstance(nodes, Lineage) else nodes
    if not isinstance(table, pd.DataFrame):
        raise InputError("nuclei to render must be a Lineage or a DataFrame with columns "
                         "t, z, y, x")
    missing = [c for c in ("t", "z", "y", "x") if c not in table.columns]
    if missing:
        raise InputError(f"nuclei to render lack the column(s) {', '.join(missing)}")
    coords = table[["z", "y", "x"]].to_numpy(dtype=np.float64)
    if not np.isfinite(coords).all():
        raise InputError("nuclei to render have NaN or infinite coordinates")
    return table


def _geometry(table: pd.DataFrame, config: SynthConfig
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equivalent radii ``(N,)``, semi-axes ``(N, 3)``, rotations ``(N, 3, 3)`` in z, y, x
    order (columns along the semi-axes) and fill amplitudes ``(N,)``."""
    n = len(table)
    if all(c in table.columns for c in SEMI_AXIS_COLUMNS):
        semi_axes = table[list(SEMI_AXIS_COLUMNS)].to_numpy(dtype=np.float64)
        radius = (table["radius_um"].to_numpy(dtype=np.float64) if "radius_um" in table
                  else np.cbrt(np.prod(semi_axes, axis=1)))
    else:
        radius = (table["radius_um"].to_numpy(dtype=np.float64) if "radius_um" in table
                  else np.full(n, config.radius_mean_um))
        semi_axes = np.repeat(radius[:, None], 3, axis=1)
    if np.any(~np.isfinite(semi_axes)) or np.any(semi_axes <= 0):
        raise InputError("nuclei to render must have positive, finite radii and semi-axes")
    if all(c in table.columns for c in QUATERNION_COLUMNS) and n:
        rotation_xyz = Rotation.from_quat(table[list(QUATERNION_COLUMNS)].to_numpy(
            dtype=np.float64)).as_matrix()
    else:
        rotation_xyz = np.broadcast_to(np.eye(3), (n, 3, 3))
    rotation = rotation_xyz[:, ::-1, :]  # rows in (z, y, x) order
    amplitude = np.ones(n)
    for column in ("brightness", "brightness_boost"):
        if column in table.columns:
            amplitude = amplitude * table[column].to_numpy(dtype=np.float64)
    return radius, semi_axes, np.ascontiguousarray(rotation), amplitude


def _padding(shape_zyx: Sequence[int], sigma_voxels: np.ndarray) -> np.ndarray:
    pad = np.ceil(PSF_TRUNCATE_SIGMAS * sigma_voxels).astype(np.int64)
    pad[np.asarray(shape_zyx) == 1] = 0  # a single plane (2D) is not blurred along z
    return pad


def _splat(volume: np.ndarray, centre_um: np.ndarray, quadric: np.ndarray, extent_um: np.ndarray,
           radius_um: float, amplitude: float, voxel: np.ndarray, pad: np.ndarray,
           edge_width_um: float) -> None:
    """Add one soft ellipsoid to ``volume`` (padded grid), inside its bounding box only."""
    centre_vox = centre_um / voxel + pad
    extent_vox = extent_um / voxel
    lower = np.maximum(np.ceil(centre_vox - extent_vox), 0).astype(np.int64)
    upper = np.minimum(np.floor(centre_vox + extent_vox) + 1, volume.shape).astype(np.int64)
    if np.any(upper <= lower):
        return
    dz, dy, dx = (((np.arange(lower[i], upper[i]) - pad[i]) * voxel[i] - centre_um[i])
                  for i in range(3))
    dz, dy, dx = dz[:, None, None], dy[None, :, None], dx[None, None, :]
    q = quadric
    rho2 = (q[0, 0] * dz**2 + q[1, 1] * dy**2 + q[2, 2] * dx**2
            + 2 * (q[0, 1] * dz * dy + q[0, 2] * dz * dx + q[1, 2] * dy * dx))
    rho = np.sqrt(np.maximum(rho2, 0.0))
    patch = amplitude * expit((1.0 - rho) * (radius_um / edge_width_um))
    volume[lower[0]:upper[0], lower[1]:upper[1], lower[2]:upper[2]] += patch


def render_nuclei(nodes: Lineage | pd.DataFrame, shape: Sequence[int],
                  voxel_size_um: Sequence[float], config: SynthConfig | None = None
                  ) -> np.ndarray:
    """Render nuclei without noise, blurred by the PSF, in relative brightness units.

    Parameters
    ----------
    nodes
        A :class:`~labloop.lineage.Lineage` or node table with ``t`` (frame) and
        ``z, y, x`` (µm, origin at the centre of voxel (0, 0, 0)); optionally
        ``radius_um``, ``axis_a_um, axis_b_um, axis_c_um`` (µm),
        ``quat_x, quat_y, quat_z, quat_w``, ``brightness`` and ``brightness_boost``.
        Missing shape columns give spheres of radius ``config.radius_mean_um``;
        missing brightness gives 1. Nodes in frames outside ``[0, T)`` are ignored.
    shape
        Output shape ``(T, Z, Y, X)``.
    voxel_size_um
        Voxel size ``(z, y, x)`` in µm.
    config
        Uses ``psf_sigma_um``, ``edge_width_um`` and ``radius_mean_um``; defaults to
        :class:`SynthConfig` ``()``.

    Returns
    -------
    ndarray of float32, shape ``(T, Z, Y, X)``
        A nucleus of brightness 1, large compared to the PSF, reads 1 inside.
    """
    config = SynthConfig() if config is None else config
    shape, voxel_size_um = check_movie_grid(shape, voxel_size_um)
    voxel = np.asarray(voxel_size_um)
    table = _node_table(nodes)
    radius, semi_axes, rotation, amplitude = _geometry(table, config)
    quadric = np.einsum("nik,nk,njk->nij", rotation, semi_axes**-2.0, rotation)
    extent = (np.sqrt(np.einsum("nik,nk->ni", rotation**2, semi_axes**2))
              + EDGE_CUTOFF_WIDTHS * config.edge_width_um)
    centres = table[["z", "y", "x"]].to_numpy(dtype=np.float64)
    frames = table["t"].to_numpy()

    spatial = shape[1:]
    sigma = np.asarray(config.psf_sigma_um) / voxel
    pad = _padding(spatial, sigma)
    sigma = np.where(np.asarray(spatial) == 1, 0.0, sigma)
    crop = tuple(slice(p, p + n) for p, n in zip(pad, spatial, strict=True))
    out = np.zeros(shape, dtype=np.float32)
    padded = np.zeros(tuple(np.asarray(spatial) + 2 * pad), dtype=np.float32)
    for t in range(shape[0]):
        padded.fill(0.0)
        for i in np.flatnonzero(frames == t):
            _splat(padded, centres[i], quadric[i], extent[i], radius[i], amplitude[i], voxel,
                   pad, config.edge_width_um)
        if np.any(sigma > 0):
            blurred = gaussian_filter(padded, sigma, mode="constant",
                                      truncate=PSF_TRUNCATE_SIGMAS)
        else:
            blurred = padded
        out[t] = blurred[crop]
    return out


def centre_signal(clean: np.ndarray, nodes: Lineage | pd.DataFrame,
                  voxel_size_um: Sequence[float]) -> np.ndarray:
    """Values of a ``(T, Z, Y, X)`` image at the voxel nearest each nucleus centre.

    Only nuclei whose centre lies in the image and whose frame is in ``[0, T)``
    are returned, in table order.
    """
    table = _node_table(nodes)
    centres = table[["z", "y", "x"]].to_numpy(dtype=np.float64)
    frames = table["t"].to_numpy().astype(np.int64)
    inside = in_fov(centres, clean.shape[1:], voxel_size_um)
    inside &= (frames >= 0) & (frames < clean.shape[0])
    index = nearest_voxel(centres[inside], voxel_size_um)
    return clean[frames[inside], index[:, 0], index[:, 1], index[:, 2]].astype(np.float64)


def check_movie_grid(shape: Sequence[int], voxel_size_um: Sequence[float]
                     ) -> tuple[tuple[int, int, int, int], tuple[float, float, float]]:
    """Validate a movie shape ``(T, Z, Y, X)`` and voxel size ``(z, y, x)`` (µm)."""
    items = tuple(shape)
    if len(items) != 4 or not all(int(n) == n and n >= 1 for n in items):
        raise InputError(f"movie shape must be (T, Z, Y, X) with every size ≥ 1, got {shape!r}")
    voxel = np.asarray(voxel_size_um, dtype=np.float64)
    if voxel.shape != (3,) or not np.all(np.isfinite(voxel) & (voxel > 0)):
        raise InputError(f"voxel_size_um must be three positive numbers (z, y, x), got "
                         f"{voxel_size_um!r}")
    return ((int(items[0]), int(items[1]), int(items[2]), int(items[3])),
            (float(voxel[0]), float(voxel[1]), float(voxel[2])))
